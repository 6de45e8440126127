"""The pure core of the chat-side defences of issue 19 (no sockets): resume secrets, who may resume what, the
per-address bucket and which address it counts. The attacks over a real socket are in test_chat_resume.py and
test_chat_creation.py."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import uuid

import pytest

from channels import protocol as p
from channels.errors import ProtocolError
from dialogue.types import Conversation, NewConversation

NOW = dt.datetime(2027, 2, 1, tzinfo=dt.UTC)


def row(cid: str, secret_hash: str | None, sender: str | None = None) -> Conversation:
    return Conversation(cid, "idle", {}, "en", 1, False, 1, NOW, NOW, sender=sender, secret_hash=secret_hash)


# ---------------------------------------------------------------------------------------------------- secrets
def test_new_session_issues_an_unguessable_secret_and_derives_the_id_from_it() -> None:
    session, secret = p.new_session("zh", "cust-1")
    assert p.SECRET_RE.fullmatch(secret) and len(secret) >= 43  # 256 bits
    assert session == NewConversation(p.conversation_id_for(secret), hashlib.sha256(secret.encode()).hexdigest(),
                                      "zh", "cust-1")
    assert uuid.UUID(session.id).version == 4 and p.CONVERSATION_ID_RE.fullmatch(session.id)
    assert session.id not in session.secret_hash and secret not in repr(session)
    assert len({p.new_session()[0].id for _ in range(200)}) == 200


def test_secrets_never_appear_in_frame_reprs() -> None:
    hello = p.parse_client_frame(json.dumps({"type": "hello", "conversation_id": "c1", "secret": "s" * 43}))
    assert isinstance(hello, p.Hello) and hello.secret == "s" * 43 and "s" * 43 not in repr(hello)
    msg = p.parse_client_frame(json.dumps({"type": "message", "message_id": "m1", "text": "hi", "secret": "t" * 43}))
    assert isinstance(msg, p.UserMessage) and msg.secret == "t" * 43 and "t" * 43 not in repr(msg)


@pytest.mark.parametrize("secret", [42, "short", "x" * 129, "has space in it!!", ""])
def test_malformed_secrets_are_bad_frames(secret: object) -> None:
    with pytest.raises(ProtocolError) as info:
        p.parse_client_frame(json.dumps({"type": "message", "message_id": "m1", "text": "hi", "secret": secret}))
    assert info.value.code == p.BAD_FRAME and info.value.reply_to == "m1"


def test_session_frame_carries_the_secret_only_when_issued() -> None:
    assert p.session_frame("c1", "s" * 43) == {"type": "session", "conversation_id": "c1", "secret": "s" * 43}
    assert p.session_frame("c1") == {"type": "session", "conversation_id": "c1"}
    assert p.RESUME_DENIED in p.ERROR_CODES and p.HTTP_STATUS_FOR_CODE[p.RESUME_DENIED] == 403


# ------------------------------------------------------------------------------------------------ verify_resume
def denied(cid: str, secret: str | None, user: str | None, stored: Conversation | None) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        p.verify_resume(cid, secret, user, stored, reply_to="m1")
    assert info.value.code == p.RESUME_DENIED and info.value.reply_to == "m1"
    return info.value


def test_resume_needs_the_secret_of_the_stored_conversation_and_its_user() -> None:
    session, secret = p.new_session(user="alice")
    stored = row(session.id, session.secret_hash, "alice")
    assert p.verify_resume(session.id, secret, "alice", stored) == NewConversation(
        session.id, session.secret_hash, "en", "alice"
    )
    reasons = {
        str(denied(session.id, None, "alice", stored)),  # an old client: the id only
        str(denied(session.id, p.new_secret(), "alice", stored)),  # another secret
        str(denied(session.id, secret, "mallory", stored)),  # another site user
        str(denied(session.id, secret, None, stored)),  # no user where one was given at creation
        str(denied(session.id, secret, "alice", row(session.id, None, "alice"))),  # a row from before 0005
    }
    assert len(reasons) == 1  # one answer for every refusal: no oracle for which part was wrong


def test_a_conversation_created_without_user_resumes_with_any_user() -> None:
    session, secret = p.new_session()
    assert p.verify_resume(session.id, secret, "bob", row(session.id, session.secret_hash)).sender is None


def test_a_not_yet_created_conversation_resumes_only_with_the_secret_its_id_was_derived_from() -> None:
    session, secret = p.new_session()
    assert p.verify_resume(session.id, secret, "carol", None, language="zh") == NewConversation(
        session.id, session.secret_hash, "zh", "carol"
    )
    denied(session.id, p.new_secret(), None, None)
    denied("chosen-by-mallory", secret, None, None)  # clients cannot squat ids of their choice
    denied(str(uuid.uuid4()), p.new_secret(), None, None)


# ------------------------------------------------------------------------------------------- connection state
def test_creation_is_paid_once_per_session_and_capped_per_connection() -> None:
    state = p.ConnectionState(max_conversations=2)
    spent: list[int] = []

    def bucket() -> bool:
        spent.append(1)
        return True

    for k in range(2):
        state.open(p.new_session()[0], stored=False)
        assert state.needs_creation
        state.pay_creation(address_allows=bucket)
        state.pay_creation(address_allows=bucket)  # a resend of the first message: not paid twice
        assert not state.needs_creation and not state.stored
    state.open(p.new_session()[0], stored=False)
    with pytest.raises(ProtocolError) as info:
        state.pay_creation(reply_to="m3", address_allows=bucket)
    assert info.value.code == p.RATE_LIMITED and info.value.reply_to == "m3"
    assert len(spent) == 2  # the refused one cost the address nothing
    state.open(NewConversation("c9", "0" * 64), stored=True)
    assert not state.needs_creation and state.stored  # a resumed conversation costs nothing


def test_an_address_refusal_counts_nothing_against_the_connection() -> None:
    state = p.ConnectionState(max_conversations=1)
    state.open(p.new_session()[0], stored=False)
    with pytest.raises(ProtocolError):
        state.pay_creation(address_allows=lambda: False)
    assert state.created == 0 and state.needs_creation
    state.pay_creation(address_allows=lambda: True)
    assert state.created == 1


# ------------------------------------------------------------------------------------------- address limiter
def test_address_limiter_bursts_refills_and_keeps_addresses_apart() -> None:
    limiter = p.AddressLimiter(rate=0.5, burst=3)
    assert [limiter.take("203.0.113.7", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.take("198.51.100.1", 0.0)  # another address has its own bucket
    assert not limiter.take("203.0.113.7", 1.0)  # half a token
    assert limiter.take("203.0.113.7", 2.0)  # one token after 2 s at 0.5/s
    assert not limiter.take("203.0.113.7", 2.0)


def test_address_limiter_memory_is_bounded() -> None:
    limiter = p.AddressLimiter(rate=1.0, burst=2, max_addresses=100)
    for k in range(1000):
        limiter.take(f"10.0.{k // 256}.{k % 256}", 0.0)
    assert len(limiter) == 100
    limiter.take("10.9.9.9", 10.0)  # every other bucket has refilled by now: forgotten (same as a new one)
    assert len(limiter) == 1


# -------------------------------------------------------------------------------------------- client address
TRUSTED = p.parse_networks(["127.0.0.1", "10.0.0.0/8"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("198.51.100.7", ["203.0.113.9"], "198.51.100.7"),  # not from a trusted proxy: the header is ignored
        ("127.0.0.1", [], "127.0.0.1"),
        ("127.0.0.1", ["203.0.113.9"], "203.0.113.9"),
        ("127.0.0.1", ["1.2.3.4, 203.0.113.9"], "203.0.113.9"),  # the client's own claim (left) is not believed
        ("127.0.0.1", ["1.2.3.4", "203.0.113.9, 10.1.2.3"], "203.0.113.9"),  # two headers, a trusted hop
        ("127.0.0.1", ["10.1.1.1, 10.2.2.2"], "127.0.0.1"),  # only proxies: the peer counts
        ("127.0.0.1", ["1.2.3.4, garbage"], "127.0.0.1"),  # a malformed chain: the proxy counts
        ("127.0.0.1", ["2001:db8:1:2:3:4:5:6"], "2001:db8:1:2::/64"),  # IPv6 counts per /64
        ("2001:db8:aa:bb::1", [], "2001:db8:aa:bb::/64"),
        ("::ffff:192.0.2.1", [], "192.0.2.1"),
    ],
)
def test_client_address(peer: str, forwarded: list[str], expected: str) -> None:
    assert p.client_address(peer, forwarded, TRUSTED) == expected


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    assert p.parse_networks(["::1", "192.168.0.0/16"]) == (
        ipaddress.ip_network("::1"), ipaddress.ip_network("192.168.0.0/16")
    )
    with pytest.raises(ValueError, match="proxy.example"):
        p.parse_networks(["proxy.example"])
