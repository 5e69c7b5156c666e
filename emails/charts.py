"""The dashboard's line chart, drawn on the server as SVG geometry (no JavaScript library).

``line_chart`` turns the daily series into coordinates; ``templates/emails/_chart.html`` draws
them. Colours come from CSS classes (``series-<name>``), so the page's CSP needs no inline style.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from emails.portal_selectors import SERIES, Day

WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 44, 14, 14, 30
LABELS = {
    "accepted": "Accepted",
    "delivered": "Delivered",
    "opened": "Opened",
    "bounced": "Bounced",
    "complained": "Complained",
}


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    value: int
    day: object


@dataclass(frozen=True)
class Series:
    name: str
    label: str
    points: list[Point]
    total: int

    @property
    def path(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


@dataclass(frozen=True)
class Tick:
    position: float
    label: str
    # SVG text-anchor: the labels at the plot's edges grow inwards so that none is clipped.
    anchor: str = "middle"


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    series: list[Series]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    empty: bool


def _nice_step(maximum: int, ticks: int = 4) -> int:
    """A round step (1, 2 or 5 times a power of ten) so that ``ticks`` steps cover ``maximum``."""
    raw = max(maximum, 1) / ticks
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= raw:
            return max(1, int(factor * magnitude))
    return int(10 * magnitude)


def line_chart(days: list[Day]) -> Chart:
    peak = max((day.counts[name] for day in days for name in SERIES), default=0)
    step = _nice_step(peak)
    top_value = max(step * math.ceil(max(peak, 1) / step), step)
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    count = len(days)

    def x_of(index: int) -> float:
        return LEFT + (plot_w * index / (count - 1) if count > 1 else plot_w / 2)

    def y_of(value: int) -> float:
        return TOP + plot_h - plot_h * value / top_value

    series = [
        Series(
            name=name,
            label=LABELS[name],
            points=[
                Point(x=x_of(i), y=y_of(day.counts[name]), value=day.counts[name], day=day.day)
                for i, day in enumerate(days)
            ],
            total=sum(day.counts[name] for day in days),
        )
        for name in SERIES
    ]
    y_ticks = [
        Tick(position=y_of(value), label=f"{value:,}") for value in range(0, top_value + 1, step)
    ]
    # A label every 7 days, counted back from today so that today is always labelled.
    x_ticks = [
        Tick(
            position=x_of(i),
            label=f"{day.day.day} {day.day:%b}",
            anchor="end" if i == count - 1 else "start" if i == 0 else "middle",
        )
        for i, day in enumerate(days)
        if (count - 1 - i) % 7 == 0
    ]
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=WIDTH - RIGHT,
        top=TOP,
        bottom=HEIGHT - BOTTOM,
        series=series,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        empty=peak == 0,
    )
