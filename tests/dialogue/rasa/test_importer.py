"""`kefu import rasa` on small projects written here: the bot folder it writes, what it lists, and the CLI around it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dialogue.rasa.importer import REPORT, import_project

DOMAIN = """
version: "3.1"
intents:
  - greet
  - request_size
  - inform
  - bot_challenge
  - faq
entities:
  - size
slots:
  size:
    type: categorical
    values: [small, large]
    mappings:
      - type: from_entity
        entity: size
        conditions:
          - active_loop: size_form
forms:
  size_form:
    required_slots: [size]
responses:
  utter_greet:
    - text: Hi!
    - text: Hello!
  utter_ask_size:
    - text: Which size?
      buttons:
        - {title: Small, payload: '/inform{"size": "small"}'}
        - {title: Large, payload: '/inform{"size": "large"}'}
  utter_done:
    - text: "Noted: {size}."
  utter_iamabot:
    - text: I am a bot.
    - image: https://example.com/bot.png
  utter_faq/ask_hours:
    - text: We open at nine.
  utter_default:
    - text: Sorry?
actions:
  - action_custom
"""
CONFIG = """
language: en
pipeline:
  - name: WhitespaceTokenizer
  - name: DucklingEntityExtractor
    url: http://localhost:8000
  - name: DIETClassifier
  - name: FallbackClassifier
    threshold: 0.4
policies:
  - name: MemoizationPolicy
    max_history: 4
  - name: RulePolicy
"""
NLU = """
version: "3.1"
nlu:
  - intent: greet
    examples: |
      - hi
      - hello
  - intent: request_size
    examples: |
      - i want a shirt
  - intent: inform
    examples: |
      - [small](size)
      - [large](size) please
  - intent: faq/ask_hours
    examples: |
      - when do you open
  - synonym: large
    examples: |
      - big
"""
RULES = """
version: "3.1"
rules:
  - rule: greet
    steps:
      - intent: greet
      - action: utter_greet
  - rule: faq
    steps:
      - intent: faq
      - action: utter_faq
  - rule: start form
    steps:
      - intent: request_size
      - action: size_form
      - active_loop: size_form
  - rule: submit
    condition:
      - active_loop: size_form
    steps:
      - action: size_form
      - active_loop: null
      - slot_was_set:
          - requested_slot: null
      - action: utter_done
"""
TESTS = """
version: "3.1"
stories:
  - story: size
    steps:
      - user: hello
        intent: greet
      - action: utter_greet
      - user: i want a shirt
        intent: request_size
      - action: size_form
      - active_loop: size_form
      - user: "[large](size) please"
        intent: inform
      - action: size_form
      - active_loop: null
      - action: utter_done
  - story: hours
    steps:
      - intent: faq
      - action: utter_faq
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "shirts"
    (root / "data").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "actions").mkdir()
    (root / "domain.yml").write_text(DOMAIN, encoding="utf-8")
    (root / "config.yml").write_text(CONFIG, encoding="utf-8")
    (root / "endpoints.yml").write_text("action_endpoint:\n  url: http://localhost:5055/webhook\n", encoding="utf-8")
    (root / "data" / "nlu.yml").write_text(NLU, encoding="utf-8")
    (root / "data" / "rules.yml").write_text(RULES, encoding="utf-8")
    (root / "tests" / "test_stories.yml").write_text(TESTS, encoding="utf-8")
    (root / "actions" / "__init__.py").write_text("", encoding="utf-8")
    (root / "actions" / "actions.py").write_text("# the project's own actions\n", encoding="utf-8")
    return root


def test_import_writes_a_bot_folder_kefu_loads(project: Path, tmp_path: Path) -> None:
    from dialogue.domain import Domain
    from kefu.app import bot_dialogue
    from kefu.config import Bot
    from runtime.templates import Templates

    out = tmp_path / "bot"
    report = import_project(project, out)
    bot = Bot.load(out)
    assert bot.config.rasa == "rasa" and bot.config.languages == ["en"]
    assert bot.config.action_endpoint == "http://localhost:5055/webhook"
    assert bot.config.confidence_threshold == pytest.approx(0.4)
    assert (out / "rasa" / "actions" / "actions.py").is_file() and (out / "rasa" / "tests" / "test_stories.yml").is_file()
    domain, flows = bot_dialogue(bot, None)
    assert isinstance(domain, Domain) and flows.initial_state == "idle" and "size_form" in flows.states
    templates = Templates.from_domain(yaml.safe_load((out / "domain.yml").read_text(encoding="utf-8")))
    assert "utter_faq/ask_hours" in templates
    assert "Small" not in (out / "domain.yml").read_text(encoding="utf-8")  # buttons go with the reply, not its text
    nlu = yaml.safe_load((out / "data" / "nlu.yml").read_text(encoding="utf-8"))["nlu"]
    assert {"synonym": "large", "examples": "- big\n"} in nlu
    assert report.counts["forms"] == 1 and report.counts["test_stories"] == 2
    listed = json.loads((out / REPORT).read_text(encoding="utf-8"))["unsupported"]
    keys = {item["key"] for item in listed}
    assert any("Duckling" in key for key in keys)  # listed, never dropped silently
    assert any(key.startswith("responses.utter_iamabot[1]") for key in keys)


def test_a_second_import_replaces_the_copy(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "bot"
    import_project(project, out)
    (project / "data" / "rules.yml").write_text(RULES.replace("utter_greet\n", "utter_greet\n      - action: utter_done\n", 1),
                                                encoding="utf-8")
    import_project(project, out, action_endpoint="http://127.0.0.1:9/webhook")
    assert "utter_done" in (out / "rasa" / "data" / "rules.yml").read_text(encoding="utf-8").split("rule: faq")[0]
    assert yaml.safe_load((out / "bot.yml").read_text(encoding="utf-8"))["action_endpoint"] == "http://127.0.0.1:9/webhook"


def test_not_a_rasa_project_is_a_clear_error(tmp_path: Path) -> None:
    from kefu.cli import app

    result = CliRunner().invoke(app, ["import", "rasa", str(tmp_path), "--out", str(tmp_path / "bot")])
    assert result.exit_code == 2
    assert "domain" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "bot" / "bot.yml").exists()


def test_cli_imports_and_replays_the_test_stories(project: Path, tmp_path: Path) -> None:
    from kefu.cli import app

    out = tmp_path / "bot"
    runner = CliRunner()
    imported = runner.invoke(app, ["import", "rasa", str(project), "--out", str(out)])
    assert imported.exit_code == 0, imported.output
    assert "DucklingEntityExtractor" in imported.output
    tested = runner.invoke(app, ["test", "stories", "--bot", str(out), "--no-nlu", "--json"])
    assert tested.exit_code == 0, tested.output
    summary = json.loads(tested.stdout)
    assert summary["stories"] == 2 and summary["conversation_accuracy"] == 1.0 and summary["failed"] == []
    broken = tmp_path / "broken.yml"
    broken.write_text(TESTS.replace("- action: utter_done", "- action: utter_greet"), encoding="utf-8")
    failed = runner.invoke(app, ["test", "stories", str(broken), "--bot", str(out), "--no-nlu", "--json"])
    assert failed.exit_code == 1
    report = json.loads(failed.stdout)
    assert report["conversation_accuracy"] == 0.5
    wrong = [s for s in report["failed"][0]["steps"] if not s["ok"]]
    assert wrong == [{"kind": "action", "expected": "utter_greet", "predicted": "utter_done", "why": "rule", "ok": False}]


def test_test_stories_needs_a_trained_nlu_unless_told_otherwise(project: Path, tmp_path: Path) -> None:
    from kefu.cli import app

    out = tmp_path / "bot"
    import_project(project, out)
    result = CliRunner().invoke(app, ["test", "stories", "--bot", str(out)])
    assert result.exit_code == 2 and "kefu train" in result.output


CONDITIONAL = """
intents: [greet]
slots:
  logged_in:
    type: bool
    influence_conversation: false
    mappings: [{type: custom}]
  tier:
    type: categorical
    values: [gold, basic]
    mappings: [{type: custom}]
responses:
  utter_welcome:
    - text: Welcome back, gold member!
      condition:
        - {type: slot, name: logged_in, value: true}
        - {type: slot, name: tier, value: gold}
    - text: Welcome back!
      condition:
        - {type: slot, name: logged_in, value: true}
    - text: Hello! Please log in.
    - text: Hello from Slack!
      channel: slack
  utter_only_members:
    - text: Your points are safe.
      condition:
        - {type: slot, name: logged_in, value: true}
"""


@pytest.mark.parametrize(
    ("slots", "expected"),
    [
        ({"logged_in": True, "tier": "gold"}, ("utter_welcome@0", "Welcome back, gold member!")),
        ({"logged_in": True, "tier": "basic"}, ("utter_welcome@1", "Welcome back!")),
        ({"logged_in": False, "tier": "gold"}, ("utter_welcome", "Hello! Please log in.")),
        ({"logged_in": None, "tier": None}, ("utter_welcome", "Hello! Please log in.")),
    ],
)
def test_conditional_response_variations(tmp_path: Path, slots: dict[str, object], expected: tuple[str, str]) -> None:
    from dialogue.rasa.importer import kefu_domain
    from dialogue.rasa.turn import variation_key
    from tests.dialogue.rasa.test_policy import write_project

    project = write_project(tmp_path / "p", CONDITIONAL)
    responses = kefu_domain(project)["responses"]
    key, text = expected
    assert variation_key(project, "utter_welcome", slots) == key
    assert responses[key] == [{"text": text}]  # the Slack-only variation is not one of Kefu's choices
    assert variation_key(project, "utter_only_members", slots) == (
        "utter_only_members@0" if slots["logged_in"] else None)  # no variation applies: nothing is said
