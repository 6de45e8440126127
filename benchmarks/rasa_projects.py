"""Rasa projects on Kefu: import, train and replay each project's own end-to-end test stories.

For every Rasa project folder under ``--projects`` (default ``$KEFU_SHARED_DATA/rasa_projects``; a folder holding a
``domain.yml`` or ``domain/``), this runs what a team moving over would run::

    kefu import rasa PROJECT --out BOT
    kefu train --bot BOT
    kefu test stories --bot BOT --json

in one process, timing the import and the training (the toxicity classifiers are shared by every bot on a machine and
built once: their one-off time is reported apart, before the first project). The replay follows ``rasa test``:
teacher-forced stories, the bot's own trained NLU on the stories' texts (see :mod:`dialogue.rasa.evaluate`).

Usage::

    python benchmarks/rasa_projects.py --json results/rasa_projects.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from safety.shared_data import shared_data_dir


def projects_under(folder: Path) -> list[Path]:
    """Every Rasa project below ``folder``: a folder with a ``domain.yml`` or a ``domain/`` folder (not inside another)."""
    found = sorted({p.parent for p in folder.rglob("domain.yml")} | {p.parent for p in folder.rglob("domain") if p.is_dir()})
    return [p for p in found if not any(other != p and other in p.parents for other in found)]


def run_project(project: Path, out: Path) -> dict[str, Any]:
    from dialogue.rasa.evaluate import evaluate
    from dialogue.rasa.importer import import_project
    from dialogue.rasa.stories import load_stories
    from kefu.app import rasa_dialogue, train_bot
    from kefu.config import Bot
    from kefu.rasa_cli import _nlu_parser

    t = time.perf_counter()
    report = import_project(project, out)
    imported = time.perf_counter() - t
    t = time.perf_counter()
    parts = train_bot(out)
    trained = time.perf_counter() - t
    bot = Bot.load(out)
    dialogue = rasa_dialogue(bot)
    stories = load_stories(dialogue.project.test_files, "test")
    summary = evaluate(dialogue.policy, stories, _nlu_parser(bot, dialogue)).summary()
    return {
        "project": str(project),
        "version": report.version,
        "import_s": round(imported, 2),
        "train_s": round(trained, 1),
        "train_parts_s": {k: round(v, 1) for k, v in parts.items()},
        "unsupported": len(report.unsupported),
        **{k: summary[k] for k in ("stories", "conversation_accuracy", "actions", "action_accuracy", "action_f1",
                                    "intents", "intent_accuracy", "entity_accuracy")},
        "failed": [{"story": f["story"], "source": f["source"],
                    "wrong": [s for s in f["steps"] if not s["ok"]]} for f in summary["failed"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", type=Path, default=shared_data_dir() / "rasa_projects")
    parser.add_argument("--json", type=Path, default=None, help="write the results here too")
    args = parser.parse_args()

    from kefu.app import train_bot  # noqa: F401 - fail early if the environment is not set up

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kefu-rasa-") as tmp:
        for project in projects_under(args.projects):
            result = run_project(project, Path(tmp) / project.name)
            results.append(result)
            print(f"{project.relative_to(args.projects)}: import {result['import_s']} s, train {result['train_s']} s "
                  f"{result['train_parts_s']}, stories {result['stories']}, conversation accuracy "
                  f"{result['conversation_accuracy']}, action accuracy {result['action_accuracy']}, intent accuracy "
                  f"{result['intent_accuracy']}", flush=True)
            for failed in result["failed"]:
                wrong = "; ".join(f"{s['kind']} {s['expected']} -> {s['predicted']} ({s['why']})"
                                  for s in failed["wrong"])
                print(f"  failed: {failed['story']} ({failed['source']}): {wrong}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
