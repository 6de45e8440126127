"""The ops console's reads: the conversation list, counts, the hand-off queue and the dashboard.

The console reads conversations by facts that otherwise live in the event log, so these queries read only the
snapshot row's denormalised columns (kept by every write path, see :mod:`dialogue.store.turns`) and
``conversation_intents``; no query here reads events except the dashboard's first-response times. The list pages by
keyset on ``(updated_at, id)`` behind an opaque cursor (:func:`encode_cursor` / :func:`decode_cursor`), which stays
as fast on page 2,000 as on page 1. Nothing here writes.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from dialogue import types as ev
from dialogue.errors import InvalidQuery
from dialogue.store.database import Database
from dialogue.store.rows import _SUMMARY_COLUMNS, _aware, _dumps, _now, _row_to_summary
from dialogue.store.rules import _MAX_LIST, RESOLVED_STATUS, _clean_tag
from dialogue.store.schema import conversation_intents, conversations, events
from dialogue.types import (
    HANDOFF_AGENT,
    HANDOFF_FILTERS,
    HANDOFF_NONE,
    HANDOFF_WAITING,
    ConversationFilter,
    ConversationPage,
    ConversationSummary,
    DashboardStats,
)


def _median(values: Sequence[float]) -> float | None:
    """The median of ``values`` (the mean of the middle two for an even count), ``None`` for none."""
    ordered = sorted(values)
    n = len(ordered)
    if not n:
        return None
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def encode_cursor(updated_at: dt.datetime, conversation_id: str) -> str:
    """The opaque cursor that continues a listing after the conversation ``(updated_at, id)``."""
    raw = _dumps([_aware(updated_at).isoformat(), conversation_id]).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    """Inverse of :func:`encode_cursor`; :class:`~dialogue.errors.InvalidQuery` on anything malformed."""
    try:
        if len(cursor) > 512:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw.decode("utf-8"))
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
            raise ValueError("not a pair of strings")
        return _aware(dt.datetime.fromisoformat(value[0])), value[1]
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidQuery("malformed cursor", operation="list_conversations") from None


class ConsoleQueries(Database):
    """Read-only queries of the ops console (list, filters, queue, dashboard) over the snapshot rows."""

    async def list_conversations(
        self,
        filter: ConversationFilter | None = None,
        limit: int = 50,
        cursor: str | None = None,
        *,
        offset: int = 0,
        low_confidence_below: float = 0.5,
    ) -> ConversationPage:
        """Conversations matching ``filter``, most recently active first (ties broken by id, so pages are stable).

        Pagination is by keyset: pass the page's ``next_cursor`` as ``cursor`` for the next page. A page costs
        the same however deep it is (an index range scan on ``(updated_at, id)``), and a conversation that moves
        to the top while someone pages is not shown twice. ``offset`` is the old way (``limit``/``offset``), kept
        for callers that page by number; it cannot be combined with a cursor. Raises
        :class:`~dialogue.errors.InvalidQuery` for a bad limit, offset, cursor or filter value.
        """
        if not 1 <= limit <= _MAX_LIST:
            raise InvalidQuery(f"limit must be in 1..{_MAX_LIST}, got {limit}", operation="list_conversations")
        if offset < 0:
            raise InvalidQuery(f"offset must be >= 0, got {offset}", operation="list_conversations")
        if offset and cursor is not None:
            raise InvalidQuery("pass a cursor or an offset, not both", operation="list_conversations")
        c = conversations.c
        query = sa.select(*_SUMMARY_COLUMNS).where(*self._conditions(filter, low_confidence_below))
        if cursor is not None:
            updated_at, after_id = decode_cursor(cursor)
            # A row-value comparison is one index range on (updated_at, id) (PostgreSQL, SQLite >= 3.15).
            query = query.where(sa.tuple_(c.updated_at, c.id) < sa.tuple_(updated_at, after_id))
        query = query.order_by(c.updated_at.desc(), c.id.desc()).limit(limit + 1).offset(offset)
        async with self._read("list_conversations") as conn:
            rows = (await conn.execute(query)).all()
        items = [_row_to_summary(r) for r in rows[:limit]]
        more = len(rows) > limit
        return ConversationPage(
            items=items, next_cursor=encode_cursor(items[-1].updated_at, items[-1].id) if more else None
        )

    def _conditions(self, f: ConversationFilter | None, low_confidence_below: float) -> list[sa.ColumnElement[bool]]:
        """The WHERE clauses of a filter; every one of them can use an index or is a cheap row check."""
        if f is None:
            return []
        c = conversations.c
        where: list[sa.ColumnElement[bool]] = []
        for value, column, op in (
            (f.since, c.updated_at, "ge"),
            (f.until, c.updated_at, "lt"),
            (f.created_since, c.created_at, "ge"),
            (f.created_until, c.created_at, "lt"),
        ):
            if value is not None:
                if not isinstance(value, dt.datetime):
                    raise InvalidQuery("time bounds must be datetimes", operation="list_conversations")
                where.append(column >= _aware(value) if op == "ge" else column < _aware(value))
        if f.language is not None:
            where.append(c.language == f.language)
        if f.intent is not None:
            ci = conversation_intents.c
            where.append(sa.exists().where(ci.conversation_id == c.id, ci.intent == f.intent))
        if f.low_confidence is not None:
            low = c.min_confidence < low_confidence_below
            where.append(low if f.low_confidence else sa.or_(c.min_confidence.is_(None), sa.not_(low)))
        if f.fallback is not None:
            where.append(c.fallbacks > 0 if f.fallback else c.fallbacks == 0)
        if f.safety is not None:
            where.append(c.safety_flags > 0 if f.safety else c.safety_flags == 0)
        if f.handoff is not None:
            if f.handoff not in HANDOFF_FILTERS:
                raise InvalidQuery(
                    f"handoff must be one of {', '.join(HANDOFF_FILTERS)}, got {f.handoff!r}",
                    operation="list_conversations",
                )
            if f.handoff == "any":
                where.append(c.handoff_status.in_((HANDOFF_WAITING, HANDOFF_AGENT)))
            elif f.handoff == "none":
                where.append(c.handoff_status == HANDOFF_NONE)
            else:
                where.append(c.handoff_status == f.handoff)
        if f.tag is not None:
            tag = _clean_tag(f.tag)
            if self._dialect == "postgresql":
                where.append(sa.type_coerce(c.tags, postgresql.JSONB()).contains([tag]))
            else:
                each = sa.func.json_each(c.tags).table_valued("value")
                where.append(sa.exists().select_from(each).where(each.c.value == tag))
        if f.reviewed is not None:
            where.append(c.reviewed.is_(f.reviewed))
        if f.flagged is not None:
            where.append(c.flagged.is_(f.flagged))
        if f.assignee is not None:
            where.append(c.assignee == f.assignee)
        if f.assigned is not None:
            where.append(c.assignee.is_not(None) if f.assigned else c.assignee.is_(None))
        if f.query is not None and f.query.strip():
            # search_text is stored lower-cased (Unicode-aware, in Python), so LIKE on it is case-insensitive
            # everywhere; autoescape makes % and _ in the query literal.
            where.append(c.search_text.contains(f.query.strip().lower(), autoescape=True))
        return where

    async def count_conversations(
        self, filter: ConversationFilter | None = None, *, low_confidence_below: float = 0.5
    ) -> int:
        """How many conversations match ``filter`` (all of them by default)."""
        query = sa.select(sa.func.count()).select_from(conversations)
        query = query.where(*self._conditions(filter, low_confidence_below))
        async with self._read("count_conversations") as conn:
            return int((await conn.execute(query)).scalar_one())

    async def summary(self, conversation_id: str) -> ConversationSummary | None:
        """The console row of one conversation, or ``None``."""
        query = sa.select(*_SUMMARY_COLUMNS).where(conversations.c.id == conversation_id)
        async with self._read("summary", conversation_id) as conn:
            row = (await conn.execute(query)).first()
        return _row_to_summary(row) if row is not None else None

    async def conversation_intents(self, conversation_id: str) -> list[str]:
        """Every intent seen in the conversation, sorted."""
        ci = conversation_intents.c
        query = sa.select(ci.intent).where(ci.conversation_id == conversation_id).order_by(ci.intent)
        async with self._read("conversation_intents", conversation_id) as conn:
            return [str(v) for v in (await conn.execute(query)).scalars()]

    async def handoff_statuses(self, conversation_ids: Sequence[str]) -> dict[str, str]:
        """``{id: handoff_status}`` for those of ``conversation_ids`` that are ``waiting`` or with an ``agent``,
        and ``{id: "resolved"}`` for those resolved and not yet rated (their ``resolved`` event is what the widget
        turns into a rating prompt); others are left out: one query for every open socket of a chat server, which
        then polls only these."""
        ids = list(dict.fromkeys(conversation_ids))
        if not ids:
            return {}
        if len(ids) > _MAX_LIST:
            raise InvalidQuery(f"at most {_MAX_LIST} ids per call", operation="handoff_statuses")
        c = conversations.c
        awaiting_rating = sa.and_(c.resolved_at.is_not(None), c.rating.is_(None))
        query = sa.select(c.id, c.handoff_status).where(
            c.id.in_(ids), sa.or_(c.handoff_status != HANDOFF_NONE, awaiting_rating)
        )
        async with self._read("handoff_statuses") as conn:
            return {str(i): str(st) or RESOLVED_STATUS for i, st in (await conn.execute(query)).all()}

    async def handoff_queue(
        self, limit: int = 100, filter: ConversationFilter | None = None
    ) -> list[ConversationSummary]:
        """Conversations that need or have a human: waiting ones first (longest waiting first), then those an
        agent holds (oldest take-over first). ``filter`` narrows it (the inbox's views: ``assignee`` /
        ``assigned``); its ``handoff`` cannot widen it."""
        if not 1 <= limit <= _MAX_LIST:
            raise InvalidQuery(f"limit must be in 1..{_MAX_LIST}, got {limit}", operation="handoff_queue")
        c = conversations.c
        waiting_first = sa.case((c.handoff_status == HANDOFF_WAITING, 0), else_=1)
        query = (
            sa.select(*_SUMMARY_COLUMNS)
            .where(c.handoff_status.in_((HANDOFF_WAITING, HANDOFF_AGENT)), *self._conditions(filter, 0.5))
            .order_by(waiting_first, c.handoff_at.asc(), c.id)
            .limit(limit)
        )
        async with self._read("handoff_queue") as conn:
            rows = (await conn.execute(query)).all()
        return [_row_to_summary(r) for r in rows]

    async def dashboard(self, days: int = 30, now: dt.datetime | None = None) -> DashboardStats:
        """Aggregates over the conversations created in the last ``days`` days (see
        :class:`~dialogue.types.DashboardStats` for the definitions). A few aggregate queries; no event reads."""
        if not 1 <= days <= 366:
            raise InvalidQuery(f"days must be in 1..366, got {days}", operation="dashboard")
        until = _aware(now) if now is not None else _now()
        first_day = until.date() - dt.timedelta(days=days - 1)
        since = dt.datetime.combine(first_day, dt.time(), tzinfo=dt.UTC)
        c = conversations.c
        window = sa.and_(c.created_at >= since, c.created_at <= until, c.turn_count > 0)
        if self._dialect == "postgresql":
            day = sa.func.date(sa.func.timezone("UTC", c.created_at))
        else:  # SQLite stores UTC text "YYYY-MM-DD HH:MM:SS.ffffff"
            day = sa.func.date(c.created_at)
        resolved = sa.and_(
            c.handoffs == 0,
            sa.or_(c.last_action.is_(None), c.last_action != ev.FALLBACK_ACTION),
            sa.or_(c.last_intent.is_(None), c.last_intent != ev.OUT_OF_SCOPE),
        )
        totals = sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(c.turn_count), 0),
            sa.func.coalesce(sa.func.sum(sa.case((resolved, 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(sa.case((c.handoffs > 0, 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(c.fallbacks), 0),
            sa.func.coalesce(sa.func.sum(c.safety_blocks), 0),
            sa.func.coalesce(sa.func.sum(c.redactions), 0),
        ).where(window)
        per_day = sa.select(day.label("day"), sa.func.count()).where(window).group_by(day)
        ci = conversation_intents.c
        n = sa.func.count().label("n")
        top = (
            sa.select(ci.intent, n)
            .select_from(conversation_intents.join(conversations, ci.conversation_id == c.id))
            .where(window)
            .group_by(ci.intent)
            .order_by(n.desc(), ci.intent)
            .limit(10)
        )
        csat, resolution_times, first_response = self._team_queries(window)
        async with self._read("dashboard") as conn:
            count, turns, resolved_n, handoffs, fallbacks, blocks, redactions = (await conn.execute(totals)).one()
            by_day = {str(d): int(k) for d, k in (await conn.execute(per_day)).all()}
            top_intents = [(str(i), int(k)) for i, k in (await conn.execute(top)).all()]
            ratings, rating_sum, satisfied = (await conn.execute(csat)).one()
            resolution_seconds = [
                (_aware(done) - _aware(created)).total_seconds()
                for created, done in (await conn.execute(resolution_times)).all()
            ]
            response_seconds = [
                (_aware(replied) - _aware(started)).total_seconds()
                for replied, started in (await conn.execute(first_response)).all()
                if started is not None
            ]
        ratings = int(ratings)
        count, turns = int(count), int(turns)
        return DashboardStats(
            days=days,
            since=since,
            until=until,
            conversations=count,
            turns=turns,
            per_day=[
                (d, by_day.get(d.isoformat(), 0)) for d in (first_day + dt.timedelta(days=i) for i in range(days))
            ],
            resolution_rate=int(resolved_n) / count if count else 0.0,
            handoff_rate=int(handoffs) / count if count else 0.0,
            fallback_rate=int(fallbacks) / turns if turns else 0.0,
            safety_blocks=int(blocks),
            redactions=int(redactions),
            top_intents=top_intents,
            ratings=ratings,
            csat_mean=float(rating_sum) / ratings if ratings else None,
            csat_satisfied=int(satisfied) / ratings if ratings else None,
            first_response_median=_median([max(0.0, v) for v in response_seconds]),
            resolution_median=_median([max(0.0, v) for v in resolution_seconds]),
        )

    @staticmethod
    def _team_queries(window: sa.ColumnElement[bool]) -> tuple[sa.Select[Any], sa.Select[Any], sa.Select[Any]]:
        """The dashboard's workspace queries (CSAT, resolution times, first-response times) over ``window``.

        Medians are computed in Python from the per-conversation durations: PostgreSQL has
        ``percentile_cont`` but SQLite has nothing alike, and the rows are two timestamps per resolved (or
        answered) conversation of the window. The first response starts at the conversation's *first*
        ``handoff`` or ``takeover`` event, not at ``handoff_at``: a take-over rewrites that column and a hand-back
        or resolution clears it, so by the time a conversation is resolved it no longer says when the customer
        began to wait. The events are read through the ``(conversation_id, type, message_id)`` index, and only for
        conversations an agent wrote to (``first_agent_reply_at`` set).
        """
        c = conversations.c
        e = events.c
        csat = sa.select(
            sa.func.count(c.rating),
            sa.func.coalesce(sa.func.sum(c.rating), 0),
            sa.func.coalesce(sa.func.sum(sa.case((c.rating >= 4, 1), else_=0)), 0),
        ).where(window, c.rating.is_not(None))
        resolution_times = sa.select(c.created_at, c.resolved_at).where(window, c.resolved_at.is_not(None))
        first_response = (
            sa.select(c.first_agent_reply_at, sa.func.min(e.timestamp))
            .select_from(conversations.join(events, e.conversation_id == c.id))
            .where(window, c.first_agent_reply_at.is_not(None), e.type.in_((ev.HANDOFF, ev.TAKEOVER)))
            .group_by(c.id, c.first_agent_reply_at)
        )
        return csat, resolution_times, first_response
