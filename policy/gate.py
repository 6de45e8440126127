"""The gate a learned policy passes before ``policy: auto`` serves it: at least the FSM's success, on unseen users.

After training, the learned policy and the bot's hand-written (FSM) policy meet the same simulated users, drawn from
seeds no training dialogue and no checkpoint choice used (``GATE_SEED_BASE``), at every evaluation noise level. The
learned policy passes when its success rate is at least the FSM's at each level. The verdict is written next to the
weights (``gate.json``, with the digest of the weights it judged), so serving reads it instead of simulating again;
the composition root adds its own checks (the bot's scenarios) and picks the policy.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from policy.base import Policy
from policy.learned import WEIGHTS
from policy.simulator import DialogueSimulation, summarise

GATE_FILE = "gate.json"
GATE_SEED_BASE = 7_000_000


def run_gate(sim: DialogueSimulation, learned: Policy, fsm: Policy, noise: Sequence[float], episodes: int,
             seed_base: int = GATE_SEED_BASE, progress: bool = False) -> dict[str, Any]:
    """``{"passed", "reasons", "levels": [{"noise", "learned", "fsm"}], "episodes", "seeds"}``."""
    levels: list[dict[str, Any]] = []
    reasons: list[str] = []
    bar = tqdm(total=2 * episodes * len(noise), desc="policy gate", disable=not progress, unit="dlg")
    for level in noise:
        row: dict[str, Any] = {"noise": level}
        for name, policy in (("learned", learned), ("fsm", fsm)):
            row[name] = summarise([sim.run(policy, level, seed_base + i) for i in range(episodes)])
            bar.update(episodes)
        levels.append(row)
        ours, theirs = row["learned"]["success_rate"], row["fsm"]["success_rate"]
        if ours < theirs:
            reasons.append(f"at noise {level:g} the learned policy's success {ours:.3f} is below the FSM policy's "
                           f"{theirs:.3f} ({episodes} unseen simulated users)")
    bar.close()
    return {"passed": not reasons, "reasons": reasons, "levels": levels, "episodes": episodes,
            "seeds": [seed_base, seed_base + episodes - 1]}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_gate(policy_dir: Path, gate: dict[str, Any]) -> None:
    record = {**gate, "weights_sha256": _digest(policy_dir / WEIGHTS)}
    (policy_dir / GATE_FILE).write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")


def gate_status(policy_dir: str | Path) -> tuple[bool, str]:
    """Whether the learned policy in ``policy_dir`` passed its gate, and why (or why not), in one line."""
    path = Path(policy_dir)
    gate_path, weights = path / GATE_FILE, path / WEIGHTS
    if not weights.is_file():
        return False, f"no learned policy at {path}"
    if not gate_path.is_file():
        return False, f"the learned policy at {path} was never gated (no {GATE_FILE}): retrain it"
    try:
        gate = json.loads(gate_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return False, f"cannot read {gate_path}: {exc}"
    if not isinstance(gate, dict):
        return False, f"{gate_path} is not a JSON object: retrain the policy"
    if gate.get("weights_sha256") != _digest(weights):
        return False, f"{gate_path} judged other weights than {weights}: retrain it"
    if not gate.get("passed"):
        return False, "; ".join(gate.get("reasons") or ["the gate failed"])
    levels = ", ".join(f"{r['noise']:g}: {r['learned']['success_rate']:.3f} >= {r['fsm']['success_rate']:.3f}"
                       for r in gate.get("levels", []))
    return True, f"passed the gate (success learned >= FSM at noise {levels})"
