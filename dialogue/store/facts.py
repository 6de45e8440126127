"""What a batch of events tells the console: the per-turn facts behind the snapshot row's denormalised columns.

:func:`_turn_facts` reads the events one turn (or one agent message) appends and says what they change on the
console's columns (a turn of the dialogue engine brings its own, decided once by the turn core, and
:func:`_given_facts` takes those): lowest NLU confidence, fallback and safety turns, intents seen, hand-off start and end, and the
text added to the search column. It is a pure function of the events, kept alone in this module because the facts
are the dialogue engine's knowledge more than the store's, and may move there; the store only writes them in the
same transaction as the events, so the console list never disagrees with the log.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from dialogue import types as ev
from dialogue.types import NewEvent, TurnFacts

SEARCH_CAP = 32_000  # characters of text kept per conversation for search (the beginning of long ones)


@dataclass
class _Facts:
    """What a batch of events (one turn, or one agent message) changes on the snapshot's console columns."""

    confidences: list[float] = field(default_factory=list)
    intents: set[str] = field(default_factory=set)
    fallback: bool = False
    safety: bool = False
    blocked: bool = False  # the message was blocked or the reply replaced
    redacted: bool = False  # PII was redacted from the message
    handoff: bool = False
    handoff_end: bool = False
    texts: list[str] = field(default_factory=list)

    def min_confidence(self, current: float | None) -> float | None:
        values = [*self.confidences, *([] if current is None else [current])]
        return min(values) if values else None

    def search_text(self, current: str) -> str:
        if not self.texts or len(current) >= SEARCH_CAP:
            return current
        added = "\n".join(self.texts).lower()  # lower(): one case-insensitive LIKE on every database
        return (f"{current}\n{added}" if current else added)[:SEARCH_CAP]


def _given_facts(given: TurnFacts, new_events: Iterable[NewEvent]) -> _Facts:
    """The console's facts as the turn decided them (:func:`dialogue.turn.turn_facts`): only the search text is
    read from the events (the words the turn stored)."""
    facts = _Facts(
        confidences=[] if given.confidence is None else [given.confidence],
        intents=set() if not given.intent else {given.intent[:64]},
        fallback=given.fallback, safety=given.safety, blocked=given.blocked, redacted=given.redacted,
        handoff=given.handoff, handoff_end=given.handoff_end,
    )
    facts.texts = _turn_facts(e for e in new_events if e.type in _TEXT_EVENTS).texts
    return facts


_TEXT_EVENTS = frozenset({ev.USER_MESSAGE, ev.BOT_MESSAGE, ev.AGENT_MESSAGE})


def _turn_facts(new_events: Iterable[NewEvent]) -> _Facts:
    """Derive the console's per-turn facts from the events the engine wrote.

    A turn is a *fallback* when the bot answered it (an ``action`` event) with the fallback reply or the customer
    was out of scope; a *safety* turn when an input filter blocked, redacted or masked something or the output
    classifier replaced the reply.
    """
    facts = _Facts()
    actions: list[str] = []
    for new in new_events:
        data = new.data
        if new.type == ev.NLU_PARSE:
            confidence = data.get("confidence")
            if isinstance(confidence, int | float):
                facts.confidences.append(float(confidence))
            intent = data.get("intent")
            if isinstance(intent, str) and intent:
                facts.intents.add(intent[:64])
        elif new.type == ev.ACTION:
            actions.append(str(data.get("name")))
        elif new.type == ev.SAFETY_INPUT:
            facts.safety |= bool(data.get("blocked") or data.get("redactions") or data.get("flags"))
            facts.blocked |= bool(data.get("blocked"))
            facts.redacted |= bool(data.get("redactions"))
        elif new.type == ev.SAFETY_OUTPUT:
            facts.safety |= bool(data.get("toxic") or data.get("replaced"))
            facts.blocked |= bool(data.get("replaced"))
        elif new.type == ev.HANDOFF:
            facts.handoff = True
        elif new.type == ev.HANDOFF_END:
            facts.handoff_end = True
        if new.type in _TEXT_EVENTS:
            for key in ("text", "normalized"):  # a search matches the text as written or as the models read it
                text = data.get(key)
                if isinstance(text, str) and text:
                    facts.texts.append(text)
    facts.fallback = bool(actions) and (ev.FALLBACK_ACTION in actions or ev.OUT_OF_SCOPE in facts.intents)
    return facts
