"""NLG: the trained embedded generator, the strict slot check and the template fallback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from runtime.engine import Engine, SamplingParams
from runtime.errors import GenerationError, QueueFull, TemplateError
from runtime.nlg import NLG, closeness
from runtime.templates import Templates
from runtime.types import Act

ORDER = {"order_id": "10234", "status": "shipped", "eta": "Friday"}


class FakeEngine:
    """Streams a fixed delexicalised reply in small chunks (or raises), recording the prompts."""

    def __init__(self, chunks: list[str] | None = None, error: Exception | None = None) -> None:
        self.chunks = chunks or []
        self.error = error
        self.prompts: list[str] = []
        self.closed_early = False

    async def stream(self, prompt: str, params: SamplingParams) -> AsyncIterator[str]:
        self.prompts.append(prompt)
        if self.error is not None:
            raise self.error
        sent = 0
        try:
            for c in self.chunks:
                sent += 1
                yield c
        finally:
            self.closed_early = sent < len(self.chunks)

    async def aclose(self) -> None:
        pass


class ExplodingEngine:
    async def stream(self, prompt: str, params: SamplingParams) -> AsyncIterator[str]:
        raise AssertionError("template mode must not touch the engine")
        yield ""  # pragma: no cover


async def test_trained_model_realises_acts_in_both_languages(trained_dir: Path, templates: Templates) -> None:
    nlg = NLG.load(templates, trained_dir)
    deltas: list[str] = []

    async def on_token(d: str) -> None:
        deltas.append(d)

    try:
        act = Act("utter_order_status", {**ORDER, "product": "laptop bag"}, "en")  # product: not in the reply
        real = await nlg.realise(act, on_token)
        assert real.source == "model" and real.slot_errors == ()
        assert real.text == "Order 10234 is shipped. Expected delivery: Friday."
        assert "".join(deltas) == real.text and len(deltas) > 5  # streamed, lexicalised
        assert nlg.prompt_for(act) == "<en> utter_order_status ( eta order_id status ) =>"

        zh = await nlg.realise(Act("utter_return_accepted", {"order_id": "10234", "reason": "尺码不对"}, "zh"))
        assert (zh.source, zh.text) == ("model", "订单10234的退货申请已受理，原因：尺码不对。")
        greet = await nlg.realise(Act("utter_greet", {}, "en"))
        assert (greet.source, greet.text) == ("model", "Hello! How can I help you with your order today?")
        assert real.latency_ms > 0
    finally:
        await nlg.aclose()


async def test_random_model_falls_back_to_template(trained_dir: Path, templates: Templates, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from runtime.model import GeneratorConfig, build_model

    tok = AutoTokenizer.from_pretrained(str(trained_dir), local_files_only=True)
    model = build_model(GeneratorConfig(n_layer=1, n_embd=32, n_head=2, seed=3), tok).eval()
    nlg = NLG(templates, Engine(model, tok), max_tokens=40)
    try:
        act = Act("utter_order_status", ORDER, "en")
        real = await nlg.realise(act)
        assert real.source == "template"
        assert real.text == templates.render(act) == "Order 10234 is shipped. Expected delivery: Friday."
        assert real.slot_errors and all(
            e.split(":")[0] in {"missing", "invented", "repeated", "empty"} for e in real.slot_errors
        )
    finally:
        await nlg.aclose()


@pytest.mark.parametrize(
    ("chunks", "source", "errors"),
    [
        (["Order [order", "_id] is [status]. ETA: [eta]."], "model", ()),
        (["Order [order_id] is [status]."], "template", ("missing:eta",)),
        (["Order [order_id] is [status] [eta] [reason]."], "template", ("invented:reason",)),
        (["Order [order_id] [order_id]", " is [status] [eta].", " more"], "template", ("repeated:order_id",)),
        ([""], "template", ("empty", "missing:eta", "missing:order_id", "missing:status")),
        # The right slots in words of its own: the slot check passes, the closeness to every variant does not.
        (["Lovely weather [order_id]; cats [status] dogs [eta]!"], "template", ("unfaithful",)),
    ],
)
async def test_slot_check_on_streamed_output(
    templates: Templates, chunks: list[str], source: str, errors: tuple[str, ...]
) -> None:
    engine = FakeEngine(chunks)
    nlg = NLG(templates, engine)  # type: ignore[arg-type]
    seen: list[str] = []

    async def on_token(d: str) -> None:
        seen.append(d)

    real = await nlg.realise(Act("utter_order_status", ORDER, "en"), on_token)
    assert (real.source, real.slot_errors) == (source, errors)
    assert engine.prompts == ["<en> utter_order_status ( eta order_id status ) =>"]
    if source == "model":
        assert real.text == "Order 10234 is shipped. ETA: Friday."
        assert seen == ["Order ", "10234 is shipped. ETA: Friday."]  # a split placeholder is held back whole
    else:
        assert real.text == "Order 10234 is shipped. Expected delivery: Friday."
    if errors == ("repeated:order_id",):
        assert engine.closed_early  # generation stopped as soon as the reply became invalid


@pytest.mark.parametrize("error", [GenerationError("boom"), QueueFull(4)])
async def test_engine_error_falls_back(templates: Templates, error: Exception) -> None:
    nlg = NLG(templates, FakeEngine(error=error))  # type: ignore[arg-type]
    real = await nlg.realise(Act("utter_ask_order_id", {}, "zh"))
    assert real.source == "template" and real.text == "请提供您的订单号。"
    assert real.slot_errors == (f"engine:{type(error).__name__}",)


async def test_template_mode_never_touches_a_model(templates: Templates) -> None:
    nlg = NLG(templates, ExplodingEngine(), mode="template")  # type: ignore[arg-type]
    got: list[str] = []

    async def on_token(d: str) -> None:
        got.append(d)

    real = await nlg.realise(Act("utter_order_not_found", {"order_id": "99999"}, "en"), on_token)
    assert real.source == "template" and real.text == "I couldn't find order 99999. Please check the number."
    assert got == [real.text]
    missing = await nlg.realise(Act("utter_order_not_found", {}, "en"))
    assert missing.slot_errors == ("unfilled:order_id",)
    with pytest.raises(TemplateError):
        await nlg.realise(Act("utter_nope"))
    with pytest.raises(ValueError):
        NLG(templates, mode="llm")  # type: ignore[arg-type]


def test_training_outputs(trained_dir: Path) -> None:
    from transformers import AutoTokenizer

    report = json.loads((trained_dir / "report.json").read_text(encoding="utf-8"))
    assert report["pairs"] == 28 and report["final_train_loss"] < 0.5
    assert report["loss_curve"][-1] < report["loss_curve"][0] / 5
    assert (trained_dir / "curves.png").stat().st_size > 10_000
    tok: Any = AutoTokenizer.from_pretrained(str(trained_dir), local_files_only=True)
    ids = tok("订单[order_id]", add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(ids)[-1] == "[order_id]" and tok.decode(ids) == "订单[order_id]"
    assert (trained_dir / "generator.json").is_file()


def test_cli_train(tmp_path: Path) -> None:
    from runtime.cli import app

    domain = Path(__file__).parent / "data" / "domain.yml"
    out = tmp_path / "gen"
    result = CliRunner().invoke(app, ["train", "--domain", str(domain), "--out", str(out), "--steps", "3"])
    assert result.exit_code == 0, result.output
    summary = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("{")))
    assert summary["pairs"] == 28 and summary["out"] == str(out)
    assert 0.0 <= summary["train_slot_valid"] <= 1.0 and 0.0 <= summary["train_variant_match"] <= 1.0
    assert summary["held_out_bleu"] is None  # the fixture domain has one variant per act: nothing to hold out
    assert {"config.json", "model.safetensors", "tokenizer.json", "generator.json", "report.json", "curves.png"} <= {
        p.name for p in out.iterdir()
    }


@pytest.mark.parametrize(
    ("text", "variants", "low", "high"),
    [
        ("Order [order_id] is on its way.", ["Order [order_id] is on its way."], 1.0, 1.0),
        ("Order [order_id] is on the way!", ["Your parcel left.", "Order [order_id] is on its way."], 0.7, 0.99),
        ("亲，您的问题。", ["抱歉，人工客服暂时不在线。", "亲，人工客服现在下线了。"], 0.0, 0.3),
        ("anything", [], 0.0, 0.0),
        ("[answer]", ["[answer]", "亲，[answer]"], 1.0, 1.0),
        ("亲，[answer]", ["[answer]"], 0.0, 0.0),
    ],
)
def test_closeness(text: str, variants: list[str], low: float, high: float) -> None:
    assert low <= closeness(text, variants) <= high


@pytest.mark.parametrize(
    ("chunks", "trusted"),
    [(["Order [order_id] is [status]. Expected delivery: [eta]."], True),  # the author's words, word for word
     (["Order [order_id] is [status]. ETA: [eta]."], False)],  # the model's own words: the classifier reads them
)
async def test_a_reply_is_trusted_only_when_it_is_the_authors_template(
    templates: Templates, chunks: list[str], trusted: bool
) -> None:
    real = await NLG(templates, FakeEngine(chunks)).realise(Act("utter_order_status", ORDER, "en"))  # type: ignore[arg-type]
    assert real.source == "model" and real.trusted is trusted
    assert real.inserted == ("Friday", "10234", "shipped")  # what the customer's words and the data put in
    template = await NLG(templates, None, mode="template").realise(Act("utter_order_status", ORDER, "en"))
    assert template.trusted and template.inserted == ("Friday", "10234", "shipped")
