"""The embedded generator's BPE tokenizer, its self-describing folder (generator.json), the retrain of a
folder saved by an older Kefu, and the held-out scores (BLEU, slot error rate)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from runtime.errors import ModelLoadError
from runtime.model import GENERATOR_FILE, GENERATOR_FORMAT, GeneratorConfig, check_generator
from runtime.nlg import NLG
from runtime.templates import Templates
from runtime.train import (
    corpus_bleu,
    slot_error_rate,
    split_held_out,
    train_generator,
    training_pairs,
)

DATA = Path(__file__).parent / "data"


def test_tokenizer_round_trip_and_saved_folder(tiny_tokenizer: Any, templates: Templates, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tiny_tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    texts = [t for p in training_pairs(templates) for t in (p.prompt, p.target)]
    texts += ["订单[order_id]的状态：[status]。", "Order [order_id]  is\tfine!", "x", "[answer]"]
    for tok in (tiny_tokenizer, loaded):
        for text in texts:
            ids = tok(text, add_special_tokens=False)["input_ids"]
            assert tok.decode(ids) == text
            assert tok.unk_token_id not in ids
    # placeholders and language tags are whole tokens; words are merged: far fewer tokens than characters
    ids = loaded("订单[order_id]的", add_special_tokens=False)["input_ids"]
    assert loaded.convert_ids_to_tokens(ids)[1] == "[order_id]"
    assert loaded("<zh>", add_special_tokens=False)["input_ids"] == [loaded.convert_tokens_to_ids("<zh>")]
    targets = [p.target for p in training_pairs(templates) if p.language == "en"]
    n_tokens = sum(len(loaded(t, add_special_tokens=False)["input_ids"]) for t in targets)
    assert n_tokens < sum(len(t) for t in targets) / 2.5
    # streamed decoding: every prefix of the ids decodes to a prefix of the text (the engine relies on it)
    text = "Your return for order [order_id] is accepted (reason: [reason])."
    ids = loaded(text, add_special_tokens=False)["input_ids"]
    for k in range(1, len(ids) + 1):
        assert text.startswith(loaded.decode(ids[:k], skip_special_tokens=True))


def test_generator_folder_describes_itself_and_loads(trained_dir: Path, templates: Templates) -> None:
    meta = json.loads((trained_dir / GENERATOR_FILE).read_text(encoding="utf-8"))
    assert meta["format"] == GENERATOR_FORMAT and meta["tokenizer"] == "bpe-metaspace"
    cfg = check_generator(trained_dir)
    assert (cfg.n_layer, cfg.n_embd, cfg.steps) == (2, 128, 160)
    assert GeneratorConfig.from_dict({**cfg.to_dict(), "from_the_future": 1}) == cfg
    report = json.loads((trained_dir / "report.json").read_text(encoding="utf-8"))
    assert report["tokenizer"] == "bpe-metaspace" and report["vocab_size"] > 100
    assert 5 < report["reply_tokens_mean"]["en"] < 30 and 3 < report["reply_tokens_mean"]["zh"] < 20


def test_old_or_foreign_folders_fail_with_a_clear_error(
    trained_dir: Path, templates: Templates, tmp_path: Path
) -> None:
    old = tmp_path / "old"
    shutil.copytree(trained_dir, old)
    (old / GENERATOR_FILE).unlink()  # what an older Kefu saved: transformers files only (char-level)
    with pytest.raises(ModelLoadError, match="older Kefu.*retrain"):
        NLG.load(templates, old)
    (old / GENERATOR_FILE).write_text(json.dumps({"format": 1, "tokenizer": "char", "config": {}}), encoding="utf-8")
    with pytest.raises(ModelLoadError, match="format 1 .*retrain"):
        check_generator(old)
    (old / GENERATOR_FILE).write_text("{", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="unreadable"):
        check_generator(old)
    with pytest.raises(ModelLoadError, match="no embedded generator"):
        check_generator(tmp_path)


def test_train_bot_retrains_an_old_generator(
    trained_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``kefu train`` finds the old folder does not load and retrains it instead of crashing at serve time."""
    import runtime.train
    from kefu.app import train_bot

    bot = tmp_path / "bot"
    bot.mkdir()
    shutil.copy(DATA / "domain.yml", bot / "domain.yml")
    (bot / "bot.yml").write_text(
        "name: t\nlanguages: [en, zh]\nnlu_data: [nlu.yml]\ndomain: domain.yml\ngeneration: embedded\n",
        encoding="utf-8",
    )
    generator = bot / "models" / "generator"
    shutil.copytree(trained_dir, generator)
    (generator / GENERATOR_FILE).unlink()
    calls: list[Path] = []
    real = runtime.train.train_generator

    def quick(templates: Templates, out: Path, *args: Any, **kwargs: Any) -> Any:
        calls.append(Path(out))
        return real(templates, out, GeneratorConfig(n_layer=1, n_embd=32, n_head=2, steps=2), progress=False)

    monkeypatch.setattr(runtime.train, "train_generator", quick)
    timings = train_bot(bot, only={"generator"})
    assert calls == [generator] and "generator" in timings
    assert check_generator(generator).steps == 2
    assert train_bot(bot, only={"generator"}) == {}  # now it loads: nothing to do


def test_bleu_and_slot_error_rate() -> None:
    assert corpus_bleu(["Order [order_id] is on its way."], [["Order [order_id] is on its way."]]) == pytest.approx(100)
    assert corpus_bleu(["订单[order_id]的状态是[status]。"], [["订单[order_id]的状态是[status]。"]]) == pytest.approx(
        100
    )
    assert corpus_bleu(["nothing alike here at all"], [["Order [order_id] is on its way."]]) == 0.0
    partial = corpus_bleu(["Order [order_id] is on the way now"], [["Order [order_id] is on its way."]])
    assert 0 < partial < 100
    # the closest of several references counts
    assert corpus_bleu(["a b c d e"], [["x y", "a b c d e"]]) == pytest.approx(100)
    # missing eta, repeated order_id, invented reason: 3 errors over 3 + 1 expected slots
    ser, slots = slot_error_rate(
        ["[order_id] [order_id] [status] [reason]", "[order_id]"], [("eta", "order_id", "status"), ("order_id",)]
    )
    assert (ser, slots) == (0.75, 4)
    assert slot_error_rate(["hi"], [()]) == (None, 0)


def test_held_out_folds_keep_every_act_in_training() -> None:
    variants = {
        "utter_a": {"en": ["A one.", "A two.", "A three."]},
        "utter_b": {"en": ["B {x} one.", "B {x} two."]},
        "utter_c": {"en": ["Only C."]},
    }
    pairs = training_pairs(Templates(variants))
    seen = []
    for fold, n_held in [(0, 2), (1, 2), (2, 1), (3, 0)]:
        train, held = split_held_out(pairs, fold)
        assert len(held) == n_held and len(train) + len(held) == len(pairs)
        assert {p.prompt for p in train} == {p.prompt for p in pairs}
        seen += held
    assert sorted(p.target for p in seen) == sorted(p.target for p in pairs if p.key != "utter_c")


@pytest.mark.slow
def test_held_out_report(tmp_path: Path) -> None:
    templates = Templates(
        {
            "utter_a": {"en": ["Your order {x} is here.", "Order {x} is here.", "Your order {x} is right here."]},
            "utter_b": {"en": ["Bye now!", "Bye, see you!"]},
        }
    )
    result = train_generator(
        templates, tmp_path, GeneratorConfig(n_layer=1, n_embd=32, n_head=2, steps=30), progress=False, held_out=True
    )
    held = result.report["held_out"]
    assert held["folds"] == 3 and held["replies"] == 5 and held["slots"] == 3
    assert 0 <= held["bleu"] <= 100 and held["slot_error_rate"] >= 0 and 0 <= held["slot_valid"] <= 1
