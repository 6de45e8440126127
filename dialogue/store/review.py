"""Review: staff flags, tags and corrected readings of customer messages.

Reviewing is staff bookkeeping: it records a ``review`` or ``correction`` event (who changed what) but moves
neither ``version`` (a customer's turn is not retried for it) nor ``updated_at`` (the list being reviewed does not
reshuffle). Tags are cleaned and PII-redacted by :func:`dialogue.store.rules._clean_tag`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dialogue import types as ev
from dialogue.errors import InvalidQuery
from dialogue.store.rules import MAX_TAGS, _check_events, _clean_tag
from dialogue.store.turns import TurnLog
from dialogue.types import ConversationSummary, Event, NewEvent


class Review(TurnLog):
    """Review flags, tags and corrections of a conversation."""

    async def review(
        self,
        conversation_id: str,
        *,
        by: str,
        flagged: bool | None = None,
        reviewed: bool | None = None,
        add_tags: Iterable[str] = (),
        remove_tags: Iterable[str] = (),
    ) -> ConversationSummary:
        """Set the review flags and tags; a ``review`` event records who changed what (nothing when nothing
        changed). Tags are trimmed, 1..32 printable characters, at most 20 per conversation
        (:class:`~dialogue.errors.InvalidQuery` otherwise). Neither ``version`` nor ``updated_at`` moves."""
        cid = conversation_id
        adding = [_clean_tag(t) for t in add_tags]
        removing = {_clean_tag(t) for t in remove_tags}
        async with self._write("review", cid) as conn:
            row = await self._lock_row(conn, cid, "review")
            tags = [str(t) for t in (row.tags or [])]
            new_tags = [t for t in tags if t not in removing]
            new_tags += [t for t in dict.fromkeys(adding) if t not in new_tags]
            if len(new_tags) > MAX_TAGS:
                raise InvalidQuery(f"at most {MAX_TAGS} tags per conversation", operation="review",
                                   conversation_id=cid)
            data: dict[str, Any] = {"by": by}
            values: dict[str, Any] = {}
            if flagged is not None and bool(flagged) != bool(row.flagged):
                data["flagged"] = values["flagged"] = bool(flagged)
            if reviewed is not None and bool(reviewed) != bool(row.reviewed):
                data["reviewed"] = values["reviewed"] = bool(reviewed)
            added = [t for t in new_tags if t not in tags]
            removed = [t for t in tags if t not in new_tags]
            if added:
                data["tags_added"] = added
            if removed:
                data["tags_removed"] = removed
            if added or removed:
                values["tags"] = new_tags
            if values:
                await self._append(conn, row, [NewEvent(ev.REVIEW, data)], "review", activity=False, **values)
            summary = await self._summary_in(conn, cid)
        return summary

    async def add_correction(
        self,
        conversation_id: str,
        *,
        by: str,
        seq: int,
        text: str,
        intent: str,
        entities: Sequence[Mapping[str, Any]] = (),
    ) -> Event:
        """Record a reviewer's corrected reading of the customer message at ``seq`` (a ``correction`` event; the
        training file is edited by :func:`dialogue.review.add_training_example`). Also marks it reviewed."""
        cid = conversation_id
        data = {
            "by": by,
            "seq": int(seq),
            "text": text,
            "intent": intent,
            "entities": [
                {"entity": str(e["entity"]), "value": str(e["value"]), "start": int(e["start"]), "end": int(e["end"])}
                for e in entities
            ],
        }
        new = NewEvent(ev.CORRECTION, data)
        _check_events([new], cid, "add_correction")
        async with self._write("add_correction", cid) as conn:
            row = await self._lock_row(conn, cid, "add_correction")
            (stored,) = await self._append(conn, row, [new], "add_correction", activity=False, reviewed=True)
        return stored
