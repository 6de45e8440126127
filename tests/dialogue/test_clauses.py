"""The detail said with a request (dialogue.clauses): how a message is cut into clauses, and which clause is what."""

from __future__ import annotations

import pytest

from dialogue.clauses import MAX_CLAUSES, Clause, Reading, detail, split_clauses


@pytest.mark.parametrize(("text", "clauses"), [
    ("i want to return 10976, i dont want it anymore", ["i want to return 10976", "i dont want it anymore"]),
    ("hi, order #18417. can i send them back?", ["hi", "order #18417", "can i send them back"]),
    ("我要退货 订单10234 耳机有杂音", ["我要退货", "订单10234", "耳机有杂音"]),  # spaces end clauses in Chinese
    ("耳机左边没声音，想退货！", ["耳机左边没声音", "想退货"]),
    ("return it please", ["return it please"]),  # spaces do not end clauses in English
    ("zip snapped off after a few weeks - I want to return it", ["zip snapped off after a few weeks",
                                                                 "I want to return it"]),  # a dash between words does
    ("my t-shirt is torn", ["my t-shirt is torn"]),  # a hyphen inside a word does not
    ("拉链坏了——我要退货", ["拉链坏了", "我要退货"]),
    ("?? ,, 😂", []),
])
def test_split_clauses(text: str, clauses: list[str]) -> None:
    assert [c.text for c in split_clauses(text)] == clauses


@pytest.mark.parametrize(("text", "questions"), [
    ("can i pay by card? my order is 12345", [True, False]),
    ("能保修吗 耳机坏了", [True, False]),
    ("保修呢，耳机坏了", [True, False]),
    ("开个玩笑 发顺丰不", [False, True]),  # a final 不 after a verb asks
    ("那这个管不管 屏幕裂了", [True, False]),  # an A-not-A verb asks
    ("有没有发票 公司要报销", [True, False]),
    ("不，我不要了", [False, False]),  # a bare 不 answers; 不 inside a statement is no question
    ("got a new phone, does it fit the case", [False, True]),  # an English question opening, no mark
    ("wait is sending it back free or do i have to pay", [True]),  # after the word customers start with
    ("r u a real person or a bot", [True]),
    ("have a nice day", [False]),  # "have" asks only as "have you"
    ("你是真人还是机器人呀", [True]),  # a choice asks
    ("还是没到", [False]),  # 还是 alone is "still"
    ("你们周末上班咩", [True]),
    ("同一个订单扣了两笔款 啥情况", [False, True]),  # a question word asks
    ("那钱啥时候退回来", [True]),
    ("鞋底断了", [False]),
    ("whats the warranty, mine broke", [True, False]),
])
def test_questions_are_marked(text: str, questions: list[bool]) -> None:
    assert [c.question for c in split_clauses(text)] == questions


REQUEST = frozenset({"return_request"})
SMALL_TALK = frozenset({"greet", "thanks", "goodbye"})
OTHERS = frozenset({"order_status", "shipping_question"})


def read(text: str, intent: str, confident: bool = True, has_value: bool = False, question: bool = False) -> Reading:
    return Reading(Clause(text, question), intent, confident, has_value)


@pytest.mark.parametrize(("readings", "expected"), [
    ([read("i want to return it", "return_request"), read("the strap broke", "out_of_scope", False)], "the strap broke"),
    ([read("hi", "greet"), read("order 18417", "inform", has_value=True),
      read("not what i expected", "complaint"), read("can i send them back", "return_request", question=True)],
     "not what i expected"),  # a complaint in a request is its detail
    ([read("我要退货", "return_request"), read("鞋底断了", "goodbye")], "鞋底断了"),  # a misread fragment: not short talk
    ([read("退货", "return_request"), read("耳机有杂音", "shipping_question"), read("鞋子也太小了", "inform", False)],
     "耳机有杂音，鞋子也太小了"),  # not a question: a detail, whatever the NLU filed it under
    ([read("return 12345", "return_request", has_value=True), read("do you ship to canada", "shipping_question",
                                                                     question=True)], None),  # a question aside
    ([read("hello there", "greet"), read("i want to return it", "return_request")], None),  # short small talk
    ([read("the strap broke", "out_of_scope", False), read("order 12345", "inform", has_value=True)], None),  # no request
    ([read("收到了", "inform"), read("但是我想退掉", "return_request")], None),  # too short to be a reason
    ([read("return it", "return_request")], None),  # one clause
    ([read("return it", "return_request")] + [read(f"detail {i}", "inform") for i in range(MAX_CLAUSES)], None),
])
def test_detail(readings: list[Reading], expected: str | None) -> None:
    assert detail(readings, REQUEST, SMALL_TALK, OTHERS) == expected
