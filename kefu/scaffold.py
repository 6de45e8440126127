"""A new bot folder from the template that ships with Kefu (``kefu init``): a small bot that trains and serves as is.

The template (``kefu/templates/bot``, package data) is a real bot written in both languages. Writing it for a bot
means three plain-text steps, so the template files stay valid YAML and Python that the tests can read:

* ``__BOT_NAME__`` becomes the bot's name; ``__LANGUAGES__`` and ``__NLU_DATA__`` (in ``bot.yml``) the languages
  chosen and the NLU files written for them;
* a file whose first line is ``#%% only: zh`` is written only when that language is chosen (the line is dropped);
* lines between ``#%% zh`` and ``#%% end`` are kept only when zh is chosen (the two marker lines are dropped), so
  one ``domain.yml`` or ``kb.yml`` holds both languages' variants and a bot gets only its own.

``render`` and ``plan`` are pure; :func:`scaffold` reads the template and writes the folder, refusing one that
already holds anything (a bot is never overwritten).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath

from kefu.errors import ScaffoldError

LANGUAGES = ("en", "zh")
NAME = "__BOT_NAME__"
_MARK = "#%%"
_NAME_RE = re.compile(r"^\w[\w .-]{0,62}$")
# the template's files that are not for a bot: Python's bytecode caches, editors' droppings
_SKIP = re.compile(r"(^|/)(__pycache__|\.mypy_cache|\.ruff_cache)(/|$)|\.pyc$|~$")
# names a package (a wheel, an sdist) may drop or mangle: stored without their dot, written with it
_DOTFILES = {"gitignore": ".gitignore"}


def template_root() -> Traversable:
    return files("kefu").joinpath("templates", "bot")


def check_name(name: str) -> str:
    name = name.strip()
    if not _NAME_RE.match(name):
        raise ScaffoldError(f"bad bot name {name!r}: use letters, digits, spaces, '.', '_' or '-' (at most 63), "
                            "starting with a letter or digit (or pass --name)")
    return name


def check_languages(languages: Sequence[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(lang.strip().lower() for lang in languages)) or ("en",)
    unknown = [lang for lang in chosen if lang not in LANGUAGES]
    if unknown:
        raise ScaffoldError(f"unknown language {unknown[0]!r}: Kefu bots speak {' and '.join(LANGUAGES)}")
    return chosen


def render(text: str, languages: Sequence[str]) -> str | None:
    """The file's text for these languages, or None when the file is for another language only."""
    lines = text.splitlines(keepends=True)
    if lines and lines[0].startswith(f"{_MARK} only:"):
        wanted = lines[0].split(":", 1)[1].split()
        if not set(wanted) & set(languages):
            return None
        lines = lines[1:]
    out: list[str] = []
    block: list[str] | None = None  # the languages of the block we are in
    for number, line in enumerate(lines, 1):
        mark = line.strip()
        if mark.startswith(_MARK):
            words = mark[len(_MARK):].split()
            if words == ["end"] and block is not None:
                block = None
            elif words and all(w in LANGUAGES for w in words) and block is None:
                block = words
            else:
                raise ScaffoldError(f"template line {number}: bad marker {mark!r} (#%% en|zh ... #%% end)")
            continue
        if block is None or set(block) & set(languages):
            out.append(line)
    if block is not None:
        raise ScaffoldError(f"template: a '{_MARK} {' '.join(block)}' block is never closed")
    return "".join(out)


def _walk(root: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        path = str(PurePosixPath(prefix, entry.name))
        if _SKIP.search(path):
            continue
        if entry.is_dir():
            yield from _walk(entry, path)
        else:
            yield path, entry


def plan(template: Mapping[str, str], name: str, languages: Sequence[str]) -> dict[str, str]:
    """Relative path -> text of every file the bot gets, from the template's files (relative path -> text)."""
    languages = check_languages(languages)
    name = check_name(name)
    kept: dict[str, str] = {}
    for path, text in template.items():
        if (rendered := render(text, languages)) is not None:
            kept[_DOTFILES.get(path, path)] = rendered
    nlu = sorted(p for p in kept if re.fullmatch(r"data/nlu(_\w+)?\.yml", p))
    nlu.sort(key=lambda p: p != "data/nlu.yml")  # the English file first, as Rasa projects order them
    values = {NAME: name, "__LANGUAGES__": f"[{', '.join(languages)}]", "__NLU_DATA__": f"[{', '.join(nlu)}]"}
    return {path: _substitute(text, values) for path, text in kept.items()}


def _substitute(text: str, values: Mapping[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def read_template(root: Traversable | None = None) -> dict[str, str]:
    return {path: entry.read_text(encoding="utf-8") for path, entry in _walk(root or template_root())}


def scaffold(target: Path, *, name: str | None = None, languages: Sequence[str] = ("en",)) -> list[Path]:
    """Write a new bot into ``target`` (created; an existing one must be empty). Returns the files written."""
    if target.exists() and not target.is_dir():
        raise ScaffoldError(f"{target} is a file, not a folder")
    if target.is_dir() and any(target.iterdir()):
        raise ScaffoldError(f"{target} is not empty: kefu init writes a new bot into a new or empty folder "
                            "(and never overwrites one)")
    files_ = plan(read_template(), name if name is not None else target.resolve().name, languages)
    written = []
    for relative, text in files_.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
