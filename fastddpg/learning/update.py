"""The DDPG update: all of fastddpg's math, each line matched to an equation of the notebook.

    y        = r + gamma (1 - d) Q_phi'(s', mu_theta'(s'))          (critic target, target networks)
    L(phi)   = E[(Q_phi(s, a) - y)^2]                                (critic loss)
    L(theta) = -E[Q_phi(s, mu_theta(s))]                             (actor loss, deterministic policy gradient)
    theta'  <- tau theta + (1 - tau) theta',  phi' likewise          (soft target update)

The update is a function of an explicit learner state (`LearnerState`: every parameter, target parameter and
optimizer tensor, updated in place) and a batch, over parameter tensors (``torch.func``), not over ``.grad``
fields and optimizer objects: that way the critic step, the actor step and the soft update trace as one graph
that ``torch.compile(fullgraph=True)`` can fuse and a CUDA graph can capture. The networks (`Nets`) enter only
as the functions the state's parameters are evaluated with. This module is all of fastddpg's math; compiling
is `fastddpg.learning.compile`, and which update runs when is the algorithm's (`fastddpg.algos`). Consequences, on
purpose:

- d is ``terminated`` only. A time-limit truncation is not a terminal state, so the target bootstraps
  through it (the notebook's ``done = terminated or truncated`` is the bug fastddpg does not copy).
- The actor gradient is taken with respect to the actor's parameters only: the critic's parameters enter
  as constants, so no critic weight gradients are computed for the actor loss (the notebook computes and
  discards them).
- Adam is written out (`adam_step_`) with its step count as a device tensor, so no bias-correction value
  is ever read back to the host; it matches ``torch.optim.Adam`` (tested).
- Nothing here calls ``.item()``; metrics come back as one device tensor.

One agent or a population, the same equations. Each equation is written once, shape-generically: it reduces over
the batch dims (the last two, (B, 1)) and broadcasts per-member values with `per_member`. What differs is only
what goes in:

- one agent: a batch (B, ...), unstacked modules (a TD3 critic is a `TwinCritic`, C stacked critics), and
  hyperparameters as Python floats, which the compiler folds into the graph as constants;
- a population of K members (``--num-seeds``, ``--grid``): a batch (K, B, ...), stacked modules (member k's rows;
  K*C rows for C critics per member, member-major), and hyperparameters as (K,) tensors (`stack_hypers`), so one
  graph serves every member whatever its grid point. Member k's loss is its own batch mean; the update
  differentiates the sum over members, and since no parameter is shared, member k's gradient is exactly the
  gradient of its own loss. Clipping, Adam and the soft update act per stacked row with its member's values.

A critic's output is Q (*M, B, 1) with one critic per member, (*M, C, B, 1) with C (the module's ``num_critics``);
M is () for one agent and (K,) for a population. Metrics are (n,) for one agent, (K, n) for a population.

TD3 (``--algo td3``: twin critics, target policy smoothing, policy delay) is the last section of this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Union

import torch
from torch import nn
from torch.func import functional_call, grad_and_value

from ..core.registry import CORE_METRICS
from .realize import realized

Params = dict[str, torch.Tensor]
AdamState = dict  # {"step": float tensor, 0-d or (K,), "exp_avg": list of tensors, "exp_avg_sq": list of tensors}
LearnerState = dict  # see the LearnerState section below
Scalar = Union[float, torch.Tensor]  # noqa: UP007  a float for one agent, a (K,) tensor for a population
METRIC_NAMES = CORE_METRICS  # DDPG's metrics: the core every algorithm's start with


class Batch(NamedTuple):
    """A minibatch of B transitions. obs/next_obs (B, obs_dim), action (B, act_dim), reward/terminated (B, 1); a
    population's has a leading member dim (K, B, ...)."""

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor


class Nets(NamedTuple):
    """The functions a learner state is evaluated with: ``actor`` (obs (*M, B, obs_dim) -> action (*M, B, act_dim))
    and ``critic`` (obs, action -> Q, see the module docstring), run by ``functional_call`` with the online or the
    target parameters alike; and the env's action bounds, (act_dim,) each."""

    actor: nn.Module
    critic: nn.Module
    action_low: torch.Tensor
    action_high: torch.Tensor


class AdamHyper(NamedTuple):
    """Adam's hyperparameters (``torch.optim.Adam``'s defaults); ``lr`` is (K,) in a population."""

    lr: Scalar
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    shared = frozenset({"betas", "eps"})  # the same for every member of a population (`stack_hypers`)


class Hyper(NamedTuple):
    """The update's hyperparameters: floats for one agent, (K,) tensors for a population (`stack_hypers`). TD3
    reads ``policy_noise`` and ``noise_clip`` (action-scale units)."""

    gamma: Scalar
    tau: Scalar
    grad_clip_norm: Scalar
    actor: AdamHyper
    critic: AdamHyper
    policy_noise: Scalar = 0.2
    noise_clip: Scalar = 0.5


def stack_hypers(hypers: Sequence[Any], device: torch.device) -> Any:
    """The hyperparameters of K members as one record of the same type (a NamedTuple): every number field becomes a
    (K,) float32 tensor on ``device`` (a per-member value), nested records likewise; the fields the record's class
    names in ``shared`` (Adam's betas and eps), and any that is not a number, must be the same for every member."""
    first = hypers[0]
    values = {}
    for name in first._fields:
        column = [getattr(h, name) for h in hypers]
        if isinstance(column[0], tuple) and hasattr(column[0], "_fields"):
            values[name] = stack_hypers(column, device)
        elif (isinstance(column[0], (int, float)) and not isinstance(column[0], bool)
              and name not in getattr(first, "shared", ())):
            values[name] = torch.tensor([float(v) for v in column], dtype=torch.float32, device=device)
        elif any(v != column[0] for v in column):
            raise ValueError(f"population members must share {name} ({column[0]!r} != {column[1:]!r})")
        else:
            values[name] = column[0]
    return type(first)(**values)


def unstack_hyper(stacked: Any, k: int) -> Any:
    """Member k's hyperparameters (floats) from a population's (`stack_hypers`)."""
    values = {}
    for name in stacked._fields:
        v = getattr(stacked, name)
        if isinstance(v, torch.Tensor):
            v = float(v[k])
        elif isinstance(v, tuple) and hasattr(v, "_fields"):
            v = unstack_hyper(v, k)
        values[name] = v
    return type(stacked)(**values)


def per_member(x: Scalar, like: torch.Tensor) -> Scalar:
    """A value shaped to broadcast over ``like``, whose leading dim is stacked rows (K members, or K*C critics,
    member-major): a float or a 0-d tensor (one agent) is returned unchanged; a per-member (K,) tensor has each
    entry repeated for its member's consecutive rows and is reshaped to (rows, 1, ..., 1)."""
    if not isinstance(x, torch.Tensor) or x.dim() == 0:
        return x
    c = like.shape[0] // x.shape[0]
    if c > 1:
        x = x.repeat_interleave(c)
    return x.reshape(-1, *([1] * (like.dim() - 1)))


def per_tensor(x: Scalar, tensors: list[torch.Tensor]) -> Scalar | list[torch.Tensor]:
    """``x`` as a foreach op's scalar argument over ``tensors``: as it is for one agent, else `per_member` of each."""
    if not isinstance(x, torch.Tensor) or x.dim() == 0:
        return x
    return [per_member(x, t) for t in tensors]


def batch_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean over the batch dims (the last two, (B, 1)): (*lead, B, 1) -> (*lead)."""
    return x.mean(dim=(-2, -1))


# --- the learner state ----------------------------------------------------------------------------------------
#
#     state = {"actor": Params, "critic": Params, "target_actor": Params, "target_critic": Params,
#              "optim": {"actor": AdamState, "critic": AdamState}}
#
# Params map parameter names (as in the modules' state_dicts) to tensors; an AdamState's lists follow its Params'
# order. Every update writes these tensors in place, so their identity never changes: a compiled graph or a
# captured CUDA graph keeps working, and modules whose parameters alias them (fastddpg.algos) show the current
# weights. A population's tensors have a leading member dim (K rows, K*C for critics) and its step counts are (K,).

def adam_state(params: Params, members: int = 0) -> AdamState:
    """A fresh Adam state for ``params``: zero moments, step 0 (a 0-d float tensor on their device; (K,) for a
    population of ``members`` = K)."""
    first = next(iter(params.values()))
    return {"step": torch.zeros((members,) if members else (), dtype=torch.float32, device=first.device),
            "exp_avg": [torch.zeros_like(p) for p in params.values()],
            "exp_avg_sq": [torch.zeros_like(p) for p in params.values()]}


# --- the equations -------------------------------------------------------------------------------------------

def bellman_target(batch: Batch, q_next: torch.Tensor, gamma: Scalar) -> torch.Tensor:
    """y = r + gamma (1 - d) q_next for the next state's value q_next (*M, B, 1): (*M, B, 1). d is ``terminated``
    only: a truncated episode bootstraps."""
    if isinstance(gamma, float):
        return torch.addcmul(batch.reward, 1.0 - batch.terminated, q_next, value=gamma)  # the same sum, 2 ops not 4
    return batch.reward + per_member(gamma, q_next) * (1.0 - batch.terminated) * q_next


def td_target(nets: Nets, state: LearnerState, batch: Batch, gamma: Scalar) -> torch.Tensor:
    """y = r + gamma (1 - d) Q_phi'(s', mu_theta'(s')), shape (*M, B, 1); no gradient flows through it."""
    with torch.no_grad():
        next_action = functional_call(nets.actor, state["target_actor"], (batch.next_obs,))
        q_next = functional_call(nets.critic, state["target_critic"], (batch.next_obs, next_action))
        return bellman_target(batch, q_next, gamma)


def critic_loss(critic: nn.Module, critic_params: Params, batch: Batch, y: torch.Tensor
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """L(phi) = sum over critics of mean_b (Q_phi(s, a) - y)^2: each of a member's C critics regresses to the same
    y (*M, B, 1). Returns (the sum, (each critic's MSE (*M) or (*M, C), Q), detached)."""
    q = functional_call(critic, critic_params, (batch.obs, batch.action))
    per_critic = td_mse(q, y, critic.num_critics)
    return per_critic.sum(), (per_critic.detach(), q.detach())


def td_mse(q: torch.Tensor, y: torch.Tensor, num_critics: int = 1) -> torch.Tensor:
    """mean_b (Q - y)^2 of each critic: Q (*M, B, 1), or (*M, C, B, 1) with ``num_critics`` C > 1, against the same
    y (*M, B, 1). Returns (*M) or (*M, C)."""
    return batch_mean((q - (y.unsqueeze(-3) if num_critics > 1 else y)).square())


def first_critic(params: Params, num_critics: int) -> Params:
    """Q_1's parameters of every member: row 0 of each member's ``num_critics`` stacked critics (all of them for
    one critic per member)."""
    return params if num_critics == 1 else {name: p[::num_critics] for name, p in params.items()}


def actor_loss(actor: nn.Module, actor_params: Params, critic: nn.Module, critic_params: Params,
               obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """L(theta) = -mean_b Q_1(s, mu_theta(s)) per member (Q_1: the first critic; Q_2 is not even evaluated);
    differentiate with respect to ``actor_params`` only. Returns (the sum over members, per member (*M), detached)."""
    action = functional_call(actor, actor_params, (obs,))
    q = functional_call(critic, first_critic(critic_params, critic.num_critics), (obs, action))
    loss = (-batch_mean(q)).reshape(obs.shape[:-2])
    return loss.sum(), loss.detach()


def clip_grad_norm_(grads: list[torch.Tensor], max_norm: Scalar, stacked: bool = False) -> None:
    """Scale ``grads`` in place so their global L2 norm is at most ``max_norm`` (as clip_grad_norm_ does); 0 = no
    clipping. ``stacked``: the grads are R stacked networks (leading dim: twin critics, population members), each
    clipped to its own norm, as R separate calls would, with `per_member` limits."""
    if not clips(max_norm):
        return
    coef = clip_coef(grad_norm(grads, stacked), max_norm)
    torch._foreach_mul_(grads, per_tensor(coef, grads) if stacked else coef)


def clips(max_norm: Scalar) -> bool:
    """Whether ``max_norm`` clips at all (a float 0 does not; a population's (K,) limits decide per member)."""
    return isinstance(max_norm, torch.Tensor) or max_norm > 0


def grad_norm(grads: list[torch.Tensor], stacked: bool = False) -> torch.Tensor:
    """The global L2 norm of ``grads``, (); ``stacked``: of each of R stacked networks over its rows of every
    tensor, (R,)."""
    if stacked:
        return torch.stack([g.square().flatten(1).sum(dim=1) for g in grads]).sum(dim=0).sqrt()
    if len(grads) == 1:  # one buffer holding every gradient (`fastddpg.learning.analytic.FlatGrads`)
        return torch.linalg.vector_norm(grads[0])
    # per tensor, not torch._foreach_norm: the same norms, and a CPU compile's C++ wrapper has no direct call for
    # _foreach_norm (it would warn and go through a slower generic path)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def clip_coef(norm: torch.Tensor, max_norm: Scalar) -> torch.Tensor:
    """min(1, max_norm / (norm + 1e-6)), the factor that brings a gradient of L2 norm ``norm`` to at most
    ``max_norm`` (torch.nn.utils.clip_grad_norm_'s); where a member's limit is 0, 1 (no clipping)."""
    limit = per_member(max_norm, norm)
    coef = torch.clamp(limit / (norm + 1e-6), max=1.0)
    if isinstance(limit, torch.Tensor):
        coef = torch.where(limit > 0, coef, 1.0)
    return realized(coef)  # once, not per vector of the fused kernels that scale the grads (`realized`)


def adam_step_(params: list[torch.Tensor], opt: AdamState, grads: list[torch.Tensor], hp: AdamHyper) -> None:
    """One Adam step in place:  m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;
    p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps). A population's step count and lr are (K,):
    Adam is elementwise, so that is K independent Adams."""
    beta1, beta2 = hp.betas
    step = opt["step"]
    step.add_(1.0)
    torch._foreach_lerp_(opt["exp_avg"], grads, 1.0 - beta1)
    torch._foreach_mul_(opt["exp_avg_sq"], beta2)
    torch._foreach_addcmul_(opt["exp_avg_sq"], grads, grads, value=1.0 - beta2)
    bias1 = 1.0 - beta1 ** step
    bias2_sqrt = torch.sqrt(1.0 - beta2 ** step)
    # once per step, not per vector of the fused Adam kernel (`realized`)
    bias2_sqrt, step_size = realized(bias2_sqrt), realized(-hp.lr / bias1)
    denom = torch._foreach_div(torch._foreach_sqrt(opt["exp_avg_sq"]), per_tensor(bias2_sqrt, params))
    torch._foreach_add_(denom, hp.eps)
    steps = torch._foreach_div(opt["exp_avg"], denom)
    torch._foreach_mul_(steps, per_tensor(step_size, params))
    torch._foreach_add_(params, steps)


def soft_update_(targets: list[torch.Tensor], online: list[torch.Tensor], tau: Scalar) -> None:
    """theta' <- tau theta + (1 - tau) theta' for every target tensor at once (one foreach lerp; a population's
    per-member tau, one lerp per tensor)."""
    weights = per_tensor(tau, targets)
    if isinstance(weights, list):
        # _foreach_lerp with tensor weights is no op inductor generates code for (a CPU compile's C++ wrapper would
        # warn and call it through a slower generic path); per-tensor lerps fuse into its kernels
        for target, source, weight in zip(targets, online, weights, strict=True):
            target.lerp_(source, weight)
    else:
        torch._foreach_lerp_(targets, online, weights)


def stacked(module: nn.Module) -> bool:
    """Whether ``module``'s parameters are stacked networks (a leading dim of rows, each its own network)."""
    return getattr(module, "stacked", False)


def critic_step_(nets: Nets, state: LearnerState, batch: Batch, y: torch.Tensor,
                 hp: Hyper) -> tuple[torch.Tensor, torch.Tensor]:
    """One critic step: regress Q_phi(s, a) to y. Returns (each critic's MSE, Q), detached (see `critic_loss`)."""
    grads, (_, (per_critic, q)) = grad_and_value(critic_loss, argnums=1, has_aux=True)(
        nets.critic, state["critic"], batch, y)
    grads = list(grads.values())
    clip_grad_norm_(grads, hp.grad_clip_norm, stacked(nets.critic))
    adam_step_(list(state["critic"].values()), state["optim"]["critic"], grads, hp.critic)
    return per_critic, q


def actor_step_(nets: Nets, state: LearnerState, obs: torch.Tensor, hp: Hyper) -> torch.Tensor:
    """One actor step on `actor_loss`, differentiated with respect to the actor's parameters only (the critic's
    enter as constants). Returns the loss per member (*M), detached."""
    grads, (_, loss) = grad_and_value(actor_loss, argnums=1, has_aux=True)(
        nets.actor, state["actor"], nets.critic, state["critic"], obs)
    grads = list(grads.values())
    clip_grad_norm_(grads, hp.grad_clip_norm, stacked(nets.actor))
    adam_step_(list(state["actor"].values()), state["optim"]["actor"], grads, hp.actor)
    return loss


def soft_update_targets_(state: LearnerState, tau: Scalar) -> None:
    """Soft update of all target parameters, the actor's and the critic's, in one lerp."""
    soft_update_([*state["target_actor"].values(), *state["target_critic"].values()],
                 [*state["actor"].values(), *state["critic"].values()], tau)


def ddpg_update(nets: Nets, state: LearnerState, batch: Batch, hp: Hyper) -> torch.Tensor:
    """One DDPG gradient step on ``batch``, in the notebook's order: critic, then actor (against the
    freshly updated critic), then soft targets. Returns metrics (*M, 4) = METRIC_NAMES, on the device."""
    y = td_target(nets, state, batch, hp.gamma)
    loss_q, q = critic_step_(nets, state, batch, y, hp)
    loss_pi = actor_step_(nets, state, batch.obs, hp)
    soft_update_targets_(state, hp.tau)
    return ddpg_metrics(loss_q, loss_pi, q, y)


def ddpg_metrics(loss_q: torch.Tensor, loss_pi: torch.Tensor, q: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """DDPG's metrics (*M, 4) = METRIC_NAMES: the critic's MSE and the actor's loss (*M), mean Q and mean y of the
    batch (Q, y (*M, B, 1))."""
    return torch.stack([loss_q, loss_pi, batch_mean(q), batch_mean(y)], dim=-1)


# --- TD3 (exercise 3): twin critics, target policy smoothing, delayed actor and target updates ------------------
#
#     a~      = clip(mu_theta'(s') + clip(sigma_p eps, -c, c) * scale, low, high),  eps ~ N(0, 1)   (smoothing)
#     y       = r + gamma (1 - d) min_i Q_phi'_i(s', a~)                                  (clipped double Q)
#     L(phi)  = sum_i mean((Q_phi_i(s, a) - y)^2)                                         (both critics, same y)
#     L(theta)= -mean(Q_phi_1(s, mu_theta(s)))                    every policy_delay critic updates (Q_1 only)
#     theta' <- tau theta + (1 - tau) theta',  phi'_i likewise     on those same updates only
#
# scale = (high - low) / 2: sigma_p (policy_noise) and c (noise_clip) are in units of the action scale.
# eps is an input, drawn by the caller with the batch indices: compiled and eager updates see the same numbers,
# and a captured CUDA graph holds no RNG state. The policy delay is a host-side choice between two functions
# (``actor_step`` is a Python constant in each), so neither holds a data-dependent branch.

TD3_METRIC_NAMES = (*CORE_METRICS, "q1_mean", "q2_mean", "target_min_mean")


def smoothed_target_action(nets: Nets, state: LearnerState, next_obs: torch.Tensor, eps: torch.Tensor,
                           policy_noise: Scalar, noise_clip: Scalar) -> torch.Tensor:
    """a~ = clip(mu'(s') + clip(policy_noise eps, -noise_clip, noise_clip) * scale, low, high), shape (*M, B,
    act_dim).

    ``eps`` (*M, B, act_dim) is standard normal; scale = (high - low) / 2 (scale > 0, so clipping before scaling is
    clipping at +-noise_clip * scale)."""
    next_action = functional_call(nets.actor, state["target_actor"], (next_obs,))
    return smoothed(next_action, eps, policy_noise, noise_clip, nets.actor.action_scale, nets.action_low,
                    nets.action_high)


def smoothed(next_action: torch.Tensor, eps: torch.Tensor, policy_noise: Scalar, noise_clip: Scalar,
             scale: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """a~ of `smoothed_target_action` from mu'(s') (*M, B, act_dim): the clipped noise added, the sum clipped to the
    action bounds low, high; scale = (high - low) / 2, (act_dim,) each."""
    clip = per_member(noise_clip, eps)
    noise = torch.clamp(per_member(policy_noise, eps) * eps, -clip, clip) * scale
    return torch.clamp(next_action + noise, low, high)


def td3_target(nets: Nets, state: LearnerState, batch: Batch, eps: torch.Tensor, gamma: Scalar, policy_noise: Scalar,
               noise_clip: Scalar) -> tuple[torch.Tensor, torch.Tensor]:
    """y = r + gamma (1 - d) min_i Q'_i(s', a~). Returns (y (*M, B, 1), min_i Q'_i(s', a~) (*M, B, 1)); no
    gradient."""
    with torch.no_grad():
        next_action = smoothed_target_action(nets, state, batch.next_obs, eps, policy_noise, noise_clip)
        q_next = functional_call(nets.critic, state["target_critic"],
                                 (batch.next_obs, next_action))  # (*M, C, B, 1): all target critics, one call
        return clipped_double_q_target(batch, q_next, gamma)


def clipped_double_q_target(batch: Batch, q_next: torch.Tensor, gamma: Scalar) -> tuple[torch.Tensor, torch.Tensor]:
    """y = r + gamma (1 - d) min_i q_next_i from the C target critics' values q_next (*M, C, B, 1). Returns (y,
    the min), (*M, B, 1) each."""
    q_min = q_next.amin(dim=-3)
    return bellman_target(batch, q_min, gamma), q_min


def td3_update(nets: Nets, state: LearnerState, batch: Batch, eps: torch.Tensor, hp: Hyper,
               actor_step: bool) -> torch.Tensor:
    """One TD3 update on ``batch`` with smoothing noise ``eps`` (*M, B, act_dim) ~ N(0, 1): the twin critic step
    always; with ``actor_step`` (a Python constant) also the actor step, on Q_1 of the freshly updated critics,
    and the soft update of all targets. Returns metrics (*M, 7) = TD3_METRIC_NAMES, on the device."""
    y, q_min = td3_target(nets, state, batch, eps, hp.gamma, hp.policy_noise, hp.noise_clip)
    per_critic, q = critic_step_(nets, state, batch, y, hp)  # Adam is elementwise: stacked == one Adam per critic
    if actor_step:
        loss_pi = actor_step_(nets, state, batch.obs, hp)
        soft_update_targets_(state, hp.tau)
    else:
        loss_pi = torch.zeros(y.shape[:-2], device=y.device)
    return td3_metrics(per_critic, loss_pi, q, y, q_min)


def td3_metrics(per_critic: torch.Tensor, loss_pi: torch.Tensor, q: torch.Tensor, y: torch.Tensor,
                q_min: torch.Tensor) -> torch.Tensor:
    """TD3's metrics (*M, 7) = TD3_METRIC_NAMES from each critic's MSE (*M, C), the actor's loss (*M), Q (*M, C, B, 1),
    y and min_i Q'_i(s', a~) (*M, B, 1)."""
    q_means = batch_mean(q)  # (*M, C)
    q1 = q_means[..., 0]
    return torch.stack([per_critic.mean(dim=-1), loss_pi, q1, batch_mean(y), q1, q_means[..., 1],
                        batch_mean(q_min)], dim=-1)

