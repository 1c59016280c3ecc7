"""DDPG, the notebook's algorithm: one critic, every update a critic step, an actor step and a soft update."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..learning.analytic import AnalyticPlans, ddpg_parts, ddpg_update_analytic, hand_derivable
from ..learning.networks import Actor, Critic
from ..learning.update import METRIC_NAMES, Batch, LearnerState, Nets, ddpg_update
from .base import Algorithm, UpdateFns


class DDPG(Algorithm):
    name = "ddpg"
    metric_names = METRIC_NAMES
    num_critics = 1
    # on a 2-core AMD EPYC Zen 4 the hand-derived update runs at 1.03-1.12x the compiled one with 1 thread and
    # 0.88-0.96x with 2: a compile pays for itself, if at all, after 11 s / (1/319 - 1/363) s = ~29,000 updates from a
    # cold cache where the second core is slow, ~170,000 where it is fast; on a Zen 3 (0.94x and 0.88x) after
    # 12 s / (1/341 - 1/365) = ~62,000 and 12 s / (1/472 - 1/545) = ~42,000 (bench/results/PERFORMANCE_LOG.md); a
    # machine's first run is cold
    analytic_auto_max_updates = 30_000

    def make_update_fns(self, nets: Nets, hyper: Any, as_batch: Callable[[torch.Tensor], Batch],
                        width: int) -> UpdateFns:
        """``{True: fn(state, rows) -> ddpg_update(nets, state, as_batch(rows), hyper)}``: every update is a full
        one."""

        def ddpg_step(state: LearnerState, rows: torch.Tensor) -> torch.Tensor:
            return ddpg_update(nets, state, as_batch(rows), hyper)

        return {True: ddpg_step}

    def analytic_update_fns(self, as_batch: Callable[[torch.Tensor], Batch], width: int,
                            graphs: bool = True) -> UpdateFns | None:
        """``{True: fn(state, rows) -> ddpg_update_analytic(...)}`` where the actor and critic are the plain MLPs whose
        reverse mode `fastddpg.learning.analytic` writes out (`hand_derivable`); None otherwise (LayerNorm).
        ``graphs``: its gradient parts as traced graphs (`fastddpg.learning.graphs`), else eager."""
        if not (hand_derivable(self.actor, Actor, nn.Tanh) and hand_derivable(self.critic, Critic, nn.Identity)):
            return None
        hyper, plans, parts = self.hyper, AnalyticPlans(self.nets), ddpg_parts(as_batch, self.hyper, graphs)

        def ddpg_analytic_step(state: LearnerState, rows: torch.Tensor) -> torch.Tensor:
            return ddpg_update_analytic(plans(state), state, rows, hyper, parts)

        return {True: ddpg_analytic_step}
