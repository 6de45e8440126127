"""Evaluate the learned policy and the bot's hand-written (FSM) policy on the same simulated users.

Episode ``i`` at every noise level uses seed ``seed + i`` for both policies: the same goal, patience and noise
stream (the noise draws diverge only where the two policies steer the dialogue apart). Nothing depends on the clock
or the machine's load, so one trained policy gives the same JSON wherever it runs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

from policy.base import Policy
from policy.fsm import FSMPolicy
from policy.simulator import DialogueSimulation, Episode, SimBot, Users, summarise


def evaluate(
    bot: SimBot,
    learned: Policy,
    users: Users,
    episodes: int = 1000,
    noise: Sequence[float] = (0.0, 0.15, 0.3),
    seed: int = 0,
    progress: bool = True,
    details: bool = False,
) -> dict[str, Any]:
    """``{"levels": [{"noise", "learned": {...}, "fsm": {...}}]}`` for each semantic error rate (``details``: the
    failures by cause, and the users' population, too)."""
    import torch

    torch.set_num_threads(1)
    sim = DialogueSimulation(bot, users)
    fsm = FSMPolicy(bot.flows.default_policy)
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
                row[name]["failures"] = dict(sorted(Counter(e.failure for e in eps if e.failure).items()))
        levels.append(row)
    bar.close()
    out: dict[str, Any] = {"levels": levels}
    if details:
        out["users"] = users.name
    return out
