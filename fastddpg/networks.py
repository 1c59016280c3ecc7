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


class Actor(nn.Module):
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
        low = torch.as_tensor(action_low, dtype=torch.float32)
        high = torch.as_tensor(action_high, dtype=torch.float32)
        self.register_buffer("action_scale", (high - low) / 2.0)
        self.register_buffer("action_bias", (high + low) / 2.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (B, obs_dim) -> action (B, act_dim), inside the action bounds."""
        return self.action_scale * self.net(obs) + self.action_bias


class Critic(nn.Module):
    """Action value Q_phi(s, a) of a concatenated (state, action) input."""

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


class TwinCritic(nn.Module):
    """K critics Q_1..Q_K (K = 2 for TD3) with stacked parameters, evaluated in one batched call.

    Layer i of member k equals a `Critic`'s ``net[i]`` with weight ``weight[k].T`` and bias ``bias[k, 0]``
    (`member` builds that Critic); each member is initialised like a fresh `Critic`, independently.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], num_critics: int = 2,
                 layer_norm: bool = False) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.hidden_sizes = obs_dim, act_dim, tuple(hidden_sizes)
        self.num_critics, self.layer_norm = num_critics, layer_norm
        sizes = [obs_dim + act_dim, *hidden_sizes, 1]
        layers: list[nn.Module] = []
        for i in range(len(sizes) - 1):
            layers.append(StackedLinear(num_critics, sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                if layer_norm:
                    layers.append(StackedLayerNorm(num_critics, sizes[i + 1]))
                layers.append(nn.ReLU())
        layers.append(nn.Identity())
        self.net = nn.Sequential(*layers)  # same layer indices (and module kinds, stacked) as Critic.net

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
