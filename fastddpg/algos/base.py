"""What every algorithm owns, so that the trainer, checkpoints and evaluation never ask which algorithm runs.

An `Algorithm` holds:

- its networks (`build_networks`), as modules (ordinary ``nn.Module``s with ``state_dict``s; DDPG and TD3 have
  ``actor``, ``critic``, ``target_actor``, ``target_critic``; an algorithm without target networks simply builds
  none, one with a learned temperature adds a module holding it) whose parameters are views of its explicit
  learner state ``state`` (`fastddpg.learning.update.LearnerState`: every module's parameters by module name, and one
  Adam state per optimizer group);
- its optimizer groups (``optimizer_groups``: the modules Adam steps, any number of them; the Adam
  hyperparameters of each are `optimizers`);
- its hyperparameters ``hyper`` (`hyper_from_config`): a NamedTuple of floats for one agent; a population stacks
  them into (K,) tensors (`fastddpg.learning.update.stack_hypers`), so one graph serves members at different ``--grid``
  points. Which Config fields may differ per member is the registry's (`fastddpg.core.registry`);
- its update functions ``fn(state, rows) -> metrics`` (`make_update_fns`, the same functions for one agent and a
  population) and which one runs for the u-th update (`is_actor_step`);
- the extra random inputs its update takes, drawn by the trainer with the batch indices (`extra_inputs`);
- its metric names (``metric_names``: they start with `fastddpg.core.registry.CORE_METRICS`), and which of them are
  averaged over actor steps only (``actor_step_metrics``);
- how it acts: the exploration noise (`make_noise`), the acting step (`explore`) and the evaluation policy
  (`policy`);
- how a saved policy is rebuilt for evaluation, export and checkpoints (`policy_from_state_dict`).

To add an algorithm: a subclass in a file of its own under ``fastddpg/algos/`` and its entry in
`fastddpg.core.registry.ALGORITHMS` (see CONTRIBUTING.md, "How to add an algorithm").
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from ..learning.networks import PopulationCritic, StackedActor, actor_from_state_dict, build_actor, build_critic
from ..learning.noise import make_noise
from ..learning.update import AdamHyper, Batch, Hyper, LearnerState, Nets, Params, adam_state

UpdateFns = dict[bool, Callable[[LearnerState, torch.Tensor], torch.Tensor]]


class Algorithm:
    """An actor-critic learner: networks, state, updates, metrics, acting (see the module docstring).

    Args:
        obs_dim, act_dim: flat observation and action sizes.
        hidden_sizes: hidden layer widths of every network.
        action_low, action_high: the env's action bounds, (act_dim,) each.
        device: where every tensor lives.
        hyper: the update's hyperparameters (`hyper_from_config`'s record: DDPG and TD3 take
            `fastddpg.learning.update.Hyper`).
        layer_norm: LayerNorm after each hidden Linear of every network.
        policy_delay: critic updates per actor update (TD3; 1 for DDPG).
    """

    name: ClassVar[str]
    metric_names: ClassVar[tuple[str, ...]]
    actor_step_metrics: ClassVar[frozenset[str]] = frozenset({"actor_loss"})  # averaged over actor steps only
    num_critics: ClassVar[int] = 1
    optimizer_groups: ClassVar[tuple[str, ...]] = ("actor", "critic")  # modules Adam steps, one Adam state each
    # `analytic_update_fns`' runs under ``--compile auto`` on a CPU: those of fewer updates than this (0: never)
    analytic_auto_max_updates: ClassVar[int] = 0

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], action_low: torch.Tensor,
                 action_high: torch.Tensor, device: torch.device, hyper: Any, layer_norm: bool = False,
                 policy_delay: int = 1) -> None:
        self.obs_dim, self.act_dim, self.device = obs_dim, act_dim, torch.device(device)
        self.hyper, self.policy_delay = hyper, policy_delay
        self.hidden_sizes, self.layer_norm = tuple(hidden_sizes), layer_norm
        self.action_low = torch.as_tensor(action_low, dtype=torch.float32, device=self.device)
        self.action_high = torch.as_tensor(action_high, dtype=torch.float32, device=self.device)
        networks = self.build_networks()
        self.module_names = tuple(networks)
        for name, module in networks.items():
            setattr(self, name, module.to(self.device))
        self._bind_state(optim=None)

    # --- what a subclass may change -----------------------------------------------------------------------------
    def build_networks(self) -> dict[str, nn.Module]:
        """The algorithm's modules by name, built in this order (the order of the initial random draws). Here: a
        deterministic actor and ``num_critics`` critics, each with a target network that starts as its exact copy."""
        actor = build_actor(self.obs_dim, self.act_dim, self.hidden_sizes, self.action_low,
                            self.action_high, self.layer_norm)
        critic = build_critic(self.obs_dim, self.act_dim, self.hidden_sizes, self.num_critics, self.layer_norm)
        return {"actor": actor, "critic": critic, "target_actor": copy.deepcopy(actor),
                "target_critic": copy.deepcopy(critic)}

    def build_stacked_networks(self, members: int) -> dict[str, nn.Module]:
        """`build_networks` of a population of ``members`` (`fastddpg.algos.population`): the same names, each
        module holding K stacked networks (critics: K * num_critics, member-major); their initial weights are
        overwritten with the members'."""
        k, o, a = members, self.obs_dim, self.act_dim
        actors = [StackedActor(k, o, a, self.hidden_sizes, self.action_low, self.action_high,
                               self.layer_norm) for _ in range(2)]
        critics = [PopulationCritic(k, o, a, self.hidden_sizes, self.num_critics, self.layer_norm) for _ in range(2)]
        return {"actor": actors[0], "critic": critics[0], "target_actor": actors[1], "target_critic": critics[1]}

    @classmethod
    def hyper_from_config(cls, cfg: Any) -> Any:
        """The update's hyperparameters from a `fastddpg.Config` (one member's): floats."""
        return Hyper(cfg.gamma, cfg.tau, cfg.grad_clip_norm, AdamHyper(cfg.actor_lr), AdamHyper(cfg.critic_lr),
                     cfg.policy_noise, cfg.noise_clip)

    @classmethod
    def options_from_config(cls, cfg: Any) -> dict[str, Any]:
        """Constructor options beyond the common ones (TD3: the policy delay)."""
        return {}

    @classmethod
    def from_config(cls, cfg: Any, obs_dim: int, act_dim: int, action_low: torch.Tensor, action_high: torch.Tensor,
                    device: torch.device) -> Algorithm:
        """Built from a `fastddpg.Config`'s fields."""
        return cls(obs_dim, act_dim, cfg.hidden_sizes, action_low, action_high, device, cls.hyper_from_config(cfg),
                   cfg.layer_norm, **cls.options_from_config(cfg))

    @property
    def optimizers(self) -> dict[str, AdamHyper]:
        """Each optimizer group's Adam hyperparameters, by the module it steps (its state is ``state["optim"]``)."""
        return {"actor": self.hyper.actor, "critic": self.hyper.critic}

    def make_update_fns(self, nets: Nets, hyper: Any, as_batch: Callable[[torch.Tensor], Batch],
                        width: int) -> UpdateFns:
        """The uncompiled update functions ``fn(state, rows) -> metrics``, keyed by whether they include the actor
        step, over ``nets`` and ``hyper``: this algorithm's own (rows (B, width + eps_dim), metrics
        (len(metric_names),)) or a population's stacked ones (rows (K, B, ...), metrics (K, ...)): the same
        functions serve both. ``as_batch`` splits a replay row's first ``width`` columns."""
        raise NotImplementedError

    def analytic_update_fns(self, as_batch: Callable[[torch.Tensor], Batch], width: int,
                            graphs: bool = True) -> UpdateFns | None:
        """This learner's update functions with hand-derived gradients (`fastddpg.learning.analytic`: no autograd,
        no compile; ``--compile analytic``), keyed like `update_fns`; None where the algorithm or its networks have
        none (here; DDPG and TD3 have one). ``graphs``: their gradient parts as traced graphs
        (`fastddpg.learning.graphs`), else eager."""
        return None

    # --- state ------------------------------------------------------------------------------------------------
    def _bind_state(self, optim: dict[str, Any] | None, members: int = 0) -> None:
        """``state`` over the modules' parameter storage (aliases, updated in place) and Adam states (fresh, or
        ``optim``'s tensors); ``members``: a population's step count per member."""
        params = {name: _aliases(m) for name, m in self.modules().items()}
        self.state: LearnerState = {**params, "optim": optim if optim is not None else
                                    {g: adam_state(params[g], members) for g in self.optimizer_groups}}
        self.nets = Nets(self.actor, self.critic, self.action_low, self.action_high)

    def modules(self) -> dict[str, nn.Module]:
        return {name: getattr(self, name) for name in self.module_names}

    # --- the updates --------------------------------------------------------------------------------------------
    def update_fns(self, as_batch: Callable[[torch.Tensor], Batch], width: int) -> UpdateFns:
        """This learner's update functions (`make_update_fns` over its own networks and hyperparameters)."""
        return self.make_update_fns(self.nets, self.hyper, as_batch, width)

    @property
    def eps_dim(self) -> int:
        """Columns of extra random input appended to each row (`extra_inputs`); 0 if none."""
        return 0

    def extra_inputs(self, num_batches: int, batch_size: int, generator: torch.Generator) -> torch.Tensor | None:
        """Random inputs of the next ``num_batches`` updates, (num_batches, batch_size, eps_dim), drawn with the
        trainer's generator (so compiled and eager updates see the same numbers); None if none."""
        return None

    def is_actor_step(self, update_number: int) -> bool:
        """Whether update number ``update_number`` (1-based) is a full one (actor step and target update)."""
        return update_number % self.policy_delay == 0

    # --- acting ---------------------------------------------------------------------------------------------------
    def make_noise(self, cfg: Any, num_envs: int, generator: torch.Generator, sigma: float | torch.Tensor,
                   repeats: int = 1) -> Any:
        """The exploration noise process whose ``sample()`` (num_envs, act_dim) `explore` takes: ``cfg.noise``'s
        (`fastddpg.learning.noise.make_noise`; ``sigma`` a float, or (num_envs, 1) per env). An algorithm that
        explores by
        sampling its own stochastic policy returns a process of zeros, or one that draws its own standard
        normals."""
        return make_noise(cfg, num_envs, self.act_dim, self.device, generator, sigma, repeats=repeats)

    # `explore` and `policy` read only ``self.actor``, ``self.action_low`` and ``self.action_high``: a population
    # runs them as they are, with its stacked actor on (K, N, .) inputs (`fastddpg.algos.population`).
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

    @classmethod
    def policy_from_state_dict(cls, state: dict[str, torch.Tensor], hidden_sizes: Sequence[int],
                               layer_norm: bool = False, member: int = 0, members: int = 1) -> nn.Module:
        """The eval-mode policy module (obs (B, obs_dim) -> action (B, act_dim), deterministic, with the
        ``action_scale``/``action_bias`` buffers) that a saved ``actor`` state_dict describes; of a population's
        stacked one, member ``member``'s. Evaluation, export, `fastddpg.load_policy` and checkpoints all rebuild a
        policy here."""
        return actor_from_state_dict(state, hidden_sizes, layer_norm, member, members)

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
