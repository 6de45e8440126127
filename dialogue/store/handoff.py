"""Hand-off: an agent takes a conversation over from the bot, writes to the customer, and hands it back.

While an agent holds a conversation (``handoff_status`` ``agent``) the bot does not answer and only that agent's
messages reach the customer; taking over also assigns the conversation to the agent in the inbox. Each change is
an event in the log (``takeover``, ``agent_message``, ``handback``) and bumps ``version``, so a customer turn
computed from the older snapshot is redone and sees it.
"""

from __future__ import annotations

from dialogue import types as ev
from dialogue.errors import HandoffConflict, StoreError
from dialogue.store.database import log
from dialogue.store.rows import _now
from dialogue.store.rules import _assignment, _check_agent, _check_events
from dialogue.store.staff import shown_agent
from dialogue.store.turns import TurnLog
from dialogue.types import HANDOFF_AGENT, HANDOFF_NONE, ConversationSummary, Event, NewEvent


class Handoff(TurnLog):
    """Take-over, agent messages and hand-back."""

    async def take_over(self, conversation_id: str, agent: str) -> ConversationSummary:
        """An agent takes the conversation: the bot stops answering until :meth:`hand_back`.

        Works from the queue (``waiting``) and on a conversation the bot still handles. Taking over again by the
        same agent changes nothing; :class:`~dialogue.errors.HandoffConflict` when another agent holds it. The
        conversation is then assigned to ``agent`` too (whoever talks to the customer owns it in the inbox), also
        when it was assigned to a colleague who had not taken it over: someone covering for them answers.
        """
        cid = conversation_id
        _check_agent(agent, "take_over")
        async with self._write("take_over", cid) as conn:
            row = await self._lock_row(conn, cid, "take_over")
            if row.handoff_status == HANDOFF_AGENT:
                if row.agent != agent:
                    raise HandoffConflict(cid, row.agent, row.handoff_status, operation="take_over")
            else:
                await self._append(
                    conn, row, [NewEvent(ev.TAKEOVER, {"agent": agent})], "take_over", activity=True,
                    handoff_status=HANDOFF_AGENT, agent=agent, handed_off=True, handoff_at=_now(),
                    handoffs=row.handoffs + (1 if row.handoff_status == HANDOFF_NONE else 0),
                    **_assignment(row, agent),
                )
            summary = await self._summary_in(conn, cid)
        log.info("conversation %s taken over", cid)
        return summary

    async def hand_back(self, conversation_id: str, agent: str, initial_state: str) -> ConversationSummary:
        """Give the conversation back to the bot, which restarts its flow at ``initial_state`` (the slots stay).

        Allowed for the holding agent, and on a ``waiting`` conversation (an agent resolves it from the queue
        without taking over). :class:`~dialogue.errors.HandoffConflict` when another agent holds it or nobody
        does.
        """
        cid = conversation_id
        _check_agent(agent, "hand_back")
        async with self._write("hand_back", cid) as conn:
            row = await self._lock_row(conn, cid, "hand_back")
            status = row.handoff_status
            if status == HANDOFF_NONE or (status == HANDOFF_AGENT and row.agent != agent):
                raise HandoffConflict(cid, row.agent, status, operation="hand_back")
            await self._append(
                conn, row, [NewEvent(ev.HANDBACK, {"agent": agent})], "hand_back", activity=True,
                handoff_status=HANDOFF_NONE, agent=None, handed_off=False, handoff_at=None, state=initial_state,
                fallback_streak=0, assignee=None, assigned_at=None,
            )
            summary = await self._summary_in(conn, cid)
        log.info("conversation %s handed back", cid)
        return summary

    async def append_agent_message(self, conversation_id: str, agent: str, text: str, message_id: str) -> Event:
        """Store a message of the agent who holds the conversation (``agent_message`` event).

        :class:`~dialogue.errors.HandoffConflict` unless ``agent`` holds it; a reused ``message_id`` raises
        :class:`~dialogue.errors.DuplicateMessage` (answer from :meth:`find_events_by_message_id`). The first agent
        message of a conversation sets ``first_agent_reply_at`` (the dashboard's first-response time).
        """
        cid = conversation_id
        _check_agent(agent, "append_agent_message")
        if not message_id or len(message_id) > 128:
            raise StoreError("message id must be 1..128 characters", operation="append_agent_message",
                             conversation_id=cid)
        data = {"text": text, "agent": agent, "message_id": message_id}
        _check_events([NewEvent(ev.AGENT_MESSAGE, data, message_id)], cid, "append_agent_message")
        async with self._write("append_agent_message", cid) as conn:
            row = await self._lock_row(conn, cid, "append_agent_message")
            if row.handoff_status != HANDOFF_AGENT or row.agent != agent:
                raise HandoffConflict(cid, row.agent, row.handoff_status, operation="append_agent_message")
            # The name and picture the customer is shown, as they are now (the history replays them as sent).
            new = NewEvent(ev.AGENT_MESSAGE, {**data, **await shown_agent(conn, agent)}, message_id)
            first = {"first_agent_reply_at": _now()} if row.first_agent_reply_at is None else {}
            (stored,) = await self._append(conn, row, [new], "append_agent_message", activity=True, **first)
        return stored
