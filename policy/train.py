"""Train the learned dialogue policy of any bot against its user simulator: double DQN with action masking.

Why DQN and not PPO: dialogues are short and every simulator step runs the bot's python-statemachine flows in
Python, so *simulator steps* are the scarce resource on a 2-core box. An off-policy learner with a replay buffer
reuses every transition many times (PPO throws each batch away after a few epochs). Masking is exact in acting and
in learning: forbidden actions get -inf before the epsilon-greedy argmax *and* before the bootstrap max over the
next state's allowed actions (double DQN: the online net picks, the target net values), so no value leaks from
actions the flows would not allow. Exploration samples uniformly from the allowed set only.

Users are drawn across noise levels (a semantic error rate per dialogue), so one policy serves every level; it reads
the NLU confidence and ranking, not the noise level.

Budget and determinism: training runs for a number of *environment steps* (bot turns), never for a wall-clock
time, so how busy the machine is changes how long it takes, not what it learns. One seed drives the users, the
replay sampling, the exploration and the network's initialisation; torch runs on one thread with deterministic
algorithms, so one seed gives bit-identical weights and the same ``evaluate`` JSON.

Seeds: training dialogues, the checkpoint choice (``VALID_SEED_BASE``), the gate (``GATE_SEED_BASE``) and
``kefu policy evaluate`` (0..N-1) use disjoint user seeds: neither the gate nor the evaluation meets a user that
shaped the weights or picked the checkpoint.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from policy.base import Decision, Observation, Policy, top_reading
from policy.features import FeatureSpace
from policy.fsm import FSMPolicy
from policy.gate import GATE_SEED_BASE, run_gate, write_gate
from policy.learned import LearnedPolicy
from policy.model import PolicyNetConfig, QNetwork, masked
from policy.simulator import DialogueSimulation, SimBot, Step, Users, summarise

TRAIN_SEED_BASE = 100_000_000  # + seed * 10,000,000 + dialogue: training users
VALID_SEED_BASE = 5_000_000  # users for the learning curve and the checkpoint choice


@dataclass
class TrainConfig:
    steps: int = 40_000  # environment steps (bot turns) of training
    seed: int = 0
    hidden: tuple[int, ...] = (128, 128)
    lr: float = 5e-4
    gamma: float = 0.95
    batch_size: int = 128
    buffer_size: int = 100_000
    warmup_steps: int = 1_000
    train_every: int = 1  # environment steps per gradient step
    target_every: int = 500  # gradient steps between target-network syncs
    eps_start: float = 1.0
    eps_end: float = 0.02
    eps_fraction: float = 0.5  # of the steps over which epsilon decays linearly
    noise_levels: tuple[float, ...] = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4)
    eval_every: int = 10_000  # environment steps between validation points
    eval_episodes: int = 300  # per noise level in validation
    eval_noise: tuple[float, ...] = (0.0, 0.15, 0.3)
    gate_episodes: int = 1_000  # per noise level in the gate
    # Added to the learner's reward when it takes the action the bot's hand-written rules would take: a prior towards
    # the FSM policy, so the learned one leaves the rules only where that pays more than this on the training users
    # (choices the simulator cannot tell apart fall the rules' way instead of the way noise in Q pushes them).
    rule_bonus: float = 0.3
    # DQfD's large-margin loss with the rules as the demonstrator: on every sampled turn, the Q-value of the rules'
    # action should beat every other allowed action's by ``rule_margin``; weighted by ``rule_margin_weight`` against
    # the TD loss, it settles what the rewards cannot tell apart (and rare turns) the rules' way, while the TD targets
    # still pull the policy off the rules where that pays.
    rule_margin: float = 1.0
    rule_margin_weight: float = 0.3
    explore_rules: float = 0.5  # an exploring step takes the rules' action this often (else a random allowed one)
    # Candidate margins by which the network must value its choice above the rules' to leave them (LearnedPolicy);
    # the one kept is chosen on the validation users (never the gate's) by :func:`pick_margin`: the largest margin
    # within one validation dialogue of the best (worst-level success difference to the rules, then mean success).
    # Empty: the plain greedy policy.
    deviation_margins: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0)
    # The runner-up reading (policy.base.Observation): off, the policy is trained and served on the top intent's
    # mask alone, as before it existed (a bot whose gate it does not help)
    runner_up: bool = True
    threads: int = 1
    progress: bool = True


class _Explorer:
    """Epsilon-greedy over the allowed actions of the online network (the training-time policy); an exploring step
    takes the rules' action with probability ``explore_rules``, so early dialogues get somewhere in bots whose
    tasks need several right actions in a row."""

    name = "explore"

    def __init__(self, net: QNetwork, space: FeatureSpace, rng: random.Random, rules: Policy,
                 explore_rules: float) -> None:
        self.net, self.space, self.rng, self.epsilon = net, space, rng, 1.0
        self.rules, self.explore_rules = rules, explore_rules

    def choose(self, observation: Observation, allowed: Sequence[str]) -> Decision:
        allowed = tuple(allowed)
        if self.rng.random() < self.epsilon:
            if self.rng.random() < self.explore_rules:
                return Decision(self.rules.choose(observation, allowed).action, 0.0, allowed, self.name)
            known = [a for a in allowed if a in self.space.actions]
            return Decision(self.rng.choice(known), 0.0, allowed, self.name)
        x = torch.from_numpy(self.space.encode(observation, allowed)).unsqueeze(0)
        with torch.no_grad():
            q = masked(self.net(x)[0], torch.from_numpy(self.space.mask(allowed)))
        return Decision(self.space.actions[int(torch.argmax(q))], 0.0, allowed, self.name)


class _Replay:
    def __init__(self, size: int, dim: int, n_actions: int) -> None:
        self.x = np.zeros((size, dim), np.float32)
        self.mr = np.zeros((size, n_actions), bool)  # the top intent's mask: what the rules chose among
        self.a = np.zeros(size, np.int64)
        self.rule = np.zeros(size, np.int64)
        self.r = np.zeros(size, np.float32)
        self.x2 = np.zeros((size, dim), np.float32)
        self.m2 = np.zeros((size, n_actions), bool)
        self.done = np.zeros(size, np.float32)
        self.size, self.n, self.i = size, 0, 0

    def add(self, x: np.ndarray, mr: np.ndarray, a: int, rule: int, r: float, x2: np.ndarray, m2: np.ndarray,
            done: bool) -> None:
        j = self.i
        self.x[j], self.mr[j], self.a[j], self.rule[j], self.r[j] = x, mr, a, rule, r
        self.x2[j], self.m2[j], self.done[j] = x2, m2, float(done)
        self.i = (self.i + 1) % self.size
        self.n = min(self.n + 1, self.size)

    def sample(self, rng: np.random.Generator, k: int) -> tuple[torch.Tensor, ...]:
        idx = rng.integers(0, self.n, size=k)
        return tuple(torch.from_numpy(arr[idx]) for arr in (self.x, self.mr, self.a, self.rule, self.r, self.x2,
                                                             self.m2, self.done))


def feature_space(bot: SimBot) -> FeatureSpace:
    return FeatureSpace(states=tuple(bot.flows.states), intents=tuple(bot.intents), slots=tuple(bot.slots),
                        actions=tuple(bot.flows.actions), runner_up=bot.runner_up)


def validate(policy: Policy, sim: DialogueSimulation, noise: Sequence[float], episodes: int, seed_base: int
             ) -> dict[str, dict[str, float]]:
    return {f"{e:g}": summarise([sim.run(policy, e, seed_base + i) for i in range(episodes)]) for e in noise}


def train(bot: SimBot, users: Users, out_dir: str | Path, config: TrainConfig | None = None) -> dict[str, Any]:
    """Train, keep the best validation checkpoint, gate it against the bot's FSM policy on unseen users, and save
    ``model.safetensors``, ``config.json``, ``report.json``, ``curves.png`` and ``gate.json`` in ``out_dir``."""
    cfg = config or TrainConfig()
    prev_threads, prev_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    try:
        return _train(bot, users, Path(out_dir), cfg)
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det)


def _train(bot: SimBot, users: Users, out: Path, cfg: TrainConfig) -> dict[str, Any]:
    started, cpu_started = time.perf_counter(), time.process_time()
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    np_rng = np.random.default_rng(cfg.seed)
    bot = replace(bot, runner_up=bot.runner_up and cfg.runner_up)
    sim = DialogueSimulation(bot, users)
    space = feature_space(bot)
    net_cfg = PolicyNetConfig(features=space, hidden=tuple(cfg.hidden))
    online, target = QNetwork(net_cfg), QNetwork(net_cfg)
    target.load_state_dict(online.state_dict())
    opt = torch.optim.Adam(online.parameters(), lr=cfg.lr)
    loss_fn = nn.SmoothL1Loss()
    replay = _Replay(cfg.buffer_size, space.dim, len(space.actions))
    fsm = rules = FSMPolicy(bot.flows.default_policy)
    explorer = _Explorer(online, space, rng, rules, cfg.explore_rules)
    fsm_valid = validate(fsm, sim, cfg.eval_noise, cfg.eval_episodes, VALID_SEED_BASE)

    history: list[dict[str, Any]] = []
    best: tuple[tuple[bool, float], dict[str, torch.Tensor], int] | None = None
    grad_steps = env_steps = episodes = 0
    recent_reward: list[float] = []
    recent_success: list[float] = []
    losses: list[float] = []
    next_eval = cfg.eval_every
    bar = tqdm(total=cfg.steps, desc="policy (DQN)", disable=not cfg.progress, unit="step")
    while env_steps < cfg.steps:
        frac = min(1.0, env_steps / max(1.0, cfg.eps_fraction * cfg.steps))
        explorer.epsilon = cfg.eps_start + frac * (cfg.eps_end - cfg.eps_start)
        steps: list[Step] = []
        noise = rng.choice(cfg.noise_levels)
        result = sim.run(explorer, noise, TRAIN_SEED_BASE + cfg.seed * 10_000_000 + episodes, steps)
        episodes += 1
        recent_reward.append(result.reward)
        recent_success.append(float(result.success))
        feats = [space.encode(s.observation, s.allowed) for s in steps]
        for t, s in enumerate(steps):
            nxt = t + 1 < len(steps)
            x2 = feats[t + 1] if nxt else np.zeros(space.dim, np.float32)
            m2 = space.mask(steps[t + 1].allowed) if nxt else np.ones(len(space.actions), bool)
            rule = rules.choose(s.observation, s.allowed).action
            reward = s.reward + (cfg.rule_bonus if rule == s.action else 0.0)
            replay.add(feats[t], space.mask(top_reading(s.observation, s.allowed)), space.actions.index(s.action),
                       space.actions.index(rule), reward, x2, m2, s.done or not nxt)
            env_steps += 1
            if replay.n >= cfg.warmup_steps and env_steps % cfg.train_every == 0:
                # the large margin is the rules' opinion among the actions they chose from: the runner-up
                # reading's actions (never the rules') are valued by their returns alone
                xb, mrb, ab, rule_b, rb, xnb, mnb, db = replay.sample(np_rng, cfg.batch_size)
                with torch.no_grad():
                    a_next = masked(online(xnb), mnb).argmax(dim=1, keepdim=True)
                    q_next = target(xnb).gather(1, a_next).squeeze(1)
                    y = rb + cfg.gamma * (1.0 - db) * q_next
                q_all = online(xb)
                loss = loss_fn(q_all.gather(1, ab.unsqueeze(1)).squeeze(1), y)
                if cfg.rule_margin_weight:
                    margins = torch.full_like(q_all, cfg.rule_margin).scatter_(1, rule_b.unsqueeze(1), 0.0)
                    top = (masked(q_all, mrb) + margins).max(dim=1).values
                    ruled = q_all.gather(1, rule_b.unsqueeze(1)).squeeze(1)
                    loss = loss + cfg.rule_margin_weight * (top - ruled).mean()
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(online.parameters(), 10.0)
                opt.step()
                losses.append(float(loss.detach()))
                grad_steps += 1
                if grad_steps % cfg.target_every == 0:
                    target.load_state_dict(online.state_dict())
        bar.update(len(steps))
        if env_steps >= next_eval or env_steps >= cfg.steps:
            next_eval += cfg.eval_every
            online.eval()
            valid = validate(LearnedPolicy(online, net_cfg), sim, cfg.eval_noise, cfg.eval_episodes, VALID_SEED_BASE)
            online.train()
            mean_success = float(np.mean([v["success_rate"] for v in valid.values()]))
            mean_reward = float(np.mean([v["avg_reward"] for v in valid.values()]))
            beats = all(valid[k]["success_rate"] >= fsm_valid[k]["success_rate"] for k in valid)
            history.append({
                "env_steps": env_steps, "episodes": episodes, "grad_steps": grad_steps,
                "epsilon": round(explorer.epsilon, 4),
                "train_success": round(float(np.mean(recent_success)), 4),
                "train_reward": round(float(np.mean(recent_reward)), 3),
                "loss": round(float(np.mean(losses)) if losses else 0.0, 5),
                "valid": valid, "valid_mean_success": round(mean_success, 4), "valid_mean_reward": round(mean_reward, 3),
                "at_least_fsm": beats,
            })
            recent_reward, recent_success, losses = [], [], []
            bar.set_postfix(valid_success=f"{mean_success:.3f}", eps=f"{explorer.epsilon:.2f}")
            # the checkpoint: at least the FSM's success at every validation level if any is, then the best reward
            score = (beats, mean_reward)
            if best is None or score > best[0]:
                best = (score, {k: v.clone() for k, v in online.state_dict().items()}, env_steps)
    bar.close()
    assert best is not None
    online.load_state_dict(best[1])
    online.eval()
    margin, candidates = choose_margin(online, net_cfg, rules, sim, cfg, fsm_valid)
    meta = {"env_steps": env_steps, "best_env_steps": best[2], "seed": cfg.seed, "users": users.name,
            "deviation_margin": margin}
    policy = LearnedPolicy(online, PolicyNetConfig(features=space, hidden=tuple(cfg.hidden), meta=meta), rules)
    policy.save(out)
    gate = run_gate(sim, policy, fsm, cfg.eval_noise, cfg.gate_episodes, GATE_SEED_BASE, progress=cfg.progress)
    write_gate(out, gate)
    report = {
        "algorithm": "double DQN with action masking",
        "train_seconds": round(time.perf_counter() - started, 1),  # informative only: nothing stops on time
        "train_cpu_seconds": round(time.process_time() - cpu_started, 1),
        "env_steps": env_steps,
        "episodes": episodes,
        "grad_steps": grad_steps,
        "best_env_steps": best[2],
        "best_valid_mean_reward": round(best[0][1], 3),
        "deviation_margin": margin,
        "deviation_margins": candidates,
        "fsm_valid": fsm_valid,
        "gate": gate,
        "history": history,
        "feature_dim": space.dim,
        "actions": list(space.actions),
        "threads": cfg.threads,
        "config": asdict(cfg),
        "users": {"name": users.name, "config": asdict(users.config), "noise_source": users.noise.source},
    }
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    plot_curves(history, fsm_valid, out / "curves.png")
    return report


def choose_margin(net: QNetwork, net_cfg: PolicyNetConfig, rules: Policy, sim: DialogueSimulation, cfg: TrainConfig,
                  fsm_valid: dict[str, dict[str, float]]) -> tuple[float | None, list[dict[str, Any]]]:
    """The deviation margin to keep (see :class:`TrainConfig`), and every candidate's validation figures."""
    if not cfg.deviation_margins:
        return None, []
    rows: list[dict[str, Any]] = []
    for margin in cfg.deviation_margins:
        policy = LearnedPolicy(net, net_cfg, rules, margin)
        valid = validate(policy, sim, cfg.eval_noise, cfg.eval_episodes, VALID_SEED_BASE)
        diffs = [valid[k]["success_rate"] - fsm_valid[k]["success_rate"] for k in valid]
        rows.append({"margin": margin, "valid": valid, "worst_diff": round(min(diffs), 4),
                     "mean_success": round(float(np.mean([v["success_rate"] for v in valid.values()])), 4)})
    return pick_margin(rows, 1 / cfg.eval_episodes), rows


def pick_margin(rows: list[dict[str, Any]], tolerance: float) -> float:
    """The largest margin whose validation figures (``worst_diff``, then ``mean_success``) are within ``tolerance``
    (one validation dialogue) of the best candidate's.

    Why the largest: a smaller margin lets the network leave the rules wherever its Q-estimates differ a little, and
    where validation cannot tell the candidates apart, those departures are unvalidated. They land in states the
    simulator rarely or never produced (a free-text answer the NLU called out of scope, with every Q-value within one
    point of the others), where the rules are what the bot's author wrote and tested. A smaller margin is kept only
    when it wins by more than one validation dialogue."""
    best = max(rows, key=lambda r: (r["worst_diff"], r["mean_success"]))
    near = [r for r in rows if r["worst_diff"] >= best["worst_diff"] - tolerance - 1e-9
            and r["mean_success"] >= best["mean_success"] - tolerance - 1e-9]
    return float(max(r["margin"] for r in near))


def plot_curves(history: list[dict[str, Any]], fsm_valid: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    xs = [h["env_steps"] for h in history]
    for level in (history[0]["valid"] if history else {}):
        line = ax1.plot(xs, [h["valid"][level]["success_rate"] for h in history], marker="o", label=f"DQN noise {level}")
        ax1.axhline(fsm_valid[level]["success_rate"], ls="--", color=line[0].get_color(), label=f"FSM noise {level}")
    ax1.set_xlabel("training steps (bot turns)")
    ax1.set_ylabel("validation success rate")
    ax1.legend(fontsize=7)
    ax2.plot(xs, [h["train_reward"] for h in history], label="train reward (eps-greedy)")
    ax2.plot(xs, [h["valid_mean_reward"] for h in history], label="validation reward (greedy)")
    ax2.set_xlabel("training steps (bot turns)")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
