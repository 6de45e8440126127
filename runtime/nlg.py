"""Natural-language generation: dialogue act -> reply text, by the embedded model or by template.

The model writes a delexicalised reply (placeholders ``[slot]``), streamed and lexicalised on the fly.
The placeholders it produced are checked against the act's slots that the response uses: each must
appear exactly once and no other placeholder may appear; and the reply must be close to one of its response's
variants (:func:`closeness`), so that a reply with the right slots but other words is not sent. On any violation,
an engine error or a full queue, the rendered template is returned instead (``source="template"``,
``slot_errors`` says why).

Streaming caveat: ``on_token`` receives model text as it is produced; if the final check fails the
returned :class:`Realisation` carries the template text, which supersedes the streamed draft.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from runtime.errors import GenerationError
from runtime.model import build_prompt
from runtime.templates import DELEX_RE, PLACEHOLDER_RE, Templates, delexicalise, lexicalise
from runtime.types import Act, OnToken, Realisation

_PARTIAL = re.compile(r"\[[A-Za-z0-9_]*$")


def check_slots(delex_text: str, expected: Iterable[str]) -> tuple[str, ...]:
    """Errors of a delexicalised reply against the expected slot names (empty tuple = valid).

    ``missing:<slot>`` (expected, absent), ``repeated:<slot>`` (more than once), ``invented:<slot>`` (not
    expected), ``raw:<slot>`` (a template-style ``{slot}`` leaked into the text), ``empty`` (no text).
    """
    want = set(expected)
    found = Counter(m.group(1) for m in DELEX_RE.finditer(delex_text))
    errors: list[str] = []
    if not delex_text.strip():
        errors.append("empty")
    for slot in sorted(want):
        if found[slot] == 0:
            errors.append(f"missing:{slot}")
        elif found[slot] > 1:
            errors.append(f"repeated:{slot}")
    errors.extend(f"invented:{slot}" for slot in sorted(set(found) - want))
    errors.extend(f"raw:{m.group(1)}" for m in PLACEHOLDER_RE.finditer(delex_text))
    return tuple(errors)


FAITHFUL_MIN = 0.5  # below this closeness to every variant of its response, a model reply is replaced by the template


def closeness(text: str, variants: Iterable[str]) -> float:
    """Character-bigram F1 of ``text`` against its closest variant (delexicalised forms; 1.0 = the same bigrams).

    The slot check cannot see a reply that has the right placeholders but says something else ("亲，您的问题。" for
    "our colleagues are offline": no slot, so nothing to miss). The embedded generator is trained to write one of its
    response's variants, so a faithful reply shares most character bigrams with one of them; bigrams work the same
    for Chinese and English.
    """

    def bigrams(value: str) -> Counter[str]:
        value = " ".join(DELEX_RE.sub("\x00", value).lower().split())  # a placeholder is one symbol, not its name
        return Counter(value[i : i + 2] for i in range(len(value) - 1))

    mine = bigrams(text)
    total = sum(mine.values())
    best = 0.0
    for variant in variants:
        theirs = bigrams(variant)
        if not total or not theirs:  # a bare placeholder ("{answer}"): only the same bare form is close
            best = max(best, float(not total and not theirs))
            continue
        common = sum((mine & theirs).values())
        if common:
            precision, recall = common / total, common / sum(theirs.values())
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


class NLG:
    """Realises acts with the embedded generator (``mode="embedded"``) or templates only (``"template"``)."""

    def __init__(
        self,
        templates: Templates,
        engine: Any | None = None,
        mode: Literal["embedded", "template"] = "embedded",
        max_tokens: int = 200,
    ) -> None:
        if mode not in ("embedded", "template"):
            raise ValueError(f"unknown generation mode {mode!r}")
        self.templates = templates
        self.engine = engine
        self.mode = mode
        self.max_tokens = max_tokens

    @classmethod
    def load(cls, templates: Templates, model_dir: str | Path, device: str = "cpu", max_batch: int = 32) -> NLG:
        """Embedded mode with the generator saved in ``model_dir`` (raises ``ModelLoadError``, also for a
        folder written by an older Kefu: see :func:`runtime.model.check_generator`). ``max_batch`` 32: the
        generator is small enough that a full batch costs little more per step than half of one, and
        conversations beyond the batch would wait for a free row (``benchmarks/runtime.py`` measures 32)."""
        from runtime.engine import Engine
        from runtime.model import check_generator

        check_generator(model_dir)
        return cls(templates, Engine.load(model_dir, device=device, max_batch=max_batch), mode="embedded")

    @classmethod
    def from_url(cls, templates: Templates, base_url: str, model: str | None = None, timeout: float = 30.0) -> NLG:
        """Embedded mode with generation by an OpenAI-compatible server (vLLM, ``kefu runtime serve``) at
        ``base_url`` (``http://host:port/v1``); ``model=None`` takes the first model the server lists."""
        from runtime.remote import OpenAIEngine

        return cls(templates, OpenAIEngine(base_url, model=model, timeout=timeout), mode="embedded")

    async def aclose(self) -> None:
        if self.engine is not None:
            await self.engine.aclose()

    def render_template(self, act: Act) -> str:
        """The response template for ``act``, never the model: for replies that must be exactly as written."""
        return self.templates.render(act)

    def prompt_for(self, act: Act) -> str:
        return build_prompt(act.name, self.templates.expected_slots(act), act.language)

    def _template(self, act: Act, t0: float, errors: tuple[str, ...] = ()) -> Realisation:
        missing = tuple(f"unfilled:{s}" for s in self.templates.missing_slots(act))
        return Realisation(
            text=self.templates.render(act),
            source="template",
            slot_errors=errors + missing,
            latency_ms=(time.perf_counter() - t0) * 1000,
            inserted=tuple(str(act.slots[s]) for s in self.templates.expected_slots(act)),
            trusted=True,
        )

    async def realise(self, act: Act, on_token: OnToken | None = None) -> Realisation:
        """Reply text for ``act``; see the module docstring for the checks and the fallback."""
        t0 = time.perf_counter()
        if act.name not in self.templates:
            self.templates.variants(act.name)  # raises TemplateError with the key
        if self.mode == "template" or self.engine is None:
            real = self._template(act, t0)
            if on_token is not None:
                await on_token(real.text)
            return real
        from runtime.engine import SamplingParams

        expected = self.templates.expected_slots(act)
        delex = ""
        sent = 0  # chars of ``delex`` already lexicalised and sent
        early: tuple[str, ...] = ()
        try:
            stream = self.engine.stream(self.prompt_for(act), SamplingParams(max_tokens=self.max_tokens))
            async with contextlib.aclosing(stream):
                async for delta in stream:
                    delex += delta
                    found = Counter(m.group(1) for m in DELEX_RE.finditer(delex))
                    bad = [s for s, n in found.items() if s not in expected or n > 1]
                    if bad:  # no point generating further: the reply is already invalid
                        early = tuple(
                            e for e in check_slots(delex, expected) if e.startswith(("repeated:", "invented:"))
                        )
                        break
                    partial = _PARTIAL.search(delex, sent)
                    ready = partial.start() if partial and len(delex) - partial.start() <= 40 else len(delex)
                    if on_token is not None and ready > sent:
                        await on_token(lexicalise(delex[sent:ready], act.slots))
                    sent = max(sent, ready)
        except GenerationError as exc:
            return self._template(act, t0, (f"engine:{type(exc).__name__}",))
        errors = early or check_slots(delex, expected)
        variants = [delexicalise(v.text) for v in self.templates.variants(act.name, act.language)]
        if not errors and closeness(delex, variants) < FAITHFUL_MIN:
            errors = ("unfaithful",)
        if errors:
            return self._template(act, t0, errors)
        if on_token is not None and sent < len(delex):
            await on_token(lexicalise(delex[sent:], act.slots))
        verbatim = delex.strip() in {v.strip() for v in variants}  # the author's words, as written
        return Realisation(
            text=lexicalise(delex, act.slots), source="model", latency_ms=(time.perf_counter() - t0) * 1000,
            inserted=tuple(str(act.slots[s]) for s in expected), trusted=verbatim,
        )
