"""Observation -> feature vector for the learned policy (plain numpy; no torch needed here).

Layout (all blocks in the fixed name order stored in the checkpoint's config, so a saved policy
reads observations exactly as it did in training):

- FSM state one-hot; top intent one-hot; the NLU ranking as a distribution over intents;
- confidence, margin between the first and second ranked intents, the bot's low-confidence flag;
- which slots are filled; the turn (one-hot up to ``max_turn`` and scaled);
- the last action one-hot (plus "none"); the allowed-action mask; the prompt-injection flag;
- with ``runner_up`` (checkpoints trained since the runner-up reading): which allowed actions are the runner-up
  intent's alone (:attr:`Observation.runner_up_actions`).

Unknown states, intents or actions (a bot edited after training) encode as all-zero blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from policy.base import Observation


@dataclass(frozen=True)
class FeatureSpace:
    states: tuple[str, ...]
    intents: tuple[str, ...]
    slots: tuple[str, ...]
    actions: tuple[str, ...]
    max_turn: int = 8
    runner_up: bool = False

    @property
    def dim(self) -> int:
        s, i, sl, a = len(self.states), len(self.intents), len(self.slots), len(self.actions)
        return s + 2 * i + 3 + sl + self.max_turn + 1 + (a + 1) + a + 1 + (a if self.runner_up else 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpace:
        return cls(
            states=tuple(data["states"]), intents=tuple(data["intents"]), slots=tuple(data["slots"]),
            actions=tuple(data["actions"]), max_turn=int(data.get("max_turn", 8)),
            runner_up=bool(data.get("runner_up", False)),
        )

    def mask(self, allowed: Sequence[str]) -> np.ndarray:
        allowed_set = set(allowed)
        return np.array([a in allowed_set for a in self.actions], dtype=bool)

    def encode(self, obs: Observation, allowed: Sequence[str]) -> np.ndarray:
        out = np.zeros(self.dim, dtype=np.float32)
        pos = 0

        def one_hot(names: tuple[str, ...], value: str | None) -> None:
            nonlocal pos
            if value is not None and value in names:
                out[pos + names.index(value)] = 1.0
            pos += len(names)

        one_hot(self.states, obs.state)
        one_hot(self.intents, obs.intent)
        ranking = obs.ranking or ((obs.intent, obs.confidence),)
        for name, p in ranking:
            if name in self.intents:
                out[pos + self.intents.index(name)] = float(p)
        pos += len(self.intents)
        probs = sorted((float(p) for _, p in ranking), reverse=True)
        second = probs[1] if len(probs) > 1 else 0.0
        out[pos] = float(obs.confidence)
        out[pos + 1] = float(obs.confidence) - second
        out[pos + 2] = 1.0 if obs.low_confidence else 0.0
        pos += 3
        for j, slot in enumerate(self.slots):
            if slot in obs.filled_slots:
                out[pos + j] = 1.0
        pos += len(self.slots)
        turn = max(1, int(obs.turn))
        out[pos + min(turn, self.max_turn) - 1] = 1.0
        out[pos + self.max_turn] = min(turn, 4 * self.max_turn) / (4 * self.max_turn)
        pos += self.max_turn + 1
        last = self.actions.index(obs.last_action) if obs.last_action in self.actions else len(self.actions)
        out[pos + last] = 1.0
        pos += len(self.actions) + 1
        out[pos:pos + len(self.actions)] = self.mask(allowed)
        pos += len(self.actions)
        out[pos] = 1.0 if "prompt_injection" in obs.flags else 0.0
        pos += 1
        if self.runner_up:
            out[pos:pos + len(self.actions)] = self.mask(obs.runner_up_actions)
        return out
