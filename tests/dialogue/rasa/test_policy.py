"""RasaPolicy: rules, memoised stories with back-off, follow-ups and the core fallback, as Rasa documents them
(https://rasa.com/docs/rasa/rules, /stories, /policies#memoization-policy, /default-actions).

Each test writes a small Rasa 3.x project in tmp_path, builds the policy from its rules and stories, and drives a
:class:`Tracker` by hand: a user message, then the predicted actions until the policy says ``action_listen``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from dialogue.rasa.policy import RasaPolicy
from dialogue.rasa.project import RasaProject, load_project
from dialogue.rasa.stories import EntityValue, load_stories
from dialogue.rasa.tracker import DEFAULT_FALLBACK, LISTEN, Tracker

# ------------------------------------------------------------------------------------------------------------ helpers


def write_project(
    root: Path,
    domain: str,
    *,
    rules: str = "",
    stories: str = "",
    tests: str = "",
    config: str = "",
) -> RasaProject:
    """Write a Rasa 3.x project (the YAML bodies below their top-level key, written at column 0) and load it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    (root / "domain.yml").write_text('version: "3.1"\n' + textwrap.dedent(domain), encoding="utf-8")
    if rules:
        (root / "data" / "rules.yml").write_text('version: "3.1"\nrules:\n' + textwrap.dedent(rules), encoding="utf-8")
    if stories:
        (root / "data" / "stories.yml").write_text('version: "3.1"\nstories:\n' + textwrap.dedent(stories),
                                                   encoding="utf-8")
    if tests:
        (root / "tests").mkdir(exist_ok=True)
        (root / "tests" / "test_stories.yml").write_text('version: "3.1"\nstories:\n' + textwrap.dedent(tests),
                                                         encoding="utf-8")
    if config:
        (root / "config.yml").write_text(textwrap.dedent(config), encoding="utf-8")
    return load_project(root)


def build_policy(project: RasaProject) -> RasaPolicy:
    return RasaPolicy.build(project, load_stories(project.rule_files, "rule"), load_stories(project.story_files, "story"))


Build = Callable[..., RasaPolicy]


@pytest.fixture
def build(tmp_path: Path) -> Build:
    """``build(domain, rules=..., stories=..., config=...)``: the policy of a project written in tmp_path."""
    count = 0

    def _build(domain: str, **files: str) -> RasaPolicy:
        nonlocal count
        count += 1
        return build_policy(write_project(tmp_path / f"project{count}", domain, **files))

    return _build


def turn(policy: RasaPolicy, tracker: Tracker, intent: str, *entities: EntityValue) -> list[str]:
    """A user message, then the predicted actions (executed as no-ops) until the policy listens."""
    tracker.user(intent, entities)
    return run_until_listen(policy, tracker)


def run_until_listen(policy: RasaPolicy, tracker: Tracker) -> list[str]:
    actions: list[str] = []
    for _ in range(10):
        action = policy.predict(tracker).action
        if action == LISTEN:
            tracker.act(LISTEN)
            return actions
        actions.append(action)
        tracker.act(action)
    raise AssertionError(f"the policy never listened: {actions}")


def utter(*names: str) -> str:
    """A ``responses:`` section with one text for each response name."""
    return "responses:\n" + "".join(f"  {name}:\n  - text: {name}\n" for name in names)


# -------------------------------------------------------------------------------------------------------------- rules

RULES_DOMAIN = """
intents: [greet, goodbye, ask_help, affirm, deny, bot_challenge, start]
slots:
  logged_in:
    type: bool
    mappings:
    - type: custom
""" + utter("utter_greet", "utter_welcome_back", "utter_hello_again", "utter_goodbye", "utter_help",
            "utter_did_that_help", "utter_glad", "utter_ok", "utter_iamabot", "utter_intro", "utter_menu")


def test_a_rule_maps_an_intent_to_an_action_and_then_listens(build: Build) -> None:
    policy = build(RULES_DOMAIN, rules="""
    - rule: greet
      steps:
      - intent: greet
      - action: utter_greet
    """)
    tracker = Tracker.start(policy.project)
    tracker.user("greet")
    prediction = policy.predict(tracker)
    assert (prediction.action, prediction.reason, prediction.source) == ("utter_greet", "rule", "greet")
    tracker.act("utter_greet")
    assert policy.predict(tracker).action == LISTEN
    assert turn(policy, tracker, "greet") == ["utter_greet"]  # and again on a later message


def test_a_rule_with_several_actions_runs_them_in_order_then_listens(build: Build) -> None:
    policy = build(RULES_DOMAIN + "actions: [action_log_help]\n", rules="""
    - rule: help
      steps:
      - intent: ask_help
      - action: utter_help
      - action: action_log_help
      - action: utter_did_that_help
    """)
    tracker = Tracker.start(policy.project)
    assert turn(policy, tracker, "ask_help") == ["utter_help", "action_log_help", "utter_did_that_help"]


@pytest.mark.parametrize(("logged_in", "expected"), [(True, "utter_welcome_back"), (False, "utter_greet"),
                                                    (None, "utter_greet")])
def test_a_rule_condition_on_a_slot_is_more_specific_and_wins(build: Build, logged_in: bool | None,
                                                             expected: str) -> None:
    """Rasa picks the most specific matching rule; the conditioned rule is written last on purpose."""
    policy = build(RULES_DOMAIN, rules="""
    - rule: greet
      steps:
      - intent: greet
      - action: utter_greet
    - rule: greet a known user
      condition:
      - slot_was_set:
        - logged_in: true
      steps:
      - intent: greet
      - action: utter_welcome_back
    """)
    tracker = Tracker.start(policy.project)
    tracker.slots["logged_in"] = logged_in
    assert turn(policy, tracker, "greet") == [expected]


def test_the_longer_rule_wins_when_its_earlier_steps_match(build: Build) -> None:
    policy = build(RULES_DOMAIN, rules="""
    - rule: affirm
      steps:
      - intent: affirm
      - action: utter_ok
    - rule: affirm after asking whether it helped
      steps:
      - action: utter_did_that_help
      - intent: affirm
      - action: utter_glad
    - rule: help
      steps:
      - intent: ask_help
      - action: utter_help
      - action: utter_did_that_help
    """)
    tracker = Tracker.start(policy.project)
    assert turn(policy, tracker, "affirm") == ["utter_ok"]
    assert turn(policy, tracker, "ask_help") == ["utter_help", "utter_did_that_help"]
    assert turn(policy, tracker, "affirm") == ["utter_glad"]
    assert turn(policy, tracker, "affirm") == ["utter_ok"]


def test_a_rule_that_starts_with_an_action_does_not_predict_that_action(build: Build) -> None:
    """A rule's first action, with no user message before it, is context: Rasa's rule snippet starts after it."""
    policy = build(RULES_DOMAIN, rules="""
    - rule: affirm after asking whether it helped
      steps:
      - action: utter_did_that_help
      - intent: affirm
      - action: utter_glad
    - rule: greet
      steps:
      - intent: greet
      - action: utter_greet
    """)
    tracker = Tracker.start(policy.project)
    assert turn(policy, tracker, "greet") == ["utter_greet"]
    assert turn(policy, tracker, "goodbye") == [DEFAULT_FALLBACK]


def test_conversation_start_rules_apply_only_to_the_first_message(build: Build) -> None:
    policy = build(RULES_DOMAIN, rules="""
    - rule: greet at the start
      conversation_start: true
      steps:
      - intent: greet
      - action: utter_greet
    - rule: greet later
      steps:
      - intent: greet
      - action: utter_hello_again
    """)
    tracker = Tracker.start(policy.project)
    assert turn(policy, tracker, "greet") == ["utter_greet"]
    assert turn(policy, tracker, "greet") == ["utter_hello_again"]
    tracker = Tracker.start(policy.project)
    assert turn(policy, tracker, "goodbye") == [DEFAULT_FALLBACK]
    assert turn(policy, tracker, "greet") == ["utter_hello_again"]


@pytest.mark.parametrize(("wait", "expected"), [(True, ["utter_intro"]), (False, ["utter_intro", "utter_menu"])])
def test_wait_for_user_input_false_lets_the_stories_continue_after_the_rule(
    build: Build, wait: bool, expected: list[str]
) -> None:
    policy = build(RULES_DOMAIN, rules=f"""
    - rule: introduce
      wait_for_user_input: {str(wait).lower()}
      steps:
      - intent: start
      - action: utter_intro
    """, stories="""
    - story: start
      steps:
      - intent: start
      - action: utter_intro
      - action: utter_menu
    """)
    tracker = Tracker.start(policy.project)
    assert turn(policy, tracker, "start") == expected


FORM_DOMAIN = """
intents: [request_quote, inform, bot_challenge, greet, affirm]
entities: [city]
slots:
  city:
    type: text
    mappings:
    - type: from_entity
      entity: city
forms:
  quote_form:
    required_slots: [city]
""" + utter("utter_ask_city", "utter_iamabot", "utter_greet", "utter_quote", "utter_thanks")

FORM_RULES = """
- rule: activate
  steps:
  - intent: request_quote
  - action: quote_form
  - active_loop: quote_form
- rule: bot challenge in the form
  condition:
  - active_loop: quote_form
  steps:
  - intent: bot_challenge
  - action: utter_iamabot
  - action: quote_form
  - active_loop: quote_form
- rule: inform thanks
  steps:
  - intent: inform
  - action: utter_thanks
"""


def in_form(policy: RasaPolicy) -> Tracker:
    """A tracker whose quote form asked for the city and is waiting for the answer."""
    tracker = Tracker.start(policy.project)
    tracker.user("request_quote")
    tracker.act("quote_form")
    tracker.set_loop("quote_form")
    tracker.set_slot("requested_slot", "city")
    assert policy.predict(tracker).action == LISTEN
    tracker.act(LISTEN)
    return tracker


def test_an_active_form_runs_before_rules_without_an_active_loop_condition(build: Build) -> None:
    policy = build(FORM_DOMAIN, rules=FORM_RULES)
    tracker = Tracker.start(policy.project)
    tracker.user("inform", [EntityValue("city", "Paris")])
    assert policy.predict(tracker).action == "utter_thanks"  # outside the form the rule applies
    tracker = in_form(policy)
    tracker.user("inform", [EntityValue("city", "Paris")])
    assert policy.predict(tracker).action == "quote_form"


def test_a_rule_with_an_active_loop_condition_answers_the_message_the_form_rejected(build: Build) -> None:
    policy = build(FORM_DOMAIN, rules=FORM_RULES)
    tracker = in_form(policy)
    tracker.user("bot_challenge")
    assert policy.predict(tracker).action == "quote_form"  # the form has priority: it may use the message
    tracker.apply({"event": "action_execution_rejected"})
    prediction = policy.predict(tracker, exclude=frozenset({"quote_form"}))
    assert (prediction.action, prediction.source) == ("utter_iamabot", "bot challenge in the form")
    tracker.act("utter_iamabot")
    assert policy.predict(tracker).action == "quote_form"  # back to the form
    tracker.act("quote_form")
    prediction = policy.predict(tracker)
    assert (prediction.action, prediction.reason) == (LISTEN, "loop")  # it asked again: its rejection is over
    tracker = Tracker.start(policy.project)
    assert turn(policy, tracker, "bot_challenge") == [DEFAULT_FALLBACK]  # the condition needs the form


# -------------------------------------------------------------------------------------------------------- memoisation

MOOD_DOMAIN = """
intents: [greet, mood_great, mood_unhappy, affirm, deny, goodbye, bot_challenge]
""" + utter("utter_greet", "utter_cheer_up", "utter_did_that_help", "utter_happy", "utter_goodbye", "utter_iamabot")

MOOD_STORIES = """
- story: happy path
  steps:
  - intent: greet
  - action: utter_greet
  - intent: mood_great
  - action: utter_happy
- story: sad path 1
  steps:
  - intent: greet
  - action: utter_greet
  - intent: mood_unhappy
  - action: utter_cheer_up
  - action: utter_did_that_help
  - intent: affirm
  - action: utter_happy
- story: sad path 2
  steps:
  - intent: greet
  - action: utter_greet
  - intent: mood_unhappy
  - action: utter_cheer_up
  - action: utter_did_that_help
  - intent: deny
  - action: utter_goodbye
"""


@pytest.mark.parametrize(("answer", "expected"), [("affirm", "utter_happy"), ("deny", "utter_goodbye")])
def test_memoised_stories_follow_the_conversation_context(build: Build, answer: str, expected: str) -> None:
    policy = build(MOOD_DOMAIN, stories=MOOD_STORIES)
    tracker = Tracker.start(policy.project)
    assert turn(policy, tracker, "greet") == ["utter_greet"]
    assert turn(policy, tracker, "mood_unhappy") == ["utter_cheer_up", "utter_did_that_help"]
    tracker.user(answer)
    prediction = policy.predict(tracker)
    assert (prediction.action, prediction.reason) == (expected, "memo")


def test_memoisation_backs_off_to_a_shorter_history(build: Build) -> None:
    """A path no story wrote (no greeting first, a detour) still gets the stories' local answer."""
    policy = build(MOOD_DOMAIN, stories=MOOD_STORIES, rules="""
    - rule: bot challenge
      steps:
      - intent: bot_challenge
      - action: utter_iamabot
    """)
    tracker = Tracker.start(policy.project)
    assert turn(policy, tracker, "bot_challenge") == ["utter_iamabot"]
    assert turn(policy, tracker, "mood_unhappy") == ["utter_cheer_up", "utter_did_that_help"]
    assert turn(policy, tracker, "deny") == ["utter_goodbye"]


def test_a_story_that_starts_with_a_bot_action_applies_after_that_action_anywhere(build: Build) -> None:
    """Whatever the user said before ``utter_anything_else``, a denial after it ends the conversation."""
    policy = build(MOOD_DOMAIN + "  utter_anything_else:\n  - text: more?\n", stories="""
    - story: nothing else
      steps:
      - action: utter_anything_else
      - intent: deny
      - action: utter_goodbye
    - story: something else
      steps:
      - action: utter_anything_else
      - intent: affirm
      - action: utter_happy
    - story: challenge
      steps:
      - intent: bot_challenge
      - action: utter_iamabot
      - action: utter_anything_else
    - story: deny the greeting
      steps:
      - intent: greet
      - action: utter_greet
      - intent: deny
      - action: utter_cheer_up
    """)
    tracker = Tracker.start(policy.project)
    assert turn(policy, tracker, "bot_challenge") == ["utter_iamabot", "utter_anything_else"]
    assert turn(policy, tracker, "deny") == ["utter_goodbye"]
    tracker = Tracker.start(policy.project)
    assert turn(policy, tracker, "bot_challenge") == ["utter_iamabot", "utter_anything_else"]
    assert turn(policy, tracker, "affirm") == ["utter_happy"]


def test_an_entity_no_story_wrote_does_not_hide_the_intent(build: Build) -> None:
    policy = build(MOOD_DOMAIN.replace("intents:", "entities: [name]\nintents:"), stories=MOOD_STORIES)
    tracker = Tracker.start(policy.project)
    assert turn(policy, tracker, "greet", EntityValue("name", "Ann")) == ["utter_greet"]


def test_a_message_no_story_expects_there_gets_the_core_fallback(build: Build) -> None:
    """Even when every story goes on the same way after the bot's last action: an unknown answer is not guessed."""
    policy = build(MOOD_DOMAIN, stories=MOOD_STORIES)
    tracker = Tracker.start(policy.project)
    turn(policy, tracker, "greet")
    turn(policy, tracker, "mood_unhappy")
    assert turn(policy, tracker, "bot_challenge") == [DEFAULT_FALLBACK]


def test_stories_that_disagree_predict_nothing_and_the_core_fallback_answers(build: Build) -> None:
    policy = build(MOOD_DOMAIN, stories="""
    - story: one
      steps:
      - intent: greet
      - action: utter_greet
    - story: two
      steps:
      - intent: greet
      - action: utter_happy
    """)
    tracker = Tracker.start(policy.project)
    tracker.user("greet")
    prediction = policy.predict(tracker)
    assert (prediction.action, prediction.reason) == (DEFAULT_FALLBACK, "fallback")


def test_the_core_fallback_action_is_the_configured_one_and_only_after_a_user_message(build: Build) -> None:
    policy = build(MOOD_DOMAIN + "actions: [action_my_fallback]\n", config="""
    policies:
    - name: MemoizationPolicy
    - name: RulePolicy
      core_fallback_action_name: action_my_fallback
    """)
    tracker = Tracker.start(policy.project)
    tracker.user("goodbye")
    assert policy.predict(tracker).action == "action_my_fallback"
    tracker.act("utter_goodbye")
    assert policy.predict(tracker).action == LISTEN  # nothing known after a bot action: listen


def test_memoisation_backs_off_to_the_skeleton_after_a_form(build: Build) -> None:
    """After the form is done the story's next action follows, whatever the last message was."""
    policy = build(FORM_DOMAIN, rules=FORM_RULES, stories="""
    - story: quote
      steps:
      - intent: request_quote
      - action: quote_form
      - active_loop: quote_form
      - active_loop: null
      - action: utter_quote
    """)
    tracker = in_form(policy)
    tracker.user("affirm", [EntityValue("city", "Paris")])  # an intent no story has there
    tracker.set_slot("city", "Paris")
    assert policy.predict(tracker).action == "quote_form"
    tracker.act("quote_form")
    tracker.set_loop(None)
    prediction = policy.predict(tracker)
    assert (prediction.action, prediction.reason) == ("utter_quote", "memo")


def test_memoisation_uses_only_slots_that_influence_the_conversation(build: Build) -> None:
    policy = build(textwrap.dedent("""
    intents: [greet]
    slots:
      vip:
        type: bool
        mappings:
        - type: custom
      note:
        type: text
        influence_conversation: false
        mappings:
        - type: custom
    """) + utter("utter_greet", "utter_greet_vip"), stories="""
    - story: vip
      steps:
      - slot_was_set:
        - vip: true
      - intent: greet
      - action: utter_greet_vip
    - story: plain
      steps:
      - intent: greet
      - action: utter_greet
    """)
    for vip, expected in ((True, "utter_greet_vip"), (None, "utter_greet")):
        tracker = Tracker.start(policy.project)
        tracker.slots.update(vip=vip, note="whatever")
        assert turn(policy, tracker, "greet") == [expected]


# ------------------------------------------------------------------------------------------ follow-ups and defaults


def test_a_followup_action_comes_before_rules(build: Build) -> None:
    policy = build(RULES_DOMAIN, rules="""
    - rule: greet
      steps:
      - intent: greet
      - action: utter_greet
    """)
    tracker = Tracker.start(policy.project)
    tracker.user("greet")
    tracker.apply({"event": "followup", "name": "utter_help"})
    prediction = policy.predict(tracker)
    assert (prediction.action, prediction.reason) == ("utter_help", "followup")
    tracker.act("utter_help")
    assert policy.predict(tracker).action != "utter_help"  # done once


@pytest.mark.parametrize(("intent", "action"), [("restart", "action_restart"), ("back", "action_back"),
                                                ("session_start", "action_session_start")])
def test_default_intents_trigger_their_default_actions(build: Build, intent: str, action: str) -> None:
    """https://rasa.com/docs/rasa/default-actions: ``/restart`` and ``/back`` run their actions with RulePolicy."""
    policy = build(RULES_DOMAIN)
    tracker = Tracker.start(policy.project)
    tracker.user(intent)
    assert policy.predict(tracker).action == action
