"""What every algorithm owns, so that the trainer, checkpoints and evaluation never ask which algorithm runs.

An `Algorithm` holds:

- its networks, as modules (``actor``, ``critic``, ``target_actor``, ``target_critic``: ordinary ``nn.Module``s
  with ``state_dict``s) whose parameters are views of its explicit learner state ``state``
  (`fastddpg.update.LearnerState`: parameters, targets, and one Adam state per entry of ``optimizers``);
- its update functions ``fn(state, rows) -> metrics`` and which one runs for the u-th update (`is_actor_step`);
- the extra random inputs its update takes, drawn by the trainer with the batch indices (`extra_inputs`);
- its metric names, and which of them are averaged over actor steps only (``actor_step_metrics``);
- the acting step (`explore`) and the evaluation policy (`policy`).

To add an algorithm: subclass, set the class attributes, write `update_fns` over the equations of
`fastddpg.update`, and register the class in `fastddpg.algos.ALGORITHMS` (and its name in `Config`'s choices).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from ..networks import build_actor, build_critic
from ..update import AdamHyper, Batch, Hyper, LearnerState, Nets, Params, adam_state

UpdateFns = dict[bool, Callable[[LearnerState, torch.Tensor], torch.Tensor]]
MODULES = ("actor", "critic", "target_actor", "target_critic")


class Algorithm:
    """An actor-critic learner: networks, state, updates, metrics, exploration (see the module docstring).

    Args:
        obs_dim, act_dim: flat observation and action sizes.
        hidden_sizes: hidden layer widths of every network.
        action_low, action_high: the env's action bounds, (act_dim,) each.
        device: where every tensor lives.
        hyper: gamma, tau, gradient clipping, the two Adams' hyperparameters (and TD3's smoothing noise).
        layer_norm: LayerNorm after each hidden Linear of every network.
        policy_delay: critic updates per actor update (TD3; 1 for DDPG).
    """

    name: ClassVar[str]
    metric_names: ClassVar[tuple[str, ...]]
    actor_step_metrics: ClassVar[frozenset[str]] = frozenset({"actor_loss"})  # averaged over actor steps only
    num_critics: ClassVar[int] = 1

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], action_low: torch.Tensor,
                 action_high: torch.Tensor, device: torch.device, hyper: Hyper, layer_norm: bool = False,
                 policy_delay: int = 1) -> None:
        self.obs_dim, self.act_dim, self.device = obs_dim, act_dim, torch.device(device)
        self.hyper, self.policy_delay = hyper, policy_delay
        self.hidden_sizes, self.layer_norm = tuple(hidden_sizes), layer_norm
        self.action_low = torch.as_tensor(action_low, dtype=torch.float32, device=self.device)
        self.action_high = torch.as_tensor(action_high, dtype=torch.float32, device=self.device)
        self.actor = build_actor(obs_dim, act_dim, hidden_sizes, action_low, action_high, layer_norm).to(device)
        self.critic = build_critic(obs_dim, act_dim, hidden_sizes, self.num_critics, layer_norm).to(device)
        self.target_actor = copy.deepcopy(self.actor)  # target networks start as exact copies
        self.target_critic = copy.deepcopy(self.critic)
        self._bind_state(optim=None)

    @classmethod
    def from_config(cls, cfg: Any, obs_dim: int, act_dim: int, action_low: torch.Tensor, action_high: torch.Tensor,
                    device: torch.device) -> Algorithm:
        """Built from a `fastddpg.Config`'s fields."""
        hyper = Hyper(cfg.gamma, cfg.tau, cfg.grad_clip_norm, AdamHyper(cfg.actor_lr), AdamHyper(cfg.critic_lr),
                      cfg.policy_noise, cfg.noise_clip)
        return cls(obs_dim, act_dim, cfg.hidden_sizes, action_low, action_high, device, hyper, cfg.layer_norm,
                   **cls.options_from_config(cfg))

    @classmethod
    def options_from_config(cls, cfg: Any) -> dict[str, Any]:
        """Constructor options beyond the common ones (TD3: the policy delay)."""
        return {}

    def _bind_state(self, optim: dict[str, Any] | None) -> None:
        """``state`` over the modules' parameter storage (aliases, updated in place) and Adam states (fresh, or
        ``optim``'s tensors)."""
        params = {name: _aliases(m) for name, m in self.modules().items()}
        self.state: LearnerState = {**params, "optim": optim if optim is not None else
                                    {"actor": adam_state(params["actor"]), "critic": adam_state(params["critic"])}}
        self.nets = Nets(self.actor, self.critic, self.action_low, self.action_high)

    @property
    def optimizers(self) -> dict[str, AdamHyper]:
        """Each optimizer's hyperparameters, by the parameter group it steps (its state is ``state["optim"]``)."""
        return {"actor": self.hyper.actor, "critic": self.hyper.critic}

    def modules(self) -> dict[str, nn.Module]:
        return {name: getattr(self, name) for name in MODULES}

    # --- the updates --------------------------------------------------------------------------------------------
    @property
    def eps_dim(self) -> int:
        """Columns of extra random input appended to each row (`extra_inputs`); 0 if none."""
        return 0

    def extra_inputs(self, num_batches: int, batch_size: int, generator: torch.Generator) -> torch.Tensor | None:
        """Random inputs of the next ``num_batches`` updates, (num_batches, batch_size, eps_dim), drawn with the
        trainer's generator (so compiled and eager updates see the same numbers); None if none."""
        return None

    def update_fns(self, as_batch: Callable[[torch.Tensor], Batch], width: int) -> UpdateFns:
        """The uncompiled update functions ``fn(state, rows (B, width + eps_dim)) -> metrics (len(metric_names),)``,
        keyed by whether they include the actor step; ``as_batch`` splits a replay row's first ``width`` columns."""
        raise NotImplementedError

    def population_update_fns(self, nets: Nets, hyper: Any, as_batch: Callable[[torch.Tensor], Batch],
                              width: int) -> UpdateFns:
        """`update_fns` of a population of this algorithm (`fastddpg.algos.population`): the same functions over
        stacked ``nets`` and per-member ``hyper`` (`fastddpg.update.MemberHyper`), rows (K, B, width + eps_dim),
        metrics (K, len(metric_names))."""
        raise NotImplementedError

    def is_actor_step(self, update_number: int) -> bool:
        """Whether update number ``update_number`` (1-based) is a full one (actor step and target update)."""
        return update_number % self.policy_delay == 0

    # --- acting ---------------------------------------------------------------------------------------------------
    def explore(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The acting step: clip(mu(obs) + noise, low, high), obs (N, obs_dim), noise (N, act_dim) -> (N, act_dim)."""
        return torch.clamp(self.actor(obs) + noise, self.action_low, self.action_high)

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        """The evaluation policy: mu(obs), no noise. obs (N, obs_dim) -> (N, act_dim)."""
        return self.actor(obs)

    def q1(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Q (B, 1) of the critic the actor ascends (DDPG's critic, TD3's Q_1)."""
        q = self.critic(obs, action)
        return q if self.num_critics == 1 else q[0]

    # --- state_dict ------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """{"modules": each module's state_dict (aliases of the live weights), "optimizers": {name: {"step",
        "exp_avg", "exp_avg_sq"}} (copies)}."""
        return {"modules": {name: m.state_dict() for name, m in self.modules().items()},
                "optimizers": {name: {"step": opt["step"].clone(), "exp_avg": [t.clone() for t in opt["exp_avg"]],
                                      "exp_avg_sq": [t.clone() for t in opt["exp_avg_sq"]]}
                               for name, opt in self.state["optim"].items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy a `state_dict` in place (compiled and captured update graphs stay valid)."""
        for name, module in self.modules().items():
            module.load_state_dict(state["modules"][name])
        for name, opt in self.state["optim"].items():
            saved = state["optimizers"][name]
            opt["step"].copy_(saved["step"])
            torch._foreach_copy_(opt["exp_avg"], [t.to(self.device) for t in saved["exp_avg"]])
            torch._foreach_copy_(opt["exp_avg_sq"], [t.to(self.device) for t in saved["exp_avg_sq"]])

    def __deepcopy__(self, memo: dict) -> Algorithm:
        """A copy whose state aliases the copy's own modules (a plain deepcopy would not)."""
        new = copy.copy(self)
        for name, module in self.modules().items():
            setattr(new, name, copy.deepcopy(module, memo))
        new._bind_state(optim=copy.deepcopy(self.state["optim"], memo))
        return new


def _aliases(module: nn.Module) -> Params:
    for p in module.parameters():
        p.requires_grad_(False)  # gradients come from torch.func, never from .grad fields
    return {name: p.detach() for name, p in module.named_parameters()}
