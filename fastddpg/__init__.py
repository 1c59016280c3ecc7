"""fastddpg: a vectorized, device-resident DDPG/TD3 trainer in PyTorch.

    from fastddpg import Config, train
    result = train(Config(num_envs=4, total_steps=10_000))
    result.episodes  # tidy pandas DataFrame: episode, env, global_step, return, length, wall_time

    from fastddpg import load_policy
    policy = load_policy("runs/a", which="best")   # a run trained with eval_every (else which="final")
    action = policy.predict(obs)                   # numpy or torch, (obs_dim,) or (B, obs_dim)

The names below are imported on first use, so ``import fastddpg`` and ``fastddpg.cli`` (``--help``,
``--version``) do not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "core.config", "ConfigError": "core.config",
    "NonFiniteError": "training.failsafe", "TrainingInterrupted": "training.failsafe",
    "RunDirError": "training.failsafe",
    "RunData": "runs.rundir", "load_run": "runs.rundir", "Report": "core.schema",
    "Trainer": "training.trainer", "TrainResult": "training.trainer",
    "latest_checkpoint": "runs.checkpoint", "load_checkpoint": "runs.checkpoint",
    "load_policy": "runs.policy", "Policy": "runs.policy",
    "train": "api", "resume": "api",
    "sweep": "tools.sweeps", "resume_sweep": "tools.sweeps", "load_sweep": "tools.sweeps",
    "SweepResult": "tools.sweeps",
}
__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fastddpg' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
