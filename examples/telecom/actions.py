"""Custom actions of the telecom demo (LinkWave), written against rasa-sdk so they run in-process or in an action
server.

In-process: ``dialogue.actions.InProcessActions("examples/telecom/actions.py")``. Action server (from the bot folder,
so ``telecomdb`` next to this file imports)::

    cd examples/telecom && KEFU_BOT_DIR=$PWD SANIC_HOST=127.0.0.1 python -m rasa_sdk --actions actions --port 5055

Configuration comes from the environment, read when an action runs (never at import): ``KEFU_BOT_DIR`` (the bot
folder, default: this file's folder), ``KEFU_TELECOM_DB`` (the operator database, default
``<bot>/.kefu/telecom-data.sqlite``) and ``KEFU_KB_THRESHOLD`` (minimum knowledge-base score, default 0.5).

Conventions (see ``dialogue/actions.py`` and ``dialogue.yml``): an action that cannot find what a slot names (an
account, a ticket, a plan, a town) says so and clears that slot, so the next request asks for it again; what an
action reports is passed to its response as values, localised here (service, city and status names), because the
slots hold canonical English values (``broadband``, ``Shanghai``). Sqlite and model work runs in a worker thread
(``asyncio.to_thread``) so no event loop blocks. Customer text is never logged: a ticket's description goes into the
ticket, and logs carry only outcomes.
"""

from __future__ import annotations

import asyncio
import calendar
import datetime as dt
import logging
import os
from pathlib import Path
from typing import Any

import telecomdb  # sibling module: the action server runs from the bot folder; InProcessActions adds it to sys.path
from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from dialogue.stock_actions import AnswerFromKnowledge, HandOff, tracker_language

logger = logging.getLogger("kefu.examples.telecom.actions")

DEFAULT_KB_THRESHOLD = 0.5
MAX_ISSUE_CHARS = 500

SERVICE_TEXT: dict[str, dict[str, str]] = {
    "en": {"broadband": "broadband", "mobile": "mobile service", "tv": "TV service"},
    "zh": {"broadband": "宽带", "mobile": "手机业务", "tv": "电视业务"},
}
TICKET_STATUS_TEXT: dict[str, dict[str, str]] = {
    "en": {"open": "open", "scheduled": "technician visit booked", "in_progress": "in progress",
           "resolved": "resolved"},
    "zh": {"open": "已受理", "scheduled": "已预约上门", "in_progress": "处理中", "resolved": "已解决"},
}


def bot_dir() -> Path:
    """The bot folder: ``$KEFU_BOT_DIR`` or the folder of this file."""
    env = os.environ.get("KEFU_BOT_DIR")
    return Path(env).resolve() if env else Path(__file__).resolve().parent




def requested(tracker: Tracker, slot: str) -> str | None:
    """What the customer means by ``slot``: an entity of that name in the latest message, else the slot."""
    value = next(tracker.get_latest_entity_values(slot), None) or tracker.get_slot(slot)
    text = None if value is None else str(value).strip()
    return text or None


def service_text(service: str, language: str) -> str:
    return SERVICE_TEXT[language].get(service, service)


def city_text(city: telecomdb.City, language: str) -> str:
    return city["zh"] if language == "zh" else city["name"]


def plan_text(plan: telecomdb.Plan, language: str) -> str:
    """``Smart 30 (30 GB of data and 500 minutes, ¥69/month)``."""
    if language == "zh":
        return f"{plan['name']}（{plan['zh']}，{plan['price']}元/月）"
    return f"{plan['name']} ({plan['en']}, ¥{plan['price']}/month)"


def day_text(day: dt.date, language: str) -> str:
    return f"{day.month}月{day.day}日" if language == "zh" else f"{day.day} {calendar.month_name[day.month]}"


def _db() -> Path:
    """The operator database, refreshed from ``data/telecom.yml`` when needed (blocking)."""
    seed_yml, db_path = telecomdb.bot_paths(bot_dir())
    return telecomdb.ensure_db(seed_yml, db_path)


async def in_thread(query: Any, *args: Any) -> Any:
    """Run ``query(db_path, *args)`` against a fresh database, off the event loop."""
    return await asyncio.to_thread(lambda: query(_db(), *args))


def not_found_account(dispatcher: CollectingDispatcher, account: str) -> list[dict[str, Any]]:
    dispatcher.utter_message(response="utter_account_not_found", account_number=account)
    return [SlotSet("account_number", None)]


class ActionOpenTicket(Action):
    """Open a fault ticket for the account (service, the customer's description), and say whether a known outage
    in the account's town explains it."""

    def name(self) -> str:
        return "action_open_ticket"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        language = tracker_language(tracker)
        raw_account, service = requested(tracker, "account_number"), tracker.get_slot("service")
        issue = str(tracker.get_slot("issue") or "").strip()[:MAX_ISSUE_CHARS]
        if raw_account is None or service not in telecomdb.SERVICES or not issue:
            dispatcher.utter_message(response="utter_fallback")  # the dialogue only runs this with all three
            return []
        account = telecomdb.normalise_account(raw_account)
        subscriber = None if account is None else await in_thread(telecomdb.find_subscriber, account)
        if subscriber is None:
            logger.info("ticket refused: unknown account")
            return not_found_account(dispatcher, raw_account)
        ticket_id = await in_thread(telecomdb.open_ticket, subscriber["account"], service, issue)
        outages = await in_thread(telecomdb.active_outages, subscriber["city"], service)
        city = await in_thread(telecomdb.find_city, subscriber["city"])
        logger.info("ticket opened service=%s outage=%s", service, bool(outages))
        values = {"ticket_id": ticket_id, "service": service_text(service, language)}
        if outages and city is not None:
            dispatcher.utter_message(response="utter_ticket_opened_outage", **values, city=city_text(city, language),
                                     fix_hours=outages[0]["fix_hours"])
        else:
            dispatcher.utter_message(response="utter_ticket_opened", **values)
        return [SlotSet("account_number", subscriber["account"]), SlotSet("ticket_id", ticket_id)]


class ActionTicketStatus(Action):
    """Say where a fault ticket stands, or that there is no such ticket (and forget the number)."""

    def name(self) -> str:
        return "action_ticket_status"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        language = tracker_language(tracker)
        raw = requested(tracker, "ticket_id")
        if raw is None:
            dispatcher.utter_message(response="utter_ask_ticket_id")
            return []
        ticket = await in_thread(telecomdb.find_ticket, raw)
        if ticket is None:
            logger.info("ticket status: not found")
            shown = telecomdb.normalise_ticket_id(raw) or raw
            dispatcher.utter_message(response="utter_ticket_not_found", ticket_id=shown)
            return [SlotSet("ticket_id", None)]
        status = ticket["status"]
        if status == "scheduled" and ticket["visit_on"] is not None:
            response, extra = "utter_ticket_visit", {"date": day_text(ticket["visit_on"], language)}
        elif status == "resolved" and ticket["resolved_on"] is not None:
            response, extra = "utter_ticket_resolved", {"date": day_text(ticket["resolved_on"], language)}
        else:
            response, extra = "utter_ticket_status", {}
        logger.info("ticket status: %s", status)
        dispatcher.utter_message(
            response=response, ticket_id=ticket["ticket_id"], service=service_text(ticket["service"], language),
            status=TICKET_STATUS_TEXT[language].get(status, status), **extra,
        )
        return [SlotSet("ticket_id", ticket["ticket_id"])]


class ActionPasswordReset(Action):
    """Text a password-reset code to the mobile number on file for the account; unknown accounts are refused."""

    def name(self) -> str:
        return "action_password_reset"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        raw = requested(tracker, "account_number")
        if raw is None:
            dispatcher.utter_message(response="utter_ask_account_number")
            return []
        account = telecomdb.normalise_account(raw)
        subscriber = None if account is None else await in_thread(telecomdb.find_subscriber, account)
        if subscriber is None:
            logger.info("password reset refused: unknown account")
            return not_found_account(dispatcher, raw)
        # The demo sends nothing: a real operator would call its SMS gateway here, with the number on file.
        logger.info("password reset code sent")
        dispatcher.utter_message(response="utter_password_reset_sent", phone_tail=subscriber["phone_tail"])
        return [SlotSet("account_number", subscriber["account"])]


class ActionChangePlan(Action):
    """Order a plan change (confirmed by the customer before this runs), from the first of next month.

    Refused, with the reason: an unknown account or plan, a plan for another service (a mobile account cannot move to
    a broadband plan), the plan the account already has, or a cheaper plan during a minimum-term contract.
    """

    def name(self) -> str:
        return "action_change_plan"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        language = tracker_language(tracker)
        raw_account, raw_plan = tracker.get_slot("account_number"), tracker.get_slot("plan")
        if not raw_account or not raw_plan:
            dispatcher.utter_message(response="utter_fallback")  # the dialogue only runs this with both slots
            return []
        account = telecomdb.normalise_account(str(raw_account))
        subscriber = None if account is None else await in_thread(telecomdb.find_subscriber, account)
        if subscriber is None:
            logger.info("plan change refused: unknown account")
            return not_found_account(dispatcher, str(raw_account))
        plan = await in_thread(telecomdb.find_plan, str(raw_plan))
        current = await in_thread(telecomdb.find_plan, subscriber["plan"])
        outcome = self._refusal(plan, current, subscriber)
        if outcome is not None:
            logger.info("plan change refused: %s", outcome)
            values: dict[str, Any] = {"plan": str(raw_plan) if plan is None else plan["name"],
                                      "current_plan": subscriber["plan"]}
            if outcome == "in_contract" and subscriber["contract_end"] is not None:
                values["contract_end"] = day_text(subscriber["contract_end"], language)
            if outcome in ("unknown", "other_service"):
                kind = None if current is None else current["kind"]
                options = [p["name"] for p in await in_thread(telecomdb.list_plans, kind) if p["name"] != subscriber["plan"]]
                values["options"] = ("、" if language == "zh" else ", ").join(options)
            dispatcher.utter_message(response=f"utter_plan_{outcome}", **values)
            return [SlotSet("plan", None)]
        assert plan is not None  # _refusal returns "unknown" otherwise
        effective = telecomdb.first_of_next_month(dt.date.today())
        await in_thread(telecomdb.order_plan_change, subscriber["account"], plan["name"], effective)
        logger.info("plan change ordered kind=%s", plan["kind"])
        dispatcher.utter_message(response="utter_plan_changed", account_number=subscriber["account"],
                                 plan=plan_text(plan, language), date=day_text(effective, language))
        return [SlotSet("plan", None)]

    @staticmethod
    def _refusal(
        plan: telecomdb.Plan | None, current: telecomdb.Plan | None, subscriber: telecomdb.Subscriber
    ) -> str | None:
        """Why the change cannot be made (the suffix of its ``utter_plan_*`` response), or ``None``."""
        if plan is None:
            return "unknown"
        if current is not None and plan["kind"] != current["kind"]:
            return "other_service"
        if current is not None and plan["name"] == current["name"]:
            return "same"
        in_contract = subscriber["contract_end"] is not None and subscriber["contract_end"] > dt.date.today()
        if in_contract and current is not None and plan["price"] < current["price"]:
            return "in_contract"
        return None


class ActionCheckOutage(Action):
    """Tell the customer whether a known outage affects a town (from the outages table), and when it should be fixed."""

    def name(self) -> str:
        return "action_check_outage"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        language = tracker_language(tracker)
        raw = requested(tracker, "city")
        if raw is None:
            dispatcher.utter_message(response="utter_ask_city")
            return []
        city = await in_thread(telecomdb.find_city, raw)
        if city is None:
            logger.info("outage check: town not covered")
            dispatcher.utter_message(response="utter_city_not_covered", city=raw)
            return [SlotSet("city", None)]
        outages = await in_thread(telecomdb.active_outages, city["name"])
        logger.info("outage check: %d known", len(outages))
        if not outages:
            dispatcher.utter_message(response="utter_no_outage", city=city_text(city, language))
            return []
        joiner = "和" if language == "zh" else " and "
        dispatcher.utter_message(
            response="utter_outage", city=city_text(city, language),
            services=joiner.join(service_text(o["service"], language) for o in outages),
            fix_hours=max(o["fix_hours"] for o in outages),
        )
        return []


class ActionAnswerKB(AnswerFromKnowledge):
    """Answer the latest message from the knowledge base (billing, roaming, contracts...), or fall back when no
    entry is similar enough."""

    threshold = DEFAULT_KB_THRESHOLD

    def name(self) -> str:
        return "action_answer_kb"


class ActionHandoff(HandOff):
    """Hand the conversation to a human agent."""

    def name(self) -> str:
        return "action_handoff"
