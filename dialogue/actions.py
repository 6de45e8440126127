"""Custom actions over the rasa-sdk action-server protocol: one payload, one parser, two transports.

* :func:`build_action_call` builds the JSON body Rasa POSTs to an action server's ``/webhook``
  (``{"next_action", "sender_id", "tracker", "domain", "version"}``; the tracker as ``Tracker.from_dict`` reads it).
* :func:`parse_action_response` turns the server's answer (``{"events": [...], "responses": [...]}``) into an
  :class:`~dialogue.types.ActionResult`.
* :class:`InProcessActions` loads ``rasa_sdk.Action`` subclasses from a module (a file such as
  ``examples/shop/actions.py`` or a dotted name) and runs them with rasa-sdk's own ``ActionExecutor`` on the
  JSON-round-tripped payload, so in-process and remote execution take the same path and see the same data.
* :class:`RemoteActions` POSTs the payload to a running action server
  (``python -m rasa_sdk --actions actions --port 5055``) with httpx.

Both runners implement :class:`ActionRunner`. Failures of an action never raise out of ``run``: the result has
``failed=True``, ``error`` set to one of :data:`ACTION_ERRORS` and the single response ``("utter_fallback", {})``.

Conventions:

* **Hand-off**: an action requests a human agent by returning ``SlotSet("handoff", True)``; the parser maps it to
  ``ActionResult.handoff = True`` and does not copy ``handoff`` into ``slot_updates``.
* ``slot`` events become ``slot_updates`` (last one wins); ``reset_slots`` sets every slot the tracker had to
  ``None``; ``bot`` events with a text become ``texts``; other event types are ignored (logged by type only).
* Responses: ``{"response": "utter_x", **kwargs}`` -> ``responses.append(("utter_x", {k: str(v)}))`` with the
  standard message keys (``text``, ``buttons``, ``image``...) and ``None`` values dropped; a message with only a
  ``text`` -> ``texts``.

Logs carry action names, status codes, error categories and timings, never customer text or payloads.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import importlib.util
import inspect
import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import httpx

from dialogue.errors import DialogueError
from dialogue.types import ACTION, BOT_MESSAGE, NLU_PARSE, SLOT_SET, USER_MESSAGE, ActionResult, Event
from nlu.types import Parse

logger = logging.getLogger(__name__)

FALLBACK_RESPONSE = "utter_fallback"
HANDOFF_SLOT = "handoff"

# Values of ActionResult.error when failed=True.
ERR_REJECTED = "rejected"  # the action raised ActionExecutionRejection (HTTP 400)
ERR_UNKNOWN_ACTION = "unknown_action"  # no action of that name is registered (HTTP 404)
ERR_BAD_REQUEST = "bad_request"  # any other 4xx (e.g. 449: domain missing)
ERR_SERVER_ERROR = "server_error"  # HTTP 5xx (the action raised inside the server)
ERR_UNAVAILABLE = "unavailable"  # connection refused / DNS / network error
ERR_TIMEOUT = "timeout"  # no answer within timeout_s
ERR_BAD_RESPONSE = "bad_response"  # a 200 whose body is not a valid action response
ERR_ACTION_ERROR = "action_error"  # in-process: the action raised an unexpected exception
ACTION_ERRORS = (
    ERR_REJECTED,
    ERR_UNKNOWN_ACTION,
    ERR_BAD_REQUEST,
    ERR_SERVER_ERROR,
    ERR_UNAVAILABLE,
    ERR_TIMEOUT,
    ERR_BAD_RESPONSE,
    ERR_ACTION_ERROR,
)

# Keys of a rasa-sdk dispatcher message that are not template variables.
_MESSAGE_KEYS = frozenset(
    {"text", "buttons", "elements", "custom", "template", "response", "image", "attachment", "quick_replies"}
)


class ActionError(DialogueError):
    """Loading actions or reading an action server's answer failed.

    ``action_name`` is the action involved (if any), ``source`` the module path/name or server URL.
    """

    def __init__(self, message: str, *, action_name: str | None = None, source: str | None = None) -> None:
        self.action_name = action_name
        self.source = source
        context = ", ".join(
            f"{key}={value!r}" for key, value in (("action", action_name), ("source", source)) if value is not None
        )
        super().__init__(f"{message} ({context})" if context else message)


def failed_result(error: str) -> ActionResult:
    """The result of an action that could not run: ``error`` category and the fallback response."""
    return ActionResult(responses=[(FALLBACK_RESPONSE, {})], failed=True, error=error)


# --------------------------------------------------------------------------------------------------- payload


def protocol_version() -> str:
    """The Rasa version we claim to be: ``<rasa_sdk major>.<minor>.0`` (rasa-sdk warns on a major.minor mismatch)."""
    from rasa_sdk.version import __version__

    major, minor, *_ = __version__.split(".")
    return f"{major}.{minor}.0"


def _latest_message(
    latest_text: str | None, parse: Parse | None, language: str | None, message_id: str | None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "text": latest_text if latest_text is not None else (parse.text if parse is not None else None),
        "intent": {},
        "entities": [],
        "intent_ranking": [],
        "message_id": message_id,
        "metadata": {**({"language": language} if language else {}), **(metadata or {})},
    }
    if parse is not None:
        message["intent"] = {"name": parse.intent, "confidence": float(parse.confidence)}
        message["entities"] = [
            {"entity": e.entity, "value": e.value, "start": e.start, "end": e.end, "extractor": "kefu"}
            for e in parse.entities
        ]
        ranking = parse.ranking or ((parse.intent, parse.confidence),)
        message["intent_ranking"] = [{"name": name, "confidence": float(p)} for name, p in ranking]
    return message


def build_action_call(
    action_name: str,
    conversation_id: str,
    slots: Mapping[str, Any],
    latest_text: str | None,
    parse: Parse | None,
    events: Sequence[Mapping[str, Any]],
    domain: Mapping[str, Any],
    *,
    language: str | None = None,
    input_channel: str | None = None,
    latest_action_name: str | None = None,
    followup_action: str | None = None,
    message_id: str | None = None,
    paused: bool = False,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The body Rasa POSTs to ``<action server>/webhook`` to run ``action_name``.

    ``slots`` are the conversation's slots; the ``language`` slot is filled from ``language`` (or
    ``parse.language``) when given, so actions can localise. ``events`` are Rasa-format tracker events (see
    :func:`rasa_events`). ``domain`` is the bot's domain dict (always sent: no domain digest caching). ``metadata``
    joins the latest message's (the knowledge action gets the bot's ``knowledge_threshold`` in the conversation's
    language there).
    """
    slot_values = dict(slots)
    lang = language or slot_values.get("language") or (parse.language if parse is not None else None)
    if lang:
        slot_values["language"] = lang
    event_list = [dict(e) for e in events]
    times = [float(e["timestamp"]) for e in event_list if isinstance(e.get("timestamp"), int | float)]
    tracker: dict[str, Any] = {
        "sender_id": conversation_id,
        "slots": slot_values,
        "latest_message": _latest_message(latest_text, parse, lang, message_id, metadata),
        "latest_event_time": max(times) if times else time.time(),
        "followup_action": followup_action,
        "paused": paused,
        "events": event_list,
        "latest_input_channel": input_channel,
        "active_loop": {},
        "latest_action": {"action_name": latest_action_name} if latest_action_name else {},
        "latest_action_name": latest_action_name,
    }
    return {
        "next_action": action_name,
        "sender_id": conversation_id,
        "tracker": tracker,
        "domain": dict(domain),
        "version": protocol_version(),
    }


def rasa_events(events: Iterable[Event]) -> list[dict[str, Any]]:
    """Kefu's stored events as Rasa tracker events (``user``/``slot``/``action``/``bot``), for ``build_action_call``.

    A ``nlu_parse`` event is folded into the preceding ``user`` event's ``parse_data``; other types are skipped.
    """
    out: list[dict[str, Any]] = []
    last_user: dict[str, Any] | None = None
    for ev in events:
        ts = ev.timestamp.timestamp()
        if ev.type == USER_MESSAGE:
            last_user = {
                "event": "user",
                "timestamp": ts,
                "text": ev.data.get("text"),
                "parse_data": {"intent": {}, "entities": [], "text": ev.data.get("text")},
                "message_id": ev.message_id or ev.data.get("message_id"),
                "input_channel": None,
            }
            out.append(last_user)
        elif ev.type == NLU_PARSE and last_user is not None:
            data = ev.data
            last_user["parse_data"].update(
                {
                    "intent": {"name": data.get("intent"), "confidence": data.get("confidence")},
                    "entities": list(data.get("entities", [])),
                    "intent_ranking": [{"name": n, "confidence": p} for n, p in data.get("ranking", [])],
                    "metadata": {"language": data.get("language")},
                }
            )
        elif ev.type == SLOT_SET:
            out.append({"event": "slot", "timestamp": ts, "name": ev.data.get("slot"), "value": ev.data.get("value")})
        elif ev.type == ACTION:
            out.append(
                {
                    "event": "action",
                    "timestamp": ts,
                    "name": ev.data.get("name"),
                    "policy": ev.data.get("policy"),
                    "confidence": ev.data.get("score"),
                }
            )
        elif ev.type == BOT_MESSAGE:
            out.append({"event": "bot", "timestamp": ts, "text": ev.data.get("text"), "data": {}, "metadata": {}})
    return out


# --------------------------------------------------------------------------------------------------- response


def parse_action_response(body: Any, *, known_slots: Iterable[str] = ()) -> ActionResult:
    """An action server's 200 answer (``{"events": [...], "responses": [...]}``) as an ActionResult.

    ``known_slots`` are the tracker's slot names, used to expand a ``reset_slots`` event.
    Raises :class:`ActionError` when ``body`` does not have that shape.
    """
    if not isinstance(body, Mapping):
        raise ActionError(f"action response must be a JSON object, got {type(body).__name__}")
    events = body.get("events")
    responses = body.get("responses")
    events = [] if events is None else events
    responses = [] if responses is None else responses
    if not isinstance(events, list) or not isinstance(responses, list):
        raise ActionError("action response 'events' and 'responses' must be lists")
    result = ActionResult(events=[dict(e) for e in events if isinstance(e, Mapping)])
    for message in responses:
        if not isinstance(message, Mapping):
            raise ActionError("each action response message must be an object")
        buttons = message.get("buttons")
        if isinstance(buttons, list):  # dispatcher.utter_message(buttons=[{"title": ..., "payload": ...}])
            result.buttons = [(str(b["title"]), str(b.get("payload", b["title"]))) for b in buttons
                              if isinstance(b, Mapping) and b.get("title")]
        key = message.get("response") or message.get("template")
        if key:
            kwargs = {str(k): str(v) for k, v in message.items() if k not in _MESSAGE_KEYS and v is not None}
            result.responses.append((str(key), kwargs))
        elif message.get("text"):
            result.texts.append(str(message["text"]))
    for event in events:
        if not isinstance(event, Mapping):
            raise ActionError("each action event must be an object")
        kind = event.get("event")
        if kind == "slot":
            name = event.get("name")
            if not isinstance(name, str):
                raise ActionError("slot event without a slot name")
            if name == HANDOFF_SLOT:
                result.handoff = bool(event.get("value"))
            else:
                result.slot_updates[name] = event.get("value")
        elif kind == "reset_slots":
            for name in known_slots:
                if name != HANDOFF_SLOT:
                    result.slot_updates[name] = None
        elif kind == "bot":
            if event.get("text"):
                result.texts.append(str(event["text"]))
        else:
            logger.debug("ignoring action event of type %r", kind)
    return result


def _slot_names(call_payload: Mapping[str, Any]) -> list[str]:
    tracker = call_payload.get("tracker")
    slots = tracker.get("slots") if isinstance(tracker, Mapping) else None
    return list(slots) if isinstance(slots, Mapping) else []


def _prepare_payload(action_name: str, call_payload: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-round-tripped copy of the payload with ``next_action`` set (what a server would receive)."""
    try:
        payload: dict[str, Any] = json.loads(json.dumps(dict(call_payload)))
    except (TypeError, ValueError) as exc:
        raise ActionError(f"action call payload is not JSON-serialisable: {exc}", action_name=action_name) from exc
    payload["next_action"] = action_name
    return payload


# --------------------------------------------------------------------------------------------------- runners


@runtime_checkable
class ActionRunner(Protocol):
    """Runs custom actions; ``run`` never raises for action failures (see :data:`ACTION_ERRORS`)."""

    async def run(self, action_name: str, call_payload: Mapping[str, Any]) -> ActionResult: ...

    async def aclose(self) -> None: ...


def _load_module(module: str | Path) -> ModuleType:
    """Import an actions module from a file path (its folder goes on ``sys.path`` for sibling imports, as when
    an action server runs from the bot folder) or a dotted module name."""
    ref = str(module)
    is_file = isinstance(module, Path) or ref.endswith(".py") or os.sep in ref or "/" in ref
    if not is_file:
        try:
            return importlib.import_module(ref)
        except Exception as exc:
            raise ActionError(f"cannot import actions module: {type(exc).__name__}: {exc}", source=ref) from exc
    path = Path(ref).resolve()
    if not path.is_file():
        raise ActionError("actions file not found", source=str(path))
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    name = f"kefu_actions_{path.stem}_{digest}"
    cached = sys.modules.get(name)
    if cached is not None:
        return cached
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.append(folder)  # appended, so the bot folder never shadows installed modules
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ActionError("cannot load actions file", source=str(path))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ActionError(f"cannot import actions file: {type(exc).__name__}: {exc}", source=str(path)) from exc
    return mod


class InProcessActions:
    """Runs the ``rasa_sdk.Action`` subclasses defined in one module with rasa-sdk's ``ActionExecutor``.

    ``module`` is a ``.py`` path or a dotted module name. Only classes defined in that module are registered
    (rasa-sdk's ``register_package`` would register every Action subclass in the process). Async ``run``
    methods are awaited on the loop; sync ones run in a worker thread. ``bot_dir``, when given, is exported as
    ``KEFU_BOT_DIR`` (process-wide) for the actions to read, again before each run, so that a process that runs
    several bots (the tests, a policy gate) gives each bot's actions their own folder. ``timeout_s`` bounds each run (a sync action's
    thread cannot be killed; its result is discarded).
    """

    def __init__(self, module: str | Path, *, bot_dir: Path | None = None, timeout_s: float | None = None) -> None:
        from rasa_sdk.executor import ActionExecutor
        from rasa_sdk.interfaces import Action

        self.bot_dir = str(Path(bot_dir).resolve()) if bot_dir is not None else None
        if self.bot_dir is not None:
            os.environ["KEFU_BOT_DIR"] = self.bot_dir
        self.source = str(module)
        self.timeout_s = timeout_s
        self._module = _load_module(module)
        self._executor = ActionExecutor()
        for obj in list(vars(self._module).values()):
            if (
                inspect.isclass(obj)
                and issubclass(obj, Action)
                and obj.__module__ == self._module.__name__
                and not inspect.isabstract(obj)
            ):
                self._register(obj())
        if not self._executor.actions:
            raise ActionError("no rasa_sdk.Action subclasses found", source=self.source)

    def _register(self, action: Any) -> None:
        if inspect.iscoroutinefunction(action.run):
            self._executor.register_action(action)
            return
        sync_run = action.run

        async def run_in_thread(dispatcher: Any, tracker: Any, domain: Any) -> Any:
            return await asyncio.to_thread(sync_run, dispatcher, tracker, domain)

        self._executor.register_function(action.name(), run_in_thread)

    @property
    def action_names(self) -> list[str]:
        return sorted(self._executor.actions)

    def __repr__(self) -> str:
        return f"InProcessActions(source={self.source!r}, actions={len(self._executor.actions)})"

    async def run(self, action_name: str, call_payload: Mapping[str, Any]) -> ActionResult:
        from rasa_sdk.interfaces import ActionExecutionRejection, ActionMissingDomainException, ActionNotFoundException

        started = time.perf_counter()
        payload = _prepare_payload(action_name, call_payload)
        if self.bot_dir is not None:  # actions read it when they run; a process running several bots (the tests,
            os.environ["KEFU_BOT_DIR"] = self.bot_dir  # a gate) runs their turns one at a time, each in its own
        try:
            if self.timeout_s is None:
                result = await self._executor.run(payload)
            else:
                result = await asyncio.wait_for(self._executor.run(payload), self.timeout_s)
        except ActionExecutionRejection:
            return self._fail(action_name, ERR_REJECTED, started)
        except ActionNotFoundException:
            return self._fail(action_name, ERR_UNKNOWN_ACTION, started)
        except ActionMissingDomainException:
            return self._fail(action_name, ERR_BAD_REQUEST, started)
        except TimeoutError:
            return self._fail(action_name, ERR_TIMEOUT, started)
        except Exception as exc:
            logger.debug("in-process action %s raised", action_name, exc_info=True)
            return self._fail(action_name, ERR_ACTION_ERROR, started, type(exc).__name__)
        if result is None:
            return self._fail(action_name, ERR_BAD_RESPONSE, started)
        try:
            body = json.loads(json.dumps(result.model_dump()))
            parsed = parse_action_response(body, known_slots=_slot_names(payload))
        except (ActionError, TypeError, ValueError) as exc:
            return self._fail(action_name, ERR_BAD_RESPONSE, started, type(exc).__name__)
        logger.debug("in-process action %s ok in %.1f ms", action_name, (time.perf_counter() - started) * 1000)
        return parsed

    @staticmethod
    def _fail(action_name: str, error: str, started: float, detail: str | None = None) -> ActionResult:
        logger.warning(
            "action %s failed: %s%s after %.1f ms",
            action_name,
            error,
            f" ({detail})" if detail else "",
            (time.perf_counter() - started) * 1000,
        )
        return failed_result(error)

    async def aclose(self) -> None:
        return None


class RemoteActions:
    """Runs actions on a rasa-sdk action server: ``url`` is its webhook, e.g. ``http://127.0.0.1:5055/webhook``.

    A 200 is parsed with :func:`parse_action_response`; 400 -> ``rejected``, 404 -> ``unknown_action``, other
    4xx -> ``bad_request``, 5xx -> ``server_error``, connection errors -> ``unavailable``, more than
    ``timeout_s`` in total -> ``timeout``; each failure returns the fallback response and never raises.
    """

    def __init__(self, url: str, timeout_s: float = 5.0, *, client: httpx.AsyncClient | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ActionError("action endpoint must be an http(s) URL", source=url)
        self.url = url
        self.timeout_s = timeout_s
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout_s))

    def __repr__(self) -> str:
        return f"RemoteActions(url={self.url!r}, timeout_s={self.timeout_s})"

    async def run(self, action_name: str, call_payload: Mapping[str, Any]) -> ActionResult:
        started = time.perf_counter()
        payload = _prepare_payload(action_name, call_payload)
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self._client.post(self.url, json=payload)
        except (TimeoutError, httpx.TimeoutException):
            return self._fail(action_name, ERR_TIMEOUT, started)
        except httpx.HTTPError as exc:  # connect errors, protocol errors, bad URLs...
            return self._fail(action_name, ERR_UNAVAILABLE, started, type(exc).__name__)
        except OSError as exc:
            return self._fail(action_name, ERR_UNAVAILABLE, started, type(exc).__name__)
        status = response.status_code
        if status == 200:
            try:
                parsed = parse_action_response(response.json(), known_slots=_slot_names(payload))
            except (ActionError, ValueError) as exc:
                return self._fail(action_name, ERR_BAD_RESPONSE, started, type(exc).__name__, status)
            logger.debug("remote action %s ok in %.1f ms", action_name, (time.perf_counter() - started) * 1000)
            return parsed
        if status == 400:
            error = ERR_REJECTED
        elif status == 404:
            error = ERR_UNKNOWN_ACTION
        elif 400 <= status < 500:
            error = ERR_BAD_REQUEST
        elif status >= 500:
            error = ERR_SERVER_ERROR
        else:
            error = ERR_BAD_RESPONSE
        return self._fail(action_name, error, started, status=status)

    def _fail(
        self, action_name: str, error: str, started: float, detail: str | None = None, status: int | None = None
    ) -> ActionResult:
        logger.warning(
            "remote action %s at %s failed: %s%s%s after %.1f ms",
            action_name,
            self.url,
            error,
            f" (HTTP {status})" if status is not None else "",
            f" ({detail})" if detail else "",
            (time.perf_counter() - started) * 1000,
        )
        return failed_result(error)

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()


def action_runner(
    bot_dir: Path, *, actions: str | None = None, action_endpoint: str | None = None, timeout_s: float = 5.0
) -> ActionRunner:
    """The runner bot.yml asks for: ``action_endpoint`` (remote, bounded by ``timeout_s``) wins over ``actions``
    (a module path relative to ``bot_dir``, or a dotted name; in-process runs are not time-bounded, so a first
    knowledge-base load may take its time)."""
    if action_endpoint:
        return RemoteActions(action_endpoint, timeout_s)
    if not actions:
        raise ActionError("bot config names neither 'actions' nor 'action_endpoint'", source=str(bot_dir))
    module: str | Path = bot_dir / actions if actions.endswith(".py") or "/" in actions else actions
    return InProcessActions(module, bot_dir=bot_dir)
