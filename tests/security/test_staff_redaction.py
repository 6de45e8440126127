"""Security issue 19: staff text is redacted like customer text before it is stored or written to a training file.

End to end through the ops console (a real aiohttp server, httpx, a SQLite store, copies of the shop's nlu files),
and at the engine/store level on both SQLite and PostgreSQL (the ``store`` fixture)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from channels import auth
from channels.ops import OpsOptions, run_ops_server
from dialogue.review import add_training_example, redact_example
from dialogue.store import ConversationStore
from nlu.data import read_rasa_nlu
from tests.channels.conftest import ConsoleEnv, console_env, light_engine  # noqa: F401 - console_env: a fixture
from tests.channels.test_ops import Staff, as_role

CARD, EMAIL, PHONE = "4111 1111 1111 1111", "jane.doe@example.com", "+86 138 1234 5678"
RAW = (CARD.replace(" ", ""), CARD, EMAIL, "13812345678", "138 1234 5678", "1234 5678")


def _assert_clean(blob: str) -> None:
    for value in RAW:
        assert value not in blob, value


@pytest_asyncio.fixture(loop_scope="session")
async def staff(console_env: ConsoleEnv) -> AsyncIterator[Staff]:  # noqa: F811 - the imported fixture
    options = OpsOptions(login_limit=auth.RateLimit(max_failures=5, window=300), plot_cache_seconds=0)
    async with run_ops_server(console_env.console, port=0, options=options) as server:
        client = await as_role(server, "agent")
        try:
            yield client
        finally:
            await client.aclose()


async def _all_events(env: ConsoleEnv, cid: str) -> str:
    return repr([(e.type, e.data) for e in await env.store.events(cid)])


async def test_a_correction_with_a_card_and_an_email_reaches_neither_the_store_nor_nlu_yml(
    staff: Staff,
    console_env: ConsoleEnv,  # noqa: F811
) -> None:
    cid = await console_env.chat("my parcel 10234 never came")
    events = (await staff.get(f"/api/conversations/{cid}")).json()["events"]
    seq = next(e["seq"] for e in events if e["type"] == "user_message")
    text = f"paid with {CARD}, mail {EMAIL}, where is order 10234"
    order = text.index("10234")
    body = {
        "seq": seq,
        "intent": "order_status",
        "text": text,
        "entities": [
            {"entity": "payment_method", "start": text.index(CARD), "end": text.index(CARD) + len(CARD)},
            {"entity": "order_id", "start": order, "end": order + 5},
        ],
    }
    res = await staff.post(f"/api/conversations/{cid}/correct", body)
    assert res.status_code == 200, res.text
    _assert_clean(res.text)
    data = res.json()["event"]["data"]
    assert data["text"] == "paid with [CARD], mail [EMAIL], where is order 10234"
    # the entity on the card is gone (a placeholder is never an entity value); the order id moved with the text
    assert data["entities"] == [
        {"entity": "order_id", "value": "10234", "start": data["text"].index("10234"), "end": len(data["text"])}
    ]
    nlu = console_env.nlu_files["en"].read_text(encoding="utf-8")
    _assert_clean(nlu)
    assert "- paid with [CARD], mail [EMAIL], where is order [10234](order_id)" in nlu
    read = [e for e in read_rasa_nlu(console_env.nlu_files["en"]) if e.text == data["text"]]
    assert [(e.intent, [(x.entity, x.value) for x in e.entities]) for e in read] == [
        ("order_status", [("order_id", "10234")])
    ]
    _assert_clean(await _all_events(console_env, cid))


async def test_agent_replies_are_stored_and_pushed_redacted(
    staff: Staff,
    console_env: ConsoleEnv,  # noqa: F811
) -> None:
    cid = await console_env.chat("I want to complain")
    assert (await staff.post(f"/api/conversations/{cid}/takeover")).status_code == 200
    before = (await console_env.store.events(cid))[-1].seq
    text = f"Hi! Is your number {PHONE} and your email {EMAIL}?\nYour card {CARD} was refunded."
    res = await staff.post(f"/api/conversations/{cid}/message", {"text": text, "message_id": "agent-pii-1"})
    assert res.status_code == 200, res.text
    stored = "Hi! Is your number [PHONE] and your email [EMAIL]?\nYour card [CARD] was refunded."
    assert res.json()["event"]["data"]["text"] == stored  # line breaks and wording kept
    again = await staff.post(f"/api/conversations/{cid}/message", {"text": text, "message_id": "agent-pii-1"})
    assert again.json()["event"]["seq"] == res.json()["event"]["seq"]  # a retry is still idempotent
    pushed = await console_env.engine.events_after(cid, before)  # what the widget pushes and replays on resume
    assert [e.data["text"] for e in pushed if e.type == "agent_message"] == [stored]
    _assert_clean(await _all_events(console_env, cid))


async def test_tags_are_redacted_and_filtered_alike(staff: Staff, console_env: ConsoleEnv) -> None:  # noqa: F811
    cid = await console_env.chat("hello")
    res = await staff.post(f"/api/conversations/{cid}/review", {"add_tags": ["13812345678", EMAIL, "refund"]})
    assert res.status_code == 200, res.text
    assert res.json()["conversation"]["tags"] == ["[PHONE]", "[EMAIL]", "refund"]
    listed = (await staff.get("/api/conversations", params={"tag": "13812345678"})).json()["items"]
    assert [c["id"] for c in listed] == [cid]
    res = await staff.post(f"/api/conversations/{cid}/review", {"remove_tags": ["138-1234-5678"]})
    assert res.json()["conversation"]["tags"] == ["[EMAIL]", "refund"]
    _assert_clean(await _all_events(console_env, cid))


async def test_engine_correct_redacts_on_every_store(store: ConversationStore) -> None:
    engine = light_engine(store)
    reply = await engine.handle_message(None, "m1", "where is my order 10234")
    cid = reply.conversation_id
    seq = next(e.seq for e in await store.events(cid) if e.type == "user_message")
    text = f"我的卡号{CARD.replace(' ', '')}，订单10234"
    start = text.index("10234")
    event = await engine.correct(
        cid,
        by="agent",
        seq=seq,
        text=text,
        intent="order_status",
        entities=[{"entity": "order_id", "value": "10234", "start": start, "end": start + 5}],
    )
    assert event.data["text"] == "我的卡号[CARD]，订单10234"
    assert event.data["entities"] == [{"entity": "order_id", "value": "10234", "start": 13, "end": 18}]
    _assert_clean(repr([(e.type, e.data) for e in await store.events(cid)]))


@pytest.mark.parametrize(
    ("text", "entities", "expected_text", "expected_entities"),
    [
        ("no pii, order 10234", [("order_id", 14, 19)], "no pii, order 10234", [("order_id", "10234", 14, 19)]),
        # two redactions before the entity: offsets move by the length differences
        (
            f"{EMAIL} {CARD} order 10234",
            [("order_id", 47, 52)],
            "[EMAIL] [CARD] order 10234",
            [("order_id", "10234", 21, 26)],
        ),
        # an entity on, or overlapping, personal data is dropped; one before it keeps its offsets
        (
            f"10234 call {PHONE}",
            [("order_id", 0, 5), ("product", 6, 21)],
            "10234 call [PHONE]",
            [("order_id", "10234", 0, 5)],
        ),
    ],
)
def test_redact_example_moves_and_drops_entities(
    text: str,
    entities: list[tuple[str, int, int]],
    expected_text: str,
    expected_entities: list[tuple[str, str, int, int]],
) -> None:
    given = [{"entity": n, "value": text[s:e], "start": s, "end": e} for n, s, e in entities]
    redacted, moved = redact_example(text, given)
    assert redacted == expected_text
    assert [(e["entity"], e["value"], e["start"], e["end"]) for e in moved] == expected_entities
    assert all(redacted[e["start"] : e["end"]] == e["value"] for e in moved)
    assert redact_example(redacted, moved) == (redacted, moved)  # redacting twice changes nothing


def test_add_training_example_redacts_for_every_caller(tmp_path: Any) -> None:
    path = tmp_path / "nlu.yml"
    path.write_text(
        'version: "3.1"\nnlu:\n- intent: payment_question\n  examples: |\n    - can I pay by card\n', encoding="utf-8"
    )
    text = f"charged twice card 6222 0212 3456 7890 127 ({EMAIL})"
    entity = {"entity": "payment_method", "value": "card", "start": 14, "end": 18}
    result = add_training_example(path, text, "payment_question", [entity])
    assert result.added and result.line == "charged twice [card](payment_method) [CARD] ([EMAIL])"
    _assert_clean(path.read_text(encoding="utf-8"))
    assert "6222" not in path.read_text(encoding="utf-8")
