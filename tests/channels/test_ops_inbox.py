"""The console's inbox routes: claim and assign (roles, CSRF and origin like every POST; 400 for an account that
cannot be assigned, 409 for a colleague's conversation), the mine / unassigned / all views of the queue and the
list, the rows' inbox fields (customer name, preview, waiting time by the server's clock, assignee, unread) and the
unread marker cleared when the assignee reads the conversation."""

from __future__ import annotations

import datetime as dt

from channels.ops import ROUTES, OpsServer
from tests.channels.conftest import PASSWORDS, ConsoleEnv, password_hashes
from tests.channels.test_ops import FakeClock, Staff, as_role, clock, error, ops  # noqa: F401 - fixtures


async def _second_agent(console_env: ConsoleEnv, ops: OpsServer) -> Staff:  # noqa: F811
    await console_env.store.add_user("bea", password_hashes()["agent"], "agent")
    staff = Staff(ops)
    assert (await staff.login("bea", PASSWORDS["agent"])).status_code == 200
    return staff


def test_inbox_routes_are_in_the_role_table() -> None:
    table = {(m, p): r for m, p, r, _ in ROUTES}
    assert table[("POST", "/api/conversations/{id}/claim")] == "agent"
    assert table[("POST", "/api/conversations/{id}/assign")] == "agent"
    assert table[("GET", "/api/assignees")] == "viewer"


async def test_claim_and_assign_rules(ops: OpsServer, console_env: ConsoleEnv) -> None:  # noqa: F811
    first = await console_env.chat("I want to complain")
    second = await console_env.chat("I want to complain about the delay")
    viewer, agent, admin = [await as_role(ops, r) for r in ("viewer", "agent", "admin")]
    bea = await _second_agent(console_env, ops)
    claim = f"/api/conversations/{first}/claim"
    assert (await viewer.post(claim)).status_code == 403
    assert error(await agent.post(claim, csrf="wrong")) == "csrf"
    assert error(await agent.post(claim, origin="http://evil.example")) == "bad_origin"
    assert (await agent.post("/api/conversations/nope/claim")).status_code == 404
    res = await agent.post(claim)
    assert res.status_code == 200 and res.json()["conversation"]["assignee"] == "agent"
    assert (await agent.post(claim)).status_code == 200  # claiming one's own again is fine
    res = await bea.post(claim)
    assert res.status_code == 409 and error(res) == "conflict"

    assign = f"/api/conversations/{second}/assign"
    for body in ({}, {"username": 5}, {"username": "no such user"}, {"username": "ghost"}, {"username": "viewer"}):
        res = await admin.post(assign, body)
        assert res.status_code == 400 and error(res) == "bad_request", body
    assert (await viewer.post(assign, {"username": "bea"})).status_code == 403
    res = await admin.post(assign, {"username": "bea"})
    assert res.status_code == 200 and res.json()["conversation"]["assignee"] == "bea"
    assert (await agent.post(f"/api/conversations/{second}/claim")).status_code == 409
    # Once bea takes it over, nobody else can be assigned until she hands it back.
    assert (await bea.post(f"/api/conversations/{second}/takeover")).status_code == 200
    assert (await admin.post(assign, {"username": "agent"})).status_code == 409
    assert (await admin.post(assign, {"username": None})).status_code == 409
    assert (await bea.post(f"/api/conversations/{second}/handback")).status_code == 200
    res = await admin.post(assign, {"username": "agent"})
    assert res.status_code == 200 and res.json()["conversation"]["assignee"] == "agent"
    assert sorted((await viewer.get("/api/assignees")).json()["items"]) == ["admin", "agent", "bea"]
    for client in (viewer, agent, admin, bea):
        await client.aclose()


async def test_views_rows_and_unread(ops: OpsServer, console_env: ConsoleEnv, clock: FakeClock) -> None:  # noqa: F811
    mine = await console_env.chat("I want to complain")
    others = await console_env.chat("I want to complain too")
    quiet = await console_env.chat("hello")
    agent, admin = await as_role(ops, "agent"), await as_role(ops, "admin")
    bea = await _second_agent(console_env, ops)
    assert (await agent.post(f"/api/conversations/{mine}/claim")).status_code == 200

    async def ids(client: Staff, url: str) -> list[str]:
        res = await client.get(url)
        assert res.status_code == 200, res.text
        return [c["id"] for c in res.json()["items"]]

    assert await ids(agent, "/api/handoff?view=mine") == [mine]
    assert await ids(bea, "/api/handoff?view=mine") == []
    assert await ids(bea, "/api/handoff?view=unassigned") == [others]
    assert set(await ids(bea, "/api/handoff")) == {mine, others}
    assert set(await ids(bea, "/api/conversations?view=unassigned")) == {others, quiet}
    assert await ids(agent, "/api/conversations?view=mine&handoff=waiting") == [mine]
    assert (await agent.get("/api/handoff?view=everything")).status_code == 400
    assert (await agent.get("/api/handoff?limit=5")).status_code == 400
    assert (await agent.get("/api/conversations?view=theirs")).status_code == 400

    clock.shift = dt.timedelta(minutes=3)  # the server's clock measures the wait
    rows = {c["id"]: c for c in (await bea.get("/api/handoff")).json()["items"]}
    row = rows[others]
    assert row["customer"].startswith("Visitor ") and row["assignee"] is None and row["language"] == "en"
    assert row["last_intent"] == "complaint" and row["preview"] and row["preview_by"] == "bot"
    assert 180 <= row["waiting_seconds"] < 240
    assert rows[mine]["unread"] is True and rows[mine]["assignee"] == "agent"
    # The unread marker is the assignee's: bea reading it changes nothing, the agent reading it clears it.
    await bea.get(f"/api/conversations/{mine}")
    assert {c["id"]: c for c in (await bea.get("/api/handoff")).json()["items"]}[mine]["unread"] is True
    read = (await agent.get(f"/api/conversations/{mine}")).json()
    assert read["conversation"]["unread"] is False
    assert {c["id"]: c for c in (await bea.get("/api/handoff")).json()["items"]}[mine]["unread"] is False
    await console_env.chat("anyone there?", conversation_id=mine)
    assert {c["id"]: c for c in (await agent.get("/api/handoff")).json()["items"]}[mine]["unread"] is True
    last = (await agent.get(f"/api/conversations/{mine}")).json()["last_seq"]
    await console_env.chat("hello??", conversation_id=mine)  # arrives while the page is open: its poll reads it
    assert (await agent.get("/api/handoff?view=mine")).json()["items"][0]["unread"] is True
    polled = (await agent.get(f"/api/conversations/{mine}/events?after={last}")).json()
    assert polled["conversation"]["unread"] is False
    for client in (agent, admin, bea):
        await client.aclose()
