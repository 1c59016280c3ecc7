"""N copies of a Gymnasium environment behind one device-tensor interface.

Autoreset mode: **SAME_STEP**, chosen on purpose. In this mode a vector step in which env i's episode ends
returns the *reset* observation of its next episode in ``obs[i]`` and the true last observation in
``info["final_obs"][i]``. So every vector step yields exactly N valid transitions
``(s, a, r, s'=final or next obs, d=terminated)``, which keeps the replay write one fixed-size write and the
replay ratio exact. (In the default NEXT_STEP mode the step after an episode end is a dummy reset step whose
"transition" crosses the episode boundary and would have to be masked out of the buffer.)

``terminated`` and ``truncated`` stay separate: only ``terminated`` is stored as d; a truncation (Pendulum's
200-step time limit) bootstraps from the true final observation.

Two backends sit behind the same device-tensor interface (``num_envs, obs_dim, act_dim, action_low,
action_high, device, reset(seed) -> obs, step(actions) -> Step, close()``), so the trainer never knows which
one it drives: `VecEnv` wraps a Gymnasium vector env simulated on the CPU (``gym.make_vec``'s, or for Pendulum-v1
the batched numpy one of `fastddpg.envs.numpy_pendulum`, which computes the same numbers in one set of array ops);
`TorchVecEnv` wraps the torch-native Pendulum (`fastddpg.envs.torch_pendulum`), whose state lives on the training
device, so a vector step copies nothing between host and device.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import sys
from collections.abc import Iterator
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from ..core.config import ENV_BACKENDS, TORCH_ENV_IDS, ConfigError
from .numpy_pendulum import NumpyPendulumVectorEnv, registration_differs
from .numpy_pendulum import unsupported as numpy_unsupported
from .torch_pendulum import DEFAULT_G, TorchPendulumVectorEnv


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


def check_env_id(env_id: str) -> None:
    """The one-line ConfigError `make_gym_vector_env` gives for an id Gymnasium does not know, without making the
    env: for checks before any run starts (a sweep's env values)."""
    module, _, name = env_id.rpartition(":")  # "package.module:Env-v0": gym.make imports the module first
    try:
        if module:
            importlib.import_module(module)
        gym.spec(name)
    except ImportError as e:
        raise ConfigError(f"cannot make environment '{env_id}': {e}.") from None
    except gym.error.Error as e:
        raise unregistered_env(env_id, e) from None


def unregistered_env(env_id: str, error: Exception) -> ConfigError:
    """The one line for an env id Gymnasium does not know: its own message, and how to fix it."""
    return ConfigError(f"cannot make environment '{env_id}': {error} Check the id (e.g. Pendulum-v1) or register "
                       "the env with gymnasium.register first.")


def make_gym_vector_env(env_id: str, num_envs: int, mode: str = "sync") -> gym.vector.VectorEnv:
    """``gym.make_vec`` with SAME_STEP autoreset; turns Gymnasium's errors into one-line ConfigErrors. MuJoCo's
    ``settotalmass`` deprecation warning is filtered (`settotalmass_filtered`), in async workers too."""
    kwargs: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP}
    mujoco = is_mujoco_env(env_id)
    if mode == "async":
        kwargs["worker"] = functools.partial(_async_worker_ignoring_sigint, mujoco)
    try:
        with settotalmass_filtered() if mujoco else contextlib.nullcontext():
            return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode, vector_kwargs=kwargs)
    except gym.error.UnregisteredEnv as e:  # a wrong id: Gymnasium names it; say how to fix it
        raise unregistered_env(env_id, e) from None
    except gym.error.Error as e:  # a missing dependency, a deprecated version: Gymnasium's own hint is the fix
        raise ConfigError(f"cannot make environment '{env_id}': {e}") from None


def _async_worker_ignoring_sigint(mujoco: bool, *args: Any) -> None:
    """Gymnasium's async worker, deaf to SIGINT: a terminal Ctrl-C reaches the whole process group, and the
    trainer (not the env workers) decides how to stop, writing its checkpoint first. SIGTERM is left alone,
    since multiprocessing's exit-time terminate() relies on it. With ``mujoco`` the worker's env is made with
    `settotalmass_filtered` (the worker process holds only that env)."""
    import signal

    from gymnasium.vector.async_vector_env import _async_worker

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with settotalmass_filtered() if mujoco else contextlib.nullcontext():
        _async_worker(*args)


SETTOTALMASS_WARNING = "compiler attribute 'settotalmass' is deprecated"  # MuJoCo >= 3.3's, on half_cheetah.xml


def is_mujoco_env(env_id: str) -> bool:
    """Whether ``env_id`` is one of Gymnasium's MuJoCo envs (by its registered entry point)."""
    try:
        entry = gym.spec(env_id).entry_point
    except gym.error.Error:
        return False
    return isinstance(entry, str) and entry.startswith("gymnasium.envs.mujoco")


@contextlib.contextmanager
def settotalmass_filtered() -> Iterator[None]:
    """While making a MuJoCo env: drop MuJoCo's warning that the model's ``settotalmass`` attribute is deprecated
    (Gymnasium's half_cheetah.xml sets it; users can do nothing about it), and only that one. MuJoCo reports
    warnings through one process-wide C callback; every other warning goes on to the handler that was installed
    before, or, with none, to stderr as MuJoCo's own handler prints it. The previous handler is put back after."""
    try:
        import mujoco
    except ImportError:  # no MuJoCo: nothing to filter (making the env will say what is missing)
        yield
        return
    previous = mujoco.get_mju_user_warning()

    def handler(message: str) -> None:
        if SETTOTALMASS_WARNING in message:
            return
        if previous is not None:
            previous(message)
        else:
            print(f"WARNING: {message}\n", file=sys.stderr, flush=True)

    mujoco.set_mju_user_warning(handler)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)


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


class EnvDims(NamedTuple):
    """Flat observation and action sizes, and the action bounds (act_dim,) each."""

    obs_dim: int
    act_dim: int
    action_low: torch.Tensor
    action_high: torch.Tensor


def space_dims(obs_space: gym.Space, act_space: gym.Space, device: torch.device | str = "cpu") -> EnvDims:
    """The `EnvDims` of one env's observation and action spaces (bounds as float32 tensors on ``device``)."""
    def bound(x: Any) -> torch.Tensor:
        return torch.as_tensor(x, dtype=torch.float32, device=device).reshape(-1)

    return EnvDims(int(np.prod(obs_space.shape)), int(np.prod(act_space.shape)), bound(act_space.low),
                   bound(act_space.high))


def episode_limit(env_id: str) -> int | None:
    """The time limit of ``env_id``'s episodes (its registered ``max_episode_steps``), None if it has none."""
    try:
        return gym.spec(env_id).max_episode_steps
    except gym.error.Error:
        return None


def env_dims(env_id: str, backend: str = "gymnasium") -> EnvDims:
    """The `EnvDims` of ``env_id`` (made once on the CPU, then closed)."""
    env = make_env(env_id, 1, torch.device("cpu"), "sync", backend)
    env.close()
    return EnvDims(env.obs_dim, env.act_dim, env.action_low, env.action_high)


class VecEnv:
    """A Gymnasium vector env whose inputs and outputs are tensors on ``device``.

    Per vector step exactly one device-to-host copy (the actions) and one host-to-device copy (observations,
    final observations, rewards and flags, packed into one array) cross between host and device.
    """

    def __init__(self, env: gym.vector.VectorEnv, device: torch.device, env_id: str = "",
                 backend: str = "gymnasium") -> None:
        if env.metadata.get("autoreset_mode") != AutoresetMode.SAME_STEP:
            raise ValueError("fastddpg needs a vector env with autoreset_mode=AutoresetMode.SAME_STEP")
        check_spaces(env_id, env.single_observation_space, env.single_action_space)
        self.backend = backend  # gymnasium's own vector env, or the numpy Pendulum (one of Gymnasium's VectorEnvs)
        self.env = env
        self.device = device
        self.num_envs = env.num_envs
        self.obs_dim, self.act_dim, self.action_low, self.action_high = space_dims(
            env.single_observation_space, env.single_action_space)
        self._act_shape = env.single_action_space.shape
        self._act_dtype = env.single_action_space.dtype
        # the bounds in the space's own dtype: scale * tanh + bias rounds to one float step outside asymmetric
        # bounds (e.g. [-1.3, 0.7]), which an env that checks its action space refuses
        self._act_low = np.broadcast_to(env.single_action_space.low, (self.num_envs, *self._act_shape))
        self._act_high = np.broadcast_to(env.single_action_space.high, (self.num_envs, *self._act_shape))
        n, o = self.num_envs, self.obs_dim
        self._pack = np.zeros((n, 2 * o + 3), dtype=np.float32)  # [next_obs | reward | term | trunc | obs]
        # on CUDA the pack is pinned and uploaded asynchronously; the event marks the upload's end, which the next
        # step waits for before rewriting the pack (the trainer's blocking copy of its actions already has: a caller
        # whose actions are on the host has not)
        self._uploaded: Any = None
        if device.type == "cuda":
            self._pack = torch.zeros(self._pack.shape, pin_memory=True).numpy()

    def reset(self, seed: int | list[int] | None = None) -> torch.Tensor:
        """Reset all envs (env i seeded with seed + i, or with seed[i] given one seed per env). Returns obs
        (N, obs_dim) on the device."""
        obs, _ = self.env.reset(seed=seed)
        return torch.as_tensor(self._flat(obs)).to(self.device)

    def step(self, actions: torch.Tensor) -> Step:
        """actions (N, act_dim) on the device -> Step on the device."""
        a = actions.detach().cpu().numpy().reshape((self.num_envs, *self._act_shape)).astype(self._act_dtype)
        obs, reward, terminated, truncated, info = self.env.step(np.clip(a, self._act_low, self._act_high, out=a))
        o = self.obs_dim
        if self._uploaded is not None:
            self._uploaded.synchronize()
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
        elif self.device.type == "cuda":
            self._uploaded = torch.cuda.Event()
            self._uploaded.record()
        # obs contiguous, as reset's: the acting step compiled on CUDA (static shapes) would compile again for a
        # strided view
        return Step(t[:, :o], t[:, o], t[:, o + 1], t[:, o + 2], t[:, o + 3:].contiguous())

    def close(self) -> None:
        self.env.close()

    def _flat(self, x: Any) -> np.ndarray:
        return np.asarray(x, dtype=np.float32).reshape(self.num_envs, -1)


class TorchVecEnv:
    """The torch-native Pendulum-v1 (`TorchPendulumVectorEnv`) behind `VecEnv`'s interface.

    Everything stays on the env's device: actions go in as they are, and `step` only renames the env's outputs
    (flags cast to float32 0/1, s' = ``info["final_obs"]``), so no tensor ever crosses to the host.
    """

    backend = "torch"

    def __init__(self, env: TorchPendulumVectorEnv) -> None:
        if env.metadata.get("autoreset_mode") != AutoresetMode.SAME_STEP:
            raise ValueError("fastddpg needs a vector env with autoreset_mode=AutoresetMode.SAME_STEP")
        self.env = env
        self.device = env.device
        self.num_envs = env.num_envs
        self.obs_dim, self.act_dim, self.action_low, self.action_high = space_dims(
            env.single_observation_space, env.single_action_space, self.device)

    def reset(self, seed: int | list[int] | None = None) -> torch.Tensor:
        """Reset all envs; ``seed`` seeds the env's one device generator (which also draws every later autoreset
        state; given one seed per env, the first seeds it). Returns obs (N, obs_dim) on the device."""
        obs, _ = self.env.reset(seed=seed[0] if isinstance(seed, list) else seed)
        return obs

    def step(self, actions: torch.Tensor) -> Step:
        """actions (N, act_dim) on the device -> Step on the device (SAME_STEP autoreset)."""
        obs, reward, terminated, truncated, info = self.env.step(actions)
        # final_obs holds the pre-reset observation for every env (equal to obs where no episode ended)
        return Step(info["final_obs"], reward, terminated.float(), truncated.float(), obs)

    def close(self) -> None:
        self.env.close()


def resolve_env_backend(backend: str, env_id: str, device: torch.device, mode: str = "sync",
                        num_envs: int = 1) -> str:
    """``auto`` -> ``torch`` for an env with a torch implementation on a CUDA device; ``numpy`` for one with a numpy
    implementation on the CPU in ``sync`` mode (``async`` asks for Gymnasium's subprocesses) with 2 or more envs
    (for one, Gymnasium's own env is the quicker: 157-161 against 190-193 us a step inside a training loop, where
    with 2 the two were even and with 4 the numpy one saved 34 us a step); else ``gymnasium``. ``torch`` or
    ``numpy`` for an env without that implementation is a ConfigError."""
    if backend not in ENV_BACKENDS:
        raise ConfigError(f"--env-backend={backend!r} is invalid: choose one of {', '.join(ENV_BACKENDS)}.")
    if backend == "auto":
        kind = torch.device(device).type
        if env_id in TORCH_ENV_IDS and kind == "cuda" and registration_differs(env_id) is None:
            return "torch"
        numpy_ok = kind == "cpu" and mode == "sync" and num_envs >= 2 and numpy_unsupported(env_id) is None
        return "numpy" if numpy_ok else "gymnasium"
    if backend == "torch" and env_id not in TORCH_ENV_IDS:
        raise ConfigError(f"--env-backend='torch' is invalid: the torch backend implements "
                          f"{', '.join(TORCH_ENV_IDS)} only, not {env_id}; use --env-backend gymnasium.")
    if backend == "torch" and (why := registration_differs(env_id)) is not None:
        raise ConfigError(f"--env-backend='torch' is invalid: {why}; use --env-backend gymnasium.")
    if backend == "numpy" and (why := numpy_unsupported(env_id)) is not None:
        raise ConfigError(f"--env-backend='numpy' is invalid: {why}; use --env-backend gymnasium.")
    return backend


def make_env(env_id: str, num_envs: int, device: torch.device, mode: str = "sync",
             backend: str = "gymnasium", repeats: int = 1) -> VecEnv | TorchVecEnv:
    """The env of a run: ``num_envs`` copies of ``env_id`` behind the device-tensor interface.

    ``backend`` is ``gymnasium`` (a `VecEnv`; ``mode`` picks sync or async), ``numpy`` (a `VecEnv` over
    `NumpyPendulumVectorEnv`; ``mode`` is ignored), ``torch`` (a `TorchVecEnv` on ``device``; ``mode`` is ignored)
    or ``auto`` (see `resolve_env_backend`). ``repeats=G`` (torch backend only;
    a Gymnasium env takes one seed per env instead): the envs are G equal blocks that draw the same reset states.
    """
    resolved = resolve_env_backend(backend, env_id, device, mode, num_envs)
    if resolved == "torch":  # g and the time limit as registered, as the numpy Pendulum follows them
        spec = gym.spec(env_id)
        return TorchVecEnv(TorchPendulumVectorEnv(num_envs, device, max_episode_steps=spec.max_episode_steps or 200,
                                                  g=float(spec.kwargs.get("g", DEFAULT_G)), repeats=repeats))
    if resolved == "numpy":
        return VecEnv(NumpyPendulumVectorEnv(num_envs), device, env_id, backend="numpy")
    env = make_gym_vector_env(env_id, num_envs, mode)
    try:
        return VecEnv(env, device, env_id)
    except Exception:
        env.close()
        raise
