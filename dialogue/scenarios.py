"""Scripted conversations (YAML) replayed against a dialogue engine: data, not code.

A scenario names the user turns and, for each, what must happen: the intent the NLU finds, the action
the policy takes, slot values after the turn, a regular expression the reply must contain (``reply``) or must
not contain (``not_reply``), and the safety/turn flags the reply must carry (``flags``, e.g. ``pii``,
``prompt_injection``, ``toxic_reply``).

``staffing`` (top level: ``online``, the default, or ``offline``) says whether a colleague can take a hand-off during
the scenario, so a hand-off scenario means the same whatever the console's sessions are.

``model_says`` scripts a misbehaving reply model for one turn: whatever the action asks for, the generator writes that
text, so a scenario can show what the output classifier does with a toxic reply (the real demo generator never writes
one). It needs an in-process :class:`~dialogue.engine.DialogueEngine`, not a remote client.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml

from dialogue.errors import DialogueError
from dialogue.types import Conversation, TurnReply

if TYPE_CHECKING:
    from runtime.types import Act, Realisation


class ScenarioError(DialogueError):
    """A scenario file is missing or malformed (the message names the file and the turn)."""


@dataclass(frozen=True)
class ExpectedTurn:
    user: str
    intent: str | None = None
    action: str | None = None
    slots: dict[str, Any] = field(default_factory=dict)
    reply: str | None = None
    not_reply: str | None = None
    flags: tuple[str, ...] = ()
    model_says: str | None = None


_STAFFING = {"online": 1, "offline": 0}  # agents signed in, per scenario 'staffing' value
_TURN_KEYS = frozenset({"user", "intent", "action", "slots", "reply", "not_reply", "flags", "model_says"})


@dataclass(frozen=True)
class Scenario:
    name: str
    path: Path
    language: str
    turns: tuple[ExpectedTurn, ...]
    staffing: str = "online"  # "online": an agent can take a hand-off; "offline": nobody can (in-process engines)

    @classmethod
    def load(cls, path: Path) -> Scenario:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ScenarioError(f"cannot read scenario {path}: {exc}") from exc
        if not isinstance(raw, dict) or not isinstance(raw.get("turns"), list) or not raw["turns"]:
            raise ScenarioError(f"scenario {path} needs a non-empty 'turns' list")
        turns = []
        for index, turn in enumerate(raw["turns"], 1):
            if not isinstance(turn, dict) or not isinstance(turn.get("user"), str):
                raise ScenarioError(f"scenario {path}, turn {index}: needs a 'user' string")
            unknown = set(turn) - _TURN_KEYS
            if unknown:
                raise ScenarioError(f"scenario {path}, turn {index}: unknown keys {sorted(unknown)}")
            flags = turn.get("flags") or []
            if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
                raise ScenarioError(f"scenario {path}, turn {index}: 'flags' must be a list of strings")
            turns.append(
                ExpectedTurn(
                    user=turn["user"],
                    intent=turn.get("intent"),
                    action=turn.get("action"),
                    slots=dict(turn.get("slots") or {}),
                    reply=turn.get("reply"),
                    not_reply=turn.get("not_reply"),
                    flags=tuple(flags),
                    model_says=turn.get("model_says"),
                )
            )
        staffing = str(raw.get("staffing", "online"))
        if staffing not in _STAFFING:
            raise ScenarioError(f"scenario {path}: 'staffing' must be one of {sorted(_STAFFING)}")
        return cls(name=str(raw.get("name", path.stem)), path=path, language=str(raw.get("language", "en")),
                   turns=tuple(turns), staffing=staffing)


def discover(paths: list[Path]) -> list[Path]:
    """Scenario files under the given files or folders, sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*.y*ml") if p.suffix in {".yml", ".yaml"}))
        elif path.is_file():
            found.append(path)
        else:
            raise ScenarioError(f"no scenario file or folder at {path}")
    return found


@dataclass(frozen=True)
class TurnOutcome:
    index: int
    user: str
    reply: str
    intent: str | None
    action: str | None
    failures: tuple[str, ...]


@dataclass(frozen=True)
class ScenarioResult:
    scenario: Scenario
    turns: tuple[TurnOutcome, ...]

    @property
    def passed(self) -> bool:
        return all(not t.failures for t in self.turns)

    def describe(self) -> str:
        lines = [f"{'PASS' if self.passed else 'FAIL'}  {self.scenario.name}  ({self.scenario.path})"]
        for t in self.turns:
            mark = "ok " if not t.failures else "ERR"
            lines.append(f"  {mark} #{t.index} user: {t.user!r}")
            lines.append(f"        bot [{t.intent} -> {t.action}]: {t.reply!r}")
            lines.extend(f"        ! {f}" for f in t.failures)
        return "\n".join(lines)


class TurnClient(Protocol):
    """Anything that runs a turn: the engine itself, or a client of the WebSocket server."""

    async def handle_message(self, conversation_id: str | None, message_id: str, text: str) -> TurnReply: ...

    async def get_conversation(self, conversation_id: str) -> Conversation | None: ...


def check_turn(expected: ExpectedTurn, reply: TurnReply, slots: dict[str, Any]) -> list[str]:
    failures = []
    if expected.intent is not None and reply.intent != expected.intent:
        failures.append(f"intent: expected {expected.intent!r}, got {reply.intent!r}")
    if expected.action is not None and reply.action != expected.action:
        failures.append(f"action: expected {expected.action!r}, got {reply.action!r}")
    for slot, value in expected.slots.items():
        got = slots.get(slot)
        if (None if value is None else str(value)) != (None if got is None else str(got)):
            failures.append(f"slot {slot}: expected {value!r}, got {got!r}")
    if expected.reply is not None and not re.search(expected.reply, reply.text):
        failures.append(f"reply does not match /{expected.reply}/")
    if expected.not_reply is not None and re.search(expected.not_reply, reply.text):
        failures.append(f"reply matches /{expected.not_reply}/, which it must not")
    missing = [f for f in expected.flags if f not in reply.flags]
    if missing:
        failures.append(f"flags: expected {missing} among {list(reply.flags)}")
    return failures


class _ScriptedModel:
    """A reply model that writes one fixed text for every act (``model_says``); templates stay the real ones, so the
    engine's safe replacement reply is what the bot really says."""

    def __init__(self, inner: Any, text: str) -> None:
        self.inner = inner
        self.text = text

    async def realise(self, act: Act, on_token: Any = None) -> Realisation:
        from runtime.types import Realisation

        return Realisation(text=self.text, source="model")

    def render_template(self, act: Act) -> str:
        return str(self.inner.render_template(act))


def _turn_client(client: TurnClient, turn: ExpectedTurn, scenario: Scenario) -> TurnClient:
    if turn.model_says is None:
        return client
    from dialogue.engine import DialogueEngine

    if not isinstance(client, DialogueEngine):
        raise ScenarioError(f"scenario {scenario.path}: 'model_says' needs an in-process engine")
    return DialogueEngine(client.parts, client.store, _ScriptedModel(client.generator, turn.model_says), clock=client.clock)


def _staffed_client(client: TurnClient, scenario: Scenario) -> TurnClient:
    """An in-process engine whose hand-offs see the scenario's staffing, whatever the console's sessions say: a
    scenario is a script, so whether a colleague is online is part of it. A remote client keeps the server's."""
    from dialogue.engine import DialogueEngine
    from dialogue.handoff import fixed_staffing

    if not isinstance(client, DialogueEngine):
        if scenario.staffing != "online":
            raise ScenarioError(f"scenario {scenario.path}: 'staffing: {scenario.staffing}' needs an in-process engine")
        return client
    return client.with_parts(staffing=fixed_staffing(_STAFFING[scenario.staffing]))


async def run_scenario(client: TurnClient, scenario: Scenario) -> ScenarioResult:
    """Replay every turn (even after a failure, so a report shows the whole conversation)."""
    client = _staffed_client(client, scenario)
    conversation_id: str | None = None
    opener = getattr(client, "open_conversation", None)
    if opener is not None:  # an in-process engine: open in the scenario's language, as a widget declares its own
        conversation_id = await opener(None, scenario.language)
    outcomes = []
    for index, turn in enumerate(scenario.turns, 1):
        runner = _turn_client(client, turn, scenario)
        reply = await runner.handle_message(conversation_id, uuid.uuid4().hex, turn.user)
        conversation_id = reply.conversation_id
        conversation = await client.get_conversation(conversation_id)
        slots = dict(conversation.slots) if conversation else {}
        outcomes.append(
            TurnOutcome(index, turn.user, reply.text, reply.intent, reply.action, tuple(check_turn(turn, reply, slots)))
        )
    return ScenarioResult(scenario, tuple(outcomes))
