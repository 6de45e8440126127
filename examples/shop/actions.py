"""Custom actions of the demo shop, written against rasa-sdk so they run in-process or in an action server.

In-process: ``dialogue.actions.InProcessActions("examples/shop/actions.py")``.
Action server (from the bot folder, so ``shopdb`` next to this file imports)::

    cd examples/shop && KEFU_BOT_DIR=$PWD SANIC_HOST=127.0.0.1 python -m rasa_sdk --actions actions --port 5055

Configuration comes from the environment, read when an action runs (never at import):
``KEFU_BOT_DIR`` (the bot folder, default: this file's folder; its ``data/`` and ``models/`` are used) and
``KEFU_KB_THRESHOLD`` (minimum knowledge-base similarity for ``action_answer_kb``, default 0.5).

Conventions (see ``dialogue/actions.py``): a hand-off is requested with ``SlotSet("handoff", True)``; an action
that finds an unknown order clears ``order_id`` so the dialogue asks for it again. Sqlite and model work runs in
a worker thread (``asyncio.to_thread``) so neither the in-process runner's nor the action server's event loop
blocks. Customer text is never logged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from pathlib import Path
from typing import Any

import shopdb  # sibling module: the action server runs from the bot folder; InProcessActions adds it to sys.path
from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from dialogue.stock_actions import AnswerFromKnowledge, HandOff, tracker_language

logger = logging.getLogger("kefu.examples.shop.actions")

RETURN_WINDOW_DAYS = 30
DEFAULT_KB_THRESHOLD = 0.5

STATUS_TEXT: dict[str, dict[str, str]] = {
    "en": {"processing": "being processed", "shipped": "shipped", "delivered": "delivered", "cancelled": "cancelled"},
    "zh": {"processing": "处理中", "shipped": "已发货", "delivered": "已送达", "cancelled": "已取消"},
}


def bot_dir() -> Path:
    """The bot folder: ``$KEFU_BOT_DIR`` or the folder of this file."""
    env = os.environ.get("KEFU_BOT_DIR")
    return Path(env).resolve() if env else Path(__file__).resolve().parent




def requested_order_id(tracker: Tracker) -> str | None:
    """The order id the user means: a fresh ``order_id`` entity in the latest message, else the slot."""
    value = next(tracker.get_latest_entity_values("order_id"), None) or tracker.get_slot("order_id")
    if value is None:
        return None
    text = str(value).strip().lstrip("#").strip()
    return text or None


def localise_status(status: str, language: str) -> str:
    return STATUS_TEXT.get(language, STATUS_TEXT["en"]).get(status, status)


def localise_eta(order: shopdb.Order, language: str) -> str:
    """A date (``2026-11-30``) for orders on their way; a phrase for delivered / cancelled / unknown."""
    zh = language == "zh"
    if order["status"] == "delivered" and order["delivered_at"] is not None:
        day = order["delivered_at"].isoformat()
        return f"已于{day}送达" if zh else f"delivered on {day}"
    if order["status"] == "cancelled":
        return "无（订单已取消）" if zh else "none (the order was cancelled)"
    if order["eta"] is not None:
        return order["eta"].isoformat()
    return "待定" if zh else "to be confirmed"


def _find_order_blocking(order_id: str) -> shopdb.Order | None:
    orders_yml, db_path = shopdb.bot_paths(bot_dir())
    shopdb.ensure_orders_db(orders_yml, db_path)
    return shopdb.lookup_order(db_path, order_id)


async def find_order(order_id: str) -> shopdb.Order | None:
    """Look ``order_id`` up in ``<bot>/models/orders.sqlite`` (built from the orders YAML if stale), off the loop."""
    return await asyncio.to_thread(_find_order_blocking, order_id)


class ActionOrderStatus(Action):
    """Tell the customer where their order is (``utter_order_status``) or that it doesn't exist."""

    def name(self) -> str:
        return "action_order_status"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        order_id = requested_order_id(tracker)
        if order_id is None:
            dispatcher.utter_message(response="utter_ask_order_id")
            return []
        order = await find_order(order_id)
        if order is None:
            dispatcher.utter_message(response="utter_order_not_found", order_id=order_id)
            return [SlotSet("order_id", None)]
        language = tracker_language(tracker)
        dispatcher.utter_message(
            response="utter_order_status",
            order_id=order["order_id"],
            status=localise_status(order["status"], language),
            eta=localise_eta(order, language),
        )
        return [SlotSet("order_id", order["order_id"])]


class ActionReturn(Action):
    """Accept or refuse a return: only delivered orders, within 30 days of delivery."""

    def name(self) -> str:
        return "action_return"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        order_id = requested_order_id(tracker)
        if order_id is None:
            dispatcher.utter_message(response="utter_ask_order_id")
            return []
        reason = next(tracker.get_latest_entity_values("reason"), None) or tracker.get_slot("reason")
        reason = str(reason).strip() if reason is not None else ""
        if not reason:
            dispatcher.utter_message(response="utter_ask_reason")
            return [SlotSet("order_id", order_id)]
        order = await find_order(order_id)
        if order is None:
            dispatcher.utter_message(response="utter_order_not_found", order_id=order_id)
            return [SlotSet("order_id", None), SlotSet("reason", None)]
        if order["status"] == "cancelled":  # nothing was sent: nothing to return, and no "not delivered yet"
            dispatcher.utter_message(response="utter_return_cancelled", order_id=order["order_id"])
        elif order["status"] != "delivered" or order["delivered_at"] is None:
            dispatcher.utter_message(response="utter_return_not_delivered", order_id=order["order_id"])
        else:
            days = (dt.date.today() - order["delivered_at"]).days
            if days <= RETURN_WINDOW_DAYS:
                dispatcher.utter_message(response="utter_return_accepted", order_id=order["order_id"], reason=reason)
            else:
                dispatcher.utter_message(response="utter_return_denied", order_id=order["order_id"], days=days)
        # The reason is not cleared here: the task's ``reset`` (dialogue.yml) clears it once the return ended. An
        # action that clears a value of its task tells the engine the value was refused, and the task would wait for
        # it again (docs/bots.md).
        return [SlotSet("order_id", order["order_id"])]


class ActionAnswerKB(AnswerFromKnowledge):
    """Answer the latest user message from the knowledge base, or fall back when nothing is similar enough."""

    threshold = DEFAULT_KB_THRESHOLD

    def name(self) -> str:
        return "action_answer_kb"


class ActionHandoff(HandOff):
    """Hand the conversation to a human agent."""

    def name(self) -> str:
        return "action_handoff"
