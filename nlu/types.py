"""Dataclasses that leave the nlu package: what a parse of one utterance looks like."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Entity:
    """One slot value found in an utterance; ``start``/``end`` are character offsets into the text."""

    entity: str
    value: str
    start: int
    end: int


@dataclass(frozen=True)
class Parse:
    """The NLU reading of one (already normalised and redacted) utterance.

    ``ranking`` holds the top intents with their calibrated probabilities, best first;
    ``confidence`` is the probability of ``intent``. ``language`` is ``"en"`` or ``"zh"``.
    """

    text: str
    intent: str
    confidence: float
    entities: tuple[Entity, ...] = ()
    ranking: tuple[tuple[str, float], ...] = ()
    language: str = "en"

    def __repr__(self) -> str:  # never put customer text in logs or reprs
        return f"Parse(intent={self.intent!r}, confidence={self.confidence:.3f}, entities={len(self.entities)})"

    def to_dict(self) -> dict[str, object]:
        return {
            "intent": self.intent,
            "confidence": round(self.confidence, 4),
            "entities": [
                {"entity": e.entity, "value": e.value, "start": e.start, "end": e.end} for e in self.entities
            ],
            "ranking": [[name, round(p, 4)] for name, p in self.ranking],
            "language": self.language,
        }
