"""The Chinese word-vector encoder: the word2vec reader, SIF weighting and the bundled vectors' paraphrase sense."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from nlu import wordvec
from nlu.encoder import EncoderError, process_wide
from nlu.wordvec import WORDVEC_DIM, WordVectorEncoder, read_word2vec, shared_word_vectors


def write_vectors(folder: Path, vectors: dict[str, list[float]], counts: dict[str, int]) -> Path:
    """A word2vec binary file and a vocab.txt as the synonyms package ships them."""
    folder.mkdir(parents=True, exist_ok=True)
    dim = len(next(iter(vectors.values())))
    body = b"".join(word.encode("utf-8") + b" " + struct.pack(f"<{dim}f", *vec) for word, vec in vectors.items())
    (folder / "words.vector").write_bytes(f"{len(vectors)} {dim}\n".encode() + body)
    (folder / "vocab.txt").write_text("".join(f"{w} {c} n\n" for w, c in counts.items()), encoding="utf-8")
    return folder


def axis(i: int) -> list[float]:
    return [1.0 if j == i else 0.0 for j in range(WORDVEC_DIM)]


@pytest.fixture
def tiny(tmp_path: Path) -> WordVectorEncoder:
    # 运费 (rare) and 的 (very frequent) point different ways; 快 and 递 are characters only
    vectors = {"运费": axis(0), "的": axis(1), "快": axis(2), "递": axis(3), "包邮": [0.6, 0.8] + [0.0] * 98}
    counts = {"运费": 10, "的": 1_000_000, "快": 100, "递": 100, "包邮": 10}
    return WordVectorEncoder(write_vectors(tmp_path / "data", vectors, counts))


def test_reader_keeps_words_and_vectors(tmp_path: Path) -> None:
    folder = write_vectors(tmp_path, {"运费": axis(0), "refund": axis(5)}, {})
    words, vectors = read_word2vec(folder / "words.vector")
    assert words == ["运费", "refund"]
    assert vectors.shape == (2, WORDVEC_DIM) and vectors[1, 5] == 1.0 and vectors[0, 0] == 1.0


@pytest.mark.parametrize("damage", ["truncated", "foreign", "missing"])
def test_a_damaged_vector_file_is_a_clear_error(tmp_path: Path, damage: str) -> None:
    folder = write_vectors(tmp_path, {"运费": axis(0), "的": axis(1)}, {})
    path = folder / "words.vector"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-7])
    elif damage == "foreign":
        path.write_bytes(b"<html>not vectors</html>")
    else:
        path.unlink()
    with pytest.raises(EncoderError) as info:
        WordVectorEncoder(folder).encode(["运费"])
    assert info.value.context["path"] == str(path) and "words.vector" in str(info.value)


def test_sentences_are_sif_weighted_unit_vectors(tiny: WordVectorEncoder) -> None:
    v = tiny.encode(["运费的", "的", "快递", "！！😂", "refund", ""]).numpy()
    assert v.shape == (6, WORDVEC_DIM)
    assert np.allclose(np.linalg.norm(v[:3], axis=1), 1.0)
    assert v[0, 0] > 0.99 and v[0, 1] < 0.1  # the frequent 的 weighs almost nothing beside 运费
    assert v[2, 2] == pytest.approx(v[2, 3]) and v[2, 2] > 0.7  # a word without a vector: its characters
    assert not v[3].any() and not v[4].any() and not v[5].any()  # no known word (no letters of "refund"): zeros
    assert float(tiny.encode(["运费"])[0] @ tiny.encode(["包邮"])[0]) == pytest.approx(0.6)


def test_common_directions_are_the_frequent_words_own(tiny: WordVectorEncoder) -> None:
    # the directions sentence vectors share, weighted by how often a word is said times its SIF weight squared: 快
    # and 递 (100 counts each) lead; 的 (a million counts) is said most but weighs almost nothing in a sentence
    common = tiny.common_directions(3)
    assert common.shape == (3, WORDVEC_DIM)
    assert np.allclose(common @ common.T, np.eye(3), atol=1e-5)  # orthonormal
    assert float(np.sum(common[:2, 2:4] ** 2)) == pytest.approx(2.0, abs=1e-5)  # the top two span 快 and 递
    assert abs(float(common[2, 1])) < 0.5  # and 的 is not next: 运费 and 包邮 are
    assert np.array_equal(tiny.common_directions(3), common)  # computed once: the same every call


def test_missing_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wordvec.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EncoderError, match="synonyms"):
        WordVectorEncoder().encode(["运费"])


@pytest.mark.slow
def test_the_bundled_vectors_know_chinese_paraphrases() -> None:
    """What MiniLM could not do: paraphrases sharing (almost) no characters are nearer than unrelated questions. Word
    vectors are a noisy signal one pair at a time ("快递" and "物流" sit at 0.4); what they buy retrieval is measured
    over whole question sets in tests/dialogue/test_knowledge.py."""
    encoder = shared_word_vectors()
    pairs = [("送到了再给钱行不行", "可以货到付款吗", "耳机能用多久"), ("钱啥时候退回来", "退款多久到账", "电脑包防水吗")]
    for query, paraphrase, unrelated in pairs:
        q, p, u = encoder.encode([query, paraphrase, unrelated])
        assert float(q @ p) > float(q @ u) + 0.1, (query, float(q @ p), float(q @ u))


def test_traditional_chinese_reads_as_simplified() -> None:
    """The vectors and jieba know simplified words: 關稅 is a word only as 关税."""
    encoder = shared_word_vectors()
    assert encoder.words("關稅是誰付呢") == encoder.words("关税是谁付呢")
    traditional, plain = encoder.encode(["請問可以寄到香港嗎", "请问可以寄到香港吗"])
    assert float(traditional @ plain) == pytest.approx(1.0, abs=1e-6)


def test_process_wide_builds_one_instance_across_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    built: list[object] = []

    def factory() -> object:
        built.append(object())
        return built[-1]

    get = process_wide(factory)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: get(), range(32)))
    assert len(built) == 1 and all(g is built[0] for g in got)
    assert shared_word_vectors() is shared_word_vectors()
