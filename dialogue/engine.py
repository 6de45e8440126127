"""The turn: one user message in, one reply out, every event committed in one transaction.

The engine is the pure-ish core of the bot. Everything with I/O or weights comes in as a parameter —
the store, the NLU parser, the reply generator, the action runner, the safety filters — so the same
turn logic runs behind the WebSocket server, in scenario replays and in tests. Blocking work (torch,
sqlite in actions) runs in worker threads; the store is async.

Hand-off to a human has three states (``Conversation.handoff_status``):

* ``""``: the bot answers.
* ``"waiting"``: the bot queued the conversation for a human (the flows reached the hand-off state, an action asked
  for it, or two turns in a row inside a task were low-confidence or fallback answers: a bot that keeps not
  understanding a task needs a person to look; small talk outside a task never escalates). A ``handoff`` event
  records why. The bot keeps answering meanwhile (in the flows' hand-off state with "a colleague will be with you";
  after a misunderstanding loop with its usual replies, and ``TurnReply.handed_off`` tells the channel that a human
  is on the way). It only queues when someone can answer (office hours, an agent signed in); otherwise it says so
  and stays with the bot. A wait ends at a time-out, when nobody is left to answer, or when the customer asks the
  bot something it can act on (:mod:`dialogue.handoff`; a ``handoff_end`` event says why).
* ``"agent"``: an agent took over (:meth:`DialogueEngine.take_over`). Customer messages are stored, with their
  parse for review, and *not* answered by the bot; the agent writes with :meth:`DialogueEngine.agent_message`
  and channels push those events to the customer (:meth:`DialogueEngine.events_after`).
  :meth:`DialogueEngine.hand_back` returns it to the bot at the flows' initial state.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from dialogue import types as ev
from dialogue.clauses import MAX_CLAUSES, Reading, detail, split_clauses
from dialogue.definition import DialogueDefinition
from dialogue.domain import Domain
from dialogue.errors import ConcurrentUpdate, ConversationExists, DialogueError, DuplicateMessage, TurnContention
from dialogue.flows import FlowContext, Flows
from dialogue.handoff import (
    ALWAYS_STAFFED,
    DEFAULT_TIMEOUT,
    END_CUSTOMER,
    END_OFFLINE,
    END_TIMEOUT,
    Staffing,
    StaffingProbe,
    offline_responses,
    wait_expired,
)
from dialogue.review import redact_example
from dialogue.store import Store
from dialogue.types import (
    HANDOFF_AGENT,
    HANDOFF_NONE,
    HANDOFF_WAITING,
    ActionResult,
    Conversation,
    ConversationSummary,
    Event,
    NewConversation,
    NewEvent,
    TurnReply,
    TurnUpdate,
)
from nlu.tokenize import clear_language
from nlu.types import Parse
from policy import Decision, Observation, Policy
from runtime.types import Act, Realisation
from safety.pii import redact_verbatim
from safety.types import InputVerdict, OutputVerdict

if TYPE_CHECKING:
    from dialogue.knowledge import Hit
    from dialogue.rasa.turn import RasaDialogue

log = logging.getLogger("kefu.dialogue")

OnToken = Callable[[str], Awaitable[None]]
FALLBACK = ev.FALLBACK_ACTION
SAFE_REPLY = "utter_safe_reply"
HANDOFF_STATE = "handed_off"
LOW_CONFIDENCE_LOOP = "low_confidence_loop"  # HANDOFF reason when the bot gave up after repeated misunderstandings
LOOP_TURNS = 2  # consecutive low-confidence/fallback turns that queue a conversation for a human
MAX_TEXT_SLOT = 200  # characters of a message kept as a from_text slot value
SMALL_TALK_TRUST = 0.8  # small talk the NLU is at least this sure of is not second-guessed by retrieval
TASK_KNOWLEDGE_MIN = 0.8  # the least retrieval score that takes a turn from a task (or marks a question, not an answer)
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


class Retriever(Protocol):
    """A knowledge base (:class:`dialogue.knowledge.KnowledgeBase`): the best entries for a text, blocking."""

    def search(self, text: str, language: str, k: int = 3) -> list[Hit]: ...


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
    staffing: StaffingProbe | None = None  # None: a human can always answer (tests, scripts)
    knowledge: Retriever | None = None  # the bot's knowledge base, scored on every turn that is not a confident task
    knowledge_action: str | None = None  # the bot's action that answers from it (bot.yml knowledge_action)
    knowledge_threshold: float = 0.5
    handoff_timeout: dt.timedelta = DEFAULT_TIMEOUT
    rasa: RasaDialogue | None = None  # an imported Rasa project's rules, forms and stories run the dialogue


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

    def __init__(
        self,
        parts: BotParts,
        store: Store,
        generator: Generator,
        *,
        max_attempts: int = 3,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.parts = parts
        self.store = store
        self.generator = generator
        self.max_attempts = max_attempts
        self.clock = clock

    def with_parts(self, **changes: Any) -> DialogueEngine:
        """The same engine (store, generator, clock) with some of its bot parts replaced: another policy, staffing..."""
        return DialogueEngine(
            dataclasses.replace(self.parts, **changes), self.store, self.generator,
            max_attempts=self.max_attempts, clock=self.clock,
        )

    def _knowledge_bar(
        self, context: FlowContext, decision: Decision, parse: Parse, low_confidence: bool, *, exempt: bool
    ) -> float | None:
        """The retrieval score a knowledge answer needs to take this turn, or ``None`` when retrieval stays out.

        Retrieval scores every turn that is not a confident task, and a confident match answers whatever the
        intent said: a misunderstood turn (low confidence, out of scope, the fallback) needs the bot's threshold;
        small talk (a reply that leaves the flow where it was) too, unless the NLU is sure of it (short greetings
        such as 在吗 share characters with many Chinese entries, so the NLU's certainty is the better judge); a task
        keeps its turn when its slots say so (an entity in the message) or its confidence is at least the match's
        score ("what's your return policy" is a question, "I want to return order 10234" a task).
        """
        parts = self.parts
        action = parts.knowledge_action
        if parts.knowledge is None or not action or exempt or action not in decision.allowed:
            return None  # exempt: a blocked message, or one that answered the bot's question
        if decision.action == action:
            return None  # the flows already chose the knowledge action: it searches by itself
        if low_confidence or decision.action == FALLBACK or parse.intent == ev.OUT_OF_SCOPE:
            return parts.knowledge_threshold
        if parse.entities:
            return None  # an order id, a product...: the message is about the bot's task, not a general question
        if decision.action.startswith("utter_") and self._would_reach(context, decision.action) == context.state:
            return parts.knowledge_threshold if parse.confidence < SMALL_TALK_TRUST else None
        return max(parts.knowledge_threshold, TASK_KNOWLEDGE_MIN, parse.confidence)

    def _would_reach(self, context: FlowContext, action: str) -> str:
        """The state ``action`` leads to, without moving ``context`` (:meth:`Flows.advance` updates what it gets)."""
        probe = FlowContext(context.state, context.intent, dict(context.slots), context.filled)
        return self.parts.flows.advance(probe, action)

    async def _knowledge_top(self, text: str, language: str) -> Hit | None:
        """The best knowledge-base entry for ``text`` (one MiniLM encode, in a worker thread), whatever its score."""
        knowledge = self.parts.knowledge
        if knowledge is None or not text.strip():
            return None
        hits = await asyncio.to_thread(knowledge.search, text, language, 1)
        return hits[0] if hits else None

    async def _staffing(self, now: dt.datetime) -> Staffing:
        """Whether a human can answer now (asked only on hand-off turns: no cost on the others)."""
        return ALWAYS_STAFFED if self.parts.staffing is None else await self.parts.staffing(now)

    # -- conversations -------------------------------------------------------------------------
    async def open_conversation(
        self, conversation_id: str | None, language: str | None = None, sender: str | None = None
    ) -> str:
        """Return ``conversation_id`` if it exists, else the id of a new conversation.

        ``sender`` is the customer's id (the ``user`` of the widget's ``hello`` frame), stored on a *new*
        conversation only: it is what ``kefu conversations delete --user ID`` erases, and resuming someone's
        conversation by its id must not re-own it. This authenticates nothing: the chat channel never calls it
        with a customer's id (it checks the conversation's resume secret, and the first message creates the row
        through :meth:`handle_message`'s ``create``), so the id alone is no credential.
        """
        if conversation_id:
            existing = await self.store.get(conversation_id)
            if existing is not None:
                return existing.id
        return (await self._create(language, sender)).id

    async def _create(
        self,
        language: str | None,
        sender: str | None,
        *,
        conversation_id: str | None = None,
        secret_hash: str | None = None,
    ) -> Conversation:
        return await self.store.create_conversation(
            language or self.parts.default_language,
            sender=sender,
            conversation_id=conversation_id,
            state=self.parts.flows.initial_state,
            secret_hash=secret_hash,
        )

    async def _create_for_turn(self, create: NewConversation | None, message_id: str) -> tuple[Conversation, bool]:
        """The conversation a first message creates, and whether ``message_id`` is already stored in it.

        ``create`` (the chat channel's pending session) names the id, the resume secret's hash, the language and
        the sender: two copies of the first message (a resend after a reconnect, a second tab, another worker) race
        to insert the same id, and the loser reads the winner's row instead (then it replays or runs its turn
        against it), so one conversation is created, never two. Without ``create`` a random id is used.
        """
        if create is None:
            return await self._create(None, None), False
        try:
            created = await self._create(
                create.language, create.sender, conversation_id=create.id, secret_hash=create.secret_hash
            )
            return created, False
        except ConversationExists:
            existing, seen = await self.store.get_for_message(create.id, message_id)
            if existing is None:  # created and erased in between: vanishingly rare, and safe to send again
                raise
            return existing, seen

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
        returns the stored event). Its PII is redacted first, like a customer's (the store never holds raw PII,
        and what is stored is what the customer is sent and replayed on resume)."""
        text = text.strip()
        if not text:
            raise DialogueError("an agent message needs text")
        text = redact_verbatim(text)[0]
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
        training file is edited by :func:`dialogue.review.add_training_example`). The text is redacted and the
        entities moved to match (:func:`dialogue.review.redact_example`) before it is stored."""
        text, entities = redact_example(text, entities)
        return await self.store.add_correction(
            conversation_id, by=by, seq=seq, text=text, intent=intent, entities=entities
        )

    async def hand_back(self, conversation_id: str, agent: str) -> ConversationSummary:
        """Give the conversation back to the bot, restarting its flow at the initial state (slots are kept)."""
        return await self.store.hand_back(conversation_id, agent, self.parts.flows.initial_state)

    async def rate(self, conversation_id: str, score: int, comment: str | None) -> ConversationSummary:
        """The customer's rating of a resolved conversation (``channels.backend.Backend.rate``; see
        :meth:`dialogue.store.Store.rate`, which validates and redacts)."""
        return await self.store.rate(conversation_id, score, comment)

    # -- the turn --------------------------------------------------------------------------------
    async def handle_message(
        self,
        conversation_id: str | None,
        message_id: str,
        text: str,
        on_token: OnToken | None = None,
        *,
        create: NewConversation | None = None,
    ) -> TurnReply:
        """Process one user message; a retried ``message_id`` gets the stored reply, not a second turn.

        An unknown (or missing) ``conversation_id`` starts a new conversation: the one ``create`` describes (its
        id must be ``conversation_id`` when both are given; see :meth:`_create_for_turn`), else one with a random
        id. The chat channel always passes ``create``, so its conversations exist from their first message on,
        with the id and resume-secret hash it issued, never from a ``hello``. Each attempt reads the snapshot
        once, together with whether ``message_id`` is already stored (:meth:`Store.get_for_message`): a fresh
        message costs that one read and the commit; a retried one is answered from its stored events. A turn that
        loses the optimistic race to another one (``ConcurrentUpdate``) or to a copy of itself in another worker
        (``DuplicateMessage``) reads again and either replays or reruns, without streaming a second time; after
        ``max_attempts`` lost races it raises :class:`~dialogue.errors.TurnContention` (nothing stored: safe to
        send again).
        """
        if create is not None:
            if conversation_id not in (None, create.id):
                raise DialogueError(f"create.id {create.id!r} differs from conversation_id {conversation_id!r}")
            conversation_id = create.id
        verdict = self.parts.input_filter.check(text)
        conversation: Conversation | None = None
        seen = False
        if conversation_id:
            conversation, seen = await self.store.get_for_message(conversation_id, message_id)
        for attempt in range(self.max_attempts):
            if conversation is None:  # no id, an unknown one, or deleted since it was read: a new conversation
                conversation, seen = await self._create_for_turn(create, message_id)
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

    def _in_scope_by_value(self, parse: Parse, filled: set[str]) -> Parse:
        """An order number is the bot's business. A message the NLU turned away as out of scope (its best in-scope
        intent fell below the threshold chosen on dev), but which gave a value of a slot of the task that intent
        starts ("where's order 19999"), or an answer with a value a task starts on ("17532 这单咋样了"), is read as
        that intent with its own probability; the bot's confidence threshold still applies to it."""
        definition = self.parts.flows.definition
        if parse.intent != ev.OUT_OF_SCOPE or not filled or not isinstance(definition, DialogueDefinition):
            return parse
        best = next(((i, p) for i, p in parse.ranking if i != ev.OUT_OF_SCOPE), None)
        if best is None or not definition.claims(best[0], filled):
            return parse
        return dataclasses.replace(parse, intent=best[0], confidence=best[1])

    async def _unasked_detail(self, text: str, intent: str, slots: dict[str, Any], state: str) -> tuple[str, str] | None:
        """A ``from_text`` slot's value said in the message that starts its task, before the bot asked for it
        (``dialogue.clauses``): ``(slot, value)``, or ``None``. Costs one NLU parse per clause, and only for a
        message that starts a task with such a slot still empty."""
        parts = self.parts
        definition = parts.flows.definition
        found = definition.opening(intent) if isinstance(definition, DialogueDefinition) else None
        if found is None or state in found[0].states:  # no task, or the task is open: its questions take the answers
            return None
        task, small_talk, others = found
        mapping = next((m for m in parts.domain.from_text
                        if m.in_request and m.slot in task.slot_names and slots.get(m.slot) in (None, "")), None)
        clauses = split_clauses(text)
        if mapping is None or not 2 <= len(clauses) <= MAX_CLAUSES:
            return None
        parses = await asyncio.to_thread(lambda: [parts.nlu.parse(c.text) for c in clauses])
        slot = mapping.slot
        readings = [Reading(c, p.intent, p.confidence >= parts.confidence_threshold,
                            any(e.entity in task.slot_names and e.entity != slot for e in p.entities))
                    for c, p in zip(clauses, parses)]
        value = detail(readings, frozenset(task.intents), small_talk, others)
        return None if value is None else (slot, value[:MAX_TEXT_SLOT])

    async def _turn(
        self, conversation: Conversation, message_id: str, verdict: InputVerdict, on_token: OnToken | None
    ) -> TurnReply:
        parts = self.parts
        timer = _Timer()
        events: list[NewEvent] = [
            NewEvent(ev.SAFETY_INPUT, verdict.to_dict()),
            NewEvent(ev.USER_MESSAGE, _user_message(verdict, message_id), message_id=message_id),
        ]
        timer.lap("safety_in")

        # The conversation's language is the conversation's: only a message clearly written in the other language
        # changes it (a Chinese customer's "14388", emoji or phone number does not).
        language = clear_language(verdict.text) or conversation.language
        if verdict.blocked:
            parse = Parse(text=verdict.text, intent="out_of_scope", confidence=1.0, language=language)
        else:
            parse = await asyncio.to_thread(parts.nlu.parse, verdict.text)
        events.append(NewEvent(ev.NLU_PARSE, parse.to_dict()))
        timer.lap("nlu")
        if conversation.handoff_status == HANDOFF_AGENT:
            return await self._agent_turn(conversation, message_id, events, parse, language)
        if parts.rasa is not None:
            return await self._rasa_turn(conversation, message_id, events, parse, verdict, language, on_token, timer)

        slots = dict(conversation.slots)
        filled: set[str] = set()
        # A message that answers the bot's question for a from_text slot keeps the task's other values: the customer
        # answers what was asked ("they still took the money" is the reason, not a new merchant the tagger read in it)
        awaited = parts.flows.awaited(conversation.state, conversation.last_action)  # an answer after an aside
        answering = {m.slot for m in parts.domain.from_text
                     if m.takes(conversation.last_action, parse.intent, False, awaited)}
        kept = tuple(e for e in parse.entities if not answering or e.entity in answering
                     or slots.get(e.entity) in (None, ""))
        if len(kept) < len(parse.entities):  # the actions read the message's entities too: they get the kept ones
            parse = dataclasses.replace(parse, entities=kept)
        for entity in parse.entities:
            if entity.entity in parts.domain.slots:
                filled.add(entity.entity)
                if slots.get(entity.entity) != entity.value:
                    slots[entity.entity] = entity.value
                    events.append(NewEvent(ev.SLOT_SET, {"slot": entity.entity, "value": entity.value}))
        parse = self._in_scope_by_value(parse, filled)
        intent, low_confidence = parse.intent, parse.confidence < parts.confidence_threshold
        answered = False  # a from_text slot took this message as the answer to the bot's question
        searched: list[Hit | None] = []  # the turn's one retrieval, made when first needed

        async def knowledge_hit(bar: float) -> Hit | None:
            if not searched:
                searched.append(await self._knowledge_top(parse.text, language))
            hit = searched[0]
            return hit if hit is not None and float(hit.score) >= bar else None

        answer = "" if verdict.blocked else verdict.text.strip()[:MAX_TEXT_SLOT]
        takers = [m for m in parts.domain.from_text
                  if m.takes(conversation.last_action, parse.intent, m.slot in filled, awaited)]
        if takers and answer and await knowledge_hit(TASK_KNOWLEDGE_MIN) is not None:
            takers = []  # a question the knowledge base answers confidently is a question, not the answer asked for
        for mapping in takers if answer else ():
            slots[mapping.slot] = answer  # the customer answered the bot's question: the answer is the value
            filled.add(mapping.slot)
            events.append(NewEvent(ev.SLOT_SET, {"slot": mapping.slot, "value": answer, "from": "text"}))
            intent, low_confidence, answered = mapping.as_intent or intent, False, True
        if (low_confidence or intent == ev.OUT_OF_SCOPE) and filled & awaited:  # asked "which city?", told one:
            answers = getattr(parts.flows.definition, "answer_intents", ())  # an answer, whatever the classifier said
            intent, low_confidence, answered = answers[0] if answers else intent, False, True
        if not answered and answer and not low_confidence:  # said before it was asked: "return 10976, it broke"
            unasked = await self._unasked_detail(answer, intent, slots, conversation.state)
            if unasked is not None:
                slots[unasked[0]] = unasked[1]
                filled.add(unasked[0])
                events.append(NewEvent(ev.SLOT_SET, {"slot": unasked[0], "value": unasked[1], "from": "text"}))

        def decide(state: str) -> tuple[FlowContext, Decision]:
            context = FlowContext(state=state, intent=intent, slots=dict(slots), filled=frozenset(filled))
            allowed = parts.flows.allowed(context)
            if verdict.blocked and FALLBACK in allowed:
                # A blocked message (injection, too long) is never acted on, whatever a policy learned: safety outranks it.
                allowed = [FALLBACK]
            observation = Observation(
                state=state,
                intent=intent,
                confidence=parse.confidence,
                filled_slots=frozenset(k for k, v in slots.items() if v not in (None, "")),
                ranking=parse.ranking,
                turn=conversation.turn_count + 1,
                last_action=conversation.last_action,
                low_confidence=low_confidence,
                flags=verdict.flags,
                language=language,
            )
            return context, parts.policy.choose(observation, allowed)

        initial = parts.flows.initial_state
        state, status = conversation.state, conversation.handoff_status
        notices: list[tuple[str, dict[str, Any]]] = []  # said before the answer (the wait ended)
        decided: tuple[FlowContext, Decision] | None = None
        if status == HANDOFF_WAITING:  # the hand-off's life cycle (dialogue.handoff)
            now = self.clock()
            expired = wait_expired(conversation.handoff_at, now, parts.handoff_timeout)
            end = END_TIMEOUT if expired else None if (await self._staffing(now)).available else END_OFFLINE
            if end is None and state == HANDOFF_STATE and not low_confidence:
                context0, decision0 = decide(initial)  # would the bot act on this from the start? then it is back
                after = self._would_reach(context0, decision0.action)
                acts = decision0.action != FALLBACK and after != HANDOFF_STATE
                if acts and (after != initial or not decision0.action.startswith("utter_")):
                    end, decided = END_CUSTOMER, (context0, decision0)
            if end is not None:
                events.append(NewEvent(ev.HANDOFF_END, {"reason": end}))
                status = HANDOFF_NONE
                state = initial if state == HANDOFF_STATE else state
                if end != END_CUSTOMER:
                    notices = offline_responses(parts.domain.responses, FALLBACK)
        context, decision = decided or decide(state)
        knowledge: dict[str, Any] | None = None
        bar = self._knowledge_bar(context, decision, parse, low_confidence, exempt=verdict.blocked or answered)
        if bar is not None:
            hit = await knowledge_hit(bar)
            if hit is not None:  # a confident match answers, whatever the intent said
                decision = Decision(parts.knowledge_action or "", float(hit.score), decision.allowed, "knowledge")
                knowledge = {"entry": hit.entry_id, "score": round(float(hit.score), 4)}
        # Two misunderstood turns in a row inside a task: the bot is not getting anywhere, so queue the conversation
        # for a human. Small talk and questions outside a task never escalate: the fallback says what the bot can do.
        low = low_confidence or decision.action == FALLBACK or intent == ev.OUT_OF_SCOPE
        in_task = state not in (initial, HANDOFF_STATE)
        streak = conversation.fallback_streak + 1 if low and in_task else 0
        loop = streak >= LOOP_TURNS
        new_state = parts.flows.advance(context, decision.action)
        timer.lap("policy")

        result = await self._run_action(decision.action, conversation, slots, parse, language)
        result.responses[:0] = notices
        for slot, value in result.slot_updates.items():
            if slot in parts.domain.slots and slots.get(slot) != value:
                slots[slot] = value
                events.append(NewEvent(ev.SLOT_SET, {"slot": slot, "value": value}))
        if new_state == initial:  # the action refused a value of its task (cleared it): wait for that slot again
            refused = {s for s, v in result.slot_updates.items() if v in (None, "")}
            new_state = next((st for s, st in parts.flows.reopens.get(decision.action, ()) if s in refused), new_state)
        action_at = len(events)  # the action event goes here once the hand-off decision has settled the new state
        entered = new_state == HANDOFF_STATE and state != HANDOFF_STATE
        queued = status == HANDOFF_NONE and (entered or result.handoff or loop)
        if queued:
            reason = parse.intent if entered or result.handoff else LOW_CONFIDENCE_LOOP
            streak = 0
            if (await self._staffing(self.clock())).available:
                events.append(NewEvent(ev.HANDOFF, {"reason": reason}))
            else:  # nobody can answer: say so, and stay with the bot rather than wait for no one
                queued = False
                events.append(NewEvent(ev.HANDOFF_END, {"reason": END_OFFLINE, "wanted": reason}))
                offline = offline_responses(parts.domain.responses, FALLBACK)
                result.responses[:] = offline if entered or result.handoff else [*result.responses, *offline]
                new_state = initial if new_state == HANDOFF_STATE else new_state
        handed_off = new_state == HANDOFF_STATE or queued or status != HANDOFF_NONE
        events.insert(
            action_at,
            NewEvent(
                ev.ACTION,
                {**decision.to_dict(), "state_before": conversation.state, "state_after": new_state,
                 "failed": result.failed, "error": result.error, **({"knowledge": knowledge} if knowledge else {})},
            ),
        )
        timer.lap("action")

        return await self._finish(
            conversation, message_id, events, result, slots, language, on_token, timer,
            parse=parse, action=decision.action, state=new_state, handed_off=handed_off, streak=streak,
            flags=verdict.flags, resets=parts.flows.resets.get(decision.action, ()),
        )

    async def _finish(
        self,
        conversation: Conversation,
        message_id: str,
        events: list[NewEvent],
        result: ActionResult,
        slots: dict[str, Any],
        language: str,
        on_token: OnToken | None,
        timer: _Timer,
        *,
        parse: Parse,
        action: str,
        state: str,
        handed_off: bool,
        streak: int,
        flags: Sequence[str],
        resets: Sequence[str] = (),
    ) -> TurnReply:
        """Say what the turn's actions asked for, check it, and commit every event of the turn in one transaction."""
        parts = self.parts
        text, sources, to_check = await self._realise(result, slots, language, message_id, on_token)
        timer.lap("generation")
        for slot in resets:  # the task ended: its next run asks again
            if slots.get(slot) is not None:
                slots[slot] = None
                events.append(NewEvent(ev.SLOT_SET, {"slot": slot, "value": None, "from": "reset"}))

        flags = list(flags)
        if parts.output_filter is not None and to_check:
            out = await asyncio.to_thread(parts.output_filter.check, to_check, language)
            replaced = out.toxic
            if replaced:
                text = self.generator.render_template(Act(SAFE_REPLY, {}, language))
                flags.append("toxic_reply")
            events.append(NewEvent(ev.SAFETY_OUTPUT, {**out.to_dict(), "replaced": replaced}))
        timer.lap("safety_out")

        bot_message_id = f"bot-{message_id}"
        offered = {"buttons": [{"title": t, "payload": p} for t, p in result.buttons]} if result.buttons else {}
        events.append(
            NewEvent(
                ev.BOT_MESSAGE,
                {"text": text, "message_id": bot_message_id, "reply_to": message_id, "sources": sources,
                 "latency_ms": timer.stages, **offered},
                message_id=bot_message_id,
            )
        )
        await self.store.commit_turn(
            TurnUpdate(
                conversation_id=conversation.id,
                expected_version=conversation.version,
                state=state,
                slots=slots,
                language=language,
                handed_off=handed_off,
                events=tuple(events),
                last_intent=parse.intent,
                last_action=action,
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
            action=action,
            handed_off=handed_off,
            flags=tuple(flags),
            buttons=tuple(result.buttons),
        )

    async def _rasa_turn(
        self,
        conversation: Conversation,
        message_id: str,
        events: list[NewEvent],
        parse: Parse,
        verdict: InputVerdict,
        language: str,
        on_token: OnToken | None,
        timer: _Timer,
    ) -> TurnReply:
        """A turn of an imported Rasa bot: its rules, forms and stories choose the actions (:mod:`dialogue.rasa`)."""
        from dialogue.rasa.entities import entity_values
        from dialogue.rasa.tracker import NLU_FALLBACK

        rasa = self.parts.rasa
        assert rasa is not None
        outcome = await rasa.turn(
            conversation.state, conversation.slots,
            intent=NLU_FALLBACK if verdict.blocked else parse.intent, confidence=parse.confidence,
            ranking=parse.ranking, entities=entity_values((e.entity, e.value) for e in parse.entities),
            text=None if verdict.blocked else verdict.text, run=self.parts.actions.run, sender_id=conversation.id,
        )
        timer.lap("policy")
        before = conversation.slots
        for slot, value in outcome.slots.items():
            if before.get(slot) != value and not slot.startswith("_"):
                events.append(NewEvent(ev.SLOT_SET, {"slot": slot, "value": value}))
        for action, why in outcome.actions:
            events.append(NewEvent(ev.ACTION, {"name": action, "policy": f"rasa:{why}", "state_before": conversation.state,
                                               "state_after": outcome.state, "failed": outcome.result.failed}))
        timer.lap("action")
        last = outcome.actions[-1][0] if outcome.actions else conversation.last_action or ""
        queued = outcome.result.handoff and conversation.handoff_status == HANDOFF_NONE
        if queued:
            events.append(NewEvent(ev.HANDOFF, {"reason": parse.intent}))
        return await self._finish(
            conversation, message_id, events, outcome.result, dict(outcome.slots), language, on_token, timer,
            parse=parse, action=last, state=outcome.state, handed_off=queued or conversation.handed_off, streak=0,
            flags=verdict.flags,
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
    ) -> tuple[str, list[str], str]:
        """The reply, where each piece came from, and what the output classifier must read: a model's text and an
        action's literal text whole, a template only when values were put into it, then whole (its author's words
        alone are trusted: a benign greeting the classifier happens to dislike must not become the safe reply; a value
        is read in its sentence, where a customer's "mom" is a payee, not the insult it reads as alone)."""
        pieces: list[str] = []
        sources: list[str] = []
        checked: list[str] = []
        tracker_values = {k: str(v) for k, v in slots.items() if v not in (None, "") and not k.startswith("_")}
        for index, message in enumerate(result.messages()):
            if index and on_token is not None:
                await on_token("\n")
            if isinstance(message, str):  # an action's literal text: said as it is, checked whole
                if on_token is not None:
                    await on_token(message)
                pieces.append(message)
                sources.append("action")
                checked.append(message)
                continue
            response, values = message
            act = Act(name=response, slots={**tracker_values, **values}, language=language)
            realised = await self.generator.realise(act, on_token)
            pieces.append(realised.text)
            sources.append(realised.source)
            if not realised.trusted or any(v.strip() for v in realised.inserted):
                checked.append(realised.text)  # a value is judged in its sentence ("mom" alone reads as an insult)
        return "\n".join(p for p in pieces if p), sources, "\n".join(c for c in checked if c)


def _user_message(verdict: InputVerdict, message_id: str) -> dict[str, Any]:
    """The stored customer message: the redacted text with the customer's punctuation (people read it), plus the
    normalised form the models read when it differs, so that a console search matches either."""
    data: dict[str, Any] = {"text": verdict.shown, "message_id": message_id}
    if verdict.display:
        data["normalized"] = verdict.text
    return data


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
        buttons=ev.stored_buttons(bot.data) if bot else (),
    )
