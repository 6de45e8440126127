"""The custom actions of __BOT_NAME__, written against rasa-sdk: they run in-process (``actions: actions.py`` in
bot.yml) or in an action server, from this folder::

    KEFU_BOT_DIR=$PWD python -m rasa_sdk --actions actions --port 5055

Each action is named in dialogue.yml. To add one: a class with ``name()`` and ``run()``, a response for what it says in
domain.yml, and its name in dialogue.yml. ``KEFU_BOT_DIR`` (this folder by default) is read when an action runs,
never at import. Customer text is never logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import yaml
from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from dialogue.stock_actions import AnswerFromKnowledge, HandOff

logger = logging.getLogger("kefu.bot.actions")

KB_THRESHOLD = 0.5  # the lowest knowledge-base score that answers (the environment's KEFU_KB_THRESHOLD wins)
STATUS_TEXT: dict[str, dict[str, str]] = {
    "en": {"processing": "being prepared", "shipped": "on its way", "delivered": "delivered", "cancelled": "cancelled"},
    "zh": {"processing": "正在备货", "shipped": "已发货", "delivered": "已送达", "cancelled": "已取消"},
}


def bot_dir() -> Path:
    env = os.environ.get("KEFU_BOT_DIR")
    return Path(env).resolve() if env else Path(__file__).resolve().parent


def language_of(tracker: Tracker) -> str:
    """``en`` or ``zh``: the conversation's language (slot ``language``, else the message's metadata)."""
    lang = tracker.get_slot("language") or (tracker.latest_message or {}).get("metadata", {}).get("language") or "en"
    return "zh" if str(lang).lower().startswith("zh") else "en"


def load_orders(path: Path) -> dict[str, str]:
    """Order number -> status, from the YAML file (read on every lookup: edits show at once; keep it small)."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {str(o["id"]): str(o["status"]) for o in raw.get("orders") or []}


class ActionOrderStatus(Action):
    """Say where an order is, or that there is no such order (and forget the number, so it is asked again)."""

    def name(self) -> str:
        return "action_order_status"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        value = next(tracker.get_latest_entity_values("order_id"), None) or tracker.get_slot("order_id")
        order_id = str(value or "").strip().lstrip("#")
        if not order_id:
            dispatcher.utter_message(response="utter_ask_order_id")
            return []
        orders = await asyncio.to_thread(load_orders, bot_dir() / "data" / "orders.yml")
        status = orders.get(order_id)
        if status is None:
            dispatcher.utter_message(response="utter_order_not_found", order_id=order_id)
            return [SlotSet("order_id", None)]
        text = STATUS_TEXT[language_of(tracker)].get(status, status)
        dispatcher.utter_message(response="utter_order_status", order_id=order_id, status=text)
        return [SlotSet("order_id", order_id)]


class ActionAnswerKB(AnswerFromKnowledge):
    """Answer the latest message from data/kb.yml, or say what the bot can do when nothing there is close enough."""

    threshold = KB_THRESHOLD

    def name(self) -> str:
        return "action_answer_kb"


class ActionHandoff(HandOff):
    """Hand the conversation to a human agent."""

    def name(self) -> str:
        return "action_handoff"
