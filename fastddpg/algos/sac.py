"""SAC (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications"): a tanh-squashed Gaussian policy that
explores by sampling itself, twin critics with target networks, and an entropy temperature alpha learned toward a
target entropy. As Stable-Baselines3's SAC (``ent_coef="auto"``, ``target_update_interval=1``):

    u        = m_theta(s) + sigma_theta(s) eps,  a = tanh(u),  eps ~ N(0, I)          (reparametrised sample)
    log pi(a|s) = sum_j [log N(u_j; m_j, sigma_j^2) - log(1 - tanh(u_j)^2)]            (tanh correction)
    y        = r + gamma (1 - d) (min_i Q_phi'_i(s', a') - alpha log pi(a'|s')),  a' ~ pi(.|s')   (soft target)
    L(phi)   = sum_i mean_b (Q_phi_i(s, a) - y)^2                                      (both critics, same y)
    L(theta) = mean_b (alpha log pi(a~|s) - min_i Q_phi_i(s, a~)),  a~ ~ pi(.|s)
    L(log alpha) = -mean_b (log alpha (log pi(a~|s) + H)),  H = -|A|,  alpha = exp(log alpha)
    phi'    <- tau phi + (1 - tau) phi'                                                (every update)

The actor's outputs are scaled to the env's bounds (scale tanh(u) + bias) before the critics and the env see them,
as DDPG's are; log pi is the density of tanh(u) in [-1, 1]^|A|, as in SB3 and the paper: the affine map's constant
log-determinant is left out, so the target entropy -|A| means the same whatever the bounds. log sigma is clamped to
[-20, 2] (SB3's LOG_STD_MIN/MAX). alpha starts at ``init_alpha`` (SB3: 1.0) and has its own Adam at the critic's
learning rate (SB3 uses one rate for all three).

The tanh correction is computed as log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), the exact identity, not
SB3's log(1 - tanh(u)^2 + 1e-6): in float32 tanh(u) rounds to +-1 from |u| ~ 9, where the epsilon form flattens to
log(1e-6) and stops penalising further saturation (its gradient in u vanishes), while the identity stays exact and
its gradient stays -2 tanh(u).

One update, in SB3's order: alpha = exp(log alpha) as it is before this update, used in the target and the actor
loss; the twin critic step (TD3's, `fastddpg.learning.update.critic_step_`); the actor step on the freshly updated
critics; the temperature step with the actor loss's log pi (of the actor before its step); the soft update of the
target critics. The critic loss is the sum of the two MSEs (TD3's); SB3 halves it, which Adam's normalisation undoes
(up to its eps); the metric ``critic_loss`` is the mean of the two, as SB3 logs it. There is no target actor.

The Gaussian noise of both samples (eps' for a' at s', eps for a~ at s) is an extra input (`extra_inputs`), drawn
by the trainer with the batch indices, columns [eps' | eps] of each row: compiled == eager, and a CUDA graph holds
no RNG. Acting draws its own standard normals (`make_noise`); the evaluation policy is tanh(m(s)), scaled.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value

from ..core.registry import CORE_METRICS
from ..learning.networks import BoundedPolicy, PopulationCritic, build_critic, member_state_dict, mlp, stacked_mlp
from ..learning.noise import GaussianNoise
from ..learning.update import (
    AdamHyper,
    Batch,
    LearnerState,
    Nets,
    Params,
    Scalar,
    adam_step_,
    batch_mean,
    bellman_target,
    clip_grad_norm_,
    critic_step_,
    soft_update_,
    stacked,
)
from .base import Algorithm, UpdateFns

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # SB3's clamp of log sigma
_LOG2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

# critic_loss: the mean of the two critics' MSE; actor_loss: mean(alpha log pi - min Q); q_mean: Q_1's mean;
# alpha: the temperature this update used; entropy: -mean log pi(a~|s) (the estimate alpha is tuned on)
SAC_METRIC_NAMES = (*CORE_METRICS, "alpha", "entropy")


class SACHyper(NamedTuple):
    """SAC's hyperparameters: floats for one agent, (K,) tensors for a population; ``alpha`` is the temperature's
    Adam (its learning rate is the critic's)."""

    gamma: Scalar
    tau: Scalar
    grad_clip_norm: Scalar
    actor: AdamHyper
    critic: AdamHyper
    alpha: AdamHyper


class GaussianActor(BoundedPolicy):
    """The policy pi_theta(.|s): ``net`` maps obs (..., obs_dim) to [m | log sigma] (..., 2 act_dim) (SB3's mu and
    log_std heads as one Linear); ``forward`` is the deterministic action scale * tanh(m(s)) + bias (evaluation,
    export, the probes), `gaussian` the distribution's parameters (acting and the update).

    ``members=K > 0``: K stacked actors (`fastddpg.learning.networks.stacked_mlp`, the same parameter names),
    obs (K, B, obs_dim) -> (K, B, act_dim)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], action_low: torch.Tensor,
                 action_high: torch.Tensor, layer_norm: bool = False, members: int = 0) -> None:
        super().__init__()
        self.act_dim = act_dim
        self.stacked = members > 0  # read by fastddpg.learning.update.stacked (per-member gradient clipping)
        sizes = [obs_dim, *hidden_sizes, 2 * act_dim]
        self.net = stacked_mlp(members, sizes, layer_norm=layer_norm) if members else mlp(sizes, layer_norm=layer_norm)
        self.set_bounds(action_low, action_high)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic action scale * tanh(m(s)) + bias: obs (..., obs_dim) -> (..., act_dim)."""
        return self.action_scale * torch.tanh(self.net(obs)[..., :self.act_dim]) + self.action_bias

    def gaussian(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(m, log sigma) of pi(.|obs), (..., act_dim) each (`gaussian_head`)."""
        return gaussian_head(self.net(obs), self.act_dim)


class Temperature(nn.Module):
    """log alpha, the entropy temperature's log: shape (1,), or (K, 1, 1) for a population of K (the stacked layout
    of a (1,) tensor, `fastddpg.learning.networks.to_stacked`), which broadcasts against (K, B, 1)."""

    def __init__(self, init_alpha: float, members: int = 0) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.full((members, 1, 1) if members else (1,), math.log(init_alpha)))

    def forward(self) -> torch.Tensor:
        return self.log_alpha.exp()


# --- the equations (shape-generic, as `fastddpg.learning.update`'s: one agent (B, .) or a population (K, B, .)) -----

def gaussian_head(out: torch.Tensor, act_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The actor net's output (..., 2 act_dim) split into m and log sigma, log sigma clamped to [LOG_STD_MIN,
    LOG_STD_MAX]."""
    mean, log_std = out.split(act_dim, dim=-1)
    return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)


def tanh_log_det(u: torch.Tensor) -> torch.Tensor:
    """log |d tanh(u)/du| = log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), elementwise, exact for every u (see
    the module docstring)."""
    return 2.0 * (_LOG2 - u - F.softplus(-2.0 * u))


def squashed_gaussian_sample(mean: torch.Tensor, log_std: torch.Tensor, eps: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """a = tanh(u), u = m + sigma eps, and log pi(a) = sum_j [log N(u_j; m_j, sigma_j^2) - log(1 - tanh(u_j)^2)]:
    (..., act_dim) in, (a (..., act_dim) in [-1, 1], log pi (..., 1)) out. (u - m) / sigma is eps itself."""
    u = mean + log_std.exp() * eps
    log_prob = (-0.5 * eps.square() - log_std - _HALF_LOG_2PI - tanh_log_det(u)).sum(dim=-1, keepdim=True)
    return torch.tanh(u), log_prob


def sample_action(actor: GaussianActor, actor_params: Params, obs: torch.Tensor, eps: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """a ~ pi_theta(.|s) with the noise ``eps`` (*M, B, act_dim), in the env's bounds, and log pi(a|s) (*M, B, 1)
    (of tanh(u), see the module docstring), with the parameters ``actor_params``."""
    out = functional_call(actor.net, {name.removeprefix("net."): p for name, p in actor_params.items()}, (obs,))
    squashed, log_prob = squashed_gaussian_sample(*gaussian_head(out, actor.act_dim), eps)
    return actor.action_scale * squashed + actor.action_bias, log_prob


def soft_target(nets: Nets, state: LearnerState, batch: Batch, eps: torch.Tensor, gamma: Scalar,
                alpha: torch.Tensor) -> torch.Tensor:
    """y = r + gamma (1 - d) (min_i Q'_i(s', a') - alpha log pi(a'|s')), a' ~ pi_theta(.|s') with ``eps``: (*M, B, 1);
    no gradient. ``alpha``: (1,) or a population's (K, 1, 1)."""
    with torch.no_grad():
        next_action, next_log_prob = sample_action(nets.actor, state["actor"], batch.next_obs, eps)
        q_next = functional_call(nets.critic, state["target_critic"], (batch.next_obs, next_action)).amin(dim=-3)
        soft_value = q_next - alpha * next_log_prob
        return bellman_target(batch, soft_value, gamma)


def sac_actor_loss(actor: GaussianActor, actor_params: Params, critic: nn.Module, critic_params: Params,
                   obs: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor
                   ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """L(theta) = mean_b (alpha log pi(a~|s) - min_i Q_i(s, a~)), a~ ~ pi_theta(.|s) with ``eps``, per member;
    differentiate with respect to ``actor_params`` only. Returns (the sum over members, (per member (*M), log pi
    (*M, B, 1)), detached)."""
    action, log_prob = sample_action(actor, actor_params, obs, eps)
    q_min = functional_call(critic, critic_params, (obs, action)).amin(dim=-3)
    loss = batch_mean(alpha * log_prob - q_min).reshape(obs.shape[:-2])
    return loss.sum(), (loss.detach(), log_prob.detach())


def temperature_loss(alpha_params: Params, log_prob: torch.Tensor, target_entropy: float
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """L(log alpha) = -mean_b log alpha (log pi + H), log pi (*M, B, 1) a constant: its gradient -mean(log pi + H)
    lowers alpha while the entropy -log pi is above H and raises it below. Returns (the sum over members, per
    member (*M), detached)."""
    loss = -batch_mean(alpha_params["log_alpha"] * (log_prob + target_entropy)).reshape(log_prob.shape[:-2])
    return loss.sum(), loss.detach()


def sac_actor_step_(nets: Nets, state: LearnerState, obs: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor,
                    hp: SACHyper) -> tuple[torch.Tensor, torch.Tensor]:
    """One actor step on `sac_actor_loss` (the critics' parameters enter as constants). Returns (the loss per member
    (*M), log pi (*M, B, 1) of the actor before the step), detached."""
    grads, (_, (loss, log_prob)) = grad_and_value(sac_actor_loss, argnums=1, has_aux=True)(
        nets.actor, state["actor"], nets.critic, state["critic"], obs, eps, alpha)
    grads = list(grads.values())
    clip_grad_norm_(grads, hp.grad_clip_norm, stacked(nets.actor))
    adam_step_(list(state["actor"].values()), state["optim"]["actor"], grads, hp.actor)
    return loss, log_prob


def temperature_step_(state: LearnerState, log_prob: torch.Tensor, target_entropy: float, hp: SACHyper) -> None:
    """One Adam step of log alpha on `temperature_loss` (no gradient clipping, as SB3)."""
    grads, _ = grad_and_value(temperature_loss, has_aux=True)(state["alpha"], log_prob, target_entropy)
    adam_step_(list(state["alpha"].values()), state["optim"]["alpha"], list(grads.values()), hp.alpha)


def sac_update(nets: Nets, state: LearnerState, batch: Batch, eps: torch.Tensor, hp: SACHyper,
               target_entropy: float) -> torch.Tensor:
    """One SAC update on ``batch`` with the standard normal noise ``eps`` (*M, B, 2 act_dim) = [eps' | eps], in the
    order of the module docstring. Returns metrics (*M, 6) = SAC_METRIC_NAMES, on the device."""
    eps_next, eps_now = eps.chunk(2, dim=-1)
    alpha = state["alpha"]["log_alpha"].exp()  # before this update's temperature step, as SB3
    y = soft_target(nets, state, batch, eps_next, hp.gamma, alpha)
    per_critic, q = critic_step_(nets, state, batch, y, hp)
    loss_pi, log_prob = sac_actor_step_(nets, state, batch.obs, eps_now, alpha, hp)
    temperature_step_(state, log_prob, target_entropy, hp)
    soft_update_(list(state["target_critic"].values()), list(state["critic"].values()), hp.tau)
    lead = y.shape[:-2]
    return torch.stack([per_critic.mean(dim=-1), loss_pi, batch_mean(q)[..., 0], batch_mean(y), alpha.reshape(lead),
                        -batch_mean(log_prob)], dim=-1)


class SAC(Algorithm):
    name = "sac"
    metric_names = SAC_METRIC_NAMES
    num_critics = 2
    optimizer_groups = ("actor", "critic", "alpha")

    def __init__(self, *args: Any, init_alpha: float = 1.0, **kwargs: Any) -> None:
        self.init_alpha = float(init_alpha)  # build_networks reads it
        super().__init__(*args, **kwargs)

    # --- networks and hyperparameters -----------------------------------------------------------------------------
    def build_networks(self) -> dict[str, nn.Module]:
        """The Gaussian actor, the twin critics, their targets (exact copies), and log alpha; no target actor."""
        actor = GaussianActor(self.obs_dim, self.act_dim, self.hidden_sizes, self.action_low, self.action_high,
                              self.layer_norm)
        critic = build_critic(self.obs_dim, self.act_dim, self.hidden_sizes, self.num_critics, self.layer_norm)
        return {"actor": actor, "critic": critic, "target_critic": copy.deepcopy(critic),
                "alpha": Temperature(self.init_alpha)}

    def build_stacked_networks(self, members: int) -> dict[str, nn.Module]:
        k, o, a = members, self.obs_dim, self.act_dim
        actor = GaussianActor(o, a, self.hidden_sizes, self.action_low, self.action_high, self.layer_norm, members=k)
        critics = [PopulationCritic(k, o, a, self.hidden_sizes, self.num_critics, self.layer_norm) for _ in range(2)]
        return {"actor": actor, "critic": critics[0], "target_critic": critics[1],
                "alpha": Temperature(self.init_alpha, members=k)}

    @classmethod
    def hyper_from_config(cls, cfg: Any) -> SACHyper:
        return SACHyper(cfg.gamma, cfg.tau, cfg.grad_clip_norm, AdamHyper(cfg.actor_lr), AdamHyper(cfg.critic_lr),
                        AdamHyper(cfg.critic_lr))

    @classmethod
    def options_from_config(cls, cfg: Any) -> dict[str, Any]:
        return {"init_alpha": cfg.init_alpha}

    @property
    def optimizers(self) -> dict[str, AdamHyper]:
        return {"actor": self.hyper.actor, "critic": self.hyper.critic, "alpha": self.hyper.alpha}

    # --- the update -----------------------------------------------------------------------------------------------
    @property
    def eps_dim(self) -> int:
        return 2 * self.act_dim

    def extra_inputs(self, num_batches: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """Standard normal [eps' | eps], (num_batches, batch_size, 2 act_dim): the samples at s' and at s."""
        return torch.randn(num_batches, batch_size, 2 * self.act_dim, device=self.device, generator=generator)

    def make_update_fns(self, nets: Nets, hyper: Any, as_batch: Callable[[torch.Tensor], Batch],
                        width: int) -> UpdateFns:
        """Every update is a full one (critic, actor, temperature, targets); the noise is each row's columns past
        ``width``."""
        target_entropy = -float(self.act_dim)  # SB3's "auto": -|A|

        def sac_step(state: LearnerState, rows: torch.Tensor) -> torch.Tensor:
            return sac_update(nets, state, as_batch(rows), rows[..., width:], hyper, target_entropy)

        return {True: sac_step}

    # --- acting -----------------------------------------------------------------------------------------------------
    def make_noise(self, cfg: Any, num_envs: int, generator: torch.Generator, sigma: float | torch.Tensor,
                   repeats: int = 1) -> GaussianNoise:
        """Standard normals, (num_envs, act_dim) per sample: the policy's own noise (``sigma`` is not used)."""
        return GaussianNoise(num_envs, self.act_dim, 1.0, self.device, generator, repeats)

    def explore(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """a = scale * tanh(m(s) + sigma(s) noise) + bias, a sample of pi(.|s): obs (N, obs_dim), noise (N, act_dim)
        standard normal -> (N, act_dim), inside the bounds."""
        mean, log_std = self.actor.gaussian(obs)
        return self.actor.action_scale * torch.tanh(mean + log_std.exp() * noise) + self.actor.action_bias

    @classmethod
    def policy_from_state_dict(cls, state: dict[str, torch.Tensor], hidden_sizes: Sequence[int],
                               layer_norm: bool = False, member: int = 0, members: int = 1) -> nn.Module:
        """The eval-mode `GaussianActor` (forward: scale * tanh(m(s)) + bias) of a saved actor state_dict (of a
        population's: member ``member``'s)."""
        scale, bias = state["action_scale"], state["action_bias"]
        actor = GaussianActor(state["net.0.weight"].shape[1], scale.shape[0], hidden_sizes, bias - scale,
                              bias + scale, layer_norm)
        actor.load_state_dict(member_state_dict(state, member, members, actor.state_dict()) if members > 1 else state)
        return actor.eval()
