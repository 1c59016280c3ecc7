"""Actor and critics, as in the notebook: plain `nn.Module`s with `state_dict`s.

The actor ends in ``tanh`` and is then scaled and shifted to the env's action bounds, so the critic never
learns on actions the env would clip (the notebook's "action scaling" pitfall).

``layer_norm=True`` (``--layer-norm``, exercise 2) puts a LayerNorm after every *hidden* Linear, before its
ReLU, in actor and critic alike: ``Linear -> LayerNorm -> ReLU`` for each hidden layer; the output layer
(the actor's pre-tanh layer, the critic's Q head) stays a plain Linear. Why there: normalizing the
pre-activation keeps each hidden layer's input to the ReLU at zero mean and unit variance over its units,
however the weights drift while the critic chases a moving TD target, so the activations' scale cannot drift
layer after layer; the learned gain and bias (``elementwise_affine``) let the network undo the
normalization where it must. Not on the output: the critic's Q head must be free to take any scale, and the
actor's output already goes through tanh. It is the placement of the DDPG in OpenAI Baselines and
Stable-Baselines (dense -> layer_norm -> relu), added there with Plappert et al. (2018, "Parameter space noise
for exploration").

`TwinCritic` is TD3's pair of critics as ONE module: every layer holds K stacked weight matrices and runs as
one batched matmul (``torch.baddbmm``), so Q_1 and Q_2 are one call and the compiled update stays one graph.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def mlp(sizes: Sequence[int], output_activation: type[nn.Module] = nn.Identity,
        layer_norm: bool = False) -> nn.Sequential:
    """Linear layers of widths ``sizes`` with ReLU between them and ``output_activation`` at the end;
    with ``layer_norm`` each hidden Linear is followed by a LayerNorm (before its ReLU)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        hidden = i < len(sizes) - 2
        if hidden and layer_norm:
            layers.append(nn.LayerNorm(sizes[i + 1]))
        layers.append(nn.ReLU() if hidden else output_activation())
    return nn.Sequential(*layers)


class BoundedPolicy(nn.Module):
    """A policy whose ``net`` ends in tanh, scaled and shifted to the action bounds: a = scale * net(s) + bias,
    with the buffers action_scale = (high - low) / 2 and action_bias = (high + low) / 2, (act_dim,) each. A subclass
    sets ``self.net`` and calls `set_bounds`."""

    def set_bounds(self, action_low: torch.Tensor, action_high: torch.Tensor) -> None:
        low = torch.as_tensor(action_low, dtype=torch.float32)
        high = torch.as_tensor(action_high, dtype=torch.float32)
        self.register_buffer("action_scale", (high - low) / 2.0)
        self.register_buffer("action_bias", (high + low) / 2.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (..., obs_dim) -> action (..., act_dim), inside the action bounds."""
        return self.action_scale * self.net(obs) + self.action_bias


class Actor(BoundedPolicy):
    """Deterministic policy a = mu_theta(s) = scale * tanh(net(s)) + bias.

    Args:
        obs_dim, act_dim: flat observation and action sizes.
        hidden_sizes: hidden layer widths.
        action_low, action_high: the env's action bounds, shape (act_dim,).
        layer_norm: LayerNorm after each hidden Linear (see the module docstring).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int],
                 action_low: torch.Tensor, action_high: torch.Tensor, layer_norm: bool = False) -> None:
        super().__init__()
        self.net = mlp([obs_dim, *hidden_sizes, act_dim], output_activation=nn.Tanh, layer_norm=layer_norm)
        self.set_bounds(action_low, action_high)


class Critic(nn.Module):
    """Action value Q_phi(s, a) of a concatenated (state, action) input."""

    num_critics = 1  # critics per member (`fastddpg.learning.update` reads it)

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], layer_norm: bool = False) -> None:
        super().__init__()
        self.net = mlp([obs_dim + act_dim, *hidden_sizes, 1], layer_norm=layer_norm)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """obs (B, obs_dim), action (B, act_dim) -> Q (B, 1)."""
        return self.net(torch.cat([obs, action], dim=-1))


class StackedLinear(nn.Module):
    """K independent Linear layers run as one batched matmul: x (K, B, in) -> (K, B, out).

    ``weight`` is (K, in, out) (transposed against nn.Linear, so that ``baddbmm(bias, x, weight)`` needs no
    transpose) and ``bias`` (K, 1, out). K is read from the weight at call time, so calling with sliced
    parameters (``weight[:1]``) runs only the first member (used for TD3's actor loss on Q_1)."""

    def __init__(self, k: int, in_features: int, out_features: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)  # nn.Linear's default init, per member
        self.weight = nn.Parameter(torch.empty(k, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(k, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class StackedLayerNorm(nn.Module):
    """K independent LayerNorms over the last dim: x (K, B, width) -> (K, B, width); gain/bias (K, 1, width)."""

    def __init__(self, k: int, width: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.width, self.eps = width, eps
        self.weight = nn.Parameter(torch.ones(k, 1, width))
        self.bias = nn.Parameter(torch.zeros(k, 1, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias, F.layer_norm(x, (self.width,), eps=self.eps), self.weight)


def stacked_mlp(k: int, sizes: Sequence[int], output_activation: type[nn.Module] = nn.Identity,
                layer_norm: bool = False) -> nn.Sequential:
    """`mlp` with K stacked members per layer (`StackedLinear`, `StackedLayerNorm`): the same layer indices and
    module kinds as ``mlp(sizes, output_activation, layer_norm)``, x (K, B, sizes[0]) -> (K, B, sizes[-1])."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(StackedLinear(k, sizes[i], sizes[i + 1]))
        hidden = i < len(sizes) - 2
        if hidden and layer_norm:
            layers.append(StackedLayerNorm(k, sizes[i + 1]))
        layers.append(nn.ReLU() if hidden else output_activation())
    return nn.Sequential(*layers)


class TwinCritic(nn.Module):
    """K critics Q_1..Q_K (K = 2 for TD3) with stacked parameters, evaluated in one batched call.

    Layer i of member k equals a `Critic`'s ``net[i]`` with weight ``weight[k].T`` and bias ``bias[k, 0]``
    (`member` builds that Critic); each member is initialised like a fresh `Critic`, independently.
    """

    stacked = True  # parameters have a leading dim of rows, each its own network (`fastddpg.learning.update` reads it)

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], num_critics: int = 2,
                 layer_norm: bool = False) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.hidden_sizes = obs_dim, act_dim, tuple(hidden_sizes)
        self.num_critics, self.layer_norm = num_critics, layer_norm
        # same layer indices (and module kinds, stacked) as Critic.net
        self.net = stacked_mlp(num_critics, [obs_dim + act_dim, *hidden_sizes, 1], layer_norm=layer_norm)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """obs (B, obs_dim), action (B, act_dim) -> Q (K, B, 1), K = the leading dim of the parameters."""
        x = torch.cat([obs, action], dim=-1)
        k = self.net[0].weight.shape[0]
        return self.net(x.unsqueeze(0).expand(k, *x.shape))

    @torch.no_grad()
    def member(self, k: int) -> Critic:
        """Critic ``k`` as a standalone `Critic` (a copy), e.g. to export or test it."""
        critic = Critic(self.obs_dim, self.act_dim, self.hidden_sizes, self.layer_norm).to(self.net[0].weight.device)
        for mine, theirs in zip(self.net, critic.net, strict=True):
            if isinstance(mine, StackedLinear):
                theirs.weight.copy_(mine.weight[k].T)
                theirs.bias.copy_(mine.bias[k, 0])
            elif isinstance(mine, StackedLayerNorm):
                theirs.weight.copy_(mine.weight[k, 0])
                theirs.bias.copy_(mine.bias[k, 0])
        return critic


def build_actor(obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], action_low: torch.Tensor,
                action_high: torch.Tensor, layer_norm: bool = False) -> Actor:
    """The actor of a run (the one place it is built: training, evaluation, checkpoints and export agree)."""
    return Actor(obs_dim, act_dim, hidden_sizes, action_low, action_high, layer_norm)


def build_critic(obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], num_critics: int = 1,
                 layer_norm: bool = False) -> Critic | TwinCritic:
    """One `Critic` (Q (B, 1)) for ``num_critics=1``, else a `TwinCritic` of stacked members (Q (K, B, 1))."""
    if num_critics == 1:
        return Critic(obs_dim, act_dim, hidden_sizes, layer_norm)
    return TwinCritic(obs_dim, act_dim, hidden_sizes, num_critics, layer_norm)


# --- populations: K members' networks stacked, one batched matmul per layer for all members ---------------------

class StackedActor(BoundedPolicy):
    """The actors of K population members as one module: obs (K, B, obs_dim) -> action (K, B, act_dim), member k's
    rows through member k's weights. Layer indices and kinds are `Actor.net`'s, stacked (see `to_stacked`)."""

    stacked = True

    def __init__(self, k: int, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], action_low: torch.Tensor,
                 action_high: torch.Tensor, layer_norm: bool = False) -> None:
        super().__init__()
        self.members = k
        self.net = stacked_mlp(k, [obs_dim, *hidden_sizes, act_dim], output_activation=nn.Tanh,
                               layer_norm=layer_norm)
        self.set_bounds(action_low, action_high)


class PopulationCritic(TwinCritic):
    """The critics of K population members, C per member (1 for DDPG, 2 for TD3), as K*C stacked critics in
    member-major order: critic c of member k is stacked index k*C + c.

    ``forward(obs (K, B, obs_dim), action (K, B, act_dim)) -> Q (K, C, B, 1)`` (C > 1) or (K, B, 1) (C = 1):
    member k's input goes to its own C critics. Called with parameters sliced to one critic per member (``p[::C]``:
    every member's Q_1), it returns (K, B, 1). ``num_critics`` is C, the critics per member."""

    def __init__(self, k: int, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], critics_per_member: int = 1,
                 layer_norm: bool = False) -> None:
        super().__init__(obs_dim, act_dim, hidden_sizes, k * critics_per_member, layer_norm)
        self.members, self.critics_per_member = k, critics_per_member
        self.num_critics = critics_per_member

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, action], dim=-1)
        c = self.net[0].weight.shape[0] // x.shape[0]  # critics per member in the parameters given
        if c == 1:
            return self.net(x)
        return self.net(x.repeat_interleave(c, dim=0)).unflatten(0, (x.shape[0], c))


def to_stacked(t: torch.Tensor) -> torch.Tensor:
    """One member's tensor (a parameter, or an Adam moment of one) in the stacked layout, with a leading dim of C:
    an nn.Linear weight (out, in) -> (1, in, out); a bias or LayerNorm tensor (w,) -> (1, 1, w); an already
    stacked tensor (C, ...) (TwinCritic's) stays as it is."""
    if t.dim() == 2:
        return t.T.unsqueeze(0)
    if t.dim() == 1:
        return t.reshape(1, 1, -1)
    return t


def from_stacked(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Inverse of `to_stacked`: one member's C stacked rows ``t`` (C, ...) in the layout of ``like``."""
    if like.dim() == 2:
        return t[0].T
    if like.dim() == 1:
        return t[0, 0]
    return t


def actor_from_state_dict(state: dict[str, torch.Tensor], hidden_sizes: Sequence[int], layer_norm: bool = False,
                          member: int = 0, members: int = 1) -> Actor:
    """The eval-mode `Actor` a saved actor state_dict describes (a population's stacked one: member ``member``'s),
    its sizes read from the first layer's weight and its bounds from the action_scale/action_bias buffers."""
    obs_dim = state["net.0.weight"].shape[1]  # in_features, for a Linear's (out, in) and a stacked (K, in, out)
    scale, bias = state["action_scale"], state["action_bias"]
    actor = build_actor(obs_dim, scale.shape[0], hidden_sizes, bias - scale, bias + scale, layer_norm)
    if members > 1:
        state = member_state_dict(state, member, members, actor.state_dict())
    actor.load_state_dict(state)
    return actor.eval()


def policy_obs_dim(policy: nn.Module) -> int:
    """The observation size a policy module takes: its ``obs_dim`` attribute if it declares one (a policy whose
    layers are no ``nn.Linear``), else the ``in_features`` of its first ``nn.Linear``."""
    declared = getattr(policy, "obs_dim", None)
    if isinstance(declared, int):
        return declared
    return next(m for m in policy.modules() if isinstance(m, nn.Linear)).in_features


def member_state_dict(stacked: dict[str, torch.Tensor], k: int, members: int,
                      like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Member k's state_dict, in the layout of ``like`` (a single module's state_dict), from the state_dict
    ``stacked`` of a population's stacked module of ``members`` members. Tensors without a member dim (the actor's
    action_scale and action_bias buffers) are copied as they are."""
    out = {}
    for name, t in like.items():
        s = stacked[name]
        if s.shape == t.shape:  # no member dim
            out[name] = s.clone()
            continue
        c = s.shape[0] // members
        out[name] = from_stacked(s[k * c:(k + 1) * c], t).clone()
    return out
