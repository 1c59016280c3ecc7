"""Noise-free evaluation of a run's saved actor: ``fastddpg eval RUN_DIR [--episodes 10] [--seed S]``.

Each evaluation episode runs in its own copy of the env (all copies stepped together), seeded ``seed + i``,
with the deterministic action a = mu(s) (no exploration noise). Only the first episode of each copy counts.
Returns are written to ``RUN_DIR/eval.csv`` (appended, one row per episode, ``eval_time`` tells evaluations
apart), and ``mean +- std`` (population std, ddof=0) is printed.

A population run (K members) evaluates every member (or ``--member k``) on the same episodes (the same seeds):
its eval.csv starts with a member column.
"""

from __future__ import annotations

import csv
import datetime
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import Config, ConfigError, check_member
from .envs import env_dims, make_env
from .networks import Actor, actor_from_state_dict
from .rundir import load_run
from .schema import ACTOR_FILE, EVAL_COLUMNS, EVAL_FILE, with_member

EVAL_SEED_OFFSET = 10_000  # default eval seed = training seed + this, so eval starts differ from training's


@dataclass
class EvalResult:
    """returns, lengths: (episodes,) arrays; seed: episode i used seed + i."""

    returns: np.ndarray
    lengths: np.ndarray
    seed: int

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))


@torch.no_grad()
def evaluate_actor(actor: torch.nn.Module, env_id: str, episodes: int = 10, seed: int = 0,
                   max_steps: int = 100_000, backend: str = "gymnasium") -> EvalResult:
    """Run ``episodes`` noise-free episodes of ``env_id`` with ``actor`` (obs (N, obs_dim) -> action (N, act_dim),
    on the CPU), one env per episode, through `make_env` (``backend`` as a run's ``--env-backend``). Raises
    ConfigError if an episode has not ended after ``max_steps`` steps."""
    env = make_env(env_id, episodes, torch.device("cpu"), "sync", backend)
    try:
        obs = env.reset(seed=seed)
        returns = torch.zeros(episodes, dtype=torch.float64)
        lengths = torch.zeros(episodes, dtype=torch.int64)
        active = torch.ones(episodes, dtype=torch.bool)
        for _ in range(max_steps):
            s = env.step(actor(obs))
            returns += s.reward.double() * active
            lengths += active.long()
            active &= ~(s.terminated.bool() | s.truncated.bool())
            obs = s.obs
            if not active.any():
                break
        else:
            raise ConfigError(f"evaluation episodes of {env_id} did not end within {max_steps} steps; the env "
                              "needs a time limit (gymnasium.wrappers.TimeLimit).")
    finally:
        env.close()
    return EvalResult(returns.numpy(), lengths.numpy(), seed)


def load_actor(run_dir: str | Path, member: int = 0) -> tuple[Actor, Config]:
    """The final actor of a run directory (CPU, eval mode; of a population: member ``member``'s) and the run's
    Config."""
    run = load_run(run_dir)
    path = Path(run_dir) / ACTOR_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no {ACTOR_FILE}: the run did not finish; evaluate a finished run.")
    cfg = run.config
    dims = env_dims(cfg.env, cfg.env_backend)
    for key in ("obs_dim", "act_dim"):
        if key in run.meta and run.meta[key] != getattr(dims, key):
            raise ConfigError(f"{cfg.env} now has {key}={getattr(dims, key)} but the run was trained with "
                              f"{run.meta[key]}; evaluate with the env version it was trained on.")
    check_member(member, cfg.num_members)
    state = torch.load(path, map_location="cpu", weights_only=True)
    return actor_from_state_dict(state, cfg.hidden_sizes, cfg.layer_norm, member, cfg.num_members), cfg


def evaluate_run(run_dir: str | Path, episodes: int = 10, seed: int | None = None) -> EvalResult:
    """Evaluate a run's saved actor and append the episodes to ``run_dir/eval.csv`` (a population's: member 0;
    see `evaluate_members`)."""
    return evaluate_members(run_dir, episodes, seed, [0])[0]


def evaluate_members(run_dir: str | Path, episodes: int = 10, seed: int | None = None,
                     members: list[int] | None = None) -> dict[int, EvalResult]:
    """Evaluate the saved actors of ``members`` (default: every member of the run) on the same episodes, and
    append them to ``run_dir/eval.csv``. Returns {member: EvalResult}."""
    if episodes < 1:
        raise ConfigError(f"--episodes={episodes} is invalid: evaluate at least 1 episode.")
    k = load_run(run_dir).config.num_members
    results = {}
    for m in range(k) if members is None else members:
        actor, cfg = load_actor(run_dir, m)
        seed = cfg.seed + EVAL_SEED_OFFSET if seed is None else seed
        results[m] = evaluate_actor(actor, cfg.env, episodes, seed, backend=cfg.env_backend)
    out = Path(run_dir) / EVAL_FILE
    new = not out.exists()
    stamp = datetime.datetime.now().astimezone().isoformat(timespec="milliseconds")
    with open(out, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(with_member(EVAL_COLUMNS, k))
        for m, result in results.items():
            w.writerows(((m,) if k > 1 else ()) + (stamp, result.seed, i, float(r), int(n))
                        for i, (r, n) in enumerate(zip(result.returns, result.lengths, strict=True)))
    return results
