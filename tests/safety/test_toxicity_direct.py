"""The toxicity classifier calls Detoxify's tokenizer and model directly (no ``model.eval()`` per call): its scores
are exactly ``Detoxify.predict``'s, for one reply and for a batch, full precision and int8, English and Chinese."""

from __future__ import annotations

from pathlib import Path

import pytest

from kefu.config import shared_models
from safety.normalize import normalize
from safety.toxicity import ToxicityClassifier
from safety.types import judge

MODELS = shared_models() / "toxicity"
TEXTS = {
    "en": ["Your order 20001 has shipped and should arrive on Friday.", "you are a useless idiot",
           "Sorry, I can't help with that, but an agent can.", "Shut up, loser!", "ok"],
    "zh": ["您的订单已发货，预计周五送达。", "你这个白痴", "抱歉，这个我帮不了您，客服可以。", "滚开，蠢货！", "好"],
}


def _model(language: str) -> Path:
    path = MODELS / language
    if not (path / "model.safetensors").is_file():
        pytest.skip(f"the {language} toxicity model is not built (make models)")
    return path


def _reference(clf: ToxicityClassifier, texts: list[str]) -> list[float]:
    """What score() returned before: Detoxify.predict on the normalised batch (a bare float for a batch of one)."""
    out = clf._detoxify.predict([normalize(t).text for t in texts])[clf.config.classes[0]]
    return [float(v) for v in (out if isinstance(out, list) else [out])]


@pytest.mark.parametrize(("language", "quantize"), [("en", True), ("en", False), ("zh", True)])
def test_scores_equal_detoxify_predict(language: str, quantize: bool) -> None:
    clf = ToxicityClassifier.load(_model(language), quantize=quantize)
    texts = TEXTS[language]
    direct_one = [clf.score([t])[0] for t in texts]
    direct_batch = clf.score(texts)
    assert direct_one == [_reference(clf, [t])[0] for t in texts]  # exactly, not approximately
    assert direct_batch == _reference(clf, texts)
    verdict = clf.check(texts[1], language)
    assert verdict.score == direct_one[1] and verdict.toxic == (verdict.score >= clf.threshold)


def test_the_model_is_in_eval_mode_once_and_not_put_there_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    clf = ToxicityClassifier.load(_model("en"), quantize=True)
    model = clf._detoxify.model
    assert not any(m.training for m in model.modules())  # int8 layers are new modules: eval mode reaches them too

    def no_eval() -> None:
        raise AssertionError("score() must not call model.eval()")

    monkeypatch.setattr(model, "eval", no_eval)
    assert 0.0 <= clf.score(["thanks for your help"])[0] <= 1.0


@pytest.mark.parametrize(
    ("score", "baseline", "toxic"),
    [
        (0.49, None, False),  # no baseline: the threshold alone
        (0.5, None, True),
        (0.62, 0.55, False),  # the author's words alone score near it: a value adding little does not flip it
        (0.71, 0.55, True),  # the value raises it by the margin or more
        (0.3, 0.0, False),  # a large rise below the threshold is not toxic
    ],
)
def test_a_trusted_template_is_toxic_only_when_its_values_raise_the_score(
    score: float, baseline: float | None, toxic: bool
) -> None:
    verdict = judge(score, 0.5, "en", baseline)
    assert verdict.toxic is toxic and verdict.baseline == baseline
    assert ("baseline" in verdict.to_dict()) is (baseline is not None)


def test_the_baseline_is_scored_alone_by_the_same_model() -> None:
    """Exactly the scores each text gets alone (int8 scales activations per batch: one batch would blend them)."""
    clf = ToxicityClassifier.load(_model("en"), quantize=True)
    author = "Please confirm the payee's name: . Shall I send the money?"
    filled = "Please confirm the payee's name: you useless idiot. Shall I send the money?"
    verdict = clf.check(filled, "en", baseline=author)
    assert verdict.baseline == clf.score([author])[0] and verdict.score == clf.score([filled])[0]
    assert verdict.toxic
