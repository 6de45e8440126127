"""The chat protocol's workspace frames: ``rating`` (client), ``resolved`` / ``rating_ack`` and the rating errors
(server), in the pure core and through a real server on a real store and engine."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect

from channels import protocol as p
from channels.errors import ProtocolError
from channels.server import ServerOptions, run_server
from dialogue.errors import AlreadyRated, NotResolved
from dialogue.types import HANDBACK, RATING, RESOLVED, Event, NewConversation
from tests.channels.conftest import ConsoleEnv


def frame(**fields: Any) -> str:
    return json.dumps({"type": "rating", **fields})


@pytest.mark.parametrize(("raw", "expected"), [
    (frame(score=4, comment="  nice  "), p.Rating(4, "nice")),
    (frame(score=1), p.Rating(1, None)),
    (frame(score=5, comment="   "), p.Rating(5, None)),
    (frame(score=3, comment=None, extra=1), p.Rating(3, None)),
])
def test_rating_frames_parse(raw: str, expected: p.Rating) -> None:
    assert p.parse_client_frame(raw) == expected


@pytest.mark.parametrize(("raw", "code"), [
    (frame(score=0), p.BAD_FRAME),
    (frame(score=6), p.BAD_FRAME),
    (frame(score=4.5), p.BAD_FRAME),
    (frame(score="4"), p.BAD_FRAME),
    (frame(score=True), p.BAD_FRAME),
    (frame(), p.BAD_FRAME),
    (frame(score=4, comment=7), p.BAD_FRAME),
    (frame(score=4, comment="\ud800"), p.BAD_FRAME),
    (frame(score=4, comment="x" * 1001), p.TOO_LARGE),
])
def test_malformed_rating_frames(raw: str, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        p.parse_client_frame(raw)
    assert info.value.code == code


def test_rating_repr_hides_the_comment() -> None:
    assert "secret words" not in repr(p.Rating(2, "secret words"))


def test_rating_needs_a_stored_session() -> None:
    state = p.ConnectionState()
    with pytest.raises(ProtocolError) as info:
        state.rating_target()
    assert info.value.code == p.BAD_FRAME
    state.open(NewConversation("c1", "0" * 64), stored=False)
    with pytest.raises(ProtocolError):
        state.rating_target()  # nothing stored yet: nothing to rate
    state.mark_stored("c1")
    assert state.rating_target() == "c1"


def test_resolved_event_is_pushed_and_errors_map_to_codes() -> None:
    now = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)
    events = [Event("c1", 5, 2, HANDBACK, {"agent": "ann"}, now), Event("c1", 6, 2, RESOLVED, {"agent": "ann"}, now),
              Event("c1", 7, 2, RATING, {"score": 4, "comment": None}, now)]
    frames, last = p.push_frames(events, 4)
    assert frames == [p.handoff_frame("c1", "bot"), {"type": "resolved", "conversation_id": "c1"}] and last == 7
    assert p.error_frame_for(NotResolved("x"))["code"] == "not_resolved"
    assert p.error_frame_for(AlreadyRated("x"))["code"] == "already_rated"
    assert p.rating_ack_frame("c1", 4) == {"type": "rating_ack", "conversation_id": "c1", "score": 4}


async def test_rating_over_a_real_server(console_env: ConsoleEnv) -> None:
    async with run_server(console_env.engine, port=0, options=ServerOptions(push_interval=0.1)) as server, \
            connect(server.ws_url) as ws:

        async def until(kind: str) -> dict[str, Any]:
            while True:
                got = json.loads(await ws.recv(decode=True))
                if got["type"] == kind:
                    return got

        await ws.send(frame(score=4))  # no session yet
        assert (await until("error"))["code"] == "bad_frame"
        await ws.send(json.dumps({"type": "hello", "conversation_id": None}))
        cid = (await until("session"))["conversation_id"]
        await ws.send(json.dumps({"type": "message", "message_id": "m1", "text": "hello"}))
        await until("message")
        await ws.send(frame(score=4))
        assert (await until("error"))["code"] == "not_resolved"

        await console_env.console.resolve(cid, "ann")
        assert await until("resolved") == {"type": "resolved", "conversation_id": cid}  # pushed to the widget
        await ws.send(frame(score=9))
        assert (await until("error"))["code"] == "bad_frame"
        await ws.send(frame(score=4, comment="mail jane.doe@example.com"))
        assert await until("rating_ack") == {"type": "rating_ack", "conversation_id": cid, "score": 4}
        await ws.send(frame(score=1))
        assert (await until("error"))["code"] == "already_rated"
        # The connection is still up and usable: a customer message reopens the conversation.
        await ws.send(json.dumps({"type": "message", "message_id": "m2", "text": "one more thing"}))
        await until("message")
    summary = await console_env.store.summary(cid)
    assert summary.rating == 4 and summary.resolved_at is None
