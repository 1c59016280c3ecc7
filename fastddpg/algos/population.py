"""A population: K independent members of one algorithm trained as one learner (``--num-seeds K``).

Nothing is shared but the code. Every tensor of the learner state has a leading member dim, and the update
functions are the algorithm's own (`Algorithm.make_update_fns` over the stacked networks: `fastddpg.learning.update`'s
equations are shape-generic). For DDPG and TD3 (`Algorithm.build_stacked_networks`) the actors are one
`StackedActor` (K stacked), the critics one `PopulationCritic` of K*C stacked critics, member-major (TD3:
C = 2, member k's twins are rows 2k and 2k+1, so the per-row gradient clipping of the twin critic carries over
unchanged), the Adam moments are stacked like their parameters and each Adam step count is (K,). The
hyperparameters are (K,) tensors (`stack_hypers`), so one update function (one compiled graph, one CUDA graph)
serves every member whatever its grid point.

A population is built from K single-agent `Algorithm`s (`Population(members)`): member k starts with exactly
their weights, targets and optimizer states, and `member(k)` gives member k back as a single `Algorithm` (a
copy). That is how the tests compare a population update with K single updates.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..learning.networks import from_stacked, to_stacked
from ..learning.update import Batch, stack_hypers, unstack_hyper
from .base import Algorithm, UpdateFns


class Population(Algorithm):
    """K members of one algorithm (all DDPG or all TD3, same network sizes) as one stacked learner.

    Acting: ``explore(obs (K*N, obs_dim), noise (K*N, act_dim))``, rows k*N .. k*N + N - 1 being member k's N
    envs. Updates: rows (K, B, width + eps_dim), member k's batch from member k's replay rows; metrics
    (K, len(metric_names)).
    """

    def __init__(self, members: Sequence[Algorithm], repeats: int = 1) -> None:
        """``repeats=G``: the members are G equal blocks (a --grid's points, each with the same seeds) that share
        their extra random inputs: member k draws what member k + K/G draws (see `extra_inputs`)."""
        # no super().__init__(): the networks are stacked copies of the members', not fresh ones
        first = members[0]
        kinds = {(type(m), m.obs_dim, m.act_dim, m.hidden_sizes, m.layer_norm, m.policy_delay) for m in members}
        if len(kinds) != 1:
            raise ValueError("population members must share the algorithm, the network sizes and the policy delay")
        if repeats < 1 or len(members) % repeats:
            raise ValueError(f"{len(members)} members cannot form {repeats} equal blocks")
        self.template = first
        self.members = len(members)
        self.repeats = int(repeats)
        self.name, self.metric_names = first.name, first.metric_names
        self.actor_step_metrics, self.num_critics = first.actor_step_metrics, first.num_critics
        self.obs_dim, self.act_dim, self.device = first.obs_dim, first.act_dim, first.device
        self.policy_delay, self.hidden_sizes, self.layer_norm = first.policy_delay, first.hidden_sizes, first.layer_norm
        self.action_low, self.action_high = first.action_low, first.action_high
        self.hyper = stack_hypers([m.hyper for m in members], self.device)
        networks = first.build_stacked_networks(self.members)  # overwritten by load_member_: init is irrelevant
        self.module_names = tuple(networks)
        for name, module in networks.items():
            setattr(self, name, module.to(self.device))
        self.optimizer_groups = first.optimizer_groups
        self._bind_state(optim=None, members=self.members)
        for i, m in enumerate(members):
            self.load_member_(i, m)

    # --- members in and out --------------------------------------------------------------------------------------
    def _rows(self, group: str, k: int) -> slice:
        """Member k's rows of a stacked tensor of ``group`` (critics: C rows per member)."""
        c = self.num_critics if group.endswith("critic") else 1
        return slice(k * c, (k + 1) * c)

    def _buffers_of(self, name: str, single: Algorithm) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(this population's, ``single``'s) buffers of module ``name``, pairwise: a member's running statistics
        (stacked like parameters: member k's rows are `_rows`) or a buffer every member shares (the action
        bounds: the same shape in both)."""
        mine, theirs = dict(getattr(self, name).named_buffers()), dict(getattr(single, name).named_buffers())
        return [(mine[b], t) for b, t in theirs.items()]

    @torch.no_grad()
    def load_member_(self, k: int, single: Algorithm) -> None:
        """Make member k a copy of ``single`` (weights, targets, buffers such as running statistics, Adam moments and
        step count), in place."""
        for name in self.module_names:
            rows = self._rows(name, k)
            for mine, theirs in zip(self.state[name].values(), single.state[name].values(), strict=True):
                mine[rows].copy_(to_stacked(theirs))
            for mine, theirs in self._buffers_of(name, single):
                if mine.shape == theirs.shape:  # shared by every member (the action bounds)
                    mine.copy_(theirs)
                else:
                    mine[rows].copy_(to_stacked(theirs))
        for group, opt in self.state["optim"].items():
            theirs_opt, rows = single.state["optim"][group], self._rows(group, k)
            opt["step"][k].copy_(theirs_opt["step"])
            for key in ("exp_avg", "exp_avg_sq"):
                for mine, theirs in zip(opt[key], theirs_opt[key], strict=True):
                    mine[rows].copy_(to_stacked(theirs))

    @torch.no_grad()
    def member(self, k: int) -> Algorithm:
        """Member k as a single `Algorithm` (a copy: weights, targets, Adam states, its hyperparameters)."""
        single = copy.deepcopy(self.template)
        single.hyper = unstack_hyper(self.hyper, k)
        for name in self.module_names:
            rows = self._rows(name, k)
            for mine, theirs in zip(self.state[name].values(), single.state[name].values(), strict=True):
                theirs.copy_(from_stacked(mine[rows], theirs))
            for mine, theirs in self._buffers_of(name, single):
                theirs.copy_(mine if mine.shape == theirs.shape else from_stacked(mine[rows], theirs))
        for group, opt in self.state["optim"].items():
            theirs_opt, rows = single.state["optim"][group], self._rows(group, k)
            theirs_opt["step"].copy_(opt["step"][k])
            for key in ("exp_avg", "exp_avg_sq"):
                for mine, theirs in zip(opt[key], theirs_opt[key], strict=True):
                    theirs.copy_(from_stacked(mine[rows], theirs))
        return single

    # --- the updates --------------------------------------------------------------------------------------------
    @property
    def eps_dim(self) -> int:
        return self.template.eps_dim

    def extra_inputs(self, num_batches: int, batch_size: int, generator: torch.Generator) -> torch.Tensor | None:
        """The template's extra inputs for every member: (num_batches, K, batch_size, eps_dim), or None; one draw
        for the first K/repeats members, repeated for the other blocks."""
        block = self.members // self.repeats
        extra = self.template.extra_inputs(num_batches * block, batch_size, generator)
        if extra is None:
            return None
        extra = extra.reshape(num_batches, block, batch_size, -1)
        return extra if self.repeats == 1 else extra.repeat(1, self.repeats, 1, 1)

    def update_fns(self, as_batch: Callable[[torch.Tensor], Batch], width: int) -> UpdateFns:
        return self.template.make_update_fns(self.nets, self.hyper, as_batch, width)

    # --- acting ---------------------------------------------------------------------------------------------------
    def make_noise(self, cfg: Any, num_envs: int, generator: torch.Generator, sigma: float | torch.Tensor,
                   repeats: int = 1) -> Any:
        return self.template.make_noise(cfg, num_envs, generator, sigma, repeats)

    def _by_member(self, fn: Callable[[torch.Tensor], torch.Tensor], obs: torch.Tensor) -> torch.Tensor:
        """``fn`` on (K, N, obs_dim), for obs given flat (K*N, obs_dim) (member-major) or already (K, N, obs_dim)."""
        if obs.dim() == 3:
            return fn(obs)
        return fn(obs.reshape(self.members, -1, obs.shape[-1])).reshape(obs.shape[0], -1)

    def explore(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The members' algorithm's acting step (`Algorithm.explore`: DDPG's clip(mu_k(obs) + noise, low, high)),
        run with the stacked actor on each member's rows: obs (K*N, obs_dim), noise (K*N, act_dim) -> (K*N,
        act_dim) (or (K, N, .) -> (K, N, .)). An algorithm's ``explore`` reads only ``self.actor`` and the action
        bounds, so it runs here as it is, on (K, N, .) inputs."""
        k = self.members
        action = type(self.template).explore(self, obs.reshape(k, -1, obs.shape[-1]),
                                             noise.reshape(k, -1, noise.shape[-1]))
        return action.reshape(*obs.shape[:-1], -1)

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        """The members' algorithm's evaluation policy (`Algorithm.policy`: DDPG's mu_k(obs)) for each member's rows:
        obs (K*N, obs_dim) -> (K*N, act_dim), or (K, N, .) -> (K, N, .)."""
        return self._by_member(lambda o: type(self.template).policy(self, o), obs)

    def q1(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Each member's Q_1: obs (K, P, obs_dim), action (K, P, act_dim) -> (K, P, 1)."""
        q = self.critic(obs, action)
        return q if self.num_critics == 1 else q[:, 0]
