"""Admin list pages that stay fast on big tables: a capped count, keyset paging, and rows
completed per page."""

from datetime import datetime

from django.contrib import admin
from django.contrib.admin.views.main import SEARCH_VAR, ChangeList
from django.core.paginator import Paginator
from django.db.models import OuterRef, Q, QuerySet, Subquery
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


# The keyset pager's query parameters: a page just older or newer than a row, or the oldest page.
OLDER, NEWER, OLDEST = "before", "after", "oldest"
PAGER_PARAMS = (OLDER, NEWER, OLDEST)


def keyset_position(value: str) -> tuple[datetime, int] | None:
    """A row's place in the order, as the pager's links write it ("<iso time>_<pk>"); None if mangled."""
    moment, _, pk = value.rpartition("_")
    try:
        at = datetime.fromisoformat(moment)
    except ValueError:
        return None
    if at.tzinfo is None or not pk.isascii() or not pk.isdigit():
        return None
    return at, int(pk)


class KeysetChangeList(ChangeList):
    """A list paged by where the page's first or last row stands, newest first by the admin's
    `keyset_field` (a timestamp that is never empty) and then the primary key.

    A page of a million rows costs one index range whether it is the first or the last: no
    COUNT of the rows, no OFFSET walking every row before the page. There is no total and no
    page numbers; the pager offers the newest, newer, older and oldest pages.
    """

    def get_filters_params(self, params=None):
        lookups = super().get_filters_params(params)
        for name in (*PAGER_PARAMS, *self.model_admin.list_options):
            lookups.pop(name, None)
        return lookups

    def get_query_string(self, new_params=None, remove=None):
        # A filter, a search or a sort starts from the newest rows again; only the pager's own
        # links carry a position.
        return super().get_query_string(new_params, [*(remove or []), *PAGER_PARAMS])

    @property
    def search_form_params(self) -> list[tuple[str, str]]:
        """The filters a new search keeps, as the search form's hidden fields."""
        kept = [SEARCH_VAR, *PAGER_PARAMS, *self.model_admin.list_options]
        return [(name, value) for name, values in self.filter_params.items() if name not in kept for value in values]

    def get_results(self, request):
        key, per_page = self.model_admin.keyset_field, self.list_per_page
        newest_first, oldest_first = (f"-{key}", "-pk"), (key, "pk")
        older, newer = keyset_position(request.GET.get(OLDER, "")), keyset_position(request.GET.get(NEWER, ""))
        if OLDEST in request.GET:
            rows = list(self.queryset.order_by(*oldest_first)[: per_page + 1])
            has_newer, has_older, rows = len(rows) > per_page, False, rows[:per_page][::-1]
        elif newer is not None:
            rows = list(self.queryset.filter(self._past(key, newer, "gt")).order_by(*oldest_first)[: per_page + 1])
            has_newer, has_older, rows = len(rows) > per_page, True, rows[:per_page][::-1]
        else:
            below = self.queryset.filter(self._past(key, older, "lt")) if older is not None else self.queryset
            rows = list(below.order_by(*newest_first)[: per_page + 1])
            has_newer, has_older, rows = older is not None, len(rows) > per_page, rows[:per_page]
        if newer is not None and not has_newer:
            # Back at the newest rows: the first page, whole, rather than the few left of it.
            rows = list(self.queryset.order_by(*newest_first)[: per_page + 1])
            has_older, rows = len(rows) > per_page, rows[:per_page]
        self.result_list, self.result_count = rows, len(rows)
        self.full_result_count, self.show_full_result_count, self.show_admin_actions = None, False, bool(rows)
        self.can_show_all, self.multi_page, self.paginator = False, has_newer or has_older, None
        self.newest_url = self.get_query_string() if has_newer else ""
        self.newer_url = self.get_query_string({NEWER: self._position(rows[0])}) if has_newer else ""
        self.older_url = self.get_query_string({OLDER: self._position(rows[-1])}) if has_older else ""
        self.oldest_url = self.get_query_string({OLDEST: 1}) if has_older else ""

    def _position(self, row) -> str:
        return f"{getattr(row, self.model_admin.keyset_field).isoformat()}_{row.pk}"

    @staticmethod
    def _past(key: str, position: tuple[datetime, int], direction: str) -> Q:
        at, pk = position
        # The bare bound first, so the database reads one index range from the position; the pk
        # breaks ties between rows of the same moment.
        return Q(**{f"{key}__{direction}e": at}) & (Q(**{f"{key}__{direction}": at}) | Q(**{key: at,
                                                                                          f"pk__{direction}": pk}))


class KeysetPagedAdmin(admin.ModelAdmin):
    """A ModelAdmin listed through KeysetChangeList: set `keyset_field`; `list_options` names
    query parameters the admin reads itself (not field lookups)."""

    keyset_field: str
    list_options: tuple[str, ...] = ()
    change_list_template = "admin/shared/keyset_change_list.html"
    # The order is the key's: any other sort would need its own index and its own key.
    sortable_by = ()
    date_hierarchy = None
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER

    def get_changelist(self, request, **kwargs):
        return KeysetChangeList
