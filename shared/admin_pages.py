"""Admin list pages that stay fast on big tables: a capped count, and rows completed per page."""

from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils.functional import cached_property


class CappedCountPaginator(Paginator):
    """Counts at most CAP rows, so a page of a million-row table never counts them all.

    Pages past the cap are not offered either: a deep OFFSET walks every row before it, as
    slowly as the count would. Older rows are reached by narrowing the filters instead.
    """

    CAP = 10_000

    @cached_property
    def counted(self) -> int:
        # COUNT over a LIMITed subquery: the database stops after CAP + 1 index entries. The
        # order does not change the count, and without it any index that filters may serve.
        return self.object_list.order_by()[: self.CAP + 1].count()

    @cached_property
    def count(self) -> int:
        return min(self.counted, self.CAP)

    @property
    def capped(self) -> bool:
        return self.counted > self.CAP


class PageChangeList(ChangeList):
    """Hands the rows of the page shown to the admin's `page_complete(rows)` once.

    The admin fetches what the rows link to in one query for the page, instead of one query
    per row or a join across the whole table.
    """

    def get_results(self, request):
        super().get_results(request)
        # Evaluates the page's queryset; the template reuses these same cached rows.
        self.model_admin.page_complete(list(self.result_list))


class PageCompletingAdmin:
    """Mixin for a ModelAdmin whose list rows need data from other tables, a page at a time."""

    def get_changelist(self, request, **kwargs):
        return PageChangeList

    def page_complete(self, rows: list) -> None:
        raise NotImplementedError


def newest_of_each(rows: QuerySet, *, parents: QuerySet, link: str, parent_key: str = "pk",
                   newest_first: tuple[str, ...]) -> dict:
    """For each of `parents`, its newest of `rows` (linked by the field `link` to the parent's
    `parent_key`), in one query: {link value: row}. One probe of an index per parent, where a
    join or a query per row of an admin page would read far more."""
    newest = rows.filter(**{link: OuterRef(parent_key)}).order_by(*newest_first).values("pk")[:1]
    found = rows.filter(pk__in=parents.values(newest=Subquery(newest)))
    attname = rows.model._meta.get_field(link).attname
    return {getattr(row, attname): row for row in found}
