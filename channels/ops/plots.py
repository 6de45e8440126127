"""The dashboard's images: one PNG per plot of :data:`PLOTS`, drawn from :class:`~dialogue.types.DashboardStats`,
in one of the console's languages (:data:`LABELS`).

Apart from the handlers because it is CPU work with matplotlib (imported on first use, so starting the console
does not load it); the dashboard handler runs it in a worker thread and caches the bytes.

Chinese needs a CJK font (Debian's ``fonts-noto-cjk``): it is found once (:func:`cjk_font`) and given to each text
of that figure only, never through matplotlib's global ``rcParams`` (figures are drawn in several threads at once).
Without one, a Chinese plot is drawn with the English labels rather than with boxes for missing glyphs.
"""

from __future__ import annotations

import functools
import io
import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from dialogue.types import DashboardStats

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

PLOTS: Final = ("conversations", "rates", "intents")

# Every word the plots show, per console language (channels/static/ops/i18n.js has the page's own strings; these
# are drawn into the PNG, so the server holds them). Numbers, percentages, dates and intent names are not text.
LABELS: Final[Mapping[str, Mapping[str, str]]] = {
    "en": {
        "conversations.title": "Conversations per day",
        "conversations.y": "conversations",
        "rates.title": "Outcomes (safety blocks: {safety}, redactions: {redactions})",
        "rates.resolved": "resolved by the bot",
        "rates.handoff": "handed to a human",
        "rates.fallback": "fallback replies",
        "rates.x": "% of conversations (fallbacks: % of customer turns)",
        "intents.title": "Top intents",
        "intents.x": "conversations",
    },
    "zh": {
        "conversations.title": "每日会话数",
        "conversations.y": "会话数",
        "rates.title": "会话结果（安全拦截：{safety}，脱敏：{redactions}）",
        "rates.resolved": "由机器人解决",
        "rates.handoff": "转人工",
        "rates.fallback": "兜底回复",
        "rates.x": "会话占比 %（兜底回复：占客户发言轮次的 %）",
        "intents.title": "热门意图",
        "intents.x": "会话数",
    },
}
LANGS: Final = tuple(LABELS)
# Fonts with the Chinese glyphs, best first: Debian's fonts-noto-cjk (the SC face, or the JP one, which has the same
# glyphs), Adobe's name for the same font, and WenQuanYi (fonts-wqy-zenhei).
CJK_FONTS: Final = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC", "WenQuanYi Zen Hei")

_font_lock = threading.Lock()


def plot_labels(lang: str) -> Mapping[str, str]:
    """The plots' words in ``lang`` (one of :data:`LANGS`); anything else is a :class:`ValueError`."""
    labels = LABELS.get(lang)
    if labels is None:
        raise ValueError(f"unknown plot language {lang!r}: one of {', '.join(LANGS)}")
    return labels


def cjk_font(candidates: tuple[str, ...] = CJK_FONTS) -> str | None:
    """The first installed font family of ``candidates``, or ``None`` (then one warning is logged). Looked up once:
    under a lock, because the three plots of a page are drawn in three threads at once."""
    with _font_lock:
        return _find_font(candidates)


@functools.cache
def _find_font(candidates: tuple[str, ...]) -> str | None:
    from matplotlib import font_manager

    installed = {entry.name for entry in font_manager.fontManager.ttflist}
    found = next((name for name in candidates if name in installed), None)
    if found is None:
        log.warning("no CJK font installed (one of %s, e.g. Debian's fonts-noto-cjk): the dashboard's Chinese "
                    "plots are drawn with English labels", ", ".join(candidates))
    return found


def draw_plot(stats: DashboardStats, plot: str, lang: str = "en") -> Figure:
    """The figure of one dashboard plot in ``lang`` (matplotlib's object API on the Agg canvas: thread-safe, no
    pyplot state). Apart from :func:`render_plot` so tests can read its texts."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if plot not in PLOTS:
        raise ValueError(f"unknown plot {plot!r}")
    labels = plot_labels(lang)
    font = cjk_font() if lang == "zh" else None
    if lang == "zh" and font is None:
        labels = plot_labels("en")  # English, not boxes
    text: dict[str, Any] = {"fontfamily": font} if font else {}

    fig = Figure(figsize=(6.4, 3.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    accent = "#0f766e"
    if plot == "conversations":
        days = [d for d, _ in stats.per_day]
        counts = [n for _, n in stats.per_day]
        ax.bar(range(len(days)), counts, color=accent)
        step = max(1, len(days) // 8)
        ax.set_xticks(range(0, len(days), step), [str(d)[5:] for d in days[::step]])
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(labels["conversations.title"], **text)
        ax.set_ylabel(labels["conversations.y"], **text)
    elif plot == "rates":
        names = [labels["rates.resolved"], labels["rates.handoff"], labels["rates.fallback"]]
        values = [stats.resolution_rate, stats.handoff_rate, stats.fallback_rate]
        bars = ax.barh(names, [v * 100 for v in values], color=[accent, "#b45309", "#6b7280"])
        ax.bar_label(bars, labels=[f"{v:.0%}" for v in values], padding=3, **text)
        ax.set_xlim(0, 110)
        ax.invert_yaxis()
        ax.set_title(labels["rates.title"].format(safety=stats.safety_blocks, redactions=stats.redactions), **text)
        ax.set_xlabel(labels["rates.x"], **text)
    else:  # intents
        names = [i for i, _ in stats.top_intents][::-1]
        counts = [n for _, n in stats.top_intents][::-1]
        ax.barh(names, counts, color=accent)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(labels["intents.title"], **text)
        ax.set_xlabel(labels["intents.x"], **text)
    if font:
        ax.tick_params(labelfontfamily=font)  # the outcome names are tick labels
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig


def render_plot(stats: DashboardStats, plot: str, lang: str = "en") -> bytes:
    """One dashboard PNG in ``lang`` (``ValueError`` for an unknown plot or language)."""
    buf = io.BytesIO()
    draw_plot(stats, plot, lang).savefig(buf, format="png")
    return buf.getvalue()
