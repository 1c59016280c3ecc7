"""Gymnasium's Pendulum-v1, vectorized over N envs in torch.

All state lives on one torch device in float32, so a training loop on the GPU needs no host transfer per step.
The dynamics, constants and reward are those of ``gymnasium/envs/classic_control/pendulum.py``; the time limit
(200 steps, truncation only) is that of ``gymnasium.wrappers.TimeLimit``; autoreset follows
``gymnasium.vector.AutoresetMode.SAME_STEP``.

The math is split into pure functions (:func:`pendulum_step`, :func:`pendulum_autoreset_step`) that contain no
Python branch on tensor data and no host sync, so they can be traced by ``torch.compile(fullgraph=True)``.
:class:`TorchPendulumVectorEnv` only adds the random number generation and the bookkeeping around them.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium.vector.utils import batch_space

MAX_SPEED = 8.0
MAX_TORQUE = 2.0
DT = 0.05
MASS = 1.0
LENGTH = 1.0
DEFAULT_G = 10.0
# Reset distribution, as gymnasium's DEFAULT_X / DEFAULT_Y: theta ~ U[-pi, pi], thetadot ~ U[-1, 1].
INIT_THETA_HIGH = math.pi
INIT_THETADOT_HIGH = 1.0


def angle_normalize(x: torch.Tensor) -> torch.Tensor:
    """Wrap angles to [-pi, pi), like gymnasium's ``angle_normalize``.

    ``torch.remainder`` takes the sign of the divisor, as numpy's ``%`` does, so the results agree.

    Args:
        x: angles in radians, any shape.

    Returns:
        Tensor of the same shape and dtype as ``x``.
    """
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


def pendulum_obs(th: torch.Tensor, thdot: torch.Tensor) -> torch.Tensor:
    """Observation ``[cos th, sin th, thdot]``.

    Args:
        th: angles, shape ``[N]``.
        thdot: angular velocities, shape ``[N]``.

    Returns:
        Tensor of shape ``[N, 3]``.
    """
    return torch.stack((torch.cos(th), torch.sin(th), thdot), dim=-1)


def pendulum_step(
    th: torch.Tensor, thdot: torch.Tensor, u: torch.Tensor, g: float = DEFAULT_G
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of Pendulum-v1 dynamics, as in gymnasium's ``PendulumEnv.step``.

    The cost is computed on the pre-step state. ``new_th`` is not wrapped (as in gymnasium).

    Args:
        th: angles, shape ``[N]``.
        thdot: angular velocities, shape ``[N]``.
        u: torques, shape ``[N]``; clipped to ``[-2, 2]``.
        g: gravitational acceleration.

    Returns:
        ``(new_th, new_thdot, reward)``, each of shape ``[N]`` and the dtype of the inputs.
    """
    u = torch.clamp(u, -MAX_TORQUE, MAX_TORQUE)
    cost = angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * u**2
    new_thdot = thdot + (3 * g / (2 * LENGTH) * torch.sin(th) + 3.0 / (MASS * LENGTH**2) * u) * DT
    new_thdot = torch.clamp(new_thdot, -MAX_SPEED, MAX_SPEED)
    new_th = th + new_thdot * DT
    return new_th, new_thdot, -cost


def pendulum_autoreset_step(
    th: torch.Tensor,
    thdot: torch.Tensor,
    elapsed: torch.Tensor,
    u: torch.Tensor,
    reset_th: torch.Tensor,
    reset_thdot: torch.Tensor,
    max_episode_steps: int = 200,
    g: float = DEFAULT_G,
) -> tuple[
    torch.Tensor,
    torch.Tensor,
    torch.Tensor,
    torch.Tensor,
    torch.Tensor,
    torch.Tensor,
    torch.Tensor,
    torch.Tensor,
]:
    """Step, time limit and SAME_STEP autoreset for a batch of pendulums, branch-free.

    Every env gets a candidate reset state (``reset_th``, ``reset_thdot``); ``torch.where`` keeps it only for
    envs whose episode ended on this step. The stored angle is wrapped to [-pi, pi): observations and rewards
    are 2*pi-periodic in theta, and the wrap keeps float32 precision from degrading as |theta| grows over an
    episode.

    Args:
        th: angles, shape ``[N]``.
        thdot: angular velocities, shape ``[N]``.
        elapsed: steps taken in the current episode, integer tensor of shape ``[N]``.
        u: torques, shape ``[N]``.
        reset_th: candidate reset angles, shape ``[N]``.
        reset_thdot: candidate reset angular velocities, shape ``[N]``.
        max_episode_steps: truncate when an episode reaches this many steps.
        g: gravitational acceleration.

    Returns:
        ``(next_th [N], next_thdot [N], next_elapsed [N], obs [N, 3], reward [N], terminated [N] bool,
        truncated [N] bool, final_obs [N, 3])``. ``next_*`` and ``obs`` are post-autoreset; ``final_obs`` is
        the observation before autoreset (equal to ``obs`` for envs that did not end).
    """
    new_th, new_thdot, reward = pendulum_step(th, thdot, u, g)
    new_th = angle_normalize(new_th)
    new_elapsed = elapsed + 1
    truncated = new_elapsed >= max_episode_steps
    terminated = torch.zeros_like(truncated)
    done = terminated | truncated
    final_obs = pendulum_obs(new_th, new_thdot)
    next_th = torch.where(done, reset_th, new_th)
    next_thdot = torch.where(done, reset_thdot, new_thdot)
    next_elapsed = torch.where(done, torch.zeros_like(new_elapsed), new_elapsed)
    obs = torch.where(done.unsqueeze(-1), pendulum_obs(reset_th, reset_thdot), final_obs)
    return next_th, next_thdot, next_elapsed, obs, reward, terminated, truncated, final_obs


class TorchPendulumVectorEnv(gymnasium.vector.VectorEnv):
    """``num_envs`` Pendulum-v1 envs as float32 tensors on ``device``, with SAME_STEP autoreset.

    Observations are ``Tensor[N, 3]`` (cos theta, sin theta, thetadot), actions ``Tensor[N, 1]`` (or ``[N]``)
    torques, rewards ``Tensor[N]``. Episodes never terminate; they truncate after ``max_episode_steps``.
    The internal angle is kept wrapped to [-pi, pi) (see :func:`pendulum_autoreset_step`).
    """

    def __init__(
        self,
        num_envs: int,
        device: str | torch.device = "cpu",
        max_episode_steps: int = 200,
        g: float = DEFAULT_G,
        repeats: int = 1,
    ) -> None:
        """Create the envs; call :meth:`reset` before :meth:`step`.

        Args:
            num_envs: number of parallel envs N.
            device: torch device holding all tensors.
            max_episode_steps: episode length before truncation (gymnasium's TimeLimit uses 200).
            g: gravitational acceleration.
            repeats: G, dividing N: the envs are G equal blocks, and one draw of N / G reset states serves every
                block (env i of each block starts its episodes alike; a population's grid points, paired).
        """
        if repeats < 1 or num_envs % repeats:
            raise ValueError(f"{num_envs} envs cannot form {repeats} equal blocks")
        self.repeats = repeats
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.max_episode_steps = max_episode_steps
        self.g = g
        high = np.array([1.0, 1.0, MAX_SPEED], dtype=np.float32)
        self.single_observation_space = gymnasium.spaces.Box(-high, high, (3,), np.float32)
        self.single_action_space = gymnasium.spaces.Box(-MAX_TORQUE, MAX_TORQUE, (1,), np.float32)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.metadata = {"autoreset_mode": gymnasium.vector.AutoresetMode.SAME_STEP}
        self._gen = torch.Generator(device=self.device)
        self._gen.seed()
        self._th: torch.Tensor | None = None
        self._thdot = torch.zeros(num_envs, dtype=torch.float32, device=self.device)
        self._elapsed = torch.zeros(num_envs, dtype=torch.int32, device=self.device)

    @property
    def state(self) -> torch.Tensor:
        """Current ``(theta, thetadot)`` of every env, shape ``[N, 2]`` (a copy)."""
        if self._th is None:
            raise RuntimeError("call reset() first")
        return torch.stack((self._th, self._thdot), dim=-1)

    def _sample_states(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw fresh reset states for all envs: ``(theta [N], thetadot [N])``, uniform in the reset box (one draw
        of N / repeats, repeated)."""
        r = torch.rand(2, self.num_envs // self.repeats, generator=self._gen, device=self.device, dtype=torch.float32)
        if self.repeats > 1:
            r = r.repeat(1, self.repeats)
        th = (2 * r[0] - 1) * INIT_THETA_HIGH
        thdot = (2 * r[1] - 1) * INIT_THETADOT_HIGH
        return th, thdot

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Reset all envs.

        Args:
            seed: if given, reseeds the env's torch generator first (same seed -> same states and same
                subsequent autoreset states).
            options: ``{"state": Tensor[N, 2]}`` sets ``(theta, thetadot)`` of every env exactly instead of
                sampling them.

        Returns:
            ``(obs [N, 3], info)`` with an empty ``info``.
        """
        super().reset(seed=seed)
        if seed is not None:
            self._gen.manual_seed(int(seed))
        if options is not None and "state" in options:
            state = torch.as_tensor(options["state"], dtype=torch.float32, device=self.device)
            if state.shape != (self.num_envs, 2):
                raise ValueError(
                    f"options['state'] must have shape ({self.num_envs}, 2), got {tuple(state.shape)}"
                )
            self._th, self._thdot = state[:, 0].clone(), state[:, 1].clone()
        else:
            self._th, self._thdot = self._sample_states()
        self._elapsed = torch.zeros(self.num_envs, dtype=torch.int32, device=self.device)
        return pendulum_obs(self._th, self._thdot), {}

    def step(
        self, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Advance all envs one step, autoresetting those whose episode ends (SAME_STEP).

        Args:
            actions: torques on the env's device, shape ``[N, 1]`` or ``[N]``; clipped to ``[-2, 2]``.

        Returns:
            ``(obs [N, 3], reward [N] float32, terminated [N] bool, truncated [N] bool, info)``. For envs that
            ended, ``obs`` is already the first observation of the next episode; ``info["final_obs"]``
            (``[N, 3]``) is the observation before autoreset for every env and ``info["_final_obs"]``
            (``[N]`` bool) marks the envs that ended.
        """
        if self._th is None:
            raise RuntimeError("call reset() before step()")
        u = torch.as_tensor(actions, dtype=torch.float32, device=self.device).reshape(self.num_envs)
        reset_th, reset_thdot = self._sample_states()
        (self._th, self._thdot, self._elapsed, obs, reward, terminated, truncated, final_obs) = (
            pendulum_autoreset_step(
                self._th,
                self._thdot,
                self._elapsed,
                u,
                reset_th,
                reset_thdot,
                self.max_episode_steps,
                self.g,
            )
        )
        info = {"final_obs": final_obs, "_final_obs": terminated | truncated}
        return obs, reward, terminated, truncated, info

    def close(self, **kwargs: Any) -> None:
        """Nothing to release; only marks the env closed."""
        self.closed = True
