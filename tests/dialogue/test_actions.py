"""Custom actions: the rasa-sdk payload/response protocol, the shop's actions in-process and in a real rasa-sdk
action server (a subprocess), and every failure path of RemoteActions against real HTTP peers."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from dialogue.actions import (
    ActionError,
    ActionRunner,
    InProcessActions,
    RemoteActions,
    action_runner,
    build_action_call,
    parse_action_response,
    protocol_version,
)
from dialogue.types import ActionResult
from nlu.types import Entity, Parse

ROOT = Path(__file__).resolve().parents[2]
SHOP_DIR = ROOT / "examples" / "shop"
SHOP_ACTIONS = SHOP_DIR / "actions.py"
DATA = Path(__file__).resolve().parent / "data"
ORDERS_FIXTURE = DATA / "actions_orders.yml"
REJECTING_ACTIONS = DATA / "actions_rejecting.py"
FALLBACK: list[tuple[str, dict[str, str]]] = [("utter_fallback", {})]


def days(n: int) -> str:
    """Today plus ``n`` days, read when the test runs (not at collection: a run that crosses midnight)."""
    return (dt.date.today() + dt.timedelta(days=n)).isoformat()


def when_run(response: tuple[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """An expected response with its dates (``lambda: days(n)``) read now."""
    name, values = response
    return name, {k: v() if callable(v) else v for k, v in values.items()}


def call(
    action: str,
    slots: dict[str, Any] | None = None,
    text: str = "where is my order",
    entities: tuple[Entity, ...] = (),
    language: str = "en",
) -> dict[str, Any]:
    parse = Parse(text, "order_status", 0.93, entities, (("order_status", 0.93), ("inform", 0.05)), language)
    return build_action_call(action, "conv-1", slots or {}, text, parse, [], {"intents": ["order_status"]})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------------------------- fixtures


def make_bot_dir(root: Path) -> Path:
    (root / "data").mkdir(parents=True)
    shutil.copy(ORDERS_FIXTURE, root / "data" / "orders.yml")
    return root


@pytest.fixture(scope="module")
def bot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bot_dir(tmp_path_factory.mktemp("shopbot"))


@pytest.fixture
def shop(bot_dir: Path, monkeypatch: pytest.MonkeyPatch) -> InProcessActions:
    monkeypatch.setenv("KEFU_BOT_DIR", str(bot_dir))
    return InProcessActions(SHOP_ACTIONS)


class ActionServer:
    """``python -m rasa_sdk --actions <module> --port <port>`` run from the module's folder, as in the README."""

    def __init__(self, module_file: Path, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/webhook"
        self.log = log
        self._log_fh = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rasa_sdk", "--actions", module_file.stem, "--port", str(self.port)],
            cwd=module_file.parent,
            env={**os.environ, "SANIC_HOST": "127.0.0.1", **env},
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"action server did not become healthy:\n{self.log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._log_fh.close()


@pytest.fixture(scope="module")
def shop_server(bot_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ActionServer]:
    server = ActionServer(SHOP_ACTIONS, {"KEFU_BOT_DIR": str(bot_dir)}, tmp_path_factory.mktemp("log") / "shop.log")
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def rejecting_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ActionServer]:
    server = ActionServer(REJECTING_ACTIONS, {}, tmp_path_factory.mktemp("log") / "rejecting.log")
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


@pytest.fixture
async def remote_shop(shop_server: ActionServer) -> AsyncIterator[RemoteActions]:
    runner = RemoteActions(shop_server.url, timeout_s=5.0)
    yield runner
    await runner.aclose()


# ------------------------------------------------------------------------------------------------- payload


def test_payload_is_what_rasa_sdk_reads() -> None:
    from rasa_sdk.interfaces import Tracker

    entities = (Entity("order_id", "10234", 14, 19),)
    parse = Parse("where is order 10234", "order_status", 0.91, entities, (("order_status", 0.91), ("inform", 0.06)))
    events = [{"event": "slot", "timestamp": 1700000000.0, "name": "product", "value": "laptop bag"}]
    payload = build_action_call(
        "action_order_status",
        "conv-42",
        {"order_id": None, "product": "laptop bag"},
        parse.text,
        parse,
        events,
        {"intents": ["order_status"], "responses": {}},
        language="zh",
        input_channel="web",
        latest_action_name="action_listen",
    )
    assert json.loads(json.dumps(payload)) == payload  # pure JSON
    assert set(payload) == {"next_action", "sender_id", "tracker", "domain", "version"}
    assert payload["next_action"] == "action_order_status" and payload["sender_id"] == "conv-42"
    assert payload["version"] == protocol_version()
    assert payload["tracker"]["latest_event_time"] == 1700000000.0

    tracker = Tracker.from_dict(payload["tracker"])
    assert tracker.sender_id == "conv-42"
    assert tracker.get_slot("product") == "laptop bag"
    assert tracker.get_slot("language") == "zh"
    assert tracker.get_intent_of_latest_message() == "order_status"
    assert list(tracker.get_latest_entity_values("order_id")) == ["10234"]
    assert tracker.latest_message["text"] == "where is order 10234"
    assert tracker.latest_message["intent_ranking"][1] == {"name": "inform", "confidence": 0.06}
    assert tracker.latest_message["entities"][0]["start"] == 14
    assert tracker.latest_action_name == "action_listen"
    assert tracker.events == events
    assert tracker.is_paused() is False
    assert tracker.active_loop == {}


def test_payload_without_parse() -> None:
    from rasa_sdk.interfaces import Tracker

    payload = build_action_call("action_handoff", "c", {"language": "en"}, None, None, [], {})
    tracker = Tracker.from_dict(payload["tracker"])
    assert tracker.get_intent_of_latest_message() is None
    assert list(tracker.get_latest_entity_values("order_id")) == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            {
                "events": [{"event": "slot", "name": "order_id", "value": "10234"}],
                "responses": [
                    {
                        "response": "utter_return_denied",
                        "template": "utter_return_denied",
                        "text": None,
                        "buttons": [],
                        "custom": {},
                        "image": None,
                        "order_id": "10234",
                        "days": 45,
                    }
                ],
            },
            ActionResult(
                slot_updates={"order_id": "10234"},
                responses=[("utter_return_denied", {"order_id": "10234", "days": "45"})],
            ),
            id="response-kwargs-stringified",
        ),
        pytest.param(
            {"events": [{"event": "bot", "text": "from event"}], "responses": [{"text": "hello", "response": None}]},
            ActionResult(texts=["hello", "from event"]),
            id="texts",
        ),
        pytest.param(
            {
                "events": [{"event": "slot", "name": "handoff", "value": True}],
                "responses": [{"response": "utter_handoff"}],
            },
            ActionResult(responses=[("utter_handoff", {})], handoff=True),
            id="handoff-slot",
        ),
        pytest.param(
            {"events": [], "responses": [{"text": "Which size?", "buttons": [
                {"title": "Small", "payload": "/inform{\"size\": \"small\"}"}, {"title": "Other"}, {"payload": "/x"}]}]},
            ActionResult(texts=["Which size?"], buttons=[("Small", '/inform{"size": "small"}'), ("Other", "Other")]),
            id="buttons",
        ),
        pytest.param(
            {"events": [{"event": "reset_slots"}, {"event": "followup", "name": "x"}], "responses": []},
            ActionResult(slot_updates={"order_id": None, "reason": None}),
            id="reset-slots-and-ignored-event",
        ),
    ],
)
def test_parse_action_response(body: dict[str, Any], expected: ActionResult) -> None:
    assert parse_action_response(body, known_slots=["order_id", "reason"]) == expected


@pytest.mark.parametrize(
    "body", [None, [], {"events": {}}, {"responses": ["x"]}, {"events": [{"event": "slot"}]}], ids=repr
)
def test_parse_action_response_rejects_malformed(body: Any) -> None:
    with pytest.raises(ActionError):
        parse_action_response(body)


# ------------------------------------------------------------------------------------------------- shop, in-process

ORDER_STATUS_CASES = [
    pytest.param(
        {"order_id": "20100"},
        (),
        "en",
        ("utter_order_status", {"order_id": "20100", "status": "shipped", "eta": lambda: days(2)}),
        "20100",
        id="shipped-en",
    ),
    pytest.param(
        {"order_id": "20100"},
        (),
        "zh",
        ("utter_order_status", {"order_id": "20100", "status": "已发货", "eta": lambda: days(2)}),
        "20100",
        id="shipped-zh",
    ),
    pytest.param(
        {"order_id": "20001"},
        (),
        "en",
        ("utter_order_status", {"order_id": "20001", "status": "delivered", "eta": lambda: f"delivered on {days(-5)}"}),
        "20001",
        id="delivered-en",
    ),
    pytest.param(
        {"order_id": "20001"},
        (),
        "zh",
        ("utter_order_status", {"order_id": "20001", "status": "已送达", "eta": lambda: f"已于{days(-5)}送达"}),
        "20001",
        id="delivered-zh",
    ),
    pytest.param(
        {"order_id": None},
        (Entity("order_id", "20200", 6, 11),),
        "zh",
        ("utter_order_status", {"order_id": "20200", "status": "处理中", "eta": lambda: days(5)}),
        "20200",
        id="entity-processing-zh",
    ),
    pytest.param(
        {"order_id": "20001"},
        (Entity("order_id", "20300", 6, 11),),
        "en",
        ("utter_order_status", {"order_id": "20300", "status": "cancelled", "eta": "none (the order was cancelled)"}),
        "20300",
        id="fresh-entity-beats-slot",
    ),
    pytest.param(
        {"order_id": "99999"}, (), "en", ("utter_order_not_found", {"order_id": "99999"}), None, id="not-found"
    ),
]


@pytest.mark.parametrize(("slots", "entities", "lang", "response", "slot_after"), ORDER_STATUS_CASES)
async def test_order_status_in_process(
    shop: InProcessActions,
    slots: dict[str, Any],
    entities: tuple[Entity, ...],
    lang: str,
    response: tuple[str, dict[str, Any]],
    slot_after: str | None,
) -> None:
    result = await shop.run("action_order_status", call("action_order_status", slots, entities=entities, language=lang))
    assert result == ActionResult(slot_updates={"order_id": slot_after}, responses=[when_run(response)])


async def test_order_status_asks_for_missing_id(shop: InProcessActions) -> None:
    result = await shop.run("action_order_status", call("action_order_status", {}))
    assert result.responses == [("utter_ask_order_id", {})] and not result.failed


@pytest.mark.parametrize(
    ("order_id", "response"),
    [
        pytest.param("20001", ("utter_return_accepted", {"order_id": "20001", "reason": "wrong size"}), id="5-days"),
        pytest.param("20030", ("utter_return_accepted", {"order_id": "20030", "reason": "wrong size"}), id="30-days"),
        pytest.param("20031", ("utter_return_denied", {"order_id": "20031", "days": "31"}), id="31-days"),
        pytest.param("20045", ("utter_return_denied", {"order_id": "20045", "days": "45"}), id="45-days"),
        pytest.param("20100", ("utter_return_not_delivered", {"order_id": "20100"}), id="shipped"),
        pytest.param("20300", ("utter_return_cancelled", {"order_id": "20300"}), id="cancelled"),
    ],
)
async def test_return_thirty_day_rule(shop: InProcessActions, order_id: str, response: tuple[str, dict]) -> None:
    result = await shop.run("action_return", call("action_return", {"order_id": order_id, "reason": "wrong size"}))
    # the reason is left to the task's reset (dialogue.yml): an action clearing it would read as a refused reason
    assert result == ActionResult(slot_updates={"order_id": order_id}, responses=[response])


@pytest.mark.parametrize(
    ("slots", "response", "updates"),
    [
        pytest.param(
            {"order_id": "88888", "reason": "wrong size"},
            ("utter_order_not_found", {"order_id": "88888"}),
            {"order_id": None, "reason": None},
            id="unknown-order",
        ),
        pytest.param({"order_id": "20001"}, ("utter_ask_reason", {}), {"order_id": "20001"}, id="needs-reason"),
        pytest.param({"reason": "wrong size"}, ("utter_ask_order_id", {}), {}, id="needs-order"),
    ],
)
async def test_return_incomplete(
    shop: InProcessActions, slots: dict[str, Any], response: tuple[str, dict], updates: dict[str, Any]
) -> None:
    result = await shop.run("action_return", call("action_return", slots))
    assert result == ActionResult(slot_updates=updates, responses=[response])


async def test_handoff(shop: InProcessActions) -> None:
    result = await shop.run("action_handoff", call("action_handoff"))
    assert result == ActionResult(responses=[("utter_handoff", {})], handoff=True)


async def test_shop_runner_satisfies_protocol(shop: InProcessActions) -> None:
    assert isinstance(shop, ActionRunner)
    assert shop.action_names == ["action_answer_kb", "action_handoff", "action_order_status", "action_return"]


# ------------------------------------------------------------------------------------------------- shop over HTTP


@pytest.mark.parametrize(("slots", "entities", "lang", "response", "slot_after"), ORDER_STATUS_CASES)
async def test_remote_matches_in_process(
    shop: InProcessActions,
    remote_shop: RemoteActions,
    slots: dict[str, Any],
    entities: tuple[Entity, ...],
    lang: str,
    response: tuple[str, dict[str, Any]],
    slot_after: str | None,
) -> None:
    payload = call("action_order_status", slots, entities=entities, language=lang)
    remote = await remote_shop.run("action_order_status", payload)
    local = await shop.run("action_order_status", payload)
    assert remote == local == ActionResult(slot_updates={"order_id": slot_after}, responses=[when_run(response)])


@pytest.mark.parametrize("action", ["action_return", "action_handoff"])
async def test_remote_matches_in_process_other_actions(
    shop: InProcessActions, remote_shop: RemoteActions, action: str
) -> None:
    payload = call(action, {"order_id": "20045", "reason": "arrived damaged"})
    assert await remote_shop.run(action, payload) == await shop.run(action, payload)


async def test_remote_unknown_action_is_404_fallback(remote_shop: RemoteActions) -> None:
    result = await remote_shop.run("action_does_not_exist", call("action_does_not_exist"))
    assert result == ActionResult(responses=FALLBACK, failed=True, error="unknown_action")


@pytest.mark.parametrize(("action", "error"), [("action_reject", "rejected"), ("action_crash", "server_error")])
async def test_remote_rejection_and_crash(rejecting_server: ActionServer, action: str, error: str) -> None:
    runner = RemoteActions(rejecting_server.url, timeout_s=5.0)
    try:
        assert await runner.run(action, call(action)) == ActionResult(responses=FALLBACK, failed=True, error=error)
    finally:
        await runner.aclose()


@pytest.mark.parametrize(
    ("action", "error"),
    [("action_reject", "rejected"), ("action_crash", "action_error"), ("action_nope", "unknown_action")],
)
async def test_in_process_failures(action: str, error: str) -> None:
    runner = InProcessActions(REJECTING_ACTIONS)
    assert await runner.run(action, call(action)) == ActionResult(responses=FALLBACK, failed=True, error=error)


async def test_in_process_sync_action_runs_in_a_thread() -> None:
    runner = InProcessActions(REJECTING_ACTIONS)
    result = await runner.run("action_sync_echo", call("action_sync_echo", text="echo me"))
    assert result == ActionResult(
        slot_updates={"echoed": True},
        responses=[("utter_echo", {"on_main_thread": "False", "n": "3"})],
        texts=["echo me"],
        handoff=True,
    )


def test_in_process_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ActionError, match="not found"):
        InProcessActions(tmp_path / "missing.py")
    empty = tmp_path / "no_actions.py"
    empty.write_text("X = 1\n")
    with pytest.raises(ActionError, match="no rasa_sdk.Action"):
        InProcessActions(empty)
    broken = tmp_path / "broken_actions.py"
    broken.write_text("import definitely_not_a_module_xyz\n")
    with pytest.raises(ActionError, match="cannot import"):
        InProcessActions(broken)


# ------------------------------------------------------------------------------------------------- HTTP failure paths


@asynccontextmanager
async def fake_server(behaviour: Callable[[], web.Response] | float) -> AsyncIterator[str]:
    """A tiny aiohttp action "server": /webhook sleeps ``behaviour`` seconds, or answers ``behaviour()``."""

    async def webhook(request: web.Request) -> web.StreamResponse:
        await request.json()
        if isinstance(behaviour, float):
            await asyncio.sleep(behaviour)
            return web.json_response({"events": [], "responses": []})
        return behaviour()

    app = web.Application()
    app.router.add_post("/webhook", webhook)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/webhook"
    finally:
        await runner.cleanup()


async def test_slow_server_times_out_with_fallback() -> None:
    async with fake_server(3.0) as url:
        runner = RemoteActions(url, timeout_s=0.5)
        started = time.perf_counter()
        result = await runner.run("action_order_status", call("action_order_status"))
        elapsed = time.perf_counter() - started
        await runner.aclose()
    assert result == ActionResult(responses=FALLBACK, failed=True, error="timeout")
    assert elapsed < 1.5


@pytest.mark.parametrize(
    ("response", "error"),
    [
        pytest.param(lambda: web.json_response({"error": "overloaded"}, status=503), "server_error", id="503"),
        pytest.param(
            lambda: web.json_response({"error": "x", "action_name": "a"}, status=449), "bad_request", id="449"
        ),
        pytest.param(
            lambda: web.Response(text="<html>not json</html>", content_type="text/html"),
            "bad_response",
            id="200-not-json",
        ),
        pytest.param(lambda: web.json_response({"events": "nope"}), "bad_response", id="200-bad-shape"),
    ],
)
async def test_bad_http_answers_fall_back(response: Callable[[], web.Response], error: str) -> None:
    async with fake_server(response) as url:
        runner = RemoteActions(url, timeout_s=2.0)
        result = await runner.run("action_x", call("action_x"))
        await runner.aclose()
    assert result == ActionResult(responses=FALLBACK, failed=True, error=error)


async def test_connection_refused_is_unavailable() -> None:
    runner = RemoteActions(f"http://127.0.0.1:{free_port()}/webhook", timeout_s=2.0)
    started = time.perf_counter()
    result = await runner.run("action_order_status", call("action_order_status"))
    await runner.aclose()
    assert result == ActionResult(responses=FALLBACK, failed=True, error="unavailable")
    assert time.perf_counter() - started < 2.0


async def test_failures_do_not_log_customer_text(caplog: pytest.LogCaptureFixture) -> None:
    secret = "my card number is 4111 and I live at 5 Secret Lane"
    async with fake_server(lambda: web.json_response({"error": secret}, status=500)) as url:
        runner = RemoteActions(url, timeout_s=2.0)
        with caplog.at_level("DEBUG", logger="dialogue.actions"):
            result = await runner.run("action_x", call("action_x", text=secret))
            local = await InProcessActions(REJECTING_ACTIONS).run("action_crash", call("action_crash", text=secret))
        await runner.aclose()
    assert result.error == "server_error" and local.error == "action_error"
    assert caplog.records and all("Secret" not in r.getMessage() for r in caplog.records)


def test_action_runner_from_bot_config(bot_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEFU_BOT_DIR", str(bot_dir))
    remote = action_runner(SHOP_DIR, actions="actions.py", action_endpoint="http://127.0.0.1:5055/webhook")
    assert isinstance(remote, RemoteActions)
    local = action_runner(SHOP_DIR, actions="actions.py")
    assert isinstance(local, InProcessActions) and "action_return" in local.action_names
    with pytest.raises(ActionError):
        action_runner(SHOP_DIR)
    with pytest.raises(ActionError):
        RemoteActions("127.0.0.1:5055/webhook")


# ------------------------------------------------------------------------------------------------- shopdb


@pytest.fixture
def shopdb(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(SHOP_DIR))
    import shopdb

    return shopdb


def test_shopdb_materialises_real_dates(shopdb: Any, tmp_path: Path) -> None:
    db = tmp_path / "models" / "orders.sqlite"
    assert shopdb.materialise_orders(ORDERS_FIXTURE, db, today=dt.date(2026, 11, 20)) == 7
    order = shopdb.lookup_order(db, " #20001 ")
    assert order is not None
    assert order["ordered_at"] == dt.date(2026, 11, 8) and order["delivered_at"] == dt.date(2026, 11, 15)
    assert order["eta"] is None and order["items"] == ["wireless headphones"] and order["carrier"] == "SF Express"
    shipped = shopdb.lookup_order(db, "20100")
    assert shipped is not None and shipped["eta"] == dt.date(2026, 11, 22) and shipped["delivered_at"] is None
    assert shopdb.lookup_order(db, "00000") is None

    # ensure_orders_db rebuilds for a new day and for an edited file, not otherwise
    src = tmp_path / "orders.yml"
    shutil.copy(ORDERS_FIXTURE, src)
    shopdb.ensure_orders_db(src, db, today=dt.date(2026, 11, 20))
    mtime = db.stat().st_mtime_ns
    shopdb.ensure_orders_db(src, db, today=dt.date(2026, 11, 20))
    assert db.stat().st_mtime_ns == mtime
    shopdb.ensure_orders_db(src, db, today=dt.date(2026, 11, 21))
    again = shopdb.lookup_order(db, "20001")
    assert again is not None and again["delivered_at"] == dt.date(2026, 11, 16)
    src.write_text(src.read_text().replace('"20001"', '"20002"'))
    shopdb.ensure_orders_db(src, db, today=dt.date(2026, 11, 21))
    assert shopdb.lookup_order(db, "20001") is None and shopdb.lookup_order(db, "20002") is not None


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("orders: {}", "'orders' list"),
        ('orders: [{order_id: "1", status: lost, ordered_days_ago: 1}]', "status must be"),
        ('orders: [{order_id: "1", status: delivered, ordered_days_ago: 1}]', "delivered_days_ago"),
        ('orders: [{order_id: "1", status: shipped}]', "ordered_days_ago is required"),
    ],
)
def test_shopdb_rejects_bad_orders(shopdb: Any, tmp_path: Path, text: str, match: str) -> None:
    src = tmp_path / "orders.yml"
    src.write_text(text)
    with pytest.raises(shopdb.OrdersFileError, match=match):
        shopdb.materialise_orders(src, tmp_path / "o.sqlite")


def test_example_orders_file_materialises(shopdb: Any, tmp_path: Path) -> None:
    orders_yml, _ = shopdb.bot_paths(SHOP_DIR)
    assert shopdb.materialise_orders(orders_yml, tmp_path / "orders.sqlite") >= 10


# ------------------------------------------------------------------------------------------------- knowledge base


@pytest.mark.slow
@pytest.mark.parametrize(
    ("text", "lang", "response"),
    [
        pytest.param(
            "How long does delivery take?",
            "en",
            ("utter_kb_answer", {"answer": "Standard delivery takes 3-5 business days."}),
            id="en",
        ),
        pytest.param("运费是多少", "zh", ("utter_kb_answer", {"answer": "全场满99元包邮，不满99元运费8元。"}), id="zh"),
        pytest.param("What is the capital of France?", "en", ("utter_fallback", {}), id="off-topic"),
        pytest.param("", "en", ("utter_fallback", {}), id="empty"),
    ],
)
async def test_answer_kb_in_process(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    lang: str,
    response: tuple[str, dict[str, str]],
) -> None:
    kb_bot = tmp_path_factory.getbasetemp() / "kbbot"
    if not kb_bot.exists():
        (kb_bot / "data").mkdir(parents=True)
        shutil.copy(DATA / "actions_kb.yml", kb_bot / "data" / "kb.yml")
    monkeypatch.setenv("KEFU_BOT_DIR", str(kb_bot))
    monkeypatch.delenv("KEFU_KB_THRESHOLD", raising=False)
    result = await InProcessActions(SHOP_ACTIONS).run(
        "action_answer_kb", call("action_answer_kb", text=text, language=lang)
    )
    assert result == ActionResult(responses=[response])
    assert (kb_bot / "models" / "kb" / "kb.safetensors").exists() or not text
