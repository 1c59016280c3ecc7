"""TD3 (exercise 3): twin critics with the min in the target, target policy smoothing, a delayed actor.

The smoothing noise eps is an extra input, drawn by the trainer with the batch indices and appended to each row,
so the update holds no RNG. The policy delay is a host-side choice between two functions (critic only; critic,
actor and targets), each compiled to its own graph: no data-dependent branch on the device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..learning.analytic import AnalyticPlans, hand_derivable, td3_parts, td3_update_analytic
from ..learning.networks import Actor, TwinCritic
from ..learning.update import TD3_METRIC_NAMES, Batch, LearnerState, Nets, td3_update
from .base import Algorithm, UpdateFns


class TD3(Algorithm):
    name = "td3"
    # critic_loss: the mean over the two critics of their MSE (comparable with DDPG's); actor_loss: 0 on
    # critic-only updates, so averaged over actor steps; q_mean = q1_mean (the critic the actor ascends);
    # target_min_mean: mean of min_i Q'_i(s', a~), before r and gamma.
    metric_names = TD3_METRIC_NAMES
    num_critics = 2
    # the hand-derived update runs at ~0.8x the compiled one on a 2-core CPU: a cold compile (11 s) pays for itself
    # after 11 s / (1/266 - 1/327) s = ~16,000 updates
    analytic_auto_max_updates = 15_000

    @classmethod
    def options_from_config(cls, cfg: Any) -> dict[str, Any]:
        return {"policy_delay": cfg.policy_delay}

    @property
    def eps_dim(self) -> int:
        return self.act_dim

    def extra_inputs(self, num_batches: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """Standard normal smoothing noise eps, (num_batches, batch_size, act_dim)."""
        return torch.randn(num_batches, batch_size, self.act_dim, device=self.device, generator=generator)

    def make_update_fns(self, nets: Nets, hyper: Any, as_batch: Callable[[torch.Tensor], Batch],
                        width: int) -> UpdateFns:
        """The critic-only and the full update (one of them when the policy delay is 1); the smoothing noise is each
        row's columns past ``width``."""
        policy_delay = self.policy_delay

        # two separate defs, so each compiles to its own graph (one closure with a flag would recompile)
        def td3_critic_step(state: LearnerState, rows: torch.Tensor) -> torch.Tensor:
            return td3_update(nets, state, as_batch(rows), rows[..., width:], hyper, actor_step=False)

        def td3_full_step(state: LearnerState, rows: torch.Tensor) -> torch.Tensor:
            return td3_update(nets, state, as_batch(rows), rows[..., width:], hyper, actor_step=True)

        return {True: td3_full_step} if policy_delay == 1 else {False: td3_critic_step, True: td3_full_step}

    def analytic_update_fns(self, as_batch: Callable[[torch.Tensor], Batch], width: int,
                            graphs: bool = True) -> UpdateFns | None:
        """`make_update_fns`'s functions with hand-derived gradients (`fastddpg.learning.analytic.td3_update_analytic`)
        where the actor and the twin critics are the plain MLPs it derives (`hand_derivable`); None otherwise.
        ``graphs``: its gradient parts as traced graphs (`fastddpg.learning.graphs`), else eager."""
        if not (hand_derivable(self.actor, Actor, nn.Tanh) and hand_derivable(self.critic, TwinCritic, nn.Identity)):
            return None
        hyper, plans, parts = self.hyper, AnalyticPlans(self.nets), td3_parts(as_batch, width, self.hyper, graphs)

        def td3_analytic_critic_step(state: LearnerState, rows: torch.Tensor) -> torch.Tensor:
            return td3_update_analytic(plans(state), state, rows, hyper, parts, actor_step=False)

        def td3_analytic_full_step(state: LearnerState, rows: torch.Tensor) -> torch.Tensor:
            return td3_update_analytic(plans(state), state, rows, hyper, parts, actor_step=True)

        if self.policy_delay == 1:
            return {True: td3_analytic_full_step}
        return {False: td3_analytic_critic_step, True: td3_analytic_full_step}
