"""The console's language switch: ``POST /api/me/locale`` (any signed-in role, its own account only, CSRF and origin
like every POST, en / zh / null only) and ``GET /api/me``, which every page calls first, returning the choice."""

from __future__ import annotations

import pytest

from channels.ops import ROUTES, OpsServer
from tests.channels.conftest import ConsoleEnv
from tests.channels.test_ops import Staff, as_role, clock, error, ops  # noqa: F401 - fixtures

LOCALE = "/api/me/locale"


def test_the_locale_route_is_open_to_every_signed_in_role() -> None:
    table = {(m, p): r for m, p, r, _ in ROUTES}
    assert table[("POST", LOCALE)] == "viewer"


@pytest.mark.parametrize("role", ["viewer", "agent", "admin"])
async def test_every_role_sets_its_own_locale(ops: OpsServer, console_env: ConsoleEnv, role: str) -> None:  # noqa: F811
    staff = await as_role(ops, role)
    assert (await staff.get("/api/me")).json()["locale"] is None  # never chosen: the pages follow the browser
    res = await staff.post(LOCALE, {"locale": "zh"})
    assert res.status_code == 200 and res.json() == {"locale": "zh"}
    assert (await staff.get("/api/me")).json()["locale"] == "zh"
    assert (await console_env.store.get_user(role)).locale == "zh"
    others = [r for r in ("viewer", "agent", "admin") if r != role]
    assert [(await console_env.store.get_user(r)).locale for r in others] == [None, None]  # only one's own
    assert (await staff.post(LOCALE, {"locale": None})).json() == {"locale": None}
    assert (await staff.get("/api/me")).json()["locale"] is None
    await staff.aclose()


async def test_the_session_survives_and_another_session_sees_the_choice(ops: OpsServer) -> None:  # noqa: F811
    first, second = await as_role(ops, "agent"), await as_role(ops, "agent")
    assert (await first.post(LOCALE, {"locale": "zh"})).status_code == 200
    assert (await first.get("/api/conversations")).status_code == 200  # not logged out by the change
    assert (await second.get("/api/me")).json()["locale"] == "zh"
    await first.aclose()
    await second.aclose()


async def test_csrf_origin_and_login_are_required(ops: OpsServer, console_env: ConsoleEnv) -> None:  # noqa: F811
    anonymous = Staff(ops)
    assert error(await anonymous.post(LOCALE, {"locale": "zh"})) == "unauthorized"
    staff = await as_role(ops, "viewer")
    assert error(await staff.post(LOCALE, {"locale": "zh"}, csrf=False)) == "csrf"
    assert error(await staff.post(LOCALE, {"locale": "zh"}, csrf="wrong")) == "csrf"
    assert error(await staff.post(LOCALE, {"locale": "zh"}, origin="http://evil.example")) == "bad_origin"
    assert error(await staff.post(LOCALE, {"locale": "zh"}, origin=False)) == "bad_origin"
    assert (await console_env.store.get_user("viewer")).locale is None
    await anonymous.aclose()
    await staff.aclose()


@pytest.mark.parametrize("body", [{}, {"locale": "fr"}, {"locale": "ZH"}, {"locale": ""}, {"locale": 1},
                                  {"locale": ["zh"]}, {"locale": "zh-CN"}, {"language": "zh"}])
async def test_only_known_locales_are_accepted(ops: OpsServer, console_env: ConsoleEnv, body: dict) -> None:  # noqa: F811
    staff = await as_role(ops, "agent")
    res = await staff.post(LOCALE, body)
    assert res.status_code == 400 and error(res) == "bad_request"
    assert (await console_env.store.get_user("agent")).locale is None
    await staff.aclose()


async def test_a_non_json_body_is_refused(ops: OpsServer) -> None:  # noqa: F811
    staff = await as_role(ops, "agent")
    assert staff.csrf is not None
    res = await staff.client.post(LOCALE, content=b"locale=zh", headers={
        "Content-Type": "application/x-www-form-urlencoded", "Origin": staff.origin, "X-CSRF-Token": staff.csrf})
    assert res.status_code == 415
    await staff.aclose()
