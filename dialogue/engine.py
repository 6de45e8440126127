"""The turn: one user message in, one reply out, every event committed in one transaction.

The engine is the pure-ish core of the bot. Everything with I/O or weights comes in as a parameter —
the store, the NLU parser, the reply generator, the action runner, the safety filters — so the same
turn logic runs behind the WebSocket server, in scenario replays and in tests. Blocking work (torch,
sqlite in actions) runs in worker threads; the store is async.

Hand-off to a human has three states (``Conversation.handoff_status``):

* ``""``: the bot answers.
* ``"waiting"``: the bot queued the conversation for a human (the flows reached the hand-off state, an action asked
  for it, or two turns in a row were low-confidence or fallback answers: a bot that keeps not understanding needs
  a person to look). A ``handoff`` event records why. The bot keeps answering meanwhile (in the flows' hand-off
  state with "a colleague will be with you"; after a misunderstanding loop with its usual replies, and
  ``TurnReply.handed_off`` tells the channel that a human is on the way).
* ``"agent"``: an agent took over (:meth:`DialogueEngine.take_over`). Customer messages are stored, with their
  parse for review, and *not* answered by the bot; the agent writes with :meth:`DialogueEngine.agent_message`
  and channels push those events to the customer (:meth:`DialogueEngine.events_after`).
  :meth:`DialogueEngine.hand_back` returns it to the bot at the flows' initial state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from dialogue import types as ev
from dialogue.domain import Domain
from dialogue.errors import ConcurrentUpdate, DialogueError, DuplicateMessage, TurnContention
from dialogue.flows import FlowContext, Flows
from dialogue.store import Store
from dialogue.types import (
    HANDOFF_AGENT,
    HANDOFF_NONE,
    ActionResult,
    Conversation,
    ConversationSummary,
    Event,
    NewEvent,
    TurnReply,
    TurnUpdate,
)
from nlu.tokenize import detect_language
from nlu.types import Parse
from policy import Observation, Policy
from runtime.types import Act, Realisation
from safety.types import InputVerdict, OutputVerdict

log = logging.getLogger("kefu.dialogue")

OnToken = Callable[[str], Awaitable[None]]
FALLBACK = ev.FALLBACK_ACTION
SAFE_REPLY = "utter_safe_reply"
HANDOFF_STATE = "handed_off"
LOW_CONFIDENCE_LOOP = "low_confidence_loop"  # HANDOFF reason when the bot gave up after repeated misunderstandings
LOOP_TURNS = 2  # consecutive low-confidence/fallback turns that queue a conversation for a human
WITH_AGENT = "with_agent"  # TurnReply flag: an agent holds the conversation; the bot did not answer


class Parser(Protocol):
    def parse(self, text: str) -> Parse: ...


class InputChecker(Protocol):
    def check(self, text: str) -> InputVerdict: ...


class OutputChecker(Protocol):
    def check(self, text: str, language: str) -> OutputVerdict: ...


class Generator(Protocol):
    async def realise(self, act: Act, on_token: OnToken | None = None) -> Realisation: ...

    def render_template(self, act: Act) -> str: ...


class ActionRunner(Protocol):
    async def run(self, action_name: str, call_payload: dict[str, Any]) -> ActionResult: ...


@dataclass
class BotParts:
    """Everything a turn needs that is specific to one bot."""

    domain: Domain
    flows: Flows
    policy: Policy
    nlu: Parser
    actions: ActionRunner
    input_filter: InputChecker
    output_filter: OutputChecker | None = None
    confidence_threshold: float = 0.5
    default_language: str = "en"


@dataclass
class _Timer:
    stages: dict[str, float] = field(default_factory=dict)
    _t: float = field(default_factory=time.perf_counter)

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.stages[stage] = round((now - self._t) * 1000.0, 2)
        self._t = now


class DialogueEngine:
    """Runs turns of many conversations against one store; safe to share across connections.

    Turns of one conversation are serialised by the store's optimistic version check (and its row
    lock), not by an in-process lock, so several worker processes can share one database: a turn that
    loses the race reloads the conversation and runs again without streaming a second time.
    """

    def __init__(self, parts: BotParts, store: Store, generator: Generator, *, max_attempts: int = 3) -> None:
        self.parts = parts
        self.store = store
        self.generator = generator
        self.max_attempts = max_attempts

    # -- conversations -------------------------------------------------------------------------
    async def open_conversation(
        self, conversation_id: str | None, language: str | None = None, sender: str | None = None
    ) -> str:
        """Return ``conversation_id`` if it exists, else the id of a new conversation.

        ``sender`` is the customer's id (the ``user`` of the widget's ``hello`` frame), stored on a *new*
        conversation only: it is what ``kefu conversations delete --user ID`` erases, and resuming someone's
        conversation by its id must not re-own it.
        """
        if conversation_id:
            existing = await self.store.get(conversation_id)
            if existing is not None:
                return existing.id
        return (await self._create(language, sender)).id

    async def _create(self, language: str | None, sender: str | None) -> Conversation:
        return await self.store.create_conversation(
            language or self.parts.default_language, sender=sender, state=self.parts.flows.initial_state
        )

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        return await self.store.get(conversation_id)

    async def list_conversations(self, limit: int = 50, offset: int = 0) -> list[ConversationSummary]:
        """The chat server's old list (``channels.backend.Backend``); the console pages with
        :meth:`dialogue.store.Store.list_conversations` and its cursors."""
        return (await self.store.list_conversations(limit=limit, offset=offset)).items

    async def conversation_events(self, conversation_id: str) -> list[Event]:
        return await self.store.events(conversation_id)

    async def events_after(self, conversation_id: str, seq: int) -> list[Event]:
        """Events with ``seq`` greater than ``seq``: what a channel polls to push agent messages live."""
        return await self.store.events(conversation_id, after_seq=seq)

    # -- hand-off to humans ------------------------------------------------------------------------
    async def take_over(self, conversation_id: str, agent: str) -> ConversationSummary:
        """``agent`` answers from now on; the bot only records the customer's messages. Raises
        :class:`~dialogue.errors.HandoffConflict` when another agent holds the conversation."""
        return await self.store.take_over(conversation_id, agent)

    async def agent_message(self, conversation_id: str, agent: str, text: str, message_id: str) -> Event:
        """Store a message of the agent holding the conversation (idempotent per ``message_id``: a retry
        returns the stored event)."""
        text = text.strip()
        if not text:
            raise DialogueError("an agent message needs text")
        try:
            return await self.store.append_agent_message(conversation_id, agent, text, message_id)
        except DuplicateMessage:
            for stored in await self.store.find_events_by_message_id(conversation_id, message_id):
                if stored.type == ev.AGENT_MESSAGE and stored.message_id == message_id:
                    return stored
            raise

    async def handoff_statuses(self, conversation_ids: Sequence[str]) -> dict[str, str]:
        """``{id: status}`` of those conversations that are waiting for or held by an agent (see the store)."""
        return await self.store.handoff_statuses(conversation_ids)

    async def correct(
        self,
        conversation_id: str,
        *,
        by: str,
        seq: int,
        text: str,
        intent: str,
        entities: Sequence[Mapping[str, Any]] = (),
    ) -> Event:
        """Record a reviewer's corrected parse of the customer message at ``seq`` (a ``correction`` event; the
        training file is edited by :func:`dialogue.review.add_training_example`)."""
        return await self.store.add_correction(
            conversation_id, by=by, seq=seq, text=text, intent=intent, entities=entities
        )

    async def hand_back(self, conversation_id: str, agent: str) -> ConversationSummary:
        """Give the conversation back to the bot, restarting its flow at the initial state (slots are kept)."""
        return await self.store.hand_back(conversation_id, agent, self.parts.flows.initial_state)

    # -- the turn --------------------------------------------------------------------------------
    async def handle_message(
        self, conversation_id: str | None, message_id: str, text: str, on_token: OnToken | None = None
    ) -> TurnReply:
        """Process one user message; a retried ``message_id`` gets the stored reply, not a second turn.

        An unknown (or missing) ``conversation_id`` starts a new conversation. Each attempt reads the snapshot
        once, together with whether ``message_id`` is already stored (:meth:`Store.get_for_message`): a fresh
        message costs that one read and the commit; a retried one is answered from its stored events. A turn that
        loses the optimistic race to another one (``ConcurrentUpdate``) or to a copy of itself in another worker
        (``DuplicateMessage``) reads again and either replays or reruns, without streaming a second time; after
        ``max_attempts`` lost races it raises :class:`~dialogue.errors.TurnContention` (nothing stored: safe to
        send again).
        """
        verdict = self.parts.input_filter.check(text)
        conversation: Conversation | None = None
        seen = False
        if conversation_id:
            conversation, seen = await self.store.get_for_message(conversation_id, message_id)
        for attempt in range(self.max_attempts):
            if conversation is None:  # no id, an unknown one, or deleted since it was read: a new conversation
                conversation, seen = await self._create(None, None), False
            if seen:
                replay = await self.store.find_events_by_message_id(conversation.id, message_id)
                if replay:
                    return _replayed(conversation, message_id, replay)
            try:
                return await self._turn(conversation, message_id, verdict, on_token if attempt == 0 else None)
            except DuplicateMessage:
                pass  # another worker processed this message id first: the next read answers from its events
            except ConcurrentUpdate:
                log.info("turn raced, retrying", extra={"conversation_id": conversation.id, "attempt": attempt})
            if attempt + 1 < self.max_attempts:
                conversation, seen = await self.store.get_for_message(conversation.id, message_id)
        raise TurnContention(conversation.id if conversation else str(conversation_id), self.max_attempts)

    async def _turn(
        self, conversation: Conversation, message_id: str, verdict: InputVerdict, on_token: OnToken | None
    ) -> TurnReply:
        parts = self.parts
        timer = _Timer()
        events: list[NewEvent] = [
            NewEvent(ev.SAFETY_INPUT, verdict.to_dict()),
            NewEvent(ev.USER_MESSAGE, {"text": verdict.text, "message_id": message_id}, message_id=message_id),
        ]
        timer.lap("safety_in")

        if verdict.blocked:
            language_hint = detect_language(verdict.text) if verdict.text.strip() else conversation.language
            parse = Parse(text=verdict.text, intent="out_of_scope", confidence=1.0, language=language_hint)
        else:
            parse = await asyncio.to_thread(parts.nlu.parse, verdict.text)
        language = parse.language if parse.text.strip() else conversation.language
        events.append(NewEvent(ev.NLU_PARSE, parse.to_dict()))
        timer.lap("nlu")
        if conversation.handoff_status == HANDOFF_AGENT:
            return await self._agent_turn(conversation, message_id, events, parse, language)

        slots = dict(conversation.slots)
        for entity in parse.entities:
            if entity.entity in parts.domain.slots and slots.get(entity.entity) != entity.value:
                slots[entity.entity] = entity.value
                events.append(NewEvent(ev.SLOT_SET, {"slot": entity.entity, "value": entity.value}))

        context = FlowContext(state=conversation.state, intent=parse.intent, slots=dict(slots))
        allowed = parts.flows.allowed(context)
        if verdict.blocked and FALLBACK in allowed:
            # A blocked message (injection, too long) is never acted on, whatever a policy learned: safety outranks it.
            allowed = [FALLBACK]
        observation = Observation(
            state=conversation.state,
            intent=parse.intent,
            confidence=parse.confidence,
            filled_slots=frozenset(k for k, v in slots.items() if v not in (None, "")),
            ranking=parse.ranking,
            turn=conversation.turn_count + 1,
            last_action=conversation.last_action,
            low_confidence=parse.confidence < parts.confidence_threshold,
            flags=verdict.flags,
            language=language,
        )
        decision = parts.policy.choose(observation, allowed)
        # Two misunderstood turns in a row: the bot is not getting anywhere, so queue the conversation for a human.
        low = observation.low_confidence or decision.action == FALLBACK or parse.intent == ev.OUT_OF_SCOPE
        streak = conversation.fallback_streak + 1 if low else 0
        loop = streak >= LOOP_TURNS
        new_state = parts.flows.advance(context, decision.action)
        timer.lap("policy")

        result = await self._run_action(decision.action, conversation, slots, parse, language)
        for slot, value in result.slot_updates.items():
            if slot in parts.domain.slots and slots.get(slot) != value:
                slots[slot] = value
                events.append(NewEvent(ev.SLOT_SET, {"slot": slot, "value": value}))
        events.append(
            NewEvent(
                ev.ACTION,
                {**decision.to_dict(), "state_before": conversation.state, "state_after": new_state,
                 "failed": result.failed, "error": result.error},
            )
        )
        entered = new_state == HANDOFF_STATE and conversation.state != HANDOFF_STATE
        queued = conversation.handoff_status == HANDOFF_NONE and (entered or result.handoff or loop)
        if queued:
            reason = parse.intent if entered or result.handoff else LOW_CONFIDENCE_LOOP
            events.append(NewEvent(ev.HANDOFF, {"reason": reason}))
            streak = 0
        handed_off = new_state == HANDOFF_STATE or queued or conversation.handoff_status != HANDOFF_NONE
        timer.lap("action")

        text, sources = await self._realise(result, slots, language, message_id, on_token)
        timer.lap("generation")

        flags = list(verdict.flags)
        if parts.output_filter is not None and text:
            out = await asyncio.to_thread(parts.output_filter.check, text, language)
            replaced = out.toxic
            if replaced:
                text = self.generator.render_template(Act(SAFE_REPLY, {}, language))
                flags.append("toxic_reply")
            events.append(NewEvent(ev.SAFETY_OUTPUT, {**out.to_dict(), "replaced": replaced}))
        timer.lap("safety_out")

        bot_message_id = f"bot-{message_id}"
        events.append(
            NewEvent(
                ev.BOT_MESSAGE,
                {"text": text, "message_id": bot_message_id, "reply_to": message_id, "sources": sources,
                 "latency_ms": timer.stages},
                message_id=bot_message_id,
            )
        )
        await self.store.commit_turn(
            TurnUpdate(
                conversation_id=conversation.id,
                expected_version=conversation.version,
                state=new_state,
                slots=slots,
                language=language,
                handed_off=handed_off,
                events=tuple(events),
                last_intent=parse.intent,
                last_action=decision.action,
                fallback_streak=streak,
            )
        )
        return TurnReply(
            conversation_id=conversation.id,
            message_id=bot_message_id,
            reply_to=message_id,
            text=text,
            intent=parse.intent,
            confidence=parse.confidence,
            action=decision.action,
            handed_off=handed_off,
            flags=tuple(flags),
        )

    async def _agent_turn(
        self, conversation: Conversation, message_id: str, events: list[NewEvent], parse: Parse, language: str
    ) -> TurnReply:
        """An agent holds the conversation: store the message (and its parse, for review) and do not answer."""
        await self.store.commit_turn(
            TurnUpdate(
                conversation_id=conversation.id,
                expected_version=conversation.version,
                state=conversation.state,
                slots=dict(conversation.slots),
                language=language,
                handed_off=True,
                events=tuple(events),
                last_intent=parse.intent,
                last_action=conversation.last_action,
            )
        )
        return TurnReply(
            conversation_id=conversation.id,
            message_id=f"bot-{message_id}",
            reply_to=message_id,
            text="",
            intent=parse.intent,
            confidence=parse.confidence,
            action=None,
            handed_off=True,
            flags=(WITH_AGENT,),
        )

    async def _run_action(
        self, action: str, conversation: Conversation, slots: dict[str, Any], parse: Parse, language: str
    ) -> ActionResult:
        if action.startswith("utter_"):
            return ActionResult(responses=[(action, {})])
        from dialogue.actions import build_action_call  # the rasa-sdk payload, shared by both transports

        payload = build_action_call(
            action_name=action,
            conversation_id=conversation.id,
            slots={**slots, "language": language},
            latest_text=parse.text,
            parse=parse,
            events=[],
            domain=self.parts.domain.for_action_server(),
            language=language,
        )
        try:
            result = await self.parts.actions.run(action, payload)
        except Exception as exc:  # an action bug must not kill the turn: answer with the fallback
            log.exception("action %s raised %s", action, type(exc).__name__)
            return ActionResult(responses=[(FALLBACK, {})], failed=True, error=type(exc).__name__)
        if not result.responses and not result.texts:
            result.responses.append((FALLBACK, {}))
        return result

    async def _realise(
        self, result: ActionResult, slots: dict[str, Any], language: str, message_id: str, on_token: OnToken | None
    ) -> tuple[str, list[str]]:
        pieces: list[str] = []
        sources: list[str] = []
        tracker_values = {k: str(v) for k, v in slots.items() if v not in (None, "")}
        for index, (response, values) in enumerate(result.responses):
            if index and on_token is not None:
                await on_token("\n")
            act = Act(name=response, slots={**tracker_values, **values}, language=language)
            realised = await self.generator.realise(act, on_token)
            pieces.append(realised.text)
            sources.append(realised.source)
        pieces.extend(result.texts)
        sources.extend("action" for _ in result.texts)
        return "\n".join(p for p in pieces if p), sources


def _replayed(conversation: Conversation, message_id: str, events: Sequence[Event]) -> TurnReply:
    """Rebuild the reply of an already-processed message from its stored events."""
    by_type = {e.type: e for e in events if e.type != ev.BOT_MESSAGE}
    bot = next((e for e in events if e.type == ev.BOT_MESSAGE and e.data.get("reply_to") == message_id), None)
    parse = by_type.get(ev.NLU_PARSE)
    action = by_type.get(ev.ACTION)
    with_agent = bot is None and action is None and ev.USER_MESSAGE in by_type  # stored for an agent, unanswered
    return TurnReply(
        conversation_id=conversation.id,
        message_id=str(bot.data.get("message_id")) if bot else f"bot-{message_id}",
        reply_to=message_id,
        text=str(bot.data.get("text", "")) if bot else "",
        intent=str(parse.data.get("intent")) if parse else None,
        confidence=float(parse.data.get("confidence", 0.0)) if parse else None,
        action=str(action.data.get("name")) if action else None,
        handed_off=conversation.handed_off or with_agent,
        flags=(WITH_AGENT,) if with_agent else (),
        replayed=True,
    )
