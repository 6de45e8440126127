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
    """The toxicity verdict on a reply: its score in [0, 1], the threshold used, and whether it was toxic.

    ``baseline`` is the score of the author's words alone (the reply with the values put into its template taken
    out), when the reply was a trusted template: then the reply is toxic only when the values raise the score by
    :data:`VALUE_MARGIN` or more, as well as reaching the threshold (see :func:`judge`)."""

    score: float
    threshold: float
    toxic: bool
    language: str = "en"
    baseline: float | None = None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"score": round(self.score, 4), "threshold": self.threshold, "toxic": self.toxic,
                                  "language": self.language}
        if self.baseline is not None:
            out["baseline"] = round(self.baseline, 4)
        return out


# How much the values put into a trusted template must raise its score before they count as what made it toxic.
# Without it, a benign sentence of the author's that the classifier scores near its threshold ("please confirm:
# block the card ending in 3377?") flips to the safe reply on a retrained model's small shifts.
VALUE_MARGIN = 0.15


def judge(score: float, threshold: float, language: str, baseline: float | None = None) -> OutputVerdict:
    """The verdict on a reply scored ``score``; ``baseline`` as in :class:`OutputVerdict`."""
    toxic = score >= threshold and (baseline is None or score - baseline >= VALUE_MARGIN)
    return OutputVerdict(score=score, threshold=threshold, toxic=toxic, language=language, baseline=baseline)
