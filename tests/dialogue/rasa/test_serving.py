"""What serving an imported Rasa bot showed, as tests: lookup tables and regexes as entities (RegexEntityExtractor),
responses filled from the tracker the action was called with, no backed-off action on a message out of the blue, and
the buttons that go with a reply."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dialogue.rasa.entities import RegexEntities
from dialogue.rasa.stories import EntityValue
from dialogue.rasa.tracker import Tracker
from dialogue.types import ActionResult
from tests.dialogue.rasa.test_policy import build_policy, write_project
from tests.dialogue.rasa.test_turn import Bot, ran, said

NLU = """
version: "3.1"
nlu:
- intent: inform
  examples: |
    - to [John](recipient)
- lookup: recipient
  examples: |
    - Priya
    - my landlord
- regex: account_number
  examples: |
    - \\bAC-\\d{6}\\b
- lookup: not_an_entity
  examples: |
    - whatever
"""


@pytest.fixture
def bots(tmp_path: Path) -> Callable[..., Bot]:
    """Bots on small projects written here (a fresh folder each)."""
    made: list[Bot] = []

    def _make(domain: str, **files: str) -> Bot:
        made.append(Bot(build_policy(write_project(tmp_path / f"bot{len(made)}", domain, **files))))
        return made[-1]

    return _make


def _project(tmp_path: Path, extractor: str) -> object:
    write_project(tmp_path, "intents: [inform]\nentities: [recipient, account_number]\n",
                            config=f"pipeline:\n- name: WhitespaceTokenizer\n{extractor}")
    (tmp_path / "data" / "nlu.yml").write_text(NLU, encoding="utf-8")
    from dialogue.rasa.project import load_project

    return load_project(tmp_path)


@pytest.mark.parametrize(
    ("text", "found", "expected"),
    [
        ("send 40 to priya please", [], [("recipient", "priya")]),
        ("pay my landlord from AC-123456", [], [("recipient", "my landlord"), ("account_number", "AC-123456")]),
        ("pay Priyanka", [], []),  # word boundaries: not a match inside another word
        ("send it to priya", [EntityValue("recipient", "Mo")], [("recipient", "Mo")]),  # the NLU's entity stays
    ],
)
def test_lookup_tables_and_regexes_are_entities(tmp_path: Path, text: str, found: list[EntityValue],
                                                expected: list[tuple[str, str]]) -> None:
    extractor = RegexEntities.from_project(_project(tmp_path, "- name: RegexEntityExtractor\n"))  # type: ignore[arg-type]
    assert [(e.entity, e.value) for e in extractor.extract(text, found)] == expected


def test_without_the_extractor_in_the_pipeline_nothing_is_added(tmp_path: Path) -> None:
    extractor = RegexEntities.from_project(_project(tmp_path, "- name: DIETClassifier\n"))  # type: ignore[arg-type]
    assert extractor.extract("send 40 to priya") == ()
    only_regexes = RegexEntities.from_project(_project(
        tmp_path / "b", "- name: RegexEntityExtractor\n  use_lookup_tables: false\n  case_sensitive: true\n"))  # type: ignore[arg-type]
    assert [e.entity for e in only_regexes.extract("priya AC-123456 ac-654321")] == ["account_number"]


TRANSFER = """
intents: [transfer, inform]
slots:
  recipient:
    type: text
    mappings: [{type: custom}]
  amount:
    type: text
    mappings: [{type: custom}]
responses:
  utter_done:
  - text: "Done: {amount} sent to {recipient}."
  utter_which:
  - text: Which account?
    buttons:
    - {title: Checking, payload: '/inform{"account": "checking"}'}
    - {title: Savings, payload: '/inform{"account": "savings"}'}
actions: [action_transfer]
"""


async def test_a_response_is_filled_from_the_tracker_the_action_was_called_with(bots: Callable[..., Bot]) -> None:
    bot = bots(TRANSFER, rules="""
    - rule: transfer
      steps:
      - intent: transfer
      - action: action_transfer
    """)
    bot.tracker.slots.update({"recipient": "John", "amount": "50"})
    bot.server.replies["action_transfer"] = ActionResult(
        responses=[("utter_done", {})],
        events=[{"event": "slot", "name": "recipient", "value": None}, {"event": "slot", "name": "amount", "value": None}])
    outcome = await bot.say("transfer")
    assert said(outcome) == ["utter_done"]
    assert outcome.utterances[0].values["recipient"] == "John" and outcome.utterances[0].values["amount"] == "50"
    assert bot.tracker.slots["recipient"] is None  # reset after it was said, as the action asked


ASKING = TRANSFER.replace("responses:\n", "responses:\n  utter_ask_recipient:\n  - text: To whom?\n")


async def test_no_story_action_for_an_intent_out_of_the_blue(bots: Callable[..., Bot]) -> None:
    bot = bots(ASKING, stories="""
    - story: transfer
      steps:
      - intent: transfer
      - action: utter_ask_recipient
      - intent: inform
      - action: action_transfer
    """)
    outcome = await bot.say("inform")  # the first message: no question was asked
    assert ran(outcome) == ["action_default_fallback"] and bot.server.called == []
    second = bots(ASKING, stories="""
    - story: transfer
      steps:
      - intent: transfer
      - action: utter_ask_recipient
      - intent: inform
      - action: action_transfer
    """)
    await second.say("transfer")
    assert ran(await second.say("inform", recipient="Jo")) == ["action_transfer"]  # in context it runs


async def test_the_buttons_of_the_last_message_go_with_the_reply(bots: Callable[..., Bot]) -> None:
    from dialogue.rasa.turn import RasaDialogue, action_server_domain

    bot = bots(TRANSFER, rules="""
    - rule: ask
      steps:
      - intent: transfer
      - action: utter_which
    """)
    dialogue = RasaDialogue(bot.policy, action_server_domain(bot.project))

    async def run(action: str, payload: dict[str, object]) -> ActionResult:
        raise AssertionError("no custom action here")

    result = await dialogue.turn("idle", {}, intent="transfer", confidence=1.0, ranking=[], entities=[],
                                 text="I want to send money", run=run, sender_id="c1")
    assert result.result.buttons == [("Checking", '/inform{"account": "checking"}'),
                                     ("Savings", '/inform{"account": "savings"}')]
    assert isinstance(Tracker.start(bot.project), Tracker)


ROLES = """
intents: [book]
entities:
  - city:
      roles: [departure, destination]
slots:
  origin:
    type: text
    mappings:
    - {type: from_entity, entity: city, role: departure}
  destination:
    type: text
    mappings:
    - {type: from_entity, entity: city, role: destination}
  any_city:
    type: text
    mappings:
    - {type: from_entity, entity: city}
responses:
  utter_ok:
  - text: ok
"""


async def test_entity_roles_fill_their_own_slots(bots: Callable[..., Bot]) -> None:
    from dialogue.rasa.entities import entity_values
    from dialogue.rasa.turn import respond

    bot = bots(ROLES, rules="""
    - rule: book
      steps:
      - intent: book
      - action: utter_ok
    """)
    found = entity_values([("city#departure", "Berlin"), ("city#destination", "Rome"), ("city", "Paris")])
    assert found == (EntityValue("city", "Berlin", "departure"), EntityValue("city", "Rome", "destination"),
                     EntityValue("city", "Paris"))
    await respond(bot.policy, bot.tracker, intent="book", entities=found, execute=bot.server)
    # as rasa-sdk: a mapping without a role takes only an entity without one
    assert (bot.tracker.slots["origin"], bot.tracker.slots["destination"], bot.tracker.slots["any_city"]) == (
        "Berlin", "Rome", "Paris")
    assert {"entity:city#departure", "entity:city#destination", "entity:city"} <= set(bot.tracker.history[-1])


async def test_a_dead_action_server_gets_a_clear_reply_not_silence(bots: Callable[..., Bot]) -> None:
    from dialogue.rasa.turn import RasaDialogue, action_server_domain

    bot = bots(TRANSFER, rules="""
    - rule: transfer
      steps:
      - intent: transfer
      - action: action_transfer
    """)
    dialogue = RasaDialogue(bot.policy, action_server_domain(bot.project), frozenset({"action_transfer"}))

    async def down(action: str, payload: dict[str, object]) -> ActionResult:
        return ActionResult(failed=True, error="connection_error")  # what the remote runner returns when it is down

    result = await dialogue.turn("idle", {}, intent="transfer", confidence=1.0, ranking=[], entities=[],
                                 text="send money", run=down, sender_id="c1")
    assert result.actions == [("action_transfer", "rule")] and result.result.failed
    assert result.result.messages() == [("utter_safe_reply", {})]
