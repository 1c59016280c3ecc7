"""Gymnasium's Pendulum-v1 for N envs in one set of numpy array ops: the same numbers as ``gym.make_vec``'s.

Why: on a CPU, ``gym.make_vec("Pendulum-v1", vectorization_mode="sync")`` steps its N envs one after the other,
each through three wrappers and a dozen numpy scalar ops: ~100 us for 4 envs alone, ~330 us inside a training loop
whose update has just pushed the interpreter's data out of the caches (2-core AMD EPYC). Gymnasium gives Pendulum no
vector entry point (CartPole has one), so this is it: the dynamics of ``PendulumEnv.step`` and the
``TimeLimit``'s 200-step truncation on arrays of N states, with SAME_STEP autoreset as `fastddpg.envs.vector` asks.

The same numbers, not just the same equations: every op keeps the dtype it has in Gymnasium's scalar code (the
state float64, the action float32, ``3.0 * u`` float32 under numpy's promotion rules, the observation cast to
float32 last), numpy's float64 ``sin``/``cos`` give an array the same values they give one scalar, the squares are
taken as a scalar takes them (`scalar_square`), and each env keeps its own ``np.random.Generator``, seeded as
``SyncVectorEnv.reset`` seeds its envs (env i with seed + i) and drawn from only when that env resets.
tests/test_envs.py steps both through the same actions, episode ends included, and compares every array bit for
bit.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.pendulum import DEFAULT_X, DEFAULT_Y, PendulumEnv, angle_normalize
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

ENV_ID = "Pendulum-v1"
ENTRY_POINT = "gymnasium.envs.classic_control.pendulum:PendulumEnv"
# numpy 2's promotion rules (NEP 50) are what make float32 * a Python float the same dtype on one scalar as on an
# array; under numpy 1 Gymnasium's scalar code computes ``3.0 * u`` in float64 and an array would not
NUMPY_2 = np.lib.NumpyVersion(np.__version__) >= "2.0.0"


def unsupported(env_id: str) -> str | None:
    """Why this env cannot stand in for ``gym.make_vec(env_id)`` here, or None when it can: ``env_id`` is
    Pendulum-v1 as Gymnasium registers it (its entry point, no extra wrappers; a different ``g`` or time limit in
    the registration is followed) and numpy is 2 or later."""
    if env_id != ENV_ID:
        return f"it implements {ENV_ID} only, not {env_id}"
    if not NUMPY_2:
        return f"it needs numpy >= 2 for Gymnasium's numbers (numpy {np.__version__} is installed)"
    return registration_differs(env_id)


def registration_differs(env_id: str) -> str | None:
    """Why Pendulum-v1's registration is not one a reimplementation can follow (another entry point, extra
    wrappers, arguments other than ``g``), or None: then only its ``g`` and time limit may differ from
    Gymnasium's, and both the numpy and the torch Pendulum take them from it."""
    spec = gym.spec(env_id)
    if spec.entry_point != ENTRY_POINT or spec.additional_wrappers or set(spec.kwargs) - {"g"}:
        return f"{env_id} is registered with another entry point, wrappers or arguments than Gymnasium's"
    return None


def scalar_square(x: np.ndarray) -> np.ndarray:
    """x ** 2 element by element as a numpy scalar computes it (``pow`` from libm, ``powf`` in float32), which
    Gymnasium's scalar code calls; an array's ``** 2`` multiplies instead, which differs in the last bit for about 1
    value in 1,000."""
    return np.array([v**2 for v in x], dtype=x.dtype)


class NumpyPendulumVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` Pendulum-v1 envs (g and the time limit as registered: 10 and 200 steps) as one
    ``gymnasium.vector.VectorEnv`` with SAME_STEP autoreset: ``step`` returns the reset observation where an episode
    ended and its last one in ``info["final_obs"]`` (masked by ``info["_final_obs"]``), as ``SyncVectorEnv``
    does."""

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, num_envs: int) -> None:
        if (why := unsupported(ENV_ID)) is not None:
            raise ValueError(f"NumpyPendulumVectorEnv cannot stand in for Gymnasium's {ENV_ID}: {why}")
        spec = gym.spec(ENV_ID)
        one = PendulumEnv(**spec.kwargs)  # its spaces and constants (g as registered), so they stay Gymnasium's
        self.num_envs = num_envs
        self.single_observation_space = one.observation_space
        self.single_action_space = one.action_space
        self.observation_space = batch_space(one.observation_space, num_envs)
        self.action_space = batch_space(one.action_space, num_envs)
        self.spec = spec
        self.max_episode_steps = spec.max_episode_steps  # None: no TimeLimit, as Gymnasium then adds none
        self._g, self._m, self._length, self._dt = one.g, one.m, one.l, one.dt
        self._max_torque, self._max_speed = one.max_torque, one.max_speed
        one.close()
        self._rngs: list[np.random.Generator | None] = [None] * num_envs
        self._th = np.zeros(num_envs)  # float64, as PendulumEnv's state
        self._thdot = np.zeros(num_envs)
        self._elapsed = np.zeros(num_envs, dtype=np.int64)

    def _reset_env(self, i: int, seed: int | None = None) -> None:
        """``PendulumEnv.reset(seed=seed)`` of env i: a new generator when seeded (or on first use), then the
        uniform draw of (theta, theta_dot) within (pi, 1)."""
        if seed is not None or self._rngs[i] is None:
            self._rngs[i] = seeding.np_random(seed)[0]
        high = np.array([DEFAULT_X, DEFAULT_Y])
        self._th[i], self._thdot[i] = self._rngs[i].uniform(low=-high, high=high)
        self._elapsed[i] = 0

    def _obs(self, th: np.ndarray, thdot: np.ndarray) -> np.ndarray:
        """(N, 3) float32 [cos theta, sin theta, theta_dot], each computed in float64 and cast last."""
        return np.stack([np.cos(th), np.sin(th), thdot], axis=1).astype(np.float32)

    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every env: env i seeded with ``seed + i`` (an int), ``seed[i]`` (a list) or not reseeded (None).
        Returns obs (N, 3) float32 and an empty info."""
        if options:
            raise ValueError("NumpyPendulumVectorEnv.reset takes no options (Gymnasium's x_init/y_init are not "
                             "supported); use gym.make_vec for custom reset bounds")
        seeds = [seed + i for i in range(self.num_envs)] if isinstance(seed, int) else (
            [None] * self.num_envs if seed is None else list(seed))
        if len(seeds) != self.num_envs:
            raise ValueError(f"{len(seeds)} seeds for {self.num_envs} envs")
        for i, s in enumerate(seeds):
            self._reset_env(i, s)
        return self._obs(self._th, self._thdot), {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """actions (N, 1) float32 -> obs (N, 3) float32, reward (N,) float64, terminated (N,) bool (always False),
        truncated (N,) bool (an episode's 200th step), info (``final_obs``/``_final_obs`` where one ended)."""
        if self._rngs[0] is None:
            raise gym.error.ResetNeeded("Cannot call env.step() before calling env.reset()")
        th, thdot = self._th, self._thdot
        u = np.clip(np.asarray(actions).reshape(self.num_envs, -1)[:, 0], -self._max_torque, self._max_torque)
        # Gymnasium's own angle_normalize: its arithmetic is elementwise, so an array of angles goes through as one
        costs = scalar_square(angle_normalize(th)) + 0.1 * scalar_square(thdot) + 0.001 * scalar_square(u)
        g, m, length, dt = self._g, self._m, self._length, self._dt
        newthdot = thdot + (3 * g / (2 * length) * np.sin(th) + 3.0 / (m * length**2) * u) * dt
        newthdot = np.clip(newthdot, -self._max_speed, self._max_speed)
        self._th = th + newthdot * dt
        self._thdot = newthdot
        self._elapsed += 1
        obs = self._obs(self._th, self._thdot)
        terminated = np.zeros(self.num_envs, dtype=bool)
        limit = self.max_episode_steps
        truncated = self._elapsed >= limit if limit is not None else np.zeros(self.num_envs, dtype=bool)
        info: dict[str, Any] = {}
        if truncated.any():
            ended = np.flatnonzero(truncated)
            final_obs = np.empty(self.num_envs, dtype=object)  # None where no episode ended
            for i in ended:
                final_obs[i] = obs[i].copy()
                self._reset_env(int(i))
            obs[ended] = self._obs(self._th[ended], self._thdot[ended])
            # as SyncVectorEnv's same-step autoreset: Pendulum's step infos are empty, so is final_info
            info = {"final_obs": final_obs, "_final_obs": truncated.copy(), "final_info": {},
                    "_final_info": truncated.copy()}
        return obs, -costs, terminated, truncated, info
