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
    "Config": "config", "ConfigError": "config",
    "NonFiniteError": "failsafe", "TrainingInterrupted": "failsafe", "RunDirError": "failsafe",
    "RunData": "rundir", "load_run": "rundir", "Report": "schema",
    "Trainer": "trainer", "TrainResult": "trainer",
    "latest_checkpoint": "checkpoint", "load_checkpoint": "checkpoint",
    "load_policy": "policy", "Policy": "policy",
    "train": "api", "resume": "api",
    "sweep": "sweeps", "resume_sweep": "sweeps", "load_sweep": "sweeps", "SweepResult": "sweeps",
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
