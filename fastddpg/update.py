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
is `fastddpg.compile`, and which update runs when is the algorithm's (`fastddpg.algos`). Consequences, on
purpose:

- d is ``terminated`` only. A time-limit truncation is not a terminal state, so the target bootstraps
  through it (the notebook's ``done = terminated or truncated`` is the bug fastddpg does not copy).
- The actor gradient is taken with respect to the actor's parameters only: the critic's parameters enter
  as constants, so no critic weight gradients are computed for the actor loss (the notebook computes and
  discards them).
- Adam is written out (`adam_step_`) with its step count as a device tensor, so no bias-correction value
  is ever read back to the host; it matches ``torch.optim.Adam`` (tested).
- Nothing here calls ``.item()``; metrics come back as one device tensor.

TD3 (``--algo td3``: twin critics, target policy smoothing, policy delay) is the last section of this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value

Params = dict[str, torch.Tensor]
AdamState = dict  # {"step": 0-d float tensor, "exp_avg": list of tensors, "exp_avg_sq": list of tensors}
LearnerState = dict  # see the LearnerState section below
METRIC_NAMES = ("critic_loss", "actor_loss", "q_mean", "y_mean")


class Batch(NamedTuple):
    """A minibatch of B transitions. obs/next_obs (B, obs_dim), action (B, act_dim), reward/terminated (B, 1)."""

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor


class Nets(NamedTuple):
    """The functions a learner state is evaluated with: ``actor`` (obs (B, obs_dim) -> action (B, act_dim)) and
    ``critic`` (obs, action -> Q (B, 1), or (K, B, 1) for stacked critics), run by ``functional_call`` with the
    online or the target parameters alike; and the env's action bounds, (act_dim,) each."""

    actor: nn.Module
    critic: nn.Module
    action_low: torch.Tensor
    action_high: torch.Tensor


class AdamHyper(NamedTuple):
    """Adam's hyperparameters (``torch.optim.Adam``'s defaults)."""

    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8


class Hyper(NamedTuple):
    """The update's hyperparameters. TD3 reads ``policy_noise`` and ``noise_clip`` (action-scale units)."""

    gamma: float
    tau: float
    grad_clip_norm: float
    actor: AdamHyper
    critic: AdamHyper
    policy_noise: float = 0.2
    noise_clip: float = 0.5


# --- the learner state ----------------------------------------------------------------------------------------
#
#     state = {"actor": Params, "critic": Params, "target_actor": Params, "target_critic": Params,
#              "optim": {"actor": AdamState, "critic": AdamState}}
#
# Params map parameter names (as in the modules' state_dicts) to tensors; an AdamState's lists follow its Params'
# order. Every update writes these tensors in place, so their identity never changes: a compiled graph or a
# captured CUDA graph keeps working, and modules whose parameters alias them (fastddpg.algos) show the current
# weights.

def adam_state(params: Params) -> AdamState:
    """A fresh Adam state for ``params``: zero moments, step 0 (a 0-d float tensor on their device)."""
    first = next(iter(params.values()))
    return {"step": torch.zeros((), dtype=torch.float32, device=first.device),
            "exp_avg": [torch.zeros_like(p) for p in params.values()],
            "exp_avg_sq": [torch.zeros_like(p) for p in params.values()]}


# --- the equations -------------------------------------------------------------------------------------------

def td_target(nets: Nets, state: LearnerState, batch: Batch, gamma: float) -> torch.Tensor:
    """y = r + gamma (1 - d) Q_phi'(s', mu_theta'(s')), shape (B, 1); no gradient flows through it."""
    with torch.no_grad():
        next_action = functional_call(nets.actor, state["target_actor"], (batch.next_obs,))
        q_next = functional_call(nets.critic, state["target_critic"], (batch.next_obs, next_action))
        return batch.reward + gamma * (1.0 - batch.terminated) * q_next


def critic_loss(critic: nn.Module, critic_params: Params, batch: Batch,
                y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """L(phi) = mean((Q_phi(s, a) - y)^2). Returns (loss, Q (B, 1))."""
    q = functional_call(critic, critic_params, (batch.obs, batch.action))
    return F.mse_loss(q, y), q


def actor_loss(actor: nn.Module, actor_params: Params, critic: nn.Module, critic_params: Params,
               obs: torch.Tensor) -> torch.Tensor:
    """L(theta) = -mean(Q_phi(s, mu_theta(s))); differentiate with respect to ``actor_params`` only."""
    action = functional_call(actor, actor_params, (obs,))
    return -functional_call(critic, critic_params, (obs, action)).mean()


def clip_grad_norm_(grads: list[torch.Tensor], max_norm: float) -> None:
    """Scale ``grads`` in place so their global L2 norm is at most ``max_norm`` (as clip_grad_norm_ does)."""
    if max_norm <= 0:
        return
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))


def adam_step_(params: list[torch.Tensor], opt: AdamState, grads: list[torch.Tensor], hp: AdamHyper) -> None:
    """One Adam step in place:  m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;
    p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)."""
    beta1, beta2 = hp.betas
    step = opt["step"]
    step.add_(1.0)
    torch._foreach_lerp_(opt["exp_avg"], grads, 1.0 - beta1)
    torch._foreach_mul_(opt["exp_avg_sq"], beta2)
    torch._foreach_addcmul_(opt["exp_avg_sq"], grads, grads, value=1.0 - beta2)
    bias1 = 1.0 - beta1 ** step
    bias2_sqrt = torch.sqrt(1.0 - beta2 ** step)
    denom = torch._foreach_div(torch._foreach_sqrt(opt["exp_avg_sq"]), bias2_sqrt)
    torch._foreach_add_(denom, hp.eps)
    steps = torch._foreach_div(opt["exp_avg"], denom)
    torch._foreach_mul_(steps, -hp.lr / bias1)
    torch._foreach_add_(params, steps)


def soft_update_(targets: list[torch.Tensor], online: list[torch.Tensor], tau: float) -> None:
    """theta' <- tau theta + (1 - tau) theta' for every target tensor at once (one foreach lerp)."""
    torch._foreach_lerp_(targets, online, tau)


def ddpg_update(nets: Nets, state: LearnerState, batch: Batch, hp: Hyper) -> torch.Tensor:
    """One DDPG gradient step on ``batch``, in the notebook's order: critic, then actor (against the
    freshly updated critic), then soft targets. Returns metrics (4,) = METRIC_NAMES, on the device."""
    # critic: regress Q_phi(s, a) to y
    y = td_target(nets, state, batch, hp.gamma)
    critic_grads, (loss_q, q) = grad_and_value(critic_loss, argnums=1, has_aux=True)(
        nets.critic, state["critic"], batch, y)
    critic_grads = list(critic_grads.values())
    clip_grad_norm_(critic_grads, hp.grad_clip_norm)
    adam_step_(list(state["critic"].values()), state["optim"]["critic"], critic_grads, hp.critic)

    # actor: ascend Q_phi(s, mu_theta(s)); then the soft target update
    loss_pi = actor_step_(nets, state, actor_loss, batch.obs, hp)
    soft_update_targets_(state, hp.tau)
    return torch.stack([loss_q.detach(), loss_pi, q.detach().mean(), y.mean()])


def actor_step_(nets: Nets, state: LearnerState, loss_fn: Callable[..., torch.Tensor], obs: torch.Tensor,
                hp: Hyper) -> torch.Tensor:
    """One actor step on ``loss_fn(actor, actor_params, critic, critic_params, obs)``, differentiated with
    respect to the actor's parameters only (the critic's enter as constants). Returns the loss, detached."""
    grads, loss = grad_and_value(loss_fn, argnums=1)(nets.actor, state["actor"], nets.critic, state["critic"], obs)
    grads = list(grads.values())
    clip_grad_norm_(grads, hp.grad_clip_norm)
    adam_step_(list(state["actor"].values()), state["optim"]["actor"], grads, hp.actor)
    return loss.detach()


def soft_update_targets_(state: LearnerState, tau: float) -> None:
    """Soft update of all target parameters, the actor's and the critic's, in one lerp."""
    soft_update_([*state["target_actor"].values(), *state["target_critic"].values()],
                 [*state["actor"].values(), *state["critic"].values()], tau)


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

TD3_METRIC_NAMES = ("critic_loss", "actor_loss", "q_mean", "y_mean", "q1_mean", "q2_mean", "target_min_mean")


def smoothed_target_action(nets: Nets, state: LearnerState, next_obs: torch.Tensor, eps: torch.Tensor,
                           policy_noise: float, noise_clip: float) -> torch.Tensor:
    """a~ = clip(mu'(s') + clip(policy_noise eps, -noise_clip, noise_clip) * scale, low, high), shape (B, act_dim).

    ``eps`` (B, act_dim) is standard normal; scale = (high - low) / 2 (scale > 0, so clipping before scaling is
    clipping at +-noise_clip * scale)."""
    scale = nets.actor.action_scale
    noise = torch.clamp(policy_noise * eps, -noise_clip, noise_clip) * scale
    next_action = functional_call(nets.actor, state["target_actor"], (next_obs,))
    return torch.clamp(next_action + noise, nets.action_low, nets.action_high)


def td3_target(nets: Nets, state: LearnerState, batch: Batch, eps: torch.Tensor, gamma: float, policy_noise: float,
               noise_clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """y = r + gamma (1 - d) min_i Q'_i(s', a~). Returns (y (B, 1), min_i Q'_i(s', a~) (B, 1)); no gradient."""
    with torch.no_grad():
        next_action = smoothed_target_action(nets, state, batch.next_obs, eps, policy_noise, noise_clip)
        q_next = functional_call(nets.critic, state["target_critic"],
                                 (batch.next_obs, next_action))  # (K, B, 1): both target critics, one call
        q_min = q_next.amin(dim=0)
        return batch.reward + gamma * (1.0 - batch.terminated) * q_min, q_min


def twin_critic_loss(critic: nn.Module, critic_params: Params, batch: Batch,
                     y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """L(phi) = sum_i mean((Q_i(s, a) - y)^2): each critic regresses to the same y. Returns (loss, Q (K, B, 1))."""
    q = functional_call(critic, critic_params, (batch.obs, batch.action))
    return (q - y).square().mean(dim=(1, 2)).sum(), q


def first_member(params: Params) -> Params:
    """The parameters of member 0 only of a stacked module (each tensor's leading dim sliced to 1)."""
    return {name: p[:1] for name, p in params.items()}


def td3_actor_loss(actor: nn.Module, actor_params: Params, critic: nn.Module, critic_params: Params,
                   obs: torch.Tensor) -> torch.Tensor:
    """L(theta) = -mean(Q_1(s, mu_theta(s))): Q_1 only (Q_2 is not even evaluated); differentiate w.r.t.
    ``actor_params``."""
    action = functional_call(actor, actor_params, (obs,))
    return -functional_call(critic, first_member(critic_params), (obs, action)).mean()


def clip_grad_norm_stacked_(grads: list[torch.Tensor], max_norm: float) -> None:
    """Clip each of the K stacked members (leading dim) to its own global L2 norm ``max_norm``, in place: the same
    as K separate ``clip_grad_norm_`` calls, one per critic, so twin critics train like two independent ones."""
    if max_norm <= 0:
        return
    sq = torch.stack([g.square().flatten(1).sum(dim=1) for g in grads]).sum(dim=0)  # (K,)
    coef = torch.clamp(max_norm / (sq.sqrt() + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef.reshape(-1, *([1] * (g.dim() - 1))))


def td3_update(nets: Nets, state: LearnerState, batch: Batch, eps: torch.Tensor, hp: Hyper,
               actor_step: bool) -> torch.Tensor:
    """One TD3 update on ``batch`` with smoothing noise ``eps`` (B, act_dim) ~ N(0, 1): the twin critic step
    always; with ``actor_step`` (a Python constant) also the actor step, on Q_1 of the freshly updated critics,
    and the soft update of all targets. Returns metrics (7,) = TD3_METRIC_NAMES, on the device."""
    y, q_min = td3_target(nets, state, batch, eps, hp.gamma, hp.policy_noise, hp.noise_clip)
    critic_grads, (loss_q, q) = grad_and_value(twin_critic_loss, argnums=1, has_aux=True)(
        nets.critic, state["critic"], batch, y)
    critic_grads = list(critic_grads.values())
    clip_grad_norm_stacked_(critic_grads, hp.grad_clip_norm)
    # Adam is elementwise: stacked == one Adam per critic
    adam_step_(list(state["critic"].values()), state["optim"]["critic"], critic_grads, hp.critic)

    if actor_step:
        loss_pi = actor_step_(nets, state, td3_actor_loss, batch.obs, hp)
        soft_update_targets_(state, hp.tau)
    else:
        loss_pi = torch.zeros((), device=y.device)
    q = q.detach()
    q1, q2 = q[0].mean(), q[1].mean()
    return torch.stack([loss_q.detach() / q.shape[0], loss_pi, q1, y.mean(), q1, q2, q_min.mean()])
