"""Test-only rasa-sdk actions for tests/dialogue/test_actions.py: a rejecting, a crashing and a sync action."""

from __future__ import annotations

import threading
from typing import Any

from rasa_sdk import Action, ActionExecutionRejection, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher


class ActionReject(Action):
    """Always refuses to run (rasa-sdk answers HTTP 400)."""

    def name(self) -> str:
        return "action_reject"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        raise ActionExecutionRejection(self.name(), "not in this state")


class ActionCrash(Action):
    """Raises an unexpected error (rasa-sdk answers HTTP 500)."""

    def name(self) -> str:
        return "action_crash"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        raise RuntimeError("boom")


class ActionSyncEcho(Action):
    """A blocking (sync) action: reports whether it ran on the main thread, echoes the latest text."""

    def name(self) -> str:
        return "action_sync_echo"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[dict[str, Any]]:
        on_main = threading.current_thread() is threading.main_thread()
        dispatcher.utter_message(response="utter_echo", on_main_thread=on_main, n=3)
        dispatcher.utter_message(text=tracker.latest_message.get("text"))
        return [SlotSet("echoed", True), SlotSet("handoff", True)]
