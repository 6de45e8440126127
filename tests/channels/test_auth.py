"""The console's authentication rules (pure): password hashes, tokens, session expiry, origins, throttling, roles."""

from __future__ import annotations

import datetime as dt

import pytest

from channels import auth
from channels.errors import ChannelError

T0 = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


def test_password_hash_round_trip_and_salting() -> None:
    first = auth.hash_password("correct horse battery")
    second = auth.hash_password("correct horse battery")
    assert first.startswith("$argon2id$") and first != second  # salted
    assert auth.verify_password(first, "correct horse battery")
    assert not auth.verify_password(first, "correct horse battery ")
    assert not auth.verify_password(first, "")
    assert not auth.needs_rehash(first)


@pytest.mark.parametrize("stored", ["", "not a hash", "$argon2id$v=19$m=1,t=1,p=1$broken", "$2b$12$bcrypt-ish"])
def test_verify_never_raises_on_a_malformed_hash(stored: str) -> None:
    assert auth.verify_password(stored, "whatever password") is False


def test_dummy_hash_costs_a_real_verification() -> None:
    assert auth.DUMMY_HASH.startswith("$argon2id$")
    assert not auth.verify_password(auth.DUMMY_HASH, "guess-a-password")


def test_oversized_password_is_refused_without_hashing() -> None:
    assert not auth.verify_password(auth.DUMMY_HASH, "x" * (auth.MAX_PASSWORD_CHARS + 1))


@pytest.mark.parametrize("password", ["short", "         x", "x" * (auth.MAX_PASSWORD_CHARS + 1)])
def test_weak_or_huge_passwords_are_refused(password: str) -> None:
    with pytest.raises(auth.AuthError) as info:
        auth.hash_password(password)
    assert isinstance(info.value, ChannelError)
    assert password not in str(info.value)  # the rule is named, the value never


@pytest.mark.parametrize("username", ["a", "-alice", "alice smith", "a" * 65, "<script>", "ali\nce", ""])
def test_bad_usernames(username: str) -> None:
    with pytest.raises(auth.AuthError):
        auth.check_username(username)


@pytest.mark.parametrize("username", ["al", "alice", "alice.smith@shop", "agent_7", "A-1"])
def test_good_usernames(username: str) -> None:
    assert auth.check_username(username) == username


def test_roles_are_ordered() -> None:
    assert auth.role_allows("admin", "agent") and auth.role_allows("admin", "viewer")
    assert auth.role_allows("agent", "agent") and auth.role_allows("agent", "viewer")
    assert not auth.role_allows("agent", "admin") and not auth.role_allows("viewer", "agent")
    assert not auth.role_allows("root", "viewer")  # unknown roles may do nothing
    with pytest.raises(auth.AuthError):
        auth.check_role("root")


def test_tokens_are_random_and_only_their_hash_is_stored() -> None:
    tokens = {auth.new_token() for _ in range(100)}
    assert len(tokens) == 100 and all(auth.well_formed_token(t) for t in tokens)
    token = next(iter(tokens))
    digest = auth.token_hash(token)
    assert len(digest) == 64 and token not in digest and auth.token_hash(token) == digest
    assert not auth.well_formed_token(None) and not auth.well_formed_token("short")
    assert not auth.well_formed_token("x" * 20 + "; DROP")


def test_csrf_comparison() -> None:
    token = auth.new_token()
    assert auth.same_token(token, token)
    assert not auth.same_token(token, token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert not auth.same_token(token, None) and not auth.same_token(token, "") and not auth.same_token("", "")


def test_sliding_expiry_is_capped_and_written_rarely() -> None:
    ttl, max_age = dt.timedelta(hours=8), dt.timedelta(hours=24)
    expires = auth.session_expiry(T0, ttl)
    assert auth.extended_expiry(T0, expires, T0 + dt.timedelta(minutes=1), ttl, max_age) is None  # too soon
    later = T0 + dt.timedelta(hours=1)
    assert auth.extended_expiry(T0, expires, later, ttl, max_age) == later + ttl
    near_end = T0 + dt.timedelta(hours=23)
    assert auth.extended_expiry(T0, near_end, near_end, ttl, max_age) == T0 + max_age  # absolute cap
    assert auth.extended_expiry(T0, T0 + max_age, T0 + dt.timedelta(hours=23, minutes=30), ttl, max_age) is None


@pytest.mark.parametrize(
    ("origin", "referer", "ok"),
    [
        ("http://127.0.0.1:8001", None, True),
        ("HTTP://127.0.0.1:8001", None, True),
        ("http://127.0.0.1:8001", "https://evil.example/", True),  # Origin decides when present
        ("https://evil.example", "http://127.0.0.1:8001/console", False),
        ("null", None, False),
        ("http://127.0.0.1:8002", None, False),
        ("http://127.0.0.1:8001.evil.example", None, False),
        (None, "http://127.0.0.1:8001/console/c/1", True),
        (None, "http://evil.example/http://127.0.0.1:8001", False),
        (None, None, False),
        ("", "", False),
    ],
)
def test_origin_check(origin: str | None, referer: str | None, ok: bool) -> None:
    assert auth.origin_allowed(origin, referer, frozenset({"http://127.0.0.1:8001"})) is ok


def test_origin_normalisation() -> None:
    assert auth.normalise_origin("https://Ops.Shop.example:443/x?y") == "https://ops.shop.example"
    assert auth.normalise_origin("http://[::1]:8001") == "http://[::1]:8001"
    assert auth.normalise_origin("javascript:alert(1)") is None
    assert auth.normalise_origin("http://host:99999") is None


def test_throttle_keys_are_the_address_and_the_account_at_that_address() -> None:
    address, account = auth.throttle_keys("10.0.0.1", " Alice ")
    assert (address, account) == ("addr:10.0.0.1", "account:alice@10.0.0.1")
    assert auth.throttle_keys("10.0.0.1", "bob")[0] == address  # one address: one counter for every name
    assert auth.throttle_keys("10.0.0.2", "alice")[1] != account  # no counter for the account alone


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1:8001", True),
        ("localhost:8001", True),
        ("LOCALHOST:8001", True),
        ("[::1]:8001", True),
        ("127.0.0.1:8002", False),
        ("127.0.0.1", False),
        ("evil.example:8001", False),
        ("evil.example@127.0.0.1:8001", False),
        ("127.0.0.1:8001/x", False),
        ("", False),
        (None, False),
    ],
)
def test_host_check_defaults_to_loopback_names(host: str | None, ok: bool) -> None:
    assert auth.host_allowed(host, auth.loopback_origins(8001)) is ok


def test_host_check_with_a_public_origin() -> None:
    allowed = frozenset({"https://ops.shop.example"})
    assert auth.host_allowed("ops.shop.example", allowed)
    assert auth.host_allowed("ops.shop.example:443", allowed)
    assert not auth.host_allowed("ops.shop.example:8001", allowed)
    assert not auth.host_allowed("shop.example", allowed)
