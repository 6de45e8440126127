"""Canned replies: the support team's saved answers, and how one is filled in for a conversation (pure, no I/O).

A canned reply's text may name the conversation's slots in braces (``Your request {ref} is on its way``). When an
agent inserts one, :func:`render` fills each named slot from the conversation's current slots. A slot that is
unknown or empty is left *as written* (``{ref}``) and reported in :attr:`Rendered.missing`: the agent sees
exactly what is still to be filled in, and the reply box never silently sends "Your request  is on its way". The text
is scanned once, so a slot value that itself contains braces is inserted literally and never expanded again.

Validation (:func:`check_reply`) is here too, so the ops API and the store agree on one rule: a title of 1-64
characters, a text of 1-2000, a language the bot speaks.

Usage::

    rendered = render("Hi, request {ref} is done by {eta}.", {"ref": "R-17"})
    rendered.text     # 'Hi, request R-17 is done by {eta}.'
    rendered.missing  # ('eta',)
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from dialogue.errors import StoreError

__all__ = [
    "MAX_TEXT_CHARS",
    "MAX_TITLE_CHARS",
    "SLOT_RE",
    "CannedReply",
    "CannedReplyExists",
    "CannedReplyInvalid",
    "CannedReplyNotFound",
    "Rendered",
    "check_reply",
    "render",
    "slot_names",
]

MAX_TITLE_CHARS: Final = 64  # canned_replies.title is String(64)
MAX_TEXT_CHARS: Final = 2000  # what an agent message may hold (channels.protocol.MAX_TEXT_CHARS)
#: ``{name}``: a slot name as domains spell them (a letter or underscore first). Anything else in braces is text.
SLOT_RE: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,63})\}")


class CannedReplyInvalid(StoreError):
    """A title, text or language outside the rules. ``reason`` names the field and the rule, never the value: the
    ops API shows it to staff as is."""

    def __init__(self, reason: str, *, operation: str | None = "canned_reply") -> None:
        self.reason = reason
        super().__init__(reason, operation=operation)


class CannedReplyExists(StoreError):
    """Another canned reply of the same language already has this title (``UNIQUE(language, title)``)."""


class CannedReplyNotFound(StoreError):
    """No canned reply with that id."""


@dataclass(frozen=True)
class CannedReply:
    """One saved answer. ``text`` and ``title`` are stored redacted (no PII, like all staff text)."""

    id: int
    language: str
    title: str
    text: str
    created_by: str
    created_at: dt.datetime

    def __repr__(self) -> str:  # no text: reprs end up in logs
        return f"CannedReply(id={self.id}, language={self.language!r})"


@dataclass(frozen=True)
class Rendered:
    """A canned reply filled in for one conversation: the text, the slots that were filled, and the slots left as
    ``{name}`` because the conversation has no value for them (each name once, in order of appearance)."""

    text: str
    filled: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()


def slot_names(text: str) -> tuple[str, ...]:
    """The slot names ``text`` mentions, each once, in order of first appearance."""
    return tuple(dict.fromkeys(m.group(1) for m in SLOT_RE.finditer(text)))


def _value(value: Any) -> str | None:
    """A slot's value as reply text, or ``None`` when there is nothing to insert (unset, empty, an empty list)."""
    if value is None or isinstance(value, dict):
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        parts = [v for v in (_value(x) for x in value) if v]
        return ", ".join(parts) or None
    text = str(value).strip()
    return text or None


def render(text: str, slots: Mapping[str, Any]) -> Rendered:
    """Fill ``{slot}`` names in ``text`` from ``slots`` (see the module docstring): a single left-to-right pass."""
    filled: dict[str, None] = {}
    missing: dict[str, None] = {}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        value = _value(slots.get(name))
        if value is None:
            missing[name] = None
            return match.group(0)
        filled[name] = None
        return value

    out = SLOT_RE.sub(replace, text)
    return Rendered(out, tuple(filled), tuple(n for n in missing if n not in filled))


def _printable(value: str, *, newlines: bool) -> bool:
    allowed = {"\n", "\t"} if newlines else set()
    return not any(unicodedata.category(ch)[0] == "C" and ch not in allowed for ch in value)


def check_reply(language: Any, title: Any, text: Any, languages: Iterable[str]) -> tuple[str, str, str]:
    """``(language, title, text)`` trimmed, or :class:`CannedReplyInvalid` naming the broken rule. ``languages``:
    the bot's languages (an empty collection accepts any two-letter code)."""
    known = tuple(languages)
    if not isinstance(language, str) or (language not in known if known else not re.fullmatch(r"[a-z]{2}", language)):
        choices = ", ".join(known) or "a two-letter code"
        raise CannedReplyInvalid(f"'language' must be one of the bot's languages ({choices})")
    if not isinstance(title, str) or not 1 <= len(title.strip()) <= MAX_TITLE_CHARS or not _printable(
        title, newlines=False
    ):
        raise CannedReplyInvalid(f"'title' must be 1-{MAX_TITLE_CHARS} characters on one line")
    if not isinstance(text, str) or not 1 <= len(text.strip()) <= MAX_TEXT_CHARS or not _printable(
        text, newlines=True
    ):
        raise CannedReplyInvalid(f"'text' must be 1-{MAX_TEXT_CHARS} characters")
    return language, title.strip(), text.strip()
