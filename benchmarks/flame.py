"""Read a worker's profile (``benchmarks/load.py --py-spy stacks.txt``: py-spy's collapsed stacks) and say where the
CPU went: a table by Kefu module and an icicle chart (a flame graph drawn top-down) as a PNG.

Why not only py-spy's own SVG: py-spy cannot tell a thread-pool worker waiting for work (``queue.get`` in
``concurrent/futures/thread.py``) or the event loop waiting in ``epoll`` from a busy one, so half of its samples
are waits. Here stacks whose innermost frame is such a wait (``--idle``) are dropped, and what remains is the CPU
the worker spent, attributed to the innermost frame of Kefu's own code (``nlu/predict.py``,
``dialogue/store/turns.py``, ``channels/server.py``...; the library below it is its cost) or to "outside Kefu"
(the event loop's own work, thread hand-offs).

    python benchmarks/load.py --conversations 500 --turns 10 --think-time 10 --py-spy /tmp/stacks.txt --json
    python benchmarks/flame.py /tmp/stacks.txt --by package --png docs/turn_profile.png
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

PACKAGES = ("nlu/", "dialogue/", "safety/", "channels/", "runtime/", "policy/", "kefu/", "examples/")
ENTRY_POINTS = ("kefu/cli.py",)
IDLE = ("_worker (concurrent/futures/thread.py", "EpollSelector.select (selectors.py")
_LINE = re.compile(r":\d+\)$")


def read_stacks(path: Path) -> Counter[tuple[str, ...]]:
    """Collapsed stacks (``frame;frame;... count`` per line, outermost first), line numbers dropped."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        stack, count = line.rsplit(" ", 1)
        stacks[tuple(_LINE.sub(")", f) for f in stack.split(";") if f)] += int(count)
    return stacks


def busy(stacks: Counter[tuple[str, ...]], idle: tuple[str, ...] = IDLE) -> Counter[tuple[str, ...]]:
    """The stacks whose innermost frame is not a wait."""
    return Counter({s: n for s, n in stacks.items() if s and not s[-1].startswith(idle)})


def owner(stack: tuple[str, ...]) -> str:
    """The file of the innermost frame of Kefu's own code (the command line that started the process is not an
    owner), else ``outside Kefu: <package>`` of the innermost frame (what the event loop or a thread ran directly)."""
    files = [m.group(1) for f in stack if (m := re.search(r"\(([^()]+\.py)\)$", f))]
    for file in reversed(files):
        if file.startswith(PACKAGES) and file not in ENTRY_POINTS:
            return file
    return f"outside Kefu: {files[-1].split('/')[0].removesuffix('.py') if files else '?'}"


def package(module: str) -> str:
    """``nlu/model.py`` -> ``nlu``; the store (``dialogue/store/...``) and the definition compiler stay apart from the
    rest of ``dialogue``."""
    parts = module.split("/")
    if module.startswith("outside Kefu") or len(parts) < 2:
        return module
    return "/".join(parts[:2]) if len(parts) > 2 else parts[0]


def by_owner(stacks: Counter[tuple[str, ...]], group: str = "module") -> list[tuple[str, int]]:
    """Busy samples per owner (:func:`owner`), or per :func:`package` of the owner with ``group="package"``."""
    shares: Counter[str] = Counter()
    for stack, n in stacks.items():
        who = owner(stack)
        shares[package(who) if group == "package" else who] += n
    return shares.most_common()


def icicle(
    stacks: Counter[tuple[str, ...]], out: Path, title: str, max_depth: int = 40, min_share: float = 0.004
) -> None:
    """Frames as boxes: depth downwards, width the share of busy samples; boxes under ``min_share`` are not drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    total = sum(stacks.values())
    tree: dict[tuple[str, ...], int] = Counter()
    for stack, n in stacks.items():
        for d in range(1, min(len(stack), max_depth) + 1):
            tree[stack[:d]] += n
    depth = max(len(k) for k in tree if tree[k] / total >= min_share)
    fig, ax = plt.subplots(figsize=(16, 0.32 * depth + 1.2))
    starts: dict[tuple[str, ...], float] = {(): 0.0}
    for key in sorted(tree, key=lambda k: (len(k), k)):  # parents before children, siblings in name order
        parent = key[:-1]
        x = starts[parent]
        starts[parent] = x + tree[key] / total
        starts[key] = x
        w = tree[key] / total
        if w < min_share:
            continue
        ax.add_patch(plt.Rectangle((x, len(key) - 1), w, 0.95, facecolor=_colour(key[-1]), edgecolor="white", lw=0.3))
        name = key[-1].split(" (")[0]
        if w * 16 * 72 / 6.2 > len(name):  # the label fits (about 6.2 points per character at size 7)
            ax.text(x + 0.002, len(key) - 0.55, name, fontsize=7, va="center", clip_on=True)
    ax.set(xlim=(0, 1), ylim=(depth, 0), title=title, xlabel="share of the worker's busy samples")
    ax.set_yticks([])
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _colour(frame: str) -> tuple[float, float, float]:
    m = re.search(r"\(([^()/]+)/", frame)
    top = m.group(1) if m else ""
    palette = {
        "nlu": (0.98, 0.73, 0.45),
        "dialogue": (0.62, 0.79, 0.95),
        "safety": (0.97, 0.6, 0.6),
        "channels": (0.7, 0.9, 0.65),
        "runtime": (0.85, 0.75, 0.95),
        "kefu": (0.9, 0.9, 0.6),
        "torch": (0.99, 0.85, 0.6),
        "sqlalchemy": (0.75, 0.87, 0.98),
        "asyncpg": (0.75, 0.87, 0.98),
        "websockets": (0.8, 0.95, 0.75),
    }
    return palette.get(top, (0.85, 0.85, 0.85))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stacks", type=Path, help="collapsed stacks (load.py --py-spy FILE.txt)")
    ap.add_argument("--png", type=Path, default=None, help="write the icicle chart here")
    ap.add_argument("--title", default="one kefu serve worker's busy samples")
    ap.add_argument("--by", choices=["module", "package"], default="module", help="the table's rows")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    stacks = read_stacks(args.stacks)
    work = busy(stacks)
    total, used = sum(stacks.values()), sum(work.values())
    if not used:
        print(
            f"{args.stacks}: no busy samples in {total} (was the worker serving while py-spy recorded?)",
            file=sys.stderr,
        )
        return 1
    rows = by_owner(work, args.by)
    report: dict[str, Any] = {
        "samples": total,
        "busy_samples": used,
        f"by_{args.by}": [{"owner": m, "samples": n, "share": round(n / used, 3)} for m, n in rows],
    }
    if args.png:
        icicle(work, args.png, args.title)
        report["png"] = str(args.png)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{used} busy samples of {total}")
        for m, n in rows:
            print(f"{100 * n / used:5.1f}%  {m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
