"""Generation by any OpenAI-compatible server (vLLM, TGI, llama.cpp, ``kefu runtime serve``) over HTTP.

:class:`OpenAIEngine` is a :class:`runtime.engine.TextEngine` like the in-process engine (``stream(prompt,
params)``, ``generate``, ``aclose``), so the dialogue engine can point at a
remote endpoint by URL::

    nlg = NLG(templates, OpenAIEngine("http://gpu-box:8000/v1", model="kefu-generator"))

It calls ``POST {base_url}/completions`` with ``stream: true`` and parses the server-sent events.
Closing the stream early (``aclose``/cancel) closes the HTTP response, which a conforming server takes as
a cancellation. Failures raise :class:`runtime.errors.RemoteError` (a ``GenerationError``, so NLG falls
back to its templates): connection errors, timeouts, HTTP errors (``status`` set; 429/503 mean busy)
and errors reported inside the event stream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from runtime.engine import SamplingParams, TextEngine
from runtime.errors import EngineClosed, RemoteError


class OpenAIEngine(TextEngine):
    """Text generation through an OpenAI-compatible ``/v1/completions`` endpoint."""

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        timeout: float = 30.0,
        api_key: str | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        """``base_url`` ends with ``/v1`` (e.g. ``http://127.0.0.1:8000/v1``); ``model=None`` uses the first
        model the server lists. ``timeout`` bounds connecting and each wait for data (not a whole reply)."""
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout), headers=headers)
        self._own_client = client is None
        self._closed = False

    def __repr__(self) -> str:
        return f"OpenAIEngine(base_url={self.base_url!r}, model={self.model!r})"

    async def _model(self) -> str:
        if self.model is None:
            try:
                resp = await self._client.get(f"{self.base_url}/models")
            except httpx.HTTPError as exc:
                raise RemoteError(self.base_url, f"{type(exc).__name__}: {exc}") from exc
            if resp.status_code != 200:
                raise RemoteError(self.base_url, _error_message(resp.text), resp.status_code)
            data = resp.json().get("data") or []
            if not data:
                raise RemoteError(self.base_url, "the server lists no model")
            self.model = str(data[0]["id"])
        return self.model

    def _body(self, model: str, prompt: str, params: SamplingParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "prompt": prompt,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": True,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        return body

    async def stream(self, prompt: str, params: SamplingParams | None = None) -> AsyncIterator[str]:
        """Yield text deltas as the server sends them."""
        if self._closed:
            raise EngineClosed("engine is closed")
        params = params or SamplingParams()
        body = self._body(await self._model(), prompt, params)
        url = f"{self.base_url}/completions"
        try:
            async with self._client.stream("POST", url, json=body) as resp:
                if resp.status_code != 200:
                    text = (await resp.aread()).decode("utf-8", "replace")
                    raise RemoteError(url, _error_message(text), resp.status_code)
                async for data in _sse_data(resp):
                    if data == "[DONE]":
                        return
                    event = json.loads(data)
                    if "error" in event:
                        raise RemoteError(url, _error_message(json.dumps(event)))
                    for choice in event.get("choices") or []:
                        text = choice.get("text") or ""
                        if text:
                            yield text
        except httpx.HTTPError as exc:
            raise RemoteError(url, f"{type(exc).__name__}: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise RemoteError(url, f"malformed event: {exc}") from exc

    async def aclose(self) -> None:
        self._closed = True
        if self._own_client:
            await self._client.aclose()


async def _sse_data(resp: httpx.Response) -> AsyncIterator[str]:
    """The ``data:`` payloads of a server-sent event stream (multi-line data joined by newlines)."""
    lines: list[str] = []
    async for line in resp.aiter_lines():
        if not line:
            if lines:
                yield "\n".join(lines)
                lines = []
            continue
        if line.startswith(":"):
            continue  # comment / keep-alive
        field, _, value = line.partition(":")
        if field == "data":
            lines.append(value.removeprefix(" "))
    if lines:
        yield "\n".join(lines)


def _error_message(text: str) -> str:
    try:
        err = json.loads(text).get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err)
        if err:
            return str(err)
    except (json.JSONDecodeError, AttributeError):
        pass
    return text[:300]
