"""Charts as PNG bytes, drawn with matplotlib's object API on an Agg canvas.

pyplot keeps global figure state, which is neither thread-safe nor freed unless closed; a
Figure of our own is garbage once this function returns.

matplotlib is imported when the first chart is drawn, not with this module: the admin imports
this module, so every process that starts Django (beat, workers, `manage.py cleanup`) would
otherwise pay about 0.4 s and 50 MB of memory for charts it never draws.
"""

from io import BytesIO

WIDTH_INCHES, HEIGHT_INCHES, DPI = 7, 3.2, 96


class ChartError(ValueError):
    pass


def chart_png(*, kind: str, columns: list[str], rows: list[tuple], x: str, y: str, title: str) -> bytes:
    for name in (x, y):
        if name not in columns:
            raise ChartError(f"The chart's column {name!r} is not in the result; its columns are {', '.join(columns)}.")
    x_at, y_at = columns.index(x), columns.index(y)
    try:
        values = [float(row[y_at]) if row[y_at] is not None else float("nan") for row in rows]
    except (TypeError, ValueError):
        raise ChartError(f"The chart's y column {y!r} holds values that are not numbers.") from None
    labels = [str(row[x_at]) for row in rows]
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH_INCHES, HEIGHT_INCHES), dpi=DPI)
    # Fixed margins that fit rotated tick labels: a layout engine would cost a third of the
    # chart's drawing time on every render.
    figure.subplots_adjust(left=0.11, right=0.98, top=0.9, bottom=0.3)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if kind == "bar":
        axes.bar(range(len(values)), values, color="#417690")
    else:
        axes.plot(range(len(values)), values, color="#417690", marker="o" if len(values) < 40 else None)
    # At most about 12 tick labels, so long x axes stay readable.
    step = max(1, len(labels) // 12)
    # Every label is query data or a name someone typed, drawn as written: matplotlib reads text
    # between two "$" as math, and "$$" or deeply nested braces raised (ValueError, RecursionError)
    # or drew "$5 and $7" as a formula.
    literal = {"parse_math": False}
    axes.set_xticks(range(0, len(labels), step), labels[::step], rotation=30, ha="right", fontsize=8, **literal)
    axes.set_xlabel(x, **literal)
    axes.set_ylabel(y, **literal)
    axes.set_title(title, fontsize=10, **literal)
    axes.grid(axis="y", alpha=0.3)
    buffer = BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
