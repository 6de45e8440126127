"""The demo shop's flows as a Python flows module (an FSM whose events are actions) and its hand-written default policy.

The shop itself now says this in ``examples/shop/dialogue.yml``; this module stays as the test of a bot that keeps
Python flows (``flows: flows.py`` in ``bot.yml``) for what the data cannot say, and as the reference the compiled
definition is checked against (``tests/dialogue/test_definition.py``).

States say which task is open and which slot it still waits for. Conditions read the tracker
(``FlowContext``: intent of this turn and the slots), so the enabled events are the actions that make
sense *now*: no order lookup without an order id, no return without an order id and a reason, nothing
but the hand-off reply once a human has the conversation.
"""

from __future__ import annotations

from collections.abc import Sequence

from statemachine import State, StateMachine

from dialogue.flows import FlowContext, first_allowed
from policy import Observation

KB_INTENTS = {"shipping_question", "payment_problem", "product_question"}
SMALL_TALK = {"greet": "utter_greet", "goodbye": "utter_goodbye", "thanks": "utter_thanks"}


class Flows(StateMachine):
    idle = State(initial=True)
    status_need_id = State()
    return_need_id = State()
    return_need_reason = State()
    handed_off = State()

    # Replies that keep the open task where it is.
    utter_greet = idle.to.itself() | status_need_id.to.itself() | return_need_id.to.itself() | return_need_reason.to.itself()
    utter_thanks = idle.to.itself() | status_need_id.to.itself() | return_need_id.to.itself() | return_need_reason.to.itself()
    utter_fallback = idle.to.itself() | status_need_id.to.itself() | return_need_id.to.itself() | return_need_reason.to.itself()
    action_answer_kb = idle.to.itself() | status_need_id.to.itself() | return_need_id.to.itself() | return_need_reason.to.itself()
    # Saying goodbye closes any open task.
    utter_goodbye = idle.to.itself() | status_need_id.to(idle) | return_need_id.to(idle) | return_need_reason.to(idle)

    # Order status: needs an order id.
    utter_ask_order_id = (
        idle.to(status_need_id, cond="wants_status")
        | idle.to(return_need_id, cond="wants_return")
        | status_need_id.to(status_need_id, cond="wants_status")
        | status_need_id.to(return_need_id, cond="wants_return")
        | return_need_id.to(status_need_id, cond="wants_status")
        | return_need_id.to(return_need_id, cond="wants_return")
        | return_need_reason.to(status_need_id, cond="wants_status")
        | return_need_reason.to(return_need_id, cond="wants_return")
    )
    action_order_status = (
        idle.to.itself(cond=["wants_status", "has_order_id"])
        | status_need_id.to(idle, cond=["wants_status", "has_order_id"])
        | return_need_id.to(idle, cond=["wants_status", "has_order_id"])
        | return_need_reason.to(idle, cond=["wants_status", "has_order_id"])
    )

    # Returns and refunds: need an order id and a reason.
    utter_ask_reason = (
        idle.to(return_need_reason, cond=["wants_return", "has_order_id"])
        | status_need_id.to(return_need_reason, cond=["wants_return", "has_order_id"])
        | return_need_id.to(return_need_reason, cond=["wants_return", "has_order_id"])
        | return_need_reason.to.itself(cond=["wants_return", "has_order_id"])
    )
    action_return = (
        idle.to.itself(cond=["wants_return", "has_order_id", "has_reason"])
        | status_need_id.to(idle, cond=["wants_return", "has_order_id", "has_reason"])
        | return_need_id.to(idle, cond=["wants_return", "has_order_id", "has_reason"])
        | return_need_reason.to(idle, cond=["wants_return", "has_order_id", "has_reason"])
    )

    # A human takes over: the bot only confirms that someone is coming.
    action_handoff = (
        idle.to(handed_off) | status_need_id.to(handed_off) | return_need_id.to(handed_off) | return_need_reason.to(handed_off)
    )
    utter_handoff = handed_off.to.itself()

    # Conditions read the tracker (the FSM's model).
    def wants_status(self) -> bool:
        ctx: FlowContext = self.model
        if ctx.intent == "order_status":
            return True
        # "inform" is an answer: to our question for the order id, or a bare order id sent out of the blue.
        return ctx.intent == "inform" and (ctx.state == "status_need_id" or (ctx.state == "idle" and "order_id" in ctx.filled))

    def wants_return(self) -> bool:
        ctx: FlowContext = self.model
        return ctx.intent == "return_request" or (ctx.intent == "inform" and ctx.state.startswith("return_"))

    def has_order_id(self) -> bool:
        return bool(self.model.has("order_id"))

    def has_reason(self) -> bool:
        return bool(self.model.has("reason"))


def default_policy(obs: Observation, allowed: Sequence[str]) -> str:
    """The hand-written policy: the obvious action for the intent, within the mask."""
    if obs.state == "handed_off":
        return "utter_handoff"
    if obs.low_confidence or "prompt_injection" in obs.flags or obs.intent == "out_of_scope":
        return "utter_fallback"
    if obs.intent in SMALL_TALK:
        return SMALL_TALK[obs.intent]
    if obs.intent in KB_INTENTS:
        return "action_answer_kb"
    if obs.intent == "complaint":
        return "action_handoff"
    if obs.intent == "order_status" or (obs.intent == "inform" and obs.state == "status_need_id"):
        return first_allowed(["action_order_status", "utter_ask_order_id", "utter_fallback"], allowed)
    if obs.intent == "inform" and obs.state == "idle" and "action_order_status" in allowed:
        return "action_order_status"  # a bare order id: the flows only allow it when this message gave the id
    if obs.intent == "return_request" or (obs.intent == "inform" and obs.state.startswith("return_")):
        return first_allowed(["action_return", "utter_ask_reason", "utter_ask_order_id", "utter_fallback"], allowed)
    return "utter_fallback"
