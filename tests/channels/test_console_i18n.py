"""The console's two dictionaries (channels/static/ops/i18n.js): the same message ids, no empty text, the same
{placeholders}, and every id the pages use exists. Pure: the file is read as text, no browser."""

from __future__ import annotations

import json
import re

from channels.ops import OPS_STATIC_DIR

I18N = OPS_STATIC_DIR / "i18n.js"


def dictionary(name: str) -> dict[str, str]:
    """``var NAME = { ... };`` of i18n.js, read as JSON (its entries are kept JSON-shaped for this)."""
    text = I18N.read_text(encoding="utf-8")
    match = re.search(r"var " + name + r" = (\{.*?\n  \});", text, re.DOTALL)
    assert match is not None, f"{name} dictionary not found"
    body = re.sub(r",\s*\}$", "}", match.group(1))
    pairs = json.loads(body, object_pairs_hook=list)
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicate ids in {name}: {sorted({k for k in keys if keys.count(k) > 1})}"
    return dict(pairs)


def test_both_languages_have_exactly_the_same_ids_and_no_empty_text() -> None:
    en, zh = dictionary("EN"), dictionary("ZH")
    assert len(en) > 200
    assert set(en) == set(zh), {"only en": sorted(set(en) - set(zh)), "only zh": sorted(set(zh) - set(en))}
    assert [k for k, v in {**{f"en:{k}": v for k, v in en.items()}, **{f"zh:{k}": v for k, v in zh.items()}}.items()
            if not v.strip()] == []
    for key in en:  # a translation uses the same values (it may order them differently)
        assert set(re.findall(r"\{\w+\}", en[key])) == set(re.findall(r"\{\w+\}", zh[key])), key


def test_chinese_is_chinese() -> None:
    """Every Chinese message has Chinese characters or is made only of placeholders, numbers and signs."""
    zh = dictionary("ZH")
    for key, value in zh.items():
        bare = re.sub(r"\{\w+\}", "", value)
        assert re.search(r"[\u4e00-\u9fff]", bare) or not re.search(r"[A-Za-z]{3,}", bare.replace("Kefu", "")), key


def test_every_id_the_pages_use_exists() -> None:
    en = dictionary("EN")
    used: set[str] = set()
    for path in OPS_STATIC_DIR.iterdir():
        text = path.read_text(encoding="utf-8") if path.suffix in (".js", ".html") else ""
        used |= set(re.findall(r'data-i18n(?:-[a-z-]+)?="([a-z]+\.[A-Za-z0-9_.]+)"', text))
        used |= set(re.findall(r'K\.(?:t|node)\("([a-z]+\.[A-Za-z0-9_]+)"', text))
        used |= {k + s for k in re.findall(r'K\.tn\("([a-z]+\.[A-Za-z0-9_]+)"', text) for s in ("_one", "_other")}
    assert used and sorted(used - set(en)) == []
