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


# --- populations: K independent members in one update ----------------------------------------------------------
#
# Every tensor of a population's learner state has a leading member dim: K for the actor (and every Adam step
# count), K*C for the critics (C per member, member-major: critic c of member k is row k*C + c). A batch is
# (K, B, ...): member k's rows come from member k's replay buffer. Member k's loss is its own batch mean; the
# update differentiates the *sum* over members, and since no parameter is shared, member k's gradient is exactly
# the gradient of its own loss. Clipping, Adam and the soft update act per member with that member's
# hyperparameters (`MemberHyper`), so the population update equals K single updates (tested to 1e-5).
#
#     y_k       = r_k + gamma_k (1 - d_k) Q'_k(s'_k, mu'_k(s'_k))             (TD3: min over the member's C critics)
#     L(phi)    = sum_k mean_b (Q_k(s, a) - y_k)^2                             (C critics: each to the same y_k)
#     L(theta)  = sum_k -mean_b Q_k,1(s, mu_k(s))
#     theta'_k <- tau_k theta_k + (1 - tau_k) theta'_k

class MemberHyper(NamedTuple):
    """A population's hyperparameters, one per member: (K,) float32 tensors on the device (the ``--grid`` values,
    carried as tensors so that one graph serves every member). Adam's betas and eps are shared."""

    gamma: torch.Tensor
    tau: torch.Tensor
    grad_clip_norm: torch.Tensor
    actor_lr: torch.Tensor
    critic_lr: torch.Tensor
    policy_noise: torch.Tensor
    noise_clip: torch.Tensor
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8


def member_hyper(hypers: list[Hyper], device: torch.device) -> MemberHyper:
    """The `MemberHyper` of K members with the given single-agent `Hyper`s (Adam's betas and eps must agree)."""
    if len({(h.actor.betas, h.actor.eps, h.critic.betas, h.critic.eps) for h in hypers}) != 1:
        raise ValueError("population members must share Adam's betas and eps")

    def col(get: Callable[[Hyper], float]) -> torch.Tensor:
        return torch.tensor([float(get(h)) for h in hypers], dtype=torch.float32, device=device)

    return MemberHyper(col(lambda h: h.gamma), col(lambda h: h.tau), col(lambda h: h.grad_clip_norm),
                       col(lambda h: h.actor.lr), col(lambda h: h.critic.lr), col(lambda h: h.policy_noise),
                       col(lambda h: h.noise_clip), hypers[0].actor.betas, hypers[0].actor.eps)


def per_member(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-member value ``x`` (K,) shaped to broadcast over ``like`` (K*C, ...): each entry repeated for the C
    consecutive rows of its member, then reshaped to (K*C, 1, ..., 1)."""
    c = like.shape[0] // x.shape[0]
    if c > 1:
        x = x.repeat_interleave(c)
    return x.reshape(-1, *([1] * (like.dim() - 1)))


def population_adam_state(params: Params, members: int) -> AdamState:
    """A fresh Adam state for a population's ``params``: zero moments, a step count per member (K,)."""
    first = next(iter(params.values()))
    return {"step": torch.zeros(members, dtype=torch.float32, device=first.device),
            "exp_avg": [torch.zeros_like(p) for p in params.values()],
            "exp_avg_sq": [torch.zeros_like(p) for p in params.values()]}


def clip_grad_norm_members_(grads: list[torch.Tensor], max_norm: torch.Tensor) -> None:
    """`clip_grad_norm_stacked_` with a max norm per member (K,) (0 = no clipping for that member): each stacked
    row (each critic of each member) is clipped to its own global L2 norm, in place."""
    sq = torch.stack([g.square().flatten(1).sum(dim=1) for g in grads]).sum(dim=0)  # (K*C,)
    limit = per_member(max_norm, sq)
    coef = torch.where(limit > 0, torch.clamp(limit / (sq.sqrt() + 1e-6), max=1.0), 1.0)
    for g in grads:
        g.mul_(per_member(coef, g))


def adam_members_step_(params: list[torch.Tensor], opt: AdamState, grads: list[torch.Tensor], lr: torch.Tensor,
                       betas: tuple[float, float], eps: float) -> None:
    """`adam_step_` with a learning rate (K,) and a step count (K,) per member: Adam is elementwise, so this is
    K independent Adams."""
    beta1, beta2 = betas
    step = opt["step"]
    step.add_(1.0)
    torch._foreach_lerp_(opt["exp_avg"], grads, 1.0 - beta1)
    torch._foreach_mul_(opt["exp_avg_sq"], beta2)
    torch._foreach_addcmul_(opt["exp_avg_sq"], grads, grads, value=1.0 - beta2)
    bias2_sqrt = torch.sqrt(1.0 - beta2 ** step)
    scale = -lr / (1.0 - beta1 ** step)
    for i, p in enumerate(params):  # indexed, not zip(strict=...): plain Python that dynamo traces as it is
        m, v = opt["exp_avg"][i], opt["exp_avg_sq"][i]
        denom = v.sqrt() / per_member(bias2_sqrt, v) + eps
        p.add_(m / denom * per_member(scale, p))


def soft_update_members_(targets: list[torch.Tensor], online: list[torch.Tensor], tau: torch.Tensor) -> None:
    """theta'_k <- tau_k theta_k + (1 - tau_k) theta'_k for every member k, every target tensor."""
    for i, t in enumerate(targets):
        t.lerp_(online[i], per_member(tau, t))


def population_td_target(nets: Nets, state: LearnerState, batch: Batch, gamma: torch.Tensor) -> torch.Tensor:
    """y_k = r_k + gamma_k (1 - d_k) Q'_k(s'_k, mu'_k(s'_k)), shape (K, B, 1); no gradient."""
    with torch.no_grad():
        next_action = functional_call(nets.actor, state["target_actor"], (batch.next_obs,))
        q_next = functional_call(nets.critic, state["target_critic"], (batch.next_obs, next_action))
        return batch.reward + per_member(gamma, q_next) * (1.0 - batch.terminated) * q_next


def population_critic_loss(critic: nn.Module, critic_params: Params, batch: Batch, y: torch.Tensor
                           ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """sum over the K*C critics of mean_b (Q(s, a) - y_k)^2, each critic against its member's y. Returns (the sum,
    (each critic's MSE (K*C,), Q (K*C, B, 1)))."""
    q = functional_call(critic, critic_params, (batch.obs, batch.action))
    c = q.shape[0] // y.shape[0]
    per_critic = (q - (y.repeat_interleave(c, dim=0) if c > 1 else y)).square().mean(dim=(1, 2))
    return per_critic.sum(), (per_critic.detach(), q.detach())


def population_actor_loss(actor: nn.Module, actor_params: Params, critic: nn.Module, critic_params: Params,
                          obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sum_k -mean_b Q_k,1(s, mu_k(s)) (each member's first critic). Returns (the sum, per member (K,))."""
    action = functional_call(actor, actor_params, (obs,))
    c = next(iter(critic_params.values())).shape[0] // action.shape[0]
    if c > 1:
        critic_params = {name: p[::c] for name, p in critic_params.items()}  # Q_1 of every member
    per_member_loss = -functional_call(critic, critic_params, (obs, action)).mean(dim=(1, 2))
    return per_member_loss.sum(), per_member_loss.detach()


def population_critic_step_(nets: Nets, state: LearnerState, batch: Batch, y: torch.Tensor,
                            hp: MemberHyper) -> tuple[torch.Tensor, torch.Tensor]:
    """One critic step of every member. Returns (each critic's MSE (K*C,), Q (K*C, B, 1)), detached."""
    grads, (_, (per_critic, q)) = grad_and_value(population_critic_loss, argnums=1, has_aux=True)(
        nets.critic, state["critic"], batch, y)
    grads = list(grads.values())
    clip_grad_norm_members_(grads, hp.grad_clip_norm)
    adam_members_step_(list(state["critic"].values()), state["optim"]["critic"], grads, hp.critic_lr, hp.betas,
                       hp.eps)
    return per_critic, q


def population_actor_step_(nets: Nets, state: LearnerState, obs: torch.Tensor, hp: MemberHyper) -> torch.Tensor:
    """One actor step of every member, then the soft update of every member's targets. Returns the actor losses
    (K,)."""
    grads, (_, loss) = grad_and_value(population_actor_loss, argnums=1, has_aux=True)(
        nets.actor, state["actor"], nets.critic, state["critic"], obs)
    grads = list(grads.values())
    clip_grad_norm_members_(grads, hp.grad_clip_norm)
    adam_members_step_(list(state["actor"].values()), state["optim"]["actor"], grads, hp.actor_lr, hp.betas, hp.eps)
    soft_update_members_([*state["target_actor"].values(), *state["target_critic"].values()],
                         [*state["actor"].values(), *state["critic"].values()], hp.tau)
    return loss


def population_ddpg_update(nets: Nets, state: LearnerState, batch: Batch, hp: MemberHyper) -> torch.Tensor:
    """One DDPG update of every member on its own batch (K, B, ...). Returns metrics (K, 4) = METRIC_NAMES."""
    y = population_td_target(nets, state, batch, hp.gamma)
    loss_q, q = population_critic_step_(nets, state, batch, y, hp)
    loss_pi = population_actor_step_(nets, state, batch.obs, hp)
    return torch.stack([loss_q, loss_pi, q.mean(dim=(1, 2)), y.mean(dim=(1, 2))], dim=1)


def population_td3_target(nets: Nets, state: LearnerState, batch: Batch, eps: torch.Tensor, hp: MemberHyper
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """TD3's target per member: y_k = r_k + gamma_k (1 - d_k) min_c Q'_k,c(s'_k, a~_k) with
    a~_k = clip(mu'_k(s'_k) + clip(sigma_k eps_k, -c_k, c_k) * scale, low, high). ``eps`` (K, B, act_dim).
    Returns (y (K, B, 1), min_c Q'_k,c (K, B, 1)); no gradient."""
    with torch.no_grad():
        clip = per_member(hp.noise_clip, eps)
        noise = torch.clamp(per_member(hp.policy_noise, eps) * eps, -clip, clip) * nets.actor.action_scale
        next_action = functional_call(nets.actor, state["target_actor"], (batch.next_obs,))
        next_action = torch.clamp(next_action + noise, nets.action_low, nets.action_high)
        q_next = functional_call(nets.critic, state["target_critic"], (batch.next_obs, next_action))
        q_min = q_next.unflatten(0, (eps.shape[0], -1)).amin(dim=1)
        return batch.reward + per_member(hp.gamma, q_min) * (1.0 - batch.terminated) * q_min, q_min


def population_td3_update(nets: Nets, state: LearnerState, batch: Batch, eps: torch.Tensor, hp: MemberHyper,
                          actor_step: bool) -> torch.Tensor:
    """One TD3 update of every member (`td3_update` per member; ``actor_step`` is a Python constant). Returns
    metrics (K, 7) = TD3_METRIC_NAMES."""
    y, q_min = population_td3_target(nets, state, batch, eps, hp)
    k = y.shape[0]
    per_critic, q = population_critic_step_(nets, state, batch, y, hp)
    loss_pi = population_actor_step_(nets, state, batch.obs, hp) if actor_step else torch.zeros(k, device=y.device)
    q_means = q.unflatten(0, (k, -1)).mean(dim=(2, 3))  # (K, C)
    q1 = q_means[:, 0]
    return torch.stack([per_critic.unflatten(0, (k, -1)).mean(dim=1), loss_pi, q1, y.mean(dim=(1, 2)), q1,
                        q_means[:, 1], q_min.mean(dim=(1, 2))], dim=1)
