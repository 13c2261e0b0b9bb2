"""Pictures drawn on the server: the geometry of bar, column and timeline charts as plain data for
``templates/portal/charts/`` (inline SVG, no script, nothing fetched).

Every chart carries the table it was drawn from (``headers`` and ``rows``): the page shows it under "Show as table",
so the numbers are readable without the picture and without colour (docs/design.md, "Pictures").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

# Series are told apart by their legend and their place in the table, never by colour alone; the classes pick
# colours that stay distinct for the common colour-vision deficiencies (static/portal/charts.css).
SERIES_CLASSES = ("chart-s0", "chart-s1", "chart-s2", "chart-s3", "chart-s4", "chart-s5")

BAR_WIDTH = 360
BAR_LABEL = 120
BAR_ROW = 24
COLUMN_WIDTH = 380
COLUMN_HEIGHT = 160
COLUMN_LEFT = 34
COLUMN_BOTTOM = 22
STRIP_WIDTH = 1080
STRIP_LEFT = 120
STRIP_LANE = 30


@dataclass
class Chart:
    """One picture: what the template draws (``marks``, ``legend``, ``ticks``) and the table behind it."""

    kind: str  # "bars", "columns" or "timeline"
    chart_id: str
    title: str
    summary: str
    headers: list[str]
    rows: list[list]
    width: int
    height: int
    marks: list[dict] = field(default_factory=list)
    legend: list[dict] = field(default_factory=list)
    ticks: list[dict] = field(default_factory=list)
    lanes: list[dict] = field(default_factory=list)
    empty: bool = False

    @property
    def template(self) -> str:
        return f"portal/charts/{self.kind}.html"


def _css(index: int) -> str:
    return SERIES_CLASSES[index % len(SERIES_CLASSES)]


def bars(*, chart_id: str, title: str, rows: Sequence[tuple[str, int]], unit: str = "",
         classes: Sequence[str] | None = None) -> Chart:
    """Horizontal bars, one per ``(label, value)`` row, scaled to the largest value."""
    rows = list(rows)
    largest = max((value for _label, value in rows), default=0) or 1
    span = BAR_WIDTH - BAR_LABEL - 40
    marks = []
    for index, (label, value) in enumerate(rows):
        width = round(span * value / largest) if value else 0
        marks.append({"label": label, "value": value, "y": index * BAR_ROW + 4, "x": BAR_LABEL,
                      "width": max(width, 1 if value else 0), "height": BAR_ROW - 8,
                      "text_x": BAR_LABEL + width + 6, "text_y": index * BAR_ROW + BAR_ROW / 2 + 4,
                      "css": classes[index] if classes else _css(index)})
    total = sum(value for _label, value in rows)
    summary = ", ".join(f"{label}: {value}" for label, value in rows) or "nothing to show"
    return Chart(kind="bars", chart_id=chart_id, title=title, summary=f"{total} {unit}: {summary}".strip(),
                 headers=[title.split(" by ")[-1].capitalize() if " by " in title else "Label", unit.capitalize()
                          or "Count"],
                 rows=[[label, value] for label, value in rows], width=BAR_WIDTH,
                 height=max(len(rows), 1) * BAR_ROW, marks=marks, empty=total == 0)


def columns(*, chart_id: str, title: str, buckets: Sequence[str], series: Sequence[tuple[str, Sequence[int]]],
            unit: str = "", bucket_header: str = "Week", classes: Sequence[str] | None = None,
            width: int = COLUMN_WIDTH, height: int = COLUMN_HEIGHT, labels: int = 5,
            links: Sequence[str | None] | None = None) -> Chart:
    """Stacked columns over ``buckets`` (weeks, days…), one colour per series, with a legend and a total per bucket.
    ``links``: a URL per bucket (or None) that its column leads to, e.g. the rows behind a day."""
    buckets = list(buckets)
    totals = [sum(values[i] for _name, values in series) for i in range(len(buckets))]
    largest = max(totals, default=0) or 1
    plot_width = width - COLUMN_LEFT - 6
    plot_height = height - COLUMN_BOTTOM - 10
    slot = plot_width / max(len(buckets), 1)
    bar = max(slot * 0.7, 2)
    marks = []
    for i, bucket in enumerate(buckets):
        x = COLUMN_LEFT + i * slot + (slot - bar) / 2
        base = height - COLUMN_BOTTOM
        for index, (name, values) in enumerate(series):
            value = values[i]
            if not value:
                continue
            tall = plot_height * value / largest
            base -= tall
            marks.append({"x": round(x, 1), "y": round(base, 1), "width": round(bar, 1), "height": round(tall, 1),
                          "css": classes[index] if classes else _css(index), "label": f"{bucket}: {value} {name}",
                          "href": links[i] if links else None})
    every = max(1, -(-len(buckets) // labels))  # at most ``labels`` labels on the axis
    ticks = [{"x": round(COLUMN_LEFT + i * slot + slot / 2, 1), "label": bucket}
             for i, bucket in enumerate(buckets) if i % every == 0]
    legend = [{"name": name, "css": classes[index] if classes else _css(index), "x": index * 150}
              for index, (name, _values) in enumerate(series)]
    grand = sum(totals)
    parts = ", ".join(f"{name} {sum(values)}" for name, values in series)
    return Chart(kind="columns", chart_id=chart_id, title=title,
                 summary=f"{grand} {unit} in all ({parts}); the most in one {bucket_header.split()[0].lower()}: "
                         f"{max(totals, default=0)}",
                 headers=[bucket_header, *[name for name, _values in series], "Total"],
                 rows=[[bucket, *[values[i] for _name, values in series], totals[i]] for i, bucket in
                       enumerate(buckets)],
                 width=width, height=height + 6, marks=marks, legend=legend, ticks=ticks,
                 lanes=[{"y": height - COLUMN_BOTTOM, "top": 10, "largest": max(totals, default=0)}],
                 empty=grand == 0)


def timeline(*, chart_id: str, title: str, start: datetime, end: datetime,
             lanes: Sequence[tuple[str, Sequence[tuple[datetime, str, int | None]]]], when=str,
             now: datetime | None = None) -> Chart:
    """A strip from ``start`` to ``end`` with one lane per kind of event; an event is ``(at, what, count)`` where a
    count (daily sign-ins, say) draws a bar scaled within its lane and None draws a tick."""
    span = (end - start).total_seconds() or 1
    plot = STRIP_WIDTH - STRIP_LEFT - 10
    drawn = []
    rows = []
    for index, (name, events) in enumerate(lanes):
        top = index * STRIP_LANE + 6
        largest = max((count or 0 for _at, _what, count in events), default=0) or 1
        marks = []
        for at, what, count in events:
            offset = min(max((at - start).total_seconds() / span, 0), 1)
            x = round(STRIP_LEFT + plot * offset, 1)
            if count is None:
                marks.append({"x": x, "y": top + 3, "height": STRIP_LANE - 12, "width": 3, "label": what})
            else:
                height = max(round((STRIP_LANE - 12) * count / largest, 1), 1)
                marks.append({"x": x, "y": round(top + 3 + (STRIP_LANE - 12) - height, 1), "height": height,
                              "width": max(round(plot / max(span / 86400, 1), 1) - 1, 2), "label": what})
            rows.append([at, name, what])
        drawn.append({"name": name, "y": top, "text_y": top + STRIP_LANE / 2 + 2, "css": _css(index),
                      "marks": marks, "count": len(events)})
    rows.sort(key=lambda row: row[0])
    days = max(int(span // 86400), 1)
    step = max(1, days // 6)
    ticks = []
    for n in range(0, days + 1, step):
        at = start + timedelta(days=n)
        x = round(STRIP_LEFT + plot * min((at - start).total_seconds() / span, 1), 1)
        ticks.append({"x": x, "label": at.date().isoformat() if isinstance(at, datetime) else str(at),
                      "anchor": "end" if x > STRIP_WIDTH - 50 else "middle"})
    summary = ", ".join(f"{lane['count']} {lane['name'].lower()}" for lane in drawn)
    return Chart(kind="timeline", chart_id=chart_id, title=title,
                 summary=f"From {when(start)} to {when(end)}: {summary}",
                 headers=["When", "What", "Detail"], rows=[[when(at), name, what] for at, name, what in rows],
                 width=STRIP_WIDTH, height=len(lanes) * STRIP_LANE + 40, lanes=drawn, ticks=ticks,
                 legend=[{"y": len(lanes) * STRIP_LANE + 8,
                          "now_x": round(STRIP_LEFT + plot * min(max((now - start).total_seconds() / span, 0), 1), 1)
                          if now else None}], empty=not rows)


def week_buckets(start: date, weeks: int) -> list[date]:
    """The first day of each of ``weeks`` weeks from ``start``."""
    return [start + timedelta(weeks=n) for n in range(weeks)]


def bucket_index(start: datetime, at: datetime, size: timedelta, count: int) -> int | None:
    """Which of ``count`` buckets of ``size`` from ``start`` holds ``at`` (None outside)."""
    index = int((at - start) // size)
    return index if 0 <= index < count else None
