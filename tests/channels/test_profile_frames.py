"""The agent's display name and picture on the wire, pure (no socket, no store): the card (name, initials kept for
old widgets, ``picture`` only for a sha256 digest), what stored events recorded (history replays it, events stored
before profiles still work), the typing frame, and the chat port's ``/avatars/<sha256>`` request and response."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import pytest

from channels import chat_http as ch
from channels import protocol as p
from channels.frames import attachment_frame, event_agent_card
from channels.transcript import push_frames, transcript
from dialogue.types import AGENT_MESSAGE, ATTACHMENT, Event
from tests.channels.test_attachments_uploads import GIF, JPEG, PNG, WEBP

SHA = hashlib.sha256(PNG).hexdigest()
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def agent_event(seq: int, **data: Any) -> Event:
    return Event("c1", seq, 1, AGENT_MESSAGE, {"text": "hi", "message_id": f"a{seq}", **data}, NOW, f"a{seq}")


def test_the_card_has_a_picture_only_for_a_digest() -> None:
    assert p.agent_card("Amy Lee", SHA) == {"name": "Amy Lee", "avatar": "AL", "picture": f"/avatars/{SHA}"}
    assert p.agent_card("Amy Lee") == {"name": "Amy Lee", "avatar": "AL"}  # no picture: the old shape
    for bad in ("", SHA.upper(), SHA[:-1], SHA + "0", "https://evil.example/x.png", "../../etc/passwd",
                "javascript:alert(1)", f"{SHA[:32]}/{SHA[33:]}"):
        assert "picture" not in p.agent_card("amy", bad), bad
        assert p.avatar_path(bad) is None
    assert p.avatar_path(SHA) == p.AVATARS_PATH + SHA


def test_the_card_comes_from_what_the_event_recorded() -> None:
    recorded = agent_event(3, agent="amy", agent_name="Amy Lee", agent_avatar=SHA)
    assert p.agent_message_frame(recorded)["agent"] == {"name": "Amy Lee", "avatar": "AL", "picture": f"/avatars/{SHA}"}
    # Events stored before profiles name the username only: the old card.
    assert p.agent_message_frame(agent_event(4, agent="amy"))["agent"] == {"name": "amy", "avatar": "A"}
    assert "agent" not in p.agent_message_frame(agent_event(5))  # no agent at all: no field
    # Odd data never becomes a URL or breaks the frame.
    assert event_agent_card({"agent": "amy", "agent_name": "  ", "agent_avatar": "x"}) == {"name": "amy",
                                                                                          "avatar": "A"}
    assert event_agent_card({"agent": "amy", "agent_name": 7, "agent_avatar": ["x"]}) == {"name": "amy",
                                                                                         "avatar": "A"}
    assert event_agent_card({"agent_name": "Amy"}) == {"name": "Amy", "avatar": "A"}
    assert event_agent_card({"agent": ""}) is None


def test_history_and_pushes_replay_the_profile_each_message_was_sent_with() -> None:
    events = [
        agent_event(1, agent="amy"),  # sent with no display name (or before profiles existed)
        agent_event(2, agent="amy", agent_name="Amy Lee", agent_avatar=SHA),
        Event("c1", 3, 1, ATTACHMENT, {"id": "f" * 32, "filename": "a.png", "content_type": "image/png", "size": 9,
                                       "direction": "agent", "agent": "amy", "agent_name": "A. Lee"}, NOW, "f1"),
    ]
    entries = transcript(events)
    assert [e["agent"] for e in entries] == [
        {"name": "amy", "avatar": "A"},
        {"name": "Amy Lee", "avatar": "AL", "picture": f"/avatars/{SHA}"},
        {"name": "A. Lee", "avatar": "AL"},
    ]
    frames, _ = push_frames(events, 0)
    assert [f["agent"] for f in frames] == [e["agent"] for e in entries]
    assert attachment_frame(events[2], None)["agent"] == {"name": "A. Lee", "avatar": "AL"}


def test_the_typing_frame_names_the_agent_as_shown() -> None:
    shown = p.ShownAgent("Amy Lee", SHA)
    assert p.agent_typing_frame(True, shown) == {
        "type": "agent_typing", "state": True, "agent": {"name": "Amy Lee", "avatar": "AL", "picture": f"/avatars/{SHA}"}}
    assert p.agent_typing_frame(False, "amy")["agent"] == {"name": "amy", "avatar": "A"}  # a bare username
    board = p.TypingBoard(min_interval=1.0)
    frames: list[dict[str, Any]] = []
    board.subscribe(lambda cid, frame: frames.append(frame))
    assert board.agent("c1", shown, True, 0.0) is True
    assert board.agent("c1", shown, True, 0.5) is False  # a repeat within the interval
    assert board.agent("c1", p.ShownAgent("Amy Lee"), True, 0.6) is True  # the picture changed: told again
    assert [f["agent"].get("picture") for f in frames] == [f"/avatars/{SHA}", None]


# ----------------------------------------------------------------------------------------------- the chat port
@pytest.mark.parametrize(
    ("target", "wanted"),
    [(f"/avatars/{SHA}", SHA), (f"/avatars/{SHA}?v=1", SHA), (f"/avatars/{SHA.upper()}", None),
     (f"/avatars/{SHA}/", None), (f"/avatars/{SHA[:-1]}", None), ("/avatars/", None), ("/avatars/../index.html", None),
     (f"/avatars/%2e%2e/{SHA}", None), (f"/attachments/{SHA}", None), (f"/avatars/{SHA}.png", None)],
)
def test_only_a_digest_path_is_an_avatar_request(target: str, wanted: str | None) -> None:
    assert ch.avatar_request(target) == wanted


@pytest.mark.parametrize(("data", "content_type"), [(PNG, "image/png"), (JPEG, "image/jpeg"), (WEBP, "image/webp")])
def test_a_picture_is_served_with_its_type_cached_for_good_and_inert(data: bytes, content_type: str) -> None:
    answer = ch.avatar_response(content_type, data, date=0.0, site_headers={"Cross-Origin-Resource-Policy": "same-site"})
    assert answer is not None and answer.status_code == 200 and answer.body == data
    headers = answer.headers
    assert headers["Content-Type"] == content_type
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert headers["Content-Security-Policy"] == ch.AVATAR_CSP and "sandbox" in ch.AVATAR_CSP
    assert "script-src" not in ch.AVATAR_CSP and "default-src 'none'" in ch.AVATAR_CSP
    assert headers["Cross-Origin-Resource-Policy"] == "cross-origin"  # the shop's page shows it (the widget)
    assert len(headers.get_all("X-Content-Type-Options")) == 1


@pytest.mark.parametrize(
    ("data", "content_type"),
    [(PNG, "image/jpeg"), (GIF, "image/gif"), (b"<svg/>", "image/svg+xml"), (b"<html>", "image/png"), (PNG, "text/html")],
)
def test_nothing_is_served_as_a_picture_unless_it_is_one(data: bytes, content_type: str) -> None:
    assert ch.avatar_response(content_type, data, date=0.0, site_headers={}) is None
