"""The scenario format itself: loading, and each expectation failing when it should."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialogue.scenarios import ExpectedTurn, Scenario, ScenarioError, check_turn, run_scenario
from dialogue.types import TurnReply


def reply(text: str = "ok", flags: tuple[str, ...] = (), intent: str = "greet", action: str = "utter_greet") -> TurnReply:
    return TurnReply("c1", "bot-1", "m1", text, intent=intent, confidence=0.9, action=action, flags=flags)


@pytest.mark.parametrize(
    ("expected", "got", "failure"),
    [
        (ExpectedTurn("hi", intent="greet"), reply(), None),
        (ExpectedTurn("hi", intent="goodbye"), reply(), "intent"),
        (ExpectedTurn("hi", action="utter_goodbye"), reply(), "action"),
        (ExpectedTurn("hi", reply="(?i)hello"), reply("Hello!"), None),
        (ExpectedTurn("hi", reply="bye"), reply("Hello!"), "does not match"),
        (ExpectedTurn("hi", not_reply="4111"), reply("card [CARD]"), None),
        (ExpectedTurn("hi", not_reply="4111"), reply("card 4111 1111"), "must not"),
        (ExpectedTurn("hi", flags=("pii",)), reply(flags=("pii", "banned_term")), None),
        (ExpectedTurn("hi", flags=("toxic_reply",)), reply(flags=("pii",)), "flags"),
        (ExpectedTurn("hi", slots={"order_id": "12591"}), reply(), "slot order_id"),
    ],
)
def test_check_turn(expected: ExpectedTurn, got: TurnReply, failure: str | None) -> None:
    failures = check_turn(expected, got, {})
    if failure is None:
        assert failures == []
    else:
        assert len(failures) == 1 and failure in failures[0]


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "s.yml"
    path.write_text(body, encoding="utf-8")
    return path


def test_load_reads_every_key(tmp_path: Path) -> None:
    path = write(tmp_path, 'name: n\nlanguage: zh\nturns:\n  - user: "hi"\n    flags: [pii]\n    not_reply: "x"\n'
                           '    model_says: "bad words"\n')
    turn = Scenario.load(path).turns[0]
    assert (turn.flags, turn.not_reply, turn.model_says) == (("pii",), "x", "bad words")


@pytest.mark.parametrize(
    "body",
    ["turns: []\n", 'turns:\n  - user: "hi"\n    colour: red\n', 'turns:\n  - user: "hi"\n    flags: pii\n',
     "turns: [\n", 'staffing: maybe\nturns:\n  - user: "hi"\n'],
)
def test_malformed_scenarios_name_the_problem(tmp_path: Path, body: str) -> None:
    with pytest.raises(ScenarioError, match="s.yml"):
        Scenario.load(write(tmp_path, body))


class RemoteClient:
    async def handle_message(self, conversation_id: str | None, message_id: str, text: str) -> TurnReply:
        return reply()

    async def get_conversation(self, conversation_id: str) -> None:
        return None


async def test_model_says_needs_an_in_process_engine(tmp_path: Path) -> None:
    scenario = Scenario.load(write(tmp_path, 'turns:\n  - user: "hi"\n    model_says: "x"\n'))
    with pytest.raises(ScenarioError, match="in-process engine"):
        await run_scenario(RemoteClient(), scenario)


async def test_staffing_offline_needs_an_in_process_engine(tmp_path: Path) -> None:
    scenario = Scenario.load(write(tmp_path, 'staffing: offline\nturns:\n  - user: "hi"\n'))
    assert scenario.staffing == "offline"
    with pytest.raises(ScenarioError, match="in-process engine"):
        await run_scenario(RemoteClient(), scenario)
