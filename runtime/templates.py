"""Response templates read from a domain's ``responses:`` section.

Each response key holds variants ``{text, language}`` whose text carries ``{slot}`` placeholders. The
delexicalised form used by the embedded generator writes the same placeholders as ``[slot]``.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from runtime.errors import TemplateError
from runtime.types import Act

PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
DELEX_RE = re.compile(r"\[([A-Za-z_][A-Za-z0-9_]*)\]")


def placeholders_of(text: str) -> tuple[str, ...]:
    """The ``{slot}`` placeholders of a template text, in order of first appearance, without repeats."""
    seen: dict[str, None] = {}
    for m in PLACEHOLDER_RE.finditer(text):
        seen.setdefault(m.group(1), None)
    return tuple(seen)


def delexicalise(text: str) -> str:
    """``"Order {order_id}"`` -> ``"Order [order_id]"`` (the generator's target form)."""
    return PLACEHOLDER_RE.sub(lambda m: f"[{m.group(1)}]", text)


def lexicalise(delex_text: str, slots: dict[str, str]) -> str:
    """Replace every ``[slot]`` whose slot is in ``slots`` by its value; others stay as they are."""
    return DELEX_RE.sub(lambda m: slots.get(m.group(1), m.group(0)), delex_text)


def fill(text: str, slots: dict[str, str]) -> str:
    """Replace ``{slot}`` placeholders by values; a missing slot becomes the empty string."""
    return PLACEHOLDER_RE.sub(lambda m: slots.get(m.group(1), ""), text)


@dataclass(frozen=True)
class Variant:
    """One response variant."""

    key: str
    text: str
    language: str

    @property
    def placeholders(self) -> tuple[str, ...]:
        return placeholders_of(self.text)


class Templates:
    """The bot's responses: ``key -> language -> [variant texts]``."""

    def __init__(self, responses: dict[str, dict[str, list[str]]], default_language: str = "en") -> None:
        self._responses = responses
        self.default_language = default_language

    @classmethod
    def from_domain(cls, domain: dict[str, Any], default_language: str = "en") -> Templates:
        """Build from a parsed domain.yml mapping (uses its ``responses:`` section)."""
        raw = domain.get("responses")
        if not isinstance(raw, dict) or not raw:
            raise TemplateError("domain has no 'responses:' mapping")
        responses: dict[str, dict[str, list[str]]] = {}
        for key, variants in raw.items():
            if not isinstance(variants, list) or not variants:
                raise TemplateError(f"response {key!r} must be a non-empty list of variants")
            by_lang: dict[str, list[str]] = {}
            for i, v in enumerate(variants):
                if isinstance(v, str):
                    text, lang = v, default_language
                elif isinstance(v, dict) and isinstance(v.get("text"), str):
                    text, lang = v["text"], str(v.get("language", default_language))
                else:
                    raise TemplateError(f"response {key!r} variant {i} has no 'text'")
                by_lang.setdefault(lang, []).append(text)
            responses[str(key)] = by_lang
        return cls(responses, default_language)

    @classmethod
    def from_file(cls, path: str | Path, default_language: str = "en") -> Templates:
        """Read a domain.yml file."""
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise TemplateError(f"cannot read domain {str(path)!r}: {exc}") from exc
        if not isinstance(data, dict):
            raise TemplateError(f"domain {str(path)!r} is not a mapping")
        return cls.from_domain(data, default_language)

    # ------------------------------------------------------------------ queries
    def keys(self) -> list[str]:
        return list(self._responses)

    def languages(self) -> list[str]:
        langs: dict[str, None] = {}
        for by_lang in self._responses.values():
            for lang in by_lang:
                langs.setdefault(lang, None)
        return list(langs)

    def __contains__(self, key: object) -> bool:
        return key in self._responses

    def variants(self, key: str, language: str | None = None) -> list[Variant]:
        """Variants of ``key`` in ``language`` (falling back to the default language, then any)."""
        by_lang = self._responses.get(key)
        if by_lang is None:
            raise TemplateError(f"unknown response key {key!r}")
        lang = language or self.default_language
        if lang not in by_lang:
            lang = self.default_language if self.default_language in by_lang else next(iter(by_lang))
        return [Variant(key, t, lang) for t in by_lang[lang]]

    def all_variants(self) -> list[Variant]:
        return [
            Variant(k, t, lang) for k, by_lang in self._responses.items() for lang, ts in by_lang.items() for t in ts
        ]

    def placeholders(self, key: str, language: str | None = None) -> tuple[str, ...]:
        """Union of the placeholders of every variant of ``key`` in ``language``, in order of appearance."""
        seen: dict[str, None] = {}
        for v in self.variants(key, language):
            for p in v.placeholders:
                seen.setdefault(p, None)
        return tuple(seen)

    def expected_slots(self, act: Act) -> tuple[str, ...]:
        """The act's slots that the response uses, sorted (the generator's prompt order)."""
        return tuple(sorted(set(self.placeholders(act.name, act.language)) & set(act.slots)))

    # ------------------------------------------------------------------ rendering
    def choose(self, act: Act) -> Variant:
        """Deterministic variant choice: among the variants whose placeholders the act fills, one picked
        by a CRC of the act's name, language and slot values (same act -> same variant, in every process)."""
        variants = self.variants(act.name, act.language)
        usable = [v for v in variants if set(v.placeholders) <= set(act.slots)] or variants
        seed = "\x1f".join([act.name, act.language, *(f"{k}={act.slots[k]}" for k in sorted(act.slots))])
        return usable[zlib.crc32(seed.encode("utf-8")) % len(usable)]

    def missing_slots(self, act: Act) -> tuple[str, ...]:
        """Placeholders of the chosen variant that the act does not fill."""
        return tuple(p for p in self.choose(act).placeholders if p not in act.slots)

    def render(self, act: Act) -> str:
        """The template reply for ``act`` (missing slot values become empty strings)."""
        return fill(self.choose(act).text, act.slots)
