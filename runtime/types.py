"""Types that cross into and out of the runtime package: the act to verbalise, the finished reply, and the
callback that receives a reply's text as it streams.

Why here: runtime is the lowest layer, so the packages above (dialogue, channels, kefu) take these names from it
instead of each defining its own copy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

#: Receives each piece of a reply's text as it is generated (streaming to the customer's channel).
OnToken = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class Act:
    """A dialogue act to be verbalised: a response key of the bot's domain plus slot values.

    ``name`` is a response key such as ``"utter_order_status"``; ``slots`` maps the placeholders that
    the reply must carry (exactly these values, no others) to their values; a knowledge-base answer
    travels as the slot ``"answer"``.
    """

    name: str
    slots: dict[str, str] = field(default_factory=dict)
    language: str = "en"

    def __repr__(self) -> str:  # slot values may be customer data
        return f"Act(name={self.name!r}, slots={sorted(self.slots)}, language={self.language!r})"


@dataclass(frozen=True)
class Realisation:
    """A finished reply: its text, where it came from (``"model"`` or ``"template"``) and why."""

    text: str
    source: str
    slot_errors: tuple[str, ...] = ()
    latency_ms: float = 0.0
    # ``trusted``: the text is the bot author's template, rendered or reproduced word for word by the model; then
    # only ``inserted`` (the values put into it: the customer's words, the bot's data) is the output classifier's
    # business, not the author's own words.
    inserted: tuple[str, ...] = ()
    trusted: bool = False

    def __repr__(self) -> str:
        return f"Realisation(source={self.source!r}, chars={len(self.text)}, slot_errors={self.slot_errors!r})"
