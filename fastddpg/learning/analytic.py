"""The DDPG update with its gradients derived by hand: the same equations as `fastddpg.learning.update`, eager, with
no autograd and no compile.

Why: on a CPU the eager update (``torch.func`` over ``functional_call``) spends most of its time outside the
products: function transforms, parameter swapping, ~150 small ops. A compiled update removes that overhead but
costs 10-15 s of compile on a fresh 2-core machine, most of a 10k-step run's start-up. The networks of a plain DDPG
are MLPs (Linear and ReLU, the actor ending in tanh), whose reverse mode is a handful of products, so it is written
out here: each network's forward keeps the inputs of its layers (`MLPTape`), and its vector-Jacobian product
(`mlp_vjp`) returns the parameter gradients and, for the actor step, the gradient with respect to the action. Measured
on a 2-core AMD EPYC (Zen 4), 1 thread, batch 128: about 0.9x the compiled update's updates/s and 1.9x the eager
update's, from the first update on (README, Performance).

What is reused as it is: the TD target (`bellman_target`), the critic's loss value (`td_mse`), the gradient
clipping (`clip_grad_norm_`) and the soft update (`soft_update_targets_`) of `fastddpg.learning.update`; Adam is its
equation (`adam_step_`) run by torch's fused CPU kernel (`fused_adam_step_`), one pass over each tensor instead of
nine foreach ops. What is derived here, and nowhere else: the gradients of the two losses with respect to the
critic's output (`critic_loss_grad`, `actor_loss_grad`) and the chain rule through the networks. ``fastddpg
verify`` and tests/test_analytic.py hold it to the eager update's numbers (float64: to ~1e-12).

Scope: one agent (not a population), DDPG's `Critic` and `Actor` without LayerNorm (`hand_derivable`). Other
algorithms and networks compile (`Algorithm.analytic_update_fns` returns None for them).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

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
    soft_update_targets_,
    td_mse,
)

_relu_backward = torch.ops.aten.threshold_backward.default  # d * (h > 0): ReLU's backward, one kernel


class MLPTape(NamedTuple):
    """What an MLP's forward keeps for its backward: the input of every Linear layer, (B, in_i) each (the first is the
    network's input; the others are ReLU outputs, whose sign is also ReLU's derivative)."""

    inputs: list[torch.Tensor]


def hand_derivable(module: nn.Module, kind: type[nn.Module], output: type[nn.Module]) -> bool:
    """Whether ``module`` is a ``kind`` (`Actor`, `Critic`) whose ``net`` is exactly what `mlp_forward` and
    `mlp_vjp` assume: Linear layers (2-d weights, 1-d biases) with ReLU between them and ``output`` after the last."""
    if type(module) is not kind:
        return False
    layers = list(module.net)
    linears, activations = layers[0::2], layers[1::2]
    return (len(layers) % 2 == 0 and all(type(m) is nn.Linear for m in linears)
            and all(type(m) is nn.ReLU for m in activations[:-1]) and type(activations[-1]) is output
            and [name for name, _ in module.net.named_parameters()] == [
                f"{i}.{p}" for i in range(0, len(layers), 2) for p in ("weight", "bias")])


def layer_params(params: Params) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight (out, in), bias (out,)) of each Linear layer of an MLP's parameters, in order (an ``nn.Sequential`` of
    Linear and activation modules names them ``net.0.weight``, ``net.0.bias``, ``net.2.weight``, ...)."""
    tensors = list(params.values())
    return list(zip(tensors[0::2], tensors[1::2], strict=True))


def mlp_forward(params: Params, x: torch.Tensor, keep: bool) -> tuple[torch.Tensor, MLPTape]:
    """Linear layers with ReLU between them and none after the last: x (B, in) -> (B, out). With ``keep`` the tape
    holds each layer's input for `mlp_vjp`."""
    inputs: list[torch.Tensor] = []
    layers = layer_params(params)
    h = x
    for i, (w, b) in enumerate(layers):
        if keep:
            inputs.append(h)
        h = torch.addmm(b, h, w.t())
        if i < len(layers) - 1:
            h = torch.relu(h)
    return h, MLPTape(inputs)


def mlp_vjp(params: Params, tape: MLPTape, d_out: torch.Tensor, param_grads: bool = True,
            input_grad: bool = False) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """Reverse mode of `mlp_forward` for an output gradient d_out (B, out): for each layer h_out = h_in W^T + b,
    dL/dW = d^T h_in (out, in), dL/db = sum_b d (out,), and d for the layer below is (d W) * (h_in > 0).

    Returns (the gradients in the order of ``params``, or [] without ``param_grads``; dL/dx (B, in) with
    ``input_grad``, else None)."""
    layers = layer_params(params)
    grads: list[torch.Tensor] = []
    d, d_input = d_out, None
    for i in range(len(layers) - 1, -1, -1):
        w, h_in = layers[i][0], tape.inputs[i]
        if param_grads:
            grads[:0] = [d.t() @ h_in, d.sum(dim=0)]
        if i > 0:
            d = _relu_backward(d @ w, h_in, 0)
        elif input_grad:
            d_input = d @ w
    return grads, d_input


def actor_forward(nets: Nets, params: Params, obs: torch.Tensor, keep: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, MLPTape]:
    """mu_theta(s) = scale * tanh(net(s)) + bias (`fastddpg.learning.networks.Actor`). Returns (action (B, act_dim),
    tanh(net(s)) (B, act_dim), the net's tape)."""
    pre, tape = mlp_forward(params, obs, keep)
    u = torch.tanh(pre)
    return nets.actor.action_scale * u + nets.actor.action_bias, u, tape


def critic_forward(params: Params, obs: torch.Tensor, action: torch.Tensor, keep: bool
                   ) -> tuple[torch.Tensor, MLPTape]:
    """Q_phi(s, a) = net([s, a]) (`fastddpg.learning.networks.Critic`): (B, 1), and the net's tape."""
    return mlp_forward(params, torch.cat([obs, action], dim=-1), keep)


def critic_loss_grad(q: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """dL(phi)/dQ for L(phi) = mean_b (Q - y)^2 (`fastddpg.learning.update.critic_loss`): 2 (Q - y) / B, (B, 1)."""
    return (q - y) * (2.0 / q.shape[0])


def actor_loss_grad(q: torch.Tensor) -> torch.Tensor:
    """dL(theta)/dQ for L(theta) = -mean_b Q (`fastddpg.learning.update.actor_loss`): -1 / B, (B, 1)."""
    return torch.full_like(q, -1.0 / q.shape[0])


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


@torch.no_grad()
def ddpg_update_analytic(nets: Nets, state: LearnerState, batch: Batch, hp: Hyper) -> torch.Tensor:
    """`fastddpg.learning.update.ddpg_update` with hand-derived gradients: critic step, actor step against the
    freshly updated critic, soft targets. ``batch`` (B, ...), one agent. Returns metrics (4,) = METRIC_NAMES."""
    next_action, _, _ = actor_forward(nets, state["target_actor"], batch.next_obs, keep=False)
    q_next, _ = critic_forward(state["target_critic"], batch.next_obs, next_action, keep=False)
    y = bellman_target(batch, q_next, hp.gamma)

    q, tape = critic_forward(state["critic"], batch.obs, batch.action, keep=True)
    grads, _ = mlp_vjp(state["critic"], tape, critic_loss_grad(q, y))
    loss_q = td_mse(q, y)
    clip_grad_norm_(grads, hp.grad_clip_norm)
    fused_adam_step_(state["critic"], state["optim"]["critic"], grads, hp.critic)

    # the critic's parameters enter as constants: only the action columns of its input gradient are needed
    action, u, actor_tape = actor_forward(nets, state["actor"], batch.obs, keep=True)
    q_pi, tape = critic_forward(state["critic"], batch.obs, action, keep=True)
    _, d_input = mlp_vjp(state["critic"], tape, actor_loss_grad(q_pi), param_grads=False, input_grad=True)
    d_action = d_input[:, batch.obs.shape[-1]:]
    d_pre = d_action * nets.actor.action_scale * (1.0 - u.square())  # through a = scale * tanh(pre) + bias
    grads, _ = mlp_vjp(state["actor"], actor_tape, d_pre)
    clip_grad_norm_(grads, hp.grad_clip_norm)
    fused_adam_step_(state["actor"], state["optim"]["actor"], grads, hp.actor)

    soft_update_targets_(state, hp.tau)
    loss_pi = -batch_mean(q_pi)  # actor_loss's value: the actor's loss before its step
    return torch.stack([loss_q, loss_pi, batch_mean(q), batch_mean(y)], dim=-1)
