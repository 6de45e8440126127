"""The decisions of one turn, with no I/O: what a message fills, what the policy may choose, where the flows go,
when a conversation is queued for a human, and what the turn counts as (:class:`~dialogue.types.TurnFacts`).

:class:`dialogue.engine.DialogueEngine` runs a turn as a sequence of awaits (load the conversation, parse, ask the
policy, search the knowledge base, run the action, realise the reply, check it, commit); every choice between them
is a function here, so that it can be read in one place and tested without a database, a model or an event loop.
A step returns what the next await needs to know: :attr:`Understanding.takers` says whether the knowledge base must
be asked if the message is a question, :func:`unasked_query` which clauses to parse, :func:`knowledge_bar` whether
retrieval may take the turn, :attr:`Settled.wanted` whether staffing must be asked. In order::

    understanding = understand(rules, conversation, parse, verdict)      # entities, a value that brings it in scope
    understanding = take_answer(rules, understanding, question=...)      # the answer to the bot's question
    understanding = take_unasked(rules, understanding, query, parses)    # a detail said before it was asked
    wait = end_wait(rules, conversation, end)                             # a wait for a human that ends, or not
    chosen = situation(rules, understanding, conversation, wait.state, ...)  # what the policy chooses from
    plan = decide(rules, understanding, conversation, wait, chosen, decision, hit)  # after the policy, retrieval
    settled = settle(rules, plan, action_result)                          # the action's slots, a reopened wait
    outcome = conclude(rules, settled, staffed=...)                       # the hand-off, the events, the slots
    facts = turn_facts(verdict, parse, actions, ...)                      # what the console and metrics count

Each function copies what it changes: its inputs are never modified.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dialogue import types as ev
from dialogue.clauses import MAX_CLAUSES, Clause, Reading, asks, detail, split_clauses
from dialogue.definition import DialogueDefinition
from dialogue.domain import SUBJECT_CHANGE_TRUST, Domain, FromText
from dialogue.flows import FlowContext, Flows
from dialogue.handoff import END_CUSTOMER, END_OFFLINE, offline_responses
from dialogue.types import (
    HANDOFF_NONE,
    ActionResult,
    Conversation,
    Event,
    NewEvent,
    TurnFacts,
    TurnReply,
    TurnUpdate,
)
from nlu.tokenize import clear_language
from nlu.types import Parse
from policy import Decision, Observation, intent_for
from policy.base import runner_up_questions
from policy.botshape import questions
from safety.types import InputVerdict, OutputVerdict

if TYPE_CHECKING:
    from dialogue.knowledge import Hit
    from dialogue.rasa.turn import TurnResult as RasaTurn

FALLBACK = ev.FALLBACK_ACTION
SAFE_REPLY = "utter_safe_reply"
HANDOFF_STATE = "handed_off"
LOW_CONFIDENCE_LOOP = "low_confidence_loop"  # HANDOFF reason when the bot gave up after repeated misunderstandings
LOOP_TURNS = 2  # consecutive low-confidence/fallback turns that queue a conversation for a human
MAX_TEXT_SLOT = 200  # characters of a message kept as a from_text slot value
SMALL_TALK_TRUST = 0.8  # small talk the NLU is at least this sure of is not second-guessed by retrieval
DEFAULT_KNOWLEDGE_THRESHOLD = 0.5
TASK_KNOWLEDGE_MIN = 0.8  # the least retrieval score that takes a turn from a task (or marks a question, not an answer)
# How much nearer an entry must be to the message than every example of the intent it takes the turn from: the two
# scores come from different texts (an entry's questions and answer, an intent's examples), so a tie is no evidence.
# On the shop's held-out conversations the questions the rule is for win by 0.13-0.54; a wrong Chinese entry
# ("物流一直不动是咋回事" -> payment_failed_zh) by 0.06, and a return ("鞋子码数小了 想退") ties the sizing entry.
RIVAL_MARGIN = 0.1
# How much nearer a message must be to its intent's examples than to any other intent's to move a conversation into
# a wait for a human or out of it on a question (said_plainly): the shop's requests for a human by 0.13-0.59,
# statements the NLU misfiled as one by -0.20-0.00.
HANDOFF_MARGIN = 0.05
# A statement clause the NLU is this sure is a hand-off need only be the nearest to its intent's examples: "I want to
# speak to someone who can explain this" (complaint 0.99) is 0.014 nearer to the complaint examples, which are
# complaints more than requests for a person; the statements misfiled as a hand-off were read at 0.87 and below.
SURE_HANDOFF = 0.95
WITH_AGENT = "with_agent"  # TurnReply flag: an agent holds the conversation; the bot did not answer
TOXIC_REPLY = "toxic_reply"  # TurnReply flag: the output classifier replaced the reply


@dataclass(frozen=True)
class TurnRules:
    """What the decisions read of one bot: :class:`dialogue.engine.BotParts` without the parts that do I/O."""

    domain: Domain
    flows: Flows
    confidence_threshold: float = 0.5
    knowledge_action: str | None = None  # None: no knowledge base, or no action that answers from it
    knowledge_threshold: float | Mapping[str, float] = 0.5  # one for every language, or one per language

    def threshold_in(self, language: str) -> float:
        """The least knowledge score that answers in ``language`` (``bot.yml`` ``knowledge_threshold``)."""
        return knowledge_threshold(self.knowledge_threshold, language)

    @property
    def initial_state(self) -> str:
        return self.flows.initial_state

    @property
    def answer_intents(self) -> tuple[str, ...]:
        """The intents a reply to the bot's question is read as (a dialogue definition's ``answer_intents``)."""
        return tuple(getattr(self.flows.definition, "answer_intents", ()))


def knowledge_threshold(setting: float | Mapping[str, float], language: str) -> float:
    """``bot.yml``'s ``knowledge_threshold`` in ``language``: a number is every language's; a mapping names each
    language's (the English cosine and the Chinese blend are on different scales), 0.5 for one it does not name."""
    if isinstance(setting, Mapping):
        return float(setting.get(language, DEFAULT_KNOWLEDGE_THRESHOLD))
    return float(setting)


# -- reading the message ---------------------------------------------------------------------------------------------
def language_of(text: str, current: str) -> str:
    """The conversation's language is the conversation's: only a message clearly written in the other language
    changes it (a Chinese customer's "14388", emoji or phone number does not)."""
    return clear_language(text) or current


def blocked_parse(verdict: InputVerdict, language: str) -> Parse:
    """The parse a blocked message gets instead of the NLU's: out of scope, for certain (it is never acted on)."""
    return Parse(text=verdict.text, intent=ev.OUT_OF_SCOPE, confidence=1.0, language=language)


def message_events(verdict: InputVerdict, message_id: str) -> list[NewEvent]:
    """The turn's first events: the input filter's verdict, then the stored customer message (the redacted text
    with the customer's punctuation, which people read, plus the normalised form the models read when it differs,
    so that a console search matches either)."""
    data: dict[str, Any] = {"text": verdict.shown, "message_id": message_id}
    if verdict.display:
        data["normalized"] = verdict.text
    return [NewEvent(ev.SAFETY_INPUT, verdict.to_dict()), NewEvent(ev.USER_MESSAGE, data, message_id=message_id)]


@dataclass(frozen=True)
class Understanding:
    """What one message says to the dialogue once read against the conversation.

    ``parse`` keeps only the entities the turn takes (the actions read them too) and may be an out-of-scope
    reading brought back in scope by a value; ``intent`` and ``low_confidence`` are what the flows and the policy
    see (an answer to the bot's question is the question's intent, whatever the NLU filed it under); ``filled`` are
    the slots this very message gave and ``events`` their ``slot_set`` events; ``answer`` the message as a
    ``from_text`` value (``""`` for a blocked one); ``awaited`` the slots the state still waits for; ``takers`` the
    ``from_text`` slots that would take the message as their answer: unless the knowledge base answers it
    confidently (then it is a question), see :func:`take_answer`.
    """

    parse: Parse
    intent: str
    low_confidence: bool
    slots: dict[str, Any]
    filled: frozenset[str]
    events: tuple[NewEvent, ...]
    answer: str
    awaited: frozenset[str]
    takers: tuple[FromText, ...] = ()
    waiting: frozenset[str] = frozenset()  # the slots the state waits for, even right after the task's own action
    answered: bool = False  # a from_text slot took this message as the answer to the bot's question
    # from_text slots that would take the message but got a value from its entities ("质量太差": reason "质量太"): the
    # message answered them all the same
    valued: tuple[FromText, ...] = ()
    said: bool = False  # a statement clause of a message that also asks a question asked for a human (handoff_asked)

    def __repr__(self) -> str:  # the slots and the answer are customer text
        return f"Understanding(intent={self.intent!r}, filled={sorted(self.filled)}, answered={self.answered})"

    def with_text(self, slot: str, value: str) -> Understanding:
        """This understanding with the ``from_text`` slot ``slot`` set to ``value``, the message's own words."""
        event = NewEvent(ev.SLOT_SET, {"slot": slot, "value": value, "from": "text"})
        return dataclasses.replace(self, slots={**self.slots, slot: value}, filled=self.filled | {slot},
                                   events=(*self.events, event))


def doubts_subject(rules: TurnRules, conversation: Conversation, parse: Parse) -> bool:
    """Whether reading this message as a change of subject needs the intents' nearest examples (:func:`understand`):
    the bot waits for a ``from_text`` answer, and the NLU is sure of an ``unsure`` intent (small talk, a hand-off)."""
    awaited = rules.flows.awaited(conversation.state, conversation.last_action)
    return parse.confidence >= SUBJECT_CHANGE_TRUST and any(
        parse.intent in m.unsure and m.takes(conversation.last_action, "", False, awaited) for m in rules.domain.from_text)


def plainly(rules: TurnRules, intent: str, nearest: Mapping[str, float] | None) -> bool:
    """Whether the message is nearer to ``intent``'s training examples than to every answer intent's by
    :data:`RIVAL_MARGIN` (``nearest``: :meth:`dialogue.knowledge.KnowledgeBase.nearest`; without it, yes). Asked for a
    return's reason, "the noise cancelling is basically useless" is a complaint to the NLU at 0.99, but the complaint
    examples are no nearer to it than the answers (0.28 against 0.23); "I want a human" is (0.73 against 0.25)."""
    answers = rules.answer_intents
    if not nearest or not answers:
        return True
    return nearer_than(nearest, intent, answers, RIVAL_MARGIN)


def nearer_than(nearest: Mapping[str, float], intent: str, rivals: Iterable[str], margin: float) -> bool:
    """Whether ``intent``'s nearest NLU example is nearer to the message than every one of ``rivals``' by ``margin``
    (``nearest``: :meth:`dialogue.knowledge.KnowledgeBase.nearest`; an intent it does not name scores 0)."""
    return nearest.get(intent, 0.0) >= max((nearest.get(r, 0.0) for r in rivals), default=0.0) + margin


def understand(rules: TurnRules, conversation: Conversation, parse: Parse, verdict: InputVerdict,
               nearest: Mapping[str, float] | None = None) -> Understanding:
    """The message's entities merged into the slots, and an out-of-scope reading taken back by a value.

    A message that answers the bot's question for a ``from_text`` slot keeps the task's other values: the customer
    answers what was asked ("they still took the money" is the reason, not a new merchant the tagger read in it).
    ``nearest``: the intents' nearest examples, when :func:`doubts_subject` asked for them (see :func:`plainly`).
    """
    domain, last_action = rules.domain, conversation.last_action
    awaited = rules.flows.awaited(conversation.state, last_action)  # an answer after an aside
    slots = dict(conversation.slots)
    plain = plainly(rules, parse.intent, nearest)
    answering = {m.slot for m in domain.from_text
                 if m.takes(last_action, parse.intent, False, awaited, parse.confidence, plain)}
    kept = tuple(e for e in parse.entities if not answering or e.entity in answering or slots.get(e.entity) in (None, ""))
    if len(kept) < len(parse.entities):  # the actions read the message's entities too: they get the kept ones
        parse = dataclasses.replace(parse, entities=kept)
    filled: set[str] = set()
    events: list[NewEvent] = []
    for entity in parse.entities:
        if entity.entity in domain.slots:
            filled.add(entity.entity)
            if slots.get(entity.entity) != entity.value:
                slots[entity.entity] = entity.value
                events.append(NewEvent(ev.SLOT_SET, {"slot": entity.entity, "value": entity.value}))
    parse = in_scope_by_value(rules, parse, filled)
    answer = "" if verdict.blocked else verdict.text.strip()[:MAX_TEXT_SLOT]
    plain = plainly(rules, parse.intent, nearest)
    would = [m for m in domain.from_text if m.takes(last_action, parse.intent, False, awaited, parse.confidence, plain)]
    return Understanding(
        parse=parse, intent=parse.intent, low_confidence=parse.confidence < rules.confidence_threshold, slots=slots,
        filled=frozenset(filled), events=tuple(events), answer=answer, awaited=awaited,
        takers=tuple(m for m in would if m.slot not in filled) if answer else (),
        waiting=rules.flows.waiting(conversation.state), valued=tuple(m for m in would if m.slot in filled),
    )


def in_scope_by_value(rules: TurnRules, parse: Parse, filled: set[str] | frozenset[str]) -> Parse:
    """An order number is the bot's business. A message the NLU turned away as out of scope (its best in-scope
    intent fell below the threshold chosen on dev), but which gave a value of a slot of the task that intent
    starts ("where's order 19999"), or an answer with a value a task starts on ("17532 这单咋样了"), is read as
    that intent with its own probability; the bot's confidence threshold still applies to it."""
    definition = rules.flows.definition
    if parse.intent != ev.OUT_OF_SCOPE or not filled or not isinstance(definition, DialogueDefinition):
        return parse
    best = next(((i, p) for i, p in parse.ranking if i != ev.OUT_OF_SCOPE), None)
    if best is None or not definition.claims(best[0], filled):
        return parse
    return dataclasses.replace(parse, intent=best[0], confidence=best[1])


def take_answer(rules: TurnRules, understanding: Understanding, *, question: bool) -> Understanding:
    """The message as the answer to the bot's question: the ``takers`` get the message as their value (unless it is a
    ``question`` the knowledge base answers with at least :data:`TASK_KNOWLEDGE_MIN`), and the turn reads as their
    ``as_intent`` (as it does for the ``valued`` ones, whose value the tagger found in the message); a low-confidence
    or out-of-scope message that gave a value of a slot the state waits for ("which city?" "Paris"; a refused plan,
    then "Fibre 1000 then") is an answer too, whatever the classifier said. So is one
    that gave a value a task starts on (``starts_on``) while the bot waits for nothing: a customer who names an order
    is asking about it ("whats going on with 14021 the app shows something weird" was out of scope at 0.66, its
    best in-scope reading ``inform`` at 0.15, and got "I didn't understand"; the order's status is what it wanted)."""
    found = understanding
    for mapping in () if question else understanding.takers:
        found = found.with_text(mapping.slot, understanding.answer)
        found = dataclasses.replace(found, intent=mapping.as_intent or found.intent, low_confidence=False, answered=True)
    for mapping in () if question else understanding.valued:  # answered with a value the tagger found in it
        found = dataclasses.replace(found, intent=mapping.as_intent or found.intent, low_confidence=False, answered=True)
    answers = rules.answer_intents
    definition = rules.flows.definition
    waited = found.filled & (found.awaited | found.waiting)
    opens = (not found.awaited and not found.waiting and bool(answers) and isinstance(definition, DialogueDefinition)
             and definition.claims(answers[0], found.filled))
    if (found.low_confidence or found.intent == ev.OUT_OF_SCOPE) and (waited or opens):
        found = dataclasses.replace(found, intent=answers[0] if answers else found.intent, low_confidence=False,
                                    answered=True)
    return dataclasses.replace(found, takers=(), valued=())


def unsure_clauses(rules: TurnRules, understanding: Understanding, state: str) -> tuple[Clause, ...] | None:
    """The clauses to read when the NLU is unsure of a whole message (low confidence, out of scope) that is not an
    answer to the bot's question and has 2 to :data:`~dialogue.clauses.MAX_CLAUSES` clauses; ``None`` otherwise (costs
    one NLU parse per clause, so only such messages ask). See :func:`task_in_clauses`."""
    if (understanding.answered or understanding.takers or understanding.valued or not understanding.answer
            or state == HANDOFF_STATE or not (understanding.low_confidence or understanding.intent == ev.OUT_OF_SCOPE)
            or not isinstance(rules.flows.definition, DialogueDefinition)):
        return None
    clauses = split_clauses(understanding.answer)
    return tuple(clauses) if 2 <= len(clauses) <= MAX_CLAUSES else None


def task_in_clauses(rules: TurnRules, understanding: Understanding, parses: Sequence[Parse],
                    nearest: Sequence[Mapping[str, float]] = ()) -> Understanding:
    """``understanding`` read as the task one of its clauses asks for, when exactly one task is asked for by its
    clauses' ``parses``: confidently, said plainly (:func:`said_plainly`; ``nearest``: each clause's), and about a
    value the message gave for one of that task's slots, as :func:`in_scope_by_value` reads a whole message. A
    customer's story around a request blurs the whole message for the NLU: "13047这单耳机 左边耳朵不出声了 给退不" (this
    order's earphones, the left one has no sound, will you take them back?) was out of scope at 0.57, the return second
    at 0.43, and became an order-status lookup of 13047; its last clause alone is a return at 0.79, 0.19 nearer to the
    return's examples than to any other intent's. The whole message's values stay; the reason is then found in the
    other clauses as for any request (:func:`unasked_query`). Without a value the clause is a question about the task
    more often than the task: "拆了包装的东西还能退不，就试了一下" (can opened things still be returned? I only tried them on)
    asks for the return policy, which the knowledge base answers."""
    definition = rules.flows.definition
    if not isinstance(definition, DialogueDefinition):
        return understanding
    near = list(nearest) or [{}] * len(parses)
    asked: dict[str, Parse] = {}  # task -> its surest clause
    for parse, scores in zip(parses, near, strict=True):
        opening = definition.opening(parse.intent)
        if (opening is None or not definition.claims(parse.intent, understanding.filled)
                or parse.confidence < rules.confidence_threshold or not said_plainly(parse.intent, scores)):
            continue
        best = asked.get(opening[0].name)
        if best is None or parse.confidence > best.confidence:
            asked[opening[0].name] = parse
    if len(asked) != 1:
        return understanding
    (clause,) = asked.values()
    parse = dataclasses.replace(understanding.parse, intent=clause.intent, confidence=clause.confidence,
                                ranking=clause.ranking)
    return dataclasses.replace(understanding, parse=parse, intent=clause.intent, low_confidence=False)


@dataclass(frozen=True)
class UnaskedQuery:
    """The clauses of a message that starts a task whose ``from_text`` slot is still empty ("return 10976, it broke"):
    each is parsed on its own (:func:`dialogue.clauses.detail` then finds the clause that is the detail)."""

    slot: str
    clauses: tuple[Clause, ...]
    task_slots: frozenset[str]
    request: frozenset[str]  # the intents of the task
    small_talk: frozenset[str]
    others: frozenset[str]

    def __repr__(self) -> str:  # the clauses are customer text
        return f"UnaskedQuery(slot={self.slot!r}, clauses={len(self.clauses)})"


def unasked_query(rules: TurnRules, understanding: Understanding, state: str) -> UnaskedQuery | None:
    """What to parse to find a ``from_text`` value said before it was asked, or ``None`` (costs one NLU parse per
    clause, so only a confident message, not an answer, that starts a task with such a slot still empty asks)."""
    if understanding.answered or not understanding.answer or understanding.low_confidence:
        return None
    definition = rules.flows.definition
    found = definition.opening(understanding.intent) if isinstance(definition, DialogueDefinition) else None
    if found is None or state in found[0].states:  # no task, or the task is open: its questions take the answers
        return None
    task, small_talk, others = found
    slots = understanding.slots
    mapping = next((m for m in rules.domain.from_text
                    if m.in_request and m.slot in task.slot_names and slots.get(m.slot) in (None, "")), None)
    clauses = split_clauses(understanding.answer)
    if mapping is None or not 2 <= len(clauses) <= MAX_CLAUSES:
        return None
    return UnaskedQuery(mapping.slot, tuple(clauses), frozenset(task.slot_names), frozenset(task.intents),
                        small_talk, others)


def take_unasked(
    rules: TurnRules, understanding: Understanding, query: UnaskedQuery, parses: Sequence[Parse]
) -> Understanding:
    """The detail the clauses' ``parses`` (in clause order) point at, as the query's slot's value, if there is one."""
    readings = [Reading(c, p.intent, p.confidence >= rules.confidence_threshold,
                        any(e.entity in query.task_slots and e.entity != query.slot for e in p.entities))
                for c, p in zip(query.clauses, parses, strict=True)]
    value = detail(readings, query.request, query.small_talk, query.others)
    return understanding if value is None else understanding.with_text(query.slot, value[:MAX_TEXT_SLOT])


def handoff_statements(rules: TurnRules, understanding: Understanding, state: str) -> tuple[Clause, ...] | None:
    """The clauses to parse when a hand-off reading may be a question about people rather than a request for one, or
    ``None`` when it stands: it does unless the message asks a question (:func:`dialogue.clauses.asks`). Then the
    hand-off stands only if a clause that is not a question reads as the hand-off on its own (:func:`handoff_asked`).
    "r u a real person or a bot" and "你是真人还是机器人呀" were hand-offs at 0.96, "我一般下班到家都快九点半了，那会儿还能找到真人
    客服不" (can I still reach a person at half past nine?) at 1.00: the hand-off examples own the words for people. A
    customer who wants one says so ("a whole week more?? let me talk to ur manager", "谁让你们取消的？？我要投诉"); a
    rhetorical question beside it keeps the request. Costs one NLU parse per statement clause of such a message."""
    definition = rules.flows.definition
    handoff = definition.handoff if isinstance(definition, DialogueDefinition) else None
    if (handoff is None or understanding.intent not in handoff.intents or understanding.answered
            or understanding.low_confidence or state == HANDOFF_STATE or not understanding.answer):
        return None
    clauses = split_clauses(understanding.answer)
    if not any(c.question for c in clauses) or len(clauses) > MAX_CLAUSES:
        return None
    return tuple(c for c in clauses if not c.question and c.substantive)


def handoff_asked(rules: TurnRules, understanding: Understanding, parses: Sequence[Parse],
                  nearest: Sequence[Mapping[str, float]] = (), whole: Mapping[str, float] | None = None
                  ) -> Understanding:
    """``understanding`` as a message the bot did not understand unless one of the statement clauses' ``parses`` is a
    confident hand-off reading, said plainly: the clause nearer to the hand-off intent's examples than to any other
    intent's by :data:`HANDOFF_MARGIN`, or at all when the NLU is :data:`SURE_HANDOFF` of it (:func:`said_plainly`;
    ``nearest``: each clause's; without them, the NLU's confidence alone). Then the request was said in words, and
    the knowledge base stays out of the turn (:func:`knowledge_bar`): "cancelled?? I never cancelled anything. I want to
    speak to someone who can explain this" got the order-changes entry. The NLU files unfamiliar statements under the
    hand-off: "my son is looking for a summer job" (beside "are you guys hiring?") is a complaint at 0.87, its
    complaint examples no nearer than 0.17 against an out-of-scope one at 0.29; "let me talk to ur manager" is 0.20
    nearer to its own. Otherwise the knowledge base may answer it (:func:`misread_bar`), else the fallback says what
    the bot can do; a misunderstanding counts towards the hand-off loop as any other.

    A message that is all question has no statement to read: a request for a human is often asked ("can I talk to a
    real person?", "能不能换个真人来"), so the whole message decides, said plainly (``whole``: its nearest examples);
    "r u a real person or a bot" is no nearer to the hand-off's examples than to a greeting's (0.59 against 0.58)."""
    definition = rules.flows.definition
    intents = definition.handoff.intents if isinstance(definition, DialogueDefinition) and definition.handoff else ()
    if not parses:
        plain = said_plainly(understanding.intent, whole or {}, intents)
        return understanding if plain else dataclasses.replace(understanding, low_confidence=True)
    near = list(nearest) or [{}] * len(parses)
    for parse, scores in zip(parses, near, strict=True):
        margin = 1e-6 if parse.confidence >= SURE_HANDOFF else HANDOFF_MARGIN
        if parse.intent in intents and parse.confidence >= rules.confidence_threshold and \
                said_plainly(parse.intent, scores, intents, margin):
            return dataclasses.replace(understanding, said=True)
    return dataclasses.replace(understanding, low_confidence=True)


def said_plainly(intent: str, nearest: Mapping[str, float], kin: Sequence[str] = (),
                 margin: float = HANDOFF_MARGIN) -> bool:
    """Whether a message is nearer to ``intent``'s NLU examples than to those of every other intent (``kin``
    excepted) by ``margin`` (``nearest``: :meth:`dialogue.knowledge.KnowledgeBase.nearest`; without examples, yes)."""
    if not nearest:
        return True
    return nearer_than(nearest, intent, (other for other in nearest if other != intent and other not in kin), margin)


# -- the policy's choice -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Situation:
    """What the policy chooses from in one state: the flows' context, its observation and the allowed actions."""

    context: FlowContext
    observation: Observation
    allowed: list[str]

    def __repr__(self) -> str:
        return f"Situation(state={self.context.state!r}, intent={self.context.intent!r}, allowed={self.allowed})"

    def context_for(self, action: str) -> FlowContext:
        """The flows' context ``action`` runs in: the runner-up intent's for one of the runner-up reading's actions."""
        intent = intent_for(self.observation, action)
        if intent == self.context.intent:
            return self.context
        return FlowContext(self.context.state, intent, dict(self.context.slots), self.context.filled)


def situation(
    rules: TurnRules, understanding: Understanding, conversation: Conversation, state: str, verdict: InputVerdict,
    language: str,
) -> Situation:
    """The policy's question in ``state``. A blocked message (injection, too long) is never acted on, whatever a
    policy learned: safety outranks it, so the fallback is all it allows."""
    slots = understanding.slots
    context = FlowContext(state=state, intent=understanding.intent, slots=dict(slots), filled=understanding.filled)
    allowed = rules.flows.allowed(context)
    if verdict.blocked and FALLBACK in allowed:
        allowed = [FALLBACK]
    runner_up, extra = runner_up_reading(rules, understanding, context, allowed, blocked=verdict.blocked)
    observation = Observation(
        state=state,
        intent=understanding.intent,
        confidence=understanding.parse.confidence,
        filled_slots=frozenset(k for k, v in slots.items() if v not in (None, "")),
        ranking=understanding.parse.ranking,
        turn=conversation.turn_count + 1,
        last_action=conversation.last_action,
        low_confidence=understanding.low_confidence,
        flags=verdict.flags,
        language=language,
        runner_up=runner_up,
        runner_up_actions=extra,
    )
    return Situation(context, observation, [*allowed, *extra])


def runner_up_reading(rules: TurnRules, understanding: Understanding, context: FlowContext, allowed: Sequence[str],
                      *, blocked: bool) -> tuple[str | None, tuple[str, ...]]:
    """The NLU ranking's second intent and the questions (:func:`policy.botshape.questions`: a slot's question, a
    confirmation) the flows allow only for it (``policy.base.Observation``), for a message the bot did not understand
    (low confidence, out of scope): where the rules have only the fallback, a learned policy trained with the same
    reading may ask what the runner-up needs instead. None for a message the NLU is sure of (on the held-out
    conversations, offering it there too turned a bare order id into a return and a tracking question into an order
    lookup), a blocked one, an answer to the bot's question, or flows written in Python (no definition says which
    actions ask)."""
    ranking, definition = understanding.parse.ranking, rules.flows.definition
    unsure = understanding.low_confidence or understanding.intent == ev.OUT_OF_SCOPE
    if (blocked or not unsure or understanding.answered or understanding.intent != understanding.parse.intent
            or not isinstance(definition, DialogueDefinition)):
        return None, ()
    return runner_up_questions(
        ranking, understanding.intent, allowed, questions(definition),
        lambda second: rules.flows.allowed(FlowContext(context.state, second, dict(context.slots), context.filled)))


def would_reach(rules: TurnRules, context: FlowContext, action: str) -> str:
    """The state ``action`` leads to, without moving ``context`` (:meth:`Flows.advance` updates what it gets)."""
    probe = FlowContext(context.state, context.intent, dict(context.slots), context.filled)
    return rules.flows.advance(probe, action)


# -- a wait for a human ------------------------------------------------------------------------------------------------
def may_come_back(understanding: Understanding, state: str) -> bool:
    """Whether a staffed wait in the flows' hand-off state asks the policy if the bot can act on this message from the
    start (see :func:`comes_back`): a misunderstood one never ends the wait."""
    return state == HANDOFF_STATE and not understanding.low_confidence


def comes_back(rules: TurnRules, back: Situation, decision: Decision) -> bool:
    """Whether the bot, asked from the flows' initial state (``back``), would act on the message: a task or an
    action, not the fallback, the hand-off again, or small talk that leaves the bot where it was. Then the customer
    ended the wait themselves, unless the bot could only ask a question (:func:`back_on_a_question`)."""
    after = would_reach(rules, back.context_for(decision.action), decision.action)
    acts = decision.action != FALLBACK and after != HANDOFF_STATE
    return acts and (after != rules.initial_state or not decision.action.startswith("utter_"))


def back_on_a_question(back: Situation, decision: Decision, nearest: Mapping[str, float]) -> bool:
    """Whether a task the bot could only ask a question for (its first slot's ``ask``: a reply, no action) ends the
    wait: only when the message is said plainly (:func:`said_plainly`; ``nearest``: the intents' nearest examples).
    Waiting for a human, "uh?? still waiting here" was an order-status request at 0.96 and left the queue for "Which
    order number is it?"; its nearest examples are a greeting's (0.56 against 0.51). A task the bot can act on ("where
    is 10234") always ends it."""
    if not decision.action.startswith("utter_"):
        return True
    return said_plainly(back.context_for(decision.action).intent, nearest)


@dataclass(frozen=True)
class Wait:
    """Where the turn starts once a wait for a human is settled: ``end`` names why it ended (``None``: it goes on,
    or there was none), ``notices`` are said before the answer (nobody will come)."""

    state: str
    status: str
    end: str | None = None
    events: tuple[NewEvent, ...] = ()
    notices: tuple[tuple[str, dict[str, Any]], ...] = ()


def end_wait(rules: TurnRules, conversation: Conversation, end: str | None) -> Wait:
    """The conversation's wait (if any) ended for ``end`` (a ``dialogue.handoff`` ``END_*`` reason), or not (``None``):
    an ended wait is back with the bot, at the flows' initial state when it was in the hand-off state."""
    state, status = conversation.state, conversation.handoff_status
    if end is None:
        return Wait(state, status)
    notices = () if end == END_CUSTOMER else tuple(offline_responses(rules.domain.responses, FALLBACK))
    return Wait(rules.initial_state if state == HANDOFF_STATE else state, HANDOFF_NONE, end,
                (NewEvent(ev.HANDOFF_END, {"reason": end}),), notices)


# -- the decision ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bar:
    """What a knowledge entry must reach to take a turn: at least ``score`` and, for each intent in ``rivals``, more
    than that intent's nearest NLU example scores for the message, by ``margin`` (see "Rivals" in
    :mod:`dialogue.knowledge`: a question about returns is nearer to the returns entry than to any "I want to
    return..." example). Against a knowledge base without examples the rivals cannot be asked, and ``alone`` is the
    score it needs instead."""

    score: float
    rivals: tuple[str, ...] = ()
    alone: float = math.inf
    margin: float = RIVAL_MARGIN

    def asks_rivals(self, hit: Hit | None) -> bool:
        """Whether judging ``hit`` needs the rivals' scores: only a hit that reaches ``score`` is compared with them
        (the caller scores the intents' examples only then)."""
        return hit is not None and bool(self.rivals) and float(hit.score) >= self.score

    def admits(self, hit: Hit | None, nearest: Mapping[str, float]) -> bool:
        if hit is None:
            return False
        score = float(hit.score)
        if not self.rivals:
            return score >= self.score
        if not nearest:
            return score >= self.alone
        return score >= self.score and all(score >= nearest.get(intent, 0.0) + self.margin for intent in self.rivals)


def about_a_task(rules: TurnRules, parse: Parse, state: str) -> bool:
    """Whether the message's entities make it about one of the bot's tasks (or its hand-off): a value for a slot of
    the task its intent starts, of the task open in ``state``, or one a task starts on (an order id). Not a
    ``from_text`` slot's, which the tagger may read into any clause, and not an entity no task asks for: "我就买了一个耳机
    微信咋扣了我两回钱" names a product and is a question about a double charge, however sure the NLU is that it is
    about an order. A hand-off reading that names anything and asks no question stays the hand-off's: "a whole week for
    a laptop bag is a joke, get me a manager" is nearer to the laptop bag's entry than to any complaint example, and a
    customer who asks for a manager must not get a product sheet; "耳机用了半年就坏了 还在保修期内不" asks whether the
    warranty covers it, which the knowledge base answers (the rivals still decide). Python flows, which do not say what
    their tasks take, count every entity."""
    free = {m.slot for m in rules.domain.from_text}
    given = {e.entity for e in parse.entities} - free
    definition = rules.flows.definition
    if not given or not isinstance(definition, DialogueDefinition):
        return bool(given)
    open_task = definition.task_of_state(state)
    return (definition.claims(parse.intent, given) or bool(open_task and given & set(open_task.slot_names))
            or any(given & set(t.starts_on) for t in definition.tasks)
            or bool(definition.handoff and parse.intent in definition.handoff.intents
                    and not asks(parse.text)))


def misread_bar(threshold: float) -> Bar:
    """What an entry needs to answer a message the bot did not understand: the bot's threshold, and to be at least as
    near to the message as the bot's own out-of-scope examples (the intents' nearest examples; "the weather in
    Tokyo" is nearer to "what time is it in Tokyo?" than to the opening-hours entry). The threshold alone admitted
    every off-topic message that shares a few words with an entry; with the out-of-scope examples beside it, the
    threshold can sit where the customers' own questions are (the shop's English questions score 0.38-0.45 for the
    right entry more often than an off-topic message reaches 0.32: README, "Unscripted conversations")."""
    return Bar(threshold, (ev.OUT_OF_SCOPE,), threshold, 0.0)


def aside_bar(rules: TurnRules, parse: Parse, language: str) -> Bar:
    """What an entry needs for a message to be a question in passing rather than the answer a ``from_text`` slot
    waits for (a return's reason): :data:`TASK_KNOWLEDGE_MIN`, or, for a message asked as a question
    (:func:`dialogue.clauses.asks`), the bot's threshold and to be nearer to the message than every example of the
    answer intents. Asked for the reason, "wait is sending it back free or do i have to pay for postage" scored 0.57
    for the returns entry and became the reason of an approved return; an answer is rarely asked as a question."""
    if not asks(parse.text):
        return Bar(TASK_KNOWLEDGE_MIN)
    threshold = rules.threshold_in(language)
    return Bar(threshold, tuple(rules.answer_intents), max(threshold, TASK_KNOWLEDGE_MIN), 0.0)


def knowledge_bar(rules: TurnRules, understanding: Understanding, context: FlowContext, decision: Decision,
                  *, blocked: bool, language: str, last_action: str | None = None) -> Bar | None:
    """What a knowledge entry needs to take this turn, or ``None`` when retrieval stays out.

    Retrieval scores every turn that is not a confident task, and a match answers whatever the intent said: a
    misunderstood turn (low confidence, out of scope, the fallback) needs the bot's threshold; small talk (a reply
    that leaves the flow where it was) and a task need it too, and to be nearer to the message than every NLU
    example of their intent (:class:`Bar`; "what's the deal with returns on opened stuff" is the return-policy
    entry, "I want to return my order" the task), by :data:`RIVAL_MARGIN`; a task reading asked as a question
    (:mod:`dialogue.clauses`: a question mark, a Chinese question particle, an English question opening) needs only
    to be as near. Questions about a task's subject are what the knowledge base is for, and their task examples sit as
    near as the entry: "can i return stuff i've already worn once?" is the return-policy entry at 0.71 and the nearest
    return example at 0.65, "拆了包装还能退嘛" 0.58 against 0.54; a request keeps the margin ("i want to return my shoes":
    0.51 against 0.74). Without examples to compare, small talk keeps its turn when the NLU is at least
    :data:`SMALL_TALK_TRUST` sure of it, and a task when its confidence is at least the match's score.
    A task keeps its turn when its slots say so (:func:`about_a_task`: an order id; not a ``from_text`` slot's
    value, which the tagger may read into any clause: "你们退货政策是啥样的 拆封了还行不" had a "reason"). A blocked
    message, one that answered the bot's question, and a hand-off asked for in a statement (:func:`handoff_asked`)
    are exempt. A question that would only repeat the bot's ``last_action`` on the values it already used (the
    message gave none) needs the threshold alone: the customer has that answer, and asks something else ("物流信息在哪看呀
    短信也木有收到" right after an order's status is the tracking entry at 0.67, but "物流" is the order-status examples'
    word too).
    """
    action, parse = rules.knowledge_action, understanding.parse
    if not action or blocked or understanding.answered or understanding.said or action not in decision.allowed:
        return None
    if decision.action == action:
        return None  # the flows already chose the knowledge action: it searches by itself
    threshold = rules.threshold_in(language)
    if understanding.low_confidence or decision.action == FALLBACK or parse.intent == ev.OUT_OF_SCOPE:
        return misread_bar(threshold)
    if about_a_task(rules, parse, context.state):
        return None  # an order id: the message is about the bot's task, not a general question
    if decision.action == last_action and not understanding.filled and not decision.action.startswith("utter_") \
            and asks(parse.text):
        return Bar(threshold)  # the same answer again, to a question
    if decision.action.startswith("utter_") and would_reach(rules, context, decision.action) == context.state:
        return Bar(threshold, (parse.intent,), threshold if parse.confidence < SMALL_TALK_TRUST else math.inf)
    return Bar(threshold, (parse.intent,), max(threshold, TASK_KNOWLEDGE_MIN, parse.confidence),
               0.0 if asks(parse.text) else RIVAL_MARGIN)


@dataclass(frozen=True)
class TurnPlan:
    """What the turn decided before its action runs: the action (``decision``), where the flows go (``state`` ->
    ``state_after``), the misunderstanding streak and whether it is a loop, the knowledge entry that took the turn,
    and the slots, events and notices so far."""

    decision: Decision
    state: str
    status: str
    state_after: str
    streak: int
    loop: bool
    slots: dict[str, Any]
    events: tuple[NewEvent, ...]
    notices: tuple[tuple[str, dict[str, Any]], ...] = ()
    knowledge: Mapping[str, Any] | None = None
    state_before: str = ""  # the conversation's stored state (before a wait ended)
    parse_intent: str = ""  # the NLU's intent (brought in scope by a value): a hand-off's reason
    wait_end: str | None = None  # why a wait for a human ended this turn (Wait.end)
    read_as: str | None = None  # the runner-up intent the policy acted on (Observation.runner_up), if it did

    def __repr__(self) -> str:
        return f"TurnPlan(action={self.decision.action!r}, state={self.state!r}->{self.state_after!r})"

    @property
    def action(self) -> str:
        return self.decision.action


def decide(
    rules: TurnRules, understanding: Understanding, conversation: Conversation, wait: Wait, chosen: Situation,
    decision: Decision, hit: Hit | None = None,
) -> TurnPlan:
    """The turn's plan once the policy chose ``decision`` in ``chosen``: ``hit`` (a knowledge entry that scored at
    least :func:`knowledge_bar`) answers instead, whatever the intent said. Two misunderstood turns in a row inside a
    task queue the conversation for a human (a loop): the bot is not getting anywhere. Small talk and questions outside
    a task never escalate: the fallback says what the bot can do."""
    knowledge: dict[str, Any] | None = None
    if hit is not None:
        decision = Decision(rules.knowledge_action or "", float(hit.score), decision.allowed, "knowledge")
        knowledge = {"entry": hit.entry_id, "score": round(float(hit.score), 4)}
    low = understanding.low_confidence or decision.action == FALLBACK or understanding.intent == ev.OUT_OF_SCOPE
    read_as = chosen.observation.runner_up if decision.action in chosen.observation.runner_up_actions else None
    low = low and read_as is None  # the bot asked what the runner-up intent needs: not a misunderstanding
    in_task = wait.state not in (rules.initial_state, HANDOFF_STATE)
    streak = conversation.fallback_streak + 1 if low and in_task else 0
    return TurnPlan(
        decision=decision, state=wait.state, status=wait.status,
        state_after=would_reach(rules, chosen.context_for(decision.action), decision.action), streak=streak,
        loop=streak >= LOOP_TURNS,
        slots=understanding.slots, events=(*understanding.events, *wait.events), notices=wait.notices,
        knowledge=knowledge, state_before=conversation.state, parse_intent=understanding.parse.intent,
        wait_end=wait.end, read_as=read_as,
    )


# -- after the action --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settled:
    """The plan with its action's result: ``result`` says the notices first, ``slots`` hold the action's values,
    ``state_after`` is a reopened wait when the action refused a value of its task, and ``wanted`` the hand-off
    reason when the turn wants a human (then staffing decides, :func:`conclude`)."""

    plan: TurnPlan
    result: ActionResult
    slots: dict[str, Any]
    events: tuple[NewEvent, ...]
    state_after: str
    wanted: str | None
    entered: bool  # the flows entered their hand-off state (not a loop, not an action's request)

    def __repr__(self) -> str:
        return f"Settled(action={self.plan.action!r}, state_after={self.state_after!r}, wanted={self.wanted!r})"


def settle(rules: TurnRules, plan: TurnPlan, result: ActionResult) -> Settled:
    """The action's slot values, a reopened wait (the action refused a value of its task, so the task waits for that
    slot again) and the hand-off it wants: the flows entered their hand-off state, the action asked for a human, or
    the turn closed a misunderstanding loop, while the conversation is not already waiting or held."""
    slots = dict(plan.slots)
    events = list(plan.events)
    for slot, value in result.slot_updates.items():
        if slot in rules.domain.slots and slots.get(slot) != value:
            slots[slot] = value
            events.append(NewEvent(ev.SLOT_SET, {"slot": slot, "value": value}))
    state_after = plan.state_after
    if state_after == rules.initial_state:
        refused = {s for s, v in result.slot_updates.items() if v in (None, "")}
        state_after = next((st for s, st in rules.flows.reopens.get(plan.action, ()) if s in refused), state_after)
    entered = state_after == HANDOFF_STATE and plan.state != HANDOFF_STATE
    wanted: str | None = None
    if plan.status == HANDOFF_NONE and (entered or result.handoff or plan.loop):
        wanted = plan.parse_intent if entered or result.handoff else LOW_CONFIDENCE_LOOP
    said = dataclasses.replace(result, responses=[*plan.notices, *result.responses])
    return Settled(plan, said, slots, tuple(events), state_after, wanted, entered)


@dataclass(frozen=True)
class Outcome:
    """What the turn did, ready to be said and committed: ``result`` is what to say, with ``reply_slots`` (the slots
    before the task's reset); ``slots``, ``state``, ``streak`` and ``handed_off`` are stored; ``events`` run from the
    message's slot values to the task's reset (the engine adds the output check and the reply). ``handoff``: the
    conversation was queued for a human; ``handoff_end``: a wait ended, or a hand-off could not begin."""

    action: str
    result: ActionResult
    reply_slots: dict[str, Any]
    slots: dict[str, Any]
    events: tuple[NewEvent, ...]
    state: str
    streak: int
    handed_off: bool
    handoff: bool = False
    handoff_end: bool = False

    def __repr__(self) -> str:
        return f"Outcome(action={self.action!r}, state={self.state!r}, handed_off={self.handed_off})"


def conclude(rules: TurnRules, settled: Settled, *, staffed: bool) -> Outcome:
    """The hand-off the turn wanted (``settled.wanted``) happens when a human can answer (``staffed``); otherwise the
    bot says so and stays with the customer rather than wait for no one (the flows leave their hand-off state). Then
    the action event (placed after the action's slot values, before the hand-off), and the task's reset: a task that
    ended asks again next time."""
    plan, result, state_after = settled.plan, settled.result, settled.state_after
    after: list[NewEvent] = []
    queued = settled.wanted is not None
    offline = False
    if settled.wanted is not None:
        if staffed:
            after.append(NewEvent(ev.HANDOFF, {"reason": settled.wanted}))
        else:
            queued, offline = False, True
            after.append(NewEvent(ev.HANDOFF_END, {"reason": END_OFFLINE, "wanted": settled.wanted}))
            sorry = offline_responses(rules.domain.responses, FALLBACK)
            said = sorry if settled.entered or result.handoff else [*result.responses, *sorry]
            result = dataclasses.replace(result, responses=said)
            state_after = rules.initial_state if state_after == HANDOFF_STATE else state_after
    action = NewEvent(
        ev.ACTION,
        {**plan.decision.to_dict(), "state_before": plan.state_before, "state_after": state_after,
         "failed": result.failed, "error": result.error, **({"knowledge": plan.knowledge} if plan.knowledge else {}),
         **({"read_as": plan.read_as} if plan.read_as else {})},
    )
    slots = dict(settled.slots)
    for slot in rules.flows.resets.get(plan.action, ()):
        if slots.get(slot) is not None:
            slots[slot] = None
            after.append(NewEvent(ev.SLOT_SET, {"slot": slot, "value": None, "from": "reset"}))
    return Outcome(
        action=plan.action, result=result, reply_slots=settled.slots, slots=slots,
        events=(*settled.events, action, *after), state=state_after,
        streak=0 if settled.wanted is not None else plan.streak,
        handed_off=state_after == HANDOFF_STATE or queued or plan.status != HANDOFF_NONE,
        handoff=queued, handoff_end=plan.wait_end is not None or offline,
    )


# -- the reply and what the turn counts as -----------------------------------------------------------------------------
def bot_message(
    message_id: str, text: str, sources: Sequence[str], stages: Mapping[str, float], buttons: Sequence[tuple[str, str]]
) -> NewEvent:
    """The stored reply to ``message_id``: its text, where each piece came from, the stage timings, the buttons."""
    bot_id = f"bot-{message_id}"
    offered = {"buttons": [{"title": t, "payload": p} for t, p in buttons]} if buttons else {}
    return NewEvent(
        ev.BOT_MESSAGE,
        {"text": text, "message_id": bot_id, "reply_to": message_id, "sources": list(sources),
         "latency_ms": dict(stages), **offered},
        message_id=bot_id,
    )


def turn_facts(
    verdict: InputVerdict,
    parse: Parse | None,
    actions: Sequence[str],
    *,
    output: OutputVerdict | None = None,
    handoff: bool = False,
    handoff_end: bool = False,
) -> TurnFacts:
    """What the turn counts as (see :class:`~dialogue.types.TurnFacts`): ``actions`` are the actions that answered it
    (none while an agent holds the conversation), ``output`` the output classifier's verdict on the reply (a toxic
    reply is replaced)."""
    replaced = output is not None and output.toxic
    intent = parse.intent if parse is not None else None
    return TurnFacts(
        intent=intent,
        confidence=round(parse.confidence, 4) if parse is not None else None,  # as the nlu_parse event stores it
        fallback=bool(actions) and (FALLBACK in actions or intent == ev.OUT_OF_SCOPE),
        safety=bool(verdict.blocked or verdict.redactions or verdict.flags) or replaced,
        input_blocked=verdict.blocked,
        reply_replaced=replaced,
        redacted=bool(verdict.redactions),
        handoff=handoff,
        handoff_end=handoff_end,
    )


def replayed_reply(conversation: Conversation, message_id: str, events: Sequence[Event]) -> TurnReply:
    """The reply of an already-processed message, rebuilt from its stored events."""
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


def rasa_outcome(conversation: Conversation, found: RasaTurn, parse_intent: str) -> Outcome:
    """An imported Rasa bot's turn (:meth:`dialogue.rasa.turn.RasaDialogue.turn`) as the engine stores it: the slots
    it changed (not its private ``_`` ones), one action event per action it ran, and a hand-off it asked for."""
    before = conversation.slots
    events = [NewEvent(ev.SLOT_SET, {"slot": slot, "value": value}) for slot, value in found.slots.items()
              if before.get(slot) != value and not slot.startswith("_")]
    events += [NewEvent(ev.ACTION, {"name": action, "policy": f"rasa:{why}", "state_before": conversation.state,
                                    "state_after": found.state, "failed": found.result.failed})
               for action, why in found.actions]
    queued = found.result.handoff and conversation.handoff_status == HANDOFF_NONE
    if queued:
        events.append(NewEvent(ev.HANDOFF, {"reason": parse_intent}))
    slots = dict(found.slots)
    return Outcome(
        action=found.actions[-1][0] if found.actions else conversation.last_action or "", result=found.result,
        reply_slots=slots, slots=slots, events=tuple(events), state=found.state, streak=0,
        handed_off=queued or conversation.handed_off, handoff=queued,
    )


def committed(
    conversation: Conversation, outcome: Outcome, events: Sequence[NewEvent], language: str, parse: Parse,
    facts: TurnFacts,
) -> TurnUpdate:
    """Everything the turn changes, for the store to commit in one transaction (``events``: all of them, in order)."""
    return TurnUpdate(
        conversation_id=conversation.id, expected_version=conversation.version, state=outcome.state,
        slots=outcome.slots, language=language, handed_off=outcome.handed_off, events=tuple(events),
        last_intent=parse.intent, last_action=outcome.action, fallback_streak=outcome.streak, facts=facts,
    )


def answered(
    conversation: Conversation, message_id: str, text: str, outcome: Outcome, parse: Parse, *,
    flags: Sequence[str], stages: Mapping[str, float], facts: TurnFacts,
) -> TurnReply:
    """The reply the channel sends for the turn (``text`` as said and checked)."""
    return TurnReply(
        conversation_id=conversation.id, message_id=f"bot-{message_id}", reply_to=message_id, text=text,
        intent=parse.intent, confidence=parse.confidence, action=outcome.action, handed_off=outcome.handed_off,
        flags=tuple(flags), buttons=tuple(outcome.result.buttons), stages=dict(stages), facts=facts,
    )


def with_agent(
    conversation: Conversation, message_id: str, events: Sequence[NewEvent], parse: Parse, verdict: InputVerdict,
    language: str,
) -> tuple[TurnUpdate, TurnReply]:
    """A turn while an agent holds the conversation: the message (and its parse, for review) is stored and the bot
    does not answer; state, slots and the misunderstanding streak stay as they are."""
    facts = turn_facts(verdict, parse, ())
    update = TurnUpdate(
        conversation_id=conversation.id, expected_version=conversation.version, state=conversation.state,
        slots=dict(conversation.slots), language=language, handed_off=True, events=tuple(events),
        last_intent=parse.intent, last_action=conversation.last_action, facts=facts,
    )
    reply = TurnReply(
        conversation_id=conversation.id, message_id=f"bot-{message_id}", reply_to=message_id, text="",
        intent=parse.intent, confidence=parse.confidence, action=None, handed_off=True, flags=(WITH_AGENT,),
        facts=facts,
    )
    return update, reply
