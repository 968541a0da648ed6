"""Charts for the dashboard as inline SVG, drawn here from plain numbers: no JavaScript, no
external file, no CDN. Every point carries a `<title>` (the browser shows it on hover) with its
exact value, so a chart is readable to the digit; the SVG scales to its container (viewBox,
width 100%), and the legend is HTML under it, so it wraps on a phone.

    line_chart(series=[Series("test AUC", points=[Point(x, y, "aivo-main-v1")])], ylabel="AUC")

x values are datetimes (a time axis with calendar ticks: minutes to years, never a four-year axis
for one point) or numbers (epochs, rounds). Each function returns an HTML fragment: a `<figure>`
with the SVG, or a short note saying what to do when there is nothing to draw. Other packages
may use these for their dashboard panels (ApiHooks.dashboard_panels).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

WIDTH, HEIGHT = 560, 250
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 58, 16, 14, 40
COLORS = ("#2f6db5", "#d9822b", "#3a9a5b", "#b53f3f", "#7a5cb5", "#5c5c5c", "#1f9aa5", "#a5661f")
THRESHOLD_COLOR = "#b53f3f"
_TIME_STEPS = [60 * m for m in (1, 2, 5, 10, 15, 30)] + [3600 * h for h in (1, 2, 3, 6, 12)] + \
              [86400 * d for d in (1, 2, 7, 14, 30, 91, 182, 365, 730)]
_MAX_TICKS = 6


@dataclass(frozen=True)
class Point:
    x: Any  # datetime (aware or naive UTC) or number
    y: float | None  # None breaks a line
    label: str = ""  # shown on hover after the value (a version name, a decision)


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[Point]
    style: str = "line"  # line | points (markers only) | step
    color: str | None = None
    dashed: bool = False
    marker: str = "circle"  # circle | cross (a rejected or failed item) | ring (an item not taken)


@dataclass(frozen=True)
class Threshold:
    value: float
    label: str
    color: str = THRESHOLD_COLOR


@dataclass
class _Axis:
    lo: float
    hi: float
    ticks: list[tuple[float, str]] = field(default_factory=list)

    def scale(self, value: float, start: float, end: float) -> float:
        span = self.hi - self.lo or 1.0
        return start + (value - self.lo) / span * (end - start)


def empty_note(text: str) -> str:
    return f'<p class="empty">{html.escape(text)}</p>'


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _x_number(value: Any) -> float:
    return _as_utc(value).timestamp() if isinstance(value, datetime) else float(value)


def format_value(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a" if value is None else ("∞" if value > 0 else "-∞")
    if float(value).is_integer() and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.{digits}g}" if abs(value) >= 1e4 or abs(value) < 1e-3 else f"{value:.{digits}f}"


def format_time(value: datetime) -> str:
    return _as_utc(value).strftime("%Y-%m-%d %H:%M UTC")


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten) covering [lo, hi]."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return []
    if hi <= lo:
        hi = lo + (abs(lo) * 0.1 or 1.0)
    raw = (hi - lo) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(lo / step + 1e-9) * step
    ticks, value = [], first
    while len(ticks) < 20:
        ticks.append(round(value, 12))
        if value >= hi - step * 1e-9:
            break
        value += step
    return ticks


def _value_axis(values: Sequence[float], *, include: Sequence[float] = (), floor: float | None = None,
                ceiling: float | None = None, integer: bool = False) -> _Axis:
    data = [v for v in list(values) + list(include) if v is not None and math.isfinite(v)]
    lo, hi = (min(data), max(data)) if data else (0.0, 1.0)
    if hi == lo:
        pad = abs(lo) * 0.05 or 0.5
        lo, hi = lo - pad, hi + pad
    else:
        pad = (hi - lo) * 0.08
        lo, hi = lo - pad, hi + pad
    if floor is not None:
        lo = max(lo, floor)
    if ceiling is not None:
        hi = min(hi, ceiling)
    ticks = nice_ticks(lo, hi)
    if integer and ticks:  # counts: whole-number ticks only
        step = max(1, math.ceil(ticks[1] - ticks[0]) if len(ticks) > 1 else 1)
        ticks = [float(t) for t in range(math.floor(ticks[0]), math.ceil(ticks[-1]) + 1, step)]
    if ticks:
        lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])
    step_digits = _digits(ticks)
    return _Axis(lo, hi, [(t, f"{t:.{step_digits}f}") for t in ticks])


def _digits(ticks: Sequence[float]) -> int:
    """The fewest decimals that write every tick exactly (0.7475 needs 4, 0.75 needs 2)."""
    for digits in range(0, 7):
        if all(abs(round(t, digits) - t) < 1e-9 * max(1.0, abs(t)) for t in ticks):
            return digits
    return 6


def time_domain(xs: Sequence[datetime], *, start: datetime | None = None,
                end: datetime | None = None) -> tuple[datetime, datetime]:
    """The span a time axis shows: the chosen range when given, else the data padded by 5%; one
    point (or points at one instant) gets an hour either side, never years."""
    stamps = sorted(_as_utc(x) for x in xs)
    lo = _as_utc(start) if start is not None else (stamps[0] if stamps else datetime.now(timezone.utc))
    hi = _as_utc(end) if end is not None else (stamps[-1] if stamps else lo)
    if hi <= lo:
        lo, hi = lo - timedelta(hours=1), lo + timedelta(hours=1)
    elif start is None or end is None:
        pad = max((hi - lo) * 0.05, timedelta(minutes=1))
        lo, hi = (lo - pad) if start is None else lo, (hi + pad) if end is None else hi
    return lo, hi


def time_ticks(lo: datetime, hi: datetime) -> list[tuple[datetime, str]]:
    span = (hi - lo).total_seconds()
    step = next((s for s in _TIME_STEPS if span / s <= _MAX_TICKS - 1), _TIME_STEPS[-1])
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    first = math.ceil((lo - epoch).total_seconds() / step) * step
    ticks = []
    value = first
    while value <= (hi - epoch).total_seconds() and len(ticks) < 12:
        ticks.append(epoch + timedelta(seconds=value))
        value += step
    if step >= 365 * 86400:
        fmt = "%Y"
    elif step >= 28 * 86400:
        fmt = "%Y-%m"
    elif step >= 86400:
        fmt = "%b %d"
    else:
        fmt = "%H:%M"
    out = []
    last_day = None
    for tick in ticks:
        label = tick.strftime(fmt)
        if fmt == "%H:%M" and tick.date() != last_day:  # say the day when it changes
            label = tick.strftime("%b %d %H:%M")
            last_day = tick.date()
        out.append((tick, label))
    return out


def _x_axis(series: Sequence[Series], x_domain: tuple[Any, Any] | None) -> tuple[_Axis, bool]:
    xs = [p.x for s in series for p in s.points]
    is_time = bool(xs) and isinstance(xs[0], datetime)
    if is_time:
        start, end = x_domain if x_domain is not None else (None, None)
        lo, hi = time_domain(xs, start=start, end=end)
        return _Axis(lo.timestamp(), hi.timestamp(), [(t.timestamp(), label) for t, label in time_ticks(lo, hi)]), True
    numbers = [float(x) for x in xs]
    lo, hi = (x_domain if x_domain is not None else (min(numbers), max(numbers)))
    if hi <= lo:
        lo, hi = lo - 1, hi + 1
    pad = (hi - lo) * 0.04
    ticks = [t for t in nice_ticks(lo, hi, 6) if lo - 1e-9 <= t <= hi + 1e-9]
    if all(float(x).is_integer() for x in numbers):
        ticks = [t for t in ticks if float(t).is_integer()]
    return _Axis(lo - pad, hi + pad, [(t, format_value(t)) for t in ticks]), False


def _frame(x: _Axis, y: _Axis, *, ylabel: str, xlabel: str = "") -> list[str]:
    left, right, top, bottom = MARGIN_LEFT, WIDTH - MARGIN_RIGHT, MARGIN_TOP, HEIGHT - MARGIN_BOTTOM
    parts = [f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" class="plot-bg"/>']
    for value, label in y.ticks:
        py = y.scale(value, bottom, top)
        parts.append(f'<line x1="{left}" x2="{right}" y1="{py:.1f}" y2="{py:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{py + 4:.1f}" text-anchor="end" class="tick">{_esc(label)}</text>')
    for value, label in x.ticks:
        px = x.scale(value, left, right)
        parts.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{top}" y2="{bottom}" class="grid"/>')
        parts.append(f'<text x="{px:.1f}" y="{bottom + 16}" text-anchor="middle" class="tick">{_esc(label)}</text>')
    parts.append(f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" class="axis"/>')
    parts.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{bottom}" class="axis"/>')
    parts.append(f'<text x="14" y="{(top + bottom) / 2:.1f}" text-anchor="middle" class="axis-label" '
                 f'transform="rotate(-90 14 {(top + bottom) / 2:.1f})">{_esc(ylabel)}</text>')
    if xlabel:
        parts.append(f'<text x="{(left + right) / 2:.1f}" y="{HEIGHT - 4}" text-anchor="middle" '
                     f'class="axis-label">{_esc(xlabel)}</text>')
    return parts


def _marker(kind: str, px: float, py: float, color: str, title: str) -> str:
    tip = f"<title>{_esc(title)}</title>"
    hit = f'<circle cx="{px:.1f}" cy="{py:.1f}" r="8" class="hit"/>'
    if kind == "cross":
        d = 4.5
        shape = (f'<path d="M{px - d:.1f},{py - d:.1f}L{px + d:.1f},{py + d:.1f}M{px - d:.1f},{py + d:.1f}'
                 f'L{px + d:.1f},{py - d:.1f}" stroke="{color}" stroke-width="2.2" fill="none"/>')
    elif kind == "ring":
        shape = f'<circle cx="{px:.1f}" cy="{py:.1f}" r="4.5" fill="#fff" stroke="{color}" stroke-width="2"/>'
    else:
        shape = f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3.8" fill="{color}"/>'
    return f'<g class="pt">{hit}{shape}{tip}</g>'


def _x_text(value: Any, is_time: bool, xname: str) -> str:
    if is_time:
        return format_time(value)
    return f"{xname} {format_value(float(value))}" if xname else format_value(float(value))


def _swatch(kind: str, color: str) -> str:
    """A legend key as a tiny SVG (presentation attributes only: no inline style, which the
    dashboard's Content-Security-Policy forbids)."""
    if kind == "bar":
        shape = f'<rect x="3" y="1" width="12" height="10" fill="{color}"/>'
    elif kind == "circle":
        shape = f'<circle cx="9" cy="6" r="4" fill="{color}"/>'
    elif kind == "ring":
        shape = f'<circle cx="9" cy="6" r="4" fill="#fff" stroke="{color}" stroke-width="2"/>'
    elif kind == "cross":
        shape = f'<path d="M5,2L13,10M5,10L13,2" stroke="{color}" stroke-width="2.2"/>'
    else:
        dash = ' stroke-dasharray="4 3"' if "dashed" in kind else ""
        shape = f'<line x1="0" x2="18" y1="6" y2="6" stroke="{color}" stroke-width="2.5"{dash}/>'
    return f'<svg class="swatch" width="18" height="12" viewBox="0 0 18 12" aria-hidden="true">{shape}</svg>'


def _legend(entries: Sequence[tuple[str, str, str]]) -> str:
    items = "".join(f"<li>{_swatch(kind, color)}{_esc(name)}</li>" for name, color, kind in entries)
    return f'<figcaption><ul class="legend">{items}</ul></figcaption>' if entries else ""


def _svg(parts: Sequence[str], *, title: str) -> str:
    return (f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{_esc(title)}" '
            f'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMidYMid meet">'
            f'<title>{_esc(title)}</title>{"".join(parts)}</svg>')


def chart(*, series: Sequence[Series], ylabel: str, xlabel: str = "", thresholds: Sequence[Threshold] = (),
          x_domain: tuple[Any, Any] | None = None, y_floor: float | None = None, y_ceiling: float | None = None,
          empty: str = "no data yet", digits: int = 4, xname: str = "", include_zero: bool = False,
          integer: bool = False) -> str:
    """Lines, markers and threshold lines on one pair of axes (the general form of `line_chart`).
    Points outside a chosen `x_domain` are left out; `xname` names numeric x values on hover;
    `include_zero` keeps 0 on the value axis and `integer` writes whole-number ticks (counts)."""
    series = [s for s in series if s.points]
    if x_domain is not None and series and isinstance(series[0].points[0].x, datetime):
        lo, hi = (_as_utc(x_domain[0]), _as_utc(x_domain[1]))
        series = [Series(s.name, [p for p in s.points if lo <= _as_utc(p.x) <= hi], s.style, s.color, s.dashed,
                         s.marker) for s in series]
        series = [s for s in series if s.points]
    values = [p.y for s in series for p in s.points if p.y is not None]
    if not values:
        return empty_note(empty)
    x, is_time = _x_axis(series, x_domain)
    y = _value_axis(values, include=[t.value for t in thresholds] + ([0.0] if include_zero else []), floor=y_floor,
                    ceiling=y_ceiling, integer=integer)
    left, right, top, bottom = MARGIN_LEFT, WIDTH - MARGIN_RIGHT, MARGIN_TOP, HEIGHT - MARGIN_BOTTOM
    parts = _frame(x, y, ylabel=ylabel, xlabel=xlabel)
    legend: list[tuple[str, str, str]] = []
    for index, s in enumerate(series):
        color = s.color or COLORS[index % len(COLORS)]
        coords = [(x.scale(_x_number(p.x), left, right), None if p.y is None else y.scale(p.y, bottom, top), p)
                  for p in s.points]
        coords.sort(key=lambda c: c[0])
        if s.style in ("line", "step"):
            runs: list[list[tuple[float, float]]] = [[]]
            for px, py, _p in coords:
                if py is None:
                    runs.append([])
                    continue
                if s.style == "step" and runs[-1]:
                    runs[-1].append((px, runs[-1][-1][1]))
                runs[-1].append((px, py))
            dash = ' stroke-dasharray="5 4"' if s.dashed else ""
            for run in runs:
                if len(run) > 1:
                    text = " ".join(f"{px:.1f},{py:.1f}" for px, py in run)
                    parts.append(f'<polyline points="{text}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        for px, py, p in coords:
            if py is None:
                continue
            label = f" ({p.label})" if p.label else ""
            title = f"{s.name}: {format_value(p.y, digits)} at {_x_text(p.x, is_time, xname)}{label}"
            parts.append(_marker(s.marker, px, py, color, title))
        legend.append((s.name, color, s.marker if s.style == "points" else "line" + (" dashed" if s.dashed else "")))
    for t in thresholds:
        py = y.scale(t.value, bottom, top)
        parts.append(f'<g class="pt"><line x1="{left}" x2="{right}" y1="{py:.1f}" y2="{py:.1f}" '
                     f'stroke="{t.color}" stroke-width="1.5" stroke-dasharray="6 4"/>'
                     f'<line x1="{left}" x2="{right}" y1="{py:.1f}" y2="{py:.1f}" class="hit-line"/>'
                     f'<title>{_esc(t.label)}: {format_value(t.value, digits)}</title></g>')
        legend.append((f"{t.label} ({format_value(t.value, digits)})", t.color, "line dashed"))
    return f'<figure class="chart">{_svg(parts, title=ylabel)}{_legend(legend)}</figure>'


def line_chart(*, series: Mapping[str, tuple[Sequence[Any], Sequence[float]]], ylabel: str,
               annotate: Mapping[str, Sequence[str]] | None = None, hline: tuple[float, str] | None = None,
               empty: str = "no data yet", x_domain: tuple[Any, Any] | None = None) -> str:
    """One line per series: {label: (x values, y values)}; `annotate` labels points of a series
    (shown on hover). The simple form of `chart`, kept for other packages' panels."""
    built = [Series(name, [Point(x, y, (annotate or {}).get(name, [""] * len(xs))[i]
                                 if i < len((annotate or {}).get(name, ())) else "")
                           for i, (x, y) in enumerate(zip(xs, ys))])
             for name, (xs, ys) in series.items()]
    return chart(series=built, ylabel=ylabel, thresholds=[Threshold(*hline)] if hline else (), empty=empty,
                 x_domain=x_domain)


def bar_chart(*, labels: Sequence[Any], values: Sequence[float], ylabel: str, empty: str = "no data yet",
              groups: Mapping[str, Sequence[float | None]] | None = None, digits: int = 4,
              threshold: Threshold | None = None, y_floor: float | None = 0.0,
              y_ceiling: float | None = None, integer: bool = False) -> str:
    """Bars per label; with `groups` ({series name: one value per label}) grouped bars instead
    of `values` (e.g. per-subgroup AUC of two versions)."""
    columns = dict(groups) if groups is not None else {ylabel: list(values)}
    numbers = [v for vs in columns.values() for v in vs if v is not None]
    if not labels or not numbers:
        return empty_note(empty)
    include = [0.0] if y_floor == 0.0 else []
    y = _value_axis(numbers, include=include + ([threshold.value] if threshold else []), floor=y_floor,
                    ceiling=y_ceiling, integer=integer)
    left, right, top, bottom = MARGIN_LEFT, WIDTH - MARGIN_RIGHT, MARGIN_TOP, HEIGHT - MARGIN_BOTTOM
    slot = (right - left) / len(labels)
    every = max(1, math.ceil(len(labels) / 10))  # at most ~10 labels under the axis
    ticks = _Axis(0, 1, [])
    parts = _frame(ticks, y, ylabel=ylabel)
    width = slot * 0.8 / len(columns)
    legend = []
    base = y.scale(max(y.lo, 0.0), bottom, top)
    for g, (name, vs) in enumerate(columns.items()):
        color = COLORS[g % len(COLORS)]
        legend.append((name, color, "bar"))
        for i, (label, value) in enumerate(zip(labels, vs)):
            if value is None:
                continue
            x0 = left + i * slot + slot * 0.1 + g * width
            py = y.scale(value, bottom, top)
            title = f"{label}: {name} {format_value(value, digits)}" if groups is not None else \
                f"{label}: {format_value(value, digits)}"
            parts.append(f'<g class="pt"><rect x="{x0:.1f}" y="{min(py, base):.1f}" width="{max(width - 1, 1):.1f}" '
                         f'height="{max(abs(base - py), 0.5):.1f}" fill="{color}"/><title>{_esc(title)}</title></g>')
    for i, label in enumerate(labels):
        if i % every == 0:
            cx = left + (i + 0.5) * slot
            parts.append(f'<text x="{cx:.1f}" y="{bottom + 16}" text-anchor="middle" class="tick">'
                         f'{_esc(str(label)[:14])}</text>')
    if threshold is not None:
        py = y.scale(threshold.value, bottom, top)
        parts.append(f'<g class="pt"><line x1="{left}" x2="{right}" y1="{py:.1f}" y2="{py:.1f}" '
                     f'stroke="{THRESHOLD_COLOR}" stroke-width="1.5" stroke-dasharray="6 4"/>'
                     f'<title>{_esc(threshold.label)}: {format_value(threshold.value, digits)}</title></g>')
        legend.append((f"{threshold.label} ({format_value(threshold.value, digits)})", THRESHOLD_COLOR,
                       "line dashed"))
    return (f'<figure class="chart">{_svg(parts, title=ylabel)}'
            f'{_legend(legend if groups is not None or threshold is not None else [])}</figure>')


def histogram(*, values: Sequence[float], xlabel: str, vline: tuple[float, str] | None = None,
              empty: str = "no data yet", bins: int | None = None, ylabel: str = "learners") -> str:
    """Counts of `values` in equal bins; `vline` marks a limit (e.g. the epsilon budget), and the
    bins reach it so that the distance to the limit shows."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return empty_note(empty)
    lo, hi = min(finite), max(finite)
    if vline is not None:
        lo, hi = min(lo, 0.0, vline[0]), max(hi, vline[0])
    if hi <= lo:
        hi = lo + 1.0
    count = bins or min(20, max(5, len(finite) // 5))
    width = (hi - lo) / count
    counts = [0] * count
    for v in finite:
        counts[min(int((v - lo) / width), count - 1)] += 1
    labels = [f"{format_value(lo + i * width, 3)}–{format_value(lo + (i + 1) * width, 3)}" for i in range(count)]
    figure = bar_chart(labels=labels, values=counts, ylabel=ylabel, digits=6, integer=True)
    note = ""
    if vline is not None:
        over = sum(v > vline[0] for v in finite)
        note = (f'<p class="chart-note">{_esc(xlabel)}: {len(finite)} value(s), lowest {format_value(min(finite))}, '
                f'highest {format_value(max(finite))}; {_esc(vline[1])} {format_value(vline[0])}: '
                f'{over} above it.</p>')
    return figure + note
