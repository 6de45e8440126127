"""Chinese toxicity model trained from scratch (config and vocabulary built in code), loaded through Detoxify,
and routed by language next to an English one; the older flat layout keeps loading."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from safety.errors import SafetyError, ToxicityModelError

pytestmark = pytest.mark.slow

ZH_TOXIC = ["你这个{}", "{}滚开", "去死吧{}", "真是个{}", "{}闭嘴"]
ZH_INSULTS = ["傻瓜", "蠢货", "废物", "白痴", "垃圾人", "笨蛋"]
ZH_CLEAN = ["谢谢你帮我查{}", "{}什么时候到", "我想退{}", "{}收到了，很好", "请问{}怎么用"]
ZH_ITEMS = ["订单", "耳机", "包裹", "外套", "充电器", "鞋子"]


def _write(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            if i % 2:
                text, label = rng.choice(ZH_TOXIC).format(rng.choice(ZH_INSULTS)), 1
            else:
                text, label = rng.choice(ZH_CLEAN).format(rng.choice(ZH_ITEMS)), 0
            fh.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")


@pytest.fixture(scope="module")
def zh_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, Path]:
    from safety.train import TrainConfig, train

    data = tmp_path_factory.mktemp("zhdata")
    _write(data / "train.jsonl", 400, seed=1)
    _write(data / "dev.jsonl", 80, seed=2)
    with (data / "dialogues.jsonl").open("w", encoding="utf-8") as fh:  # clean service dialogue, 10 dialogues
        for i in range(10):
            turns = [
                {"speaker": "user", "text": f"请问{ZH_ITEMS[i % 6]}到了吗"},
                {"speaker": "system", "text": "您好，已经发货了"},
            ]
            fh.write(json.dumps({"dialogue_id": str(i), "turns": turns}, ensure_ascii=False) + "\n")
    out = tmp_path_factory.mktemp("zh") / "zh"
    cfg = TrainConfig.for_language(
        "zh",
        hidden=32,
        heads=2,
        intermediate=64,
        layers=1,
        epochs=3,
        lr=3e-3,
        batch=16,
        max_len=16,
        threads=1,
        clean_data=str(data / "dialogues.jsonl"),
    )
    report = train(cfg, data / "train.jsonl", out)
    return out, report, data


def test_zh_recipe_is_from_scratch_and_report_is_written(zh_model: tuple[Path, dict, Path]) -> None:
    out, report, _ = zh_model
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "toxicity.json", "report.json", "curves.png"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl"))]
    tox = json.loads((out / "toxicity.json").read_text())
    assert tox["languages"] == ["zh"] and tox["base_model"].startswith("from scratch")
    hf = json.loads((out / "config.json").read_text())
    assert hf["hidden_size"] == 32 and hf["num_hidden_layers"] == 1
    assert report["steps"] == 3 * 26  # 400 examples + 16 clean turns (8 of 10 dialogues), batch 16, 3 epochs
    clean = report["clean_service_text"]
    assert clean["train_texts"] == 16 and clean["held_out_texts"] == 4
    assert 0.0 <= clean["held_out_flagged_rate"] <= 1.0
    assert report["dev"]["n"] == 80 and report["dev"]["accuracy"] >= 0.85  # a lexically separable toy set


def test_zh_tokenizer_splits_characters_and_loads_through_detoxify(zh_model: tuple[Path, dict, Path]) -> None:
    from detoxify import Detoxify
    from transformers import BertTokenizerFast

    from safety.toxicity import ToxicityClassifier

    out, _, _ = zh_model
    tok = BertTokenizerFast.from_pretrained(str(out), local_files_only=True)
    assert tok.tokenize("你这个笨蛋") == ["你", "这", "个", "笨", "蛋"]
    clf = ToxicityClassifier.load(out)
    assert isinstance(clf._detoxify, Detoxify)
    toxic, clean = clf.score(["你这个废物", "包裹什么时候到"])
    assert toxic > clean


def test_router_routes_by_language(zh_model: tuple[Path, dict, Path], tmp_path: Path) -> None:
    from safety import OutputFilter
    from safety.toxicity import ToxicityRouter

    zh_dir, _, _ = zh_model
    root = tmp_path / "toxicity"
    root.mkdir()
    shutil.copytree(zh_dir, root / "zh")
    # a second "language" dir: the same weights declared as English, to check routing without a 2nd training
    shutil.copytree(zh_dir, root / "en")
    cfg = json.loads((root / "en" / "toxicity.json").read_text())
    cfg["languages"] = ["en"]
    cfg["threshold"] = 0.99
    (root / "en" / "toxicity.json").write_text(json.dumps(cfg))

    router = ToxicityRouter.load(root)
    assert router.languages == ["en", "zh"]
    assert router.route("zh") == "zh" and router.route("zh-CN") == "zh" and router.route("en") == "en"
    # the caller names the language (the engine decides it once a turn); one without a model gets the default's
    assert router.route(None) == "en" and router.route("fr") == "en"
    v_zh = router.check("你这个废物", "zh")
    v_en = router.check("你这个废物", "en")
    assert v_zh.language == "zh" and v_en.language == "en"
    assert v_zh.score == pytest.approx(v_en.score, abs=1e-6)  # same weights...
    assert v_zh.threshold == 0.5 and v_en.threshold == 0.99  # ...but each model's own threshold
    assert router.classifier_for("zh") is not router.classifier_for("en")

    of = OutputFilter(root)
    assert of.check("你这个废物", "zh").language == "zh"
    assert OutputFilter(root, threshold=0.0).check("包裹到了", "zh").toxic
    # a baseline reaches the model of the language and keeps that model's threshold (router and filter alike)
    for checker in (router, of):
        judged = checker.check("收款人：你这个废物", "en", baseline="收款人：")
        assert judged.baseline is not None and judged.threshold == 0.99 and judged.language == "en"
    assert not OutputFilter(root, threshold=0.0).check("包裹到了", "zh", baseline="包裹到了").toxic  # adds nothing


def test_router_flat_layout_and_errors(zh_model: tuple[Path, dict, Path], tmp_path: Path) -> None:
    from safety.toxicity import ToxicityRouter

    zh_dir, _, _ = zh_model
    flat = ToxicityRouter.load(zh_dir)  # a single model dir (the older layout) serves its own languages
    assert flat.languages == ["zh"] and flat.route("en") == "zh"
    mixed = tmp_path / "mixed"  # flat English model at the root + a zh sub-dir (the migration path)
    shutil.copytree(zh_dir, mixed)
    cfg = json.loads((mixed / "toxicity.json").read_text())
    cfg["languages"] = ["en"]
    (mixed / "toxicity.json").write_text(json.dumps(cfg))
    shutil.copytree(zh_dir, mixed / "zh")
    both = ToxicityRouter.load(mixed)
    assert both.languages == ["en", "zh"]
    assert both.model_dirs == {"en": mixed, "zh": mixed / "zh"}
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ToxicityModelError):
        ToxicityRouter.load(empty)
    with pytest.raises(ToxicityModelError):
        ToxicityRouter.load(tmp_path / "missing")


def test_for_language_recipes() -> None:
    from safety.train import TrainConfig

    zh = TrainConfig.for_language("zh")
    assert zh.from_scratch and zh.languages == ("zh",) and zh.hidden == 128
    en = TrainConfig.for_language("en")
    assert not en.from_scratch and en.languages == ("en",)
    with pytest.raises(SafetyError):
        TrainConfig.for_language("fr")


def test_quantized_loading_keeps_scores_close(zh_model: tuple[Path, dict, Path]) -> None:
    import torch

    from safety.toxicity import ToxicityClassifier

    out, _, _ = zh_model
    texts = ["你这个废物", "包裹什么时候到", "谢谢你帮我查订单"]
    full = ToxicityClassifier.load(out)
    small = ToxicityClassifier.load(out, quantize=True)
    assert small.quantized and not full.quantized
    assert not any(isinstance(m, torch.nn.Linear) for m in small._detoxify.model.bert.encoder.modules())
    assert small.score(texts) == pytest.approx(full.score(texts), abs=0.05)


def test_read_clean_texts_formats_and_errors(tmp_path: Path) -> None:
    from safety.errors import SafetyDataError
    from safety.train import read_clean_texts

    p = tmp_path / "c.jsonl"
    p.write_text('{"text": "a"}\n{"turns": [{"text": "b"}, {"text": "c"}]}\n\n{"text": "d"}\n{"text": "e"}\n')
    train, held = read_clean_texts(p, 0.25)
    assert train == ["a", "b", "c", "d"] and held == ["e"]
    p.write_text('{"nothing": 1}\n')
    with pytest.raises(SafetyDataError) as err:
        read_clean_texts(p, 0.2)
    assert err.value.line == 1
