"""CrossQ (Bhatt et al., ICLR 2024, "CrossQ: Batch Normalization in Deep Reinforcement Learning for Greater Sample
Efficiency and Simplicity"): SAC without target networks, with Batch Renormalization in the actor and the critics,
and one joint critic forward over (s, a) and (s', a'). As sb3-contrib's CrossQ (``sb3_contrib/crossq``):

    a' ~ pi_theta(.|s')  (BatchRenorm in eval mode: running statistics, no update)
    [Q_i(s, a); Q_i(s', a')] = Q_phi_i([s; s'], [a; a'])   one training-mode forward over the 2B rows, so the batch
                                                           statistics are those of the mixture of both halves
    y        = r + gamma (1 - d) (min_i Q_i(s', a') - alpha log pi(a'|s')),  Q_i(s', a') detached
    L(phi)   = sum_i mean_b (Q_i(s, a) - y)^2
    every policy_delay-th update (the actor in training mode: its batch statistics, its running ones updated):
    L(theta) = mean_b (alpha log pi(a~|s) - min_i Q_i(s, a~)),  a~ ~ pi_theta(.|s), the critics in eval mode
    L(log alpha) = -mean_b (log alpha (log pi(a~|s) + H)),  H = -|A|

alpha = exp(log alpha) as it is before the update, in the target and the actor loss (sb3-contrib). SAC's tanh-squashed
Gaussian actor (its head, sampling and log-probability), its temperature and its loss come from
`fastddpg.algos.sac`; what is new here is the BatchRenorm networks and the update. The critic loss is the sum of the
two MSEs (sb3-contrib halves it, which Adam's normalisation undoes up to its eps); the metric ``critic_loss`` is
their mean.

Batch Renormalization (Ioffe 2017), as sb3-contrib's ``BatchRenorm`` (``sb3_contrib/common/torch_layers.py``), one
before every Linear layer (the input's too): in training mode, with the batch mean m_B and the unbiased batch
variance v_B, x is normalised with (m_B, v_B) for the first ``warmup`` training forwards, and after them with
m = m_B - d sqrt(v_B) / r, v = v_B / r^2, where r = clip(sqrt(v_B + eps) / sqrt(v_run + eps), 1/3, 3) and
d = clip((m_B - m_run) / sqrt(v_run + eps), -5, 5) (both without gradient); the running statistics then move by
``momentum`` toward (m_B, v_B). In eval mode x is normalised with (m_run, v_run). Then scale * x + shift (learned).
eps = 1e-3.

The running statistics are buffers of the networks (``ra_mean``, ``ra_var``, ``steps`` of each layer), so
checkpoints hold them and resume is exact; a population stacks them per member, like the parameters. The update
computes new statistics as values (`renorm_forward` returns them) and writes them into the buffers after the
gradient: nothing is mutated inside ``grad_and_value``, and ``torch.compile`` sees plain in-place copies. The modules
stay in eval mode: acting, evaluation, export, the probes and the actor loss's critic forward use the running
statistics; only the update's own training-mode forwards (`renorm_forward`) use batch statistics.

The Gaussian noise [eps' | eps] is an extra input, as SAC's (`fastddpg.algos.sac.SAC.extra_inputs`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value

from ..learning.networks import member_state_dict
from ..learning.update import (
    AdamHyper,
    Batch,
    LearnerState,
    Nets,
    Params,
    adam_step_,
    batch_mean,
    bellman_target,
    clip_grad_norm_,
    stacked,
)
from .base import UpdateFns
from .sac import (
    SAC,
    SAC_METRIC_NAMES,
    GaussianActor,
    SACHyper,
    Temperature,
    gaussian_head,
    sample_action,
    squashed_gaussian_sample,
    temperature_step_,
)

RENORM_EPS = 1e-3  # sb3-contrib's batch_norm_eps
RENORM_RMAX, RENORM_DMAX = 3.0, 5.0  # sb3-contrib's clips of r and d (fixed, no relaxation schedule)
ADAM_BETAS = (0.5, 0.999)  # sb3-contrib's CrossQ optimizer_kwargs for the actor and the critics (alpha: Adam's own)


# --- Batch Renormalization -----------------------------------------------------------------------------------------

def batch_renorm(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, ra_mean: torch.Tensor,
                 ra_var: torch.Tensor, steps: torch.Tensor, momentum: float, warmup: float, training: bool,
                 eps: float = RENORM_EPS, rmax: float = RENORM_RMAX, dmax: float = RENORM_DMAX
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One BatchRenorm over the batch dim -2 of x (R, N, w), each of the R stacked rows its own layer: scale, shift,
    ra_mean, ra_var (R, 1, w), steps (R, 1, 1) (training forwards so far). Returns (y (R, N, w), the new ra_mean and
    ra_var (the old ones in eval mode)); the caller adds 1 to ``steps`` after a training forward. (The constants
    are arguments, not globals, for TorchScript.)"""
    if training:
        mean = x.mean(dim=-2, keepdim=True)
        var = x.var(dim=-2, keepdim=True)  # unbiased, as sb3-contrib's x.var(dim=0)
        running_std = (ra_var + eps).sqrt()
        r = ((var + eps).sqrt() / running_std).detach().clamp(1.0 / rmax, rmax)
        d = ((mean - ra_mean) / running_std).detach().clamp(-dmax, dmax)
        # sqrt(v_B) with a finite gradient where v_B = 0 (a dead unit): the warm-up branch's zero gradient must
        # not become 0 * inf = nan through torch.where
        positive = var > 0
        std = torch.where(positive, var, torch.ones_like(var)).sqrt() * positive
        warm = steps > warmup
        norm_mean = torch.where(warm, mean - d * std / r, mean)
        norm_var = torch.where(warm, var / (r * r), var)
        new_mean = ra_mean + momentum * (mean.detach() - ra_mean)
        new_var = ra_var + momentum * (var.detach() - ra_var)
    else:
        norm_mean, norm_var, new_mean, new_var = ra_mean, ra_var, ra_mean, ra_var
    y = (x - norm_mean) / (norm_var + eps).sqrt()
    return scale * y + shift, new_mean, new_var


class RenormLinear(nn.Module):
    """BatchRenorm then Linear, R stacked rows (twin critics, population members): x (R, N, in) -> (R, N, out).
    Parameters: ``weight`` (R, in, out), ``bias`` (R, 1, out) (`fastddpg.learning.networks.StackedLinear`'s layout
    and init), ``scale``, ``shift`` (R, 1, in); buffers ``ra_mean``, ``ra_var`` (R, 1, in), ``steps`` (R, 1, 1).
    In training mode (never during fastddpg training: see the module docstring) a forward updates the running
    statistics in place, as sb3-contrib's layer does."""

    def __init__(self, rows: int, in_features: int, out_features: int, momentum: float, warmup: int) -> None:
        super().__init__()
        self.momentum, self.warmup = float(momentum), float(warmup)
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(rows, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(rows, 1, out_features).uniform_(-bound, bound))
        self.scale = nn.Parameter(torch.ones(rows, 1, in_features))
        self.shift = nn.Parameter(torch.zeros(rows, 1, in_features))
        self.register_buffer("ra_mean", torch.zeros(rows, 1, in_features))
        self.register_buffer("ra_var", torch.ones(rows, 1, in_features))
        self.register_buffer("steps", torch.zeros(rows, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, new_mean, new_var = batch_renorm(x, self.scale, self.shift, self.ra_mean, self.ra_var, self.steps,
                                            self.momentum, self.warmup, self.training)
        if self.training:
            with torch.no_grad():
                self.ra_mean.copy_(new_mean)
                self.ra_var.copy_(new_var)
                self.steps.add_(1.0)
        return torch.baddbmm(self.bias, y, self.weight)


class RenormMLP(nn.Module):
    """[BatchRenorm, Linear] per layer with ReLU between (sb3-contrib's ``create_mlp`` with BatchRenorm as the
    pre-linear module, the output layer included), R stacked rows: x (R, N, sizes[0]) -> (R, N, sizes[-1]).
    ``single``: one network (R = 1) called on x (N, sizes[0]) -> (N, sizes[-1]) (a single agent's actor)."""

    def __init__(self, rows: int, sizes: Sequence[int], momentum: float, warmup: int, single: bool = False) -> None:
        super().__init__()
        self.single = single
        self.layers = nn.ModuleList([RenormLinear(rows, sizes[i], sizes[i + 1], momentum, warmup)
                                     for i in range(len(sizes) - 1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeeze = self.single and x.dim() == 2
        if squeeze:
            x = x.unsqueeze(0)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = F.relu(x)
        return x[0] if squeeze else x


def renorm_forward(net: RenormMLP, params: Params, x: torch.Tensor, prefix: str = ""
                   ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``net``'s training-mode forward with the parameters ``params`` (names ``prefix + "layers.i.weight"``, ...)
    and its own running statistics: the batch statistics normalise, and the new running statistics come back as
    values instead of being written (so that this runs inside ``grad_and_value``). Returns (the output, as
    ``net(x)``'s shape, [ra_mean, ra_var, steps of layer 0, of layer 1, ...] (new, detached))."""
    squeeze = net.single and x.dim() == 2
    if squeeze:
        x = x.unsqueeze(0)
    new_stats: list[torch.Tensor] = []
    last = len(net.layers) - 1
    for i, layer in enumerate(net.layers):
        p = {k: params[f"{prefix}layers.{i}.{k}"] for k in ("weight", "bias", "scale", "shift")}
        y, new_mean, new_var = batch_renorm(x, p["scale"], p["shift"], layer.ra_mean, layer.ra_var, layer.steps,
                                            layer.momentum, layer.warmup, True)
        new_stats += [new_mean, new_var, layer.steps + 1.0]
        x = torch.baddbmm(p["bias"], y, p["weight"])
        if i < last:
            x = F.relu(x)
    return (x[0] if squeeze else x), new_stats


def running_stats(net: RenormMLP) -> list[torch.Tensor]:
    """``net``'s running statistics in `renorm_forward`'s order (the live buffers)."""
    return [t for layer in net.layers for t in (layer.ra_mean, layer.ra_var, layer.steps)]


def write_stats_(net: RenormMLP, new_stats: list[torch.Tensor]) -> None:
    """Copy the statistics `renorm_forward` returned into ``net``'s buffers, in place."""
    torch._foreach_copy_(running_stats(net), new_stats)


# --- the networks ----------------------------------------------------------------------------------------------------

class RenormActor(GaussianActor):
    """SAC's `GaussianActor` (its forward: scale * tanh(m(s)) + bias; `gaussian`; ``sample_action``) over a
    `RenormMLP` net: obs (..., obs_dim) -> [m | log sigma]. ``members=K > 0``: K stacked actors, obs (K, B, obs_dim);
    else one, obs (B, obs_dim)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], action_low: torch.Tensor,
                 action_high: torch.Tensor, momentum: float, warmup: int, members: int = 0) -> None:
        nn.Module.__init__(self)  # GaussianActor's fields, with a RenormMLP for its plain MLP
        self.obs_dim, self.act_dim = obs_dim, act_dim  # (obs_dim: export reads it, there being no nn.Linear)
        self.stacked = members > 0
        self.net = RenormMLP(max(members, 1), [obs_dim, *hidden_sizes, 2 * act_dim], momentum, warmup,
                             single=members == 0)
        self.set_bounds(action_low, action_high)


class RenormCritic(nn.Module):
    """The C = 2 critics of one agent, or of each of K population members (2K stacked rows, member-major), each
    a `RenormMLP` row: forward(obs, action) -> Q (C, B, 1) for obs (B, obs_dim), or (K, C, B, 1) for (K, B, obs_dim)
    (`fastddpg.learning.networks.TwinCritic`'s and `PopulationCritic`'s shapes)."""

    stacked = True  # per-row gradient clipping (`fastddpg.learning.update.clip_grad_norm_`)

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], momentum: float, warmup: int,
                 num_critics: int = 2, members: int = 0) -> None:
        super().__init__()
        self.num_critics, self.members = num_critics, members
        self.net = RenormMLP(num_critics * max(members, 1), [obs_dim + act_dim, *hidden_sizes, 1], momentum, warmup)

    def rows(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The net's input (R, N, obs_dim + act_dim): each member's rows repeated for its C critics."""
        x = torch.cat([obs, action], dim=-1)
        if x.dim() == 3:
            return x.repeat_interleave(self.num_critics, dim=0)
        return x.unsqueeze(0).expand(self.num_critics, *x.shape)

    def shaped(self, q: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """The net's output (R, N, 1) as Q (C, N, 1) or (K, C, N, 1)."""
        return q.unflatten(0, (obs.shape[0], self.num_critics)) if obs.dim() == 3 else q

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.shaped(self.net(self.rows(obs, action)), obs)


# --- the equations (shape-generic: one agent (B, .) or a population (K, B, .)) ----------------------------------------

def crossq_critic_loss(critic: RenormCritic, critic_params: Params, batch: Batch, next_action: torch.Tensor,
                       next_log_prob: torch.Tensor, alpha: torch.Tensor, gamma: Any
                       ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """One training-mode forward of the critics over [s; s'], [a; a'] (2B rows: the batch statistics see both
    halves), then L(phi) = sum_i mean_b (Q_i(s, a) - y)^2 with y = r + gamma (1 - d) (min_i Q_i(s', a') - alpha
    log pi(a'|s')), Q_i(s', a') detached. Returns (the loss summed over members, (each critic's MSE (*M, C), Q
    (*M, C, B, 1), y (*M, B, 1), the critics' new running statistics), detached)."""
    n = batch.obs.shape[-2]
    obs = torch.cat([batch.obs, batch.next_obs], dim=-2)
    action = torch.cat([batch.action, next_action], dim=-2)
    out, new_stats = renorm_forward(critic.net, critic_params, critic.rows(obs, action), prefix="net.")
    q_all = critic.shaped(out, obs)
    q, q_next = q_all[..., :n, :], q_all[..., n:, :].detach()
    soft_value = q_next.amin(dim=-3) - alpha * next_log_prob
    y = bellman_target(batch, soft_value, gamma)
    per_critic = batch_mean((q - y.unsqueeze(-3)).square())
    return per_critic.sum(), (per_critic.detach(), q.detach(), y, new_stats)


def crossq_actor_loss(actor: RenormActor, actor_params: Params, critic: nn.Module, critic_params: Params,
                      obs: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor
                      ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """L(theta) = mean_b (alpha log pi(a~|s) - min_i Q_i(s, a~)), a~ ~ pi_theta(.|s) with ``eps`` from the actor in
    training mode (batch statistics), the critics in eval mode (running statistics, unchanged), as sb3-contrib.
    Returns (the sum over members, (per member (*M), log pi (*M, B, 1), the actor's new running statistics),
    detached)."""
    out, new_stats = renorm_forward(actor.net, actor_params, obs, prefix="net.")
    squashed, log_prob = squashed_gaussian_sample(*gaussian_head(out, actor.act_dim), eps)
    action = actor.action_scale * squashed + actor.action_bias
    q_min = functional_call(critic, critic_params, (obs, action)).amin(dim=-3)
    loss = batch_mean(alpha * log_prob - q_min).reshape(obs.shape[:-2])
    return loss.sum(), (loss.detach(), log_prob.detach(), new_stats)


def crossq_critic_step_(nets: Nets, state: LearnerState, batch: Batch, eps_next: torch.Tensor, alpha: torch.Tensor,
                        hp: SACHyper) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """a' ~ pi(.|s') (eval mode, no gradient), one critic step on `crossq_critic_loss`, then the critics' running
    statistics written. Returns (each critic's MSE, Q, y), detached."""
    with torch.no_grad():
        next_action, next_log_prob = sample_action(nets.actor, state["actor"], batch.next_obs, eps_next)
    grads, (_, (per_critic, q, y, new_stats)) = grad_and_value(crossq_critic_loss, argnums=1, has_aux=True)(
        nets.critic, state["critic"], batch, next_action, next_log_prob, alpha, hp.gamma)
    grads = list(grads.values())
    clip_grad_norm_(grads, hp.grad_clip_norm, stacked(nets.critic))
    adam_step_(list(state["critic"].values()), state["optim"]["critic"], grads, hp.critic)
    write_stats_(nets.critic.net, new_stats)
    return per_critic, q, y


def crossq_actor_step_(nets: Nets, state: LearnerState, obs: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor,
                       hp: SACHyper) -> tuple[torch.Tensor, torch.Tensor]:
    """One actor step on `crossq_actor_loss`, then the actor's running statistics written. Returns (the loss per
    member (*M), log pi (*M, B, 1) of the actor before the step), detached."""
    grads, (_, (loss, log_prob, new_stats)) = grad_and_value(crossq_actor_loss, argnums=1, has_aux=True)(
        nets.actor, state["actor"], nets.critic, state["critic"], obs, eps, alpha)
    grads = list(grads.values())
    clip_grad_norm_(grads, hp.grad_clip_norm, stacked(nets.actor))
    adam_step_(list(state["actor"].values()), state["optim"]["actor"], grads, hp.actor)
    write_stats_(nets.actor.net, new_stats)
    return loss, log_prob


def crossq_update(nets: Nets, state: LearnerState, batch: Batch, eps: torch.Tensor, hp: SACHyper,
                  target_entropy: float, actor_step: bool) -> torch.Tensor:
    """One CrossQ update on ``batch`` with the standard normal noise ``eps`` (*M, B, 2 act_dim) = [eps' | eps]: the
    critic step; with ``actor_step`` the actor step and the temperature step (on the actor's log pi before its
    step). Returns metrics (*M, 6) = SAC_METRIC_NAMES (actor_loss and entropy 0 without the actor step)."""
    eps_next, eps_now = eps.chunk(2, dim=-1)
    alpha = state["alpha"]["log_alpha"].exp()  # before this update's temperature step, as sb3-contrib
    per_critic, q, y = crossq_critic_step_(nets, state, batch, eps_next, alpha, hp)
    lead = y.shape[:-2]
    if actor_step:
        loss_pi, log_prob = crossq_actor_step_(nets, state, batch.obs, eps_now, alpha, hp)
        temperature_step_(state, log_prob, target_entropy, hp)
        entropy = -batch_mean(log_prob)
    else:
        loss_pi = entropy = torch.zeros(lead, device=y.device)
    return torch.stack([per_critic.mean(dim=-1), loss_pi, batch_mean(q)[..., 0], batch_mean(y), alpha.reshape(lead),
                        entropy], dim=-1)


class CrossQ(SAC):
    """SAC's actor, temperature, acting and optimizer groups; BatchRenorm networks, no target networks, the
    CrossQ update (see the module docstring)."""

    name = "crossq"
    metric_names = SAC_METRIC_NAMES
    actor_step_metrics = frozenset({"actor_loss", "entropy"})  # 0 on critic-only updates
    optimizer_groups = ("actor", "critic", "alpha")

    def __init__(self, *args: Any, critic_width: int = 1024, renorm_momentum: float = 0.01,
                 renorm_warmup: int = 100_000, **kwargs: Any) -> None:
        self.critic_width, self.renorm_momentum, self.renorm_warmup = int(critic_width), renorm_momentum, renorm_warmup
        super().__init__(*args, **kwargs)

    # --- networks and hyperparameters -----------------------------------------------------------------------------
    def _networks(self, members: int) -> dict[str, nn.Module]:
        o, a, m, w = self.obs_dim, self.act_dim, self.renorm_momentum, self.renorm_warmup
        actor = RenormActor(o, a, self.hidden_sizes, self.action_low, self.action_high, m, w, members=members)
        critic = RenormCritic(o, a, [self.critic_width] * len(self.hidden_sizes), m, w, members=members)
        # eval mode throughout: only the update's own forwards (renorm_forward) use batch statistics
        return {"actor": actor.eval(), "critic": critic.eval(), "alpha": Temperature(self.init_alpha, members)}

    def build_networks(self) -> dict[str, nn.Module]:
        """The BatchRenorm Gaussian actor, the twin BatchRenorm critics (``critic_width`` wide, as many hidden layers
        as the actor) and log alpha; no target networks."""
        return self._networks(0)

    def build_stacked_networks(self, members: int) -> dict[str, nn.Module]:
        return self._networks(members)

    @classmethod
    def hyper_from_config(cls, cfg: Any) -> SACHyper:
        return SACHyper(cfg.gamma, cfg.tau, cfg.grad_clip_norm, AdamHyper(cfg.actor_lr, ADAM_BETAS),
                        AdamHyper(cfg.critic_lr, ADAM_BETAS), AdamHyper(cfg.critic_lr))

    @classmethod
    def options_from_config(cls, cfg: Any) -> dict[str, Any]:
        return {"init_alpha": cfg.init_alpha, "policy_delay": cfg.policy_delay, "critic_width": cfg.critic_width,
                "renorm_momentum": cfg.renorm_momentum, "renorm_warmup": cfg.renorm_warmup}

    # --- the update -----------------------------------------------------------------------------------------------
    def make_update_fns(self, nets: Nets, hyper: Any, as_batch: Callable[[torch.Tensor], Batch],
                        width: int) -> UpdateFns:
        """The critic-only and the full update (one of them when the policy delay is 1); the noise is each row's
        columns past ``width``."""
        target_entropy = -float(self.act_dim)  # "auto": -|A|

        # two defs, so each compiles to its own graph
        def crossq_critic_step(state: LearnerState, rows: torch.Tensor) -> torch.Tensor:
            return crossq_update(nets, state, as_batch(rows), rows[..., width:], hyper, target_entropy, False)

        def crossq_full_step(state: LearnerState, rows: torch.Tensor) -> torch.Tensor:
            return crossq_update(nets, state, as_batch(rows), rows[..., width:], hyper, target_entropy, True)

        if self.policy_delay == 1:
            return {True: crossq_full_step}
        return {False: crossq_critic_step, True: crossq_full_step}

    # --- acting: SAC's (explore samples pi(.|s), the policy is tanh(m(s))), with the running statistics ----------
    @classmethod
    def policy_from_state_dict(cls, state: dict[str, torch.Tensor], hidden_sizes: Sequence[int],
                               layer_norm: bool = False, member: int = 0, members: int = 1) -> nn.Module:
        """The eval-mode `RenormActor` (forward: scale * tanh(m(s)) + bias, BatchRenorm with the saved running
        statistics) of a saved actor state_dict (of a population's: member ``member``'s)."""
        scale, bias = state["action_scale"], state["action_bias"]
        actor = RenormActor(state["net.layers.0.weight"].shape[1], scale.shape[0], hidden_sizes, bias - scale,
                            bias + scale, 0.0, 0)
        actor.load_state_dict(member_state_dict(state, member, members, actor.state_dict()) if members > 1 else state)
        return actor.eval()
