"""Narrowing the run ledger and the task results to a schedule, at 10,000 schedules.

Both lists are read by schedule, so the choices come from the schedules table (10,000 rows at
most, never a DISTINCT over a million runs or results), and the filter renders only the
schedules whose name holds what was typed, never every schedule.
"""

import re

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import QueryDict
from django_celery_beat.models import PeriodicTask

# Past this many schedules matching a search, the search reads the rows' own schedule names
# instead: a term that common finds a page within the newest rows, and a list of thousands
# of ids or names would cost the database more than it saves.
MATCHED_SCHEDULES_LIMIT = 500
LARGEST_ID = 2**31 - 1


def schedule_name_matches(term: str, *, id_field: str | None, name_field: str) -> Q:
    """Rows of the schedules whose name contains `term` (any case), by an index on `id_field`
    (or on `name_field` when the rows only name their schedule), and rows still naming a
    schedule called exactly `term` that is gone or renamed since."""
    found = list(PeriodicTask.objects.filter(name__icontains=term).order_by().values_list("pk", "name")
                 [: MATCHED_SCHEDULES_LIMIT + 1])
    if len(found) > MATCHED_SCHEDULES_LIMIT:
        return Q(**{f"{name_field}__icontains": term})
    if id_field is None:
        return Q(**{f"{name_field}__in": [name for _, name in found] + [term]})
    return Q(**{f"{id_field}__in": [pk for pk, _ in found]}) | Q(**{name_field: term})


class ScheduleSearchFilter(admin.ListFilter):
    """The schedule a list shows, picked by typing part of its name.

    `?schedule=<id>` narrows the list (the links from a schedule's page use it); the box sends
    `?schedule_name=<text>`, and the filter lists the first SHOWN schedules whose name holds it.
    A value naming no schedule lists nothing: listing every row would look like its rows.
    """

    title = "schedule"
    template = "admin/scheduler/schedule_search_filter.html"
    parameter_name, search_parameter = "schedule", "schedule_name"
    SHOWN = 20

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        for name in self.expected_parameters():
            if name in params:
                self.used_parameters[name] = params.pop(name)[-1]
        self.value = self.used_parameters.get(self.parameter_name)
        self.typed = self.used_parameters.get(self.search_parameter, "").strip()
        self.schedule = self._schedule(self.value) if self.value is not None else None
        self.kept_params, self.more_than_shown, self.none_found = [], False, False

    @staticmethod
    def _schedule(value: str) -> PeriodicTask | None:
        if not re.fullmatch(r"[0-9]{1,10}", value) or int(value) > LARGEST_ID:
            return None
        return PeriodicTask.objects.filter(pk=int(value)).first()

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str]:
        return [self.parameter_name, self.search_parameter]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value is None:
            return queryset
        if self.schedule is None:
            return queryset.none()
        return self.narrowed(queryset, self.schedule)

    def narrowed(self, queryset: QuerySet, schedule: PeriodicTask) -> QuerySet:
        raise NotImplementedError

    def choices(self, changelist):
        others = changelist.get_query_string(remove=self.expected_parameters())
        # The box's form sends the list's other filters along as hidden fields.
        self.kept_params = list(QueryDict(others.removeprefix("?")).items())
        yield {"selected": self.value is None, "query_string": others, "display": "All"}
        if self.value is not None:
            name = self.schedule.name if self.schedule is not None else f"no schedule has the id {self.value}"
            yield {"selected": True, "query_string": changelist.get_query_string({self.parameter_name: self.value}),
                   "display": name}
        if not self.typed:
            return
        matches = list(PeriodicTask.objects.filter(name__icontains=self.typed).order_by("name")
                       .values_list("pk", "name")[: self.SHOWN + 1])
        self.more_than_shown = len(matches) > self.SHOWN
        self.none_found = not matches
        for pk, name in matches[: self.SHOWN]:
            if str(pk) != self.value:
                yield {"selected": False, "display": name, "query_string": changelist.get_query_string(
                    {self.parameter_name: pk}, [self.search_parameter])}


class RunScheduleFilter(ScheduleSearchFilter):
    """A run belongs to its schedule by id, whatever the schedule was called when it ran."""

    def narrowed(self, queryset, schedule):
        return queryset.filter(schedule_id=schedule.pk)


class ResultScheduleFilter(ScheduleSearchFilter):
    """A task result names its schedule only (the periodic_task_name header beat sends)."""

    def narrowed(self, queryset, schedule):
        return queryset.filter(periodic_task_name=schedule.name)
