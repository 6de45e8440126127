"""Benchmark of the generation runtime (continuous batching engine) against ``model.generate``.

Part 1: N concurrent requests x M new tokens, prompts of mixed length, on a GPT-2-small shaped model
(n_layer 12, n_embd 768, vocab 50257, ~124M parameters) with random weights built here (no download) and
a word-level tokenizer built here (token ``w<id>`` per id). Greedy decoding. Three ways, same prompts:

- ``generate_sequential``: ``model.generate`` one prompt at a time;
- ``generate_batched``: one static left-padded ``model.generate`` call over all prompts;
- ``runtime``: every request submitted at once to :class:`runtime.engine.Engine` (max_batch = N).

``tokens_per_s`` = generated tokens / wall seconds (prefill included). ``ttft_ms`` is the runtime's
time from submission to the first streamed text of each request. ``greedy_match`` is the share of
requests whose runtime text equals the sequential ``generate`` text; ``greedy_match_batched_generate`` the same share
for the batched ``generate`` call, the reference for what batching alone does to greedy text in a given ``--dtype``
(bfloat16 keeps 8 bits of mantissa, so another batch shape, another kernel or another summation order can flip a
close argmax).

Part 2: the embedded demo generator (``examples/shop/models/generator``) realising acts through
:class:`runtime.nlg.NLG` for C concurrent conversations (each does ``--turns`` replies back to back, acts
drawn at random from every response key and language of the domain, slot values random);
``embedded.reply_ms`` is the per-reply latency, ``tokens_per_reply`` the tokens the model generated per reply
(end-of-sequence included; a reply from the completion cache generates none), ``engine`` the model work (steps,
prefill forwards, prompt-cache and completion-cache hits),
``cpu_ms_per_reply`` the process CPU time (all threads) per reply (``--completion-cache 0`` makes every reply
run the model, as before the completion cache): on a machine shared with other jobs the
latency follows the load (``load_average``, the 1-minute figure at the end), the CPU time less so.

    python benchmarks/runtime.py --json                       # the full run (minutes on 2 cores)
    python benchmarks/runtime.py --json --requests 8 --new-tokens 16 --model-size tiny   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SIZES = {
    # GPT-2 small: 124,439,808 parameters with the tied 50257 x 768 embedding
    "small": {"n_layer": 12, "n_embd": 768, "n_head": 12, "vocab": 50257, "n_positions": 1024},
    "tiny": {"n_layer": 2, "n_embd": 128, "n_head": 4, "vocab": 4096, "n_positions": 512},
}


def note(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def build_tokenizer(vocab: int) -> Any:
    """Word-level tokenizer: id i <-> ``w<i>``; the last id is ``<|endoftext|>`` (eos and pad)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    eos = "<|endoftext|>"
    words = {f"w{i}": i for i in range(vocab - 1)}
    words[eos] = vocab - 1
    tok = Tokenizer(models.WordLevel(vocab=words, unk_token=eos))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=eos, pad_token=eos, bos_token=eos, unk_token=eos, padding_side="left"
    )


def build_model(size: str, seed: int, dtype: str = "float32") -> Any:
    """The benchmark's model with random weights (initialised in fp32 from ``seed``, then cast to ``dtype``)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    s = SIZES[size]
    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=s["vocab"], n_positions=s["n_positions"], n_embd=s["n_embd"], n_layer=s["n_layer"],
        n_head=s["n_head"], bos_token_id=s["vocab"] - 1, eos_token_id=s["vocab"] - 1, pad_token_id=s["vocab"] - 1,
    )  # fmt: skip
    model = GPT2LMHeadModel(cfg).eval().to(getattr(torch, dtype))
    model.generation_config.pad_token_id = s["vocab"] - 1
    return model


def make_prompts(n: int, vocab: int, min_len: int, max_len: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        length = min_len + (max_len - min_len) * i // max(1, n - 1)  # evenly mixed lengths
        out.append(" ".join(f"w{rng.randrange(vocab - 1)}" for _ in range(length)))
    rng.shuffle(out)
    return out


def bench_sequential(model: Any, tok: Any, prompts: list[str], new_tokens: int) -> tuple[float, int, list[str]]:
    import torch

    texts, total = [], 0
    t0 = time.perf_counter()
    with torch.inference_mode():
        for p in prompts:
            enc = tok(p, return_tensors="pt")
            out = model.generate(**enc, max_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
            gen = out[0, enc["input_ids"].shape[1] :].tolist()
            if tok.eos_token_id in gen:
                gen = gen[: gen.index(tok.eos_token_id) + 1]
            total += len(gen)
            texts.append(tok.decode(gen, skip_special_tokens=True))
    return time.perf_counter() - t0, total, texts


def bench_batched(model: Any, tok: Any, prompts: list[str], new_tokens: int) -> tuple[float, int, list[str]]:
    import torch

    t0 = time.perf_counter()
    with torch.inference_mode():
        enc = tok(prompts, return_tensors="pt", padding=True)
        out = model.generate(**enc, max_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    elapsed = time.perf_counter() - t0
    total, texts = 0, []
    for row in out[:, enc["input_ids"].shape[1] :].tolist():
        gen = row[: row.index(tok.eos_token_id) + 1] if tok.eos_token_id in row else row
        total += len(gen)
        texts.append(tok.decode(gen, skip_special_tokens=True))
    return elapsed, total, texts


async def bench_runtime(
    model: Any, tok: Any, prompts: list[str], new_tokens: int, max_batch: int
) -> tuple[float, int, list[float], list[str], dict[str, int]]:
    from runtime.engine import Engine, SamplingParams

    engine = Engine(model, tok, max_batch=max_batch, max_queue=max(256, len(prompts)))
    params = SamplingParams(max_tokens=new_tokens)
    ttft: list[float] = []

    async def one(p: str, t0: float) -> str:
        parts: list[str] = []
        async for delta in engine.stream(p, params):
            if not parts:
                ttft.append((time.perf_counter() - t0) * 1000)
            parts.append(delta)
        return "".join(parts)

    # warm-up (first call initialises threads and allocators), not timed; a prompt outside the set, so that
    # the prompt cache holds none of the timed prompts
    await engine.generate("w0 w1 w2", SamplingParams(max_tokens=2))
    before = engine.stats["tokens"]
    t0 = time.perf_counter()
    texts = await asyncio.gather(*[one(p, t0) for p in prompts])
    elapsed = time.perf_counter() - t0
    total = engine.stats["tokens"] - before
    stats = dict(engine.stats)
    await engine.aclose()
    return elapsed, total, ttft, list(texts), stats


async def bench_embedded(
    model_dir: Path,
    domain: Path,
    conversations: int,
    turns: int,
    seed: int,
    prompt_cache_mb: float = 64.0,
    completion_cache: int = 1024,
) -> dict[str, Any]:
    import torch

    from runtime.engine import Engine
    from runtime.model import check_generator
    from runtime.nlg import NLG
    from runtime.templates import Templates
    from runtime.types import Act

    templates = Templates.from_file(domain)
    config = check_generator(model_dir)  # a folder from an older Kefu: ModelLoadError, retrain it
    engine = Engine.load(
        model_dir, max_batch=conversations, prompt_cache_mb=prompt_cache_mb, completion_cache=completion_cache
    )
    nlg = NLG(templates, engine)
    rng = random.Random(seed)
    acts = []
    for key in templates.keys():  # noqa: SIM118 - Templates is not iterable
        for lang in templates.languages():
            if templates.variants(key, lang):
                slots = {s: f"V{j}{rng.randrange(1000)}" for j, s in enumerate(templates.placeholders(key, lang))}
                acts.append(Act(key, slots, lang))
    latencies: list[float] = []
    sources: dict[str, int] = {}

    async def conversation(i: int) -> None:
        r = random.Random(seed + i)
        for _ in range(turns):
            t0 = time.perf_counter()
            real = await nlg.realise(r.choice(acts))
            latencies.append((time.perf_counter() - t0) * 1000)
            sources[real.source] = sources.get(real.source, 0) + 1

    await nlg.realise(acts[0])  # warm-up (its prompt is the only one cached before the timed run)
    before = dict(engine.stats)
    t0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*[conversation(i) for i in range(conversations)])
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await nlg.aclose()
    counters = ("steps", "tokens", "prefill_forwards", "prompt_cache_hits", "completion_cache_hits")
    used = {k: engine.stats[k] - before[k] for k in counters}
    return {
        "model": str(model_dir.relative_to(ROOT) if model_dir.is_relative_to(ROOT) else model_dir),
        "model_config": {k: getattr(config, k) for k in ("n_layer", "n_embd", "n_head")},
        "parameters": sum(p.numel() for p in engine.model.parameters()),
        "conversations": conversations,
        "replies": len(latencies),
        "reply_ms": {
            "p50": round(percentile(latencies, 50), 1),
            "p90": round(percentile(latencies, 90), 1),
            "p99": round(percentile(latencies, 99), 1),
        },
        "replies_per_s": round(len(latencies) / wall, 1),
        "cpu_ms_per_reply": round(cpu * 1000 / max(1, len(latencies)), 2),
        "load_average": round(os.getloadavg()[0], 2),
        "threads": torch.get_num_threads(),
        "tokens_per_reply": round(used["tokens"] / max(1, len(latencies)), 1),
        "engine": {**used, "prompt_cache_mb": prompt_cache_mb, "completion_cache": completion_cache},
        "sources": sources,
        "target_p50_ms": 150,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object (otherwise a short summary)")
    ap.add_argument("--requests", type=int, default=32, help="concurrent requests")
    ap.add_argument("--new-tokens", type=int, default=64, help="new tokens per request")
    ap.add_argument("--model-size", choices=sorted(SIZES), default="small")
    ap.add_argument("--min-prompt", type=int, default=8, help="shortest prompt (tokens)")
    ap.add_argument("--max-prompt", type=int, default=128, help="longest prompt (tokens)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: the CPUs this process may use)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                    help="weights and activations of part 1's model, for all three ways (bfloat16 pays on CPUs with "
                         "AMX or AVX512-BF16: oneDNN's bf16 products)")
    ap.add_argument("--skip", action="append", default=[], choices=["sequential", "batched", "embedded"])
    ap.add_argument("--embedded-model", type=Path, default=ROOT / "examples/shop/models/generator")
    ap.add_argument("--embedded-domain", type=Path, default=ROOT / "examples/shop/domain.yml")
    ap.add_argument("--conversations", type=int, default=32)
    ap.add_argument("--turns", type=int, default=4, help="replies per conversation in the embedded benchmark")
    ap.add_argument("--prompt-cache-mb", type=float, default=64.0, help="embedded engine's prompt cache (0: off)")
    ap.add_argument(
        "--completion-cache", type=int, default=1024, help="embedded engine's completion cache, entries (0: off)"
    )
    args = ap.parse_args(argv)

    import torch
    import transformers

    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    transformers.logging.set_verbosity_error()

    tok = build_tokenizer(SIZES[args.model_size]["vocab"])
    model = build_model(args.model_size, args.seed, args.dtype)
    prompts = make_prompts(args.requests, SIZES[args.model_size]["vocab"], args.min_prompt, args.max_prompt, args.seed)
    result: dict[str, Any] = {
        "model": {
            "shape": f"gpt2-{args.model_size}",
            "parameters": sum(p.numel() for p in model.parameters()),
            **{k: v for k, v in SIZES[args.model_size].items()},
            "dtype": args.dtype,
            "weights": "random",
        },
        "requests": args.requests,
        "new_tokens": args.new_tokens,
        "prompt_tokens": {"min": args.min_prompt, "max": args.max_prompt},
        "device": "cpu",
        "threads": threads,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "platform": platform.platform(),
    }
    # warm-up generate (thread pool, allocator), not timed
    with torch.inference_mode():
        model.generate(**tok(prompts[0], return_tensors="pt"), max_new_tokens=2, pad_token_id=tok.pad_token_id)

    note(f"runtime: {len(prompts)} requests x {args.new_tokens} tokens")
    rt_s, rt_tok, ttft, rt_texts, stats = asyncio.run(
        bench_runtime(model, tok, prompts, args.new_tokens, max_batch=args.requests)
    )
    tps: dict[str, float] = {"runtime": round(rt_tok / rt_s, 2)}
    seconds: dict[str, float | None] = {"runtime": round(rt_s, 2)}
    result["ttft_ms"] = {"p50": round(percentile(ttft, 50), 1), "p99": round(percentile(ttft, 99), 1)}
    result["runtime_stats"] = stats
    note(f"runtime done: {rt_tok} tokens in {rt_s:.1f} s")
    if "batched" not in args.skip:
        note("generate_batched")
        b_s, b_tok, b_texts = bench_batched(model, tok, prompts, args.new_tokens)
        tps["generate_batched"], seconds["generate_batched"] = round(b_tok / b_s, 2), round(b_s, 2)
    if "sequential" not in args.skip:
        note("generate_sequential")
        s_s, s_tok, s_texts = bench_sequential(model, tok, prompts, args.new_tokens)
        tps["generate_sequential"], seconds["generate_sequential"] = round(s_tok / s_s, 2), round(s_s, 2)
        result["greedy_match"] = round(sum(a == b for a, b in zip(rt_texts, s_texts, strict=True)) / len(prompts), 3)
        if "batched" not in args.skip:  # the same model's own batched generate: how far batching alone moves greedy text
            result["greedy_match_batched_generate"] = round(
                sum(a == b for a, b in zip(b_texts, s_texts, strict=True)) / len(prompts), 3)
    result["tokens_per_s"] = tps
    result["seconds"] = seconds
    seq = tps.get("generate_sequential")
    result["ratio_vs_sequential"] = round(tps["runtime"] / seq, 2) if seq else None
    bat = tps.get("generate_batched")
    result["ratio_vs_batched"] = round(tps["runtime"] / bat, 2) if bat else None
    result["target_ratio"] = 6.0
    result["meets_target"] = bool(seq and tps["runtime"] / seq >= 6.0)
    del model
    if "embedded" not in args.skip:
        note("embedded")
        if args.embedded_model.is_dir():
            result["embedded"] = asyncio.run(
                bench_embedded(
                    args.embedded_model,
                    args.embedded_domain,
                    args.conversations,
                    args.turns,
                    args.seed,
                    args.prompt_cache_mb,
                    args.completion_cache,
                )
            )
        else:
            result["embedded"] = {"skipped": f"no model folder at {args.embedded_model}"}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"tokens/s {tps}  ratio vs sequential {result['ratio_vs_sequential']}  ttft {result['ttft_ms']}")
        if "embedded" in result:
            print(f"embedded: {result['embedded']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
