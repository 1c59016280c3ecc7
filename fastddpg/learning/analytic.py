"""The DDPG and TD3 updates with their gradients derived by hand: the same equations as `fastddpg.learning.update`,
eager, with no autograd and no compile.

Why: on a CPU the eager update (``torch.func`` over ``functional_call``) spends most of its time outside the
products: function transforms, parameter swapping, ~150 small ops. A compiled update removes that overhead but
costs 10-15 s of compile on a fresh 2-core machine, most of a 10k-step run's start-up. The networks of a plain DDPG
are MLPs (Linear and ReLU, the actor ending in tanh; TD3's twin critics stacked), whose reverse mode is a handful
of products, so it is written out here: each network's forward keeps the inputs of its layers (`MLPTape`), and its
vector-Jacobian product (`mlp_vjp`) returns the parameter gradients and, for the actor step, the gradient with
respect to the action. Measured on a 2-core AMD EPYC (Zen 4), 1 thread, batch 128: DDPG's at about 0.9x the
compiled update's updates/s and 1.9x the eager update's, TD3's at 0.8-0.9x and 1.7x, from the first update on
(README, Performance).

What is reused as it is: the TD target (`bellman_target`; TD3's smoothing and clipped double Q), the critic's loss value
(`td_mse`), the gradient clipping (`clip_grad_norm_`), the soft update (`soft_update_targets_`) and the metrics
(`ddpg_metrics`, `td3_metrics`) of `fastddpg.learning.update`; Adam is its equation (`adam_step_`) run by torch's
fused CPU kernel (`fused_adam_step_`), one pass over each tensor instead of nine foreach ops. What is derived here,
and nowhere else: the gradients of the two losses with respect to the critic's output (`critic_loss_grad`,
`actor_loss_grad`) and the chain rule through the networks. ``fastddpg verify`` and tests/test_analytic.py hold it
to the eager update's numbers (float64: to ~1e-12).

Scope: one agent (not a population), DDPG's and TD3's `Actor`, `Critic` and `TwinCritic` without LayerNorm
(`hand_derivable`). Other algorithms and networks compile (`Algorithm.analytic_update_fns` returns None for them).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .networks import StackedLinear, TwinCritic
from .update import (
    AdamHyper,
    AdamState,
    Batch,
    Hyper,
    LearnerState,
    Nets,
    Params,
    batch_mean,
    bellman_target,
    clip_grad_norm_,
    clipped_double_q_target,
    ddpg_metrics,
    first_critic,
    smoothed,
    soft_update_targets_,
    stacked,
    td3_metrics,
    td_mse,
)

_relu_backward = torch.ops.aten.threshold_backward.default  # d * (h > 0): ReLU's backward, one kernel


class MLPTape(NamedTuple):
    """What an MLP's forward keeps for its backward: the input of every Linear layer, (B, in_i) each (the first is the
    network's input; the others are ReLU outputs, whose sign is also ReLU's derivative)."""

    inputs: list[torch.Tensor]


def hand_derivable(module: nn.Module, kind: type[nn.Module], output: type[nn.Module]) -> bool:
    """Whether ``module`` is a ``kind`` (`Actor`, `Critic`, `TwinCritic`) whose ``net`` is exactly what `mlp_forward`
    and `mlp_vjp` assume: Linear layers (``nn.Linear``, or `StackedLinear` in a `TwinCritic`) with ReLU between them
    and ``output`` after the last."""
    if type(module) is not kind:
        return False
    layers = list(module.net)
    linears, activations = layers[0::2], layers[1::2]
    linear = StackedLinear if kind is TwinCritic else nn.Linear
    return (len(layers) % 2 == 0 and all(type(m) is linear for m in linears)
            and all(type(m) is nn.ReLU for m in activations[:-1]) and type(activations[-1]) is output
            and [name for name, _ in module.net.named_parameters()] == [
                f"{i}.{p}" for i in range(0, len(layers), 2) for p in ("weight", "bias")])


def layer_params(params: Params) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, bias) of each Linear layer of an MLP's parameters, in order (an ``nn.Sequential`` of Linear and
    activation modules names them ``net.0.weight``, ``net.0.bias``, ``net.2.weight``, ...): an ``nn.Linear``'s
    (out, in) and (out,), or C stacked layers' (`StackedLinear`) (C, in, out) and (C, 1, out)."""
    tensors = list(params.values())
    return list(zip(tensors[0::2], tensors[1::2], strict=True))


def _product(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """(bias +) a @ b: a (m, k), b (k, n), bias (n,) by ``torch.addmm``/``mm``; or C stacked products, a (C, m, k),
    b (C, k, n), bias (C, 1, n), by ``torch.baddbmm``/``bmm`` except where n or m is 1, for which ATen's batched
    product takes a slow path (72 us for (2, 128, 256) @ (2, 256, 1) against 2 x 4 us a slice at a time, 1 thread).
    Either rank with k = 1 (a last layer's single output, backward) is an outer product, a broadcast multiply: the
    same products, and MKL's k = 1 path is slower."""
    if a.shape[-1] == 1:
        out = a * b
    elif a.dim() == 3 and (b.shape[-1] == 1 or a.shape[-2] == 1):
        out = torch.stack([a[c] @ b[c] for c in range(a.shape[0])])
    elif a.dim() == 3:
        return torch.bmm(a, b) if bias is None else torch.baddbmm(bias, a, b)
    else:
        return torch.mm(a, b) if bias is None else torch.addmm(bias, a, b)
    return out if bias is None else out + bias


def mlp_forward(params: Params, x: torch.Tensor, keep: bool) -> tuple[torch.Tensor, MLPTape]:
    """Linear layers with ReLU between them and none after the last: x (B, in) -> (B, out), or for C stacked
    networks x (C, B, in) -> (C, B, out). With ``keep`` the tape holds each layer's input for `mlp_vjp`."""
    inputs: list[torch.Tensor] = []
    layers = layer_params(params)
    h = x
    for i, (w, b) in enumerate(layers):
        if keep:
            inputs.append(h)
        h = _product(h, w if w.dim() == 3 else w.t(), b)
        if i < len(layers) - 1:
            h = h.relu_()  # in place: the product's output is this function's own, and only its ReLU is kept
    return h, MLPTape(inputs)


def mlp_vjp(params: Params, tape: MLPTape, d_out: torch.Tensor, param_grads: bool = True,
            input_cols: slice | None = None) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """Reverse mode of `mlp_forward` for an output gradient d_out (B, out) or (C, B, out): for each layer
    h_out = h_in W^T + b, dL/dW = d^T h_in (out, in), dL/db = sum_b d (out,), and d for the layer below is
    (d W) * (h_in > 0); stacked, h_out = h_in W + b per network: dL/dW = h_in^T d (C, in, out), dL/db (C, 1, out).

    Returns (the gradients in the order of ``params``, or [] without ``param_grads``; with ``input_cols``,
    dL/dx at those columns of the input, (B, n) or (C, B, n), else None: the actor step needs only the action's
    columns of the critic's input, a product n/in the size of the whole)."""
    layers = layer_params(params)
    grads: list[torch.Tensor] = []
    d, d_input = d_out, None
    for i in range(len(layers) - 1, -1, -1):
        w, h_in = layers[i][0], tape.inputs[i]
        per_network = w.dim() == 3  # C stacked networks
        if param_grads:
            grads[:0] = ([_product(h_in.transpose(1, 2), d), d.sum(dim=1, keepdim=True)] if per_network
                         else [_weight_grad(d, h_in), d.sum(dim=0)])
        if i > 0:
            d = _relu_backward(_input_grad(d, w, per_network), h_in, 0)
        elif input_cols is not None:
            d_input = _input_grad(d, w[:, input_cols], per_network)  # w[:, input_cols]: (out, n); stacked (C, n, out)
    return grads, d_input


def _weight_grad(d: torch.Tensor, h_in: torch.Tensor) -> torch.Tensor:
    """d^T h_in (out, in) for d (B, out), h_in (B, in). Where in < out (a first layer's few inputs) it is computed
    as (h_in^T d)^T: the same dot products, and MKL's product with a narrow output is ~4x slower (39 against 11 us
    for (256, 128) @ (128, 4), 1 thread)."""
    if h_in.shape[-1] < d.shape[-1]:
        return (h_in.t() @ d).t().contiguous()
    return d.t() @ h_in


def _input_grad(d: torch.Tensor, w: torch.Tensor, per_network: bool) -> torch.Tensor:
    """d W: the gradient at a layer's input, d (B, out) with W (out, in), or stacked d (C, B, out) with W
    (C, in, out)."""
    return _product(d, w.transpose(1, 2) if per_network else w)


def actor_forward(nets: Nets, params: Params, obs: torch.Tensor, keep: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, MLPTape]:
    """mu_theta(s) = scale * tanh(net(s)) + bias (`fastddpg.learning.networks.Actor`). Returns (action (B, act_dim),
    tanh(net(s)) (B, act_dim), the net's tape)."""
    pre, tape = mlp_forward(params, obs, keep)
    u = torch.tanh(pre)
    return nets.actor.action_scale * u + nets.actor.action_bias, u, tape


def critic_forward(params: Params, obs: torch.Tensor, action: torch.Tensor, keep: bool
                   ) -> tuple[torch.Tensor, MLPTape]:
    """Q_phi(s, a) = net([s, a]): a `Critic`'s (B, 1), or C stacked critics' (`TwinCritic`, each on the same input)
    (C, B, 1); and the net's tape."""
    x = torch.cat([obs, action], dim=-1)
    first = next(iter(params.values()))
    if first.dim() == 3:
        x = x.unsqueeze(0).expand(first.shape[0], *x.shape)
    return mlp_forward(params, x, keep)


def critic_loss_grad(q: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """dL(phi)/dQ for L(phi) = sum over critics of mean_b (Q - y)^2 (`fastddpg.learning.update.critic_loss`):
    2 (Q - y) / B, Q (B, 1) or (C, B, 1) against y (B, 1)."""
    return (q - y) * (2.0 / q.shape[-2])


def actor_loss_grad(q: torch.Tensor) -> torch.Tensor:
    """dL(theta)/dQ for L(theta) = -mean_b Q (`fastddpg.learning.update.actor_loss`): -1 / B, the shape of Q."""
    return torch.full_like(q, -1.0 / q.shape[-2])


def fused_adam_step_(params: Params, opt: AdamState, grads: list[torch.Tensor], hp: AdamHyper) -> None:
    """`fastddpg.learning.update.adam_step_`'s equation in place, by torch's fused Adam kernel
    (``torch.optim.Adam(fused=True)``'s): one pass over each tensor. ``opt["step"]`` is 0-d, ``hp.lr`` a float."""
    step = opt["step"]
    step.add_(1.0)
    beta1, beta2 = hp.betas
    # the kernel reads each tensor's step count and never writes it (torch.optim increments it before the call), so
    # the one shared count can stand for every tensor's
    torch._fused_adam_(list(params.values()), grads, opt["exp_avg"], opt["exp_avg_sq"], [], [step] * len(grads),
                       lr=hp.lr, beta1=beta1, beta2=beta2, weight_decay=0.0, eps=hp.eps, amsgrad=False,
                       maximize=False)


def critic_step_(nets: Nets, state: LearnerState, batch: Batch, y: torch.Tensor, hp: Hyper
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """One critic step on y (B, 1), every critic regressing to it (`fastddpg.learning.update.critic_step_`).
    Returns (each critic's MSE, () or (C,); Q (B, 1) or (C, B, 1)), before the step."""
    q, tape = critic_forward(state["critic"], batch.obs, batch.action, keep=True)
    grads, _ = mlp_vjp(state["critic"], tape, critic_loss_grad(q, y))
    per_critic = td_mse(q, y, nets.critic.num_critics)
    clip_grad_norm_(grads, hp.grad_clip_norm, stacked(nets.critic))
    fused_adam_step_(state["critic"], state["optim"]["critic"], grads, hp.critic)
    return per_critic, q


def actor_step_(nets: Nets, state: LearnerState, obs: torch.Tensor, hp: Hyper) -> torch.Tensor:
    """One actor step on L(theta) = -mean_b Q_1(s, mu_theta(s)) against the freshly updated critic, the critic's
    parameters constants (`fastddpg.learning.update.actor_step_`). Returns the loss before the step, ()."""
    action, u, actor_tape = actor_forward(nets, state["actor"], obs, keep=True)
    q1_params = first_critic(state["critic"], nets.critic.num_critics)
    q_pi, tape = critic_forward(q1_params, obs, action, keep=True)
    # only the action's columns of the critic's input gradient; then through a = scale * tanh(pre) + bias
    _, d_action = mlp_vjp(q1_params, tape, actor_loss_grad(q_pi), param_grads=False,
                          input_cols=slice(obs.shape[-1], None))
    if d_action.dim() == 3:  # Q_1 of a stacked critic: (1, B, act_dim)
        d_action = d_action[0]
    d_pre = d_action * nets.actor.action_scale * (1.0 - u.square())
    grads, _ = mlp_vjp(state["actor"], actor_tape, d_pre)
    clip_grad_norm_(grads, hp.grad_clip_norm)
    fused_adam_step_(state["actor"], state["optim"]["actor"], grads, hp.actor)
    return -batch_mean(q_pi).reshape(())  # actor_loss's value


@torch.no_grad()
def ddpg_update_analytic(nets: Nets, state: LearnerState, batch: Batch, hp: Hyper) -> torch.Tensor:
    """`fastddpg.learning.update.ddpg_update` with hand-derived gradients: critic step, actor step against the
    freshly updated critic, soft targets. ``batch`` (B, ...), one agent. Returns metrics (4,) = METRIC_NAMES."""
    next_action, _, _ = actor_forward(nets, state["target_actor"], batch.next_obs, keep=False)
    q_next, _ = critic_forward(state["target_critic"], batch.next_obs, next_action, keep=False)
    y = bellman_target(batch, q_next, hp.gamma)
    loss_q, q = critic_step_(nets, state, batch, y, hp)
    loss_pi = actor_step_(nets, state, batch.obs, hp)
    soft_update_targets_(state, hp.tau)
    return ddpg_metrics(loss_q, loss_pi, q, y)


@torch.no_grad()
def td3_update_analytic(nets: Nets, state: LearnerState, batch: Batch, eps: torch.Tensor, hp: Hyper,
                        actor_step: bool) -> torch.Tensor:
    """`fastddpg.learning.update.td3_update` with hand-derived gradients: the twin critic step always, with
    ``actor_step`` also the actor step on Q_1 and the soft update; the target's smoothing (`smoothed`) and clipped
    double Q (`clipped_double_q_target`) are `td3_target`'s. Returns metrics (7,) = TD3_METRIC_NAMES."""
    next_action, _, _ = actor_forward(nets, state["target_actor"], batch.next_obs, keep=False)
    next_action = smoothed(nets, next_action, eps, hp.policy_noise, hp.noise_clip)
    q_next, _ = critic_forward(state["target_critic"], batch.next_obs, next_action, keep=False)
    y, q_min = clipped_double_q_target(batch, q_next, hp.gamma)
    per_critic, q = critic_step_(nets, state, batch, y, hp)
    if actor_step:
        loss_pi = actor_step_(nets, state, batch.obs, hp)
        soft_update_targets_(state, hp.tau)
    else:
        loss_pi = torch.zeros((), device=y.device, dtype=y.dtype)
    return td3_metrics(per_critic, loss_pi, q, y, q_min)
