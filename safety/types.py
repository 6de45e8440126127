"""Dataclasses that leave the safety package: verdicts on input and output text."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Redaction:
    """One redacted span of the original text, replaced by a typed placeholder such as ``[EMAIL]``."""

    kind: str
    start: int
    end: int
    placeholder: str


@dataclass(frozen=True)
class InputVerdict:
    """What the input filters made of a user message.

    ``text`` is the normalised text with PII replaced by placeholders: the only form that may reach
    NLU, generation, storage or logs. ``flags`` names the filters that fired (``"pii"``,
    ``"banned_term"``, ``"prompt_injection"``); ``blocked`` means the message must not be processed.
    ``display`` (empty when it equals ``text``) is the same redacted text with the customer's full-width and CJK
    punctuation kept: what is stored and shown to people, while models read ``text``.
    """

    text: str
    redactions: tuple[Redaction, ...] = ()
    flags: tuple[str, ...] = ()
    blocked: bool = False
    display: str = ""

    @property
    def shown(self) -> str:
        """The text people see (stored transcript, console, history)."""
        return self.display or self.text

    def __repr__(self) -> str:
        return f"InputVerdict(redactions={[r.kind for r in self.redactions]}, flags={self.flags}, blocked={self.blocked})"

    def to_dict(self) -> dict[str, object]:
        return {
            "redactions": [{"kind": r.kind, "start": r.start, "end": r.end} for r in self.redactions],
            "flags": list(self.flags),
            "blocked": self.blocked,
        }


@dataclass(frozen=True)
class OutputVerdict:
    """The toxicity verdict on a reply: its score in [0, 1], the threshold used, and whether it was toxic."""

    score: float
    threshold: float
    toxic: bool
    language: str = "en"

    def to_dict(self) -> dict[str, object]:
        return {"score": round(self.score, 4), "threshold": self.threshold, "toxic": self.toxic, "language": self.language}
