"""DDPG, the notebook's algorithm: one critic, every update a critic step, an actor step and a soft update."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..update import METRIC_NAMES, Batch, LearnerState, Nets, ddpg_update, population_ddpg_update
from .base import Algorithm, UpdateFns


class DDPG(Algorithm):
    name = "ddpg"
    metric_names = METRIC_NAMES
    num_critics = 1

    def update_fns(self, as_batch: Callable[[torch.Tensor], Batch], width: int) -> UpdateFns:
        return ddpg_fns(ddpg_update, self.nets, self.hyper, as_batch)

    def population_update_fns(self, nets: Nets, hyper: Any, as_batch: Callable[[torch.Tensor], Batch],
                              width: int) -> UpdateFns:
        return ddpg_fns(population_ddpg_update, nets, hyper, as_batch)


def ddpg_fns(update: Callable[..., torch.Tensor], nets: Nets, hyper: Any,
             as_batch: Callable[[torch.Tensor], Batch]) -> UpdateFns:
    """``{True: fn(state, rows) -> update(nets, state, as_batch(rows), hyper)}``: every update is a full one."""

    def ddpg_step(state: LearnerState, rows: torch.Tensor) -> torch.Tensor:
        return update(nets, state, as_batch(rows), hyper)

    return {True: ddpg_step}
