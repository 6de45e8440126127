"""Custom actions of the demo bank, written against rasa-sdk so they run in-process or in an action server.

In-process: ``dialogue.actions.InProcessActions("examples/bank/actions.py")``.
Action server (from the bot folder, so ``bankdb`` and ``bankinput`` next to this file import)::

    cd examples/bank && KEFU_BOT_DIR=$PWD SANIC_HOST=127.0.0.1 python -m rasa_sdk --actions actions --port 5055

Configuration comes from the environment, read when an action runs (never at import): ``KEFU_BOT_DIR`` (the bot
folder, default: this file's folder; its ``data/``, ``models/`` and ``.kefu/`` are used) and ``KEFU_KB_THRESHOLD``
(minimum knowledge-base similarity for ``action_answer_kb``, default 0.5).

Who is the customer? The demo has no login: balances, transfers and disputes are those of the seed's ``signed_in``
customer, as if the chat ran inside online banking. Blocking a lost card identifies the card's holder by its last 4
digits and their date of birth instead, since the person reporting it may not be signed in.

Conventions (see ``dialogue/actions.py``): a hand-off is requested with ``SlotSet("handoff", True)``; an action whose
input does not check out (unknown card, unreadable amount, no such charge) says so and clears the slots it used, so
the dialogue asks for them again. Sqlite and model work runs in a worker thread (``asyncio.to_thread``) so neither the
in-process runner's nor the action server's event loop blocks. Customer text is never logged: only outcomes and ids.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from pathlib import Path
from typing import Any

import bankdb  # sibling modules: the action server runs from the bot folder; InProcessActions adds it to sys.path
import bankinput
from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from dialogue.stock_actions import AnswerFromKnowledge, HandOff, tracker_language

logger = logging.getLogger("kefu.examples.bank.actions")

MAX_VERIFICATION_ATTEMPTS = 3  # failed identity checks in one conversation before the bot stops trying
TRANSFER_LIMIT_CENTS = 5_000_000  # ¥50,000 per online transfer (kb.yml: transfer_limits says the same)
TRANSFER_ACCOUNT = "checking"  # transfers leave from the checking account (utter_confirm_transfer says so)
DISPUTE_WINDOW_DAYS = 90  # card charges can be disputed up to 90 days after they were made (kb.yml: disputes)
DEFAULT_KB_THRESHOLD = 0.5

ACCOUNT_NAMES: dict[str, dict[str, str]] = {
    "en": {"checking": "checking account", "savings": "savings account"},
    "zh": {"checking": "活期账户", "savings": "储蓄账户"},
}
# An account type as customers may write it when the NLU synonyms did not map it (a value typed into the slot).
ACCOUNT_WORDS: dict[str, str] = {
    "checking": "checking", "chequing": "checking", "current": "checking", "everyday": "checking", "活期": "checking",
    "工资": "checking", "savings": "savings", "saving": "savings", "储蓄": "savings", "存款": "savings",
    "定期": "savings", "saver": "savings",
}


def bot_dir() -> Path:
    """The bot folder: ``$KEFU_BOT_DIR`` or the folder of this file."""
    env = os.environ.get("KEFU_BOT_DIR")
    return Path(env).resolve() if env else Path(__file__).resolve().parent




def slot_text(tracker: Tracker, name: str) -> str:
    """A slot's value as text: a fresh entity of that name in the latest message, else the slot ("" when empty)."""
    value = next(tracker.get_latest_entity_values(name), None) or tracker.get_slot(name)
    return "" if value is None else str(value).strip()


def account_type(text: str) -> str | None:
    """``checking`` / ``savings`` from the slot's value (synonyms already applied, or the words themselves)."""
    low = text.casefold()
    return next((kind for word, kind in ACCOUNT_WORDS.items() if word in low), None)


def misread_as(tracker: Tracker, other: str, value: str) -> list[dict[str, Any]]:
    """Clear slot ``other`` when it holds the same number this action just used: without the question, the NLU may
    file a bare "4821" (asked for card digits) as an amount too, or a bare "3500" (an amount) as card digits, and a
    stale copy must not answer the next task's question for the customer."""
    held = tracker.get_slot(other)
    return [SlotSet(other, None)] if held is not None and str(held).strip() == value.strip() else []


def db_path() -> Path:
    """The bank's SQLite file, (re)built from the seed when stale (blocking: call from a worker thread)."""
    seed, path = bankdb.bot_paths(bot_dir())
    return bankdb.ensure_bank_db(seed, path)


async def in_thread(func: Any, *args: Any) -> Any:
    """Run a blocking bank query off the event loop, on a fresh-enough database."""

    def call() -> Any:
        return func(db_path(), *args)

    return await asyncio.to_thread(call)


class ActionBlockCard(Action):
    """Block a lost or stolen card once its holder is verified (last 4 digits + date of birth) and has confirmed.

    A failed check says only that the details do not match (not which one), clears both slots and asks again; after
    ``MAX_VERIFICATION_ATTEMPTS`` failures in a conversation the bot stops and points to the phone line."""

    def name(self) -> str:
        return "action_block_card"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        cleared = [SlotSet("card_last4", None), SlotSet("date_of_birth", None)]
        conversation = tracker.sender_id
        if await in_thread(bankdb.failed_verifications, conversation) >= MAX_VERIFICATION_ATTEMPTS:
            dispatcher.utter_message(response="utter_verification_locked")
            return cleared
        last4 = bankinput.card_last4(slot_text(tracker, "card_last4"))
        births = bankinput.dates_in(slot_text(tracker, "date_of_birth"), dt.date.today())
        card = await in_thread(bankdb.verify_card, last4, births) if last4 else None
        if card is None:
            failures = await in_thread(bankdb.record_failed_verification, conversation)
            logger.info("block_card verification failed (attempt %d)", failures)
            if failures >= MAX_VERIFICATION_ATTEMPTS:
                dispatcher.utter_message(response="utter_verification_locked")
            else:
                dispatcher.utter_message(response="utter_verification_failed")
                dispatcher.utter_message(response="utter_ask_card_last4")
            return cleared
        newly = await in_thread(bankdb.block_card, card)
        logger.info("block_card %s", "blocked" if newly else "already blocked")
        response = "utter_card_blocked" if newly else "utter_card_already_blocked"
        dispatcher.utter_message(response=response, card_last4=card.last4)
        return cleared + misread_as(tracker, "amount", card.last4)


class ActionCheckBalance(Action):
    """Tell the signed-in customer the balance of their checking or savings account."""

    def name(self) -> str:
        return "action_check_balance"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        kind = account_type(slot_text(tracker, "account"))
        if kind is None:
            dispatcher.utter_message(response="utter_account_unknown")
            return [SlotSet("account", None)]
        customer = await in_thread(bankdb.signed_in_customer)
        found = await in_thread(bankdb.account, customer, kind)
        language = tracker_language(tracker)
        if found is None:
            dispatcher.utter_message(response="utter_no_such_account", account_name=ACCOUNT_NAMES[language][kind])
            return [SlotSet("account", None)]
        logger.info("balance shown (%s)", kind)
        dispatcher.utter_message(
            response="utter_balance",
            account_name=ACCOUNT_NAMES[language][kind],
            account_last4=found.last4,
            balance=bankinput.format_cents(found.balance_cents),
        )
        return [SlotSet("account", kind)]


class ActionTransfer(Action):
    """Send money from the signed-in customer's checking account, after the customer confirmed amount and payee:
    refused above the per-transfer limit or the balance; recorded with a reference otherwise."""

    def name(self) -> str:
        return "action_transfer"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        cleared = [SlotSet("amount", None), SlotSet("recipient", None)]
        said = slot_text(tracker, "amount")
        cents = bankinput.amount_cents(said)
        recipient = slot_text(tracker, "recipient")
        if cents is None:
            dispatcher.utter_message(response="utter_amount_invalid", amount=said)
            return cleared
        if not recipient:
            dispatcher.utter_message(response="utter_ask_recipient")
            return [SlotSet("amount", said)]
        amount = bankinput.format_cents(cents)
        if cents > TRANSFER_LIMIT_CENTS:
            logger.info("transfer refused: over the limit")
            dispatcher.utter_message(response="utter_transfer_over_limit", amount=amount,
                                     limit=bankinput.format_cents(TRANSFER_LIMIT_CENTS))
            return cleared
        cleared += misread_as(tracker, "card_last4", said)
        customer = await in_thread(bankdb.signed_in_customer)
        outcome = await in_thread(bankdb.transfer, customer, TRANSFER_ACCOUNT, cents, recipient, tracker.sender_id)
        logger.info("transfer %s", outcome.status)
        balance = bankinput.format_cents(outcome.balance_cents)
        if outcome.status == "done":
            dispatcher.utter_message(response="utter_transfer_done", amount=amount, recipient=recipient,
                                     reference=outcome.reference, balance=balance)
        elif outcome.status == "insufficient":
            dispatcher.utter_message(response="utter_insufficient_funds", amount=amount, balance=balance)
        else:
            dispatcher.utter_message(response="utter_no_such_account",
                                     account_name=ACCOUNT_NAMES[tracker_language(tracker)][TRANSFER_ACCOUNT])
        return cleared


class ActionDisputeCharge(Action):
    """Open a dispute about one of the signed-in customer's recent card charges, named by merchant or amount."""

    def name(self) -> str:
        return "action_dispute_charge"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        cleared = [SlotSet("charge", None), SlotSet("reason", None)]
        said = slot_text(tracker, "charge")
        reason = slot_text(tracker, "reason")
        if not reason:
            dispatcher.utter_message(response="utter_ask_dispute_reason")
            return [SlotSet("charge", said)]
        customer = await in_thread(bankdb.signed_in_customer)
        # "the 89.90 one": an amount in the description (or given alongside it) picks the charge too
        cents = bankinput.amount_cents(said) if any(ch.isdigit() for ch in said) else None
        if cents is None and tracker.get_slot("amount"):
            cents = bankinput.amount_cents(str(tracker.get_slot("amount")))
        charges = await in_thread(bankdb.find_charges, customer, said, cents)
        language = tracker_language(tracker)
        if not charges:
            logger.info("dispute: no matching charge")
            dispatcher.utter_message(response="utter_charge_not_found", charge=said)
            return cleared
        charge = charges[0]
        merchant = charge.merchant_zh if language == "zh" else charge.merchant
        values = {"merchant": merchant, "amount": bankinput.format_cents(charge.amount_cents),
                  "date": charge.charged_on.isoformat()}
        if (dt.date.today() - charge.charged_on).days > DISPUTE_WINDOW_DAYS:
            logger.info("dispute: charge too old")
            dispatcher.utter_message(response="utter_dispute_too_old", **values)
            return cleared
        outcome = await in_thread(bankdb.open_dispute, customer, charge, reason, tracker.sender_id)
        logger.info("dispute %s", "opened" if outcome.created else "already open")
        response = "utter_dispute_opened" if outcome.created else "utter_dispute_exists"
        dispatcher.utter_message(response=response, dispute_id=outcome.reference, **values)
        return [*cleared, SlotSet("amount", None)]


class ActionAnswerKB(AnswerFromKnowledge):
    """Answer the latest user message from the knowledge base (hours, fees, limits...), or fall back."""

    threshold = DEFAULT_KB_THRESHOLD

    def name(self) -> str:
        return "action_answer_kb"


class ActionHandoff(HandOff):
    """Hand the conversation to a human agent."""

    def name(self) -> str:
        return "action_handoff"
