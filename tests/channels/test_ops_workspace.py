"""The console's workspace routes: resolve / reopen (agent and admin; viewers get 403 from the role walk in
test_ops.py, which covers every ROUTES entry), the list's status fields and the dashboard's team figures."""

from __future__ import annotations

from channels.ops import ROUTES, OpsServer
from tests.channels.conftest import ConsoleEnv
from tests.channels.test_ops import as_role, clock, ops  # noqa: F401 - fixtures


def test_resolution_routes_are_in_the_role_table() -> None:
    table = {(m, p): r for m, p, r, _ in ROUTES}
    assert table[("POST", "/api/conversations/{id}/resolve")] == "agent"
    assert table[("POST", "/api/conversations/{id}/reopen")] == "agent"


async def test_resolve_reopen_rate_and_dashboard(ops: OpsServer, console_env: ConsoleEnv) -> None:  # noqa: F811
    cid = await console_env.chat("I want to complain")
    viewer = await as_role(ops, "viewer")
    agent = await as_role(ops, "agent")
    admin = await as_role(ops, "admin")
    assert (await viewer.post(f"/api/conversations/{cid}/resolve")).status_code == 403
    assert (await agent.post(f"/api/conversations/{cid}/takeover")).status_code == 200
    assert (await admin.post(f"/api/conversations/{cid}/resolve")).status_code == 409  # the agent holds it
    assert (await agent.post("/api/conversations/nope/resolve")).status_code == 404

    res = await agent.post(f"/api/conversations/{cid}/resolve")
    assert res.status_code == 200
    row = res.json()["conversation"]
    assert row["resolved_by"] == "agent" and row["resolved_at"] and row["handoff_status"] == "" and row["rating"] is None
    assert (await viewer.get("/api/handoff")).json()["items"] == []  # resolving ended the hand-off

    await console_env.engine.rate(cid, 5, "Thanks! call me on +1 415 555 0100")
    listed = {c["id"]: c for c in (await viewer.get("/api/conversations")).json()["items"]}
    assert listed[cid]["rating"] == 5 and listed[cid]["resolved_by"] == "agent"
    events = (await viewer.get(f"/api/conversations/{cid}")).json()["events"]
    rating = [e for e in events if e["type"] == "rating"]
    assert len(rating) == 1 and rating[0]["data"]["score"] == 5 and "555 0100" not in rating[0]["data"]["comment"]

    stats = (await viewer.get("/api/dashboard?days=7")).json()
    assert stats["ratings"] == 1 and stats["csat_mean"] == 5.0 and stats["csat_satisfied"] == 1.0
    assert stats["resolution_median"] is not None and stats["resolution_median"] >= 0
    assert stats["first_response_median"] is None  # no agent wrote

    res = await admin.post(f"/api/conversations/{cid}/reopen")
    assert res.status_code == 200 and res.json()["conversation"]["resolved_at"] is None
    types = [e["type"] for e in (await viewer.get(f"/api/conversations/{cid}")).json()["events"]]
    assert types[-1] == "reopened" and "resolved" in types and "handback" in types
    for client in (viewer, agent, admin):
        await client.aclose()
