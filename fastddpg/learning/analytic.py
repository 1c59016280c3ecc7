"""The DDPG and TD3 updates with their gradients derived by hand: the same equations as `fastddpg.learning.update`,
with no autograd and no compile.

Why: on a CPU the eager update (``torch.func`` over ``functional_call``) spends most of its time outside the
products: function transforms, parameter swapping, ~150 small ops. A compiled update removes that overhead but
costs 10-15 s of compile on a fresh 2-core machine, most of a 10k-step run's start-up. The networks of a plain DDPG
are MLPs (Linear and ReLU, the actor ending in tanh; TD3's twin critics stacked), whose reverse mode is a handful
of products, so it is written out here: each network's forward keeps the inputs of its layers (`MLPTape`), and its
vector-Jacobian product (`mlp_vjp`) writes the parameter gradients into one flat buffer per network (`FlatGrads`)
and returns, for the actor step, the gradient with respect to the action. The learner state is arranged for these
passes once (`AnalyticPlan`): re-reading it on every update cost about a tenth of the update's time outside its
products.

An update is two gradient parts with the steps that apply them between (`ddpg_update_analytic`): the target and the
critic's clipped gradient (`ddpg_critic_gradient_`, `td3_critic_gradient_`), the critic's Adam step, the actor's
clipped gradient against the updated critic (`actor_gradient_`), the actor's Adam step, the soft update. The parts
run as traced TorchScript graphs (`AnalyticParts` of `fastddpg.learning.graphs.GraphPart`s: the same ops from C++,
1.06-1.13x the update's speed); the steps stay eager, one fused kernel each, because a graph would drop them
(`fastddpg.learning.graphs`). Measured on a 2-core AMD EPYC (Zen 4), batch 128: DDPG's at 1.03-1.12x the compiled
update's updates/s with 1 thread and 0.88-0.96x with 2; on a Zen 3, 0.94x and 0.88x
(bench/results/PERFORMANCE_LOG.md), from the first update on.

What is reused as it is: the TD target (`bellman_target`; TD3's smoothing and clipped double Q), the critic's loss value
(`td_mse`), the gradient clipping (`grad_norm`, `clip_coef`), the soft update (`soft_update_`) and the metrics
(`ddpg_metrics`, `td3_metrics`) of `fastddpg.learning.update`; Adam is its equation (`adam_step_`) run by torch's
fused CPU kernel (`fused_adam_step_`), one pass over each tensor instead of nine foreach ops. What is derived here,
and nowhere else: the gradients of the two losses with respect to the critic's output (`critic_loss_grad`,
`actor_loss_grad`) and the chain rule through the networks. ``fastddpg verify`` and tests/test_analytic.py hold it
to the eager update's numbers (float64: to ~1e-12).

Scope: one agent (not a population), DDPG's and TD3's `Actor`, `Critic` and `TwinCritic` without LayerNorm
(`hand_derivable`). Other algorithms and networks compile (`Algorithm.analytic_update_fns` returns None for them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from .graphs import GraphPart
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
    clip_coef,
    clipped_double_q_target,
    clips,
    ddpg_metrics,
    first_critic,
    grad_norm,
    per_member,
    smoothed,
    soft_update_,
    td3_metrics,
    td_mse,
)


def _relu_backward_(g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """g * (h > 0), ReLU's backward in one kernel, written into g (a product's fresh output that nothing else reads):
    no new buffer, and the lines it writes are the ones the product just left in the cache (the same floats as into
    a new tensor; on a 2-core AMD EPYC Zen 3 in one process, alternating blocks, 1 and 2 threads: the DDPG update
    1.006-1.011x in six sittings, TD3's 1.011x and 1.017x in two)."""
    return torch.ops.aten.threshold_backward.grad_input(g, h, 0, grad_input=g)


class MLPTape(NamedTuple):
    """What an MLP's forward keeps for its backward: the input of every Linear layer, (B, in_i) each (the first is the
    network's input; the others are ReLU outputs, whose sign is also ReLU's derivative)."""

    inputs: list[torch.Tensor]


class MLPLayers(NamedTuple):
    """An MLP's parameters arranged once for `mlp_forward` and `mlp_vjp` (views of its Params, so every in-place
    update shows): per Linear layer, the weight as the forward's product takes it (``forward``: an ``nn.Linear``'s W^T
    (in, out), C stacked layers' W (C, in, out)), as the input gradient's takes it (``backward``: W (out, in), or
    (C, out, in)), and the bias ((out,), or (C, 1, out)); ``plain``: whether a layer's products are plain 2-D
    ones both ways (not stacked, in > 1 and out > 1), which the passes call directly instead of through `_product`'s
    cases (its Python costs ~1-2 us a call, in an update of ~20 products)."""

    forward: list[torch.Tensor]
    backward: list[torch.Tensor]
    biases: list[torch.Tensor]
    stacked: bool
    plain: list[bool]


class FlatGrads(NamedTuple):
    """An MLP's parameter gradients as views of one buffer that `mlp_vjp` writes in place: ``tensors`` in the order
    of its Params, shaped like them; ``flat`` (n,) all of them, for one global norm (`clip_grad_norm_` over
    ``[flat]``)."""

    flat: torch.Tensor
    tensors: list[torch.Tensor]


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


def mlp_layers(params: Params) -> MLPLayers:
    """`MLPLayers` of an MLP's parameters (an ``nn.Sequential`` of Linear and activation modules names them
    ``net.0.weight``, ``net.0.bias``, ``net.2.weight``, ...): an ``nn.Linear``'s (out, in) and (out,), or C stacked
    layers' (`StackedLinear`) (C, in, out) and (C, 1, out)."""
    tensors = list(params.values())
    weights, biases = tensors[0::2], tensors[1::2]
    stacked = weights[0].dim() == 3
    return MLPLayers([w if stacked else w.t() for w in weights],
                     [w.transpose(1, 2) if stacked else w for w in weights], biases, stacked,
                     [not stacked and min(w.shape) > 1 for w in weights])


def flat_grads(params: Params) -> FlatGrads:
    """A zeroed `FlatGrads` for ``params``, on their device and in their dtype."""
    tensors = list(params.values())
    flat = torch.zeros(sum(t.numel() for t in tensors), dtype=tensors[0].dtype, device=tensors[0].device)
    views = list(torch.split(flat, [t.numel() for t in tensors]))
    return FlatGrads(flat, [v.view(t.shape) for v, t in zip(views, tensors, strict=True)])


def _product(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None,
             out: torch.Tensor | None = None) -> torch.Tensor:
    """(bias +) a @ b, into ``out`` if given: a (m, k), b (k, n), bias (n,) by ``nn.functional.linear``/``mm``; or
    C stacked products, a (C, m, k), b (C, k, n), bias (C, 1, n), by ``torch.baddbmm``/``bmm`` except where n or m is
    1, for which ATen's batched product takes a slow path (72 us for (2, 128, 256) @ (2, 256, 1) against 2 x 4 us a
    slice at a time, 1 thread). Either rank with k = 1 (a last layer's single output, backward) is an outer product, a
    broadcast multiply: the same products, and MKL's k = 1 path is slower."""
    if a.shape[-1] == 1:
        r = a * b if out is None else torch.mul(a, b, out=out)
    elif a.dim() == 3 and (b.shape[-1] == 1 or a.shape[-2] == 1):
        products = [a[c] @ b[c] for c in range(a.shape[0])]
        r = torch.stack(products) if out is None else torch.stack(products, out=out)
    elif a.dim() == 3:
        return torch.bmm(a, b, out=out) if bias is None else torch.baddbmm(bias, a, b, out=out)
    elif bias is None:
        return torch.mm(a, b, out=out)
    else:
        # an nn.Linear's own call (addmm(bias, a, W^T) in eager), which a graph part keeps whole, where it would split
        # a traced addmm into mm + add (TorchScript's DecomposeOps): another sum's rounding and a pass more
        r = nn.functional.linear(a, b.t(), bias)
        return r if out is None else out.copy_(r)
    return r if bias is None else r.add_(bias)


def mlp_forward(layers: MLPLayers, x: torch.Tensor, keep: bool) -> tuple[torch.Tensor, MLPTape]:
    """Linear layers with ReLU between them and none after the last: x (B, in) -> (B, out), or for C stacked
    networks x (C, B, in) -> (C, B, out). With ``keep`` the tape holds each layer's input for `mlp_vjp`."""
    inputs: list[torch.Tensor] = []
    last = len(layers.biases) - 1
    h = x
    for i in range(last + 1):
        if keep:
            inputs.append(h)
        w, b = layers.forward[i], layers.biases[i]
        # nn.functional.linear, not addmm, as in `_product`: a graph part keeps it whole
        h = nn.functional.linear(h, layers.backward[i], b) if layers.plain[i] else _product(h, w, b)
        if i < last:
            h = h.relu_()  # in place: the product's output is this function's own, and only its ReLU is kept
    return h, MLPTape(inputs)


def mlp_vjp(layers: MLPLayers, tape: MLPTape, d_out: torch.Tensor, grads: FlatGrads | None = None,
            input_cols: slice | None = None) -> torch.Tensor | None:
    """Reverse mode of `mlp_forward` for an output gradient d_out (B, out) or (C, B, out): for each layer
    h_out = h_in W^T + b, dL/dW = d^T h_in (out, in), dL/db = sum_b d (out,), and d for the layer below is
    (d W) * (h_in > 0); stacked, h_out = h_in W + b per network: dL/dW = h_in^T d (C, in, out), dL/db (C, 1, out).

    Writes the parameter gradients into ``grads`` (in the order of the Params) where given. Returns dL/dx at
    ``input_cols`` of the input, (B, n) or (C, B, n), else None: the actor step needs only the action's columns of
    the critic's input, a product n/in the size of the whole."""
    d = d_out
    for i in range(len(layers.biases) - 1, -1, -1):
        h_in = tape.inputs[i]
        if grads is not None:
            g_w, g_b = grads.tensors[2 * i], grads.tensors[2 * i + 1]
            if layers.stacked:
                _product(h_in.transpose(1, 2), d, out=g_w)
                torch.sum(d, dim=1, keepdim=True, out=g_b)
            else:
                _weight_grad(d, h_in, g_w)
                torch.sum(d, dim=0, out=g_b)
        if i > 0:
            w = layers.backward[i]
            d = _relu_backward_(torch.mm(d, w) if layers.plain[i] else _product(d, w), h_in)
        elif input_cols is not None:
            return _product(d, layers.backward[0][..., input_cols])  # (out, n); stacked (C, out, n)
    return None


def _weight_grad(d: torch.Tensor, h_in: torch.Tensor, out: torch.Tensor) -> None:
    """d^T h_in (out, in) into ``out``, for d (B, out), h_in (B, in). Where in < out (a first layer's few inputs) it
    is computed as (h_in^T d)^T: the same dot products, and MKL's product with a narrow output is ~4x slower (39
    against 11 us for (256, 128) @ (128, 4), 1 thread; also when written through a transposed ``out``)."""
    if h_in.shape[-1] < d.shape[-1]:
        out.copy_((h_in.t() @ d).t())
    else:
        torch.mm(d.t(), h_in, out=out)


class AnalyticPlan(NamedTuple):
    """A learner state arranged once for the hand-derived update: each network's `MLPLayers` (``q1``: the critic the
    actor ascends, Q_1's rows of a `TwinCritic`), the gradient buffers the steps write (`FlatGrads`), the parameter
    lists Adam steps, the target and online lists of the soft update, and the actor's action map (its
    ``action_scale``/``action_bias`` buffers) and the learner's action bounds (``nets.action_low``/``action_high``),
    (act_dim,) each. Every tensor but the gradient buffers (the plan's own) is one of those or a view of the state's,
    so the plan stays valid for as long as they keep their identity (updates and loads write in place; nothing moves
    or rebinds a learner's buffers after it is built). It holds every tensor the update reads, so a
    `fastddpg.learning.graphs.GraphPart` over it takes them all as graph inputs."""

    actor: MLPLayers
    critic: MLPLayers
    q1: MLPLayers
    target_actor: MLPLayers
    target_critic: MLPLayers
    actor_params: list[torch.Tensor]
    critic_params: list[torch.Tensor]
    actor_grads: FlatGrads
    critic_grads: FlatGrads
    targets: list[torch.Tensor]
    online: list[torch.Tensor]
    action_scale: torch.Tensor
    action_bias: torch.Tensor
    action_low: torch.Tensor
    action_high: torch.Tensor


def analytic_plan(state: LearnerState, nets: Nets) -> AnalyticPlan:
    """`AnalyticPlan` of a DDPG or TD3 learner state (one agent; ``nets.critic.num_critics`` stacked critics)."""
    return AnalyticPlan(
        mlp_layers(state["actor"]), mlp_layers(state["critic"]),
        mlp_layers(first_critic(state["critic"], nets.critic.num_critics)),
        mlp_layers(state["target_actor"]), mlp_layers(state["target_critic"]),
        list(state["actor"].values()), list(state["critic"].values()),
        flat_grads(state["actor"]), flat_grads(state["critic"]),
        [*state["target_actor"].values(), *state["target_critic"].values()],
        [*state["actor"].values(), *state["critic"].values()],
        nets.actor.action_scale, nets.actor.action_bias, nets.action_low, nets.action_high)


class AnalyticPlans:
    """The `AnalyticPlan` of the state an update function is called with: built on the first call, and again only
    when a call brings another state dict (a learner rebinds its state only when built or copied)."""

    def __init__(self, nets: Nets) -> None:
        self.nets = nets
        self._state: LearnerState | None = None
        self._plan: AnalyticPlan | None = None

    def __call__(self, state: LearnerState) -> AnalyticPlan:
        if state is not self._state:
            self._plan, self._state = analytic_plan(state, self.nets), state
        return self._plan


def actor_forward(plan: AnalyticPlan, layers: MLPLayers, obs: torch.Tensor, keep: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, MLPTape]:
    """mu_theta(s) = scale * tanh(net(s)) + bias (`fastddpg.learning.networks.Actor`). Returns (action (B, act_dim),
    tanh(net(s)) (B, act_dim), the net's tape)."""
    pre, tape = mlp_forward(layers, obs, keep)
    u = torch.tanh(pre)
    return plan.action_scale * u + plan.action_bias, u, tape


def critic_forward(layers: MLPLayers, obs: torch.Tensor, action: torch.Tensor, keep: bool
                   ) -> tuple[torch.Tensor, MLPTape]:
    """Q_phi(s, a) = net([s, a]): a `Critic`'s (B, 1), or C stacked critics' (`TwinCritic`, each on the same input)
    (C, B, 1); and the net's tape."""
    x = torch.cat([obs, action], dim=-1)
    if layers.stacked:
        x = x.unsqueeze(0).expand(layers.biases[0].shape[0], *x.shape)
    return mlp_forward(layers, x, keep)


def critic_loss_grad(q: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """dL(phi)/dQ for L(phi) = sum over critics of mean_b (Q - y)^2 (`fastddpg.learning.update.critic_loss`):
    2 (Q - y) / B, Q (B, 1) or (C, B, 1) against y (B, 1)."""
    return (q - y) * (2.0 / batch_size(q))


def actor_loss_grad(q: torch.Tensor) -> torch.Tensor:
    """dL(theta)/dQ for L(theta) = -mean_b Q (`fastddpg.learning.update.actor_loss`): -1 / B, the shape of Q."""
    return torch.full_like(q, -1.0 / batch_size(q))


def batch_size(q: torch.Tensor) -> int:
    """B of Q (..., B, 1), as a Python int: a traced graph (`fastddpg.learning.graphs`) then holds 1 / B as a
    constant in full precision; a size the tracer follows would make it a float32 tensor, off by 1e-8 in float64."""
    return int(q.shape[-2])


def fused_adam_step_(params: list[torch.Tensor], opt: AdamState, grads: list[torch.Tensor], hp: AdamHyper) -> None:
    """`fastddpg.learning.update.adam_step_`'s equation in place, by torch's fused Adam kernel
    (``torch.optim.Adam(fused=True)``'s): one pass over each tensor. ``opt["step"]`` is 0-d, ``hp.lr`` a float."""
    step = opt["step"]
    step.add_(1.0)
    beta1, beta2 = hp.betas
    # the kernel reads each tensor's step count and never writes it (torch.optim increments it before the call), so
    # the one shared count can stand for every tensor's
    torch._fused_adam_(params, grads, opt["exp_avg"], opt["exp_avg_sq"], [], [step] * len(grads),
                       lr=hp.lr, beta1=beta1, beta2=beta2, weight_decay=0.0, eps=hp.eps, amsgrad=False,
                       maximize=False)


# the most elements an elementwise CPU op runs on one thread: ATen splits a longer one over its threads
# (at::internal::GRAIN_SIZE)
SERIAL_ELEMENTS = 32768


def clip_flat_grads_(grads: FlatGrads, max_norm: float, layers: MLPLayers) -> None:
    """`fastddpg.learning.update.clip_grad_norm_` of one network's gradients (its `grad_norm` and `clip_coef`): one
    norm over the flat buffer, which on a CPU is then scaled in pieces of `SERIAL_ELEMENTS`; C stacked networks (a
    `TwinCritic`), each to its own norm over its rows of every tensor. Scaled by one op per tensor or piece, not a
    foreach op, which a traced graph would drop (`fastddpg.learning.graphs`).

    Why pieces: with 2 threads ATen splits one op over a 256-wide MLP's ~67,000 gradients across both, and each
    thread then writes lines the matrix products just left in the other core's cache: 27 us against 4 us on one
    thread (a 2-core AMD EPYC). Pieces it keeps on one thread (the same products, so the same floats) made the
    2-thread DDPG update 1.02-1.04x faster and left the 1-thread one as it was, 0.98-1.02x (one process, alternating
    blocks of 25 updates, three sittings)."""
    if not clips(max_norm):
        return
    if layers.stacked:
        coef = clip_coef(grad_norm(grads.tensors, stacked=True), max_norm)  # (C,)
        for g in grads.tensors:
            g.mul_(per_member(coef, g))
    else:
        coef = clip_coef(grad_norm([grads.flat]), max_norm)
        pieces = torch.split(grads.flat, SERIAL_ELEMENTS) if grads.flat.device.type == "cpu" else [grads.flat]
        for piece in pieces:
            piece.mul_(coef)


# --- the update's parts: the gradients (graph parts), then the steps that apply them -----------------------------

def critic_gradient_(plan: AnalyticPlan, batch: Batch, y: torch.Tensor, hp: Hyper
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The clipped gradient of L(phi), every critic regressing to y (B, 1) (`fastddpg.learning.update.critic_step_`),
    into ``plan.critic_grads``. Returns (each critic's MSE, () or (C,); Q (B, 1) or (C, B, 1))."""
    q, tape = critic_forward(plan.critic, batch.obs, batch.action, keep=True)
    mlp_vjp(plan.critic, tape, critic_loss_grad(q, y), plan.critic_grads)
    per_critic = td_mse(q, y, plan.critic.biases[0].shape[0] if plan.critic.stacked else 1)
    clip_flat_grads_(plan.critic_grads, hp.grad_clip_norm, plan.critic)
    return per_critic, q


def ddpg_critic_gradient_(plan: AnalyticPlan, batch: Batch, hp: Hyper
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DDPG's TD target y = r + gamma (1 - d) Q_phi'(s', mu_theta'(s')) and the critic's gradient on it
    (`critic_gradient_`). Returns (y (B, 1), the critic's MSE (), Q (B, 1))."""
    next_action, _, _ = actor_forward(plan, plan.target_actor, batch.next_obs, keep=False)
    q_next, _ = critic_forward(plan.target_critic, batch.next_obs, next_action, keep=False)
    y = bellman_target(batch, q_next, hp.gamma)
    return (y, *critic_gradient_(plan, batch, y, hp))


def td3_critic_gradient_(plan: AnalyticPlan, batch: Batch, eps: torch.Tensor, hp: Hyper
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """TD3's target (`fastddpg.learning.update.td3_target`: the smoothed target action `smoothed`, the clipped double
    Q `clipped_double_q_target`) and the twin critics' gradient on it (`critic_gradient_`). Returns (y (B, 1),
    min_i Q'_i(s', a~) (B, 1), each critic's MSE (C,), Q (C, B, 1))."""
    next_action, _, _ = actor_forward(plan, plan.target_actor, batch.next_obs, keep=False)
    next_action = smoothed(next_action, eps, hp.policy_noise, hp.noise_clip, plan.action_scale, plan.action_low,
                           plan.action_high)
    q_next, _ = critic_forward(plan.target_critic, batch.next_obs, next_action, keep=False)
    y, q_min = clipped_double_q_target(batch, q_next, hp.gamma)
    return (y, q_min, *critic_gradient_(plan, batch, y, hp))


def actor_gradient_(plan: AnalyticPlan, obs: torch.Tensor, hp: Hyper) -> torch.Tensor:
    """The clipped gradient of L(theta) = -mean_b Q_1(s, mu_theta(s)) against the freshly updated critic, the
    critic's parameters constants (`fastddpg.learning.update.actor_step_`), into ``plan.actor_grads``. Returns the
    loss, ()."""
    action, u, actor_tape = actor_forward(plan, plan.actor, obs, keep=True)
    q_pi, tape = critic_forward(plan.q1, obs, action, keep=True)
    # only the action's columns of the critic's input gradient; then through a = scale * tanh(pre) + bias
    d_action = mlp_vjp(plan.q1, tape, actor_loss_grad(q_pi), input_cols=slice(obs.shape[-1], None))
    if d_action.dim() == 3:  # Q_1 of a stacked critic: (1, B, act_dim)
        d_action = d_action[0]
    d_pre = d_action * plan.action_scale * (1.0 - u.square())
    mlp_vjp(plan.actor, actor_tape, d_pre, plan.actor_grads)
    clip_flat_grads_(plan.actor_grads, hp.grad_clip_norm, plan.actor)
    return -batch_mean(q_pi).reshape(())  # actor_loss's value


def critic_adam_step_(plan: AnalyticPlan, state: LearnerState, hp: Hyper) -> None:
    """Adam on the critic's parameters with ``plan.critic_grads``."""
    fused_adam_step_(plan.critic_params, state["optim"]["critic"], plan.critic_grads.tensors, hp.critic)


def actor_adam_step_(plan: AnalyticPlan, state: LearnerState, hp: Hyper) -> None:
    """Adam on the actor's parameters with ``plan.actor_grads``."""
    fused_adam_step_(plan.actor_params, state["optim"]["actor"], plan.actor_grads.tensors, hp.actor)


class AnalyticParts(NamedTuple):
    """The gradient parts of an update, each ``fn(plan, rows)`` on one batch of replay rows: ``critic`` (the target
    and the critic's gradient: `ddpg_critic_gradient_`'s or `td3_critic_gradient_`'s outputs) and ``actor``
    (`actor_gradient_`'s). `GraphPart`s: traced graphs, or eager with ``graphs=False``."""

    critic: GraphPart
    actor: GraphPart


def ddpg_parts(as_batch: Callable[[torch.Tensor], Batch], hp: Hyper, graphs: bool = True) -> AnalyticParts:
    """DDPG's `AnalyticParts` for rows split by ``as_batch``."""

    def ddpg_critic_part(plan: AnalyticPlan, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return ddpg_critic_gradient_(plan, as_batch(rows), hp)

    return AnalyticParts(GraphPart(ddpg_critic_part, graphs), GraphPart(_actor_part(as_batch, hp), graphs))


def td3_parts(as_batch: Callable[[torch.Tensor], Batch], width: int, hp: Hyper, graphs: bool = True
              ) -> AnalyticParts:
    """TD3's `AnalyticParts` for rows split by ``as_batch`` with the smoothing noise eps (B, act_dim) in the columns
    from ``width`` on."""

    def td3_critic_part(plan: AnalyticPlan, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return td3_critic_gradient_(plan, as_batch(rows), rows[..., width:], hp)

    return AnalyticParts(GraphPart(td3_critic_part, graphs), GraphPart(_actor_part(as_batch, hp), graphs))


def _actor_part(as_batch: Callable[[torch.Tensor], Batch], hp: Hyper) -> Callable[[AnalyticPlan, torch.Tensor],
                                                                                 torch.Tensor]:
    """DDPG's and TD3's actor part alike: `actor_gradient_` on the observations of the rows."""

    def actor_part(plan: AnalyticPlan, rows: torch.Tensor) -> torch.Tensor:
        return actor_gradient_(plan, as_batch(rows).obs, hp)

    return actor_part


# --- the updates ------------------------------------------------------------------------------------------------

@torch.no_grad()
def ddpg_update_analytic(plan: AnalyticPlan, state: LearnerState, rows: torch.Tensor, hp: Hyper,
                         parts: AnalyticParts) -> torch.Tensor:
    """`fastddpg.learning.update.ddpg_update` with hand-derived gradients on one batch of replay rows (B, width):
    critic step, actor step against the freshly updated critic, soft targets. ``plan``: ``state``'s `AnalyticPlan`;
    ``parts``: `ddpg_parts`. Returns metrics (4,) = METRIC_NAMES."""
    y, loss_q, q = parts.critic(plan, rows)
    critic_adam_step_(plan, state, hp)
    loss_pi = parts.actor(plan, rows)
    actor_adam_step_(plan, state, hp)
    soft_update_(plan.targets, plan.online, hp.tau)
    return ddpg_metrics(loss_q, loss_pi, q, y)


@torch.no_grad()
def td3_update_analytic(plan: AnalyticPlan, state: LearnerState, rows: torch.Tensor, hp: Hyper,
                        parts: AnalyticParts, actor_step: bool) -> torch.Tensor:
    """`fastddpg.learning.update.td3_update` with hand-derived gradients on one batch of replay rows (B, width +
    act_dim, the smoothing noise last): the twin critic step always, with ``actor_step`` also the actor step on Q_1
    and the soft update. ``parts``: `td3_parts`. Returns metrics (7,) = TD3_METRIC_NAMES."""
    y, q_min, per_critic, q = parts.critic(plan, rows)
    critic_adam_step_(plan, state, hp)
    if actor_step:
        loss_pi = parts.actor(plan, rows)
        actor_adam_step_(plan, state, hp)
        soft_update_(plan.targets, plan.online, hp.tau)
    else:
        loss_pi = torch.zeros((), device=y.device, dtype=y.dtype)
    return td3_metrics(per_critic, loss_pi, q, y, q_min)
