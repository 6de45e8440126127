"""``LearnedPolicy``: the trained Q-network behind the ``Policy`` protocol, never outside the mask.

The FSM trained further, not replaced: given the bot's hand-written rules (``rules``) and a ``deviation_margin``
chosen at training time (kept in the checkpoint's config), the policy takes the rules' action unless the network
values its own choice more than ``margin`` above it. Where the two are near-equal in value, the network's preference
is noise in its estimates (a few dialogues per thousand), and the rules are what the bot's author tested; where the
network is sure, it leaves them. A margin of None is the plain greedy policy (older checkpoints, ablations).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from policy.base import Decision, Observation, Policy, check_allowed, top_reading
from policy.errors import PolicyError
from policy.model import PolicyNetConfig, QNetwork, masked

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


class LearnedPolicy:
    """Greedy over the allowed actions; ``Decision.score`` is the chosen action's Q-value
    (the expected return of taking it, in the simulator's reward units)."""

    name = "learned"

    def __init__(self, net: QNetwork, config: PolicyNetConfig, rules: Policy | None = None,
                 margin: float | None = None) -> None:
        self.net = net.eval()
        self.config = config
        self.space = config.features
        self.rules = rules
        stored = config.meta.get("deviation_margin")
        self.margin = margin if margin is not None else (float(stored) if stored is not None else None)
        self._warned = False

    def __repr__(self) -> str:
        return f"LearnedPolicy(actions={len(self.space.actions)}, features={self.space.dim})"

    def compatible(self, actions: Sequence[str]) -> bool:
        """Whether this policy was trained on the same action set as the bot's flows (else: retrain)."""
        return set(actions) == set(self.space.actions)

    def q_values(self, observation: Observation, allowed: Sequence[str]) -> torch.Tensor:
        x = torch.from_numpy(self.space.encode(observation, allowed)).unsqueeze(0)
        with torch.no_grad():
            return self.net(x)[0]

    def choose(self, observation: Observation, allowed: Sequence[str]) -> Decision:
        # a checkpoint trained before the runner-up reading never saw its actions: it keeps to the top intent's
        mask_t = check_allowed(allowed if self.space.runner_up else top_reading(observation, allowed))
        mask = torch.from_numpy(self.space.mask(mask_t))
        if not bool(mask.any()):
            raise PolicyError(f"none of the allowed actions {list(mask_t)} is known to the learned policy; retrain it")
        if observation.last_action is None and observation.turn > 1 and not self._warned:
            self._warned = True  # trained with the previous action as a feature: the caller should pass it
            log.warning("learned policy called without Observation.last_action after turn 1; decisions degrade")
        q = masked(self.q_values(observation, mask_t), mask)
        index = int(torch.argmax(q))
        runner_up = self.space.actions[index] in observation.runner_up_actions
        if self.rules is not None and self.margin is not None and not runner_up:
            # the margin guards departures from the rules among the actions they chose from; the runner-up
            # reading's actions, on which the rules have no opinion, compete by their values alone
            rule = self.rules.choose(observation, mask_t).action
            if rule in self.space.actions:
                r = self.space.actions.index(rule)
                if float(q[index]) - float(q[r]) <= self.margin:
                    index = r
        return Decision(action=self.space.actions[index], score=float(q[index]), allowed=mask_t, policy=self.name)

    def save(self, out_dir: str | Path) -> None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous() for k, v in self.net.state_dict().items()}, str(out / WEIGHTS))
        (out / CONFIG).write_text(json.dumps(self.config.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, model_dir: str | Path, rules: Policy | None = None) -> LearnedPolicy:
        """The checkpoint in ``model_dir``; ``rules`` (the bot's FSM policy) enables its deviation margin."""
        path = Path(model_dir)
        if not (path / WEIGHTS).is_file() or not (path / CONFIG).is_file():
            raise PolicyError(f"no learned policy at {path} (need {WEIGHTS} and {CONFIG})")
        config = PolicyNetConfig.from_dict(json.loads((path / CONFIG).read_text(encoding="utf-8")))
        net = QNetwork(config)
        net.load_state_dict(load_file(str(path / WEIGHTS)))
        return cls(net, config, rules)
