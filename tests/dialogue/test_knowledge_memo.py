"""The knowledge base's search memo: a knowledge turn encodes its query once, although the engine and the answering
action each search (through their own KnowledgeBase of the same kb.yml), and a memo hit returns exactly what a fresh
search would."""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from dialogue import knowledge
from dialogue import types as ev
from dialogue.knowledge import MEMO_SIZE, Example, KBEntry, KnowledgeBase

KB_TEXT = (
    "entries:\n"
    '  - {id: hours, language: en, questions: ["When are you open?", "Opening hours?"], answer: "9 to 5."}\n'
    '  - {id: gifts, language: en, questions: ["Do you sell gift cards?"], answer: "Yes, from 10 euros."}\n'
    '  - {id: hours_zh, language: zh, questions: ["你们几点开门？"], answer: "九点到五点。"}\n'
    '  - {id: gifts_zh, language: zh, questions: ["有礼品卡吗？"], answer: "有，十欧元起。"}\n'
)


class CountingEncoder:
    """A deterministic stand-in for MiniLM (hashed character trigrams, unit vectors) that counts what it encodes."""

    name = "counting-test-encoder"

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        with self._lock:
            self.texts.extend(texts)
        out = torch.zeros((len(texts), 64), dtype=torch.float32)
        for row, text in enumerate(texts):
            padded = f"  {text.lower()}  "
            for i in range(len(padded) - 2):
                out[row, hashlib.blake2b(padded[i : i + 3].encode(), digest_size=2).digest()[0] % 64] += 1.0
        return torch.nn.functional.normalize(out, p=2, dim=1)


@pytest.fixture(autouse=True)
def empty_memo() -> Iterator[None]:
    knowledge._memo.clear()
    knowledge._queries.clear()
    yield
    knowledge._memo.clear()
    knowledge._queries.clear()


@pytest.fixture
def kb_file(tmp_path: Path) -> Path:
    path = tmp_path / "kb.yml"
    path.write_text(KB_TEXT, encoding="utf-8")
    return path


def _load(kb_file: Path, encoder: CountingEncoder) -> KnowledgeBase:
    return KnowledgeBase.load(kb_file, None, encoder=encoder)  # type: ignore[arg-type]


def test_two_bases_of_one_file_encode_a_query_once_and_agree(kb_file: Path) -> None:
    encoder = CountingEncoder()
    engine_kb, action_kb = _load(kb_file, encoder), _load(kb_file, encoder)  # as kefu.app and stock_actions do
    assert engine_kb is not action_kb and engine_kb.content_hash == action_kb.content_hash
    encoder.texts.clear()

    first = engine_kb.search("do you have gift cards", "en", 1)  # the engine's search
    again = action_kb.search("do you have gift cards", "en", 3)  # the action's, for the answer
    assert encoder.texts == ["do you have gift cards"]
    assert again[:1] == first and first[0].entry_id == "gifts"
    assert knowledge._memo.hits == 1


def test_a_memo_hit_equals_a_fresh_search(kb_file: Path) -> None:
    kb = _load(kb_file, CountingEncoder())
    queries = [("when do you open", "en"), ("gift card please", "en"), ("几点开门", "zh"), ("礼品卡", "zh")]
    fresh = []
    for text, language in queries:
        knowledge._memo.clear()
        fresh.append(kb.search(text, language, k=5))
    warm = [kb.search(text, language, k=5) for text, language in queries]  # the memo holds all four now
    remembered = [kb.search(text, language, k=5) for text, language in queries]
    assert warm == fresh and remembered == fresh
    assert kb._scores("几点开门", "zh", cosine_weight=1.0) != kb._scores("几点开门", "zh")  # the weight is in the key


def test_text_language_and_content_each_tell_queries_apart(kb_file: Path, tmp_path: Path) -> None:
    encoder = CountingEncoder()
    kb = _load(kb_file, encoder)
    encoder.texts.clear()
    kb.search("gift cards", "en")
    kb.search("gift cards ", "en")  # another text: not the memo's to equate them
    kb.search("gift cards", "zh")  # another language: scored again, from the same query vector
    assert knowledge._memo.hits == 0
    assert encoder.texts == ["gift cards", "gift cards "]

    edited = tmp_path / "edited.yml"
    edited.write_text(KB_TEXT.replace("from 10 euros", "from 20 euros"), encoding="utf-8")
    other = _load(edited, encoder)
    assert other.content_hash != kb.content_hash
    assert other.search("gift cards", "en")[0].answer == "Yes, from 20 euros."  # its own scores, its own answer
    assert knowledge._memo.hits == 0


def test_bases_built_without_a_content_hash_do_not_share(kb_file: Path) -> None:
    encoder = CountingEncoder()
    entries = [KBEntry("a", "en", ("Where is the shop?",), "Main Street."), KBEntry("b", "en", ("Prices?",), "Low.")]
    vectors = encoder.encode([q for e in entries for q in e.questions])
    one = KnowledgeBase(entries, vectors, [0, 1], encoder)  # type: ignore[arg-type]
    two = KnowledgeBase(entries, -vectors, [0, 1], encoder)  # type: ignore[arg-type]
    encoder.texts.clear()
    assert one.search("where is the shop", "en")[0].entry_id == "a"
    assert one.search("where is the shop", "en")[0].entry_id == "a"
    assert encoder.texts == ["where is the shop"] and knowledge._memo.hits == 1  # the same instance remembers
    assert two.search("where is the shop", "en")[0].score == 0.0  # the other instance scores with its own vectors
    assert knowledge._memo.hits == 1
    assert encoder.texts == ["where is the shop"]  # from the one query vector


def test_the_memo_keeps_the_latest_queries_only(kb_file: Path) -> None:
    encoder = CountingEncoder()
    kb = _load(kb_file, encoder)
    encoder.texts.clear()
    for i in range(MEMO_SIZE + 1):
        kb.search(f"question {i}", "en")
    assert len(knowledge._memo._items) == MEMO_SIZE
    kb.search(f"question {MEMO_SIZE}", "en")  # the latest: remembered
    kb.search("question 0", "en")  # the oldest: dropped, encoded again
    assert encoder.texts.count(f"question {MEMO_SIZE}") == 1 and encoder.texts.count("question 0") == 2
    assert "question" not in repr(knowledge._memo)  # customer text stays out of reprs


def test_concurrent_searches_agree_with_sequential_ones(kb_file: Path) -> None:
    kb = _load(kb_file, CountingEncoder())
    queries = [(f"gift card number {i % 7}", "en") if i % 2 else (f"几点开门{i % 5}", "zh") for i in range(80)]
    expected = {}
    for text, language in set(queries):
        knowledge._memo.clear()
        expected[(text, language)] = kb.search(text, language, k=2)
    knowledge._memo.clear()
    results: dict[int, Any] = {}

    def work(worker: int) -> None:
        for n, (text, language) in enumerate(queries):
            if n % 4 == worker:
                results[n] = kb.search(text, language, k=2)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[n] == expected[q] for n, q in enumerate(queries))


async def test_a_knowledge_turn_of_the_demo_bot_scores_its_query_once(shop: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's retrieval decides the turn, the action answers from the memo: one scoring for both."""
    scored: list[str] = []
    real = KnowledgeBase._score

    def counting(self: KnowledgeBase, candidates: list[int], text: str, language: str, weight: float | None) -> Any:
        scored.append(language)
        return real(self, candidates, text, language, weight)

    monkeypatch.setattr(KnowledgeBase, "_score", counting)
    engine = shop.engine  # type: ignore[attr-defined]
    reply = await engine.handle_message(None, uuid.uuid4().hex, "are you guys open on sundays")
    assert reply.action == "action_answer_kb", (reply.intent, reply.text)
    assert scored == ["en"]  # one scoring, whoever searched
    action = [e.data for e in await engine.conversation_events(reply.conversation_id) if e.type == ev.ACTION][-1]
    if action["policy"] == "knowledge":  # the engine's retrieval chose the action: the action's search was a hit
        # (as was the rivals' reading of the same query: a misunderstood turn's entry is weighed against the
        # out-of-scope examples, whose clauses are those the entries were scored over)
        assert knowledge._memo.hits == 2


def test_examples_are_cached_scored_per_intent_and_share_the_query_encode(kb_file: Path, tmp_path: Path) -> None:
    examples = [Example("greet", "en", "hello there"), Example("greet", "en", "good morning"),
                Example("return_request", "en", "i want to return my gift card"), Example("greet", "zh", "你好")]
    encoder = CountingEncoder()
    kb = KnowledgeBase.load(kb_file, tmp_path / "cache", encoder=encoder, examples=examples)  # type: ignore[arg-type]
    assert kb.examples is not None and kb_file.stem + ".examples.safetensors" in os.listdir(tmp_path / "cache")
    encoder.texts.clear()
    again = KnowledgeBase.load(kb_file, tmp_path / "cache", encoder=encoder, examples=examples)  # type: ignore[arg-type]
    assert encoder.texts == [] and again.cache_hit  # both caches matched
    edited = [*examples[:-1], Example("greet", "zh", "您好")]
    KnowledgeBase.load(kb_file, tmp_path / "cache", encoder=encoder, examples=edited)  # type: ignore[arg-type]
    assert encoder.texts == ["hello there", "good morning", "i want to return my gift card", "您好"]  # re-encoded

    encoder.texts.clear()
    hits = kb.search("return my gift card", "en", k=1)
    nearest = kb.nearest("return my gift card", "en")
    assert encoder.texts == ["return my gift card"]  # one encode for the entries and the examples
    assert set(nearest) == {"greet", "return_request"}  # the English examples only, best per intent
    assert nearest["return_request"] > nearest["greet"] and 0.0 <= min(nearest.values()) <= 1.0
    assert hits[0].score == kb.search("return my gift card", "en", k=1)[0].score
    assert set(kb.nearest("你好", "zh")) == {"greet"} and kb.nearest("hi", "fr") == {}
    assert _load(kb_file, encoder).nearest("hello", "en") == {}  # loaded without examples
