"""The pure protocol core: parsing and validating client frames, building server frames, limits, error codes."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from channels import protocol as p
from channels.errors import ChannelError, ProtocolError
from dialogue.errors import ConcurrentUpdate, ConversationNotFound, StoreUnavailable
from dialogue.types import (
    ACTION,
    AGENT_MESSAGE,
    BOT_MESSAGE,
    HANDBACK,
    TAKEOVER,
    USER_MESSAGE,
    ConversationSummary,
    Event,
    NewConversation,
    TurnReply,
)

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def msg(**fields: Any) -> str:
    frame = {"type": "message", "conversation_id": None, "message_id": "m-1", "text": "hello"}
    frame.update(fields)
    return json.dumps({k: v for k, v in frame.items() if v is not ...})


# ---------------------------------------------------------------------------------------------- valid frames
def test_parse_message_strips_text() -> None:
    frame = p.parse_client_frame(msg(text="  where is my order?\n", conversation_id="abc123"))
    assert frame == p.UserMessage(conversation_id="abc123", message_id="m-1", text="where is my order?")


def test_parse_message_chinese_and_max_length() -> None:
    frame = p.parse_client_frame(msg(text="订" * p.MAX_TEXT_CHARS, message_id="A" * 64))
    assert isinstance(frame, p.UserMessage)
    assert len(frame.text) == 2000 and frame.message_id == "A" * 64


def test_parse_hello_and_language_normalisation() -> None:
    assert p.parse_client_frame('{"type": "hello", "conversation_id": null}') == p.Hello(None, None)
    hello = p.parse_client_frame('{"type": "hello", "conversation_id": "c1", "language": "zh-CN"}')
    assert hello == p.Hello("c1", "zh")
    assert p.parse_client_frame('{"type": "hello", "language": "fr-FR"}') == p.Hello(None, None)


def test_unknown_extra_fields_are_ignored() -> None:
    frame = p.parse_client_frame(msg(extra={"x": 1}))
    assert isinstance(frame, p.UserMessage)


def test_user_message_repr_hides_text() -> None:
    frame = p.UserMessage(None, "m1", "my card number is 4111")
    assert "4111" not in repr(frame)


# ------------------------------------------------------------------------------------------------ bad frames
BAD_FRAMES: list[tuple[str, str | bytes, str, str | None]] = [
    ("bad json", "{not json", p.BAD_JSON, None),
    ("truncated json", '{"type": "message"', p.BAD_JSON, None),
    ("empty frame", "", p.BAD_JSON, None),
    ("deep nesting", "[" * 30_000 + "]" * 30_000, p.BAD_JSON, None),
    ("array", "[1, 2]", p.BAD_FRAME, None),
    ("string", '"hello"', p.BAD_FRAME, None),
    ("null", "null", p.BAD_FRAME, None),
    ("missing type", '{"text": "hi"}', p.BAD_FRAME, None),
    ("type not a string", '{"type": 3}', p.BAD_FRAME, None),
    ("unknown type", '{"type": "subscribe"}', p.BAD_FRAME, None),
    ("missing message_id", msg(message_id=...), p.BAD_FRAME, None),
    ("message_id not a string", msg(message_id=12), p.BAD_FRAME, None),
    ("message_id empty", msg(message_id=""), p.BAD_FRAME, None),
    ("message_id too long", msg(message_id="a" * 65), p.BAD_FRAME, None),
    ("message_id bad chars", msg(message_id="a b<script>"), p.BAD_FRAME, None),
    ("message_id non-ascii", msg(message_id="订单"), p.BAD_FRAME, None),
    ("missing text", msg(text=...), p.BAD_FRAME, "m-1"),
    ("text not a string", msg(text=["hi"]), p.BAD_FRAME, "m-1"),
    ("text null", msg(text=None), p.BAD_FRAME, "m-1"),
    ("text empty", msg(text=""), p.BAD_FRAME, "m-1"),
    ("text only spaces", msg(text="   \n\t "), p.BAD_FRAME, "m-1"),
    ("text too long", msg(text="x" * 2001), p.TOO_LARGE, "m-1"),
    ("text too long chinese", msg(text="长" * 2001), p.TOO_LARGE, "m-1"),
    ("conversation_id number", msg(conversation_id=5), p.BAD_FRAME, "m-1"),
    ("conversation_id bad chars", msg(conversation_id="../etc"), p.BAD_FRAME, "m-1"),
    ("hello conversation_id bool", '{"type": "hello", "conversation_id": true}', p.BAD_FRAME, None),
    ("hello language number", '{"type": "hello", "language": 1}', p.BAD_FRAME, None),
    ("binary", b'{"type": "hello"}', p.BAD_FRAME, None),
    ("frame too large", json.dumps({"type": "hello", "pad": "x" * (p.MAX_FRAME_BYTES + 1)}), p.TOO_LARGE, None),
]


@pytest.mark.parametrize(("data", "code", "reply_to"), [b[1:] for b in BAD_FRAMES], ids=[b[0] for b in BAD_FRAMES])
def test_bad_frames_raise_protocol_error(data: str | bytes, code: str, reply_to: str | None) -> None:
    with pytest.raises(ProtocolError) as info:
        p.parse_client_frame(data)
    assert info.value.code == code
    assert info.value.reply_to == reply_to
    assert isinstance(info.value, ChannelError)
    frame = p.error_frame_for(info.value)
    assert frame["type"] == "error" and frame["code"] == code
    assert frame.get("reply_to") == reply_to


def test_error_reason_never_echoes_the_text() -> None:
    with pytest.raises(ProtocolError) as info:
        p.parse_client_frame(msg(text="SECRET " * 400))
    assert "SECRET" not in str(info.value) and "SECRET" not in info.value.reason


# ----------------------------------------------------------------------------------------------- error codes
class StoreUnavailableLike(Exception):
    """Another package's class with the dialogue error's name: codes go by class, so it is not mistaken for it."""


StoreUnavailableLike.__name__ = "StoreUnavailable"


class SubStoreDown(StoreUnavailable):
    pass


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (StoreUnavailable("sqlite:///x.db"), p.STORE_UNAVAILABLE),
        (SubStoreDown("sqlite:///x.db"), p.STORE_UNAVAILABLE),
        (StoreUnavailableLike(), p.INTERNAL),
        (ConversationNotFound("c1"), p.NOT_FOUND),
        (ConcurrentUpdate("c1", 1, 2), p.BUSY),
        (TimeoutError(), p.TIMEOUT),
        (ValueError("boom"), p.INTERNAL),
        (KeyError("x"), p.INTERNAL),
        (ProtocolError(p.TOO_LARGE, "x"), p.TOO_LARGE),
    ],
)
def test_error_code_for(exc: BaseException, code: str) -> None:
    assert p.error_code_for(exc) == code


def test_error_code_for_custom_mapping() -> None:
    class GenerationError(Exception):
        pass

    assert p.error_code_for(GenerationError()) == p.INTERNAL
    assert p.error_code_for(GenerationError(), {GenerationError: p.TIMEOUT}) == p.TIMEOUT


def test_error_frame_for_hides_exception_text() -> None:
    frame = p.error_frame_for(ValueError("customer said: my password is hunter2"), reply_to="m9")
    assert frame == {"type": "error", "code": "internal", "message": p.ERROR_MESSAGES["internal"], "reply_to": "m9"}
    assert "hunter2" not in p.encode_frame(frame)


def test_every_code_has_a_message_and_http_status() -> None:
    for code in p.ERROR_CODES:
        assert p.ERROR_MESSAGES[code]
        assert 400 <= p.HTTP_STATUS_FOR_CODE[code] < 600


# ------------------------------------------------------------------------------------------------ server frames
def test_message_frame_has_every_field() -> None:
    reply = TurnReply(
        conversation_id="c1",
        message_id="b1",
        reply_to="m1",
        text="订单10234已发货",
        intent="order_status",
        confidence=0.93,
        action="action_order_status",
        quick_replies=("thanks",),
        buttons=(("Track it", "/order_status"),),
    )
    frame = json.loads(p.encode_frame(p.message_frame(reply)))
    assert frame == {
        "type": "message",
        "conversation_id": "c1",
        "message_id": "b1",
        "reply_to": "m1",
        "text": "订单10234已发货",
        "intent": "order_status",
        "confidence": 0.93,
        "action": "action_order_status",
        "handed_off": False,
        "quick_replies": ["thanks"],
        "buttons": [{"title": "Track it", "payload": "/order_status"}],
        "replayed": False,
    }
    assert "订单" in p.encode_frame(p.message_frame(reply))  # UTF-8 kept, not \u-escaped


def test_small_frames() -> None:
    assert p.session_frame("c1") == {"type": "session", "conversation_id": "c1"}
    assert p.ack_frame("m1") == {"type": "ack", "message_id": "m1"}
    assert p.typing_frame(True) == {"type": "typing", "on": True}
    assert p.token_frame("m1", " wor") == {"type": "token", "reply_to": "m1", "text": " wor"}
    assert "reply_to" not in p.error_frame(p.BUSY)


def ev(seq: int, type_: str, data: dict[str, Any], message_id: str | None = None) -> Event:
    return Event("c1", seq, 1, type_, data, NOW, message_id)


def test_history_keeps_visible_messages_in_order() -> None:
    events = [
        ev(3, BOT_MESSAGE, {"text": "Hi!", "reply_to": "m1"}, "b1"),
        ev(1, USER_MESSAGE, {"text": "hello", "message_id": "m1"}, "m1"),
        ev(2, ACTION, {"name": "utter_greet"}),
        ev(4, AGENT_MESSAGE, {"text": "Agent here", "agent": "amy"}),
    ]
    frame = p.history_frame("c1", events)
    assert frame["messages"] == [
        {"role": "user", "text": "hello", "message_id": "m1", "reply_to": None},
        {"role": "bot", "text": "Hi!", "message_id": "b1", "reply_to": "m1"},
        {"role": "agent", "text": "Agent here", "message_id": None, "reply_to": None,
         "agent": {"name": "amy", "avatar": "A"}},  # who wrote it (the widget shows the name and initials)
    ]
    assert [m["text"] for m in p.transcript(events, limit=1)] == ["Agent here"]


def test_history_shows_a_clicked_button_by_its_title() -> None:
    buttons = [{"title": "Large", "payload": '/inform{"size": "large"}'}]
    events = [
        ev(1, BOT_MESSAGE, {"text": "Which size?", "buttons": buttons}, "b0"),
        ev(2, USER_MESSAGE, {"text": '/inform{"size": "large"}', "message_id": "m1"}, "m1"),
        ev(3, BOT_MESSAGE, {"text": "Noted."}, "b1"),
        ev(4, USER_MESSAGE, {"text": '/inform{"size": "large"}', "message_id": "m2"}, "m2"),  # typed, not offered
    ]
    assert [m["text"] for m in p.transcript(events)] == ["Which size?", "Large", "Noted.", '/inform{"size": "large"}']


def test_api_json_rows() -> None:
    summary = ConversationSummary("c1", "zh", 3, True, "handoff", NOW, NOW, "complaint")
    row = p.summary_to_json(summary)
    assert row["turns"] == 3 and row["handed_off"] is True and row["updated_at"].startswith("2026-11-23T12:00")
    event = p.event_to_json(ev(1, USER_MESSAGE, {"text": "你好"}, "m1"))
    assert json.loads(p.encode_json([event]))[0]["data"] == {"text": "你好"}


# The console list's query parsing (limit, filters, cursor) moved to the ops server: tests/channels/test_ops.py.


def test_push_frames_pick_agent_messages_takeover_and_handback() -> None:
    events = [
        ev(4, USER_MESSAGE, {"text": "hello", "message_id": "m1"}, "m1"),
        ev(5, TAKEOVER, {"agent": "amy"}),
        ev(6, AGENT_MESSAGE, {"text": "<b>Hi</b>, Amy here", "agent": "amy", "message_id": "a1"}, "a1"),
        ev(7, BOT_MESSAGE, {"text": "bot", "reply_to": "m2"}, "b2"),
        ev(8, HANDBACK, {"agent": "amy"}),
    ]
    frames, last = p.push_frames(events, after_seq=4)
    assert last == 8
    assert frames[0] == {"type": "handoff", "conversation_id": "c1", "status": "agent"}
    assert frames[1] == {
        "type": "message", "role": "agent", "conversation_id": "c1", "message_id": "a1", "reply_to": None,
        "text": "<b>Hi</b>, Amy here", "intent": None, "confidence": None, "action": None, "handed_off": True,
        "quick_replies": [], "replayed": False, "agent": {"name": "amy", "avatar": "A"},
    }
    assert frames[2] == {"type": "handoff", "conversation_id": "c1", "status": "bot"}
    assert len(frames) == 3  # the customer's own message and the bot reply came with the turn
    assert p.push_frames(events, after_seq=8) == ([], 8)
    assert p.push_frames(events, after_seq=6)[0] == [frames[2]]


def session(cid: str) -> NewConversation:
    return NewConversation(cid, "0" * 64)


def test_connection_state_tracks_the_last_seq_sent() -> None:
    state = p.ConnectionState()
    state.open(session("c1"), stored=True, last_seq=12)  # a resumed conversation: its history went up to 12
    assert state.last_seq == 12 and state.conversation_id == "c1"
    state.open(session("c2"), stored=False)
    assert state.last_seq == 0 and state.conversation_id == "c2"  # a new conversation starts from scratch
    assert not state.stored
    state.mark_stored("c2")
    assert state.stored


# ----------------------------------------------------------------------------------------- connection state
def test_connection_state_busy_and_duplicates() -> None:
    state = p.ConnectionState(max_pending=2)
    m1, m2, m3 = (p.UserMessage(None, f"m{i}", "x") for i in (1, 2, 3))
    assert state.admit(m1) is True
    assert state.admit(m1) is False  # duplicate resend while in flight: not run twice
    assert state.admit(m2) is True
    with pytest.raises(ProtocolError) as info:
        state.admit(m3)
    assert info.value.code == p.BUSY and info.value.reply_to == "m3"
    state.finish(m1)
    assert state.admit(m3) is True
    assert state.pending == 2


def test_connection_state_conversation_check() -> None:
    state = p.ConnectionState()
    state.check_conversation(p.UserMessage("other", "m1", "x"))  # no session yet: allowed
    assert state.open(session("c1"), stored=True) is True and state.open(session("c1"), stored=True) is False
    state.check_conversation(p.UserMessage(None, "m1", "x"))
    state.check_conversation(p.UserMessage("c1", "m1", "x"))
    with pytest.raises(ProtocolError) as info:
        state.check_conversation(p.UserMessage("c2", "m2", "x"))
    assert info.value.code == p.BAD_FRAME and info.value.reply_to == "m2"
    with pytest.raises(ValueError):
        p.ConnectionState(max_pending=0)
