"""Small SVG charts for the dashboard, drawn with matplotlib's object API (no pyplot, no global
state, safe in worker threads) and embedded inline: the page needs no external file or CDN.

Each function returns an `<svg>` element as text, or a short HTML note when there is nothing to
draw. Other packages may use them for their dashboard panels (ApiHooks.dashboard_panels).
"""

from __future__ import annotations

import html
import io
from collections.abc import Mapping, Sequence
from typing import Any

_WIDTH, _HEIGHT = 6.4, 2.8
_COLORS = ("#2f6db5", "#d9822b", "#3a9a5b", "#b53f3f", "#7a5cb5", "#5c5c5c")


def empty_note(text: str) -> str:
    return f'<p class="empty">{html.escape(text)}</p>'


def _figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(_WIDTH, _HEIGHT), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.grid(True, alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig, ax


def _svg(fig) -> str:
    from matplotlib import rc_context

    fig.tight_layout()
    buffer = io.StringIO()
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "aivo"}):  # text stays text; stable ids
        fig.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: inline SVG in HTML


def line_chart(*, series: Mapping[str, tuple[Sequence[Any], Sequence[float]]], ylabel: str,
               annotate: Mapping[str, Sequence[str]] | None = None, hline: tuple[float, str] | None = None,
               empty: str = "no data yet") -> str:
    """One line per series: {label: (x values, y values)}; `annotate` labels points of a series."""
    if not any(len(xs) for xs, _ys in series.values()):
        return empty_note(empty)
    fig, ax = _figure()
    for color, (label, (xs, ys)) in zip(_COLORS * 4, series.items()):
        ax.plot(list(xs), list(ys), marker="o", markersize=4, linewidth=1.5, color=color, label=label)
        for x, y, text in zip(xs, ys, (annotate or {}).get(label, ())):
            if text:
                ax.annotate(text, (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    if hline is not None:
        ax.axhline(hline[0], color="#b53f3f", linestyle="--", linewidth=1, label=hline[1])
    ax.set_ylabel(ylabel)
    if len(series) > 1 or hline is not None:
        ax.legend(fontsize=8, frameon=False)
    fig.autofmt_xdate()
    return _svg(fig)


def bar_chart(*, labels: Sequence[Any], values: Sequence[float], ylabel: str, empty: str = "no data yet") -> str:
    if not len(values):
        return empty_note(empty)
    fig, ax = _figure()
    ax.bar(list(labels), list(values), color=_COLORS[0])
    ax.set_ylabel(ylabel)
    fig.autofmt_xdate()
    return _svg(fig)


def histogram(*, values: Sequence[float], xlabel: str, vline: tuple[float, str] | None = None,
              empty: str = "no data yet") -> str:
    if not len(values):
        return empty_note(empty)
    fig, ax = _figure()
    ax.hist(list(values), bins=min(30, max(5, len(values) // 5)), color=_COLORS[0])
    if vline is not None:
        ax.axvline(vline[0], color="#b53f3f", linestyle="--", linewidth=1, label=vline[1])
        ax.legend(fontsize=8, frameon=False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("learners")
    return _svg(fig)
