"""Exploration noise for a deterministic policy, drawn on the device, in action units.

A noise process has ``sample() -> (num_envs, act_dim)`` and ``reset(ended)`` where ``ended`` is a (num_envs,)
0/1 float tensor of envs whose episode just ended; both are branch-free tensor code (no host sync).
"""

from __future__ import annotations

import torch


class GaussianNoise:
    """Independent N(0, sigma^2) per env and action dimension (the notebook's NOISE_SIGMA, action units)."""

    def __init__(self, num_envs: int, act_dim: int, sigma: float, device: torch.device,
                 generator: torch.Generator | None = None) -> None:
        self.shape = (num_envs, act_dim)
        self.sigma = float(sigma)
        self.device = device
        self.generator = generator

    def sample(self) -> torch.Tensor:
        """(num_envs, act_dim) noise."""
        return self.sigma * torch.randn(self.shape, device=self.device, generator=self.generator)

    def reset(self, ended: torch.Tensor) -> None:
        """Gaussian noise is memoryless: nothing to reset."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass
