"""N copies of a Gymnasium environment behind one device-tensor interface.

Autoreset mode: **SAME_STEP**, chosen on purpose. In this mode a vector step in which env i's episode ends
returns the *reset* observation of its next episode in ``obs[i]`` and the true last observation in
``info["final_obs"][i]``. So every vector step yields exactly N valid transitions
``(s, a, r, s'=final or next obs, d=terminated)``, which keeps the replay write one fixed-size write and the
replay ratio exact. (In the default NEXT_STEP mode the step after an episode end is a dummy reset step whose
"transition" crosses the episode boundary and would have to be masked out of the buffer.)

``terminated`` and ``truncated`` stay separate: only ``terminated`` is stored as d; a truncation (Pendulum's
200-step time limit) bootstraps from the true final observation.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from .config import ConfigError


class Step(NamedTuple):
    """One vector step on the training device.

    next_obs (N, obs_dim): s' to store: the true final observation where an episode ended, else the next one.
    reward (N,), terminated (N,), truncated (N,): float32 0/1 flags.
    obs (N, obs_dim): the observation to act on next (already reset where an episode ended).
    """

    next_obs: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    obs: torch.Tensor


def make_gym_vector_env(env_id: str, num_envs: int, mode: str = "sync") -> gym.vector.VectorEnv:
    """``gym.make_vec`` with SAME_STEP autoreset; turns Gymnasium's errors into one-line ConfigErrors."""
    try:
        return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode,
                            vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
    except gym.error.Error as e:
        raise ConfigError(f"cannot make environment '{env_id}': {e} Check the id (e.g. Pendulum-v1) "
                          "or register the env with gymnasium.register first.") from None


def check_spaces(env_id: str, obs_space: gym.Space, act_space: gym.Space) -> None:
    """DDPG needs a bounded continuous (Box) action space and a Box observation space."""
    if not isinstance(act_space, gym.spaces.Box):
        raise ConfigError(f"'{env_id}' has a {act_space} action space; DDPG/TD3 need a continuous Box action "
                          "space. Pick an env with continuous actions, e.g. Pendulum-v1.")
    if not (np.all(np.isfinite(act_space.low)) and np.all(np.isfinite(act_space.high))):
        raise ConfigError(f"'{env_id}' has unbounded actions {act_space}; the actor's tanh needs finite "
                          "bounds. Wrap the env with gymnasium.wrappers.RescaleAction or ClipAction.")
    if not isinstance(obs_space, gym.spaces.Box):
        raise ConfigError(f"'{env_id}' has a {obs_space} observation space; fastddpg needs a Box observation "
                          "space (wrap it with gymnasium.wrappers.FlattenObservation).")


class VecEnv:
    """A Gymnasium vector env whose inputs and outputs are tensors on ``device``.

    Per vector step exactly one device-to-host copy (the actions) and one host-to-device copy (observations,
    final observations, rewards and flags, packed into one array) cross between host and device.
    """

    def __init__(self, env: gym.vector.VectorEnv, device: torch.device, env_id: str = "") -> None:
        if env.metadata.get("autoreset_mode") != AutoresetMode.SAME_STEP:
            raise ValueError("fastddpg needs a vector env with autoreset_mode=AutoresetMode.SAME_STEP")
        check_spaces(env_id, env.single_observation_space, env.single_action_space)
        self.env = env
        self.device = device
        self.num_envs = env.num_envs
        self.obs_dim = int(np.prod(env.single_observation_space.shape))
        self.act_dim = int(np.prod(env.single_action_space.shape))
        self.action_low = torch.as_tensor(env.single_action_space.low, dtype=torch.float32).reshape(-1)
        self.action_high = torch.as_tensor(env.single_action_space.high, dtype=torch.float32).reshape(-1)
        self._act_shape = env.single_action_space.shape
        self._act_dtype = env.single_action_space.dtype
        n, o = self.num_envs, self.obs_dim
        self._pack = np.zeros((n, 2 * o + 3), dtype=np.float32)  # [next_obs | reward | term | trunc | obs]
        if device.type == "cuda":
            self._pack = torch.zeros(self._pack.shape, pin_memory=True).numpy()

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Reset all envs (env i seeded with seed + i). Returns obs (N, obs_dim) on the device."""
        obs, _ = self.env.reset(seed=seed)
        return torch.as_tensor(self._flat(obs)).to(self.device)

    def step(self, actions: torch.Tensor) -> Step:
        """actions (N, act_dim) on the device -> Step on the device."""
        a = actions.detach().cpu().numpy().reshape((self.num_envs, *self._act_shape)).astype(self._act_dtype)
        obs, reward, terminated, truncated, info = self.env.step(a)
        o = self.obs_dim
        p = self._pack
        p[:, o + 3:] = self._flat(obs)
        p[:, :o] = p[:, o + 3:]
        ended = info.get("_final_obs")
        if ended is not None and ended.any():
            final = np.stack(info["final_obs"][ended]).astype(np.float32)
            p[ended, :o] = final.reshape(final.shape[0], -1)
        p[:, o] = reward
        p[:, o + 1] = terminated
        p[:, o + 2] = truncated
        t = torch.from_numpy(p).to(self.device, non_blocking=True)
        if t.data_ptr() == p.__array_interface__["data"][0]:
            t = t.clone()  # on CPU from_numpy shares memory with the pack array, which the next step rewrites
        return Step(t[:, :o], t[:, o], t[:, o + 1], t[:, o + 2], t[:, o + 3:])

    def close(self) -> None:
        self.env.close()

    def _flat(self, x: Any) -> np.ndarray:
        return np.asarray(x, dtype=np.float32).reshape(self.num_envs, -1)


def make_env(env_id: str, num_envs: int, device: torch.device, mode: str = "sync") -> VecEnv:
    """The env of a run: ``num_envs`` copies of ``env_id`` as a device-tensor VecEnv."""
    env = make_gym_vector_env(env_id, num_envs, mode)
    try:
        return VecEnv(env, device, env_id)
    except Exception:
        env.close()
        raise
