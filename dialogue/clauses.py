"""A request and its details in one message: the text a ``from_text`` slot takes when the customer says it unasked.

A ``from_text`` slot (a return's reason, a fault's description) is filled with the customer's answer when the bot
asks for it. Customers often say it before they are asked, in the message that starts the task:

    "i want to return 10976, i dont want it anymore"        -> reason "i dont want it anymore"
    "我要退货 订单10234 耳机有杂音"                             -> reason "耳机有杂音"
    "耳机左边没声音 想退货"                                     -> reason "耳机左边没声音"

Asking again for what was just said is what customers notice first. The message is split into clauses (punctuation, a
dash between words; in Chinese also spaces, which separate clauses there, not words), each clause is read by the NLU
on its own, and:

* a clause read as the task's own request ("想退货", "can i send them back?") is the request;
* a clause that carries a value of one of the task's other slots ("订单10234", "order #18417") gives that value,
  which the whole message's parse already filled;
* an aside is left out: a short greeting or thanks ("hi", "谢谢"), or a question about something else the bot does
  ("do you ship to canada?"), each read confidently;
* so is a clause too short to say anything ("收到了，但是我想退掉": I got it, but I want to send it back);
* what is left is the detail. It counts only when the message also had a request clause: a message that is all
  detail ("the strap broke") is left to the question that follows. Clauses are short, and the NLU reads fragments
  less well than messages ("鞋底断了" was read as goodbye, "耳机有杂音" as a product question): so only short small
  talk and questions count as asides, and a fragment the NLU misfiles still reaches the detail.

Pure: the caller reads the clauses (the NLU) and passes what it read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

MAX_CLAUSES = 8  # a longer message is a story, not a request with a detail: left to the question
SHORT_TALK = 3  # at most this many words (Chinese: characters) in a clause that is small talk rather than detail
_HAN = re.compile(r"[\u4e00-\u9fff]")
_CLAUSE = re.compile(r"([^,，.。!！?？;；、~～\n]+)([,，.。!！?？;；、~～\n]*)")
_WORDS = re.compile(r"[^\W_]+")
_DASH = re.compile(r"\s+[-–—]+\s+|——")  # a dash between words ("zip snapped off - I want to return it"), not in "t-shirt"
# A question: its mark; in Chinese a final particle (吗, 呢, 咩...) or 不 ("包邮不", "行不"), an A-not-A verb ("管不管",
# "有没有"), a choice ("你是真人还是机器人呀") or a question word ("同一个订单扣了两笔款 啥情况", "钱啥时候退回来"); in English, a
# clause that opens as questions do ("does it do magsafe" has no mark), also after the word customers start with
# ("wait is sending it back free", "r u a real person")
_OPENERS = r"(?:(?:wait|ok(?:ay)?|so|and|also|btw|hmm+|um+|oh|but|quick q)\W+)*"
_QUESTION = re.compile(r"[?？]|[吗呢么嘛咩]$|.不$|(.)[不没]\1|是.+还是|啥|什么|怎么|咋|多少|多久|几[天个点号时]|哪|为什么|为啥|"
                       r"是否|能否|可否|^" + _OPENERS +
                       r"(?:is|are|do|does|did|can|could|will|would|should|may|has|have (?:you|u)|r u|what'?s?|how|"
                       r"when|where|why|which|who)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Clause:
    text: str
    question: bool  # a question mark, a Chinese question particle or A-not-A verb, an English question opening

    @property
    def short(self) -> bool:
        han = len(_HAN.findall(self.text))
        return (han or len(_WORDS.findall(self.text))) <= SHORT_TALK

    @property
    def substantive(self) -> bool:
        """Long enough to be a detail: at least 3 words, or 4 Chinese characters ("鞋底断了" is, "收到了" is not)."""
        han = len(_HAN.findall(self.text))
        return han >= 4 if han else len(_WORDS.findall(self.text)) >= 3


def asks(text: str) -> bool:
    """Whether any clause of ``text`` is asked as a question (:attr:`Clause.question`)."""
    return any(c.question for c in split_clauses(text))


def split_clauses(text: str) -> list[Clause]:
    """The message's clauses, in order (broken at punctuation, and at spaces when the text is Chinese)."""
    han = bool(_HAN.search(text))
    out = []
    for m in _CLAUSE.finditer(_DASH.sub(", ", text)):
        pieces = m.group(1).split() if han else [m.group(1)]
        for i, piece in enumerate(pieces):
            if _WORDS.search(piece):
                last = i == len(pieces) - 1
                mark = "?" in m.group(2) or "？" in m.group(2) if last else False
                out.append(Clause(piece.strip(), mark or bool(_QUESTION.search(piece.strip()))))
    return out


@dataclass(frozen=True)
class Reading:
    """What the NLU made of one clause: its intent, whether that was confident, whether it carried a value of one of
    the task's other slots."""

    clause: Clause
    intent: str
    confident: bool
    has_value: bool


def detail(readings: Sequence[Reading], request: frozenset[str], small_talk: frozenset[str],
           others: frozenset[str]) -> str | None:
    """The clauses that are neither the request (``request`` intents), a value, nor an aside (short ``small_talk``;
    a question read as one of ``others``), joined; ``None`` unless the message had both a request and a detail."""
    if not 2 <= len(readings) <= MAX_CLAUSES:
        return None
    kept, requested = [], False
    for r in readings:
        c = r.clause
        aside = r.confident and ((r.intent in small_talk and c.short) or (r.intent in others and c.question))
        if r.intent in request:
            requested = True
        elif not r.has_value and not aside and c.substantive:
            kept.append(c.text)
    if not requested or not kept:
        return None
    joiner = "，" if any(_HAN.search(t) for t in kept) else ", "
    return joiner.join(kept)
