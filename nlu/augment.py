"""Training-time data augmentation for small bot data: new annotated examples made from a bot's own examples.

Why: a bot's ``nlu.yml`` holds a few dozen examples per intent, written by the bot's author; customers write the same
things in other orders, with other neighbours, typos, no punctuation and (in Chinese) colloquial particles. A model
trained on the examples alone learns *where* an entity sat in them (a reason only after ``because``, an order id only
after ``order``) and reads any unfamiliar sentence as the intent with the most varied examples. The operations here
recombine what the data already says, for any bot, in English and Chinese:

* **entity swap** -- an annotated value is replaced by another value of the same entity type and language (or, for a
  number, by other digits of the same length), so values meet new contexts;
* **splice** -- an example is joined with an entity-bearing clause of another example of the same intent (or of the
  bot's slot-answer intent, e.g. ``inform``: "it arrived [damaged](reason)") whose entity type the example lacks, in
  front of it or after it, so an order id and a reason appear together, in new positions and with new neighbours;
* **social prefix** -- a short social example (greeting) or a filler word (``ok``, ``嗯``) in front of a task
  example, whose intent stays the task's ("hey whats the status on 10388" is a status question);
* **noise** -- English: lower case, dropped punctuation and apostrophes, one typo in a word outside the entities;
  Chinese: colloquial swaps (什么->啥, 怎么->咋), particles and fillers added or removed (亲, 啊, 呢, 呀),
  punctuation dropped or replaced by a space.

Every operation works on *segments* (plain text or one entity with its value), and the example is rebuilt from them
with :func:`nlu.data.make_example`, so entity spans and BIO tags always stay aligned with the text. Everything is
driven by one seeded ``random.Random``: the same data and seed give the same augmented examples.
"""

from __future__ import annotations

import random
import re
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nlu.data import Example, make_example
from nlu.tokenize import detect_language
from nlu.types import Entity

# A segment: (text, entity label or None, entity value or None).
Segment = tuple[str, str | None, str | None]

_CLAUSE_END = re.compile(r"[,，.。!！?？;；~、]+")
_PUNCT = re.compile(r"[,，.。!！?？;；~、:：\"'“”‘’()（）]")
_EN_FILLERS = ("ok", "ok so", "so", "um", "hmm", "well", "cool", "alright", "oh", "btw", "yeah", "and")
_ZH_FILLERS = ("嗯", "哦", "那个", "亲", "好的", "额", "对了", "请问", "你好")
_ZH_PARTICLES = ("啊", "呀", "呢", "哈", "哦", "吧", "~", "亲")
_ZH_DROPPABLE = "啊呀呢哈哦吧~"
_ZH_COLLOQUIAL = (("为什么", "为啥"), ("怎么样", "咋样"), ("怎么办", "咋办"), ("什么", "啥"), ("怎么", "咋"),
                  ("没有", "没"), ("一下", "下"), ("可以", "能"), ("你好", "您好"), ("您", "你"))


@dataclass(frozen=True)
class _Clause:
    segments: tuple[Segment, ...]
    types: frozenset[str]


def segments_of(example: Example) -> list[Segment] | None:
    """The example as segments, or ``None`` when its entities cannot be trusted to rebuild it (overlapping spans,
    or BIO tags without character-offset entities, as in pre-tokenised JSONL data)."""
    ents = sorted(example.entities, key=lambda e: e.start)
    if not ents and any(t != "O" for t in example.tags):
        return None
    segs: list[Segment] = []
    pos = 0
    for e in ents:
        if e.start < pos or e.end > len(example.text) or e.start >= e.end:
            return None
        if e.start > pos:
            segs.append((example.text[pos : e.start], None, None))
        segs.append((example.text[e.start : e.end], e.entity, e.value))
        pos = e.end
    if pos < len(example.text):
        segs.append((example.text[pos:], None, None))
    return segs


def build(segments: Sequence[Segment], intent: str) -> Example:
    """An example from segments: the text is their concatenation, the entities their labelled segments."""
    parts: list[str] = []
    entities: list[Entity] = []
    pos = 0
    for text, label, value in segments:
        if label is not None:
            entities.append(Entity(label, value if value is not None else text, pos, pos + len(text)))
        parts.append(text)
        pos += len(text)
    return make_example("".join(parts), intent, entities)


def _join(a: Sequence[Segment], b: Sequence[Segment], sep: str) -> list[Segment]:
    """``a + sep + b`` with the separator's spacing tidied at the seam (no doubled punctuation or spaces)."""
    left, right = list(a), list(b)
    if left and left[-1][1] is None:
        left[-1] = (left[-1][0].rstrip(" ,，.。!！?？;；~"), None, None)
        if not left[-1][0]:
            left.pop()
    if right and right[0][1] is None:
        right[0] = (right[0][0].lstrip(" ,，.。;；"), None, None)
        if not right[0][0]:
            right.pop(0)
    return [*left, (sep, None, None), *right] if sep else [*left, *right]


def _map_text(segments: Sequence[Segment], fn: Callable[[str], str]) -> list[Segment]:
    """Apply ``fn`` to the plain-text segments only; entities are never edited."""
    out: list[Segment] = []
    for text, label, value in segments:
        out.append((text, label, value) if label is not None else (fn(text), None, None))
    return [s for s in out if s[0]]


def _trim(segments: Sequence[Segment]) -> list[Segment]:
    """Leading and trailing spaces of the whole example removed (not those between segments); empty pieces dropped."""
    segs = [s for s in segments if s[0]]
    if segs and segs[0][1] is None:
        segs[0] = (segs[0][0].lstrip(), None, None)
    if segs and segs[-1][1] is None:
        segs[-1] = (segs[-1][0].rstrip(), None, None)
    return [s for s in segs if s[0]]


def _has_text(segments: Sequence[Segment]) -> bool:
    return any(text.strip() for text, _, _ in segments)


class Augmenter:
    """Makes augmented examples from a bot's examples (see the module docstring). Build it on the training examples;
    :meth:`generate` may also take other sources (e.g. held-out examples, to calibrate on noisier text)."""

    def __init__(self, examples: Sequence[Example], seed: int = 0) -> None:
        self.seed = seed
        usable = [(ex, segs) for ex in examples if (segs := segments_of(ex)) is not None]
        self.values: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)  # (lang, entity) -> pairs
        self.intent_types: dict[str, set[str]] = defaultdict(set)
        by_intent: dict[str, list[tuple[Example, list[Segment]]]] = defaultdict(list)
        for ex, segs in usable:
            lang = detect_language(ex.text)
            by_intent[ex.intent].append((ex, segs))
            for text, label, value in segs:
                if label is not None:
                    self.intent_types[ex.intent].add(label)
                    pair = (text, value or text)
                    if pair not in self.values[(lang, label)]:
                        self.values[(lang, label)].append(pair)
        # the slot-answer intent ("inform"): nearly every example is an entity; its clauses fit any task that uses
        # the same entity types
        ratios = {i: sum(1 for ex, _ in rows if ex.entities) / len(rows) for i, rows in by_intent.items()}
        answer = max(ratios, key=lambda i: (ratios[i], i), default=None)
        self.answer_intent = answer if answer is not None and ratios[answer] >= 0.8 else None
        # social intents (greetings, thanks): short, entity-free examples; used as prefixes of task examples
        self.social = {i for i, rows in by_intent.items()
                       if ratios[i] == 0 and statistics.median(len(ex.tokens) for ex, _ in rows) <= 4}
        # the greeting intent: the social intent whose first words most often open other intents' examples
        # ("hi, where is my order"); a thanks or goodbye in front of a task would teach the wrong thing
        task_texts = [ex.text.lower() for i, rows in by_intent.items() if i not in self.social for ex, _ in rows]
        scores = {i: sum(1 for t in task_texts for w in {ex.text.lower() for ex, _ in by_intent[i]
                                                         if len(ex.tokens) <= 2}
                         if t.startswith(w) and not t[len(w) : len(w) + 1].isalnum())
                  for i in sorted(self.social)}
        greeting = max(scores, key=lambda i: (scores[i], i), default=None)
        self.greeting_intent = greeting if greeting is not None and scores[greeting] >= 2 else None
        self.greetings: dict[str, list[str]] = defaultdict(list)  # lang -> short greetings
        for ex, _ in by_intent.get(self.greeting_intent or "", []):
            if len(ex.tokens) <= 4:
                self.greetings[detect_language(ex.text)].append(ex.text)
        self.clauses: dict[tuple[str, str], list[_Clause]] = defaultdict(list)  # (lang, donor intent) -> clauses
        for ex, segs in usable:
            for clause in _clauses(segs):
                self.clauses[(detect_language(ex.text), ex.intent)].append(clause)
        self.sources = usable
        # open-ended entity types (a reason, a description): many distinct multi-word values. Any statement can be
        # one, so a spliced clause of such a type sometimes takes the words of another intent's statement
        # ("I want to return order 10234, [the delivery was late](reason)"): the tagger learns the position, not
        # just the author's dozen phrasings
        canon: dict[str, set[str]] = defaultdict(set)
        lengths: dict[str, list[int]] = defaultdict(list)
        for ex, segs in usable:
            for text, label, value in segs:
                if label is not None:
                    canon[label].add((value or text).lower())
                    lengths[label].append(len(make_example(text, "").tokens))
        self.open_types = {label for label, vals in canon.items()
                           if len(vals) >= 12 and statistics.fmean(lengths[label]) >= 1.5}
        self.statements: dict[str, list[str]] = defaultdict(list)  # lang -> entity-free statements
        self._statement_intents: dict[str, list[str]] = defaultdict(list)  # lang -> intent of each statement
        chat = {i for i, rows in by_intent.items()  # greetings, thanks, goodbyes: no statements of a problem
                if ratios[i] == 0 and statistics.median(len(ex.tokens) for ex, _ in rows) <= 6}
        for ex, segs in usable:
            if ex.entities or ex.intent in self.social | chat or ex.intent == self.answer_intent:
                continue
            for piece in _CLAUSE_END.split(ex.text.strip()):
                piece = piece.strip()
                if 3 <= len(make_example(piece, "").tokens) <= 10 and not re.search(r"[?？吗么]\s*$", piece) \
                        and not ex.text.rstrip().endswith(("?", "？")):
                    self.statements[detect_language(ex.text)].append(piece)
                    self._statement_intents[detect_language(ex.text)].append(ex.intent)

    # ------------------------------------------------------------------ operations
    def _statement(self, lang: str, intent: str, rng: random.Random) -> str | None:
        """A random statement of another intent than ``intent`` (its own would blur what the intent means)."""
        pool = [t for t, i in zip(self.statements.get(lang, []), self._statement_intents.get(lang, [])) if i != intent]
        if not pool:
            return None
        free = pool[rng.randrange(len(pool))]
        return free[:1].lower() + free[1:] if lang == "en" and rng.random() < 0.7 else free

    def swap_entities(self, segs: list[Segment], lang: str, rng: random.Random) -> list[Segment]:
        out: list[Segment] = []
        for text, label, value in segs:
            if label is not None and rng.random() < 0.7:
                if text.isdigit() and rng.random() < 0.5:
                    digits = str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(len(text) - 1))
                    text, value = digits, digits
                elif pool := self.values.get((lang, label)):
                    text, value = pool[rng.randrange(len(pool))]
            out.append((text, label, value))
        return out

    def open_splice(self, segs: list[Segment], intent: str, lang: str, rng: random.Random) -> list[Segment] | None:
        """The example with another intent's statement appended (or put first) as the value of an open-ended
        entity type its intent uses and it lacks; ``None`` when there is no such type."""
        have = {label for _, label, _ in segs if label is not None}
        types = sorted(self.intent_types.get(intent, set()) & self.open_types - have)
        free = self._statement(lang, intent, rng) if types and intent != self.answer_intent else None
        if free is None:
            return None
        sep = rng.choice(("，", " ", "", "。")) if lang == "zh" else rng.choice((", ", " ", ". ", " because "))
        clause = [(free, types[rng.randrange(len(types))], free)]
        # appended only: a statement put first and tagged taught the tagger that any opening clause is a reason
        # ("收到了，但是我想退掉" -> reason 收到了)
        return _join(segs, clause, sep)

    def splice(self, segs: list[Segment], intent: str, lang: str, rng: random.Random) -> list[Segment] | None:
        have = {label for _, label, _ in segs if label is not None}
        wanted = self.intent_types.get(intent, set())
        donors = [intent] + ([self.answer_intent] if self.answer_intent and self.answer_intent != intent else [])
        pool = [c for d in donors for c in self.clauses.get((lang, d), ())
                if c.types <= wanted and not c.types & have]
        if not pool:
            return None
        clause = list(pool[rng.randrange(len(pool))].segments)
        labels = [label for _, label, _ in clause if label is not None]
        # not for the answer intent: its examples are little but the entity, so the statement's own words would
        # teach that "where is my parcel" is an answer
        after = rng.random() < 0.7
        if after and len(labels) == 1 and labels[0] in self.open_types and intent != self.answer_intent \
                and rng.random() < 0.5 and (free := self._statement(lang, intent, rng)) is not None:
            clause = [(free, labels[0], free)]  # after the request only, as in open_splice
        if lang == "zh":
            sep = rng.choice(("，", " ", "", "，", "。"))
        else:
            sep = rng.choice((", ", " ", ". ", ", ", " and "))
        return _join(segs, clause, sep) if after else _join(clause, segs, sep)

    def prefix(self, segs: list[Segment], intent: str, lang: str, rng: random.Random) -> list[Segment]:
        fillers = _ZH_FILLERS if lang == "zh" else _EN_FILLERS
        greetings = self.greetings.get(lang, [])
        if intent not in self.social and greetings and rng.random() < 0.6:
            head = greetings[rng.randrange(len(greetings))]
        else:
            head = fillers[rng.randrange(len(fillers))]
        sep = rng.choice(("，", " ", "")) if lang == "zh" else rng.choice((", ", " ", " "))
        return _join([(head, None, None)], segs, sep)

    def noise(self, segs: list[Segment], lang: str, rng: random.Random) -> list[Segment]:
        return self._noise_zh(segs, rng) if lang == "zh" else self._noise_en(segs, rng)

    @staticmethod
    def _noise_en(segs: list[Segment], rng: random.Random) -> list[Segment]:
        if rng.random() < 0.6:
            segs = [(t.lower(), label, v) for t, label, v in segs]  # entity values keep their case
        if rng.random() < 0.5:
            segs = _map_text(segs, lambda s: re.sub(r"\s{2,}", " ", re.sub(r"[,.!?;:]", " ", s)))
        if rng.random() < 0.3:
            segs = _map_text(segs, lambda s: s.replace("'", "").replace("\u2019", ""))
        if rng.random() < 0.35:
            words = [(k, m) for k, (t, label, _) in enumerate(segs) if label is None
                     for m in re.finditer(r"[A-Za-z]{4,}", t)]
            if words:
                k, m = words[rng.randrange(len(words))]
                text = segs[k][0]
                w = _typo(m.group(), rng)
                segs = [*segs[:k], (text[: m.start()] + w + text[m.end() :], None, None), *segs[k + 1 :]]
        return _trim(segs)

    @staticmethod
    def _noise_zh(segs: list[Segment], rng: random.Random) -> list[Segment]:
        if rng.random() < 0.5:
            swaps = [pair for pair in _ZH_COLLOQUIAL if rng.random() < 0.6]

            def colloquial(s: str) -> str:
                for a, b in swaps:
                    s = s.replace(a, b)
                return s
            segs = _map_text(segs, colloquial)
        if rng.random() < 0.3:  # a final 吗 becomes the colloquial A-not question (能退吗 -> 能退不)
            segs = _map_text(segs, lambda s: re.sub(r"吗([?？]?)$", r"不\1", s))
        if rng.random() < 0.4:
            segs = _map_text(segs, lambda s: s.rstrip(_ZH_DROPPABLE) or s)
        if rng.random() < 0.5:
            sub = " " if rng.random() < 0.4 else ""
            segs = _map_text(segs, lambda s: re.sub(r"[，,。!！？?；;～~]+", sub, s))
        if rng.random() < 0.35 and segs:
            particle = _ZH_PARTICLES[rng.randrange(len(_ZH_PARTICLES))]
            segs = [*segs, (particle, None, None)]
        return _trim(segs)

    # ------------------------------------------------------------------ driver
    def augment_one(self, example: Example, segs: list[Segment], rng: random.Random) -> Example | None:
        """One random variant of ``example`` (``None`` when the variant would be empty or unchanged)."""
        lang = detect_language(example.text)
        out = list(segs)
        if any(label for _, label, _ in out) and rng.random() < 0.6:
            out = self.swap_entities(out, lang, rng)
        lacks_open = example.intent != self.answer_intent and bool(
            self.intent_types.get(example.intent, set()) & self.open_types - {label for _, label, _ in out})
        if rng.random() < (0.7 if lacks_open else 0.45):  # an open-ended value next to the rest: the hard case
            spliced = self.splice(out, example.intent, lang, rng)
            if spliced is not None:
                out = spliced
        if rng.random() < 0.25:
            out = self.prefix(out, example.intent, lang, rng)
        if rng.random() < 0.75:
            out = self.noise(out, lang, rng)
        if not _has_text(out):
            return None
        new = build(out, example.intent)
        return new if new.text != example.text and new.tokens else None

    def generate(self, n: int, sources: Sequence[Example] | None = None, seed: int | None = None) -> list[Example]:
        """``n`` augmented examples made from ``sources`` (default: the examples the augmenter was built on) in a
        seeded round-robin order, without duplicates of each other or of a source's text."""
        rng = random.Random(self.seed if seed is None else seed)
        pool = self.sources if sources is None else \
            [(ex, segs) for ex in sources if (segs := segments_of(ex)) is not None]
        if not pool or n <= 0:
            return []
        seen = {ex.text for ex, _ in pool}
        out: list[Example] = []
        # first, an open-ended splice of every example that can take one (the case the data never shows: a free
        # description of a problem after the rest of a request), within a quarter of the budget
        for ex, segs in pool:
            lang = detect_language(ex.text)
            for _ in range(1):
                spliced = self.open_splice(list(segs), ex.intent, lang, rng)
                if spliced is None or len(out) >= n // 4:
                    break
                if rng.random() < 0.6:
                    spliced = self.noise(spliced, lang, rng)
                new = build(spliced, ex.intent) if _has_text(spliced) else None
                if new is not None and new.text not in seen:
                    seen.add(new.text)
                    out.append(new)
        order = list(range(len(pool)))
        for _ in range(8):  # a few passes at most: tiny data may not have n distinct variants
            rng.shuffle(order)
            for i in order:
                ex, segs = pool[i]
                new = self.augment_one(ex, segs, rng)
                if new is not None and new.text not in seen:
                    seen.add(new.text)
                    out.append(new)
                    if len(out) >= n:
                        return out
        return out


def _clauses(segs: Sequence[Segment]) -> list[_Clause]:
    """The entity-bearing clauses of an example: pieces between clause punctuation outside entities, each holding
    at least one whole entity."""
    pieces: list[list[Segment]] = [[]]
    for text, label, value in segs:
        if label is not None:
            pieces[-1].append((text, label, value))
            continue
        parts = _CLAUSE_END.split(text)
        for k, part in enumerate(parts):
            if k:
                pieces.append([])
            if part:
                pieces[-1].append((part, None, None))
    out = []
    for piece in pieces:
        if piece and piece[0][1] is None:
            piece[0] = (piece[0][0].lstrip(), None, None)
        if piece and piece[-1][1] is None:
            piece[-1] = (piece[-1][0].rstrip(), None, None)
        piece = [s for s in piece if s[0]]
        types = frozenset(label for _, label, _ in piece if label is not None)
        if types:
            out.append(_Clause(tuple(piece), types))
    return out


def _typo(word: str, rng: random.Random) -> str:
    """One keyboard slip inside ``word`` (first letter kept): adjacent swap, a dropped or a doubled letter."""
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1:
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]


def augment(examples: Sequence[Example], factor: float, seed: int = 0) -> list[Example]:
    """``round(factor * len(examples))`` augmented examples from ``examples`` (see :class:`Augmenter`)."""
    if factor <= 0 or not examples:
        return []
    return Augmenter(examples, seed).generate(round(factor * len(examples)))
