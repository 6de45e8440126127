"""The turn: one user message in, one reply out, every event committed in one transaction.

The engine sequences a turn's awaits: load the conversation, parse, ask the policy, run the action, realise the
reply, check it, commit. Every decision between them (slot values, the actions allowed, retrieval, the
misunderstanding streak, hand-offs, what the turn counts as) is a pure function of :mod:`dialogue.turn`, tested
without a database. Everything with I/O or weights comes in as a parameter — the store, the NLU parser, the reply
generator, the action runner, the safety filters — so the same turn runs behind the WebSocket server, in scenario
replays and in tests. Blocking work (torch: the NLU, a learned policy; sqlite in actions) runs in worker threads;
the store is async. The reply carries the turn's stage timings and its :class:`~dialogue.types.TurnFacts` (the
server records both as metrics); the facts also go to the store with the turn's update, for the console's columns.

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
import functools
import logging
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from dialogue import turn
from dialogue import types as ev
from dialogue.domain import Domain
from dialogue.errors import ConcurrentUpdate, ConversationExists, DialogueError, DuplicateMessage, TurnContention
from dialogue.flows import Flows
from dialogue.handoff import (
    ALWAYS_STAFFED,
    DEFAULT_TIMEOUT,
    END_CUSTOMER,
    END_OFFLINE,
    END_TIMEOUT,
    Staffing,
    StaffingProbe,
    wait_expired,
)
from dialogue.review import redact_example
from dialogue.store import ConversationStore
from dialogue.streaming import CheckedStream
from dialogue.types import (
    HANDOFF_AGENT,
    HANDOFF_WAITING,
    ActionResult,
    Conversation,
    ConversationSummary,
    Event,
    NewConversation,
    NewEvent,
    TurnReply,
)
from nlu.types import Parse
from policy import Decision, FSMPolicy, Policy
from runtime import Act, OnToken, Realisation
from safety.pii import redact_verbatim
from safety.types import InputVerdict, OutputVerdict

if TYPE_CHECKING:
    from dialogue.clauses import Clause
    from dialogue.knowledge import Hit
    from dialogue.rasa.turn import RasaDialogue

log = logging.getLogger("kefu.dialogue")

FALLBACK = turn.FALLBACK


class Parser(Protocol):
    def parse(self, text: str) -> Parse: ...


class InputChecker(Protocol):
    def check(self, text: str) -> InputVerdict: ...


class OutputChecker(Protocol):
    def check(self, text: str, language: str, *, baseline: str | None = None) -> OutputVerdict: ...


class Generator(Protocol):
    async def realise(self, act: Act, on_token: OnToken | None = None) -> Realisation: ...

    def render_template(self, act: Act) -> str: ...


class Retriever(Protocol):
    """A knowledge base (:class:`dialogue.knowledge.KnowledgeBase`): the best entries for a text, blocking."""

    def search(self, text: str, language: str, k: int = 3) -> list[Hit]: ...

    def nearest(self, text: str, language: str) -> dict[str, float]: ...


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
    knowledge_threshold: float | Mapping[str, float] = 0.5  # bot.yml: one, or one per language
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
        store: ConversationStore,
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
        self._verdicts = _Verdicts()

    def with_parts(self, **changes: Any) -> DialogueEngine:
        """The same engine (store, generator, clock) with some of its bot parts replaced: another policy, staffing..."""
        return DialogueEngine(
            dataclasses.replace(self.parts, **changes), self.store, self.generator,
            max_attempts=self.max_attempts, clock=self.clock,
        )

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
                    return turn.replayed_reply(conversation, message_id, replay)
            try:
                return await self._turn(conversation, message_id, verdict, on_token if attempt == 0 else None)
            except DuplicateMessage:
                pass  # another worker processed this message id first: the next read answers from its events
            except ConcurrentUpdate:
                log.info("turn raced, retrying", extra={"conversation_id": conversation.id, "attempt": attempt})
            if attempt + 1 < self.max_attempts:
                conversation, seen = await self.store.get_for_message(conversation.id, message_id)
        raise TurnContention(conversation.id if conversation else str(conversation_id), self.max_attempts)

    def _rules(self) -> turn.TurnRules:
        """What the turn's decisions read of the bot, from its parts as they are now (tests and the learned policy's
        gate replace parts on a live engine)."""
        parts = self.parts
        return turn.TurnRules(
            domain=parts.domain, flows=parts.flows, confidence_threshold=parts.confidence_threshold,
            knowledge_action=parts.knowledge_action if parts.knowledge is not None else None,
            knowledge_threshold=parts.knowledge_threshold,
        )

    async def _choose(self, situation: turn.Situation) -> Decision:
        """The policy's choice. The FSM's rules are plain Python and cheap: they run here. Any other policy (the learned
        one's torch forward pass) runs in a worker thread, like the NLU, so that it never stalls the event loop."""
        policy = self.parts.policy
        if isinstance(policy, FSMPolicy):
            return policy.choose(situation.observation, situation.allowed)
        return await asyncio.to_thread(policy.choose, situation.observation, situation.allowed)

    async def _turn(
        self, conversation: Conversation, message_id: str, verdict: InputVerdict, on_token: OnToken | None
    ) -> TurnReply:
        """One turn's awaits, in order; every decision between them is :mod:`dialogue.turn`'s."""
        parts, rules, timer = self.parts, self._rules(), _Timer()
        events = turn.message_events(verdict, message_id)
        timer.lap("safety_in")
        language = turn.language_of(verdict.text, conversation.language)
        if verdict.blocked:
            parse = turn.blocked_parse(verdict, language)
        else:
            parse = await asyncio.to_thread(parts.nlu.parse, verdict.text)
        events.append(NewEvent(ev.NLU_PARSE, parse.to_dict()))
        timer.lap("nlu")
        if conversation.handoff_status == HANDOFF_AGENT:
            return await self._agent_turn(conversation, message_id, events, parse, verdict, language)
        if parts.rasa is not None:
            return await self._rasa_turn(conversation, message_id, events, parse, verdict, language, on_token, timer)

        search = _Search(parts.knowledge, parse.text, language)
        nearest = await search.nearest() if turn.doubts_subject(rules, conversation, parse) else None
        understanding = turn.understand(rules, conversation, parse, verdict, nearest)
        unsure = turn.unsure_clauses(rules, understanding, conversation.state)
        read: list[Parse] = []  # the unsure message's clauses, as the NLU read them one by one
        if unsure:  # a request inside a story the NLU is unsure of as a whole
            read, near = await asyncio.to_thread(self._read_clauses, unsure, language)
            understanding = turn.task_in_clauses(rules, understanding, read, near)
        question = bool(understanding.takers) and await search.hit(turn.aside_bar(rules, parse, language)) is not None
        understanding = turn.take_answer(rules, understanding, question=question)
        query = turn.unasked_query(rules, understanding, conversation.state)
        if query is not None:  # one NLU parse per clause, in a worker thread, unless they were just read
            clauses = query.clauses
            parses = read if clauses == unsure else \
                await asyncio.to_thread(lambda: [parts.nlu.parse(c.text) for c in clauses])
            understanding = turn.take_unasked(rules, understanding, query, parses)
        statements = turn.handoff_statements(rules, understanding, conversation.state)
        if statements:  # a hand-off reading asked as a question: a request only if a statement says so
            said, near = await asyncio.to_thread(self._read_clauses, statements, language)
            understanding = turn.handoff_asked(rules, understanding, said, near)
        elif statements is not None:  # all question: the whole message decides
            understanding = turn.handoff_asked(rules, understanding, (), (), await search.nearest())

        def situation(state: str) -> turn.Situation:
            return turn.situation(rules, understanding, conversation, state, verdict, language)

        wait, back = await self._wait(rules, conversation, understanding, situation, search)
        chosen = back[0] if back else situation(wait.state)
        decision = back[1] if back else await self._choose(chosen)
        bar = turn.knowledge_bar(rules, understanding, chosen.context_for(decision.action), decision,
                                 blocked=verdict.blocked, language=language, last_action=conversation.last_action)
        plan = turn.decide(rules, understanding, conversation, wait, chosen, decision,
                           None if bar is None else await search.hit(bar))
        timer.lap("policy")

        result = await self._run_action(plan.action, conversation, plan.slots, understanding.parse, language)
        settled = turn.settle(rules, plan, result)
        staffed = settled.wanted is not None and (await self._staffing(self.clock())).available
        outcome = turn.conclude(rules, settled, staffed=staffed)
        timer.lap("action")
        return await self._finish(conversation, message_id, events, outcome, language, on_token, timer,
                                  parse=understanding.parse, nlu=parse, verdict=verdict, actions=(outcome.action,))

    def _read_clauses(self, clauses: Sequence[Clause], language: str
                      ) -> tuple[list[Parse], list[Mapping[str, float]]]:
        """Each clause's NLU parse and, with a knowledge base, its intents' nearest examples. Blocking: one worker
        thread for both."""
        parts = self.parts
        knowledge = parts.knowledge
        return ([parts.nlu.parse(c.text) for c in clauses],
                [] if knowledge is None else [knowledge.nearest(c.text, language) for c in clauses])

    async def _wait(
        self,
        rules: turn.TurnRules,
        conversation: Conversation,
        understanding: turn.Understanding,
        situation: Callable[[str], turn.Situation],
        search: _Search,
    ) -> tuple[turn.Wait, tuple[turn.Situation, Decision] | None]:
        """The hand-off's life cycle (:mod:`dialogue.handoff`): a wait for a human ends at its time-out, when nobody is
        left to answer, or when the customer asks the bot something it can act on from the start (then the policy's
        choice from there is the turn's, returned with the wait)."""
        if conversation.handoff_status != HANDOFF_WAITING:
            return turn.end_wait(rules, conversation, None), None
        now = self.clock()
        if wait_expired(conversation.handoff_at, now, self.parts.handoff_timeout):
            return turn.end_wait(rules, conversation, END_TIMEOUT), None
        if not (await self._staffing(now)).available:
            return turn.end_wait(rules, conversation, END_OFFLINE), None
        if turn.may_come_back(understanding, conversation.state):
            back = situation(rules.initial_state)  # would the bot act on this from the start? then it is back
            decision = await self._choose(back)
            if turn.comes_back(rules, back, decision) and \
                    turn.back_on_a_question(back, decision, await search.nearest()):
                return turn.end_wait(rules, conversation, END_CUSTOMER), (back, decision)
        return turn.end_wait(rules, conversation, None), None

    async def _finish(
        self,
        conversation: Conversation,
        message_id: str,
        events: list[NewEvent],
        outcome: turn.Outcome,
        language: str,
        on_token: OnToken | None,
        timer: _Timer,
        *,
        parse: Parse,
        nlu: Parse,
        verdict: InputVerdict,
        actions: Sequence[str],
    ) -> TurnReply:
        """Say what the turn's actions asked for, check it, and commit every event of the turn in one transaction.
        ``parse`` is the turn's reading of the message (entities kept, brought in scope), ``nlu`` the NLU's as stored
        in the turn's ``nlu_parse`` event (what the turn counts as)."""
        parts, result = self.parts, outcome.result
        if on_token is not None and parts.output_filter is not None:
            on_token = CheckedStream(on_token, functools.partial(self._reads_safe, parts.output_filter, language))
        text, sources, to_check = await self._realise(result, outcome.reply_slots, language, message_id, on_token)
        timer.lap("generation")
        events = [*events, *outcome.events]
        flags = list(verdict.flags)
        out: OutputVerdict | None = None
        if parts.output_filter is not None and to_check.texts:
            out = await self._read(parts.output_filter, to_check.text, language, to_check.baseline)
            if out.toxic:  # replaced by the bot's safe reply
                text = self.generator.render_template(Act(turn.SAFE_REPLY, {}, language))
                flags.append(turn.TOXIC_REPLY)
            events.append(NewEvent(ev.SAFETY_OUTPUT, {**out.to_dict(), "replaced": out.toxic}))
        timer.lap("safety_out")

        reply = turn.bot_message(message_id, text, sources, timer.stages, result.buttons)
        facts = turn.turn_facts(verdict, nlu, actions, output=out, handoff=outcome.handoff,
                                handoff_end=outcome.handoff_end)
        await self.store.commit_turn(turn.committed(conversation, outcome, [*events, reply], language, parse, facts))
        return turn.answered(conversation, message_id, text, outcome, parse, flags=flags, stages=timer.stages,
                             facts=facts)

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
        found = await rasa.turn(
            conversation.state, conversation.slots,
            intent=NLU_FALLBACK if verdict.blocked else parse.intent, confidence=parse.confidence,
            ranking=parse.ranking, entities=entity_values((e.entity, e.value) for e in parse.entities),
            text=None if verdict.blocked else verdict.text, run=self.parts.actions.run, sender_id=conversation.id,
        )
        timer.lap("policy")
        outcome = turn.rasa_outcome(conversation, found, parse.intent)
        timer.lap("action")
        return await self._finish(conversation, message_id, events, outcome, language, on_token, timer,
                                  parse=parse, nlu=parse, verdict=verdict, actions=[name for name, _ in found.actions])

    async def _agent_turn(
        self,
        conversation: Conversation,
        message_id: str,
        events: list[NewEvent],
        parse: Parse,
        verdict: InputVerdict,
        language: str,
    ) -> TurnReply:
        """An agent holds the conversation: store the message (and its parse, for review) and do not answer."""
        update, reply = turn.with_agent(conversation, message_id, events, parse, verdict, language)
        await self.store.commit_turn(update)
        return reply

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
            metadata=({"knowledge_threshold": turn.knowledge_threshold(self.parts.knowledge_threshold, language)}
                      if action == self.parts.knowledge_action else None),
        )
        try:
            result = await self.parts.actions.run(action, payload)
        except Exception as exc:  # an action bug must not kill the turn: answer with the fallback
            log.exception("action %s raised %s", action, type(exc).__name__)
            return ActionResult(responses=[(FALLBACK, {})], failed=True, error=type(exc).__name__)
        if not result.responses and not result.texts:
            result.responses.append((FALLBACK, {}))
        return result

    async def _reads_safe(self, checker: OutputChecker, language: str, text: str) -> bool:
        """Whether the output classifier lets ``text`` be streamed (judged outright: a streamed piece has no
        baseline, and a piece held back costs only its streaming, since the final message follows)."""
        return not (await self._read(checker, text, language, None)).toxic

    async def _read(self, checker: OutputChecker, text: str, language: str, baseline: str | None) -> OutputVerdict:
        """The classifier's verdict on ``text``: from :class:`_Verdicts` when it read the same text lately (a one-
        sentence reply streamed and then checked whole; a template's first sentence, said in every conversation)."""
        verdict = self._verdicts.get(checker, language, text, baseline)
        if verdict is None:
            verdict = await asyncio.to_thread(checker.check, text, language, baseline=baseline)
            self._verdicts.put(checker, language, text, baseline, verdict)
        return verdict

    async def _realise(
        self, result: ActionResult, slots: dict[str, Any], language: str, message_id: str, on_token: OnToken | None
    ) -> tuple[str, list[str], _ToCheck]:
        """The reply, where each piece came from, and what the output classifier must read: a model's text and an
        action's literal text whole; a template only when words were put into it, then whole and against the author's
        words alone (they are trusted: a benign greeting the classifier happens to dislike must not become the safe
        reply; a value is read in its sentence, where a customer's "mom" is a payee, not the insult it reads as
        alone; a value of digits and punctuation only, an amount or a card's last digits, cannot insult)."""
        pieces: list[str] = []
        sources: list[str] = []
        check = _ToCheck()
        tracker_values = {k: str(v) for k, v in slots.items() if v not in (None, "") and not k.startswith("_")}
        for index, message in enumerate(result.messages()):
            if index and on_token is not None:
                await on_token("\n")
            if isinstance(message, str):  # an action's literal text: said as it is, checked whole
                if on_token is not None:
                    await on_token(message)
                pieces.append(message)
                sources.append("action")
                check.add(message)
                continue
            response, values = message
            act = Act(name=response, slots={**tracker_values, **values}, language=language)
            realised = await self.generator.realise(act, on_token)
            pieces.append(realised.text)
            sources.append(realised.source)
            if not realised.trusted:
                check.add(realised.text)
            elif words := [v for v in realised.inserted if not _plain(v)]:
                check.add(realised.text, trusted=_without(realised.text, words))
        return "\n".join(p for p in pieces if p), sources, check


class _Verdicts:
    """The output classifier's last ``size`` verdicts by what it read (the checker, the language, the text and its
    baseline), least recently used dropped first. A verdict is a function of these (each text is scored alone, see
    ``safety.toxicity``), so a text read again is not scored again. Used from the event loop only; the keys hold
    the bot's replies, with customer values in them: in memory only, no repr of them."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        # keyed by the checker's id (a checker need not be hashable); the value keeps the checker itself, so that an
        # id reused by a later checker never finds the verdicts of an earlier one
        self._items: OrderedDict[tuple[int, str, str, str | None], tuple[OutputChecker, OutputVerdict]] = OrderedDict()

    def __repr__(self) -> str:
        return f"_Verdicts(size={self._size}, held={len(self._items)})"

    def get(self, checker: OutputChecker, language: str, text: str, baseline: str | None) -> OutputVerdict | None:
        key = (id(checker), language, text, baseline)
        found = self._items.get(key)
        if found is None or found[0] is not checker:
            return None
        self._items.move_to_end(key)
        return found[1]

    def put(self, checker: OutputChecker, language: str, text: str, baseline: str | None, verdict: OutputVerdict) -> None:
        key = (id(checker), language, text, baseline)
        self._items[key] = (checker, verdict)
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)


@dataclass
class _ToCheck:
    """What a turn's reply asks of the output classifier: the text, and the author's words alone when every piece of
    it is a trusted template (a model's or an action's text has no such baseline: it is judged outright)."""

    texts: list[str] = field(default_factory=list)
    trusted: list[str] | None = field(default_factory=list)

    def __repr__(self) -> str:  # the texts may hold customer values
        return f"_ToCheck(pieces={len(self.texts)}, baseline={self.trusted is not None})"

    def add(self, text: str, *, trusted: str | None = None) -> None:
        if not text:
            return
        self.texts.append(text)
        if trusted is None:
            self.trusted = None
        elif self.trusted is not None:
            self.trusted.append(trusted)

    @property
    def text(self) -> str:
        return "\n".join(self.texts)

    @property
    def baseline(self) -> str | None:
        return None if self.trusted is None else "\n".join(self.trusted)


def _plain(value: str) -> bool:
    """Whether ``value`` is digits, punctuation, spaces and currency signs only ("3377", "¥1,299.00", "2024-05-01"):
    nothing the classifier could read as an insult. Letters, CJK characters and symbols such as emoji are words."""
    return all(unicodedata.category(c)[0] in "NPZ" or unicodedata.category(c) == "Sc" for c in value)


def _without(text: str, values: Sequence[str]) -> str:
    """``text`` with every occurrence of ``values`` taken out, longest first (one may contain another)."""
    for value in sorted({v.strip() for v in values if v.strip()}, key=len, reverse=True):
        text = text.replace(value, "")
    return text


class _Search:
    """The turn's one retrieval from the knowledge base, made when first needed (one MiniLM encode, in a worker
    thread), whatever its score; each step then asks whether it reaches its own bar. The intents' nearest examples
    (the entries' rivals) are scored only for a bar that names rivals and a hit that reaches its score (from the
    same query vector)."""

    def __init__(self, knowledge: Retriever | None, text: str, language: str) -> None:
        self._knowledge, self._text, self._language = knowledge, text, language
        self._best: list[Hit | None] = []
        self._nearest: list[Mapping[str, float]] = []

    def __repr__(self) -> str:  # the text is customer text
        return f"_Search(searched={bool(self._best)})"

    async def hit(self, bar: turn.Bar) -> Hit | None:
        """The best entry if it passes ``bar``, else ``None``."""
        if not self._best:
            self._best.append(await asyncio.to_thread(self._search))
        hit = self._best[0]
        return hit if bar.admits(hit, await self.nearest() if bar.asks_rivals(hit) else {}) else None

    async def nearest(self) -> Mapping[str, float]:
        """Each intent's nearest NLU example's score for the message (``{}`` without a knowledge base)."""
        knowledge = self._knowledge
        if not self._nearest:
            self._nearest.append({} if knowledge is None or not self._text.strip() else
                                 await asyncio.to_thread(knowledge.nearest, self._text, self._language))
        return self._nearest[0]

    def _search(self) -> Hit | None:
        knowledge = self._knowledge
        if knowledge is None or not self._text.strip():
            return None
        hits = knowledge.search(self._text, self._language, 1)
        return hits[0] if hits else None
