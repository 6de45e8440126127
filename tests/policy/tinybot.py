"""A tiny bot written inside the tests: a table-booking dialogue with a confirmation, a knowledge question, a
hand-off, small talk and cancel; its NLU data is given as data and its noise statistics directly (no NLU model)."""

from __future__ import annotations

from pathlib import Path

from policy.noise import NoiseStats
from policy.simulator import SimBot

DOMAIN = """
intents: [greet, goodbye, inform, book_table, order_food, opening_hours, complain, affirm, deny, cancel, out_of_scope]
entities: [party_size, day, dish]
slots:
  party_size: {type: text}
  day: {type: text}
  dish: {type: text}
  note: {type: text}
responses:
  utter_greet: [{text: "Hello!"}]
  utter_goodbye: [{text: "Bye!"}]
  utter_ask_party_size: [{text: "For how many people?"}]
  utter_ask_day: [{text: "Which day?"}]
  utter_ask_dish: [{text: "Which dish?"}]
  utter_ask_note: [{text: "Anything we should know?"}]
  utter_confirm_booking: [{text: "A table for {party_size} on {day}?"}]
  utter_booking_cancelled: [{text: "Not booked."}]
  utter_cancelled: [{text: "Cancelled."}]
  utter_handoff: [{text: "A colleague will take over."}]
  utter_fallback: [{text: "Sorry? I can book tables and take food orders."}]
"""

DIALOGUE = """
answer_intents: [inform]
tasks:
  booking:
    intents: [book_table]
    slots:
      - {name: party_size, ask: utter_ask_party_size}
      - {name: day, ask: utter_ask_day}
    confirm: {ask: utter_confirm_booking, yes: [affirm], no: [deny], cancelled: utter_booking_cancelled}
    action: action_book
    reset: [party_size, day]
  food:
    intents: [order_food]
    slots:
      - {name: dish, ask: utter_ask_dish}
      - name: note
        ask: utter_ask_note
        from_text: {not_intent: [cancel, greet, goodbye, complain, book_table, opening_hours]}
    starts_on: [dish]
    action: action_order_food
cancel: {intents: [cancel], reply: utter_cancelled}
handoff: {intents: [complain], action: action_handoff, reply: utter_handoff}
small_talk:
  greet: utter_greet
  goodbye: {reply: utter_goodbye, ends_task: true}
knowledge: {action: action_answer_kb, intents: [opening_hours]}
fallback: utter_fallback
"""

NLU = """
version: "3.1"
nlu:
- intent: book_table
  examples: |
    - a table for [4](party_size) on [friday](day) please
    - can I book a table
    - book for [2](party_size)
- intent: order_food
  examples: |
    - I'd like the [noodles](dish)
    - can I order food
- intent: inform
  examples: |
    - [6](party_size) people
    - on [saturday](day)
- lookup: dish
  examples: |
    - dumplings
    - fried rice
"""

BOT_YML = """
name: tiny
languages: [en]
nlu_data: [data/nlu.yml]
domain: domain.yml
dialogue: dialogue.yml
actions: null
confidence_threshold: 0.5
"""

# A restaurant's own data: the simulator reads values of keys named like a slot from it.
MENU = """
menu:
  - {dish: spring rolls, price: 4}
  - {dish: mapo tofu, price: 9}
"""

# What a made-up NLU did on a made-up held-out split: "order_food" is often read as "book_table", questions as
# out of scope; "party_size" numbers are sometimes lost, "dish" sometimes read as another dish.
NOISE = NoiseStats(
    n=120, error_rate=0.1, conf_right=(8.0, 0.5), conf_wrong=(3.0, 1.5), conf_slot_error=(8.0, 0.5),
    with_slots=40, intent_errors_with_slots=4, slot_errors=4, slots_lost_with_intent=1, true_second=5,
    intent_errors=8,
    confusion={"order_food": {"book_table": 3}, "opening_hours": {"out_of_scope": 2},
               "inform": {"out_of_scope": 1, "complain": 1}, "greet": {"goodbye": 1}},
    second={"book_table": {"order_food": 6}, "inform": {"affirm": 3}},
    slot_reads={"party_size": {"seen": 20, "lost": 2, "boundary": 0, "other": 0},
                "day": {"seen": 15, "lost": 0, "boundary": 0, "other": 0},
                "dish": {"seen": 10, "lost": 0, "boundary": 1, "other": 1}},
    source="made up for the tests",
)


def write_tiny_bot(root: Path) -> Path:
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "domain.yml").write_text(DOMAIN, encoding="utf-8")
    (root / "dialogue.yml").write_text(DIALOGUE, encoding="utf-8")
    (root / "bot.yml").write_text(BOT_YML, encoding="utf-8")
    (root / "data" / "nlu.yml").write_text(NLU, encoding="utf-8")
    (root / "data" / "menu.yml").write_text(MENU, encoding="utf-8")
    return root


VALUES = {"party_size": ("2", "4", "6", "8"), "day": ("friday", "saturday", "sunday"),
          "dish": ("noodles", "dumplings", "fried rice"), "note": ("no peanuts", "window seat")}


def tiny_sim_bot(root: Path) -> SimBot:
    """The tiny bot compiled by the dialogue package, seen by the simulator (as kefu.policy_cli builds it)."""
    import dataclasses

    from dialogue.definition import load_definition
    from dialogue.domain import Domain
    from dialogue.flows import FlowContext

    write_tiny_bot(root)
    domain = Domain.load(root / "domain.yml")
    definition = load_definition(root / "dialogue.yml", domain, None)
    domain = dataclasses.replace(domain, from_text=domain.from_text + definition.from_text())
    return SimBot(definition=definition, flows=definition.flows(), intents=domain.intents, slots=domain.slots,
                  entities=tuple(e for e in domain.entities if e in domain.slots), values=VALUES,
                  from_text=domain.from_text, languages=("en",), confidence_threshold=0.5, ranking_size=5,
                  context=FlowContext)
