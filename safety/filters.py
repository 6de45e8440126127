"""Input and output filters.

:class:`InputFilter` normalises a user message, redacts PII, flags banned terms and prompt-injection
attempts, and blocks over-long messages. :class:`OutputFilter` scores a bot reply for toxicity.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from safety.errors import InputTooLongError
from safety.normalize import normalize
from safety.pii import redact_normalized
from safety.types import InputVerdict, OutputVerdict

if TYPE_CHECKING:
    from safety.toxicity import ToxicityClassifier

FLAG_PII = "pii"
FLAG_BANNED = "banned_term"
FLAG_INJECTION = "prompt_injection"
FLAG_TOO_LONG = "too_long"

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")

# --- prompt injection -------------------------------------------------------------------------------------
_EN_INJECTION = [
    # ignore / disregard / forget (all) previous|prior|above instructions
    (r"\b(?:ignore|disregard|forget|override|bypass|skip)\s+(?:(?:all|any|every|the|of|your|these|those)\s+)*"
    r"(?:previous|prior|above|earlier|preceding|foregoing|original|initial|system)\s+"
    r"(?:instructions?|prompts?|rules|directions|directives|guidelines|commands|context|programming)\b"),
    # disregard your rules / ignore your instructions / forget your guidelines
    (r"\b(?:ignore|disregard|forget|override|bypass|break)\s+(?:all\s+)?(?:of\s+)?your\s+"
    r"(?:rules|instructions|guidelines|programming|restrictions|policies|guardrails|safety|filters|training)\b"),
    # you are now DAN / in developer mode / unrestricted
    (r"\byou\s+are\s+now\s+(?:an?\s+)?(?:dan\b|in\s+(?:developer|god|jailbreak|dan)\s+mode|unrestricted|unfiltered"
    r"|jailbroken|free\s+(?:of|from)\s+(?:all\s+)?(?:rules|restrictions))"),
    r"\bdo\s+anything\s+now\b",
    r"\b(?:developer|god|jailbreak|dan)\s+mode\b",
    r"\bjailbreak",
    # pretend you are / act as an unrestricted ...
    r"\bpretend\s+(?:that\s+)?(?:you\s+are|you're|to\s+be)\b",
    r"\bact\s+as\s+(?:if\s+you\s+(?:are|were)\s+)?(?:an?\s+)?(?:unrestricted|unfiltered|uncensored|jailbroken|evil|dan)\b",
    # reveal / show / print your system prompt (or hidden instructions)
    (r"\b(?:reveal|show|print|display|repeat|output|tell|give|leak|dump|share|what\s+(?:is|are|was|were))\s+"
    r"(?:me\s+|us\s+)?(?:all\s+)?(?:(?:your|the)\s+(?:(?:full|exact|entire|complete)\s+)?"
    r"(?:system|hidden|secret|internal|initial|original)\s+(?:prompt|instructions|message|rules)"
    r"|your\s+(?:(?:full|exact|entire|complete)\s+)?(?:prompt|instructions))\b"),
    r"\bsystem\s*prompt\b",
    # chat-template role tokens smuggled in the message
    r"<\|?(?:im_start|im_end|system|endoftext)\|?>|\[/?inst\]|<<sys>>",
    r"(?:^|\s)(?:###\s*)?(?:new|updated)\s+(?:system\s+)?instructions\s*:",
]
_ZH_INJECTION = [
    (r"(?:忽略|无视|忘记|忘掉|不要理会|不用理会|别管|跳过|绕过)(?:掉)?(?:你)?(?:的)?"
    r"(?:之前|以上|前面|上面|先前|此前|原来|原先|所有|全部|一切)(?:的)?(?:所有|全部|一切)?(?:的)?"
    r"(?:指令|说明|指示|规则|提示|设定|要求|命令|限制)"),
    r"(?:忽略|无视|忘记|忘掉|违反|打破|绕过)(?:你的)(?:规则|指令|设定|限制|原则)",
    r"系统提示|系统指令|系统设定|system\s*prompt",
    (r"(?:你现在是|从现在开始你是|假装你是|假设你是|假装自己是|扮演一个?(?:没有|不受|无)).{0,12}?"
    r"(?:dan|没有限制|不受限制|无限制|没有任何限制|不受约束|没有规则|越狱)"),
    r"(?:假装|假设)你(?:是|现在是)",
    r"(?:开发者|越狱|上帝)模式",
    (r"(?:显示|告诉|输出|泄露|透露|打印|重复|给我看|展示)(?:一下)?(?:我)?(?:你的)(?:初始|原始|内部|隐藏|全部)?"
    r"(?:提示词|指令|设定|规则)"),
]
_INJECTION_PATTERNS = tuple(re.compile(p, re.IGNORECASE) for p in _EN_INJECTION + _ZH_INJECTION)


def detect_injection(text: str) -> bool:
    """True when ``text`` (normalise it first) looks like a prompt-injection attempt, in English or Chinese."""
    return any(p.search(text) for p in _INJECTION_PATTERNS)


def _compile_term(term: str) -> re.Pattern[str]:
    """Latin terms match on word boundaries (``ass`` does not match ``class``); CJK terms match as substrings."""
    norm = normalize(term).text.casefold()
    if _CJK.search(norm):
        return re.compile(re.escape(norm))
    return re.compile(r"(?<![0-9a-z])" + re.escape(norm) + r"(?![0-9a-z])")


class InputFilter:
    """Filters a user message before it reaches NLU, generation, storage or logs.

    ``banned_terms`` maps a language code to its list of terms; every list is checked whatever the message
    language. Messages longer than ``max_chars`` (after normalisation) are blocked with the flag ``too_long``
    (or raise :class:`~safety.errors.InputTooLongError` when ``raise_on_too_long``). Banned terms and prompt
    injection are flagged and block only when ``block_banned`` / ``block_injection`` are set.
    """

    def __init__(
        self,
        banned_terms: Mapping[str, Sequence[str]] | None = None,
        max_chars: int = 2000,
        *,
        block_banned: bool = False,
        block_injection: bool = False,
        raise_on_too_long: bool = False,
    ) -> None:
        if max_chars <= 0:
            raise ValueError("max_chars must be positive")
        self.max_chars = max_chars
        self.block_banned = block_banned
        self.block_injection = block_injection
        self.raise_on_too_long = raise_on_too_long
        terms = [t for lst in (banned_terms or {}).values() for t in lst if t and t.strip()]
        self._banned = tuple(_compile_term(t) for t in terms)

    def __repr__(self) -> str:
        return f"InputFilter(banned_terms={len(self._banned)}, max_chars={self.max_chars})"

    def has_banned_term(self, normalized_text: str) -> bool:
        folded = normalized_text.casefold()
        return any(p.search(folded) for p in self._banned)

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
        redacted, redactions = redact_normalized(norm)
        flags: list[str] = []
        if redactions:
            flags.append(FLAG_PII)
        # Banned terms and injection are looked for in the redacted text, so PII cannot trigger them.
        banned = self.has_banned_term(redacted)
        if banned:
            flags.append(FLAG_BANNED)
        injection = detect_injection(redacted)
        if injection:
            flags.append(FLAG_INJECTION)
        blocked = (banned and self.block_banned) or (injection and self.block_injection)
        return InputVerdict(text=redacted, redactions=redactions, flags=tuple(flags), blocked=blocked)


class OutputFilter:
    """Scores bot replies for toxicity. Give a loaded ``classifier`` or a ``model_dir`` (loaded on first use).

    ``threshold`` overrides the classifier's own threshold (``toxicity.json``'s, or 0.5) when given.
    """

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        classifier: ToxicityClassifier | None = None,
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
    def classifier(self) -> ToxicityClassifier:
        with self._lock:
            if self._classifier is None:
                from safety.toxicity import ToxicityClassifier

                assert self.model_dir is not None
                self._classifier = ToxicityClassifier.load(self.model_dir, threshold=self.threshold)
            return self._classifier

    def check(self, text: str, language: str = "en") -> OutputVerdict:
        """Toxicity verdict on a reply (blocking: run it via ``asyncio.to_thread`` from async code)."""
        return self.classifier.check(text, language, threshold=self.threshold)
