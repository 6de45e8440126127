"""The numbers staff watch: the dashboard (figures and their PNG plots, cached briefly) and this process's
Prometheus metrics.

Apart from the desk and the review routes because they read aggregates, not conversations, and cost more: a
dashboard query scans a window of days and a plot is rendered with matplotlib, so both are cached.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from channels.backend import ConsoleBackend
from channels.ops.api import ApiError, dashboard_json, json_response
from channels.ops.handlers import Clock, Handlers
from channels.ops.options import OpsOptions
from channels.ops.parsing import bounded_int
from channels.ops.plots import LANGS, PLOTS, plot_labels, render_plot
from dialogue.types import DashboardStats

if TYPE_CHECKING:
    from channels.metrics import Metrics


class Dashboard(Handlers):
    """The dashboard and metrics routes. ``metrics``: the process's chat metrics (``None``: ``/metrics`` is 404)."""

    def __init__(
        self, backend: ConsoleBackend, options: OpsOptions, now: Clock, *, metrics: Metrics | None = None
    ) -> None:
        super().__init__(backend, options, now)
        self.metrics = metrics
        self._cache: dict[tuple[str | int, ...], tuple[float, Any]] = {}
        self._cache_locks: dict[tuple[str | int, ...], asyncio.Lock] = {}

    def _days(self, request: web.Request) -> int:
        default, high = self.options.dashboard_days
        return bounded_int(request.query.get("days"), "days", default, 1, high)

    @staticmethod
    def _lang(request: web.Request) -> str:
        """The plots' language (``?lang=``, the console's: en by default); checked before anything is queried or
        cached, so an unknown one costs nothing and never becomes a cache key."""
        lang = request.query.get("lang", "en")
        try:
            plot_labels(lang)
        except ValueError:
            raise ApiError("bad_request", f"'lang' must be one of {', '.join(LANGS)}") from None
        return lang

    async def _cached(self, key: tuple[str | int, ...], make: Callable[[], Awaitable[Any]]) -> Any:
        """Dashboard numbers and PNGs are recomputed at most every ``plot_cache_seconds`` (three images are
        requested at once; one query and one render each suffice)."""
        lock = self._cache_locks.setdefault(key, asyncio.Lock())
        async with lock:
            hit = self._cache.get(key)
            if hit is not None and time.monotonic() - hit[0] < self.options.plot_cache_seconds:
                return hit[1]
            value = await make()
            self._cache[key] = (time.monotonic(), value)
            return value

    async def _stats(self, days: int) -> DashboardStats:
        async def make() -> DashboardStats:
            return await self.backend.dashboard(days)

        stats: DashboardStats = await self._cached(("stats", days), make)
        return stats

    async def _h_dashboard(self, request: web.Request) -> web.StreamResponse:
        days = self._days(request)
        return json_response({"days": days, **dashboard_json(await self._stats(days))})

    async def _h_dashboard_png(self, request: web.Request) -> web.StreamResponse:
        plot = request.match_info["plot"]
        if plot not in PLOTS:
            raise ApiError("not_found", "no such plot")
        days = self._days(request)
        lang = self._lang(request)
        stats = await self._stats(days)

        async def make() -> bytes:
            return await asyncio.to_thread(render_plot, stats, plot, lang)  # matplotlib: off the event loop

        png: bytes = await self._cached((plot, days, lang), make)
        return web.Response(body=png, headers={"Content-Type": "image/png"})

    async def _h_metrics(self, request: web.Request) -> web.StreamResponse:
        """The Prometheus text of this process's :class:`~channels.metrics.Metrics` (turns, hand-offs, safety blocks,
        errors), or of every worker together when they share a metrics directory (``kefu serve --metrics-dir``):
        staff-only numbers, so they are served here and not on the customer port."""
        if self.metrics is None:
            raise ApiError("not_found", "this process collects no metrics")
        body, content_type = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})
