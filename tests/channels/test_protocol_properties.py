"""Property-based tests of the pure protocol core: whatever a client sends, parsing fails only with ProtocolError."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from channels import protocol as p
from channels.errors import ProtocolError

ANY_CHAR = st.characters(exclude_categories=())  # surrogates and control characters included
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=50)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
field_values = json_values | st.text(alphabet=ANY_CHAR, max_size=300) | st.just("x" * 2001)
frames = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["hello", "message", "bogus", ""]) | json_values,
        "conversation_id": st.none() | st.from_regex(p.CONVERSATION_ID_RE, fullmatch=True) | field_values,
        "message_id": st.from_regex(p.MESSAGE_ID_RE, fullmatch=True) | field_values,
        "text": field_values,
        "language": st.sampled_from(["en", "zh-CN", "fr", "", "-"]) | field_values,
        "user": st.from_regex(p.USER_ID_RE, fullmatch=True) | field_values,
    },
)


def _parse(data: str | bytes) -> p.ClientFrame | None:
    try:
        return p.parse_client_frame(data)
    except ProtocolError as exc:
        assert exc.code in p.ERROR_CODES
        frame = p.error_frame_for(exc)
        json.dumps(frame)  # the answer is always serialisable
        return None


@SETTINGS
@given(st.text(alphabet=ANY_CHAR, max_size=500))
@example('{"type":"message","message_id":"m","text":"\\ud800"}')  # a lone surrogate escape: valid JSON
@example("1" * 5000)  # int() digit limit
@example("[" * 5000 + "]" * 5000)  # recursion
@example('{"type":"hello","language":"zh-"}')
def test_any_text_parses_or_raises_protocol_error(data: str) -> None:
    _parse(data)


@SETTINGS
@given(st.binary(max_size=500))
def test_binary_frames_are_always_bad_frame(data: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        p.parse_client_frame(data)
    assert info.value.code == p.BAD_FRAME


@SETTINGS
@given(frames, st.booleans())
def test_frame_shaped_objects_parse_or_raise_protocol_error(obj: dict[str, Any], ascii_only: bool) -> None:
    frame = _parse(json.dumps(obj, ensure_ascii=ascii_only))
    if isinstance(frame, p.UserMessage):  # what passes is what the protocol promises
        assert p.MESSAGE_ID_RE.fullmatch(frame.message_id)
        assert 1 <= len(frame.text) <= p.MAX_TEXT_CHARS and frame.text == frame.text.strip()
        frame.text.encode("utf-8")  # storable
        assert frame.conversation_id is None or p.CONVERSATION_ID_RE.fullmatch(frame.conversation_id)
    elif isinstance(frame, p.Hello):
        assert frame.language in (None, *p.LANGUAGES)
        assert frame.user is None or p.USER_ID_RE.fullmatch(frame.user)


@SETTINGS
@given(st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")) | st.binary(max_size=200))
def test_parse_of_decoded_bytes(raw: bytes) -> None:
    _parse(raw.decode("utf-8", "replace"))


@SETTINGS
@given(
    st.floats(0.5, 100), st.integers(1, 50),
    st.lists(st.floats(0, 0.5, allow_nan=False), min_size=1, max_size=300),
)
def test_token_bucket_never_exceeds_rate_plus_burst(rate: float, burst: int, gaps: list[float]) -> None:
    bucket = p.TokenBucket(rate, burst, now=0.0)
    now = 0.0
    taken = 0
    for gap in gaps:
        now += gap
        taken += bucket.take(now)
        assert taken <= burst + rate * now + 1e-6
        assert 0.0 <= bucket.tokens <= burst


def test_token_bucket_refills() -> None:
    bucket = p.TokenBucket(10, 20, now=0.0)
    assert sum(bucket.take(0.0) for _ in range(25)) == 20
    assert not bucket.take(0.05)
    assert bucket.take(0.1)  # one token per 100 ms at 10/s
    assert sum(bucket.take(100.0) for _ in range(25)) == 20  # never more than the burst
    with pytest.raises(ValueError):
        p.TokenBucket(0, 1)
    err = p.rate_limited(p.UserMessage(None, "m1", "hi"))
    assert err.code == p.RATE_LIMITED and err.reply_to == "m1"
    assert p.HTTP_STATUS_FOR_CODE[p.RATE_LIMITED] == 429 and p.RATE_LIMITED in p.ERROR_CODES


def test_hello_user_field() -> None:
    assert p.parse_client_frame('{"type":"hello","user":"alice@example.com"}') == p.Hello(None, None, "alice@example.com")
    for bad in ('"has space"', "42", '""', json.dumps("x" * 256)):
        with pytest.raises(ProtocolError) as info:
            p.parse_client_frame('{"type":"hello","user":' + bad + '}')
        assert info.value.code == p.BAD_FRAME and "user" in info.value.reason
