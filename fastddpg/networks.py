"""Actor and critic, as in the notebook: plain `nn.Module`s with `state_dict`s.

The actor ends in ``tanh`` and is then scaled and shifted to the env's action bounds, so the critic never
learns on actions the env would clip (the notebook's "action scaling" pitfall).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def mlp(sizes: Sequence[int], output_activation: type[nn.Module] = nn.Identity) -> nn.Sequential:
    """Linear layers of widths ``sizes`` with ReLU between them and ``output_activation`` at the end."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        layers.append(nn.ReLU() if i < len(sizes) - 2 else output_activation())
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """Deterministic policy a = mu_theta(s) = scale * tanh(net(s)) + bias.

    Args:
        obs_dim, act_dim: flat observation and action sizes.
        hidden_sizes: hidden layer widths.
        action_low, action_high: the env's action bounds, shape (act_dim,).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int],
                 action_low: torch.Tensor, action_high: torch.Tensor) -> None:
        super().__init__()
        self.net = mlp([obs_dim, *hidden_sizes, act_dim], output_activation=nn.Tanh)
        low = torch.as_tensor(action_low, dtype=torch.float32)
        high = torch.as_tensor(action_high, dtype=torch.float32)
        self.register_buffer("action_scale", (high - low) / 2.0)
        self.register_buffer("action_bias", (high + low) / 2.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (B, obs_dim) -> action (B, act_dim), inside the action bounds."""
        return self.action_scale * self.net(obs) + self.action_bias


class Critic(nn.Module):
    """Action value Q_phi(s, a) of a concatenated (state, action) input."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        self.net = mlp([obs_dim + act_dim, *hidden_sizes, 1])

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """obs (B, obs_dim), action (B, act_dim) -> Q (B, 1)."""
        return self.net(torch.cat([obs, action], dim=-1))
