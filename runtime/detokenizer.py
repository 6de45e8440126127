"""Incremental detokenisation: one request's generated token ids -> the text deltas it streams.

Why a module of its own: what a streamed delta may contain is a text question (a token can end inside a UTF-8
character; a stop string can be split over several tokens and must never be half-sent), not a batching one; the
engine only pushes each new token and forwards the delta. Decoding the whole id list each time (instead of
decoding tokens one by one) keeps the text exactly what ``tokenizer.decode`` gives for the finished reply.
"""

from __future__ import annotations

from typing import Any


class Detokenizer:
    """One request's text so far: :meth:`push` a token, get the new text that is safe to send.

    Held back until a later token (or :meth:`flush`): an incomplete UTF-8 character (decoded as U+FFFD) and a
    tail that could be the start of a stop string. Once a stop string appears, the text before it is the last
    delta and :meth:`push` says so.
    """

    def __init__(self, tokenizer: Any, stops: tuple[str, ...] = ()) -> None:
        self._tokenizer = tokenizer
        self._stops = stops
        self._ids: list[int] = []
        self._decoded = ""  # the last decode of ``_ids``
        self._emitted = 0  # characters of the decoded text already sent

    @property
    def token_ids(self) -> tuple[int, ...]:
        """The tokens pushed so far."""
        return tuple(self._ids)

    @property
    def sent(self) -> str:
        """The text sent so far (every delta :meth:`push` and :meth:`flush` returned, joined)."""
        return self._decoded[: self._emitted]

    def push(self, token: int) -> tuple[str, bool]:
        """Add one generated token; returns the new text to send and whether a stop string was reached."""
        self._ids.append(token)
        return self._delta(final=False)

    def flush(self) -> str:
        """The text still held back, for a request that ended without a stop string."""
        return self._delta(final=True)[0]

    def _delta(self, final: bool) -> tuple[str, bool]:
        text = self._decoded = self._tokenizer.decode(self._ids, skip_special_tokens=True)
        stops = self._stops
        if stops:
            start = max(0, self._emitted - max(len(s) for s in stops))
            cut = min((i for i in (text.find(s, start) for s in stops) if i >= 0), default=-1)
            if cut >= 0:
                delta = text[self._emitted : cut] if cut > self._emitted else ""
                self._emitted = max(self._emitted, cut)
                return delta, True
        end = len(text)
        if not final:
            if text.endswith("\ufffd"):
                end -= 1
            for s in stops:
                for k in range(min(len(s) - 1, end - self._emitted), 0, -1):
                    if text[end - k : end] == s[:k]:
                        end -= k
                        break
        delta = text[self._emitted : end] if end > self._emitted else ""
        self._emitted = max(self._emitted, end)
        return delta, False
