"""What of a reply may be streamed to the customer before the turn ends: only text the output classifier has read.

The reply's final message is checked whole (:meth:`dialogue.engine.DialogueEngine`'s ``safety_out`` stage) and
replaced by the bot's safe reply when flagged; but a generator streams its text as it writes it, and a streamed
insult cannot be taken back by a later message. :class:`CheckedStream` stands between the generator and the channel:
it holds the text back and releases it a sentence at a time, each time after the classifier has read everything up
to the end of that sentence (the context counts: a sentence can read differently after the one before). Once a check
flags the text, nothing more is released; the final message (checked, perhaps replaced) says the rest.

The delay this costs is bounded: a sentence waits for its own end and one classifier call; the last sentence (for
most replies, the only one) is not streamed at all but arrives in the final message, right after the whole reply's
check. A sentence ends at ``。！？!?`` or a line break, or at ``.`` followed by white space (so "$12.99" and "3.5"
do not end one).

Pure: the channel's send and the classifier are parameters, so it is tested with fakes.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from runtime import OnToken

#: where a sentence ends: after these characters, or after a full stop that white space follows
_SENTENCE_END = re.compile(r"[。！？!?\n]|\.(?=\s)")


class CheckedStream:
    """An ``OnToken`` that releases the text pushed to it through ``send`` a sentence at a time, once ``safe`` (the
    output classifier over the text so far) says so; after a ``False`` it releases nothing more (``held``)."""

    def __init__(self, send: OnToken, safe: Callable[[str], Awaitable[bool]]) -> None:
        self._send = send
        self._safe = safe
        self._text = ""
        self._released = 0  # characters of ``_text`` already sent
        self.held = False
        self.checks = 0  # classifier calls made

    def __repr__(self) -> str:  # the text is the bot's reply, with customer values in it
        return f"CheckedStream(chars={len(self._text)}, released={self._released}, held={self.held})"

    @property
    def released(self) -> str:
        """The text sent so far."""
        return self._text[: self._released]

    async def __call__(self, delta: str) -> None:
        self._text += delta
        if self.held:
            return
        end = self._last_sentence_end()
        if end <= self._released:
            return
        self.checks += 1
        if not await self._safe(self._text[:end]):
            self.held = True
            return
        piece, self._released = self._text[self._released : end], end
        await self._send(piece)

    def _last_sentence_end(self) -> int:
        """The index just after the last complete sentence of the text (0: none)."""
        last = 0
        for match in _SENTENCE_END.finditer(self._text, self._released):
            last = match.end()
        return last
