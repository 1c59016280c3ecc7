"""The DDPG update: all of fastddpg's math, each line matched to an equation of the notebook.

    y        = r + gamma (1 - d) Q_phi'(s', mu_theta'(s'))          (critic target, target networks)
    L(phi)   = E[(Q_phi(s, a) - y)^2]                                (critic loss)
    L(theta) = -E[Q_phi(s, mu_theta(s))]                             (actor loss, deterministic policy gradient)
    theta'  <- tau theta + (1 - tau) theta',  phi' likewise          (soft target update)

The update is a function over parameter tensors (``torch.func``), not over ``.grad`` fields and optimizer
objects: that way the critic step, the actor step and the soft update trace as one graph that
``torch.compile(fullgraph=True)`` can fuse and a CUDA graph can capture. Consequences, on purpose:

- d is ``terminated`` only. A time-limit truncation is not a terminal state, so the target bootstraps
  through it (the notebook's ``done = terminated or truncated`` is the bug fastddpg does not copy).
- The actor gradient is taken with respect to the actor's parameters only: the critic's parameters enter
  as constants, so no critic weight gradients are computed for the actor loss (the notebook computes and
  discards them).
- Adam is written out (`adam_step_`) with its step count as a device tensor, so no bias-correction value
  is ever read back to the host; it matches ``torch.optim.Adam`` (tested).
- Nothing here calls ``.item()``; metrics come back as one device tensor.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value

from .networks import Actor, Critic

Params = dict[str, torch.Tensor]
METRIC_NAMES = ("critic_loss", "actor_loss", "q_mean", "y_mean")


class Batch(NamedTuple):
    """A minibatch of B transitions. obs/next_obs (B, obs_dim), action (B, act_dim), reward/terminated (B, 1)."""

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor


class Adam:
    """Adam's state for a fixed list of parameter tensors (same defaults as ``torch.optim.Adam``).

    The step counter is a 0-d float tensor on the parameters' device, so a captured graph can advance it.
    """

    def __init__(self, params: list[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params = params
        self.lr, self.betas, self.eps = lr, betas, eps
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.step = torch.zeros((), dtype=torch.float32, device=params[0].device)

    def state_dict(self) -> dict[str, object]:
        return {"step": self.step.clone(), "exp_avg": [t.clone() for t in self.exp_avg],
                "exp_avg_sq": [t.clone() for t in self.exp_avg_sq]}

    def load_state_dict(self, state: dict) -> None:
        """Copies in place, so compiled or captured graphs that hold these tensors stay valid."""
        self.step.copy_(state["step"])
        torch._foreach_copy_(self.exp_avg, [t.to(self.step.device) for t in state["exp_avg"]])
        torch._foreach_copy_(self.exp_avg_sq, [t.to(self.step.device) for t in state["exp_avg_sq"]])


class Learner:
    """Actor, critic, their targets and optimizers, as the update sees them.

    ``actor``/``critic``/``target_actor``/``target_critic`` are ordinary modules (use their ``state_dict``).
    The ``*_params`` dicts hold detached aliases of the same parameter storage: the update writes them in
    place, so the modules always show the current weights.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: tuple[int, ...], action_low: torch.Tensor,
                 action_high: torch.Tensor, actor_lr: float, critic_lr: float, device: torch.device) -> None:
        self.actor = Actor(obs_dim, act_dim, hidden_sizes, action_low, action_high).to(device)
        self.critic = Critic(obs_dim, act_dim, hidden_sizes).to(device)
        # Target networks start as exact copies.
        self.target_actor = copy.deepcopy(self.actor)
        self.target_critic = copy.deepcopy(self.critic)
        self.actor_params = _aliases(self.actor)
        self.critic_params = _aliases(self.critic)
        self.target_actor_params = _aliases(self.target_actor)
        self.target_critic_params = _aliases(self.target_critic)
        self.actor_opt = Adam(list(self.actor_params.values()), actor_lr)
        self.critic_opt = Adam(list(self.critic_params.values()), critic_lr)

    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critic": self.critic, "target_actor": self.target_actor,
                "target_critic": self.target_critic}


def _aliases(module: nn.Module) -> Params:
    for p in module.parameters():
        p.requires_grad_(False)  # gradients come from torch.func, never from .grad fields
    return {name: p.detach() for name, p in module.named_parameters()}


# --- the equations -------------------------------------------------------------------------------------------

def td_target(learner: Learner, batch: Batch, gamma: float) -> torch.Tensor:
    """y = r + gamma (1 - d) Q_phi'(s', mu_theta'(s')), shape (B, 1); no gradient flows through it."""
    with torch.no_grad():
        next_action = functional_call(learner.target_actor, learner.target_actor_params, (batch.next_obs,))
        q_next = functional_call(learner.target_critic, learner.target_critic_params,
                                 (batch.next_obs, next_action))
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


def adam_step_(opt: Adam, grads: list[torch.Tensor]) -> None:
    """One Adam step in place:  m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;
    p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)."""
    beta1, beta2 = opt.betas
    opt.step.add_(1.0)
    torch._foreach_lerp_(opt.exp_avg, grads, 1.0 - beta1)
    torch._foreach_mul_(opt.exp_avg_sq, beta2)
    torch._foreach_addcmul_(opt.exp_avg_sq, grads, grads, value=1.0 - beta2)
    bias1 = 1.0 - beta1 ** opt.step
    bias2_sqrt = torch.sqrt(1.0 - beta2 ** opt.step)
    denom = torch._foreach_div(torch._foreach_sqrt(opt.exp_avg_sq), bias2_sqrt)
    torch._foreach_add_(denom, opt.eps)
    steps = torch._foreach_div(opt.exp_avg, denom)
    torch._foreach_mul_(steps, -opt.lr / bias1)
    torch._foreach_add_(opt.params, steps)


def soft_update_(targets: list[torch.Tensor], online: list[torch.Tensor], tau: float) -> None:
    """theta' <- tau theta + (1 - tau) theta' for every target tensor at once (one foreach lerp)."""
    torch._foreach_lerp_(targets, online, tau)


def ddpg_update(learner: Learner, batch: Batch, gamma: float, tau: float, grad_clip_norm: float) -> torch.Tensor:
    """One DDPG gradient step on ``batch``, in the notebook's order: critic, then actor (against the
    freshly updated critic), then soft targets. Returns metrics (4,) = METRIC_NAMES, on the device."""
    # critic: regress Q_phi(s, a) to y
    y = td_target(learner, batch, gamma)
    critic_grads, (loss_q, q) = grad_and_value(critic_loss, argnums=1, has_aux=True)(
        learner.critic, learner.critic_params, batch, y)
    critic_grads = list(critic_grads.values())
    clip_grad_norm_(critic_grads, grad_clip_norm)
    adam_step_(learner.critic_opt, critic_grads)

    # actor: ascend Q_phi(s, mu_theta(s)); the critic's parameters are constants here
    actor_grads, loss_pi = grad_and_value(actor_loss, argnums=1)(
        learner.actor, learner.actor_params, learner.critic, learner.critic_params, batch.obs)
    actor_grads = list(actor_grads.values())
    clip_grad_norm_(actor_grads, grad_clip_norm)
    adam_step_(learner.actor_opt, actor_grads)

    # soft target update of all target parameters, actor's and critic's, in one lerp
    soft_update_(list(learner.target_actor_params.values()) + list(learner.target_critic_params.values()),
                 list(learner.actor_params.values()) + list(learner.critic_params.values()), tau)
    return torch.stack([loss_q.detach(), loss_pi.detach(), q.detach().mean(), y.mean()])
