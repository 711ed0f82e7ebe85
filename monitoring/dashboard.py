"""The admin's monitoring dashboard: the last 24 hours or 7 days of the run ledger as charts (runs
per hour by outcome, dispatch lag and queue wait at p50 and p95, the slowest schedules), and what
is true now (schedules by health, queue lengths in Redis, the workers alive and what each runs).

Drawn on the server as inline SVG (monitoring.charts_svg): no script, no CDN, nothing fetched.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.timezone import localtime

from monitoring import charts_svg
from monitoring.dashboard_queries import (
    WINDOWS,
    Hours,
    HourSpreads,
    Spread,
    Window,
    health_counts,
    hour_start,
    lag_and_wait_per_hour,
    runs_per_hour,
    slowest_schedules,
    window_of,
    workers_now,
)
from scheduler.admin_runs import HEALTH_TONES, runs_changelist_url
from scheduler.broker import queue_lengths
from scheduler.health import State
from scheduler.models import ScheduleRun
from shared.badges import badge, tone_colour
from shared.display import duration_in_words

Status = ScheduleRun.Status


@dataclass(frozen=True)
class Outcome:
    key: str
    label: str
    tone: str
    statuses: tuple[str, ...]


# The bars' stack, bottom up. Claimed, sent and running are one: not finished yet.
OUTCOMES = (
    Outcome("succeeded", "Succeeded", "good", (Status.SUCCEEDED,)),
    Outcome("failed", "Failed or not enqueued", "bad", (Status.FAILED, Status.NOT_ENQUEUED)),
    Outcome("missed", "Missed", "warning", (Status.MISSED,)),
    Outcome("skipped", "Skipped", "quiet", (Status.SKIPPED,)),
    Outcome("unfinished", "Claimed, sent or running", "busy", (Status.CLAIMED, Status.SENT, Status.RUNNING)),
)
PERCENTILE_TONES = (("p50", "busy"), ("p95", "warning"))
SPREADS = (("lag", "Dispatch lag: from a run's slot to beat sending it"),
           ("wait", "Queue wait: from sent to a worker starting it"))


def dashboard_view(request: HttpRequest) -> HttpResponse:
    # admin_view lets in any active staff member; the ledger is what this page shows.
    if not (request.user.is_staff and request.user.has_perm("scheduler.view_schedulerun")):
        raise PermissionDenied
    window = window_of(request.GET.get("window"))
    context = {**admin.site.each_context(request), "title": "Monitoring dashboard",
               **dashboard_context(window=window, now=timezone.now())}
    return TemplateResponse(request, "admin/monitoring/dashboard.html", context)


def dashboard_context(*, window: Window, now: datetime) -> dict:
    timeline = Timeline.of(Hours.ending_at(now, count=window.hours))
    per_hour = runs_per_hour(hours=timeline.hours)
    return {
        "window": window, "windows": WINDOWS, "now": now, "zone": f"{localtime(now):%Z}",
        **_runs_context(timeline, per_hour), **_spreads_context(timeline, per_hour, now=now),
        "slowest_chart": _slowest_chart(timeline.hours),
        "health": _health_badges(health_counts()), **_now_context(now),
    }


@dataclass(frozen=True)
class Timeline:
    """The window's hours, and how the page names them: in full in tooltips and tables, and a
    few on the axis (every third hour of a day, each midnight of a week), in the site's timezone."""

    hours: Hours
    labels: list[str]
    axis: list[str]

    @classmethod
    def of(cls, hours: Hours) -> "Timeline":
        starts = [localtime(hour_start(number)) for number in hours.numbers]
        if hours.count <= 24:
            axis = [f"{start:%H:%M}" if start.hour % 3 == 0 else "" for start in starts]
        else:
            axis = [f"{start:%a %d}" if start.hour == 0 else "" for start in starts]
        return cls(hours, [f"{start:%a %d %b %H:%M %Z}" for start in starts], axis)


# --- Runs per hour by outcome -----------------------------------------------------------------

def _runs_context(timeline: Timeline, per_hour: dict[int, dict[str, int]]) -> dict:
    counts = {o.key: [sum(per_hour.get(number, {}).get(status, 0) for status in o.statuses)
                      for number in timeline.hours.numbers] for o in OUTCOMES}
    series = [charts_svg.Series(o.key, o.label, tone_colour(o.tone), counts[o.key]) for o in OUTCOMES]
    total = sum(sum(values) for values in counts.values())
    chart = charts_svg.stacked_bars(
        key="runs", title="Runs per hour by outcome",
        description=f"{total} runs in {timeline.hours.count} hours, by the hour of their slot, stacked by outcome.",
        labels=timeline.labels, axis_labels=timeline.axis, series=series,
    )
    return {
        "runs_chart": chart, "legend": charts_svg.legend(series),
        "totals": [(o.key, o.label, o.tone, sum(counts[o.key])) for o in OUTCOMES],
        "runs_rows": [(label, [counts[o.key][i] for o in OUTCOMES]) for i, label in enumerate(timeline.labels)],
    }


# --- Dispatch lag and queue wait --------------------------------------------------------------

def _spreads_context(timeline: Timeline, per_hour: dict[int, dict[str, int]], *, now: datetime) -> dict:
    spreads = lag_and_wait_per_hour(hours=timeline.hours, counts=per_hour, now=now)
    charts = [(title, _spread_chart(key, title, getattr(spreads, key), timeline)) for key, title in SPREADS]
    return {
        "spread_charts": charts, "spread_one_in": spreads.one_in,
        "spread_legend": charts_svg.legend(_percentile_series(spreads.lag, timeline.hours)),
        "spread_rows": _spread_rows(spreads, timeline),
    }


def _percentile_series(by_hour: dict[int, Spread], hours: Hours) -> list[charts_svg.Series]:
    return [charts_svg.Series(name, name, tone_colour(tone),
                              [getattr(by_hour[n], name) if n in by_hour else None for n in hours.numbers])
            for name, tone in PERCENTILE_TONES]


def _spread_chart(key: str, title: str, by_hour: dict[int, Spread], timeline: Timeline):
    measured = sum(spread.runs for spread in by_hour.values())
    return charts_svg.lines(
        key=key, title=title, description=f"p50 and p95 per hour over {measured} runs; gaps are hours without one.",
        labels=timeline.labels, axis_labels=timeline.axis, series=_percentile_series(by_hour, timeline.hours),
        value_text=seconds_text,
    )


def _spread_rows(spreads: HourSpreads, timeline: Timeline) -> list[tuple[str, list[str]]]:
    def cells(spread: Spread | None) -> list[str]:
        return [str(spread.runs), seconds_text(spread.p50), seconds_text(spread.p95)] if spread else ["0", "", ""]

    return [(label, cells(spreads.lag.get(number)) + cells(spreads.wait.get(number)))
            for label, number in zip(timeline.labels, timeline.hours.numbers, strict=True)]


# --- The slowest schedules, and what is true now ----------------------------------------------

def _slowest_chart(hours: Hours):
    bars = [charts_svg.Bar(slow.name, slow.average,
                           f"{seconds_text(slow.average)} on average, {seconds_text(slow.longest)} at most, "
                           f"{slow.runs} runs",
                           runs_changelist_url(schedule=slow.schedule_id) if slow.schedule_id else "")
            for slow in slowest_schedules(hours=hours)]
    return charts_svg.horizontal_bars(
        key="slowest", title="The slowest schedules",
        description="Average time from start to end of their finished runs in the window, slowest first.",
        bars=bars, colour=tone_colour("busy"),
    ) if bars else None


def _health_badges(counts: dict[str, int]) -> list[tuple[str, int]]:
    states = sorted(counts, key=lambda state: State.SEVERITY.get(state, len(State.SEVERITY)))
    return [(badge(state, HEALTH_TONES.get(state, "quiet"), status=f"health-{state}"), counts[state])
            for state in states]


def _now_context(now: datetime) -> dict:
    queues = queue_lengths()
    workers = workers_now(now=now)
    return {
        "queues": queues, "queued": sum(queues.values()) if queues is not None else None,
        "workers": workers, "workers_alive": sum(worker.alive for worker in workers),
    }


def seconds_text(seconds: float) -> str:
    if abs(seconds) < 1:
        return f"{seconds * 1000:.0f} ms"
    return duration_in_words(timedelta(seconds=seconds))
