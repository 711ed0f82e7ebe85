"""Charts as inline SVG drawn on the server: stacked bars, lines and horizontal bars.

No JavaScript and nothing fetched: the admin works offline and the page is the whole chart. Each
chart is an `<svg role="img">` with a <title> and <desc> a screen reader reads, and a tooltip
(<title>) on each bar and point with its numbers. Every label goes through format_html, so a
schedule named `<script>` is text. Colours come from the caller (shared.badges' tones); text and
grid lines take the admin's theme colours from the page's stylesheet (classes below).
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator

WIDTH = 960
HEIGHT = 220
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 10, 24
BAR_SHARE = 0.8  # of each hour's slot; the rest is the gap between bars
ROW_HEIGHT = 24
NAME_WIDTH = 300  # horizontal bars: the labels' column
NAME_CHARACTERS = 42
VALUE_WIDTH = 330  # horizontal bars: room kept right of the longest for its text


@dataclass(frozen=True)
class Series:
    key: str  # a class name: series-<key>
    label: str
    colour: str
    values: Sequence[float | None]  # one per bucket; None: nothing measured then


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    text: str  # what the bar says beside it
    href: str = ""


def _number(value: float) -> str:
    return f"{value:.1f}"


def _axis(largest: float, *, whole: bool) -> list[float]:
    """Round ticks from 0 to at or above `largest`, four or so of them."""
    raw = max(largest, 1 if whole else 1e-3) / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    if whole:
        step = max(1, math.ceil(step))
    return [step * i for i in range(math.ceil(max(largest, step) / step - 1e-9) + 1)]


class _Frame:
    """The plotting area of a time chart: a slot per bucket, a value axis from 0 to its top tick."""

    def __init__(self, buckets: int, ticks: list[float]) -> None:
        self.slot = (WIDTH - LEFT - RIGHT) / max(buckets, 1)
        self.ticks = ticks
        self.top = ticks[-1]

    def x(self, bucket: int) -> float:
        return LEFT + (bucket + 0.5) * self.slot

    def y(self, value: float) -> float:
        return HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) * max(value, 0) / self.top


def _svg(*, key: str, title: str, description: str, height: int, body: SafeString) -> SafeString:
    return format_html(
        '<svg class="chart" id="chart-{key}" role="img" aria-labelledby="chart-{key}-title chart-{key}-desc" '
        'viewBox="0 0 {width} {height}" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
        '<title id="chart-{key}-title">{title}</title><desc id="chart-{key}-desc">{description}</desc>{body}</svg>',
        key=key, width=WIDTH, height=height, title=title, description=description, body=body,
    )


def _grid(frame: _Frame, value_text: Callable[[float], str]) -> SafeString:
    return format_html_join(
        "", '<line class="grid" x1="{0}" x2="{1}" y1="{2}" y2="{2}"/>'
            '<text class="tick" x="{3}" y="{2}" text-anchor="end" dominant-baseline="middle">{4}</text>',
        ((LEFT, WIDTH - RIGHT, _number(frame.y(tick)), LEFT - 6, value_text(tick)) for tick in frame.ticks),
    )


def _time_axis(frame: _Frame, axis_labels: Sequence[str]) -> SafeString:
    return format_html_join(
        "", '<text class="tick" x="{}" y="{}" text-anchor="middle">{}</text>',
        ((_number(frame.x(i)), HEIGHT - 6, label) for i, label in enumerate(axis_labels) if label),
    )


def stacked_bars(*, key: str, title: str, description: str, labels: Sequence[str], axis_labels: Sequence[str],
                 series: Sequence[Series], value_text: Callable[[float], str] = lambda v: f"{v:g}") -> SafeString:
    """A bar per bucket (`labels`: each bucket's name in its tooltip), its series stacked bottom up;
    `axis_labels` name some buckets below the axis ('' for none)."""
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(labels))]
    frame = _Frame(len(labels), _axis(max(totals, default=0), whole=True))
    bars = format_html_join("", "{}", ((_stack(frame, i, label, series),) for i, label in enumerate(labels)))
    body = format_html('{}<g class="bars">{}</g>{}', _grid(frame, value_text), bars, _time_axis(frame, axis_labels))
    return _svg(key=key, title=title, description=description, height=HEIGHT, body=body)


def _stack(frame: _Frame, bucket: int, label: str, series: Sequence[Series]) -> SafeString:
    width = frame.slot * BAR_SHARE
    left = frame.x(bucket) - width / 2
    parts = [(s, s.values[bucket]) for s in series if s.values[bucket]]
    tooltip = f"{label}: " + (", ".join(f"{value:g} {s.label.lower()}" for s, value in parts) or "no runs")
    segments, base = [], 0.0
    for s, value in parts:
        bottom, top = frame.y(base), frame.y(base + value)
        segments.append((s.key, s.colour, _number(left), _number(top), _number(width), _number(bottom - top)))
        base += value
    # A hit area the height of the chart: the tooltip shows over an empty or a short bar too.
    return format_html(
        '<g class="bar"><title>{}</title>'
        '<rect class="hit" x="{}" y="{}" width="{}" height="{}" fill="transparent"/>{}</g>',
        tooltip, _number(left), TOP, _number(width), HEIGHT - TOP - BOTTOM,
        format_html_join("", '<rect class="segment series-{}" fill="{}" x="{}" y="{}" width="{}" height="{}"/>',
                         segments),
    )


def lines(*, key: str, title: str, description: str, labels: Sequence[str], axis_labels: Sequence[str],
          series: Sequence[Series], value_text: Callable[[float], str]) -> SafeString:
    """A line per series over the buckets, broken where a bucket has no value, a point on each value."""
    # With nothing measured, an axis up to a second rather than to a fraction of a millisecond.
    largest = max((v for s in series for v in s.values if v is not None), default=1.0)
    frame = _Frame(len(labels), _axis(largest, whole=False))
    drawn = format_html_join("", "{}", ((_line(frame, s, labels, value_text),) for s in series))
    body = format_html('{}{}{}', _grid(frame, value_text), drawn, _time_axis(frame, axis_labels))
    return _svg(key=key, title=title, description=description, height=HEIGHT, body=body)


def _line(frame: _Frame, series: Series, labels: Sequence[str], value_text: Callable[[float], str]) -> SafeString:
    radius = 2.5 if frame.slot > 8 else 1.5  # a week's hours are 5 px apart
    path, joined = [], False
    for i, value in enumerate(series.values):
        if value is None:
            joined = False
            continue
        path.append(f"{'L' if joined else 'M'}{_number(frame.x(i))} {_number(frame.y(value))}")
        joined = True
    points = format_html_join(
        "", '<circle cx="{}" cy="{}" r="{}"><title>{}: {} {}</title></circle>',
        ((_number(frame.x(i)), _number(frame.y(v)), radius, labels[i], series.label, value_text(v))
         for i, v in enumerate(series.values) if v is not None),
    )
    return format_html(
        '<g class="line series-{}" fill="{}"><path d="{}" fill="none" stroke="{}" stroke-width="2"/>{}</g>',
        series.key, series.colour, " ".join(path), series.colour, points,
    )


def horizontal_bars(*, key: str, title: str, description: str, bars: Sequence[Bar], colour: str) -> SafeString:
    """A row per bar, longest value first as given: its label (a link when it has one), the bar, its text."""
    height = TOP + ROW_HEIGHT * max(len(bars), 1) + 4
    longest = max((bar.value for bar in bars), default=0) or 1
    room = WIDTH - NAME_WIDTH - VALUE_WIDTH
    rows = format_html_join("", "{}", ((_row(i, bar, room * bar.value / longest, colour),)
                                       for i, bar in enumerate(bars)))
    return _svg(key=key, title=title, description=description, height=height, body=format_html("{}", rows))


def _row(index: int, bar: Bar, length: float, colour: str) -> SafeString:
    y = TOP + index * ROW_HEIGHT
    # The whole name as its tooltip: a long one is cut short on the chart.
    name = format_html(
        '<g class="label"><title>{}</title><text class="name" x="{}" y="{}" text-anchor="end">{}</text></g>',
        bar.label, NAME_WIDTH - 8, y + 15, Truncator(bar.label).chars(NAME_CHARACTERS),
    )
    if bar.href:
        name = format_html('<a href="{}">{}</a>', bar.href, name)
    return format_html(
        '<g class="bar">{}<rect class="segment" fill="{}" x="{}" y="{}" width="{}" height="{}"/>'
        '<text class="value" x="{}" y="{}">{}</text></g>',
        name, colour, NAME_WIDTH, y + 3, _number(max(length, 1)), ROW_HEIGHT - 6,
        _number(NAME_WIDTH + max(length, 1) + 6), y + 15, bar.text,
    )


def legend(series: Sequence[Series]) -> SafeString:
    return format_html(
        '<ul class="chart-legend">{}</ul>',
        format_html_join("", '<li class="series-{}"><span style="background:{}"></span>{}</li>',
                         ((s.key, s.colour, s.label) for s in series)),
    )
