"""An OpenAI-compatible HTTP surface over :class:`runtime.engine.Engine` (aiohttp).

Routes: ``GET /v1/models``, ``POST /v1/completions``, ``POST /v1/chat/completions`` (and ``GET /health``).
``stream: true`` answers with server-sent events in OpenAI's chunk format, ending with ``data: [DONE]``;
``stream_options.include_usage`` adds a final usage chunk. Honoured request fields: ``model`` (must be
the served name), ``prompt`` / ``messages``, ``max_tokens`` (or ``max_completion_tokens``),
``temperature`` (OpenAI's default 1.0; 0 is greedy), ``top_p``, ``stop`` (string or list), ``seed``,
``n`` (1 only), ``stream``, ``stream_options``. Unsupported options (``logprobs``, ``echo``, ``n > 1``,
tools) are rejected with 400 rather than silently ignored.

Chat messages become a prompt through the tokenizer's chat template when it has one, otherwise a simple
role-tagged format (``system: ...\\nuser: ...\\nassistant:``) whose role tags are also stop strings.

Back-pressure: when the engine's bounded queue is full the answer is ``429`` with an OpenAI-style error
body (``type``/``code`` ``"busy"``); a closed engine answers ``503``. A client that disconnects cancels its
request (the handler is cancelled, which closes the engine stream and frees the batch slot); serve with
``handler_cancellation=True`` as :func:`serve` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from runtime.engine import Engine, SamplingParams
from runtime.errors import APIError, EngineClosed, GenerationError, QueueFull

log = logging.getLogger(__name__)

ENGINE_KEY: web.AppKey[Any] = web.AppKey("engine", object)
NAME_KEY: web.AppKey[str] = web.AppKey("model_name", str)
ROLE_STOPS = ("\nuser:", "\nsystem:", "\nassistant:")
_MAX_STOPS = 4


def _error_response(err: APIError) -> web.Response:
    """``err`` as an OpenAI-style JSON error answer."""
    return web.json_response(err.body(), status=err.status)


def _invalid(message: str, param: str | None = None) -> APIError:
    return APIError(400, message, "invalid_request_error", None, param)


def _engine_error(exc: GenerationError) -> APIError:
    if isinstance(exc, QueueFull):
        return APIError(429, f"server busy: {exc}; retry later", "busy", "busy")
    if isinstance(exc, EngineClosed):
        return APIError(503, "server busy: the engine is shutting down", "busy", "engine_closed")
    if "exceeds" in str(exc):  # prompt longer than the model's context
        return _invalid(str(exc), "prompt")
    return APIError(500, f"generation failed: {exc}", "server_error", "generation_error")


def _number(body: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise _invalid(f"{key} must be a number in [{lo}, {hi}]", key)
    return float(value)


def sampling_from_body(
    body: dict[str, Any], default_max_tokens: int, extra_stops: tuple[str, ...] = ()
) -> SamplingParams:
    """OpenAI request fields -> :class:`SamplingParams` (raises :class:`APIError` 400)."""
    unsupported = {
        "logprobs": body.get("logprobs") not in (None, False, 0),
        "top_logprobs": body.get("top_logprobs") not in (None, 0),
        "echo": bool(body.get("echo")),
        "tools": bool(body.get("tools") or body.get("functions")),
        "best_of": body.get("best_of") not in (None, 1),
        "suffix": bool(body.get("suffix")),
    }
    for key, bad in unsupported.items():
        if bad:
            raise _invalid(f"{key} is not supported by this server", key)
    if body.get("n") not in (None, 1):
        raise _invalid("only n=1 is supported", "n")
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    if max_tokens is None:
        max_tokens = default_max_tokens
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise _invalid("max_tokens must be a positive integer", "max_tokens")
    temperature = _number(body, "temperature", 1.0, 0.0, 2.0)
    top_p = _number(body, "top_p", 1.0, 0.0, 1.0)
    if top_p == 0.0:
        raise _invalid("top_p must be > 0", "top_p")
    stop = body.get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= _MAX_STOPS:
        stops = tuple(stop)
    else:
        raise _invalid(f"stop must be a string or a list of at most {_MAX_STOPS} strings", "stop")
    stops = tuple(s for s in stops + extra_stops if s)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _invalid("seed must be an integer", "seed")
    return SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p, stop=stops, seed=seed)


def chat_prompt(tokenizer: Any, messages: Any) -> tuple[str, tuple[str, ...]]:
    """The prompt for chat ``messages`` and the extra stop strings its format needs."""
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages must be a non-empty list", "messages")
    clean = []
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "developer"):
            raise _invalid("each message needs a role of system, developer, user or assistant", "messages")
        content = m.get("content")
        if isinstance(content, list):  # content parts: text only
            if not all(isinstance(p, dict) and p.get("type") == "text" for p in content):
                raise _invalid("only text content parts are supported", "messages")
            content = "".join(str(p.get("text", "")) for p in content)
        if not isinstance(content, str):
            raise _invalid("message content must be a string", "messages")
        role = "system" if m["role"] == "developer" else m["role"]
        clean.append({"role": role, "content": content})
    if getattr(tokenizer, "chat_template", None):
        try:
            text = tokenizer.apply_chat_template(clean, tokenize=False, add_generation_prompt=True)
            return str(text), ()
        except Exception as exc:  # a template that rejects the conversation (e.g. role order)
            raise _invalid(f"chat template rejected the messages: {exc}", "messages") from exc
    text = "".join(f"{m['role']}: {m['content']}\n" for m in clean) + "assistant:"
    return text, ROLE_STOPS


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"


async def _first(stream: AsyncIterator[str]) -> tuple[str | None, bool]:
    """The first delta (``None`` if the stream ended at once); engine errors surface here, before any
    response byte is sent, so they get a proper HTTP status."""
    try:
        return await anext(stream), False
    except StopAsyncIteration:
        return None, True


class OpenAIServer:
    """Request handlers bound to one engine serving one model name."""

    def __init__(self, engine: Any, model_name: str, default_max_tokens: int = 16) -> None:
        self.engine = engine
        self.model_name = model_name
        self.default_max_tokens = default_max_tokens
        self.created = int(time.time())

    # ------------------------------------------------------------------ routes
    async def models(self, request: web.Request) -> web.Response:
        card = {"id": self.model_name, "object": "model", "created": self.created, "owned_by": "kefu"}
        return web.json_response({"object": "list", "data": [card]})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "active": getattr(self.engine, "active", 0)})

    async def completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._body(request)
            prompt = body.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
                prompt = prompt[0]
            if not isinstance(prompt, str):
                raise _invalid("prompt must be a string (or a list of one string)", "prompt")
            params = sampling_from_body(body, self.default_max_tokens)
            return await self._run(request, body, prompt, params, chat=False)
        except APIError as err:
            return _error_response(err)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._body(request)
            prompt, stops = chat_prompt(self.engine.tokenizer, body.get("messages"))
            params = sampling_from_body(body, default_max_tokens=1024, extra_stops=stops)
            return await self._run(request, body, prompt, params, chat=True)
        except APIError as err:
            return _error_response(err)

    # ------------------------------------------------------------------ helpers
    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _invalid(f"request body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise _invalid("request body must be a JSON object")
        model = body.get("model")
        if model not in (None, self.model_name):
            raise APIError(404, f"the model {model!r} does not exist; this server serves {self.model_name!r}",
                           "invalid_request_error", "model_not_found", "model")  # fmt: skip
        if body.get("stream") not in (None, True, False):
            raise _invalid("stream must be a boolean", "stream")
        return body

    async def _run(
        self, request: web.Request, body: dict[str, Any], prompt: str, params: SamplingParams, chat: bool
    ) -> web.StreamResponse:
        info: dict[str, Any] = {}
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        stream = self.engine.stream(prompt, params, info=info)
        async with contextlib.aclosing(stream):
            try:
                first, ended = await _first(stream)
            except GenerationError as exc:
                raise _engine_error(exc) from exc
            if body.get("stream"):
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                return await self._stream(request, stream, first, ended, info, rid, created, chat, include_usage)
            parts = [] if first is None else [first]
            if not ended:
                try:
                    async for delta in stream:
                        parts.append(delta)
                except GenerationError as exc:
                    raise _engine_error(exc) from exc
        text = "".join(parts)
        finish = info.get("finish_reason", "stop")
        if chat:
            choice: dict[str, Any] = {
                "index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": finish,
            }  # fmt: skip
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return web.json_response(
            {
                "id": rid,
                "object": "chat.completion" if chat else "text_completion",
                "created": created,
                "model": self.model_name,
                "choices": [choice],
                "usage": _usage(info),
            }
        )

    async def _stream(
        self,
        request: web.Request,
        stream: AsyncIterator[str],
        first: str | None,
        ended: bool,
        info: dict[str, Any],
        rid: str,
        created: int,
        chat: bool,
        include_usage: bool,
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        await resp.prepare(request)
        obj = "chat.completion.chunk" if chat else "text_completion"

        def chunk(delta: str | None, finish: str | None = None, role: bool = False) -> dict[str, Any]:
            if chat:
                d: dict[str, Any] = {}
                if role:
                    d["role"] = "assistant"
                if delta is not None:
                    d["content"] = delta
                choice: dict[str, Any] = {"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": delta or "", "logprobs": None, "finish_reason": finish}
            return {"id": rid, "object": obj, "created": created, "model": self.model_name, "choices": [choice]}

        try:
            if chat:
                await resp.write(_sse(chunk("", role=True)))
            if first:
                await resp.write(_sse(chunk(first)))
            if not ended:
                async for delta in stream:
                    await resp.write(_sse(chunk(delta)))
            await resp.write(_sse(chunk(None, finish=info.get("finish_reason", "stop"))))
            if include_usage:
                usage = {"id": rid, "object": obj, "created": created, "model": self.model_name, "choices": [],
                         "usage": _usage(info)}  # fmt: skip
                await resp.write(_sse(usage))
            await resp.write(b"data: [DONE]\n\n")
        except GenerationError as exc:  # headers are sent: report in-band, as OpenAI does
            err = _engine_error(exc)
            await resp.write(_sse({"error": {"message": err.message, "type": err.type, "code": err.code}}))
        except ConnectionError:  # client went away; closing the stream cancels the request
            log.info("client disconnected from a streaming response")
            return resp
        await resp.write_eof()
        return resp


def _usage(info: dict[str, Any]) -> dict[str, int]:
    p, c = int(info.get("prompt_tokens", 0)), int(info.get("completion_tokens", 0))
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except APIError as err:
        return _error_response(err)
    except web.HTTPException as exc:
        if exc.status >= 400:
            return _error_response(APIError(exc.status, exc.reason, "invalid_request_error"))
        raise


def create_app(
    engine: Any, model_name: str, default_max_tokens: int = 16, close_engine: bool = True
) -> web.Application:
    """The aiohttp application serving ``engine`` as ``model_name``. With ``close_engine`` the engine is
    closed when the application shuts down."""
    server = OpenAIServer(engine, model_name, default_max_tokens)
    app = web.Application(middlewares=[_errors], client_max_size=4 * 1024 * 1024)
    app[ENGINE_KEY] = engine
    app[NAME_KEY] = model_name
    app.router.add_get("/v1/models", server.models)
    app.router.add_post("/v1/completions", server.completions)
    app.router.add_post("/v1/chat/completions", server.chat_completions)
    app.router.add_get("/health", server.health)
    if close_engine:

        async def _close(app: web.Application) -> None:
            await engine.aclose()

        app.on_cleanup.append(_close)
    return app


async def start(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start ``app`` (handler cancellation on client disconnect); returns the runner and the bound port
    (``port=0`` picks a free one)."""
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    sockets = getattr(site._server, "sockets", None)  # aiohttp exposes the bound sockets only here
    bound = int(sockets[0].getsockname()[1]) if sockets else port
    return runner, bound


def serve(
    model_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    model_name: str | None = None,
    max_batch: int = 16,
    max_queue: int = 256,
    device: str = "cpu",
) -> None:
    """Load ``model_dir`` and serve it until interrupted (``kefu runtime serve``)."""
    engine = Engine.load(model_dir, device=device, max_batch=max_batch, max_queue=max_queue)
    name = model_name or Path(model_dir).resolve().name

    async def main() -> None:
        runner, bound = await start(create_app(engine, name), host, port)
        print(f"serving {name!r} on http://{host}:{bound}/v1 (Ctrl-C to stop)", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
