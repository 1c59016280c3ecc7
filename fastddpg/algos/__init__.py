"""The algorithms, by ``--algo`` name. Each is one `Algorithm` subclass in a file of its own."""

from __future__ import annotations

from typing import Any

import torch

from ..config import ConfigError
from .base import Algorithm
from .ddpg import DDPG
from .td3 import TD3

ALGORITHMS: dict[str, type[Algorithm]] = {"ddpg": DDPG, "td3": TD3}


def algorithm_class(name: str) -> type[Algorithm]:
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ConfigError(f"--algo={name!r} is invalid: choose one of {', '.join(ALGORITHMS)}.") from None


def make_algorithm(cfg: Any, obs_dim: int, act_dim: int, action_low: torch.Tensor, action_high: torch.Tensor,
                   device: torch.device) -> Algorithm:
    """The algorithm ``cfg.algo`` names, built from ``cfg``'s hyperparameters."""
    return algorithm_class(cfg.algo).from_config(cfg, obs_dim, act_dim, action_low, action_high, device)


def metric_names(algo: str) -> tuple[str, ...]:
    """The metrics (update table columns) of algorithm ``algo``."""
    return algorithm_class(algo).metric_names


__all__ = ["ALGORITHMS", "DDPG", "TD3", "Algorithm", "algorithm_class", "make_algorithm", "metric_names"]
