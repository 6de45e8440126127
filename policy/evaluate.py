"""Evaluate the learned policy and the FSM's hand-written rule on the same simulated users.

Episode ``i`` at every noise level uses seed ``seed + i`` for both policies: the same goal, patience
and noise stream (the noise draws diverge only where the two policies steer the dialogue apart).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from policy.base import Policy
from policy.fsm import FSMPolicy
from policy.simulator import DialogueSimulation, Episode, ShopDomain, SimConfig, summarise


def evaluate(
    bot_dir: str | Path,
    policy_dir: str | Path | None = None,
    episodes: int = 1000,
    noise: Sequence[float] = (0.0, 0.15, 0.3),
    seed: int = 0,
    sim_config: SimConfig | None = None,
    learned: Policy | None = None,
    progress: bool = True,
    details: bool = False,
) -> dict[str, Any]:
    """``{"levels": [{"noise", "learned": {...}, "fsm": {...}}]}`` for each semantic error rate."""
    import torch

    torch.set_num_threads(1)
    domain = ShopDomain.from_bot(Path(bot_dir))
    sim = DialogueSimulation(domain, sim_config)
    if learned is None:
        from policy.learned import LearnedPolicy

        learned = LearnedPolicy.load(policy_dir or Path(bot_dir) / "models" / "policy")
    fsm = FSMPolicy(domain.flows.default_policy)
    levels: list[dict[str, Any]] = []
    bar = tqdm(total=2 * episodes * len(noise), desc="policy evaluate", disable=not progress, unit="dlg")
    for level in noise:
        row: dict[str, Any] = {"noise": level}
        for name, pol in (("learned", learned), ("fsm", fsm)):
            eps: list[Episode] = []
            for i in range(episodes):
                eps.append(sim.run(pol, level, seed + i))
                bar.update(1)
            row[name] = summarise(eps)
            if details:
                row[name]["failures"] = dict(Counter(e.failure for e in eps if e.failure))
        levels.append(row)
    bar.close()
    return {"levels": levels}
