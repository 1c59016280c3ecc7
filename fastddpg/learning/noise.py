"""Exploration noise for a deterministic policy, drawn on the device, in action units.

A noise process has ``sample() -> (num_envs, act_dim)`` and ``reset(ended)`` where ``ended`` is a (num_envs,)
0/1 float tensor of envs whose episode just ended; both are branch-free tensor code (no host sync).
``state_dict``/``load_state_dict`` carry the process state, so a checkpoint can resume it exactly.

``repeats=G`` (a population of G grid points, `fastddpg.training.trainer`): the envs are G equal blocks, and one draw of
(num_envs / G, act_dim) standard normals serves every block, so env i of each block gets the same draw (scaled by
its own sigma): members with the same seed at different grid points explore with the same noise.

`make_noise` picks the process from the config (``--noise {gaussian,ou}``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ..core.config import Config


class GaussianNoise:
    """Independent N(0, sigma^2) per env and action dimension (the notebook's NOISE_SIGMA, action units)."""

    def __init__(self, num_envs: int, act_dim: int, sigma: float | torch.Tensor, device: torch.device,
                 generator: torch.Generator | None = None, repeats: int = 1) -> None:
        self.shape = (num_envs, act_dim)
        self.sigma = _sigma(sigma)
        self.device = device
        self.generator = generator
        self.repeats = _repeats(num_envs, repeats)

    def sample(self) -> torch.Tensor:
        """(num_envs, act_dim) noise."""
        return self.sigma * _standard_normal(self.shape, self.repeats, self.device, self.generator)

    def reset(self, ended: torch.Tensor) -> None:
        """Gaussian noise is memoryless: nothing to reset."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass


class OUNoise:
    """Ornstein-Uhlenbeck noise, one process per env and action dimension (the DDPG paper's exploration noise).

    Each ``sample()`` advances the state x (num_envs, act_dim) by one Euler-Maruyama step and returns it:

        x <- x + theta (mu - x) dt + sigma sqrt(dt) N(0, 1)

    so consecutive actions of an env get correlated noise that reverts to ``mu`` at rate theta. Defaults are
    SB3's and the DDPG paper's (theta 0.15, dt 1e-2); ``sigma`` is in action units, like GaussianNoise's.
    The stationary variance is sigma^2 / (2 theta) (exactly sigma^2 dt / (1 - (1 - theta dt)^2) for this
    discretisation), reached after a few times 1 / (theta dt) steps (~667 at the defaults, longer than a
    Pendulum episode: within an episode the noise behaves much like a random walk started at mu).
    An env whose episode ended starts its next episode from x = mu.
    """

    def __init__(self, num_envs: int, act_dim: int, sigma: float | torch.Tensor, device: torch.device,
                 generator: torch.Generator | None = None, theta: float = 0.15, dt: float = 1e-2,
                 mu: float = 0.0, repeats: int = 1) -> None:
        self.sigma, self.theta, self.dt, self.mu = _sigma(sigma), float(theta), float(dt), float(mu)
        self.device = device
        self.generator = generator
        self.repeats = _repeats(num_envs, repeats)
        self.state = torch.full((num_envs, act_dim), self.mu, device=device)
        self._noise_scale = self.sigma * math.sqrt(self.dt)

    def sample(self) -> torch.Tensor:
        """Advance every env's process one step; returns the new state (num_envs, act_dim) (a copy)."""
        w = _standard_normal(self.state.shape, self.repeats, self.device, self.generator)
        x = self.state + self.theta * self.dt * (self.mu - self.state) + self._noise_scale * w
        self.state.copy_(x)
        return x

    def reset(self, ended: torch.Tensor) -> None:
        """Put the envs with ``ended`` (num_envs,) == 1 back at x = mu; the others keep their state (no branch)."""
        self.state.copy_(torch.where(ended.reshape(-1, 1) > 0.5, self.mu, self.state))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"state": self.state.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Copies in place (keeps the state tensor's identity)."""
        self.state.copy_(state["state"].to(self.device))


def _sigma(sigma: float | torch.Tensor) -> float | torch.Tensor:
    """A noise scale: a float, or a (num_envs, 1) tensor of one per env (a population's --grid noise_sigma)."""
    return sigma if isinstance(sigma, torch.Tensor) else float(sigma)


def _repeats(num_envs: int, repeats: int) -> int:
    if repeats < 1 or num_envs % repeats:
        raise ValueError(f"{num_envs} envs cannot form {repeats} equal blocks")
    return int(repeats)


def _standard_normal(shape: tuple[int, ...] | torch.Size, repeats: int, device: torch.device,
                     generator: torch.Generator | None) -> torch.Tensor:
    """N(0, 1) of ``shape`` (num_envs, act_dim): one draw of (num_envs / repeats, act_dim), repeated ``repeats``
    times along the envs (repeats 1: a plain draw of ``shape``, the same numbers)."""
    n, a = shape
    z = torch.randn((n // repeats, a), device=device, generator=generator)
    return z if repeats == 1 else z.repeat(repeats, 1)


def make_noise(cfg: Config, num_envs: int, act_dim: int, device: torch.device,
               generator: torch.Generator | None = None,
               sigma: float | torch.Tensor | None = None, repeats: int = 1) -> GaussianNoise | OUNoise:
    """The exploration noise ``cfg.noise`` names, with ``sigma`` (default ``cfg.noise_sigma``; a (num_envs, 1)
    tensor gives each env its own), ``cfg.ou_theta``/``cfg.ou_dt`` and ``repeats`` (see the module docstring)."""
    sigma = cfg.noise_sigma if sigma is None else sigma
    if cfg.noise == "ou":
        return OUNoise(num_envs, act_dim, sigma, device, generator, theta=cfg.ou_theta, dt=cfg.ou_dt,
                       repeats=repeats)
    if cfg.noise == "gaussian":
        return GaussianNoise(num_envs, act_dim, sigma, device, generator, repeats)
    raise ValueError(f"unknown noise {cfg.noise!r}")
