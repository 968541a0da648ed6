"""The dashboard's SVG charts: axes a person can read (a single point never gets a four-year
axis), a hover title with the exact value on every point, escaped text, empty states."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

import pytest

from aivo.api.plots import (Point, Series, Threshold, bar_chart, chart, format_value, histogram, line_chart,
                            nice_ticks, time_domain, time_ticks)

UTC = timezone.utc
T0 = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)


def _svg(html: str) -> ET.Element:
    return ET.fromstring(html[html.index("<svg"):html.index("</svg>") + 6])


def _titles(html: str) -> list[str]:
    root = _svg(html)
    return [t.text for t in root.iter("{http://www.w3.org/2000/svg}title")]


def _tick_labels(html: str) -> list[str]:
    return [t.text for t in _svg(html).iter("{http://www.w3.org/2000/svg}text") if t.get("class") == "tick"]


def test_one_point_gets_an_hour_either_side_not_years():
    lo, hi = time_domain([T0])
    assert (lo, hi) == (T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    html = chart(series=[Series("AUC", [Point(T0, 0.71, "aivo-main-v1")])], ylabel="AUC")
    labels = _tick_labels(html)
    assert not any(re.fullmatch(r"\d{4}", label) for label in labels), labels  # no bare years
    assert any(":" in label for label in labels)  # hours of that day
    assert "AUC: 0.7100 at 2026-03-04 10:00 UTC (aivo-main-v1)" in _titles(html)


@pytest.mark.parametrize("span, fmt", [(timedelta(minutes=20), r"\d\d:\d\d"), (timedelta(days=3), r"[A-Z][a-z]{2} \d\d"),
                                       (timedelta(days=300), r"\d{4}-\d\d"), (timedelta(days=2000), r"\d{4}")])
def test_time_ticks_follow_the_span(span, fmt):
    ticks = time_ticks(T0, T0 + span)
    assert 2 <= len(ticks) <= 7
    assert all(T0 <= t <= T0 + span for t, _ in ticks)
    assert any(re.search(fmt, label) for _, label in ticks), ticks


def test_nice_ticks_cover_the_range_with_round_steps():
    ticks = nice_ticks(0.6213, 0.7391)
    assert ticks[0] <= 0.6213 and ticks[-1] >= 0.7391 - 1e-9
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:])}
    assert len(steps) == 1 and steps.pop() in (0.01, 0.02, 0.025, 0.05)


def test_every_point_has_its_exact_value_on_hover_and_text_is_escaped():
    points = [Point(T0 + timedelta(hours=i), v, f"<b>v{i}</b>") for i, v in enumerate([0.61234, 0.7, None, 0.65])]
    html = chart(series=[Series("a & b", points)], ylabel="score <x>", thresholds=[Threshold(0.15, "threshold")])
    titles = _titles(html)
    assert "a &amp; b" not in html.split("<svg")[0]
    assert "a & b: 0.6123 at 2026-03-04 10:00 UTC (<b>v0</b>)" in titles  # parsed: the markup was escaped
    assert "<b>" not in html
    assert "threshold: 0.1500" in titles
    assert sum(t.startswith("a & b:") for t in titles) == 3  # the None is a gap, not a point
    assert html.count("<polyline") == 1  # the gap splits the line; the one-point run draws no line


def test_points_outside_the_chosen_range_are_left_out_and_empty_states_say_what_to_do():
    old = Point(T0 - timedelta(days=40), 0.5)
    html = chart(series=[Series("s", [old])], ylabel="y", x_domain=(T0 - timedelta(days=7), T0),
                 empty="Nothing in this range: run a check.")
    assert html == '<p class="empty">Nothing in this range: run a check.</p>'
    assert line_chart(series={"x": ([], [])}, ylabel="y", empty="none yet") == '<p class="empty">none yet</p>'


def test_counts_get_whole_number_ticks_and_histograms_mark_the_budget():
    html = histogram(values=[4.7, 4.7, 4.8, 1.0], xlabel="epsilon", vline=(8.0, "budget"))
    labels = _tick_labels(html)
    assert all("." not in label for label in labels if re.fullmatch(r"[\d.]+", label))
    assert "4 value(s), lowest 1, highest 4.8000" in html and "0 above it" in html
    bars = bar_chart(labels=["grade=3", "grade=4"], values=[], groups={"v1": [0.61, 0.7], "v2": [0.6, None]},
                     ylabel="AUC", y_floor=None)
    assert "grade=3: v1 0.6100" in _titles(bars) and not any("grade=4: v2" in t for t in _titles(bars))


def test_format_value():
    assert format_value(None) == "n/a" and format_value(3.0) == "3" and format_value(0.74999) == "0.7500"
    assert format_value(0.61, 2) == "0.61"
    assert format_value(float("inf")) == "∞" and format_value(1.23e-5) == "1.23e-05"
