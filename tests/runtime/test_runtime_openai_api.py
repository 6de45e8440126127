"""The OpenAI-compatible HTTP surface (served on an ephemeral port in the test) and the remote engine."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.engine import Engine, SamplingParams
from runtime.errors import RemoteError
from runtime.nlg import NLG
from runtime.openai_api import ROLE_STOPS, chat_prompt, create_app, start
from runtime.remote import OpenAIEngine
from runtime.templates import Templates
from runtime.types import Act
from tests.runtime.test_runtime_engine import PROMPTS, reference, tiny_model

NAME = "tiny-gpt2"


@asynccontextmanager
async def served(engine: Any, name: str = NAME) -> AsyncIterator[str]:
    runner, port = await start(create_app(engine, name), "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


def sse_payloads(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.split("\n\n") if line.startswith("data: ")]


async def test_models_completions_streaming_and_errors(tiny_tokenizer: Any) -> None:
    model = tiny_model("gpt2", tiny_tokenizer)
    engine = Engine(model, tiny_tokenizer, max_batch=4)
    prompt = PROMPTS[0]
    ref = reference(model, tiny_tokenizer, prompt, 12)
    async with served(engine) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        models = (await http.get("/models")).json()
        assert models["object"] == "list" and [m["id"] for m in models["data"]] == [NAME]

        body = {"model": NAME, "prompt": prompt, "max_tokens": 12, "temperature": 0}
        r = await http.post("/completions", json={**body, "stream": True, "stream_options": {"include_usage": True}})
        assert r.headers["content-type"].startswith("text/event-stream")
        payloads = sse_payloads(r.text)
        assert payloads[-1] == "[DONE]"
        chunks = [json.loads(p) for p in payloads[:-1]]
        assert all(c["object"] == "text_completion" and c["id"] == chunks[0]["id"] for c in chunks)
        assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == ref
        assert len(chunks) > 5  # token by token, not one blob
        assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 12

        # the same greedy request again: answered from the completion cache, same text and usage
        r = await http.post("/completions", json=body)
        assert r.status_code == 200
        out = r.json()
        assert out["object"] == "text_completion" and out["model"] == NAME and out["id"].startswith("cmpl-")
        assert out["choices"][0]["text"] == ref and out["choices"][0]["finish_reason"] == "length"
        n_prompt = len(tiny_tokenizer(prompt)["input_ids"])
        assert out["usage"] == {"prompt_tokens": n_prompt, "completion_tokens": 12, "total_tokens": n_prompt + 12}
        assert engine.stats["completion_cache_hits"] == 1

        stop = ref[4:7]
        r = await http.post("/completions", json={**body, "stop": [stop]})
        assert r.json()["choices"][0] == {
            "index": 0, "text": ref[: ref.find(stop)], "logprobs": None, "finish_reason": "stop"
        }  # fmt: skip

        sampled = {**body, "max_tokens": 20, "temperature": 1.3, "top_p": 0.9, "seed": 11}
        a, b = [(await http.post("/completions", json=sampled)).json()["choices"][0]["text"] for _ in range(2)]
        c = (await http.post("/completions", json={**sampled, "seed": 12})).json()["choices"][0]["text"]
        assert a == b and a != c

        for bad, status, param in [
            ({**body, "model": "other"}, 404, "model"),
            ({**body, "n": 2}, 400, "n"),
            ({**body, "temperature": 5}, 400, "temperature"),
            ({**body, "max_tokens": 0}, 400, "max_tokens"),
            ({**body, "prompt": [1, 2, 3]}, 400, "prompt"),
            ({**body, "logprobs": 3}, 400, "logprobs"),
            ({**body, "prompt": "x" * 400}, 400, "prompt"),  # longer than the model's 160 positions
        ]:
            r = await http.post("/completions", json=bad)
            assert r.status_code == status, bad
            assert r.json()["error"]["param"] == param and r.json()["error"]["message"]
        r = await http.post("/completions", content=b"{nope", headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert engine.active == 0


async def test_official_openai_client(tiny_tokenizer: Any) -> None:
    from openai import AsyncOpenAI

    model = tiny_model("llama", tiny_tokenizer)
    engine = Engine(model, tiny_tokenizer, max_batch=4)
    prompt = PROMPTS[3]
    ref = reference(model, tiny_tokenizer, prompt, 10)
    async with served(engine) as base:
        client = AsyncOpenAI(base_url=base, api_key="unused", max_retries=0, timeout=30)
        try:
            assert [m.id async for m in client.models.list()] == [NAME]

            parts = []
            stream = await client.completions.create(
                model=NAME, prompt=prompt, max_tokens=10, temperature=0, stream=True
            )
            async for chunk in stream:
                parts.append(chunk.choices[0].text)
            assert "".join(parts) == ref and len(parts) > 3  # token by token

            done = await client.completions.create(model=NAME, prompt=prompt, max_tokens=10, temperature=0)
            assert done.choices[0].text == ref and done.choices[0].finish_reason == "length"
            assert done.usage is not None and done.usage.completion_tokens == 10

            messages = [
                {"role": "system", "content": "You are a shop assistant."},
                {"role": "user", "content": "Where is my order?"},
            ]
            text_prompt, stops = chat_prompt(tiny_tokenizer, messages)
            assert text_prompt.endswith("user: Where is my order?\nassistant:") and stops == ROLE_STOPS
            chat_ref = await engine.generate(text_prompt, SamplingParams(max_tokens=12, stop=stops))
            chat = await client.chat.completions.create(
                model=NAME,
                messages=messages,
                max_tokens=12,
                temperature=0,  # type: ignore[arg-type]
            )
            assert chat.object == "chat.completion" and chat.choices[0].message.role == "assistant"
            assert chat.choices[0].message.content == chat_ref

            deltas, roles, finish = [], [], None
            chat_stream = await client.chat.completions.create(
                model=NAME,
                messages=messages,
                max_tokens=12,
                temperature=0,
                stream=True,  # type: ignore[arg-type]
            )
            async for chunk in chat_stream:
                assert chunk.object == "chat.completion.chunk"
                d = chunk.choices[0].delta
                roles.append(d.role)
                deltas.append(d.content or "")
                finish = chunk.choices[0].finish_reason or finish
            assert "".join(deltas) == chat_ref and roles[0] == "assistant" and finish in ("stop", "length")

            from openai import NotFoundError

            with pytest.raises(NotFoundError):
                await client.completions.create(model="gpt-4o", prompt="hi", max_tokens=2)
        finally:
            await client.close()


def test_chat_template_is_used_when_the_tokenizer_has_one(tiny_tokenizer: Any) -> None:
    tiny_tokenizer.chat_template = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<|a|>{% endif %}"
    prompt, stops = chat_prompt(tiny_tokenizer, [{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    assert (prompt, stops) == ("<|user|>hi<|a|>", ())


async def test_busy_answers_429_and_disconnect_cancels(tiny_tokenizer: Any) -> None:
    model = tiny_model("gpt2", tiny_tokenizer)
    engine = Engine(model, tiny_tokenizer, max_batch=1, max_queue=1)
    real_forward = model.forward

    def slow_forward(*args: Any, **kwargs: Any) -> Any:  # 10 ms a step: 150 tokens take 1.5 s
        time.sleep(0.01)
        return real_forward(*args, **kwargs)

    model.forward = slow_forward  # type: ignore[method-assign]
    long = {"model": NAME, "prompt": "Order", "max_tokens": 150, "temperature": 0, "stream": True}
    async with served(engine) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        async with http.stream("POST", "/completions", json=long) as resp:
            lines = resp.aiter_lines()
            assert (await anext(lines)).startswith("data: ")  # running: holds the only batch slot
            waiting = asyncio.create_task(
                http.post("/completions", json={**long, "stream": False, "max_tokens": 4, "prompt": "x"})
            )
            while not engine.scheduler.waiting:  # the queue (1 place) is now full
                await asyncio.sleep(0.005)
            r = await http.post("/completions", json={**long, "stream": False})
            assert r.status_code == 429
            err = r.json()["error"]
            assert err["type"] == "busy" and "busy" in err["message"]
        # leaving the block closed the connection: the server cancels the stream and frees its slot
        r = await asyncio.wait_for(waiting, 20)
        assert r.status_code == 200 and r.json()["choices"][0]["text"] == reference(model, tiny_tokenizer, "x", 4)
        assert engine.stats["tokens"] < 150 + 4  # the long request did not run to its end

        # a non-streaming client that gives up (timeout) is cancelled as well
        before = engine.stats["tokens"]
        with pytest.raises(httpx.ReadTimeout):
            await http.post("/completions", json={**long, "stream": False, "max_tokens": 150}, timeout=0.3)
        for _ in range(400):
            if engine.active == 0:
                break
            await asyncio.sleep(0.01)
        assert engine.active == 0 and engine.stats["tokens"] - before < 100


async def test_nlg_over_remote_engine_matches_in_process(trained_dir: Path, templates: Templates) -> None:
    acts = [
        Act("utter_order_status", {"order_id": "10234", "status": "shipped", "eta": "Friday"}, "en"),
        Act("utter_return_accepted", {"order_id": "10234", "reason": "尺码不对"}, "zh"),
        Act("utter_greet", {}, "en"),
        Act("utter_ask_order_id", {}, "zh"),
    ]
    local = NLG(templates, Engine.load(trained_dir))
    server_engine = Engine.load(trained_dir, completion_cache=0)  # every request reaches the model, to be batched
    async with served(server_engine, "generator") as base:
        remote = NLG.from_url(templates, base)  # model name discovered from /v1/models
        try:
            for act in acts:
                streamed: list[str] = []

                async def on_token(d: str, sink: list[str] = streamed) -> None:
                    sink.append(d)

                want, got = await local.realise(act), await remote.realise(act, on_token)
                assert (got.text, got.source, got.slot_errors) == (want.text, want.source, want.slot_errors)
                assert got.source == "model" and "".join(streamed) == got.text
            assert remote.engine.model == "generator"
            # concurrent conversations over HTTP are batched by the server like in-process ones
            many = await asyncio.gather(*[remote.realise(a) for a in acts * 4])
            assert [r.text for r in many] == [(await local.realise(a)).text for a in acts * 4]
            assert server_engine.stats["max_rows"] > 1
            await remote.engine.generate("<en> utter_greet (  ) =>", SamplingParams(max_tokens=3))
        finally:
            await remote.aclose()
            await local.aclose()


async def test_remote_errors_fall_back_to_templates(templates: Templates, tiny_tokenizer: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # nothing listens here once the socket is closed
    nlg = NLG.from_url(templates, f"http://127.0.0.1:{dead}/v1", model="m", timeout=2)
    act = Act("utter_order_status", {"order_id": "1", "status": "shipped", "eta": "Friday"}, "en")
    real = await nlg.realise(act)
    assert real.source == "template" and real.slot_errors[0] == "engine:RemoteError"
    with pytest.raises(RemoteError):
        await nlg.engine.generate("x")
    await nlg.aclose()

    engine = Engine(tiny_model("gpt2", tiny_tokenizer), tiny_tokenizer)
    async with served(engine) as base:
        wrong = OpenAIEngine(base, model="nope")
        with pytest.raises(RemoteError) as info:
            await wrong.generate("Order", SamplingParams(max_tokens=2))
        assert info.value.status == 404 and "does not exist" in str(info.value)
        await wrong.aclose()


def test_cli_serve_answers_and_stops(tmp_path: Path, tiny_tokenizer: Any) -> None:
    folder = tmp_path / "tiny"
    tiny_model("qwen2", tiny_tokenizer).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "runtime.cli", "serve", "--model", str(folder), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
                time.sleep(0.2)
        assert r.json()["data"][0]["id"] == "tiny"
        r = httpx.post(
            f"http://127.0.0.1:{port}/v1/completions",
            json={"prompt": "Order", "max_tokens": 3, "temperature": 0},
            timeout=30,
        )
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
