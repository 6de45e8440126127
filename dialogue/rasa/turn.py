"""What an imported Rasa bot does after one user message: slot extraction, then actions until ``action_listen``.

Rasa predicts and runs actions one after another until the policy says ``action_listen``. :func:`respond` does that
on a :class:`~dialogue.rasa.tracker.Tracker` with the project's :class:`~dialogue.rasa.policy.RasaPolicy`; custom
actions (and form validation, ``action_ask_*``) run through ``execute``, a parameter (the bot's rasa-sdk action
server in production, anything in tests), so this module does no I/O of its own.

Rasa's default actions behave as documented: ``action_restart`` (``utter_restart`` when the domain has it, then a new
conversation), ``action_default_fallback`` (``utter_default``, then the user message is reverted), ``action_deactivate_loop``,
``action_two_stage_fallback`` (``utter_ask_rephrase``), ``action_back`` (``utter_back``; the ``/back`` message and
the user message before it are reverted), ``action_session_start`` (a new session, the slots carried over when
``carry_over_slots_to_new_session``); forms run their loop (:mod:`dialogue.rasa.forms`), calling ``validate_<form>``
when the action server has it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dialogue.flows import Flows
from dialogue.rasa.entities import RegexEntities
from dialogue.rasa.forms import ask_action, extract_slots, next_slot
from dialogue.rasa.policy import RasaPolicy
from dialogue.rasa.project import RasaProject
from dialogue.rasa.stories import EntityValue
from dialogue.rasa.tracker import (
    BACK,
    DEACTIVATE_LOOP,
    DEFAULT_FALLBACK,
    LISTEN,
    NLU_FALLBACK,
    REQUESTED_SLOT,
    RESTART,
    SESSION_START,
    TWO_STAGE_FALLBACK,
    Tracker,
)
from dialogue.types import ActionResult

MAX_ACTIONS = 10  # Rasa's max_number_of_predictions: a bot that never listens is stopped here
ENDS_TURN = frozenset({DEFAULT_FALLBACK, TWO_STAGE_FALLBACK, RESTART, BACK, SESSION_START})
DEFAULT_ACTIONS = frozenset({LISTEN, SESSION_START, DEACTIVATE_LOOP, *ENDS_TURN, "action_unlikely_intent",
                             "action_extract_slots"})

Execute = Callable[[str, Tracker], Awaitable[ActionResult]]


@dataclass(frozen=True)
class Utterance:
    """One bot message: a response of the domain (rendered with ``values`` and the slots) or an action's text."""

    response: str | None = None
    text: str | None = None
    values: Mapping[str, Any] = field(default_factory=dict)
    buttons: tuple[Mapping[str, Any], ...] = ()  # an action's own buttons (dispatcher.utter_message(buttons=...))


@dataclass
class TurnOutcome:
    actions: list[tuple[str, str]] = field(default_factory=list)  # (action, why the policy chose it)
    utterances: list[Utterance] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # custom actions whose server call failed
    handoff: bool = False


async def respond(
    policy: RasaPolicy,
    tracker: Tracker,
    *,
    intent: str,
    entities: Iterable[EntityValue] = (),
    text: str | None = None,
    execute: Execute,
    custom_actions: Iterable[str] = (),
) -> TurnOutcome:
    """Apply the user message to ``tracker`` and run the bot's actions until it listens."""
    project = policy.project
    custom = frozenset(custom_actions) | frozenset(project.actions)
    tracker.user(intent, entities, text)
    for name, value in extract_slots(project, tracker, loop=tracker.active_loop).items():
        if tracker.slots.get(name) != value:
            tracker.set_slot(name, value)
    outcome = TurnOutcome()
    excluded: set[str] = set()
    for _ in range(MAX_ACTIONS):
        prediction = policy.predict(tracker, exclude=frozenset(excluded))
        action = prediction.action
        if action == LISTEN:
            break
        if action in project.forms and await _run_form(project, action, tracker, outcome, execute, custom):
            excluded.add(action)  # the form could not use this message: let the other policies answer it
            continue
        excluded.clear()
        outcome.actions.append((action, prediction.reason))
        if action in project.forms:
            continue
        await _run_action(project, action, tracker, outcome, execute)
        if action in ENDS_TURN:
            break
    return outcome


async def _run_action(project: RasaProject, action: str, tracker: Tracker, outcome: TurnOutcome, execute: Execute) -> None:
    response = retrieval_response(project, action, tracker)
    if response is not None:
        tracker.act(action)
        outcome.utterances.append(Utterance(response=response, values=dict(tracker.slots)))
        return
    if action in DEFAULT_ACTIONS:
        _default_action(project, action, tracker, outcome)
        return
    result = await execute(action, tracker)
    tracker.act(action)
    _apply_result(tracker, result, outcome, action)


def conditional_key(response: str, index: int) -> str:
    """The name a conditional variation of ``response`` (its ``index``-th) has in an imported bot's domain."""
    return f"{response}@{index}"


def variation_key(project: RasaProject, response: str, slots: Mapping[str, Any]) -> str | None:
    """Which of ``response``'s variations to say (Rasa's conditional response variations): the first conditional one
    whose slot conditions all hold, else the unconditional ones (``response`` itself), else nothing (``None``)."""
    variations = project.responses.get(response)
    if not variations:
        return response
    index = conditional_variation(project, response, slots)
    if index is not None:
        return conditional_key(response, index)
    return response if any(not v.get("condition") for v in variations) else None


def conditional_variation(project: RasaProject, response: str, slots: Mapping[str, Any]) -> int | None:
    """The index of ``response``'s first conditional variation whose slot conditions all hold, if any."""
    for index, variation in enumerate(project.responses.get(response) or ()):
        conditions = variation.get("condition")
        if conditions and all(_condition_met(c, slots) for c in conditions):
            return index
    return None


def _condition_met(condition: Any, slots: Mapping[str, Any]) -> bool:
    if not isinstance(condition, Mapping) or condition.get("type", "slot") != "slot":
        return False
    value, wanted = slots.get(str(condition.get("name"))), condition.get("value")
    if isinstance(wanted, str) and not isinstance(value, str) and value is not None:
        return str(value).lower() == wanted.lower()
    return bool(value == wanted)


def retrieval_response(project: RasaProject, action: str, tracker: Tracker) -> str | None:
    """The response ``action`` says: itself, or for a retrieval intent's ``utter_faq`` the ``utter_faq/ask_x`` one."""
    if action in project.responses:
        return action
    if tracker.retrieval and action == f"utter_{tracker.intent}":
        full = f"utter_{tracker.retrieval}"
        return full if full in project.responses else None
    return None


_PAYLOAD = re.compile(r"^/(?P<intent>[^{@\s]+)(?:@[0-9.]+)?(?P<entities>\{.*\})?\s*$", re.DOTALL)


def payload_intent(project: RasaProject, text: str | None) -> tuple[str, tuple[EntityValue, ...]] | None:
    """A message written as Rasa's intent payload (``/inform{"size": "large"}``, what buttons send): its intent and
    entities, taken as given without the NLU, as Rasa does; ``None`` for any other text (or an unknown intent)."""
    match = _PAYLOAD.match((text or "").strip())
    if match is None or match["intent"].split("/", 1)[0] not in project.intents:
        return None
    entities: list[EntityValue] = []
    if match["entities"]:
        try:
            given = json.loads(match["entities"])
        except ValueError:
            return None
        if not isinstance(given, dict):
            return None
        for name, value in given.items():
            for one in value if isinstance(value, list) else [value]:
                entities.append(EntityValue(str(name), one))
    return match["intent"], tuple(entities)


def nlu_intent(project: RasaProject, intent: str, confidence: float, ranking: Iterable[tuple[str, float]]) -> str:
    """Rasa's ``FallbackClassifier``: ``nlu_fallback`` when the NLU is unsure (below ``threshold``) or torn between
    its two best intents (closer than ``ambiguity_threshold``)."""
    threshold = project.fallback_threshold
    if threshold is None:
        return intent
    if confidence < threshold:
        return NLU_FALLBACK
    scores = [p for _, p in ranking]
    if len(scores) > 1 and scores[0] - scores[1] < project.ambiguity_threshold:
        return NLU_FALLBACK
    return intent


def _default_action(project: RasaProject, action: str, tracker: Tracker, outcome: TurnOutcome) -> None:
    """Rasa's default actions (https://rasa.com/docs/rasa/default-actions)."""
    say = {RESTART: "utter_restart", DEFAULT_FALLBACK: "utter_default", TWO_STAGE_FALLBACK: "utter_ask_rephrase",
           BACK: "utter_back"}.get(action)
    tracker.act(action)
    if say and say in project.responses:
        outcome.utterances.append(Utterance(response=say))
    if action == RESTART:
        tracker.restart()
    elif action == DEFAULT_FALLBACK:
        tracker.apply({"event": "rewind"})
    elif action == BACK:  # Rasa's ActionBack: the /back message and the user message before it are reverted
        tracker.apply({"event": "rewind"})
        tracker.apply({"event": "rewind"})
    elif action == DEACTIVATE_LOOP:
        tracker.set_loop(None)
    elif action == SESSION_START:  # a new session: the slots are carried over when the domain says so
        slots = dict(tracker.slots)
        tracker.restart()
        if project.session_config.carry_over_slots_to_new_session:
            tracker.slots.update(slots)
        tracker.apply({"event": "session_started"})


def _apply_result(tracker: Tracker, result: ActionResult, outcome: TurnOutcome, action: str) -> None:
    if result.failed:
        outcome.failed.append(action)
    said_with = dict(tracker.slots)  # Rasa fills an action's responses from the tracker it was called with
    for event in result.events:
        if event.get("event") == "bot":
            continue  # its text is in result.texts
        tracker.apply(event)
    outcome.handoff = outcome.handoff or result.handoff
    outcome.utterances.extend(Utterance(response=name, values={**said_with, **values})
                              for name, values in result.responses)
    outcome.utterances.extend(Utterance(text=t) for t in result.texts)
    if result.buttons and outcome.utterances:
        last = outcome.utterances[-1]
        buttons = tuple({"title": t, "payload": p} for t, p in result.buttons)
        outcome.utterances[-1] = Utterance(last.response, last.text, last.values, buttons)


async def _run_form(
    project: RasaProject, form_name: str, tracker: Tracker, outcome: TurnOutcome, execute: Execute,
    custom: frozenset[str],
) -> bool:
    """Run the form's loop once; ``True`` when it rejected the message (Rasa's ``ActionExecutionRejection``)."""
    form = project.forms[form_name]
    activating = tracker.active_loop != form_name
    if activating:
        tracker.set_loop(form_name)
        given = extract_slots(project, tracker, loop=form_name, only=form.required_slots, trigger=True)
        for name, value in given.items():
            tracker.set_slot(name, value)
    requested = tracker.slots.get(REQUESTED_SLOT)
    given_now = _slots_since_user(tracker)
    might_reject = (not activating and bool(requested) and tracker.prev_action == LISTEN
                    and not (given_now & set(form.required_slots)))
    validator = f"validate_{form_name}"
    requested_next: Any = ...
    if validator not in custom:
        if might_reject:
            tracker.rejected = True
            return True
        tracker.act(form_name)
    else:
        candidates = {name: tracker.slots.get(name) for name in given_now}
        probe = tracker.copy()  # the form's run as the validation action sees it; kept unless the form rejects
        probe.act(form_name)
        for name, value in candidates.items():  # rasa-sdk validates the slot events that end the tracker's events
            probe.events.append({"event": "slot", "name": name, "value": value})
        result = await execute(validator, probe)
        if not result.failed and _rejects(result, might_reject):
            tracker.rejected = True  # Rasa drops the events and messages of a rejected form run
            return True
        tracker.__dict__.update(probe.__dict__)
        for event in result.events:
            if event.get("event") == "slot" and event.get("name") == REQUESTED_SLOT:
                requested_next = event.get("value")
        _apply_result(tracker, result, outcome, validator)
        if result.failed:
            tracker.set_loop(None)
            return False
        if tracker.active_loop != form_name:  # the validation deactivated the form
            return False
    slot = next_slot(form, tracker) if requested_next is ... else requested_next
    if slot is None:
        tracker.set_loop(None)
        return False
    tracker.set_slot(REQUESTED_SLOT, slot)
    ask = ask_action(project, form_name, str(slot), custom)
    if ask is None:
        outcome.failed.append(f"{form_name}: no utter_ask_{slot}")
        tracker.set_loop(None)
    elif ask in project.responses:
        outcome.utterances.append(Utterance(response=ask, values=dict(tracker.slots)))
    else:
        _apply_result(tracker, await execute(ask, tracker), outcome, ask)
    return False


def _rejects(validation: ActionResult, might_reject: bool) -> bool:
    """Whether the form rejects the message, as https://rasa.com/docs/rasa/forms lists the cases ("unhappy form
    paths"): the validation action rejected it, or a slot was requested and neither the message nor the validation
    action (a custom extraction) set one."""
    if any(e.get("event") == "action_execution_rejected" for e in validation.events):
        return True
    return might_reject and not any(e.get("event") == "slot" and e.get("name") != REQUESTED_SLOT
                                    for e in validation.events)


def _slots_since_user(tracker: Tracker) -> set[str]:
    """The slots set since the latest user message (what the form may validate)."""
    names: set[str] = set()
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            break
        if event.get("event") == "slot" and event.get("value") is not None:
            names.add(str(event.get("name")))
    return names


def action_call(
    tracker: Tracker, action: str, *, sender_id: str, domain: Mapping[str, Any], version: str = "3.6.0"
) -> dict[str, Any]:
    """The rasa-sdk webhook body for ``action`` (https://rasa.com/docs/rasa/pages/action-server-api)."""
    latest_user = next((e for e in reversed(tracker.events) if e.get("event") == "user"), None)
    return {
        "next_action": action,
        "sender_id": sender_id,
        "version": version,
        "domain": dict(domain),
        "tracker": {
            "sender_id": sender_id,
            "slots": dict(tracker.slots),
            "latest_message": (latest_user or {}).get("parse_data") or {"intent": {}, "entities": [], "text": None},
            "latest_event_time": None,
            "followup_action": tracker.followup,
            "paused": False,
            "events": [dict(e) for e in tracker.events],
            "latest_input_channel": "kefu",
            "latest_action_name": tracker.prev_action,
            "active_loop": {"name": tracker.active_loop} if tracker.active_loop else {},
        },
    }


SAFE_REPLY = "utter_safe_reply"  # every Kefu bot has it (the importer adds it to a Rasa project's domain)
IDLE = "idle"  # the stored state of a conversation with no active loop (else the loop's name)
TRACKER_SLOT = "_rasa_tracker"  # the stored slot holding what the policies remember between turns (no customer text)
KEPT_STATES = 20  # states kept between turns: more than any rule or memoised story looks back


@dataclass(frozen=True)
class TurnResult:
    """What :meth:`RasaDialogue.turn` hands back to the engine to store and say."""

    state: str
    slots: dict[str, Any]
    actions: list[tuple[str, str]]
    result: ActionResult


@dataclass(frozen=True)
class RasaDialogue:
    """An imported Rasa bot's dialogue as :class:`~dialogue.engine.DialogueEngine` runs it, one turn at a time.

    The conversation row stores the active loop as its state and the slots as they are, plus :data:`TRACKER_SLOT`:
    the last states, the previous action, the latest intent and a pending follow-up (never the customer's text).
    """

    policy: RasaPolicy
    domain: Mapping[str, Any]  # the domain as the action server is sent it
    custom_actions: frozenset[str] = frozenset()
    regex_entities: RegexEntities = field(default_factory=lambda: RegexEntities(()))  # RegexEntityExtractor, if any

    @property
    def project(self) -> RasaProject:
        return self.policy.project

    def read(self, text: str | None, intent: str, confidence: float, ranking: Iterable[tuple[str, float]],
             entities: Iterable[EntityValue]) -> tuple[str, tuple[EntityValue, ...]]:
        """The intent and entities the bot acts on for a message the NLU read as ``intent`` / ``entities``: a
        button's payload as it is given (as Rasa takes ``/intent{...}``); otherwise the intent through Rasa's
        ``FallbackClassifier`` and the entities with the project's ``RegexEntityExtractor``'s added."""
        given = payload_intent(self.project, text)
        if given is not None:
            return given
        return nlu_intent(self.project, intent, confidence, ranking), self.regex_entities.extract(text or "", entities)

    def restore(self, state: str, slots: Mapping[str, Any]) -> Tracker:
        tracker = Tracker.start(self.project)
        stored = slots.get(TRACKER_SLOT)
        memory: Mapping[str, Any] = stored if isinstance(stored, Mapping) else {}
        tracker.slots.update({k: v for k, v in slots.items() if k != TRACKER_SLOT})
        tracker.active_loop = state if state in self.project.forms else None
        tracker.history = [dict(s) for s in memory.get("history", [])]
        tracker.prev_action = memory.get("prev", LISTEN)
        tracker.intent = memory.get("intent")
        tracker.user_turns = int(memory.get("user_turns", 0))
        tracker.followup = memory.get("followup")
        return tracker

    def store(self, tracker: Tracker) -> tuple[str, dict[str, Any]]:
        slots = {k: v for k, v in tracker.slots.items()}
        slots[TRACKER_SLOT] = {
            "history": tracker.history[-KEPT_STATES:], "prev": tracker.prev_action, "intent": tracker.intent,
            "user_turns": tracker.user_turns, "followup": tracker.followup,
        }
        return tracker.active_loop or IDLE, slots

    async def turn(
        self,
        state: str,
        slots: Mapping[str, Any],
        *,
        intent: str,
        confidence: float,
        ranking: Iterable[tuple[str, float]],
        entities: Iterable[EntityValue],
        text: str | None,
        run: Callable[[str, dict[str, Any]], Awaitable[ActionResult]],
        sender_id: str,
    ) -> TurnResult:
        """One user message: the bot's actions until it listens, what they said, and the state to store."""
        tracker = self.restore(state, slots)

        async def execute(action: str, current: Tracker) -> ActionResult:
            return await run(action, action_call(current, action, sender_id=sender_id, domain=self.domain))

        intent, entities = self.read(text, intent, confidence, ranking, entities)
        outcome = await respond(
            self.policy, tracker, intent=intent, entities=entities, text=text, execute=execute,
            custom_actions=self.custom_actions,
        )
        result = ActionResult(handoff=outcome.handoff, failed=bool(outcome.failed),
                              error=", ".join(outcome.failed) or None)
        for utterance in outcome.utterances:
            slots = {**tracker.slots, **utterance.values}  # as they were when it was said
            key = variation_key(self.project, utterance.response, slots) if utterance.response else None
            if key:
                said = (key, {k: "" if v is None else str(v) for k, v in utterance.values.items()})
                result.responses.append(said)
                result.ordered.append(said)
            elif utterance.text:
                result.texts.append(utterance.text)
                result.ordered.append(utterance.text)
        if result.failed and not result.ordered:  # the action server is down or broke: say so, never nothing
            said = ("utter_default" if "utter_default" in self.project.responses else SAFE_REPLY, {})
            result.responses.append(said)
            result.ordered.append(said)
        result.buttons = self._buttons(outcome.utterances, tracker.slots)
        new_state, new_slots = self.store(tracker)
        return TurnResult(new_state, new_slots, outcome.actions, result)

    def _buttons(self, utterances: Sequence[Utterance], slots: Mapping[str, Any]) -> list[tuple[str, str]]:
        """The buttons of the turn's last message (Rasa shows a response's buttons under it): its chosen variation's
        (an unconditional response's first variation that has buttons), or those an action sent with its text."""
        if not utterances:
            return []
        last = utterances[-1]
        raw: Any = last.buttons
        if last.response and not raw:
            index = conditional_variation(self.project, last.response, {**slots, **last.values})
            variations = self.project.responses.get(last.response) or ()
            if index is not None:
                raw = variations[index].get("buttons")
            else:
                raw = next((v.get("buttons") for v in variations if v.get("buttons") and not v.get("condition")), None)
        return [(str(b.get("title", "")), str(b.get("payload", b.get("title", ""))))
                for b in raw or () if isinstance(b, Mapping) and b.get("title")]


def action_server_domain(project: RasaProject) -> dict[str, Any]:
    """The domain as Rasa sends it to the action server (what rasa-sdk's forms and validation actions read)."""
    return {
        "version": project.version or "3.1",
        "intents": list(project.intents),
        "entities": list(project.entities),
        "slots": {
            name: {"type": slot.type, "influence_conversation": slot.influence_conversation,
                   "initial_value": slot.initial_value, "values": list(slot.values) or None,
                   "mappings": [{"type": m.type} for m in slot.mappings]}
            for name, slot in project.slots.items()
        },
        "responses": {k: list(v) for k, v in project.responses.items()},
        "forms": {name: {"required_slots": list(form.required_slots)} for name, form in project.forms.items()},
        "actions": list(project.actions),
        "session_config": {"session_expiration_time": project.session_config.session_expiration_time,
                           "carry_over_slots_to_new_session": project.session_config.carry_over_slots_to_new_session},
    }


def loop_flows(project: RasaProject) -> Flows:
    """The FSM of the project's loops: ``idle`` and one state per form, entered when the form activates and left when
    it is done or deactivated. The engine stores a Rasa bot's conversations in these states (what the console shows
    and a hand-back restarts from); the actions within a state are the policy's (:class:`RasaPolicy`)."""
    from functools import reduce

    from statemachine import State, StateMachine

    states = {IDLE: State(name=IDLE, value=IDLE, initial=True)}
    states.update({form: State(name=form, value=form) for form in project.forms})
    attrs: dict[str, Any] = dict(states)
    for form in project.forms:
        attrs[f"activate__{form}"] = reduce(lambda a, b: a | b, [s.to(states[form]) for s in states.values()
                                                                 if s is not states[form]] or [states[form].to.itself()])
    if project.forms:
        attrs[DEACTIVATE_LOOP] = reduce(lambda a, b: a | b, [states[f].to(states[IDLE]) for f in project.forms])
    else:
        attrs["noop"] = states[IDLE].to.itself()
    machine = type("RasaLoops", (StateMachine,), {**attrs, "__module__": __name__})

    def default_policy(observation: Any, allowed: Sequence[str]) -> str:
        return allowed[0] if allowed else LISTEN

    return Flows(machine=machine, default_policy=default_policy)
