"""The dashboard's PNG plots in the console's languages: every word of a Chinese plot is Chinese and drawn with a CJK
font (no "Glyph ... missing" boxes), English without one; numbers are the same in both; ``?lang=`` picks the
language on the console route, keys its cache and refuses what it does not know."""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from matplotlib.figure import Figure
from matplotlib.text import Text

from channels import auth
from channels.ops import OpsOptions, OpsServer, plots, run_ops_server
from channels.ops.plots import LABELS, LANGS, PLOTS, cjk_font, draw_plot, plot_labels, render_plot
from dialogue.types import DashboardStats
from tests.channels.conftest import ConsoleEnv
from tests.channels.test_ops import FakeClock, as_role, clock, error, ops  # noqa: F401 - fixtures

INTENTS = [("order_status", 7), ("greet", 5), ("complain", 2)]
# The words each plot shows (the rates title is a template: its counts are checked apart).
WORDS = {
    "conversations": ("conversations.title", "conversations.y"),
    "rates": ("rates.resolved", "rates.handoff", "rates.fallback", "rates.x"),
    "intents": ("intents.title", "intents.x"),
}


def stats() -> DashboardStats:
    today = dt.date(2025, 3, 14)
    now = dt.datetime(2025, 3, 14, 12, tzinfo=dt.UTC)
    per_day = [(today - dt.timedelta(days=6 - i), n) for i, n in enumerate([3, 0, 5, 2, 8, 1, 4])]
    return DashboardStats(days=7, since=now - dt.timedelta(days=7), until=now, conversations=23, turns=61,
                          per_day=per_day, resolution_rate=0.5, handoff_rate=0.25, fallback_rate=0.125,
                          safety_blocks=3, top_intents=INTENTS, redactions=4)


@pytest.fixture
def cjk() -> str:
    """The CJK font the Chinese plots use; without one these tests skip, except in CI, where it must be installed."""
    font = cjk_font()
    if font is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("no CJK font installed — .ci/run installs fonts-noto-cjk")
        pytest.skip("no CJK font installed (Debian: fonts-noto-cjk)")
    return font


def drawn(fig: Figure) -> list[Text]:
    """The figure's visible, non-empty texts once drawn (tick labels get their text at draw time), asserting that
    drawing needed no glyph the font lacks (matplotlib warns "Glyph ... missing from font(s)" and draws a box)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.canvas.draw()
    missing = [str(w.message) for w in caught if "missing from font" in str(w.message)]
    assert missing == []
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def latin_words(texts: list[str]) -> list[str]:
    """Runs of three or more Latin letters (what the browser test calls English), outside the intents (data)."""
    data = {name for name, _ in INTENTS}
    return [w for t in texts if t not in data for w in re.findall(r"[A-Za-z]{3,}", t)]


# ------------------------------------------------------------------------------------------------ the labels
def test_every_language_has_the_same_labels_and_chinese_has_no_english() -> None:
    assert LANGS == ("en", "zh")
    assert {lang: set(LABELS[lang]) for lang in LANGS} == {lang: set(LABELS["en"]) for lang in LANGS}
    assert latin_words([re.sub(r"\{\w+\}", "", text) for text in LABELS["zh"].values()]) == []  # {safety}: a slot
    assert plot_labels("zh") is LABELS["zh"]


@pytest.mark.parametrize("lang", ["xx", "ZH", "zh-CN", "", "en "])
def test_an_unknown_language_is_a_clear_value_error(lang: str) -> None:
    with pytest.raises(ValueError, match="unknown plot language .* one of en, zh"):
        plot_labels(lang)
    with pytest.raises(ValueError, match="unknown plot language"):
        render_plot(stats(), "rates", lang)


# ------------------------------------------------------------------------------------------------ the figures
@pytest.mark.parametrize("plot", PLOTS)
def test_english_plots_show_the_english_labels(plot: str) -> None:
    texts = [t.get_text() for t in drawn(draw_plot(stats(), plot))]
    assert set(map(LABELS["en"].__getitem__, WORDS[plot])) <= set(texts)
    assert draw_plot(stats(), plot, "en").axes[0].get_title() == draw_plot(stats(), plot).axes[0].get_title()


@pytest.mark.parametrize("plot", PLOTS)
def test_chinese_plots_are_all_chinese_in_a_cjk_font(plot: str, cjk: str) -> None:
    shown = drawn(draw_plot(stats(), plot, "zh"))
    texts = [t.get_text() for t in shown]
    assert set(map(LABELS["zh"].__getitem__, WORDS[plot])) <= set(texts)
    assert latin_words(texts) == []
    for t in shown:
        if re.search(r"[^\x00-\x7f]", t.get_text()):
            assert t.get_fontfamily() == [cjk], t.get_text()


def test_the_rates_title_and_numbers_are_the_same_in_both_languages(cjk: str) -> None:
    en, zh = (draw_plot(stats(), "rates", lang) for lang in LANGS)
    assert en.axes[0].get_title() == "Outcomes (safety blocks: 3, redactions: 4)"
    assert zh.axes[0].get_title() == "会话结果（安全拦截：3，脱敏：4）"
    percents = [[t.get_text() for t in drawn(fig) if t.get_text().endswith("%")] for fig in (en, zh)]
    assert percents[0] == percents[1] == ["50%", "25%", "12%"]
    ticks = [[t.get_text() for t in fig.axes[0].get_xticklabels()] for fig in (en, zh)]
    assert ticks[0] == ticks[1]


def test_the_glyph_check_sees_boxes() -> None:
    """The check of :func:`drawn` works: Chinese in matplotlib's default font is reported missing."""
    fig = draw_plot(stats(), "intents")
    fig.axes[0].set_title(LABELS["zh"]["intents.title"])
    with pytest.raises(AssertionError):
        drawn(fig)


def test_pngs_differ_by_language_and_are_pngs(cjk: str) -> None:
    for plot in PLOTS:
        en, zh = render_plot(stats(), plot), render_plot(stats(), plot, "zh")
        assert en.startswith(b"\x89PNG") and zh.startswith(b"\x89PNG") and en != zh
        assert render_plot(stats(), plot, "en") == en


# ------------------------------------------------------------------------------------------------ without a font
def test_without_a_cjk_font_chinese_plots_are_english(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plots, "cjk_font", lambda: None)
    for plot in PLOTS:
        texts = [t.get_text() for t in drawn(draw_plot(stats(), plot, "zh"))]  # and no boxes
        assert set(map(LABELS["en"].__getitem__, WORDS[plot])) <= set(texts)
        assert render_plot(stats(), plot, "zh") == render_plot(stats(), plot, "en")


def test_a_missing_font_is_looked_up_once_and_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    absent = (f"No Such Font {uuid.uuid4().hex}",)
    with caplog.at_level(logging.WARNING, logger="channels.ops.plots"):
        assert cjk_font(absent) is None
        assert cjk_font(absent) is None
    warned = [r for r in caplog.records if r.name == "channels.ops.plots"]
    assert len(warned) == 1 and "fonts-noto-cjk" in warned[0].getMessage()


def test_the_installed_font_is_found_by_matplotlib(cjk: str) -> None:
    from matplotlib import font_manager

    assert cjk in plots.CJK_FONTS
    assert font_manager.findfont(cjk, fallback_to_default=False)


# ------------------------------------------------------------------------------------------------ the route
@pytest_asyncio.fixture(loop_scope="session")
async def cached_ops(console_env: ConsoleEnv, clock: FakeClock) -> AsyncIterator[OpsServer]:  # noqa: F811
    """A console that caches the plots (the ``ops`` fixture does not), to check the cache key holds the language."""
    options = OpsOptions(login_limit=auth.RateLimit(max_failures=5, window=300), plot_cache_seconds=300)
    async with run_ops_server(console_env.console, port=0, options=options, clock=clock) as server:
        yield server


async def test_the_route_draws_each_language(ops: OpsServer, console_env: ConsoleEnv, cjk: str) -> None:  # noqa: F811
    await console_env.chat("hello", "where is my order 10234")
    viewer = await as_role(ops, "viewer")
    for plot in PLOTS:
        res = {lang: await viewer.get(f"/api/dashboard/{plot}.png?days=7&lang={lang}") for lang in LANGS}
        assert [r.status_code for r in res.values()] == [200, 200]
        assert all(r.headers["content-type"] == "image/png" for r in res.values())
        assert res["zh"].content.startswith(b"\x89PNG") and res["zh"].content != res["en"].content
        assert (await viewer.get(f"/api/dashboard/{plot}.png?days=7")).content == res["en"].content  # default
    await viewer.aclose()


@pytest.mark.parametrize("lang", ["xx", "ZH", "zh-CN", ""])
async def test_the_route_refuses_an_unknown_language(ops: OpsServer, lang: str) -> None:  # noqa: F811
    viewer = await as_role(ops, "viewer")
    res = await viewer.get(f"/api/dashboard/rates.png?days=7&lang={lang}")
    assert res.status_code == 400 and error(res) == "bad_request"
    assert "lang" in res.json()["error"]["message"]
    await viewer.aclose()


async def test_the_cache_keeps_one_png_per_language(cached_ops: OpsServer, console_env: ConsoleEnv,
                                                    cjk: str) -> None:
    await console_env.chat("hello")
    viewer = await as_role(cached_ops, "viewer")
    en = (await viewer.get("/api/dashboard/intents.png?days=7&lang=en")).content
    zh = (await viewer.get("/api/dashboard/intents.png?days=7&lang=zh")).content
    assert en != zh
    assert (await viewer.get("/api/dashboard/intents.png?days=7&lang=en")).content == en
    assert (await viewer.get("/api/dashboard/intents.png?days=7&lang=zh")).content == zh
    await viewer.aclose()


@pytest.fixture(autouse=True)
def _no_stray_pyplot() -> Iterator[None]:
    """The plots never touch pyplot's global state (they are drawn in worker threads)."""
    import sys

    had = "matplotlib.pyplot" in sys.modules
    yield
    assert had or "matplotlib.pyplot" not in sys.modules
