"""Review tools: corrected examples land in the bot's nlu.yml (which must still load), conversations export to
scenarios that replay."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from dialogue import types as ev
from dialogue.errors import ReviewError
from dialogue.review import add_training_example, annotate, export_scenario
from dialogue.scenarios import Scenario, run_scenario
from nlu.data import read_rasa_nlu
from nlu.types import Entity

ROOT = Path(__file__).resolve().parents[2]
SHOP_DATA = ROOT / "examples" / "shop" / "data"


def mid() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def nlu_file(tmp_path: Path) -> Path:
    path = tmp_path / "nlu.yml"
    shutil.copy(SHOP_DATA / "nlu.yml", path)
    return path


def _examples(path: Path) -> list[tuple[str, str, list[tuple[str, str, int, int]]]]:
    return [(e.text, e.intent, [(x.entity, x.value, x.start, x.end) for x in e.entities]) for e in read_rasa_nlu(path)]


# ---------------------------------------------------------------- annotate


@pytest.mark.parametrize(
    ("text", "entities", "line"),
    [
        ("where is 10234", [{"entity": "order_id", "value": "10234", "start": 9, "end": 14}],
         "where is [10234](order_id)"),
        ("pay with paypal", [Entity("payment_method", "PayPal", 9, 15)], "pay with [paypal](payment_method:PayPal)"),
        ("size (M) wrong", [{"entity": "reason", "value": "wrong size (M)", "start": 9, "end": 14}],
         'size (M) [wrong]{"entity": "reason", "value": "wrong size (M)"}'),
        ("  two\nlines\t", [{"entity": "x", "value": "lines", "start": 6, "end": 11}], "two [lines](x)"),
        ("订单10234到哪了", [{"entity": "order_id", "value": "10234", "start": 2, "end": 7}], "订单[10234](order_id)到哪了"),
        ("my mail is [EMAIL]", [], "my mail is [EMAIL]"),
    ],
)
def test_annotate_writes_lines_that_read_back_exactly(text: str, entities: list[Any], line: str) -> None:
    assert annotate(text, entities) == line


@pytest.mark.parametrize(
    ("text", "entities"),
    [
        ("see [this](link) now", []),  # would be read as an annotation: Rasa has no escaping
        ("abc", [{"entity": "x", "value": "a", "start": 0, "end": 5}]),  # outside the text
        ("abcdef", [{"entity": "x", "value": "a", "start": 0, "end": 3}, {"entity": "y", "value": "b", "start": 2,
                                                                          "end": 4}]),  # overlap
        ("abc", [{"entity": "bad name", "value": "a", "start": 0, "end": 1}]),
        ("a b", [{"entity": "x", "value": "a", "start": 0, "end": 2}]),  # span ends in a space
        ("   ", []),
        ("abc", [{"entity": "x"}]),
    ],
)
def test_annotate_refuses_what_would_not_read_back(text: str, entities: list[Any]) -> None:
    with pytest.raises(ReviewError):
        annotate(text, entities)


# ---------------------------------------------------------------- add_training_example


def test_correction_goes_into_the_intents_block_and_the_file_still_loads(nlu_file: Path) -> None:
    original = nlu_file.read_text(encoding="utf-8")
    before = _examples(nlu_file)
    result = add_training_example(
        nlu_file, "hey, my parcel 55512 never came", "order_status",
        [{"entity": "order_id", "value": "55512", "start": 15, "end": 20}],
    )
    assert result.added and result.line == "hey, my parcel [55512](order_id) never came" and result.conflicts == ()
    after = _examples(nlu_file)
    assert len(after) == len(before) + 1
    new = ("hey, my parcel 55512 never came", "order_status", [("order_id", "55512", 15, 20)])
    assert new in after
    # Inserted right after the block's last example, with its indentation; nothing else changed.
    old_lines, new_lines = original.splitlines(), nlu_file.read_text(encoding="utf-8").splitlines()
    at = new_lines.index("    - hey, my parcel [55512](order_id) never came")
    assert new_lines[:at] + new_lines[at + 1:] == old_lines
    assert new_lines[at + 2] == "- intent: return_request"  # then the blank line, then the next block
    assert [x for x in after if x[1] == "order_status"][-1] == new

    again = add_training_example(nlu_file, "hey, my parcel 55512 never came", "order_status",
                                 [Entity("order_id", "55512", 15, 20)])
    assert not again.added and _examples(nlu_file) == after


def test_a_new_intent_gets_its_own_block_and_synonyms_still_apply(nlu_file: Path) -> None:
    result = add_training_example(nlu_file, "can I pay with visa in installments", "installments",
                                  [{"entity": "payment_method", "value": "visa", "start": 15, "end": 19}])
    assert result.added
    examples = read_rasa_nlu(nlu_file)
    new = [e for e in examples if e.intent == "installments"]
    assert len(new) == 1 and new[0].entities[0].value == "credit card"  # the file's synonym block applies
    text = nlu_file.read_text(encoding="utf-8")
    assert text.rstrip().endswith("- intent: installments\n  examples: |\n    - can I pay with [visa](payment_method)"
                                  " in installments")
    assert "- synonym: PayPal" in text  # other blocks kept


def test_conflicting_labels_are_reported(nlu_file: Path) -> None:
    result = add_training_example(nlu_file, "tell me a joke", "greet")
    assert result.added and result.conflicts == ("out_of_scope",)


def test_comments_crlf_and_list_style_files_keep_their_shape(tmp_path: Path) -> None:
    path = tmp_path / "custom.yml"
    content = (
        "# bot training data\r\nversion: \"3.1\"\r\nnlu:\r\n  - intent: greet   # small talk\r\n"
        "    examples: |\r\n      - hi\r\n      - hello\r\n\r\n  # the next one is a list\r\n"
        "  - intent: bye\r\n    examples:\r\n      - \"bye\"\r\n      - see you\r\n"
    )
    path.write_bytes(content.encode("utf-8"))
    add_training_example(path, "good morning!", "greet")
    add_training_example(path, "ciao: later", "bye")
    add_training_example(path, "thanks a lot", "thanks")
    raw = path.read_bytes().decode("utf-8")
    assert raw.count("\r\n") == raw.count("\n")  # line endings kept
    assert "# bot training data" in raw and "# small talk" in raw and "# the next one is a list" in raw
    assert "      - good morning!\r\n" in raw and '      - "ciao: later"\r\n' in raw
    assert "\r\n  - intent: thanks\r\n    examples: |\r\n      - thanks a lot\r\n" in raw
    examples = {(e.text, e.intent) for e in read_rasa_nlu(path)}
    assert {("good morning!", "greet"), ("ciao: later", "bye"), ("thanks a lot", "thanks"), ("hi", "greet")} <= examples


def test_an_empty_or_missing_file_gets_a_valid_document(tmp_path: Path) -> None:
    path = tmp_path / "new" / "nlu.yml"
    add_training_example(path, "hola", "greet")
    assert [(e.text, e.intent) for e in read_rasa_nlu(path)] == [("hola", "greet")]


def test_chinese_training_file(tmp_path: Path) -> None:
    path = tmp_path / "nlu_zh.yml"
    shutil.copy(SHOP_DATA / "nlu_zh.yml", path)
    n = len(read_rasa_nlu(path))
    add_training_example(path, "我的包裹88888还没到", "order_status",
                         [{"entity": "order_id", "value": "88888", "start": 4, "end": 9}])
    examples = read_rasa_nlu(path)
    assert len(examples) == n + 1
    assert any(e.text == "我的包裹88888还没到" and e.entities[0].value == "88888" for e in examples)


def test_refused_corrections_leave_the_file_untouched(nlu_file: Path, tmp_path: Path) -> None:
    original = nlu_file.read_bytes()
    for text, intent in [("see [x](y) here", "greet"), ("hello", "bad intent"), ("hello", "")]:
        with pytest.raises(ReviewError):
            add_training_example(nlu_file, text, intent)
    assert nlu_file.read_bytes() == original
    broken = tmp_path / "broken.yml"
    broken.write_text("nlu:\n- intent: greet\n  examples: |\n    no dash here\n", encoding="utf-8")
    with pytest.raises(ReviewError):
        add_training_example(broken, "hi", "greet")
    assert broken.read_text(encoding="utf-8").endswith("no dash here\n")
    assert not list(tmp_path.glob(".*.tmp"))  # no temp files left behind


# ---------------------------------------------------------------- export_scenario


def _event(seq: int, turn: int, type_: str, data: dict[str, Any]) -> ev.Event:
    import datetime as dt

    return ev.Event("c1", seq, turn, type_, data, dt.datetime.now(dt.UTC))


def test_export_applies_corrections_and_stops_at_the_take_over() -> None:
    events = [
        _event(1, 1, ev.USER_MESSAGE, {"text": "hi"}),
        _event(2, 1, ev.NLU_PARSE, {"intent": "greet", "confidence": 0.9, "language": "en"}),
        _event(3, 1, ev.ACTION, {"name": "utter_greet"}),
        _event(4, 1, ev.BOT_MESSAGE, {"text": "Hello!"}),
        _event(5, 2, ev.USER_MESSAGE, {"text": "it's 10234"}),
        _event(6, 2, ev.NLU_PARSE, {"intent": "greet", "confidence": 0.4}),
        _event(7, 2, ev.SLOT_SET, {"slot": "order_id", "value": 10234}),
        _event(8, 2, ev.ACTION, {"name": "utter_fallback"}),
        _event(9, 2, ev.TAKEOVER, {"agent": "ann"}),
        _event(10, 3, ev.USER_MESSAGE, {"text": "hello?"}),
        _event(11, 3, ev.NLU_PARSE, {"intent": "greet", "confidence": 0.9}),
        _event(12, 3, ev.CORRECTION, {"by": "rita", "seq": 5, "text": "it's 10234", "intent": "inform",
                                      "entities": []}),
    ]
    doc = yaml.safe_load(export_scenario(events, "exported"))
    assert doc == {"name": "exported", "language": "en", "turns": [
        {"user": "hi", "intent": "greet", "action": "utter_greet"},
        {"user": "it's 10234", "intent": "inform"},
    ]}
    with pytest.raises(ReviewError):
        export_scenario(events[8:], "nothing")


async def test_export_then_replay_passes(shop: Any, tmp_path: Path) -> None:
    engine = shop.engine
    cid = None
    for text in ("hi there, hope you can help", "where is my order? it still hasn't arrived", "yeah it's 12873",
                 "thanks a lot!"):
        reply = await engine.handle_message(cid, mid(), text)
        cid = reply.conversation_id
    events = await engine.conversation_events(cid)
    path = tmp_path / "exported.yml"
    path.write_text(export_scenario(events, "exported order status"), encoding="utf-8")

    scenario = Scenario.load(path)
    assert [t.user for t in scenario.turns][1] == "where is my order? it still hasn't arrived"
    assert scenario.turns[2].slots == {"order_id": "12873"} and scenario.turns[2].action == "action_order_status"
    result = await run_scenario(engine, scenario)
    assert result.passed, result.describe()

    # A reviewer's correction is expected on replay: the bot still says "inform", so the scenario now fails.
    user_seq = next(e.seq for e in events if e.type == ev.USER_MESSAGE and e.data["text"] == "yeah it's 12873")
    await engine.correct(cid, by="rita", seq=user_seq, text="yeah it's 12873", intent="order_status", entities=[])
    corrected = tmp_path / "corrected.yml"
    corrected.write_text(export_scenario(await engine.conversation_events(cid), "corrected"), encoding="utf-8")
    failed = await run_scenario(engine, Scenario.load(corrected))
    assert not failed.passed and "intent: expected 'order_status'" in failed.describe()
