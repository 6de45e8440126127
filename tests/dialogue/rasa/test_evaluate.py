"""evaluate(): teacher-forced replay of end-to-end test stories, as ``rasa test`` reports them
(https://rasa.com/docs/rasa/testing-your-assistant): action and conversation accuracy, action F1, intent and entity
comparison with the bot's NLU (a fake parse function here), and the failed stories step by step."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from sklearn.metrics import f1_score

from dialogue.rasa.evaluate import ParsedText, Report, Step, action_f1, evaluate
from dialogue.rasa.policy import RasaPolicy
from dialogue.rasa.project import RasaProject
from dialogue.rasa.stories import EntityValue, load_stories
from tests.dialogue.rasa.test_policy import build_policy, utter, write_project

DOMAIN = textwrap.dedent("""
intents: [greet, mood_great, mood_unhappy, affirm, deny, bot_challenge, request_table, inform]
entities: [mood, cuisine]
slots:
  cuisine:
    type: text
    mappings:
    - type: from_entity
      entity: cuisine
forms:
  table_form:
    required_slots: [cuisine]
""") + utter("utter_greet", "utter_cheer_up", "utter_did_that_help", "utter_happy", "utter_goodbye", "utter_iamabot",
             "utter_ask_cuisine", "utter_booked")

RULES = """
- rule: bot challenge
  steps:
  - intent: bot_challenge
  - action: utter_iamabot
- rule: activate the form
  steps:
  - intent: request_table
  - action: table_form
  - active_loop: table_form
- rule: submit the form
  condition:
  - active_loop: table_form
  steps:
  - action: table_form
  - active_loop: null
  - action: utter_booked
"""

STORIES = """
- story: happy
  steps:
  - intent: greet
  - action: utter_greet
  - intent: mood_great
  - action: utter_happy
- story: sad
  steps:
  - intent: greet
  - action: utter_greet
  - intent: mood_unhappy
  - action: utter_cheer_up
  - action: utter_did_that_help
  - intent: affirm
  - action: utter_happy
- story: sad, no help
  steps:
  - intent: greet
  - action: utter_greet
  - intent: mood_unhappy
  - action: utter_cheer_up
  - action: utter_did_that_help
  - intent: deny
  - action: utter_goodbye
- story: greeting in the form
  steps:
  - intent: request_table
  - action: table_form
  - active_loop: table_form
  - intent: greet
  - action: utter_greet
  - action: table_form
"""

TESTS = """
- story: happy test
  steps:
  - user: |
      hello
    intent: greet
  - action: utter_greet
  - user: |
      I feel [great](mood)
    intent: mood_great
  - action: utter_happy
- story: wrong test
  steps:
  - intent: greet
  - action: utter_greet
  - intent: mood_unhappy
  - action: utter_cheer_up
  - action: utter_did_that_help
  - intent: deny
  - action: utter_happy
- story: form test
  steps:
  - intent: request_table
  - action: table_form
  - active_loop: table_form
  - intent: greet
  - action: utter_greet
  - action: table_form
  - intent: inform
    entities:
    - cuisine: thai
  - action: table_form
  - active_loop: null
  - action: utter_booked
"""


@pytest.fixture
def project(tmp_path: Path) -> RasaProject:
    return write_project(tmp_path, DOMAIN, rules=RULES, stories=STORIES, tests=TESTS)


@pytest.fixture
def policy(project: RasaProject) -> RasaPolicy:
    return build_policy(project)


def run(policy: RasaPolicy, parse: dict[str, ParsedText] | None = None) -> Report:
    stories = load_stories(policy.project.test_files, "test")
    return evaluate(policy, stories, None if parse is None else parse.__getitem__)


def test_a_passing_and_a_failing_story(policy: RasaPolicy) -> None:
    report = run(policy)
    assert [(s.name, s.ok) for s in report.stories] == [("happy test", True), ("wrong test", False),
                                                        ("form test", True)]
    summary = report.summary()
    assert summary["stories"] == 3
    assert summary["conversation_accuracy"] == round(2 / 3, 4)
    assert summary["intents"] == 0 and summary["intent_accuracy"] is None  # no parse function: no NLU checked
    [failed] = summary["failed"]
    assert failed["story"] == "wrong test" and failed["source"].endswith("tests/test_stories.yml:14")
    wrong = [s for s in failed["steps"] if not s["ok"]]
    assert wrong == [{"kind": "action", "expected": "utter_happy", "predicted": "utter_goodbye", "why": "memo",
                      "ok": False}]


def test_the_listening_between_turns_is_an_action_step(policy: RasaPolicy) -> None:
    [happy] = [s for s in run(policy).stories if s.name == "happy test"]
    assert [(s.expected, s.predicted) for s in happy.steps] == [
        ("utter_greet", "utter_greet"), ("action_listen", "action_listen"), ("utter_happy", "utter_happy")]


def test_an_interruption_during_a_form_is_replayed_as_a_rejection(policy: RasaPolicy) -> None:
    """``rasa test`` emulates the form's rejection when the story answers a message with something else."""
    [form] = [s for s in run(policy).stories if s.name == "form test"]
    assert form.ok, [s for s in form.steps if not s.ok]
    assert [s.expected for s in form.steps] == ["table_form", "action_listen", "utter_greet", "table_form",
                                                 "action_listen", "table_form", "utter_booked"]


def test_intents_and_entities_are_compared_with_the_nlu(policy: RasaPolicy) -> None:
    parse = {
        "hello": ParsedText("greet"),
        "I feel great": ParsedText("mood_unhappy", (EntityValue("mood", "great"),)),
    }
    report = run(policy, parse)
    [happy] = [s for s in report.stories if s.name == "happy test"]
    assert [(s.kind, s.expected, s.predicted) for s in happy.steps if s.kind != "action"] == [
        ("intent", "greet", "greet"), ("entities", "", ""),
        ("intent", "mood_great", "mood_unhappy"), ("entities", "mood=great", "mood=great")]
    assert not happy.ok  # a wrong intent fails the story, even when the actions (on the story's intent) are right
    assert all(s.ok for s in happy.steps if s.kind == "action")
    summary = report.summary()
    assert (summary["intents"], summary["intent_accuracy"], summary["entity_accuracy"]) == (2, 0.5, 1.0)


def test_a_missed_entity_is_an_entity_error(policy: RasaPolicy) -> None:
    summary = run(policy, {"hello": ParsedText("greet"), "I feel great": ParsedText("mood_great")}).summary()
    assert summary["intent_accuracy"] == 1.0 and summary["entity_accuracy"] == 0.5


def test_a_user_step_without_an_intent_follows_the_nlu(tmp_path: Path) -> None:
    policy = build_policy(write_project(tmp_path, DOMAIN, rules=RULES, stories=STORIES, tests="""
    - story: text only
      steps:
      - user: |
          are you a bot?
      - action: utter_iamabot
    """))
    report = run(policy, {"are you a bot?": ParsedText("bot_challenge")})
    assert report.stories[0].ok
    assert report.summary()["intents"] == 0  # nothing to compare it with


def test_summary_keys(policy: RasaPolicy) -> None:
    assert set(run(policy).summary()) == {
        "stories", "conversation_accuracy", "actions", "action_accuracy", "action_f1", "intents", "intent_accuracy",
        "entity_accuracy", "failed"}


def test_summary_counts(policy: RasaPolicy) -> None:
    summary = run(policy).summary()
    actions = [s for story in run(policy).stories for s in story.steps if s.kind == "action"]
    assert summary["actions"] == len(actions) == 3 + 6 + 7
    assert summary["action_accuracy"] == round((len(actions) - 1) / len(actions), 4)
    assert summary["action_f1"] == action_f1(actions)


@pytest.mark.parametrize(
    "pairs",
    [
        [("a", "a"), ("a", "b"), ("b", "b")],
        [("a", "a"), ("b", "b"), ("c", "c")],
        [("a", "b"), ("b", "a")],
        [("utter_x", "utter_x"), ("utter_x", "action_listen"), ("action_listen", "action_listen"), ("f", "utter_x")],
    ],
)
def test_action_f1_is_the_support_weighted_f1(pairs: list[tuple[str, str]]) -> None:
    steps = [Step("action", expected, predicted) for expected, predicted in pairs]
    expected = f1_score([e for e, _ in pairs], [p for _, p in pairs], average="weighted", zero_division=0)
    assert action_f1(steps) == pytest.approx(expected, abs=1e-4)


def test_action_f1_without_steps() -> None:
    assert action_f1([]) is None
    assert Report([]).summary()["conversation_accuracy"] is None
