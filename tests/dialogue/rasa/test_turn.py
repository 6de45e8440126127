"""respond() and RasaDialogue: forms, default actions, events from custom actions, retrieval intents, the NLU
fallback thresholds, storing a conversation between turns and the rasa-sdk payload, as Rasa documents them
(https://rasa.com/docs/rasa/forms, /default-actions, /slot-validation-actions, /domain#slots, /action-server).

Custom actions (and ``validate_<form>``, ``action_ask_<slot>``) run through a fake executor that records its calls.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from rasa_sdk import Tracker as SdkTracker

from dialogue.flows import FlowContext
from dialogue.rasa.policy import RasaPolicy
from dialogue.rasa.project import RasaProject
from dialogue.rasa.stories import EntityValue
from dialogue.rasa.tracker import LISTEN, NLU_FALLBACK, REQUESTED_SLOT, Tracker
from dialogue.rasa.turn import (
    IDLE,
    MAX_ACTIONS,
    TRACKER_SLOT,
    RasaDialogue,
    TurnOutcome,
    TurnResult,
    action_call,
    action_server_domain,
    loop_flows,
    nlu_intent,
    payload_intent,
    respond,
)
from dialogue.types import ActionResult
from tests.dialogue.rasa.test_policy import build_policy, utter, write_project

# ------------------------------------------------------------------------------------------------------------ helpers

Reply = ActionResult | Callable[[Tracker], ActionResult]


@dataclass
class FakeServer:
    """An action server: each action's reply (an ActionResult, or a function of the tracker), and the calls made."""

    replies: dict[str, Reply] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (action, the slots it saw)

    async def __call__(self, action: str, tracker: Tracker) -> ActionResult:
        self.calls.append((action, dict(tracker.slots)))
        reply = self.replies.get(action, ActionResult())
        return reply(tracker) if callable(reply) else reply

    @property
    def called(self) -> list[str]:
        return [name for name, _ in self.calls]


def events(*items: dict[str, Any]) -> ActionResult:
    return ActionResult(events=list(items))


@dataclass
class Bot:
    """A policy and a conversation on it, one user message at a time."""

    policy: RasaPolicy
    server: FakeServer = field(default_factory=FakeServer)
    tracker: Tracker = field(init=False)

    def __post_init__(self) -> None:
        self.tracker = Tracker.start(self.policy.project)

    @property
    def project(self) -> RasaProject:
        return self.policy.project

    async def say(self, intent: str, text: str | None = None, **entities: Any) -> TurnOutcome:
        found = [EntityValue(name, value) for name, values in entities.items()
                 for value in (values if isinstance(values, list) else [values])]
        return await respond(self.policy, self.tracker, intent=intent, entities=found, text=text,
                             execute=self.server)


def said(outcome: TurnOutcome) -> list[str]:
    """What the bot said: response names, and the texts of custom actions."""
    return [u.response or u.text or "" for u in outcome.utterances]


def ran(outcome: TurnOutcome) -> list[str]:
    return [action for action, _ in outcome.actions]


@pytest.fixture
def make_bot(tmp_path: Path) -> Callable[..., Bot]:
    count = 0

    def _make(domain: str, **files: str) -> Bot:
        nonlocal count
        count += 1
        return Bot(build_policy(write_project(tmp_path / f"bot{count}", domain, **files)))

    return _make


# -------------------------------------------------------------------------------------------------------------- forms

FORM_DOMAIN = """
intents: [greet, request_table, request_vip_table, inform, affirm, deny, bot_challenge, stop, chitchat]
entities: [cuisine, number, topping]
slots:
  table_kind:
    type: text
    mappings:
    - type: from_trigger_intent
      intent: request_vip_table
      value: vip
    - type: from_trigger_intent
      intent: request_table
      value: standard
  cuisine:
    type: text
    mappings:
    - type: from_entity
      entity: cuisine
  num_people:
    type: float
    mappings:
    - type: from_entity
      entity: number
      conditions:
      - active_loop: table_form
        requested_slot: num_people
  outdoor:
    type: bool
    mappings:
    - type: from_intent
      intent: affirm
      value: true
      conditions:
      - active_loop: table_form
        requested_slot: outdoor
    - type: from_intent
      intent: deny
      value: false
      conditions:
      - active_loop: table_form
        requested_slot: outdoor
  notes:
    type: text
    mappings:
    - type: from_text
      not_intent: [bot_challenge, stop]
      conditions:
      - active_loop: table_form
        requested_slot: notes
  toppings:
    type: list
    mappings:
    - type: from_entity
      entity: topping
forms:
  table_form:
    required_slots: [table_kind, cuisine, num_people, outdoor, notes]
""" + utter("utter_ask_cuisine", "utter_ask_table_form_cuisine", "utter_ask_num_people", "utter_ask_outdoor",
            "utter_ask_notes", "utter_iamabot", "utter_submit", "utter_stopped", "utter_greet", "utter_default")

FORM_RULES = """
- rule: activate
  steps:
  - intent: request_table
  - action: table_form
  - active_loop: table_form
- rule: activate vip
  steps:
  - intent: request_vip_table
  - action: table_form
  - active_loop: table_form
- rule: submit
  condition:
  - active_loop: table_form
  steps:
  - action: table_form
  - active_loop: null
  - slot_was_set:
    - requested_slot: null
  - action: utter_submit
- rule: bot challenge in the form
  condition:
  - active_loop: table_form
  steps:
  - intent: bot_challenge
  - action: utter_iamabot
  - action: table_form
  - active_loop: table_form
- rule: stop the form
  condition:
  - active_loop: table_form
  steps:
  - intent: stop
  - action: action_deactivate_loop
  - active_loop: null
  - slot_was_set:
    - requested_slot: null
  - action: utter_stopped
- rule: greet
  steps:
  - intent: greet
  - action: utter_greet
"""


@pytest.fixture
def form_bot(make_bot: Callable[..., Bot]) -> Bot:
    return make_bot(FORM_DOMAIN, rules=FORM_RULES)


async def test_a_form_asks_for_each_slot_fills_them_and_runs_the_submit_rule(form_bot: Bot) -> None:
    bot = form_bot
    outcome = await bot.say("request_table")
    assert outcome.actions == [("table_form", "rule")]
    assert said(outcome) == ["utter_ask_table_form_cuisine"]  # the form's own question is preferred
    assert bot.tracker.active_loop == "table_form"
    assert bot.tracker.slots["table_kind"] == "standard"  # from_trigger_intent
    assert bot.tracker.slots[REQUESTED_SLOT] == "cuisine"

    assert said(await bot.say("inform", cuisine="thai")) == ["utter_ask_num_people"]  # from_entity
    assert bot.tracker.slots["cuisine"] == "thai"
    assert said(await bot.say("inform", number=4)) == ["utter_ask_outdoor"]
    assert bot.tracker.slots["num_people"] == 4
    assert said(await bot.say("deny")) == ["utter_ask_notes"]  # from_intent
    assert bot.tracker.slots["outdoor"] is False

    outcome = await bot.say("chitchat", text="a table by the window")  # from_text: any intent but the excluded ones
    assert bot.tracker.slots["notes"] == "a table by the window"
    assert outcome.actions == [("table_form", "loop"), ("utter_submit", "rule")]
    assert said(outcome) == ["utter_submit"]
    assert bot.tracker.active_loop is None
    assert bot.tracker.slots[REQUESTED_SLOT] is None
    assert not bot.server.calls  # no custom action on the way


async def test_slots_given_with_the_triggering_message_are_not_asked_for(form_bot: Bot) -> None:
    bot = form_bot
    outcome = await bot.say("request_vip_table", cuisine="thai")
    assert said(outcome) == ["utter_ask_num_people"]
    assert bot.tracker.slots["table_kind"] == "vip"
    assert bot.tracker.slots["cuisine"] == "thai"


async def test_the_generic_ask_response_is_used_when_the_form_has_none(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot(FORM_DOMAIN.replace("  utter_ask_table_form_cuisine:\n  - text: utter_ask_table_form_cuisine\n",
                                       ""), rules=FORM_RULES)
    assert said(await bot.say("request_table")) == ["utter_ask_cuisine"]


@pytest.mark.parametrize(("intent", "entities"), [("inform", {"number": 4}), ("affirm", {})])
async def test_a_mapping_conditioned_on_another_requested_slot_does_not_fill(
    form_bot: Bot, intent: str, entities: dict[str, Any]
) -> None:
    """While the cuisine is asked for, a number or a yes fills nothing: the form rejects the message."""
    bot = form_bot
    await bot.say("request_table")
    outcome = await bot.say(intent, **entities)
    assert bot.tracker.slots["num_people"] is None and bot.tracker.slots["outdoor"] is None
    assert "table_form" not in ran(outcome)
    assert ran(outcome) == ["action_default_fallback"]  # nothing else answers it here
    assert bot.tracker.active_loop == "table_form"


async def test_a_rejected_message_is_answered_by_a_rule_and_the_form_asks_again(form_bot: Bot) -> None:
    bot = form_bot
    await bot.say("request_table")
    outcome = await bot.say("bot_challenge", text="are you a bot?")
    assert ran(outcome) == ["utter_iamabot", "table_form"]
    assert said(outcome) == ["utter_iamabot", "utter_ask_table_form_cuisine"]
    assert bot.tracker.active_loop == "table_form" and bot.tracker.slots["notes"] is None
    assert said(await bot.say("inform", cuisine="thai")) == ["utter_ask_num_people"]  # and goes on


async def test_a_rule_without_a_loop_condition_answers_a_rejected_message_then_the_form_asks_again(
    form_bot: Bot,
) -> None:
    """Rules apply again when the form rejects the message (https://rasa.com/docs/rasa/forms, unhappy form paths);
    Rasa's RulePolicy then goes back to the loop where a rule that names none would listen."""
    bot = form_bot
    await bot.say("request_table")
    outcome = await bot.say("greet", text="hello")
    assert said(outcome) == ["utter_greet", "utter_ask_table_form_cuisine"]
    assert bot.tracker.active_loop == "table_form"


async def test_a_stop_rule_deactivates_the_form(form_bot: Bot) -> None:
    bot = form_bot
    await bot.say("request_table")
    await bot.say("inform", cuisine="thai")
    outcome = await bot.say("stop", text="stop")
    assert ran(outcome) == ["action_deactivate_loop", "utter_stopped"]
    assert said(outcome) == ["utter_stopped"]
    assert bot.tracker.active_loop is None
    assert bot.tracker.slots[REQUESTED_SLOT] is None
    assert bot.tracker.slots["cuisine"] == "thai"  # filled slots stay
    assert said(await bot.say("greet")) == ["utter_greet"]  # rules without a loop condition apply again


async def test_a_list_slot_keeps_every_value(form_bot: Bot) -> None:
    bot = form_bot
    await bot.say("greet", topping=["olives", "basil"])
    assert bot.tracker.slots["toppings"] == ["olives", "basil"]
    await bot.say("greet", topping="ham")
    assert bot.tracker.slots["toppings"] == ["ham"]


async def test_the_validation_action_sees_the_new_slots_and_can_refuse_them(make_bot: Callable[..., Bot]) -> None:
    """https://rasa.com/docs/rasa/forms#validating-form-input: ``validate_<form>`` runs after each answer;
    setting the slot back to None makes the form ask again."""
    bot = make_bot(FORM_DOMAIN + "actions: [validate_table_form]\n", rules=FORM_RULES)

    def validate(tracker: Tracker) -> ActionResult:
        if tracker.slots.get("cuisine") == "glue":
            return ActionResult(texts=["We don't serve glue."],
                                events=[{"event": "slot", "name": "cuisine", "value": None}])
        return ActionResult()

    bot.server.replies["validate_table_form"] = validate
    await bot.say("request_table")
    outcome = await bot.say("inform", cuisine="glue")
    assert bot.server.called[-1] == "validate_table_form"
    assert bot.server.calls[-1][1]["cuisine"] == "glue"  # the validator saw the extracted value
    assert said(outcome) == ["We don't serve glue.", "utter_ask_table_form_cuisine"]
    assert bot.tracker.slots["cuisine"] is None
    assert bot.tracker.slots[REQUESTED_SLOT] == "cuisine"
    outcome = await bot.say("inform", cuisine="thai")
    assert said(outcome) == ["utter_ask_num_people"]
    assert bot.tracker.slots["cuisine"] == "thai"


async def test_a_validation_action_may_fill_the_requested_slot_itself(make_bot: Callable[..., Bot]) -> None:
    """A custom slot extraction in ``validate_<form>`` is a fill: the form is not rejected."""
    bot = make_bot(FORM_DOMAIN + "actions: [validate_table_form]\n", rules=FORM_RULES)
    bot.server.replies["validate_table_form"] = lambda tracker: (
        events({"event": "slot", "name": "cuisine", "value": "thai"}) if tracker.text == "the usual" else ActionResult()
    )
    await bot.say("request_table")
    outcome = await bot.say("chitchat", text="the usual")
    assert bot.tracker.slots["cuisine"] == "thai"
    assert said(outcome) == ["utter_ask_num_people"]


async def test_a_custom_ask_action_is_called_when_the_domain_lists_it(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot(FORM_DOMAIN + "actions: [action_ask_num_people]\n", rules=FORM_RULES)
    bot.server.replies["action_ask_num_people"] = ActionResult(texts=["How many of you?"])
    await bot.say("request_table")
    outcome = await bot.say("inform", cuisine="thai")
    assert said(outcome) == ["How many of you?"]
    assert bot.server.called == ["action_ask_num_people"]
    assert bot.tracker.slots[REQUESTED_SLOT] == "num_people"


async def test_the_form_ignores_its_ignored_intents(make_bot: Callable[..., Bot]) -> None:
    """https://rasa.com/docs/rasa/forms: a form's ``ignored_intents`` never fill its slots, even from_text ones."""
    domain = FORM_DOMAIN.replace("    required_slots: [table_kind, cuisine, num_people, outdoor, notes]\n",
                                 "    ignored_intents: [greet]\n"
                                 "    required_slots: [table_kind, cuisine, num_people, outdoor, notes]\n")
    bot = make_bot(domain, rules=FORM_RULES)
    await bot.say("request_table", cuisine="thai")
    await bot.say("inform", number=2)
    await bot.say("affirm")
    assert bot.tracker.slots[REQUESTED_SLOT] == "notes"
    outcome = await bot.say("greet", text="hello there")
    assert bot.tracker.slots["notes"] is None
    assert said(outcome) == ["utter_greet", "utter_ask_notes"]


# ----------------------------------------------------------------------------------------- default actions and events

MOOD_DOMAIN = """
intents: [greet, mood_great, mood_unhappy, affirm, deny, chitchat, restart, back]
slots:
  name:
    type: text
    initial_value: friend
    mappings:
    - type: custom
  mood:
    type: text
    mappings:
    - type: custom
""" + utter("utter_greet", "utter_cheer_up", "utter_did_that_help", "utter_happy", "utter_goodbye", "utter_default",
            "utter_restart", "utter_back")

MOOD_STORIES = """
- story: sad
  steps:
  - intent: greet
  - action: utter_greet
  - intent: mood_unhappy
  - action: utter_cheer_up
  - action: utter_did_that_help
  - intent: affirm
  - action: utter_happy
- story: greet affirm
  steps:
  - intent: greet
  - action: utter_greet
  - intent: affirm
  - action: utter_goodbye
"""


@pytest.fixture
def mood_bot(make_bot: Callable[..., Bot]) -> Bot:
    return make_bot(MOOD_DOMAIN, stories=MOOD_STORIES)


async def test_action_restart_resets_the_conversation(mood_bot: Bot) -> None:
    bot = mood_bot
    await bot.say("greet")
    bot.tracker.set_slot("name", "Ann")
    bot.tracker.set_slot("mood", "sad")
    outcome = await bot.say("restart", text="/restart")
    assert outcome.actions == [("action_restart", "default")]
    assert said(outcome) == ["utter_restart"]
    assert bot.tracker.slots["name"] == "friend" and bot.tracker.slots["mood"] is None  # initial values
    assert bot.tracker.user_turns == 0 and bot.tracker.history == []


async def test_the_default_fallback_says_utter_default_and_forgets_the_message(mood_bot: Bot) -> None:
    bot = mood_bot
    await bot.say("greet")
    assert said(await bot.say("mood_unhappy")) == ["utter_cheer_up", "utter_did_that_help"]
    turns = bot.tracker.user_turns
    outcome = await bot.say("chitchat", text="what's the weather?")
    assert outcome.actions == [("action_default_fallback", "fallback")]
    assert said(outcome) == ["utter_default"]
    assert bot.tracker.user_turns == turns
    assert said(await bot.say("affirm")) == ["utter_happy"]  # as if the chitchat never came


async def test_the_default_fallback_also_reverts_the_slots_the_message_set(make_bot: Callable[..., Bot]) -> None:
    """Rasa's UserUtteranceReverted replays the events without the message: its slot events go with it."""
    city = "slots:\n  city:\n    type: text\n    mappings:\n    - type: from_entity\n      entity: city\n"
    domain = MOOD_DOMAIN.replace("slots:\n", city).replace("intents:", "entities: [city]\nintents:")
    bot = make_bot(domain, stories=MOOD_STORIES)
    await bot.say("greet", city="Paris")
    assert bot.tracker.slots["city"] == "Paris"
    outcome = await bot.say("chitchat", city="Rome")
    assert ran(outcome) == ["action_default_fallback"]
    assert bot.tracker.slots["city"] == "Paris"


async def test_action_back_undoes_the_last_exchange(mood_bot: Bot) -> None:
    """https://rasa.com/docs/rasa/default-actions#action_back: ``/back`` undoes the last user-bot interaction."""
    bot = mood_bot
    await bot.say("greet")
    await bot.say("mood_unhappy")
    outcome = await bot.say("back", text="/back")
    assert outcome.actions == [("action_back", "default")]
    assert said(outcome) == ["utter_back"]
    assert bot.tracker.user_turns == 1
    assert said(await bot.say("affirm")) == ["utter_goodbye"]  # the answer to the greeting, not to "did that help"


@pytest.mark.parametrize("carry_over", [True, False])
async def test_session_start_starts_a_new_session(make_bot: Callable[..., Bot], carry_over: bool) -> None:
    """https://rasa.com/docs/rasa/default-actions#action_session_start: slots carried over when configured."""
    session = f"session_config:\n  carry_over_slots_to_new_session: {str(carry_over).lower()}\n"
    domain = MOOD_DOMAIN.replace("restart, back]", "restart, back, session_start]") + session
    bot = make_bot(domain, stories=MOOD_STORIES)
    await bot.say("greet")
    bot.tracker.set_slot("mood", "sad")
    outcome = await bot.say("session_start", text="/session_start")
    assert outcome.actions == [("action_session_start", "default")]
    assert bot.tracker.history == [] and bot.tracker.user_turns == 0
    assert bot.tracker.slots["mood"] == ("sad" if carry_over else None)


EVENTS_DOMAIN = MOOD_DOMAIN + "actions: [action_custom]\n"
EVENTS_RULES = """
- rule: custom
  steps:
  - intent: chitchat
  - action: action_custom
"""


@pytest.fixture
def events_bot(make_bot: Callable[..., Bot]) -> Bot:
    return make_bot(EVENTS_DOMAIN, rules=EVENTS_RULES, stories=MOOD_STORIES)


async def test_slot_and_bot_events_of_a_custom_action(events_bot: Bot) -> None:
    bot = events_bot
    bot.server.replies["action_custom"] = ActionResult(
        texts=["Hi there"], events=[{"event": "slot", "name": "mood", "value": "happy"},
                                    {"event": "bot", "text": "Hi there"}])
    outcome = await bot.say("chitchat")
    assert said(outcome) == ["Hi there"]  # the bot event is the text, said once
    assert bot.tracker.slots["mood"] == "happy"
    assert bot.server.called == ["action_custom"]


async def test_a_followup_event_runs_that_action_next(events_bot: Bot) -> None:
    bot = events_bot
    bot.server.replies["action_custom"] = events({"event": "followup", "name": "utter_greet"})
    outcome = await bot.say("chitchat")
    assert outcome.actions == [("action_custom", "rule"), ("utter_greet", "followup")]


async def test_a_custom_action_can_activate_a_form(make_bot: Callable[..., Bot]) -> None:
    """An ``active_loop`` event starts the loop: Rasa's RulePolicy runs the form next (it was not the last action)."""
    bot = make_bot(FORM_DOMAIN + "actions: [action_start]\n", rules=FORM_RULES + textwrap.dedent("""
    - rule: start
      steps:
      - intent: chitchat
      - action: action_start
    """))
    bot.server.replies["action_start"] = events({"event": "slot", "name": "table_kind", "value": "standard"},
                                                {"event": "active_loop", "name": "table_form"})
    outcome = await bot.say("chitchat")
    assert ran(outcome) == ["action_start", "table_form"]
    assert said(outcome) == ["utter_ask_table_form_cuisine"]


async def test_reset_slots_and_restart_events(events_bot: Bot) -> None:
    bot = events_bot
    bot.tracker.set_slot("mood", "sad")
    bot.server.replies["action_custom"] = events({"event": "reset_slots"})
    await bot.say("chitchat")
    assert bot.tracker.slots["mood"] is None
    bot.tracker.set_slot("mood", "sad")
    bot.server.replies["action_custom"] = events({"event": "restart"})
    await bot.say("chitchat")
    assert bot.tracker.slots == Tracker.start(bot.project).slots
    assert bot.tracker.user_turns == 0


async def test_a_rewind_event_forgets_the_message(events_bot: Bot) -> None:
    bot = events_bot
    await bot.say("greet")
    bot.server.replies["action_custom"] = events({"event": "rewind"})
    await bot.say("chitchat")
    assert bot.tracker.user_turns == 1
    assert said(await bot.say("affirm")) == ["utter_goodbye"]  # the stories' answer to affirm after the greeting


async def test_an_undo_event_forgets_the_action(events_bot: Bot) -> None:
    bot = events_bot
    await bot.say("greet")
    before = [dict(s) for s in bot.tracker.history]
    bot.tracker.user("chitchat")
    bot.tracker.act("action_custom")
    bot.tracker.apply({"event": "undo"})
    assert bot.tracker.prev_action == LISTEN
    assert bot.tracker.history[: len(before)] == before
    assert len(bot.tracker.history) == len(before) + 1  # only the listen before the message is left


async def test_an_action_that_never_listens_is_stopped(events_bot: Bot) -> None:
    bot = events_bot
    bot.server.replies["action_custom"] = events({"event": "followup", "name": "action_custom"})
    outcome = await bot.say("chitchat")
    assert len(outcome.actions) == MAX_ACTIONS
    assert set(ran(outcome)) == {"action_custom"}


async def test_a_failed_custom_action_is_reported(events_bot: Bot) -> None:
    bot = events_bot
    bot.server.replies["action_custom"] = ActionResult(failed=True, error="connection refused")
    outcome = await bot.say("chitchat")
    assert outcome.failed == ["action_custom"]


async def test_a_retrieval_intent_is_answered_by_its_own_response(tmp_path: Path) -> None:
    """https://rasa.com/docs/rasa/chitchat-faqs: ``intent: faq`` -> ``action: utter_faq`` says ``utter_faq/<name>``."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "responses.yml").write_text(textwrap.dedent("""
    version: "3.1"
    responses:
      utter_faq/ask_hours:
      - text: We open at nine.
      utter_faq/ask_price:
      - text: It is free.
    """), encoding="utf-8")
    project = write_project(tmp_path, "intents: [faq, greet]\n" + utter("utter_greet"), rules="""
    - rule: faq
      steps:
      - intent: faq
      - action: utter_faq
    """)
    bot = Bot(build_policy(project))
    for question, answer in (("faq/ask_hours", "utter_faq/ask_hours"), ("faq/ask_price", "utter_faq/ask_price")):
        outcome = await bot.say(question)
        assert outcome.actions == [("utter_faq", "rule")]
        assert said(outcome) == [answer]
    latest = [e for e in bot.tracker.events if e["event"] == "user"][-1]
    assert latest["parse_data"]["intent"]["name"] == "faq/ask_price"  # the action server sees the full name


@pytest.mark.parametrize(
    ("confidence", "ranking", "expected"),
    [
        (0.9, [("greet", 0.9), ("affirm", 0.05)], "greet"),
        (0.5, [("greet", 0.5), ("affirm", 0.1)], NLU_FALLBACK),  # below the threshold
        (0.7, [("greet", 0.7), ("affirm", 0.65)], NLU_FALLBACK),  # too close to the second intent
        (0.7, [("greet", 0.7), ("affirm", 0.55)], "greet"),
        (0.7, [("greet", 0.7)], "greet"),
    ],
)
def test_the_fallback_classifier_thresholds(tmp_path: Path, confidence: float, ranking: list[tuple[str, float]],
                                            expected: str) -> None:
    project = write_project(tmp_path, "intents: [greet, affirm]\n", config="""
    pipeline:
    - name: WhitespaceTokenizer
    - name: DIETClassifier
    - name: FallbackClassifier
      threshold: 0.6
      ambiguity_threshold: 0.1
    """)
    assert nlu_intent(project, "greet", confidence, ranking) == expected


def test_without_a_fallback_classifier_the_intent_is_kept(tmp_path: Path) -> None:
    project = write_project(tmp_path, "intents: [greet]\n", config="""
    pipeline:
    - name: WhitespaceTokenizer
    - name: DIETClassifier
    """)
    assert nlu_intent(project, "greet", 0.01, [("greet", 0.01)]) == "greet"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/greet", ("greet", ())),
        ('/inform{"size": "large"}', ("inform", (EntityValue("size", "large"),))),
        ('/inform{"size": ["s", "m"]}', ("inform", (EntityValue("size", "s"), EntityValue("size", "m")))),
        ("/faq/ask_hours", ("faq/ask_hours", ())),
        ("/unknown_intent", None),  # not the project's: the NLU reads it
        ('/inform{"size": ', None),  # malformed JSON
        ("hello", None),
        (None, None),
    ],
)
def test_intent_payloads_are_taken_as_given(tmp_path: Path, text: str | None, expected: Any) -> None:
    project = write_project(tmp_path, "intents: [greet, inform, faq]\nentities: [size]\n")
    assert payload_intent(project, text) == expected


# -------------------------------------------------------------------------------------------- RasaDialogue and storage


@dataclass
class Runner:
    """The engine's side of RasaDialogue.turn: it records each payload and answers from a table."""

    replies: dict[str, ActionResult] = field(default_factory=dict)
    payloads: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, action: str, payload: dict[str, Any]) -> ActionResult:
        self.payloads.append(json.loads(json.dumps(payload)))  # what goes over the wire
        return self.replies.get(action, ActionResult())


async def dialogue_turn(dialogue: RasaDialogue, state: str, slots: Mapping[str, Any], runner: Runner, intent: str,
                        text: str, **entities: Any) -> TurnResult:
    return await dialogue.turn(
        state, slots, intent=intent, confidence=0.95, ranking=[(intent, 0.95)],
        entities=[EntityValue(k, v) for k, v in entities.items()], text=text, run=runner, sender_id="c-1",
    )


async def test_a_conversation_is_stored_between_turns_without_customer_text(form_bot: Bot) -> None:
    dialogue = RasaDialogue(form_bot.policy, action_server_domain(form_bot.project))
    runner = Runner()
    state, slots = IDLE, dialogue.store(Tracker.start(form_bot.project))[1]
    script: list[tuple[str, str, dict[str, Any]]] = [("request_table", "I want a table", {}), ("inform", "thai food please", {"cuisine": "thai"}),
              ("inform", "we are 4", {"number": 4}), ("affirm", "yes outside", {})]
    for intent, text, entities in script:
        result = await dialogue_turn(dialogue, state, slots, runner, intent, text, **entities)
        state, slots = result.state, result.slots
        json.dumps(slots)  # JSON all the way
        assert "thai food" not in json.dumps(slots[TRACKER_SLOT]) and "outside" not in json.dumps(slots[TRACKER_SLOT])
    assert state == "table_form"
    assert [name for name, _ in result.result.responses] == ["utter_ask_notes"]
    result = await dialogue_turn(dialogue, state, slots, runner, "chitchat", "secret window seat")
    assert result.state == IDLE
    assert [r for r, _ in result.result.responses] == ["utter_submit"]
    assert result.slots["notes"] == "secret window seat"  # a slot the form filled keeps its text, as in Rasa
    assert "secret" not in json.dumps(result.slots[TRACKER_SLOT])
    assert result.actions == [("table_form", "loop"), ("utter_submit", "rule")]


async def test_restore_gives_back_the_tracker_that_was_stored(mood_bot: Bot) -> None:
    bot = mood_bot
    await bot.say("greet")
    await bot.say("mood_unhappy")
    dialogue = RasaDialogue(bot.policy, {})
    state, slots = dialogue.store(bot.tracker)
    restored = dialogue.restore(state, json.loads(json.dumps(slots)))
    assert restored.states() == bot.tracker.states()
    assert restored.slots == bot.tracker.slots
    assert (restored.prev_action, restored.intent, restored.user_turns) == (bot.tracker.prev_action,
                                                                            bot.tracker.intent, bot.tracker.user_turns)
    restored.user("affirm")
    assert bot.policy.predict(restored).action == "utter_happy"


async def test_a_pending_followup_and_the_active_loop_survive_storage(form_bot: Bot) -> None:
    bot = form_bot
    await bot.say("request_table")
    bot.tracker.apply({"event": "followup", "name": "utter_greet"})
    dialogue = RasaDialogue(bot.policy, {})
    state, slots = dialogue.store(bot.tracker)
    assert state == "table_form"
    restored = dialogue.restore(state, slots)
    assert restored.active_loop == "table_form" and restored.followup == "utter_greet"
    assert TRACKER_SLOT not in restored.slots


async def test_the_action_server_payload_reads_with_rasa_sdk(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot(FORM_DOMAIN + "actions: [validate_table_form]\n", rules=FORM_RULES)
    dialogue = RasaDialogue(bot.policy, action_server_domain(bot.project),
                            custom_actions=frozenset({"validate_table_form"}))
    runner = Runner()
    _, slots = dialogue.store(Tracker.start(bot.project))
    first = await dialogue_turn(dialogue, IDLE, slots, runner, "request_table", "a table please")
    await dialogue_turn(dialogue, first.state, first.slots, runner, "inform", "thai please", cuisine="thai")
    payload = runner.payloads[-1]
    assert payload["next_action"] == "validate_table_form" and payload["sender_id"] == "c-1"
    assert payload["domain"]["forms"]["table_form"]["required_slots"][1] == "cuisine"
    sdk = SdkTracker.from_dict(payload["tracker"])
    assert sdk.sender_id == "c-1"
    assert sdk.get_slot("cuisine") == "thai"
    assert sdk.get_slot("requested_slot") == "cuisine"
    assert sdk.latest_message["intent"]["name"] == "inform"
    assert sdk.latest_message["text"] == "thai please"
    assert list(sdk.get_latest_entity_values("cuisine")) == ["thai"]
    assert sdk.active_loop_name == "table_form"
    assert sdk.slots_to_validate() == {"cuisine": "thai"}  # what a FormValidationAction validates
    assert [e["event"] for e in sdk.events] == ["action", "user", "slot", "action", "slot"]  # this turn's events


def test_action_call_on_a_fresh_tracker(form_bot: Bot) -> None:
    payload = action_call(Tracker.start(form_bot.project), "action_x", sender_id="s", domain={})
    sdk = SdkTracker.from_dict(payload["tracker"])
    assert sdk.active_loop == {} and sdk.latest_message["intent"] == {}
    assert sdk.get_slot("cuisine") is None


def test_loop_flows_has_an_idle_state_and_one_state_per_form(form_bot: Bot) -> None:
    flows = loop_flows(form_bot.project)
    assert set(flows.states) == {IDLE, "table_form"}
    assert flows.initial_state == IDLE
    context = FlowContext(IDLE, "request_table")
    assert flows.advance(context, "activate__table_form") == "table_form"
    assert flows.advance(context, "action_deactivate_loop") == IDLE
    assert flows.default_policy(None, ["a", "b"]) == "a"


def test_loop_flows_without_forms(tmp_path: Path) -> None:
    flows = loop_flows(write_project(tmp_path, "intents: [greet]\n"))
    assert flows.states == (IDLE,)
