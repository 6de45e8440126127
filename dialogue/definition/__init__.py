"""The dialogue definition: a bot's dialogue written as data (``dialogue.yml``), compiled into its FSM.

Bot authors describe *tasks* (the intents that start them, the slots they need and the response that asks for each,
an optional confirmation, the action that completes them), hand-off, small talk, the knowledge action, cancel and
the fallback; ``docs/bots.md`` is the reference. :func:`load_definition` checks the file against the bot's domain
and actions and refuses it with ``file:line: where: what, and the fix``; :meth:`DialogueDefinition.flows` compiles it
into a python-statemachine class whose events are actions, so the enabled events stay the policy's allowed set and
the rest of Kefu (engine, policies, simulator) sees the same :class:`~dialogue.flows.Flows` a Python flows module
gives. The definition also yields the hand-written default policy (:meth:`DialogueDefinition.default_policy`) and
is what the user simulator derives its goals from, so one file drives the FSM, the rules and the RL training.

Why compile to python-statemachine instead of interpreting the YAML: the FSM is the contract between the dialogue
and the policies (``Flows.allowed`` / ``Flows.advance``); a Python flows module remains possible for what the data
cannot say, and both kinds are served by the same code.

Two modules: :mod:`~dialogue.definition.parser` reads and checks the file, :mod:`~dialogue.definition.compiler` holds
the checked definition and compiles it.
"""

from __future__ import annotations

from dialogue.definition.compiler import (
    HANDOFF_STATE,
    IDLE,
    Cancel,
    Confirm,
    DefinitionError,
    DialogueDefinition,
    Handoff,
    Knowledge,
    Rule,
    SlotSpec,
    SmallTalk,
    Task,
    definition_of,
)
from dialogue.definition.parser import load_definition

__all__ = [
    "HANDOFF_STATE",
    "IDLE",
    "Cancel",
    "Confirm",
    "DefinitionError",
    "DialogueDefinition",
    "Handoff",
    "Knowledge",
    "Rule",
    "SlotSpec",
    "SmallTalk",
    "Task",
    "definition_of",
    "load_definition",
]
