"""Input and output filters.

:class:`InputFilter` normalises a user message, redacts PII, flags banned terms and prompt-injection
attempts, and blocks over-long messages. :class:`OutputFilter` scores a bot reply for toxicity.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safety.errors import InputTooLongError
from safety.normalize import Skeleton, normalize, skeleton, with_original_punctuation
from safety.pii import KINDS as PII_KINDS
from safety.pii import PiiSpan, apply_redactions, find_pii
from safety.types import InputVerdict, OutputVerdict

if TYPE_CHECKING:
    from safety.injection import InjectionDetector
    from safety.toxicity import ToxicityClassifier, ToxicityRouter

FLAG_PII = "pii"
FLAG_BANNED = "banned_term"
FLAG_INJECTION = "prompt_injection"
FLAG_TOO_LONG = "too_long"
BANNED_PLACEHOLDER = "[BANNED]"

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")

# --- prompt injection -------------------------------------------------------------------------------------
_EN_INJECTION = [
    # ignore / disregard / forget (all) previous|prior|above instructions
    (
        r"\b(?:ignore|disregard|forget|override|bypass|skip)\s+(?:(?:all|any|every|the|of|your|these|those)\s+)*"
        r"(?:previous|prior|above|earlier|preceding|foregoing|original|initial|system)\s+"
        r"(?:instructions?|prompts?|rules|directions|directives|guidelines|commands|context|programming)\b"
    ),
    # disregard your rules / ignore your instructions / forget your guidelines
    (
        r"\b(?:ignore|disregard|forget|override|bypass|break)\s+(?:all\s+)?(?:of\s+)?your\s+"
        r"(?:rules|instructions|guidelines|programming|restrictions|policies|guardrails|safety|filters|training)\b"
    ),
    # you are now DAN / in developer mode / unrestricted
    (
        r"\byou\s+are\s+now\s+(?:an?\s+)?(?:dan\b|in\s+(?:developer|god|jailbreak|dan)\s+mode|unrestricted|unfiltered"
        r"|jailbroken|free\s+(?:of|from)\s+(?:all\s+)?(?:rules|restrictions))"
    ),
    r"\bdo\s+anything\s+now\b",
    r"\b(?:developer|god|jailbreak|dan)\s+mode\b",
    r"\bjailbreak",
    # pretend you are / act as an unrestricted ...
    r"\bpretend\s+(?:that\s+)?(?:you\s+are|you're|to\s+be)\b",
    r"\bact\s+as\s+(?:if\s+you\s+(?:are|were)\s+)?(?:an?\s+)?(?:unrestricted|unfiltered|uncensored|jailbroken|evil|dan)\b",
    # reveal / show / print your system prompt (or hidden instructions)
    (
        r"\b(?:reveal|show|print|display|repeat|output|tell|give|leak|dump|share|what\s+(?:is|are|was|were))\s+"
        r"(?:me\s+|us\s+)?(?:all\s+)?(?:(?:your|the)\s+(?:(?:full|exact|entire|complete)\s+)?"
        r"(?:system|hidden|secret|internal|initial|original)\s+(?:prompt|instructions|message|rules)"
        r"|your\s+(?:(?:full|exact|entire|complete)\s+)?(?:prompt|instructions))\b"
    ),
    r"\bsystem\s*prompt\b",
    # chat-template role tokens smuggled in the message
    r"<\|?(?:im_start|im_end|system|endoftext)\|?>|\[/?inst\]|<<sys>>",
    r"(?:^|\s)(?:###\s*)?(?:new|updated)\s+(?:system\s+)?instructions\s*:",
    # role-play jailbreaks: pretend you have no rules / roleplay as an evil AI / an AI with no restrictions
    (
        r"\b(?:pretend|imagine|suppose|assume)\b.{0,40}?\b(?:you\s+(?:have|had)\s+no|without\s+(?:any\s+)?)"
        r"(?:rules|restrictions|limits|limitations|guidelines|filters|boundaries|ethics|morals)\b"
    ),
    (
        r"\b(?:role-?\s?play|act|behave|respond|answer)\s+(?:as|like)\s+(?:an?\s+|the\s+)?"
        r"(?:evil|unrestricted|unfiltered|uncensored|jailbroken|malicious|rogue|amoral|unethical|dan)\b"
    ),
    (
        r"\b(?:ai|assistant|bot|chatbot|model|you)\b.{0,30}?\b(?:that\s+has|which\s+has|with|have|has)\s+no\s+"
        r"(?:rules|restrictions|guidelines|filters|limits|limitations|boundaries|ethics|censorship)\b"
    ),
    # "repeat the text above", "print everything above this line"
    (
        r"\b(?:repeat|print|output|show|display|copy|echo)\s+(?:back\s+)?(?:all\s+)?(?:of\s+)?(?:the\s+)?"
        r"(?:text|words|everything|messages?|content|lines)\s+(?:above|before|preceding)"
    ),
    r"\b(?:system|admin(?:istrator)?|developer|root)\s+override\b|\bsudo\s+mode\b",
    (
        r"\byou\s+are\s+no\s+longer\s+(?:an?\s+|the\s+|my\s+)?(?:\w+\s+){0,2}"
        r"(?:bot|assistant|ai|agent|chatbot|model)\b|\byou\s+are\s+no\s+longer\s+bound\b"
    ),
    r"\bstop\s+being\s+(?:an?\s+|the\s+|my\s+)?(?:\w+\s+){0,2}(?:bot|assistant|ai|agent|chatbot|model)\b",
    (r"\b(?:your|the)\s+new\s+(?:instructions|rules|task|role|directives?|programming)\s+(?:are|is)\b"),
]
# Structural rules (verb + target with only filler words between), written to generalise beyond fixed phrases.
_FILL_EN = r"(?:(?:all|any|of|the|your|these|those|my|every|previous|prior|above|earlier|original|initial|system|safety|content|current|existing|other)\s+){0,4}"
_TARGET_EN = (
    r"(?:instructions?|prompts?|rules|guidelines|directives?|programming|restrictions|filters?|guardrails"
    r"|(?:content\s+|safety\s+)?polic(?:y|ies)|(?:safety\s+)?settings|constraints|commands)"
)
_EN_STRUCTURAL = [
    # override verb + (filler) + target: "disregard all of the above rules", "override your safety settings"
    rf"\b(?:ignore|disregard|forget|override|bypass|circumvent|cancel|discard|abandon|drop|suspend)\s+{_FILL_EN}{_TARGET_EN}\b",
    # "forget everything above", "disregard everything you were told"
    (
        r"\b(?:ignore|disregard|forget|override|discard)\s+(?:all\s+|everything\s+|anything\s+|what\s+)"
        r"(?:(?:that\s+)?(?:above|before|prior|previously|earlier)|(?:that\s+)?you\s+(?:were|have\s+been|'ve\s+been|got)\s+"
        r"(?:told|given|instructed|programmed))"
    ),
    # "disable your filters", "turn off your safety"
    (
        r"\b(?:disable|deactivate|turn\s+off|switch\s+off|remove|lift|drop)\s+(?:all\s+)?(?:of\s+)?(?:your|the\s+(?:ai|bot|chatbot|assistant)'?s?)\s+"
        r"(?:\w+\s+)?(?:filters?|safety|restrictions|guardrails|rules|guidelines|content\s+polic(?:y|ies)|censorship|limits)\b"
    ),
    # "your previous instructions are cancelled"
    (
        r"\byour\s+(?:\w+\s+)?(?:instructions|rules|guidelines|programming|directives)\s+(?:are|have\s+been|were)\s+"
        r"(?:cancel+ed|void|revoked|overridden|replaced|no\s+longer\s+valid|lifted|suspended|removed)"
    ),
    # exfiltration: verb + your/the (qualifier) prompt / initialization / configuration
    (
        r"\b(?:reveal|show|print|display|output|repeat|tell|give|leak|dump|share|quote|summari[sz]e|translate|paraphrase"
        r"|recite|spell\s+out|write\s+out|send|copy|list)\s+(?:me\s+|us\s+)?(?:all\s+)?(?:of\s+)?(?:your|the)\s+"
        r"(?:(?:\w+)\s+){0,2}(?:prompt|pre-?prompt|initiali[sz]ation(?:\s+text)?|configuration|config|system\s+message)\b"
    ),
    (
        r"\b(?:translate|summari[sz]e|paraphrase|quote|recite|leak|dump|reveal)\s+(?:me\s+)?(?:all\s+)?(?:of\s+)?your\s+"
        r"(?:(?:\w+)\s+){0,2}(?:instructions|rules|guidelines|directives)\b"
    ),
    (
        r"\b(?:show|print|display|output|repeat|tell|give|share|list|send|copy|write)\s+(?:me\s+|us\s+)?(?:all\s+)?(?:of\s+)?"
        r"(?:your|the)\s+(?:system|hidden|secret|internal|initial|original|first|starting|underlying|real|full|exact|entire|complete)"
        r"\s+(?:\w+\s+)?(?:instructions|rules|guidelines|directives|message)\b"
    ),
    r"\b(?:the\s+)?(?:exact\s+|full\s+|original\s+)?prompt\s+(?:that\s+)?you\s+(?:were|have\s+been|got)\s+(?:given|fed|sent)\b",
    (
        r"\bwhat\s+(?:instructions|rules|prompts?|guidelines|directives)\s+(?:did|were|have|has)\s+"
        r"(?:you|your\s+(?:creators?|developers?|makers?|programmers?|owners?|company))\b"
    ),
    # persona / mode switches
    (
        r"\b(?:respond|answer|reply|talk|speak|act|behave|operate|continue|write)\s+(?:\w+\s+){0,3}without\s+(?:any\s+)?"
        r"(?:of\s+)?(?:your\s+)?(?:content\s+|safety\s+)?(?:filters?|restrictions|rules|guidelines|censorship|safety|limits|guardrails)\b"
    ),
    (
        r"\b(?:unrestricted|unfiltered|uncensored|jailbroken|amoral)\s+(?:ai|assistant|bot|chatbot|model|version|persona|one|mode"
        r"|gpt|character|self)\b"
    ),
    (
        r"\byou\s+(?:had|have|were|are|got)\s+(?:no|without)\s+(?:any\s+)?(?:rules|guidelines|restrictions|filters|limits"
        r"|limitations|ethics|morals|boundaries|programming|content\s+polic(?:y|ies))\b"
    ),
    (
        r"\b(?:with|has|have|had|having)\s+no\s+(?:\w+\s+)?(?:ethics|morals|moral\s+compass|filters|guardrails|guidelines"
        r"|boundaries|content\s+polic(?:y|ies)|censorship|safety\s+rules)\b"
    ),
    r"\b(?:act|pretend|roleplay|role-play|play)\b.{0,25}\b(?:grandma|grandmother|granny)\b.{0,60}\b(?:passwords?|keys?|codes?|secrets?|prompt)",
    r"(?:^|[\s.!?])new\s+(?:rule|instruction|directive|policy|task|role|persona)s?\s*[:：]",
    r"\bi\s*(?:am|'m)\s+(?:your|the\s+bot'?s?)\s+(?:developer|creator|programmer|admin(?:istrator)?|owner|maker|operator)\b",
    r"\b(?:enter|enable|activate|switch\s+to|turn\s+on|go\s+into|unlock)\s+(?:the\s+)?(?:dan|sudo|god|admin|jailbreak|unrestricted|unfiltered|evil)\s+mode\b",
]
_EN_BROAD = [
    # more override verbs and targets (guidance, setup, programming, safety checks, what you were told)
    (
        r"\b(?:set|put|throw|push)\s+(?:aside|away|out)\s+"
        + _FILL_EN
        + r"(?:guidance|instructions|rules|guidelines|programming|directions|setup|training|restrictions|filters)\b"
    ),
    (
        r"\b(?:stop|quit|cease|don'?t|do\s+not|no\s+longer)\s+(?:following|follow|obeying|obey|respecting|respect)\s+"
        + _FILL_EN
        + r"(?:instructions|rules|guidelines|programming|directions|policy|policies|restrictions|training)\b"
    ),
    (
        r"\b(?:guidance|instructions|rules|directions|programming|setup)\s+(?:that\s+)?you\s+(?:received|were\s+given|got|have)"
        r"\s+(?:earlier|before|previously|initially|at\s+the\s+start)"
    ),
    r"\bas\s+if\s+(?:the|your|any)\s+(?:content\s+)?(?:policy|policies|rules|guidelines|restrictions|filters|safety\s+rules)\s+(?:did\s+not|didn'?t|do\s+not|don'?t|never)\s+exist",
    (
        r"\b(?:safety|content|moderation)\s+(?:checks?|filters?|rules|settings|mode|restrictions)\s+(?:are|is|have\s+been|were)\s+"
        r"(?:now\s+)?(?:switched|turned|shut)\s+off|\b(?:safety|content|moderation)\s+(?:checks?|filters?)\s+(?:are|is)\s+(?:now\s+)?(?:disabled|off)\b"
    ),
    r"\b(?:obey|listen\s+to|follow|answer\s+to)\s+only\s+me\b|\bnot\s+your\s+(?:original\s+|initial\s+)?(?:programming|instructions|rules)\b",
    (
        r"\b(?:reveal|reveals|revealing|leak|leaks|expose|exposes|disclose|discloses)\s+(?:its|their|your|the)\s+"
        r"(?:secret|hidden|system|internal|initial|original)\s+(?:instructions|prompt|rules|guidelines|configuration)"
    ),
    r"\b(?:word\s+for\s+word|verbatim)\b.{0,40}\b(?:prompt|instructions|setup|system\s+message)|\b(?:prompt|instructions|setup|system\s+message)\b.{0,40}\b(?:word\s+for\s+word|verbatim)\b",
    r"\beverything\s+(?:before|above)\s+(?:this|that|here)\b.{0,30}\b(?:test|fake|void|ignored?)\b|\byour\s+real\s+(?:task|instructions|job|purpose)\s+(?:is|are)\b",
    r"\bbe\s+(?:my|an?|the)\s+(?:uncensored|unfiltered|unrestricted|jailbroken|amoral)\b",
    r"\bforget\s+(?:that\s+)?you\s+(?:are|were|'re)\s+(?:an?\s+|the\s+)?(?:\w+\s+){0,2}(?:assistant|bot|ai|agent|chatbot|model|service)\b",
    r"\b(?:the\s+|your\s+)(?:message|text|words|prompt|rules)\s+that\s+(?:defines?|controls?|governs?|describes?|sets?)\s+(?:how\s+you|your)\b",
    r"\b(?:hidden|secret)\s+(?:setup|set-up|configuration|prompt|instructions|rules|system\s+text|setup\s+text)\b",
    r"\byour\s+(?:system|internal|initial|original|underlying|hidden)\s+(?:message|prompt|instructions|setup|configuration)\b",
]
_EN_INJECTION += _EN_STRUCTURAL + _EN_BROAD
_ZH_VERB = r"(?:忽略|无视|忘记|忘掉|不要理会|不用理会|别管|跳过|绕过|抛开|丢掉|放弃|撤销|取消)"
_ZH_FILL = r"[你之前以上面先此原来所有全部一切刚才最初系统收到得的被给予设置过了掉]{0,10}"
_ZH_TARGET = r"(?:指令|命令|规则|规定|设定|提示词?|限制|要求|约束|指示|准则|程序)"
_ZH_STRUCTURAL = [
    _ZH_VERB + _ZH_FILL + _ZH_TARGET,
    _ZH_VERB + r"(?:掉)?(?:之前|以上|前面|上面|先前|刚才)(?:的|说的|所有的)?(?:话|内容|一切|所有)",
    r"(?:不用|不必|无需|不需要|不要|别)(?:再)?(?:遵守|遵循|服从|理会)(?:任何|所有|你的)?(?:的)?(?:规定|规则|指令|限制|设定|约束|准则)",
    (
        r"你(?:的)?[^，。？！,.?!]{0,8}?(?:提示词?|系统指令|初始指令|初始设定|系统设定|prompt)[^，。？！,.?!]{0,6}?"
        r"(?:发给我|告诉我|输出|显示|给我看|打印|复述|泄露|原文|全文|是什么)"
    ),
    r"我是你的(?:开发者|创造者|管理员|程序员|主人|设计者)",
    r"(?:关闭|关掉|禁用|解除|取消|去掉)(?:你的)(?:所有)?(?:安全|内容)?(?:过滤|审查|限制|防护|规则|约束)",
    r"(?:假如|如果|假设|假装|想象)你(?:没有|不受|无|不再有|不用遵守)(?:任何)?(?:的)?(?:限制|约束|规则|道德|底线)",
    r"进入(?:调试|维护|开发者|管理员|上帝|越狱|无限制)模式",
    r"(?:显示|输出|告诉我|打印|泄露|发给我)你的(?:配置|设定|系统|指令|提示|规则)",
    r"(?:忘了|忘记|忘掉|别再当|不要再当|不用再当)(?:你)(?:是|的身份)",
    r"(?:关闭|关掉|禁用|解除|取消|退出)你的(?:安全|审查|过滤|内容)|(?:关闭|关掉|禁用|退出|解除)(?:安全|审查|过滤)(?:模式|机制|策略)",
    r"你(?:的|收到的|被设置的)?(?:系统消息|系统信息|底层设定|内部设定|隐藏设定|初始设定|原始设定|预设指令|预设)",
    r"(?:一字不差|原封不动|逐字|原原本本)(?:地)?.{0,8}(?:贴出来|输出|发给我|复述|告诉我|打印)",
    r"(?:不用管|别管|忘掉|无视|抛开|不要管)(?:之前|以前|先前)?(?:给你|你)?的?(?:那些)?(?:条条框框|规矩|框框)",
    r"(?:不要|不用|不必|别)(?:再)?受(?:任何|所有)?(?:的)?(?:规则|限制|约束|规定|道德)",
    r"(?:取消|解除|去掉|移除)(?:了)?(?:你的)?(?:所有|全部|一切)(?:的)?(?:限制|约束|规则|过滤)",
    r"(?:可以|能)说任何(?:话|内容)|什么都(?:可以|能)说|百无禁忌",
]
_ZH_INJECTION = [
    (
        r"(?:忽略|无视|忘记|忘掉|不要理会|不用理会|别管|跳过|绕过)(?:掉)?(?:你)?(?:的)?"
        r"(?:之前|以上|前面|上面|先前|此前|原来|原先|所有|全部|一切)(?:的)?(?:所有|全部|一切)?(?:的)?"
        r"(?:指令|说明|指示|规则|提示|设定|要求|命令|限制)"
    ),
    r"(?:忽略|无视|忘记|忘掉|违反|打破|绕过|不要理会|不用理会|别管|跳过|不要遵守|不用遵守)(?:掉)?(?:你的)(?:所有|全部)?(?:规则|指令|设定|限制|原则)",
    r"扮演.{0,8}?(?:没有|不受|无|解除|摆脱)(?:任何)?(?:的)?(?:限制|约束|规则|审查|道德)",
    r"(?:没有|不受|无|解除了?)(?:任何)?(?:的)?(?:限制|约束|规则|审查)的(?:ai|机器人|助手|模型|人工智能)",
    r"你(?:已经)?不再是(?:一个)?(?:客服|助手|机器人|ai|人工智能)",
    r"(?:新的|更新的)(?:系统)?指令[:：]|系统覆盖|管理员覆盖|解除(?:你的)?(?:所有|全部|一切)限制|解除你的限制",
    r"(?:重复|复述|输出|打印)(?:一遍|一下)?(?:上面|以上|前面)的(?:所有|全部)?(?:内容|话|文字|消息)",
    r"(?:原样|完整)(?:地)?(?:输出|打印|显示)(?:你的)?(?:系统)?(?:设定|提示|指令)|(?:把|将)你的(?:系统)?(?:设定|提示词?|指令).{0,6}(?:输出|发|给我)",
    # "系统提示我支付失败" ("the system tells me ...") is an ordinary complaint: only the prompt itself counts
    r"系统提示词|(?:你的|你被设置的)系统(?:提示|指令|设定)|系统(?:提示|指令|设定)(?:是什么|的内容|原文|全文)|system\s*prompt",
    (
        r"(?:你现在是|从现在开始你是|假装你是|假设你是|假装自己是|扮演一个?(?:没有|不受|无)).{0,12}?"
        r"(?:dan|没有限制|不受限制|无限制|没有任何限制|不受约束|没有规则|越狱)"
    ),
    r"(?:假装|假设)你(?:是|现在是)",
    r"(?:开发者|越狱|上帝)模式",
    (
        r"(?:显示|告诉|输出|泄露|透露|打印|重复|给我看|展示)(?:一下)?(?:我)?(?:你的)(?:初始|原始|内部|隐藏|全部)?"
        r"(?:提示词|指令|设定|规则)"
    ),
]
_ZH_INJECTION += _ZH_STRUCTURAL
_EN_PATTERNS = tuple(re.compile(p, re.IGNORECASE) for p in _EN_INJECTION)
_ZH_PATTERNS = tuple(re.compile(p, re.IGNORECASE) for p in _ZH_INJECTION)
_INJECTION_PATTERNS = _EN_PATTERNS + _ZH_PATTERNS
_HAS_LATIN = re.compile(r"[a-z]", re.IGNORECASE)


_COMPACT_INJECTION = (
    "ignoreallpreviousinstructions", "ignorepreviousinstructions", "ignoreallinstructions",
    "ignoreyourinstructions", "ignoreyourrules", "disregardallpreviousinstructions", "disregardyourrules",
    "forgetyourinstructions", "forgetallpreviousinstructions", "systemprompt", "developermode", "jailbreak",
    "doanythingnow", "revealyourprompt", "revealyourinstructions",
    "忽略之前的指令", "忽略以上指令", "忽略所有指令", "忽略之前的所有指令", "系统提示", "开发者模式", "越狱",
)  # fmt: skip


def _compact_automaton() -> Any:
    import ahocorasick

    auto = ahocorasick.Automaton()
    for phrase in _COMPACT_INJECTION:
        auto.add_word(phrase, phrase)
    auto.make_automaton()
    return auto


_COMPACT: Any = None


def _glued_runs(sk: Skeleton, variant: str) -> list[str]:
    """The runs of ``variant`` that came from spaced-out characters, with nothing but word characters left."""
    runs: list[str] = []
    cur: list[str] = []
    for ch, g in zip(variant, sk.glued, strict=True):
        if g:
            cur.append(ch)
        elif cur:
            runs.append("".join(cur))
            cur = []
    if cur:
        runs.append("".join(cur))
    return [r for r in runs if len(r) >= 6]


def detect_injection_skeleton(normalized_text: str, sk: Skeleton) -> bool:
    """Injection patterns on the normalised text and on every skeleton variant (look-alikes, leetspeak), and
    compact key phrases inside spaced-out runs ("i g n o r e a l l ...")."""
    global _COMPACT
    texts = list(sk.variants)
    if normalized_text.casefold() not in texts:
        texts.append(normalized_text)
    for t in texts:  # each script's patterns only where that script occurs
        if _HAS_LATIN.search(t) and any(p.search(t) for p in _EN_PATTERNS):
            return True
        if _CJK.search(t) and any(p.search(t) for p in _ZH_PATTERNS):
            return True
    runs = [r for v in sk.variants for r in _glued_runs(sk, v)]
    if not runs:
        return False
    if _COMPACT is None:
        _COMPACT = _compact_automaton()
    return any(True for r in runs for _ in _COMPACT.iter(r))


def _pattern_words() -> frozenset[str]:
    words: set[str] = set()
    for p in _EN_INJECTION:
        words.update(w for w in re.findall(r"[a-z]{3,}", p.replace("\\s", " ").replace("\\b", " ")))
    words.update(w for phrase in _COMPACT_INJECTION for w in re.findall(r"[a-z]{3,}", phrase))
    return frozenset(words)


INJECTION_VOCABULARY: frozenset[str] = _pattern_words()


def detect_injection(text: str) -> bool:
    """True when ``text`` looks like a prompt-injection attempt, in English or Chinese (obfuscation included)."""
    norm = normalize(text).text
    return detect_injection_skeleton(norm, skeleton(norm, vocabulary=INJECTION_VOCABULARY))


# --- banned terms ------------------------------------------------------------------------------------------
# The per-language banned terms a bot gets when its bot.yml names none (the evaluation suites use them too).
DEFAULT_BANNED_TERMS: dict[str, list[str]] = {
    "en": [
        "idiot", "moron", "stupid bitch", "bitch", "asshole", "ass", "fuck", "fucking", "fuck you", "shit",
        "bullshit", "dumbass", "retard", "kill yourself", "scumbag", "bastard", "cunt", "motherfucker",
    ],
    "zh": ["傻逼", "傻B", "煞笔", "去死", "白痴", "脑残", "滚蛋", "混蛋", "王八蛋", "贱人", "他妈的", "操你妈", "废物"],
}  # fmt: skip


@dataclass(frozen=True)
class TermMatch:
    """A banned term found in a text: the term as configured, its language list key, and the matched span."""

    term: str
    language: str
    start: int
    end: int

    def __repr__(self) -> str:  # the term is configuration, the matched text is not shown
        return f"TermMatch(language={self.language!r}, start={self.start}, end={self.end})"


class BannedTerms:
    """Banned terms per language, matched with one Aho-Corasick automaton (pyahocorasick) on the skeleton.

    Latin-script terms match on word boundaries ("class" is not "ass"; boundaries inside a spaced-out run such
    as "y o u i d i o t" do not count); terms with CJK characters match as substrings. Terms are normalised and
    skeletonised like the text, so look-alike letters, leetspeak and spacing in the text are defeated.
    """

    def __init__(self, terms: Mapping[str, Sequence[str]] | None = None) -> None:
        import ahocorasick

        self._auto = ahocorasick.Automaton()
        self.count = 0
        self.vocabulary: set[str] = set()
        for language, lst in (terms or {}).items():
            for term in lst:
                if not term or not term.strip():
                    continue
                key = skeleton(normalize(term).text).variants[0]
                if not key.strip():
                    continue
                cjk = bool(_CJK.search(key))
                self.vocabulary.update(w for w in re.findall(r"[a-z]{2,}", key))
                existing = self._auto.get(key, None)
                entries = (existing or ()) + ((term, language, cjk, len(key)),)
                self._auto.add_word(key, entries)
                self.count += 1
        if self.count:
            self._auto.make_automaton()

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"BannedTerms(count={self.count})"

    def find(self, normalized_text: str, sk: Skeleton | None = None) -> list[TermMatch]:
        """Matches in ``normalized_text`` (spans of that text; map them with ``Normalized.original_span``)."""
        if not self.count:
            return []
        if sk is None:
            sk = skeleton(normalized_text)
        found: dict[tuple[int, int], TermMatch] = {}
        for variant in sk.variants:
            n = len(variant)
            for end_idx, entries in self._auto.iter(variant):
                for term, language, cjk, key_len in entries:
                    start = end_idx + 1 - key_len
                    end = end_idx + 1
                    if not cjk and not self._bounded(variant, sk, start, end, n):
                        continue
                    span = sk.norm_span(start, end)
                    found.setdefault(span, TermMatch(term, language, span[0], span[1]))
        # the longest match wins where matches overlap ("a s s h o l e" is "asshole", not "ass")
        chosen: list[TermMatch] = []
        for m in sorted(found.values(), key=lambda m: (m.start - m.end, m.start)):
            if all(m.end <= c.start or m.start >= c.end for c in chosen):
                chosen.append(m)
        return sorted(chosen, key=lambda m: m.start)

    @staticmethod
    def _bounded(variant: str, sk: Skeleton, start: int, end: int, n: int) -> bool:
        if start > 0 and _latin_word(variant[start - 1]) and not (sk.glued[start] and sk.glued[start - 1]):
            return False
        return not (end < n and _latin_word(variant[end]) and not (sk.glued[end - 1] and sk.glued[end]))


def _latin_word(ch: str) -> bool:
    return ("a" <= ch <= "z") or ("0" <= ch <= "9") or ("\u00e0" <= ch <= "\u024f")


class InputFilter:
    """Filters a user message before it reaches NLU, generation, storage or logs.

    ``banned_terms`` maps a language code to its list of terms; every list is checked whatever the message
    language. Messages longer than ``max_chars`` (after normalisation) are blocked with the flag ``too_long``
    (or raise :class:`~safety.errors.InputTooLongError` when ``raise_on_too_long``). Banned terms and prompt
    injection are flagged and block only when ``block_banned`` / ``block_injection`` are set. ``keep_pii``
    names PII kinds that are left in the text (e.g. ``{"email"}``); ``mask_banned`` replaces banned terms by
    ``[BANNED]`` (kind ``banned_term``) like a redaction. All spans refer to the original text.
    ``injection_model`` (a trained :class:`~safety.injection.InjectionDetector`) flags what the rules miss: a
    message is an injection when a rule matches or the model's score reaches its threshold.
    """

    def __init__(
        self,
        banned_terms: Mapping[str, Sequence[str]] | None = None,
        max_chars: int = 2000,
        *,
        block_banned: bool = False,
        block_injection: bool = False,
        raise_on_too_long: bool = False,
        keep_pii: Sequence[str] = (),
        mask_banned: bool = False,
        injection_model: InjectionDetector | None = None,
    ) -> None:
        if max_chars <= 0:
            raise ValueError("max_chars must be positive")
        unknown = set(keep_pii) - set(PII_KINDS)
        if unknown:
            raise ValueError(f"unknown PII kinds in keep_pii: {sorted(unknown)}; known: {list(PII_KINDS)}")
        self.max_chars = max_chars
        self.block_banned = block_banned
        self.block_injection = block_injection
        self.raise_on_too_long = raise_on_too_long
        self.keep_pii = frozenset(keep_pii)
        self.mask_banned = mask_banned
        self.banned = BannedTerms(banned_terms)
        self.injection_model = injection_model
        self._vocabulary = frozenset(self.banned.vocabulary | INJECTION_VOCABULARY)

    def __repr__(self) -> str:
        model = "" if self.injection_model is None else ", injection_model=yes"
        return f"InputFilter(banned_terms={len(self.banned)}, max_chars={self.max_chars}{model})"

    def has_banned_term(self, normalized_text: str) -> bool:
        return bool(self.banned.find(normalized_text))

    def _too_long(self, length: int) -> InputVerdict:
        if self.raise_on_too_long:
            raise InputTooLongError(length, self.max_chars)
        return InputVerdict(text="", redactions=(), flags=(FLAG_TOO_LONG,), blocked=True)

    def check(self, text: str) -> InputVerdict:
        """Normalise, redact PII, flag banned terms and prompt injection; block over-long input."""
        # Cheap guard before normalising: invisible padding cannot make a text more than 4x shorter in practice.
        if len(text) > 4 * self.max_chars:
            return self._too_long(len(text))
        norm = normalize(text)
        if len(norm.text) > self.max_chars:
            return self._too_long(len(norm.text))
        pii = [s for s in find_pii(norm.text) if s.kind not in self.keep_pii]
        # PII spans become one '#' in the skeleton: PII can never trigger a banned term or an injection pattern.
        sk = skeleton(norm.text, blanks=tuple((s.start, s.end) for s in pii), vocabulary=self._vocabulary)
        spans = [(s.kind, s.start, s.end, s.placeholder) for s in pii]
        banned = self.banned.find(norm.text, sk)
        if self.mask_banned:
            spans += [(FLAG_BANNED, m.start, m.end, BANNED_PLACEHOLDER) for m in banned]
        kept = _non_overlapping(spans)
        redacted, redactions = apply_redactions(norm, kept)
        display, _ = apply_redactions(with_original_punctuation(norm, text), kept)
        flags: list[str] = []
        if pii:
            flags.append(FLAG_PII)
        if banned:
            flags.append(FLAG_BANNED)
        blanked = _blank(norm.text, pii)
        injection = detect_injection_skeleton(blanked, sk) or (
            self.injection_model is not None and self.injection_model.is_attack_normalized(blanked)
        )
        if injection:
            flags.append(FLAG_INJECTION)
        blocked = (bool(banned) and self.block_banned) or (injection and self.block_injection)
        return InputVerdict(text=redacted, redactions=redactions, flags=tuple(flags), blocked=blocked,
                            display=display if display != redacted else "")


def _blank(text: str, pii: Sequence[PiiSpan]) -> str:
    """``text`` with each PII span replaced by its placeholder (what injection patterns see)."""
    out, pos = [], 0
    for s in pii:
        out.append(text[pos : s.start])
        out.append(s.placeholder)
        pos = s.end
    out.append(text[pos:])
    return "".join(out)


def _non_overlapping(spans: list[tuple[str, int, int, str]]) -> list[tuple[str, int, int, str]]:
    chosen: list[tuple[str, int, int, str]] = []
    for span in spans:  # PII first: a banned term inside a redacted span is dropped
        if all(span[2] <= c[1] or span[1] >= c[2] for c in chosen):
            chosen.append(span)
    return chosen


class OutputFilter:
    """Scores bot replies for toxicity with the model of the reply's language.

    ``model_dir`` is a root with one model dir per language (``en/``, ``zh/``) or a single model dir (older
    flat layout); it is loaded on first use as a :class:`~safety.toxicity.ToxicityRouter`. Or pass a loaded
    ``classifier`` (a ``ToxicityRouter`` or a single ``ToxicityClassifier``). ``threshold`` overrides every
    model's own threshold (``toxicity.json``'s, 0.5 by default) when given.
    """

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        classifier: ToxicityClassifier | ToxicityRouter | None = None,
        threshold: float | None = None,
    ) -> None:
        if model_dir is None and classifier is None:
            raise ValueError("OutputFilter needs a model_dir or a classifier")
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.threshold = threshold
        self._classifier = classifier
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OutputFilter(model_dir={self.model_dir}, threshold={self.threshold})"

    @property
    def classifier(self) -> ToxicityClassifier | ToxicityRouter:
        with self._lock:
            if self._classifier is None:
                from safety.toxicity import ToxicityRouter

                assert self.model_dir is not None
                self._classifier = ToxicityRouter.load(self.model_dir, threshold=self.threshold)
            return self._classifier

    def check(self, text: str, language: str = "en", *, baseline: str | None = None) -> OutputVerdict:
        """Toxicity verdict on a reply in ``language`` (blocking: run it via ``asyncio.to_thread`` from async code);
        ``baseline``: the reply's trusted words alone, when only values put into a template are in question."""
        return self.classifier.check(text, language, threshold=self.threshold, baseline=baseline)
