"""Train the learned dialogue policy against the user simulator: double DQN with action masking.

Why DQN and not PPO: dialogues here are short (2-4 bot turns) and the simulator runs in Python
with the bot's real python-statemachine flows in the loop, so *simulator steps* are the scarce
resource on a 2-core box. An off-policy learner with a replay buffer reuses every transition many
times (PPO throws each batch away after a few epochs), which gets the policy trained well inside
the 10-minute budget. Masking is exact in both acting and learning: forbidden actions get -inf
before the epsilon-greedy argmax *and* before the bootstrap max over the next state's allowed
actions (double DQN: the online net picks, the target net values), so the targets never leak value
from actions the flows would not allow. Exploration samples uniformly from the allowed set only.

Users are drawn across noise levels (semantic error rate sampled per episode), so one policy serves
every level; it reads the NLU confidence and ranking, not the noise level.

Determinism: one seed drives the replay sampling, exploration and torch init; torch runs single-
threaded with deterministic algorithms, so the same config gives the same weights on CPU.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from policy.base import Decision, Observation
from policy.features import FeatureSpace
from policy.learned import LearnedPolicy
from policy.model import PolicyNetConfig, QNetwork, masked
from policy.simulator import DialogueSimulation, ShopDomain, SimConfig, Step, summarise

TRAIN_SEED_BASE = 1_000_000  # training users; evaluation uses seeds 0..N-1
VALID_SEED_BASE = 5_000_000  # users for the learning curve and the checkpoint choice


@dataclass
class TrainConfig:
    episodes: int = 30_000
    seed: int = 0
    hidden: tuple[int, ...] = (128, 128)
    lr: float = 5e-4
    gamma: float = 0.95
    batch_size: int = 128
    buffer_size: int = 100_000
    warmup_steps: int = 1_000
    train_every: int = 1  # gradient steps per environment step
    target_every: int = 500  # gradient steps between target-network syncs
    eps_start: float = 1.0
    eps_end: float = 0.02
    eps_fraction: float = 0.6  # of the episodes over which epsilon decays linearly
    noise_levels: tuple[float, ...] = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4)
    eval_every: int = 2_500  # episodes between validation points
    eval_episodes: int = 300  # per noise level in validation
    eval_noise: tuple[float, ...] = (0.0, 0.15, 0.3)
    max_minutes: float = 9.0
    threads: int = 1
    progress: bool = True
    sim: SimConfig = field(default_factory=SimConfig)


class _Explorer:
    """Epsilon-greedy over the allowed actions of the online network (the training-time policy)."""

    name = "explore"

    def __init__(self, net: QNetwork, space: FeatureSpace, rng: random.Random) -> None:
        self.net, self.space, self.rng, self.epsilon = net, space, rng, 1.0

    def choose(self, observation: Observation, allowed: Sequence[str]) -> Decision:
        allowed = tuple(allowed)
        known = [a for a in allowed if a in self.space.actions]
        if self.rng.random() < self.epsilon:
            action = self.rng.choice(known)
            return Decision(action, 0.0, allowed, self.name)
        x = torch.from_numpy(self.space.encode(observation, allowed)).unsqueeze(0)
        with torch.no_grad():
            q = masked(self.net(x)[0], torch.from_numpy(self.space.mask(allowed)))
        return Decision(self.space.actions[int(torch.argmax(q))], 0.0, allowed, self.name)


class _Replay:
    def __init__(self, size: int, dim: int, n_actions: int) -> None:
        self.x = np.zeros((size, dim), np.float32)
        self.a = np.zeros(size, np.int64)
        self.r = np.zeros(size, np.float32)
        self.x2 = np.zeros((size, dim), np.float32)
        self.m2 = np.zeros((size, n_actions), bool)
        self.done = np.zeros(size, np.float32)
        self.size, self.n, self.i = size, 0, 0

    def add(self, x: np.ndarray, a: int, r: float, x2: np.ndarray, m2: np.ndarray, done: bool) -> None:
        j = self.i
        self.x[j], self.a[j], self.r[j], self.x2[j], self.m2[j], self.done[j] = x, a, r, x2, m2, float(done)
        self.i = (self.i + 1) % self.size
        self.n = min(self.n + 1, self.size)

    def sample(self, rng: np.random.Generator, k: int) -> tuple[torch.Tensor, ...]:
        idx = rng.integers(0, self.n, size=k)
        return (torch.from_numpy(self.x[idx]), torch.from_numpy(self.a[idx]), torch.from_numpy(self.r[idx]),
                torch.from_numpy(self.x2[idx]), torch.from_numpy(self.m2[idx]), torch.from_numpy(self.done[idx]))


def feature_space(domain: ShopDomain) -> FeatureSpace:
    return FeatureSpace(states=domain.flows.states, intents=domain.intents, slots=domain.slots,
                        actions=domain.flows.actions)


def validate(policy: Any, sim: DialogueSimulation, noise: tuple[float, ...], episodes: int, seed_base: int
             ) -> dict[str, dict[str, float]]:
    return {f"{e:g}": summarise([sim.run(policy, e, seed_base + i) for i in range(episodes)]) for e in noise}


def train(bot_dir: str | Path, out_dir: str | Path, config: TrainConfig | None = None) -> dict[str, Any]:
    """Train, keep the best validation checkpoint, save it to ``out_dir`` with report.json and curves.png."""
    cfg = config or TrainConfig()
    prev_threads, prev_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    try:
        return _train(Path(bot_dir), Path(out_dir), cfg)
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det)


def _train(bot_dir: Path, out: Path, cfg: TrainConfig) -> dict[str, Any]:
    started = time.monotonic()
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    np_rng = np.random.default_rng(cfg.seed)
    domain = ShopDomain.from_bot(bot_dir)
    sim = DialogueSimulation(domain, cfg.sim)
    space = feature_space(domain)
    net_cfg = PolicyNetConfig(features=space, hidden=tuple(cfg.hidden))
    online, target = QNetwork(net_cfg), QNetwork(net_cfg)
    target.load_state_dict(online.state_dict())
    opt = torch.optim.Adam(online.parameters(), lr=cfg.lr)
    loss_fn = nn.SmoothL1Loss()
    replay = _Replay(cfg.buffer_size, space.dim, len(space.actions))
    explorer = _Explorer(online, space, rng)
    from policy.fsm import FSMPolicy

    fsm = FSMPolicy(domain.flows.default_policy)
    fsm_valid = validate(fsm, sim, cfg.eval_noise, cfg.eval_episodes, VALID_SEED_BASE)

    history: list[dict[str, Any]] = []
    best: tuple[float, dict[str, torch.Tensor], int] | None = None
    grad_steps, env_steps, recent_reward, recent_success, losses = 0, 0, [], [], []
    stopped_early = False
    bar = tqdm(range(cfg.episodes), desc="policy (DQN)", disable=not cfg.progress, unit="dlg")
    for ep in bar:
        frac = min(1.0, ep / max(1.0, cfg.eps_fraction * cfg.episodes))
        explorer.epsilon = cfg.eps_start + frac * (cfg.eps_end - cfg.eps_start)
        steps: list[Step] = []
        noise = rng.choice(cfg.noise_levels)
        result = sim.run(explorer, noise, TRAIN_SEED_BASE + cfg.seed * 10_000_000 + ep, steps)
        recent_reward.append(result.reward)
        recent_success.append(float(result.success))
        feats = [space.encode(s.observation, s.allowed) for s in steps]
        for t, s in enumerate(steps):
            nxt = t + 1 < len(steps)
            x2 = feats[t + 1] if nxt else np.zeros(space.dim, np.float32)
            m2 = space.mask(steps[t + 1].allowed) if nxt else np.ones(len(space.actions), bool)
            replay.add(feats[t], space.actions.index(s.action), s.reward, x2, m2, s.done or not nxt)
            env_steps += 1
            if replay.n >= cfg.warmup_steps and env_steps % cfg.train_every == 0:
                x, a, r, xn, mn, d = replay.sample(np_rng, cfg.batch_size)
                with torch.no_grad():
                    a_next = masked(online(xn), mn).argmax(dim=1, keepdim=True)
                    q_next = target(xn).gather(1, a_next).squeeze(1)
                    y = r + cfg.gamma * (1.0 - d) * q_next
                q = online(x).gather(1, a.unsqueeze(1)).squeeze(1)
                loss = loss_fn(q, y)
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(online.parameters(), 10.0)
                opt.step()
                losses.append(float(loss.detach()))
                grad_steps += 1
                if grad_steps % cfg.target_every == 0:
                    target.load_state_dict(online.state_dict())
        last = ep + 1 == cfg.episodes
        out_of_time = cfg.max_minutes > 0 and (time.monotonic() - started) > cfg.max_minutes * 60
        if (ep + 1) % cfg.eval_every == 0 or last or out_of_time:
            online.eval()
            greedy = LearnedPolicy(online, net_cfg)
            valid = validate(greedy, sim, cfg.eval_noise, cfg.eval_episodes, VALID_SEED_BASE)
            online.train()
            mean_success = float(np.mean([v["success_rate"] for v in valid.values()]))
            mean_reward = float(np.mean([v["avg_reward"] for v in valid.values()]))
            point = {
                "episode": ep + 1, "env_steps": env_steps, "grad_steps": grad_steps, "epsilon": round(explorer.epsilon, 4),
                "train_success": round(float(np.mean(recent_success)), 4),
                "train_reward": round(float(np.mean(recent_reward)), 3),
                "loss": round(float(np.mean(losses)) if losses else 0.0, 5),
                "valid": valid, "valid_mean_success": round(mean_success, 4), "valid_mean_reward": round(mean_reward, 3),
                "seconds": round(time.monotonic() - started, 1),
            }
            history.append(point)
            recent_reward, recent_success, losses = [], [], []
            bar.set_postfix(valid_success=f"{mean_success:.3f}", eps=f"{explorer.epsilon:.2f}")
            if best is None or mean_reward > best[0]:
                best = (mean_reward, {k: v.clone() for k, v in online.state_dict().items()}, ep + 1)
        if out_of_time:
            stopped_early = True
            break
    bar.close()
    assert best is not None
    online.load_state_dict(best[1])
    meta = {"episodes_run": history[-1]["episode"] if history else 0, "best_episode": best[2], "seed": cfg.seed}
    final_cfg = PolicyNetConfig(features=space, hidden=tuple(cfg.hidden), meta=meta)
    policy = LearnedPolicy(online, final_cfg)
    policy.save(out)
    seconds = time.monotonic() - started
    report = {
        "algorithm": "double DQN with action masking",
        "bot": str(bot_dir),
        "train_seconds": round(seconds, 1),
        "stopped_on_time_budget": stopped_early,
        "episodes_run": history[-1]["episode"] if history else 0,
        "env_steps": env_steps,
        "grad_steps": grad_steps,
        "best_episode": best[2],
        "best_valid_mean_reward": round(best[0], 3),
        "fsm_valid": fsm_valid,
        "history": history,
        "feature_dim": space.dim,
        "actions": list(space.actions),
        "threads": cfg.threads,
        "config": {k: v for k, v in asdict(cfg).items() if k != "sim"},
        "sim": asdict(cfg.sim),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    plot_curves(history, fsm_valid, out / "curves.png")
    return report


def plot_curves(history: list[dict[str, Any]], fsm_valid: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    xs = [h["episode"] for h in history]
    for level in (history[0]["valid"] if history else {}):
        line = ax1.plot(xs, [h["valid"][level]["success_rate"] for h in history], marker="o", label=f"DQN noise {level}")
        ax1.axhline(fsm_valid[level]["success_rate"], ls="--", color=line[0].get_color(), label=f"FSM noise {level}")
    ax1.set_xlabel("training dialogues")
    ax1.set_ylabel("validation success rate")
    ax1.legend(fontsize=7)
    ax2.plot(xs, [h["train_reward"] for h in history], label="train reward (eps-greedy)")
    ax2.plot(xs, [h["valid_mean_reward"] for h in history], label="validation reward (greedy)")
    ax2.set_xlabel("training dialogues")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
