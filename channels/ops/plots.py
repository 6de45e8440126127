"""The dashboard's images: one PNG per plot of :data:`PLOTS`, drawn from :class:`~dialogue.types.DashboardStats`.

Apart from the handlers because it is CPU work with matplotlib (imported on first use, so starting the console
does not load it); the dashboard handler runs it in a worker thread and caches the bytes.
"""

from __future__ import annotations

import io
from typing import Final

from dialogue.types import DashboardStats

PLOTS: Final = ("conversations", "rates", "intents")


def render_plot(stats: DashboardStats, plot: str) -> bytes:
    """One dashboard PNG (matplotlib's object API on the Agg canvas: thread-safe, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    accent = "#0f766e"
    from matplotlib.ticker import MaxNLocator

    if plot == "conversations":
        days = [d for d, _ in stats.per_day]
        counts = [n for _, n in stats.per_day]
        ax.bar(range(len(days)), counts, color=accent)
        step = max(1, len(days) // 8)
        ax.set_xticks(range(0, len(days), step), [str(d)[5:] for d in days[::step]])
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title("Conversations per day")
        ax.set_ylabel("conversations")
    elif plot == "rates":
        names = ["resolved by the bot", "handed to a human", "fallback replies"]
        values = [stats.resolution_rate, stats.handoff_rate, stats.fallback_rate]
        bars = ax.barh(names, [v * 100 for v in values], color=[accent, "#b45309", "#6b7280"])
        ax.bar_label(bars, labels=[f"{v:.0%}" for v in values], padding=3)
        ax.set_xlim(0, 110)
        ax.invert_yaxis()
        ax.set_title(f"Outcomes (safety blocks: {stats.safety_blocks}, redactions: {stats.redactions})")
        ax.set_xlabel("% of conversations (fallbacks: % of customer turns)")
    elif plot == "intents":
        names = [i for i, _ in stats.top_intents][::-1]
        counts = [n for _, n in stats.top_intents][::-1]
        ax.barh(names, counts, color=accent)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title("Top intents")
        ax.set_xlabel("conversations")
    else:
        raise ValueError(f"unknown plot {plot!r}")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
