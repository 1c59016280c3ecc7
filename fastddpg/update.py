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

TD3 (``--algo td3``: twin critics, target policy smoothing, policy delay) is the last section of this module.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value

from .networks import Actor, Critic, TwinCritic

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

    ``num_critics=1`` gives DDPG's `Critic` (Q (B, 1)); ``num_critics=2`` gives TD3's `TwinCritic`, one module
    with stacked parameters (Q (2, B, 1)). ``layer_norm`` adds LayerNorm to every hidden layer of all networks.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: tuple[int, ...], action_low: torch.Tensor,
                 action_high: torch.Tensor, actor_lr: float, critic_lr: float, device: torch.device,
                 layer_norm: bool = False, num_critics: int = 1) -> None:
        self.num_critics = num_critics
        self.action_low = torch.as_tensor(action_low, dtype=torch.float32, device=device)
        self.action_high = torch.as_tensor(action_high, dtype=torch.float32, device=device)
        self.actor = Actor(obs_dim, act_dim, hidden_sizes, action_low, action_high, layer_norm).to(device)
        self.critic = (Critic(obs_dim, act_dim, hidden_sizes, layer_norm) if num_critics == 1 else
                       TwinCritic(obs_dim, act_dim, hidden_sizes, num_critics, layer_norm)).to(device)
        # Target networks start as exact copies.
        self.target_actor = copy.deepcopy(self.actor)
        self.target_critic = copy.deepcopy(self.critic)
        self.actor_params = _aliases(self.actor)
        self.critic_params = _aliases(self.critic)
        self.target_actor_params = _aliases(self.target_actor)
        self.target_critic_params = _aliases(self.target_critic)
        self.actor_opt = Adam(list(self.actor_params.values()), actor_lr)
        self.critic_opt = Adam(list(self.critic_params.values()), critic_lr)

    def __deepcopy__(self, memo: dict) -> Learner:
        """A copy whose parameter aliases point at the copy's own modules (a plain deepcopy would not)."""
        new = copy.copy(self)
        for name, module in self.modules().items():
            setattr(new, name, copy.deepcopy(module, memo))
        new.actor_params = _aliases(new.actor)
        new.critic_params = _aliases(new.critic)
        new.target_actor_params = _aliases(new.target_actor)
        new.target_critic_params = _aliases(new.target_critic)
        new.actor_opt = Adam(list(new.actor_params.values()), self.actor_opt.lr, self.actor_opt.betas,
                             self.actor_opt.eps)
        new.critic_opt = Adam(list(new.critic_params.values()), self.critic_opt.lr, self.critic_opt.betas,
                              self.critic_opt.eps)
        new.actor_opt.load_state_dict(self.actor_opt.state_dict())
        new.critic_opt.load_state_dict(self.critic_opt.state_dict())
        return new

    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critic": self.critic, "target_actor": self.target_actor,
                "target_critic": self.target_critic}

    def q1(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Q (B, 1) of the (first) critic: DDPG's critic, or TD3's Q_1 (the one the actor ascends)."""
        q = self.critic(obs, action)
        return q if self.num_critics == 1 else q[0]


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

    # actor: ascend Q_phi(s, mu_theta(s)); then the soft target update
    loss_pi = actor_step_(learner, actor_loss, batch.obs, grad_clip_norm)
    soft_update_targets_(learner, tau)
    return torch.stack([loss_q.detach(), loss_pi, q.detach().mean(), y.mean()])


def actor_step_(learner: Learner, loss_fn: Callable[..., torch.Tensor], obs: torch.Tensor,
                grad_clip_norm: float) -> torch.Tensor:
    """One actor step on ``loss_fn(actor, actor_params, critic, critic_params, obs)``, differentiated with
    respect to the actor's parameters only (the critic's enter as constants). Returns the loss, detached."""
    grads, loss = grad_and_value(loss_fn, argnums=1)(
        learner.actor, learner.actor_params, learner.critic, learner.critic_params, obs)
    grads = list(grads.values())
    clip_grad_norm_(grads, grad_clip_norm)
    adam_step_(learner.actor_opt, grads)
    return loss.detach()


def soft_update_targets_(learner: Learner, tau: float) -> None:
    """Soft update of all target parameters, the actor's and the critic's, in one lerp."""
    soft_update_(list(learner.target_actor_params.values()) + list(learner.target_critic_params.values()),
                 list(learner.actor_params.values()) + list(learner.critic_params.values()), tau)


# --- compiling the update --------------------------------------------------------------------------------------

COMPILE_MODES = ("auto", "off", "default", "max-autotune")


def compile_update(fn: Callable[[torch.Tensor], torch.Tensor], mode: str, device: torch.device,
                   cuda_graph: bool = True) -> Callable[[torch.Tensor], torch.Tensor]:
    """Wrap an update ``fn(rows (B, width)) -> metrics`` for speed; the numbers do not change (tested).

    - ``off``: eager.
    - ``default`` / ``max-autotune``: ``torch.compile(fullgraph=True)``: the critic step, actor step and soft
      update become one graph; a graph break or a recompilation would be a bug (tested with fullgraph and
      ``error_on_recompile``). Inductor's on-disk FX graph cache is on, so a second run reuses the kernels.
    - on CUDA, the compiled update is also captured in a CUDA graph (`CudaGraphUpdate`), so an update costs one
      input copy and one graph launch. ``cuda_graph=False`` leaves the graph out (`fastddpg verify` checks
      compiled and compiled-in-a-graph apart).
    ``auto`` must be resolved by the caller (`resolve_compile_mode`).
    """
    if mode == "off":
        return fn
    if mode not in ("default", "max-autotune"):
        raise ValueError(f"unresolved compile mode {mode!r}")
    import torch._inductor.config as inductor_config

    inductor_config.fx_graph_cache = True
    compiled = torch.compile(fn, fullgraph=True, mode=None if mode == "default" else mode, dynamic=False)
    if device.type == "cuda" and cuda_graph:
        return CudaGraphUpdate(compiled)
    return GuardFreeCall(compiled)


class GuardFreeCall:
    """Calls a compiled update, skipping dynamo's guard checks after the first (compiling) call.

    The guards re-check every captured tensor (parameters, optimizer state) on each call: about 0.5 ms of a
    4 ms update on a 2-core CPU. They can be skipped because the update is compiled exactly once and called with
    one input shape ever after (tested with ``error_on_recompile``), and state is only ever changed in place.
    """

    def __init__(self, compiled: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.compiled = compiled
        self.calls = 0

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 1:
            return self.compiled(rows)
        with torch.compiler.set_stance("default", skip_guard_eval_unsafe=True):
            return self.compiled(rows)


def resolve_compile_mode(mode: str, device: torch.device, planned_updates: int) -> str:
    """``auto``: compile on CUDA always; on CPU only when the run has enough updates to pay back the one-off
    compile time (on a 2-core CPU: about 5 s with a warm inductor cache, 20-40 s cold; see bench/update.py)."""
    if mode != "auto":
        return mode
    if device.type == "cuda":
        return "default"
    return "default" if planned_updates >= AUTO_COMPILE_MIN_UPDATES_CPU else "off"


AUTO_COMPILE_MIN_UPDATES_CPU = 5_000  # break-even: ~25 s compile / (1/100 - 1/230) s per update


class CudaGraphUpdate:
    """Runs ``fn(rows)`` a few times to warm up, then captures one call in a CUDA graph and replays it.

    Every call copies ``rows`` into a static input tensor and replays the graph; the returned metrics tensor is
    the graph's static output (read or accumulate it before the next call). ``capture=False`` runs the same
    static-buffer logic without a graph, so it can be tested on a CPU.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], warmup: int = 3, capture: bool = True) -> None:
        self.fn, self.warmup, self.capture = fn, warmup, capture
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_rows: torch.Tensor | None = None
        self.static_out: torch.Tensor | None = None

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.static_rows is None:
            if self.calls <= self.warmup:
                return self._warm(rows)
            self.static_rows = rows.clone()
            if self.capture:
                self.graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.graph):
                    self.static_out = self.fn(self.static_rows)
            else:
                self.static_out = self.fn(self.static_rows)
                return self.static_out
        self.static_rows.copy_(rows)
        if self.graph is not None:
            self.graph.replay()
        else:
            self.static_out = self.fn(self.static_rows)
        return self.static_out

    def _warm(self, rows: torch.Tensor) -> torch.Tensor:
        if not self.capture:
            return self.fn(rows)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            out = self.fn(rows)
        torch.cuda.current_stream().wait_stream(stream)
        return out


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


def metric_names(algo: str) -> tuple[str, ...]:
    """Names of the metrics vector the update for ``algo`` ('ddpg' or 'td3') returns, in order.

    DDPG: METRIC_NAMES. TD3: critic_loss (mean over the two critics of their MSE, so it compares with DDPG's),
    actor_loss (0 on critic-only updates: average it over actor steps only), q_mean (= q1_mean, the critic the
    actor ascends), y_mean, q1_mean, q2_mean, target_min_mean (mean of min_i Q'_i(s', a~), before r and gamma).
    """
    return TD3_METRIC_NAMES if algo == "td3" else METRIC_NAMES


def smoothed_target_action(learner: Learner, next_obs: torch.Tensor, eps: torch.Tensor, policy_noise: float,
                           noise_clip: float) -> torch.Tensor:
    """a~ = clip(mu'(s') + clip(policy_noise eps, -noise_clip, noise_clip) * scale, low, high), shape (B, act_dim).

    ``eps`` (B, act_dim) is standard normal; scale = (high - low) / 2 (scale > 0, so clipping before scaling is
    clipping at +-noise_clip * scale)."""
    scale = learner.target_actor.action_scale
    noise = torch.clamp(policy_noise * eps, -noise_clip, noise_clip) * scale
    next_action = functional_call(learner.target_actor, learner.target_actor_params, (next_obs,))
    return torch.clamp(next_action + noise, learner.action_low, learner.action_high)


def td3_target(learner: Learner, batch: Batch, eps: torch.Tensor, gamma: float, policy_noise: float,
               noise_clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """y = r + gamma (1 - d) min_i Q'_i(s', a~). Returns (y (B, 1), min_i Q'_i(s', a~) (B, 1)); no gradient."""
    with torch.no_grad():
        next_action = smoothed_target_action(learner, batch.next_obs, eps, policy_noise, noise_clip)
        q_next = functional_call(learner.target_critic, learner.target_critic_params,
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


def td3_update(learner: Learner, batch: Batch, eps: torch.Tensor, gamma: float, tau: float, grad_clip_norm: float,
               policy_noise: float, noise_clip: float, actor_step: bool) -> torch.Tensor:
    """One TD3 update on ``batch`` with smoothing noise ``eps`` (B, act_dim) ~ N(0, 1): the twin critic step
    always; with ``actor_step`` (a Python constant) also the actor step, on Q_1 of the freshly updated critics,
    and the soft update of all targets. Returns metrics (7,) = TD3_METRIC_NAMES, on the device."""
    y, q_min = td3_target(learner, batch, eps, gamma, policy_noise, noise_clip)
    critic_grads, (loss_q, q) = grad_and_value(twin_critic_loss, argnums=1, has_aux=True)(
        learner.critic, learner.critic_params, batch, y)
    critic_grads = list(critic_grads.values())
    clip_grad_norm_stacked_(critic_grads, grad_clip_norm)
    adam_step_(learner.critic_opt, critic_grads)  # Adam is elementwise: stacked == one Adam per critic

    if actor_step:
        loss_pi = actor_step_(learner, td3_actor_loss, batch.obs, grad_clip_norm)
        soft_update_targets_(learner, tau)
    else:
        loss_pi = torch.zeros((), device=y.device)
    q = q.detach()
    q1, q2 = q[0].mean(), q[1].mean()
    return torch.stack([loss_q.detach() / q.shape[0], loss_pi, q1, y.mean(), q1, q2, q_min.mean()])


class UpdateFns(NamedTuple):
    """The uncompiled update functions of one algorithm, each ``fn(rows) -> metrics`` (see `make_update_fns`).

    ``by_actor_step[True]`` runs critic + actor + targets, ``by_actor_step[False]`` the critic only (TD3); update
    number u (1-based) is an actor step iff ``u % policy_delay == 0``. Each row is a replay row followed by
    ``eps_dim`` columns of standard normal smoothing noise (TD3: act_dim; DDPG: 0).
    """

    by_actor_step: dict[bool, Callable[[torch.Tensor], torch.Tensor]]
    policy_delay: int
    eps_dim: int

    def is_actor_step(self, update_number: int) -> bool:
        return update_number % self.policy_delay == 0


def make_update_fns(algo: str, learner: Learner, as_batch: Callable[[torch.Tensor], Batch], width: int,
                    gamma: float, tau: float, grad_clip_norm: float, policy_noise: float = 0.2,
                    noise_clip: float = 0.5, policy_delay: int = 2) -> UpdateFns:
    """The update functions of ``algo`` over rows (B, width + eps_dim); ``as_batch`` splits the first ``width``
    columns into a Batch (`ReplayBuffer.as_batch`). TD3's two functions are separate ``def``s so each compiles to
    its own graph (one closure with a flag would recompile)."""
    if algo == "ddpg":
        def ddpg_step(rows: torch.Tensor) -> torch.Tensor:
            return ddpg_update(learner, as_batch(rows), gamma, tau, grad_clip_norm)

        return UpdateFns({True: ddpg_step}, policy_delay=1, eps_dim=0)
    if algo != "td3":
        raise ValueError(f"unknown algo {algo!r}")

    def td3_critic_step(rows: torch.Tensor) -> torch.Tensor:
        return td3_update(learner, as_batch(rows), rows[:, width:], gamma, tau, grad_clip_norm, policy_noise,
                          noise_clip, actor_step=False)

    def td3_full_step(rows: torch.Tensor) -> torch.Tensor:
        return td3_update(learner, as_batch(rows), rows[:, width:], gamma, tau, grad_clip_norm, policy_noise,
                          noise_clip, actor_step=True)

    fns = {True: td3_full_step} if policy_delay == 1 else {False: td3_critic_step, True: td3_full_step}
    return UpdateFns(fns, policy_delay=policy_delay, eps_dim=int(learner.action_low.shape[0]))
