"""Knowledge-base retrieval with the bundled MiniLM and Chinese word vectors (real models, CPU; loaded once)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from dialogue.errors import KnowledgeError
from dialogue.knowledge import Encoders, KnowledgeBase, LexicalIndex, MiniLMEncoder, _keys, lexical_units
from tests.conftest import ROOT, SCENARIOS

pytestmark = pytest.mark.slow

KB = Path(__file__).parent / "data" / "kb.yml"
THRESHOLD = 0.5  # the demo bot's default KEFU_KB_THRESHOLD

# Paraphrases: none of these is a question of the fixture (the measurement set of dialogue/knowledge.py).
EN = [
    ("how many days until my package gets here", "shipping_times"),
    ("what's the delivery time for a normal order", "shipping_times"),
    ("do I have to pay for delivery", "shipping_cost"),
    ("what does postage cost", "shipping_cost"),
    ("can you send my order to Canada", "international"),
    ("do you deliver outside the country", "international"),
    ("I'd like to send back a product, is that possible", "return_policy"),
    ("how long is the return window", "return_policy"),
    ("I'm still waiting for my money back", "refund_time"),
    ("how soon is the refund processed", "refund_time"),
    ("is Alipay accepted", "payment_methods"),
    ("what ways can I pay", "payment_methods"),
    ("my headphones broke, are they covered by guarantee", "warranty"),
    ("how long is the warranty period", "warranty"),
    ("I need to ship the order to a different address", "change_address"),
    ("I made a typo in my street address", "change_address"),
    ("please cancel the order I placed", "cancel_order"),
    ("I changed my mind, can I cancel before it ships", "cancel_order"),
    ("when can I reach your support team", "store_hours"),
    ("is customer support open on sunday", "store_hours"),
]
ZH = [
    ("我的包裹几天能送到", "shipping_times_zh"),
    ("需要付运费吗", "shipping_cost_zh"),
    ("买多少钱可以免运费", "shipping_cost_zh"),
    ("国外可以收到货吗", "international_zh"),
    ("退货期限是几天", "return_policy_zh"),
    ("钱什么时候退回来", "refund_time_zh"),
    ("退款一直没到账", "refund_time_zh"),
    ("可以微信支付吗", "payment_methods_zh"),
    ("付款能用什么方式", "payment_methods_zh"),
    ("耳机坏了在保修范围内吗", "warranty_zh"),
    ("质保是几年", "warranty_zh"),
    ("我想换个收货地址", "change_address_zh"),
    ("收货地址写错了", "change_address_zh"),
    ("帮我把订单取消了", "cancel_order_zh"),
    ("还没发货的订单可以撤销吗", "cancel_order_zh"),
    ("客服什么时候在线", "store_hours_zh"),
    ("星期天有人工客服吗", "store_hours_zh"),
]
# Close calls the blend still gets wrong (documented in dialogue/knowledge.py); counted in the accuracy test. The word
# vectors lost the first (shipping times, whose questions say 发货 and 送到, at 0.56 against 0.53), and won on the
# customers' colloquial questions (test_customers_chinese_questions_reach_their_entry).
ZH_HARD = [("能发货到美国吗", "international_zh"), ("下单后多长时间发货", "shipping_times_zh"),
           ("东西不想要了能退吗", "return_policy_zh")]
OFF_TOPIC = {
    "en": [
        "what's the weather like today",
        "tell me a joke",
        "who won the football game",
        "I love pizza",
        "what is the capital of France",
        "my cat is sleeping",
        "recommend a good movie",
        "how old are you",
    ],
    "zh": [
        "今天天气怎么样",
        "给我讲个笑话",
        "昨晚的球赛谁赢了",
        "我喜欢吃火锅",
        "法国的首都是哪里",
        "我家的猫在睡觉",
        "推荐一部好看的电影",
        "你今年几岁",
    ],
}


@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    return MiniLMEncoder()


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeBase:
    """With the encoders a bot gets: MiniLM, and the word vectors for Chinese."""
    return KnowledgeBase.load(KB, tmp_path_factory.mktemp("kb-cache"))


def scenario_questions(kb: KnowledgeBase, language: str) -> tuple[list[tuple[str, str]], list[str]]:
    """The customers' knowledge questions of the shop's unscripted and held-out conversations, each with the entry
    whose answer alone matches the turn's reply pattern, and the messages that expect the fallback (off topic)."""
    right: list[tuple[str, str]] = []
    off: list[str] = []
    for path in sorted(p for name in ("unscripted", "heldout", "heldout2") for p in (SCENARIOS / name).glob("*.yml")):
        scenario = yaml.safe_load(path.read_text(encoding="utf-8"))
        if scenario.get("language") != language:
            continue
        for turn in scenario["turns"]:
            if turn.get("action") == "action_answer_kb" and turn.get("reply"):
                ids = [e.id for e in kb.entries if e.language == language and re.search(turn["reply"], e.answer)]
                if len(ids) == 1:
                    right.append((turn["user"], ids[0]))
            elif turn.get("action") == "utter_fallback":
                off.append(turn["user"])
    return right, off


@pytest.fixture(scope="module")
def shop_kb(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeBase:
    return KnowledgeBase.load(ROOT / "examples" / "shop" / "data" / "kb.yml", tmp_path_factory.mktemp("shop-kb"))


@pytest.mark.parametrize(("query", "expected"), EN, ids=[e for _, e in EN])
def test_english_paraphrase_retrieves_right_entry(kb: KnowledgeBase, query: str, expected: str) -> None:
    hits = kb.search(query, "en")
    assert hits[0].entry_id == expected, hits
    assert hits[0].language == "en" and hits[0].answer == next(e.answer for e in kb.entries if e.id == expected)


@pytest.mark.parametrize(("query", "expected"), ZH, ids=[e for _, e in ZH])
def test_chinese_paraphrase_retrieves_right_entry(kb: KnowledgeBase, query: str, expected: str) -> None:
    hits = kb.search(query, "zh")
    assert hits[0].entry_id == expected, hits
    assert hits[0].language == "zh"


@pytest.mark.parametrize("language", ["en", "zh"])
def test_accuracy_and_threshold_separate_on_and_off_topic(kb: KnowledgeBase, language: str) -> None:
    """With the shipped weights, 0.5 accepts >= 85% of right answers and rejects every off-topic question. (The
    fixture's formal Chinese paraphrases get 17 of 20 with the word vectors, 18 with MiniLM's cosine; the customers'
    colloquial questions below gain far more.)"""
    queries = EN if language == "en" else ZH + ZH_HARD
    top = [(kb.search(q, language, k=1)[0], gold) for q, gold in queries]
    correct = [hit for hit, gold in top if hit.entry_id == gold]
    assert len(correct) >= 0.85 * len(queries)
    assert sum(hit.score >= THRESHOLD for hit in correct) >= 0.85 * len(correct)
    off = [kb.search(q, language, k=1)[0].score for q in OFF_TOPIC[language]]
    assert max(off) < THRESHOLD, off


def test_customers_chinese_questions_reach_their_entry(shop_kb: KnowledgeBase) -> None:
    """The customers' own Chinese wording (89 questions of the shop's unscripted and held-out conversations): the
    right entry first for 9 in 10 and above the threshold, off-topic messages below it (all but "能帮我写个请假条吗",
    a note for leave, which the double-charge entry's 扣款截图 draws to 0.52; 0.46 since the common directions are
    removed)."""
    right, off = scenario_questions(shop_kb, "zh")
    assert len(right) >= 80
    top = [(shop_kb.search(q, "zh", k=1)[0], gold) for q, gold in right]
    assert sum(hit.entry_id == gold for hit, gold in top) >= 0.9 * len(right)
    assert sum(hit.entry_id == gold and hit.score >= THRESHOLD for hit, gold in top) >= 0.85 * len(right)
    assert len(off) >= 8 and sum(shop_kb.search(q, "zh", k=1)[0].score >= THRESHOLD for q in off) <= 1


@pytest.mark.parametrize(("weight", "parts"), [(1.0, "word vectors alone"), (0.0, "character overlap alone")])
def test_chinese_blend_beats_each_part_alone(shop_kb: KnowledgeBase, weight: float, parts: str) -> None:
    """Why both: the word vectors know 给钱 is 付款 but are noisy one word at a time; the overlap finds shared
    characters but scores paraphrases low. Counted: right entries first and above the threshold."""
    right, _ = scenario_questions(shop_kb, "zh")

    def confident(w: float | None) -> int:
        count = 0
        for query, gold in right:
            best, score = max(shop_kb._scores(query, "zh", w), key=lambda p: p[1])
            count += shop_kb.entries[best].id == gold and score >= THRESHOLD
        return count

    assert confident(None) >= confident(weight) + 5, parts  # 80 against 73 (vectors) with the common directions out


class _WithoutCommonDirections:
    """The word vectors as they were scored before their common directions were removed (same vectors, no
    ``common_directions``)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.dim = inner, inner.name + " (all directions)", inner.dim

    def encode(self, texts: Any) -> Any:
        return self.inner.encode(texts)


def test_removing_the_common_directions_takes_the_hub_out(shop_kb: KnowledgeBase) -> None:
    """Without the directions every SIF mean shares, the double-charge entry drew questions about other things."""
    encoders = shop_kb._encoders
    plain = KnowledgeBase(shop_kb.entries, shop_kb.vectors, shop_kb._row_entries,
                          Encoders(encoders.default, {"zh": _WithoutCommonDirections(encoders.of("zh"))}))
    right, _ = scenario_questions(shop_kb, "zh")

    def first(kb: KnowledgeBase) -> int:
        return sum(kb.search(q, "zh", k=1)[0].entry_id == gold for q, gold in right)

    assert first(shop_kb) >= first(plain)
    question = "行吧 那你们有iphone16的壳没 重新买一个"
    assert plain.search(question, "zh", k=1)[0].entry_id == "double_charge_zh"
    assert shop_kb.search(question, "zh", k=1)[0].entry_id == "phone_case_compatibility_zh"
    assert shop_kb.search("是否保修", "zh", k=1)[0].entry_id == "warranty_zh"


def test_traditional_chinese_reaches_the_simplified_entries(shop_kb: KnowledgeBase) -> None:
    """A customer in Hong Kong or Taiwan: 關稅是誰付呢 went to the double-charge entry before it was read as 关税是谁付呢."""
    for traditional, plain in [("關稅是誰付呢", "关税是谁付呢"), ("我的筆電是14寸的，放你們的電腦包會不會太鬆", "我的笔电是14寸的，放你们的电脑包会不会太松")]:
        assert shop_kb.search(traditional, "zh", k=1) == shop_kb.search(plain, "zh", k=1)
    assert shop_kb.search("關稅是誰付呢", "zh", k=1)[0].entry_id == "international_shipping_zh"
    assert lexical_units("關稅") == {"关", "税"}


def test_an_english_typo_of_an_entrys_word_is_read_as_that_word(shop_kb: KnowledgeBase) -> None:
    """MiniLM reads "waranty" as unrelated pieces (0.41 for the warranty entry); corrected, the question reaches it."""
    typo, right = (shop_kb.search(q, "en", k=1)[0] for q in ("so is it covered by the waranty or what",
                                                             "so is it covered by the warranty or what"))
    assert typo == right and typo.entry_id == "warranty" and typo.score >= 0.7
    assert shop_kb.nearest("so is it covered by the waranty or what", "en") == {}  # no examples: nothing to compare
    assert shop_kb.search("是否保修", "zh", k=1)[0].entry_id == "warranty_zh"  # Chinese is not spelled


def test_search_is_restricted_to_the_query_language(kb: KnowledgeBase) -> None:
    hits = kb.search("退款要多久", "en", k=20)
    assert hits and all(h.language == "en" for h in hits)
    assert {h.entry_id for h in hits} == {e.id for e in kb.entries if e.language == "en"}
    zh_hits = kb.search("How long do refunds take?", "zh", k=5)
    assert len(zh_hits) == 5 and all(h.entry_id.endswith("_zh") for h in zh_hits)
    assert kb.search("How long do refunds take?", "fr") == []
    assert kb.search("   ", "en") == []
    assert kb.search("refund", "en", k=0) == []
    scores = [h.score for h in kb.search("refund", "en", k=10)]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
    assert set(kb.languages) == {"en", "zh"}


def test_cache_is_reused_and_rebuilt_when_the_kb_changes(encoder: MiniLMEncoder, tmp_path: Path) -> None:
    kb_file = tmp_path / "kb.yml"
    shutil.copy(KB, kb_file)
    cache = tmp_path / "cache"
    before = encoder.texts_encoded
    first = KnowledgeBase.load(kb_file, cache, encoder=encoder)
    n_questions = sum(len(_keys(e)) for e in first.entries)  # the questions, and an English answer's sentences
    assert not first.cache_hit and encoder.texts_encoded - before == n_questions
    meta = json.loads((cache / "kb.json").read_text(encoding="utf-8"))
    assert meta["content_hash"] == first.content_hash and len(meta["ids"]) == n_questions
    assert (cache / "kb.safetensors").is_file()

    # Second load, fresh encoder: the cache is used, the model is not even loaded.
    fresh = MiniLMEncoder()
    second = KnowledgeBase.load(kb_file, cache, encoder=fresh)
    assert second.cache_hit and fresh.texts_encoded == 0 and not fresh.loaded
    assert second.content_hash == first.content_hash
    assert (second._vectors == first._vectors).all()

    # Editing an entry changes the hash and re-encodes.
    kb_file.write_text(kb_file.read_text(encoding="utf-8").replace("within 30 days", "within 60 days"), "utf-8")
    before = encoder.texts_encoded
    third = KnowledgeBase.load(kb_file, cache, encoder=encoder)
    assert not third.cache_hit and third.content_hash != first.content_hash
    assert encoder.texts_encoded - before == n_questions
    assert json.loads((cache / "kb.json").read_text(encoding="utf-8"))["content_hash"] == third.content_hash

    # A corrupt cache is rebuilt, not fatal.
    (cache / "kb.safetensors").write_bytes(b"not a safetensors file")
    fourth = KnowledgeBase.load(kb_file, cache, encoder=encoder)
    assert not fourth.cache_hit and fourth.search("can I return it after 50 days", "en")[0].entry_id == "return_policy"
    assert KnowledgeBase.load(kb_file, cache, encoder=MiniLMEncoder()).cache_hit


def test_no_cache_dir_encodes_in_memory(encoder: MiniLMEncoder, tmp_path: Path) -> None:
    small = tmp_path / "small.yml"
    small.write_text(
        "entries:\n"
        '  - {id: a, language: en, questions: ["Where is your shop?"], answer: "Main Street 1."}\n'
        '  - {id: b, language: zh, questions: ["你们的店在哪里？"], answer: "在人民路1号。"}\n',
        encoding="utf-8",
    )
    kb = KnowledgeBase.load(small, None, encoder=encoder)
    assert kb.cache_files is None and not kb.cache_hit and not list(tmp_path.glob("*.safetensors"))
    assert kb.search("shop location", "en")[0].entry_id == "a"
    assert kb.search("店在哪", "zh")[0].entry_id == "b"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("entries: []\n", "no entries"),
        ("foo: 1\n", "entries"),
        ("entries:\n  - {id: a, language: en, questions: [], answer: x}\n", "questions"),
        ("entries:\n  - {id: a, language: en, questions: [q], answer: ''}\n", "answer"),
        ("entries:\n  - {id: a, questions: [q], answer: x}\n", "language"),
        (
            (
                "entries:\n  - {id: a, language: en, questions: [q], answer: x}\n"
                "  - {id: a, language: en, questions: [r], answer: y}\n"
            ),
            "duplicate",
        ),
        ("entries: [\n", "cannot read"),
    ],
)
def test_malformed_kb_raises_knowledge_error(tmp_path: Path, text: str, message: str) -> None:
    bad = tmp_path / "kb.yml"
    bad.write_text(text, encoding="utf-8")
    encoder = MiniLMEncoder()
    with pytest.raises(KnowledgeError, match=message):
        KnowledgeBase.load(bad, tmp_path, encoder=encoder)
    assert not encoder.loaded


def test_missing_kb_file(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeError, match="not found") as info:
        KnowledgeBase.load(tmp_path / "nope.yml", None, encoder=MiniLMEncoder())
    assert info.value.path is not None and info.value.path.endswith("nope.yml")


def test_lexical_index_weights_rare_characters() -> None:
    index = LexicalIndex({0: "退款要多久 退款到账", 1: "运费多少钱 包邮吗", 2: "可以退货吗 退货政策"})
    scores = index.scores("退款多久到账？")
    assert max(scores, key=lambda key: scores[key]) == 0 and scores[0] > 0.8
    assert index.scores("，。！") == {0: 0.0, 1: 0.0, 2: 0.0}
    assert index.idf("吗") < index.idf("邮")  # in two documents vs one


@pytest.mark.parametrize(("message", "question", "language"), [
    ("哈哈刚才开玩笑的 运费要多少钱吗", "运费要多少钱吗", "zh"),
    ("我朋友推荐来的 支持支付宝吗", "支持支付宝吗", "zh"),
    ("我昨天问过了 可以改地址吗", "可以改地址吗", "zh"),
])
def test_a_question_inside_a_longer_message_is_found(kb: KnowledgeBase, message: str, question: str,
                                                     language: str) -> None:
    from dialogue.knowledge import CLAUSE_MIN, queries

    assert queries(message) == [message, question]
    whole = max(score for _, score in kb._scores(message, language))  # the other clause's words count against it
    hit = kb.search(message, language, k=1)[0]
    assert hit == kb.search(question, language, k=1)[0]  # the question clause's entry and score
    assert hit.score >= CLAUSE_MIN and hit.score > whole
    assert queries("运费要多少钱") == ["运费要多少钱"] and queries("刚下单 地址写错了") == ["刚下单 地址写错了"]  # no question


@pytest.mark.parametrize("message", [
    "bought a gift for my mum, do you ship to canada?",  # the clause alone scores 0.71: below CLAUSE_MIN
    # the whole message reaches CLAUSE_MIN (0.84) itself: its clauses are not asked (the question alone: 0.97)
    "long time customer here, first time writing in, how long does shipping take?",
])
def test_a_question_clause_counts_only_where_the_message_found_nothing(kb: KnowledgeBase, message: str) -> None:
    whole = max(kb._scores(message, "en"), key=lambda pair: pair[1])
    assert kb.search(message, "en", k=1)[0].score == pytest.approx(whole[1], abs=1e-6)


def test_an_english_answer_is_read_sentence_by_sentence(encoder: MiniLMEncoder, tmp_path: Path) -> None:
    """A question none of an entry's questions asks, which one sentence of its answer answers."""
    small = tmp_path / "kb.yml"
    small.write_text(
        "entries:\n"
        '  - {id: pay, language: en, questions: ["Which payment methods do you accept?"],\n'
        '     answer: "We accept Visa, Mastercard and PayPal. Cash on delivery is not available."}\n'
        '  - {id: ship, language: en, questions: ["How long does shipping take?"], answer: "3-5 business days."}\n'
        '  - {id: parcel, language: en, questions: ["Where is my parcel?"], answer: "Track it under My Orders."}\n',
        encoding="utf-8",
    )
    kb = KnowledgeBase.load(small, None, encoder=encoder)
    assert _keys(kb.entries[0]) == (
        "Which payment methods do you accept?", "We accept Visa, Mastercard and PayPal.",
        "Cash on delivery is not available.")
    hit = kb.search("can i pay in cash when the parcel arrives?", "en", k=1)[0]
    assert hit.entry_id == "pay" and hit.score >= THRESHOLD, hit


class _Fixed:
    """A fake encoder: every text is the same vector (its width ``dim``)."""

    def __init__(self, name: str, vector: list[float]) -> None:
        self.name, self.dim, self.vector = name, len(vector), vector

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.tensor([self.vector] * len(texts), dtype=torch.float32).reshape(len(texts), self.dim)


def test_encoders_give_each_language_its_own_block() -> None:
    english, chinese = _Fixed("en-enc", [0.5, 0.5]), _Fixed("zh-enc", [0.0, 0.0, 1.0])
    both = Encoders(english, {"zh": chinese})
    rows = both.encode(["hello", "你好", "bonjour"], ["en", "zh", "fr"])
    assert rows.tolist() == [[0.5, 0.5, 0, 0, 0], [0, 0, 0, 0, 1.0], [0.5, 0.5, 0, 0, 0]]  # fr: the default's block
    assert float(rows[0] @ rows[2]) == 0.5 and float(rows[0] @ rows[1]) == 0.0
    assert both.of("zh") is chinese and both.of("en") is english and "zh: zh-enc" in both.name
    alone = Encoders(english)
    assert alone.encode(["a", "b"], ["en", "zh"]).tolist() == [[0.5, 0.5], [0.5, 0.5]]  # one encoder: no blocks
    assert both.encode([], []).shape == (0, 5)


def test_warm_loads_the_encoders_before_any_question(tmp_path: Path) -> None:
    KnowledgeBase.load(KB, tmp_path, encoder=MiniLMEncoder())  # writes the cache
    fresh = MiniLMEncoder()
    kb = KnowledgeBase.load(KB, tmp_path, encoder=fresh)
    assert kb.cache_hit and not fresh.loaded
    kb.warm()
    assert fresh.loaded and fresh.texts_encoded == len(kb.languages)
