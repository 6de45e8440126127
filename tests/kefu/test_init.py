"""`kefu init`: the bot it writes is a real one (its dialogue compiles against its domain and actions, its NLU data
and scenarios load, its actions work) in the languages asked for, and an existing bot is never overwritten."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from dialogue.actions import InProcessActions, build_action_call
from dialogue.definition import HANDOFF_STATE, IDLE, definition_of
from dialogue.scenarios import Scenario, discover
from kefu.app import bot_dialogue
from kefu.cli import app
from kefu.config import Bot
from kefu.scaffold import NAME, ScaffoldError, plan, read_template, render, scaffold
from nlu.data import load_examples
from nlu.patterns import Pattern
from nlu.types import Entity, Parse

runner = CliRunner()
LANGUAGE_SETS = [("en",), ("zh",), ("en", "zh")]
MIN_EXAMPLES = 15  # per intent and language: what a first NLU model needs to parse the scenarios


@pytest.fixture(params=LANGUAGE_SETS, ids=lambda langs: "+".join(langs))
def new_bot(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, tuple[str, ...]]:
    languages: tuple[str, ...] = request.param
    root = tmp_path / "acme-help"
    result = runner.invoke(app, ["init", str(root), *(x for lang in languages for x in ("--language", lang))])
    assert result.exit_code == 0, result.output
    return root, languages


def test_dialogue_compiles_against_its_domain_and_actions(new_bot: tuple[Path, tuple[str, ...]]) -> None:
    root, _ = new_bot
    bot = Bot.load(root)
    actions = InProcessActions(root / "actions.py")
    domain, flows = bot_dialogue(bot, actions.action_names)  # raises DefinitionError on any unknown name
    definition = definition_of(flows)
    assert definition is not None
    assert [t.name for t in definition.tasks] == ["order_status"]
    assert definition.handoff is not None and definition.knowledge is not None and definition.small_talk
    assert {IDLE, HANDOFF_STATE} < set(flows.states)
    assert set(flows.actions) - set(domain.responses) <= set(actions.action_names)
    assert bot.config.knowledge_action in actions.action_names


def test_only_the_chosen_languages_are_written(new_bot: tuple[Path, tuple[str, ...]]) -> None:
    root, languages = new_bot
    config = Bot.load(root).config
    assert tuple(config.languages) == languages
    assert all(Path(root, p).is_file() for p in config.nlu_data)
    assert (root / "data" / "nlu.yml").exists() == ("en" in languages)
    assert (root / "data" / "nlu_zh.yml").exists() == ("zh" in languages)
    domain = yaml.safe_load((root / "domain.yml").read_text(encoding="utf-8"))
    for name, variants in domain["responses"].items():
        assert {v["language"] for v in variants} == set(languages), name
    kb = yaml.safe_load((root / "data" / "kb.yml").read_text(encoding="utf-8"))
    assert {e["language"] for e in kb["entries"]} == set(languages)
    written = [p for p in root.rglob("*") if p.is_file()]
    assert not [p for p in written if NAME in p.read_text(encoding="utf-8") or "#%%" in p.read_text(encoding="utf-8")]
    assert (root / ".gitignore").is_file() and "models/" in (root / ".gitignore").read_text(encoding="utf-8")
    assert config.name == "acme-help"


def test_nlu_data_loads_and_covers_every_intent(new_bot: tuple[Path, tuple[str, ...]]) -> None:
    root, _ = new_bot
    bot = Bot.load(root)
    domain_intents = set(yaml.safe_load((root / "domain.yml").read_text(encoding="utf-8"))["intents"])
    for path in bot.nlu_files:
        patterns: list[Pattern] = []
        examples = load_examples(path, patterns_out=patterns)
        counts = Counter(e.intent for e in examples)
        assert set(counts) == domain_intents, path.name
        assert min(counts.values()) >= MIN_EXAMPLES, (path.name, counts)
        tagged = [e for e in examples if any(tag.endswith("order_id") for tag in e.tags)]
        assert {e.intent for e in tagged} == {"inform", "order_status"}
        assert [p.name for p in patterns] == ["order_id"]
        assert len({e.text for e in examples}) == len(examples), f"{path.name} repeats an example"


def test_scenarios_load_and_use_the_bots_names(new_bot: tuple[Path, tuple[str, ...]]) -> None:
    root, languages = new_bot
    bot = Bot.load(root)
    domain, flows = bot_dialogue(bot, InProcessActions(root / "actions.py").action_names)
    scenarios = [Scenario.load(p) for p in discover([root / "scenarios"])]
    per_language = Counter(s.language for s in scenarios)
    assert set(per_language) == set(languages)
    assert all(2 <= n <= 3 for n in per_language.values())
    for scenario in scenarios:
        assert scenario.path.name.startswith(f"{scenario.language}_")
        for turn in scenario.turns:
            assert turn.intent is None or turn.intent in domain.intents, (scenario.name, turn.intent)
            assert turn.action is None or turn.action in flows.actions, (scenario.name, turn.action)
            assert set(turn.slots) <= set(domain.slots)
    said = {t.action for s in scenarios for t in s.turns}
    assert {"action_order_status", "utter_ask_order_id", "action_answer_kb", "action_handoff",
            "utter_fallback"} <= said  # the task, knowledge, hand-off and the fallback are each shown once


@pytest.mark.parametrize(("language", "order_id", "response", "status", "slot"), [
    ("en", "10002", "utter_order_status", "on its way", "10002"),
    ("zh", "10003", "utter_order_status", "已送达", "10003"),
    ("en", "99999", "utter_order_not_found", None, None),
])
def test_the_order_action_reads_the_data_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, language: str,
                                              order_id: str, response: str, status: str | None,
                                              slot: str | None) -> None:
    root = tmp_path / "bot"
    scaffold(root, languages=("en", "zh"))
    monkeypatch.setenv("KEFU_BOT_DIR", str(root))
    text = f"where is order {order_id}"
    parse = Parse(text, "order_status", 0.9, (Entity("order_id", order_id, 15, 20),), (), language)
    payload = build_action_call("action_order_status", "c1", {}, text, parse, [], {"intents": ["order_status"]},
                                language=language)
    result = asyncio.run(InProcessActions(root / "actions.py").run("action_order_status", payload))
    assert not result.failed, result.error
    assert [name for name, _ in result.responses] == [response]
    assert result.responses[0][1].get("status") == status
    assert result.slot_updates.get("order_id") == slot


@pytest.fixture(scope="module")
def knowledge(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, float]:
    """The knowledge base of a new en+zh bot (loaded once: it encodes the questions with MiniLM) and its threshold."""
    from dialogue.knowledge import KnowledgeBase  # loads torch: only here

    root = tmp_path_factory.mktemp("kb") / "bot"
    scaffold(root, languages=("en", "zh"))
    return KnowledgeBase.load(root / "data" / "kb.yml", root / "models" / "kb"), Bot.load(root).config.knowledge_threshold


@pytest.mark.parametrize(("language", "question", "entry"), [
    ("en", "how long will the delivery take?", "shipping_en"),
    ("en", "can I send it back for a refund?", "returns_en"),
    ("zh", "可以用微信付款吗", "payment_zh"),
    ("zh", "人工客服几点下班", "contact_zh"),
])
def test_the_knowledge_base_answers(knowledge: tuple[Any, float], language: str, question: str, entry: str) -> None:
    kb, threshold = knowledge
    hits = kb.search(question, language, k=1)
    assert hits and hits[0].entry_id == entry and hits[0].score >= threshold


def test_the_handoff_action_asks_for_a_colleague(tmp_path: Path) -> None:
    scaffold(tmp_path / "bot")
    payload = build_action_call("action_handoff", "c1", {}, None, None, [], {})
    result = asyncio.run(InProcessActions(tmp_path / "bot" / "actions.py").run("action_handoff", payload))
    assert result.handoff and [name for name, _ in result.responses] == ["utter_handoff"]


def test_a_non_empty_folder_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    result = runner.invoke(app, ["init", str(tmp_path)])
    assert result.exit_code == 2
    assert "not empty" in result.output and "Traceback" not in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_an_empty_existing_folder_is_used(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", str(tmp_path), "--name", "Help Desk"])
    assert result.exit_code == 0, result.output
    assert Bot.load(tmp_path).config.name == "Help Desk"
    assert "Help Desk" in (tmp_path / "domain.yml").read_text(encoding="utf-8")


@pytest.mark.parametrize(("args", "message"), [
    (["--language", "fr"], "unknown language 'fr'"),
    (["--name", "bad\"name"], "bad bot name"),
])
def test_bad_options_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["init", str(tmp_path / "bot"), *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "bot").exists()


# -- the template language ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("languages", "expected"), [
    (("en",), "a\nb\nd\n"),
    (("zh",), "a\nc\nd\n"),
    (("en", "zh"), "a\nb\nc\nd\n"),
])
def test_language_blocks(languages: tuple[str, ...], expected: str) -> None:
    assert render("a\n#%% en\nb\n#%% end\n#%% zh\nc\n#%% end\nd\n", languages) == expected


def test_a_file_for_one_language_only() -> None:
    assert render("#%% only: zh\nx\n", ("en",)) is None
    assert render("#%% only: zh\nx\n", ("en", "zh")) == "x\n"


@pytest.mark.parametrize("text", ["#%% zh\nx\n", "#%% fr\nx\n#%% end\n", "#%% end\n"])
def test_broken_markers_are_refused(text: str) -> None:
    with pytest.raises(ScaffoldError):
        render(text, ("en",))


def test_the_template_ships_every_file_a_bot_needs() -> None:
    files = plan(read_template(), "x", ("en", "zh"))
    assert {"bot.yml", "domain.yml", "dialogue.yml", "actions.py", "README.md", "data/nlu.yml", "data/nlu_zh.yml",
            "data/kb.yml", "data/orders.yml"} <= set(files)
    assert yaml.safe_load(files["bot.yml"])["nlu_data"] == ["data/nlu.yml", "data/nlu_zh.yml"]


def test_kefu_train_refuses_a_broken_dialogue_before_training_anything(tmp_path: Path) -> None:
    from dialogue.definition import DefinitionError
    from kefu.app import train_bot

    bot = tmp_path / "bot"
    scaffold(bot)
    dialogue = bot / "dialogue.yml"
    dialogue.write_text(dialogue.read_text(encoding="utf-8").replace("fallback: utter_fallback",
                                                                     "fallback: utter_falback"), encoding="utf-8")
    with pytest.raises(DefinitionError, match="did you mean 'utter_fallback'"):
        train_bot(bot)
    assert not (bot / "models").exists()  # refused before minutes of training
