"""The algorithms, by ``--algo`` name: each is one `Algorithm` subclass in a file of its own, named by its entry in
`fastddpg.core.registry.ALGORITHMS` (the one list) and imported when first asked for."""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import nn

from ..core.config import ConfigError
from ..core.registry import ALGORITHMS as SPECS
from .base import Algorithm


def algorithm_class(name: str) -> type[Algorithm]:
    """The class registered as ``--algo name`` (its module imported on first use)."""
    spec = SPECS.get(name)
    if spec is None:
        raise ConfigError(f"--algo={name!r} is invalid: choose one of {', '.join(SPECS)}.")
    module, _, cls = spec.target.partition(":")
    return getattr(importlib.import_module(module), cls)


def algorithms() -> dict[str, type[Algorithm]]:
    """{name: class} of every registered algorithm, in registry order."""
    return {name: algorithm_class(name) for name in SPECS}


def make_algorithm(cfg: Any, obs_dim: int, act_dim: int, action_low: torch.Tensor, action_high: torch.Tensor,
                   device: torch.device) -> Algorithm:
    """The algorithm ``cfg.algo`` names, built from ``cfg``'s hyperparameters."""
    return algorithm_class(cfg.algo).from_config(cfg, obs_dim, act_dim, action_low, action_high, device)


def metric_names(algo: str) -> tuple[str, ...]:
    """The metrics (update table columns) of algorithm ``algo``."""
    return algorithm_class(algo).metric_names


def policy_from_state_dict(state: dict[str, torch.Tensor], cfg: Any, member: int = 0) -> nn.Module:
    """The eval-mode policy that a run's saved actor state_dict describes (of a population's: member ``member``'s),
    rebuilt by the run's algorithm (`Algorithm.policy_from_state_dict`)."""
    return algorithm_class(cfg.algo).policy_from_state_dict(state, cfg.hidden_sizes, cfg.layer_norm, member,
                                                            cfg.num_members)


def __getattr__(name: str) -> Any:
    """``DDPG``, ``TD3``: the registered classes by their class name."""
    for spec in SPECS.values():
        if spec.target.partition(":")[2] == name:
            return algorithm_class(spec.name)
    raise AttributeError(name)


__all__ = ["Algorithm", "algorithm_class", "algorithms", "make_algorithm", "metric_names", "policy_from_state_dict"]
