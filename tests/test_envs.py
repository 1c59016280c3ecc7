"""The env backends: the torch-native Pendulum behind the trainer's device-tensor interface, the numpy Pendulum
against Gymnasium's, backend choice, and the trainer driven through the torch backend (episode boundaries, no host
transfers per step)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.envs.classic_control.pendulum import PendulumEnv

from fastddpg import Config, Trainer, train
from fastddpg.cli import main
from fastddpg.core.config import ConfigError
from fastddpg.envs import numpy_pendulum
from fastddpg.envs.numpy_pendulum import NUMPY_2, NumpyPendulumVectorEnv
from fastddpg.envs.torch_pendulum import angle_normalize, pendulum_obs, pendulum_step
from fastddpg.envs.vector import Step, TorchVecEnv, VecEnv, make_env, make_gym_vector_env, resolve_env_backend

CPU = torch.device("cpu")
LIMIT = 200  # Pendulum-v1's time limit


def torch_cfg(**kw) -> Config:
    base = dict(env="Pendulum-v1", env_backend="torch", num_envs=3, total_steps=300, hidden_sizes=(8,),
                batch_size=8, updates_per_step=0.25, replay_size=10_000, start_steps=30, update_after=30,
                log_every=10**6, device="cpu", probe_n=4)
    return Config(**{**base, **kw})


def expected_final_obs(state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """Pendulum's observation after one step from ``state`` (N, 2) under ``action`` (N, 1), before any reset."""
    th, thdot, _ = pendulum_step(state[:, 0], state[:, 1], action.reshape(-1))
    return pendulum_obs(angle_normalize(th), thdot)


# --- the adapter ---------------------------------------------------------------------------------------------

def test_torch_adapter_shapes_dtypes_devices():
    env = make_env("Pendulum-v1", 5, CPU, backend="torch")
    assert isinstance(env, TorchVecEnv) and env.backend == "torch"
    assert (env.num_envs, env.obs_dim, env.act_dim, env.device) == (5, 3, 1, CPU)
    assert env.action_low.tolist() == [-2.0] and env.action_high.tolist() == [2.0]
    assert env.action_low.device == CPU and env.action_low.dtype == torch.float32
    obs = env.reset(seed=3)
    assert obs.shape == (5, 3) and obs.dtype == torch.float32 and obs.device == CPU
    s = env.step(torch.zeros(5, 1))
    assert isinstance(s, Step)
    assert s.next_obs.shape == (5, 3) and s.obs.shape == (5, 3)
    for flag in (s.reward, s.terminated, s.truncated):
        assert flag.shape == (5,) and flag.dtype == torch.float32 and flag.device == CPU
    assert all(t.dtype == torch.float32 for t in (s.next_obs, s.obs))
    assert s.terminated.sum() == 0 and s.truncated.sum() == 0
    torch.testing.assert_close(s.next_obs, s.obs, rtol=0, atol=0)  # nothing ended: s' is the next obs
    env.close()
    assert env.env.closed


def test_torch_adapter_seeding_reproduces():
    a, b, c = (make_env("Pendulum-v1", 4, CPU, backend="torch") for _ in range(3))
    torch.testing.assert_close(a.reset(seed=1), b.reset(seed=1), rtol=0, atol=0)
    assert not torch.equal(a.env.state, (c.reset(seed=2), c.env.state)[1])
    for _ in range(LIMIT):  # the autoreset states come from the same seeded generator
        sa, sb = a.step(torch.ones(4, 1)), b.step(torch.ones(4, 1))
    assert sa.truncated.tolist() == [1.0] * 4
    torch.testing.assert_close(sa.obs, sb.obs, rtol=0, atol=0)


def test_truncation_next_obs_is_final_and_obs_is_reset():
    env = make_env("Pendulum-v1", 6, CPU, backend="torch")
    env.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    for t in range(1, LIMIT + 1):
        before = env.env.state
        action = 4 * torch.rand(6, 1, generator=gen) - 2
        s = env.step(action)
        after = env.env.state
        final = expected_final_obs(before, action)
        torch.testing.assert_close(s.next_obs, final, rtol=0, atol=1e-6)
        torch.testing.assert_close(s.obs, pendulum_obs(after[:, 0], after[:, 1]), rtol=0, atol=0)
        assert s.terminated.sum() == 0  # Pendulum never terminates
        if t < LIMIT:
            assert s.truncated.sum() == 0
            torch.testing.assert_close(s.obs, s.next_obs, rtol=0, atol=0)
    # the 200th step truncates every env: s' is the pre-reset obs, obs is the new episode's first obs
    assert s.truncated.tolist() == [1.0] * 6
    assert (s.next_obs - s.obs).abs().amax(dim=1).min() > 0
    assert (after[:, 0].abs() <= torch.pi).all() and (after[:, 1].abs() <= 1.0).all()  # the reset box
    assert env.env._elapsed.tolist() == [0] * 6


# --- choosing the backend ------------------------------------------------------------------------------------

def test_backend_resolution():
    cuda = torch.device("cuda")
    assert resolve_env_backend("auto", "Pendulum-v1", CPU, "sync", 4) == "numpy"
    assert resolve_env_backend("auto", "Pendulum-v1", CPU, "sync", 1) == "gymnasium"  # one env: Gymnasium's is quicker
    assert resolve_env_backend("auto", "Pendulum-v1", CPU, "async", 4) == "gymnasium"  # subprocesses, as asked
    assert resolve_env_backend("auto", "MountainCarContinuous-v0", CPU, "sync", 4) == "gymnasium"
    assert resolve_env_backend("auto", "Pendulum-v1", cuda) == "torch"
    assert resolve_env_backend("auto", "MountainCarContinuous-v0", cuda) == "gymnasium"
    assert resolve_env_backend("gymnasium", "Pendulum-v1", cuda) == "gymnasium"
    assert resolve_env_backend("torch", "Pendulum-v1", CPU) == "torch"
    assert resolve_env_backend("numpy", "Pendulum-v1", cuda) == "numpy"
    for backend in ("torch", "numpy"):
        with pytest.raises(ConfigError, match=f"--env-backend='{backend}' is invalid: .*MountainCarContinuous-v0; "
                                              "use --env-backend gymnasium"):
            resolve_env_backend(backend, "MountainCarContinuous-v0", CPU)
        with pytest.raises(ConfigError, match="--env-backend gymnasium"):
            make_env("MountainCarContinuous-v0", 2, CPU, backend=backend)
        with pytest.raises(ConfigError, match="--env-backend gymnasium"):
            Config(env="MountainCarContinuous-v0", env_backend=backend)


def test_make_env_default_is_gymnasium_and_auto_on_cpu_is_the_numpy_pendulum():
    env = make_env("Pendulum-v1", 2, CPU)
    assert type(env) is VecEnv and env.backend == "gymnasium" and not isinstance(env.env, NumpyPendulumVectorEnv)
    env.close()
    env = make_env("Pendulum-v1", 2, CPU, "sync", "auto")
    assert type(env) is VecEnv and env.backend == "numpy" and isinstance(env.env, NumpyPendulumVectorEnv)
    env.close()
    env = make_env("Pendulum-v1", 1, CPU, "sync", "auto")
    assert env.backend == "gymnasium"
    env.close()
    trainer = Trainer(Config(num_envs=2, env_backend="auto", device="cpu", hidden_sizes=(8,)))
    assert type(trainer.env) is VecEnv and trainer.env.backend == "numpy"
    trainer.env.close()
    assert Config().env_backend == "auto"


@pytest.mark.skipif(not NUMPY_2, reason="the numpy Pendulum needs numpy >= 2 (auto does not pick it on numpy 1)")
@pytest.mark.parametrize("num_envs, seed", [(1, 0), (4, 3), (16, 11)])
def test_the_numpy_pendulum_computes_gymnasiums_numbers(num_envs, seed):
    """`NumpyPendulumVectorEnv` against ``gym.make_vec``'s sync Pendulum-v1 through the same actions (out of bounds
    too, so the clip acts) for 1,000 steps, five episode ends: observations, rewards, flags and final observations
    bit for bit and dtype for dtype (both computed here, on this machine). The rewards are where an array's ``** 2``
    would differ from Gymnasium's scalar one in the last bit (`scalar_square`)."""
    ref = make_gym_vector_env("Pendulum-v1", num_envs, "sync")
    mine = NumpyPendulumVectorEnv(num_envs)
    want, got = ref.reset(seed=seed)[0], mine.reset(seed=seed)[0]
    assert want.dtype == got.dtype and np.array_equal(want, got)
    rng = np.random.default_rng(seed)
    ends = 0
    for t in range(1000):
        a = rng.uniform(-3.0, 3.0, (num_envs, 1)).astype(np.float32)
        *want, want_info = ref.step(a)
        *got, got_info = mine.step(a)
        for name, w, g in zip(("obs", "reward", "terminated", "truncated"), want, got, strict=True):
            assert w.dtype == g.dtype and np.array_equal(w, g), f"{name} at step {t + 1}"
        mask = want_info.get("_final_obs")
        if mask is None:
            assert "_final_obs" not in got_info
            continue
        ends += 1
        assert np.array_equal(mask, got_info["_final_obs"]) and set(got_info) == set(want_info)
        assert got_info["final_info"] == want_info["final_info"]
        assert np.array_equal(want_info["_final_info"], got_info["_final_info"])
        for w, g in zip(want_info["final_obs"][mask], got_info["final_obs"][mask], strict=True):
            assert w.dtype == g.dtype and np.array_equal(w, g), f"final obs at step {t + 1}"
    assert ends == 5
    unseeded = NumpyPendulumVectorEnv(2)
    with pytest.raises(gym.error.ResetNeeded):
        unseeded.step(np.zeros((2, 1), np.float32))
    assert unseeded.reset()[0].shape == (2, 3)  # no seed: each env draws from a fresh generator, as Gymnasium's
    with pytest.raises(ValueError, match="options"):
        unseeded.reset(options={"x_init": 1.0})


@pytest.fixture
def pendulum_registration():
    """Pendulum-v1 registered for one test as the test says, Gymnasium's own registration put back after."""
    saved = gym.registry["Pendulum-v1"]

    def register(**kwargs) -> None:
        del gym.registry["Pendulum-v1"]
        gym.register("Pendulum-v1", **{"entry_point": numpy_pendulum.ENTRY_POINT, **kwargs})

    yield register
    gym.registry["Pendulum-v1"] = saved


@pytest.mark.skipif(not NUMPY_2, reason="the numpy Pendulum needs numpy >= 2")
def test_the_numpy_pendulum_follows_pendulums_registration(pendulum_registration):
    """Registered with another g and time limit, Pendulum-v1 is still stepped as ``gym.make_vec`` steps it: the
    episodes end at step 50, the dynamics use g = 9.81."""
    pendulum_registration(max_episode_steps=50, kwargs={"g": 9.81})
    ref, mine = make_gym_vector_env("Pendulum-v1", 3, "sync"), NumpyPendulumVectorEnv(3)
    assert np.array_equal(ref.reset(seed=2)[0], mine.reset(seed=2)[0])
    a = np.full((3, 1), 0.5, np.float32)
    for t in range(120):
        want, got = ref.step(a), mine.step(a)
        for w, g in zip(want[:4], got[:4], strict=True):
            assert np.array_equal(w, g), f"step {t + 1}"
        assert bool(got[3].any()) == ((t + 1) % 50 == 0)


def test_the_torch_pendulum_follows_pendulums_registration_too(pendulum_registration):
    """Registered with another g and time limit, the torch backend takes both from the registration, as the numpy
    one does (it used to build g = 10 and 200 steps whatever Pendulum-v1 said); another entry point is refused."""
    pendulum_registration(max_episode_steps=50, kwargs={"g": 9.81})
    env = make_env("Pendulum-v1", 2, CPU, "sync", "torch")
    assert env.env.g == 9.81 and env.env.max_episode_steps == 50
    pendulum_registration(entry_point=lambda **kw: PendulumEnv(**kw), max_episode_steps=200)
    with pytest.raises(ConfigError, match="registered with another entry point"):
        make_env("Pendulum-v1", 2, CPU, "sync", "torch")


def test_auto_keeps_gymnasium_where_the_numpy_pendulum_cannot_stand_in(pendulum_registration, monkeypatch):
    """Another entry point registered as Pendulum-v1, or numpy 1: auto steps Gymnasium's env, and asking for the
    numpy backend is one clear error."""
    pendulum_registration(entry_point=lambda **kw: PendulumEnv(**kw), max_episode_steps=200)  # a user's own
    assert resolve_env_backend("auto", "Pendulum-v1", CPU, "sync", 4) == "gymnasium"
    assert make_env("Pendulum-v1", 4, CPU, "sync", "auto").backend == "gymnasium"
    with pytest.raises(ConfigError, match="registered with another entry point, wrappers or arguments"):
        resolve_env_backend("numpy", "Pendulum-v1", CPU, "sync", 4)
    monkeypatch.setattr(numpy_pendulum, "NUMPY_2", False)
    with pytest.raises(ConfigError, match="needs numpy >= 2"):
        make_env("Pendulum-v1", 4, CPU, "sync", "numpy")


def test_cli_torch_backend_for_another_env_is_one_line_error(capsys):
    assert main(["run", "--total-steps", "10", "--env-backend", "torch", "--env", "MountainCarContinuous-v0"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("fastddpg: error: --env-backend='torch' is invalid")
    assert "MountainCarContinuous-v0" in lines[0] and "use --env-backend gymnasium" in lines[0]


# --- the trainer on the torch backend ------------------------------------------------------------------------

def test_trainer_on_torch_backend_respects_episode_boundaries():
    """Pendulum only truncates: every stored d is 0, and s' of a truncating step is the pre-reset obs."""
    n, vsteps = 3, 2 * LIMIT + 50
    trainer = Trainer(torch_cfg(num_envs=n, total_steps=n * vsteps, log_every=n * 100))
    assert isinstance(trainer.env, TorchVecEnv)
    penv = trainer.env.env
    states = [penv.state]
    for _ in range(vsteps):
        trainer.step()
        states.append(penv.state)
    assert trainer.num_updates > 0
    td = trainer.buffer.storage[: len(trainer.buffer)]
    assert len(td) == n * vsteps
    obs, act, nxt = (td[k].reshape(vsteps, n, -1) for k in ("obs", "action", "next_obs"))
    assert (td["terminated"] == 0).all()
    for v in range(vsteps):
        before, after = states[v], states[v + 1]
        torch.testing.assert_close(obs[v], pendulum_obs(before[:, 0], before[:, 1]), rtol=0, atol=0)
        # s' is the successor of s under the stored action, also on the truncating step (never the reset obs)
        torch.testing.assert_close(nxt[v], expected_final_obs(before, act[v]), rtol=0, atol=1e-6)
        if (v + 1) % LIMIT == 0:  # truncation: the next stored obs is the new episode's reset obs
            assert (nxt[v] - pendulum_obs(after[:, 0], after[:, 1])).abs().amax(dim=1).min() > 0
            assert (after[:, 1].abs() <= 1.0).all()
        elif v + 1 < vsteps:
            torch.testing.assert_close(obs[v + 1], nxt[v], rtol=0, atol=0)
    trainer.flush()
    ep = trainer.result().episodes
    assert len(ep) == 2 * n and set(ep["length"]) == {LIMIT}
    assert sorted(ep["global_step"].unique().tolist()) == [n * LIMIT, 2 * n * LIMIT]
    assert (ep["return"] < 0).all()


HOST_READS = ("item", "cpu", "tolist", "numpy", "__float__", "__int__", "__bool__", "__index__")


def count_host_reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Wrap the torch.Tensor methods that move data to the host (or read it there); returns the live counts."""
    calls = dict.fromkeys(HOST_READS, 0)
    for name in HOST_READS:
        orig = getattr(torch.Tensor, name)

        def wrapped(self, *a, _orig=orig, _name=name, **kw):
            calls[_name] += 1
            return _orig(self, *a, **kw)

        monkeypatch.setattr(torch.Tensor, name, wrapped)
    return calls


def steps_host_reads(cfg: Config, monkeypatch: pytest.MonkeyPatch, warmup: int = 20, steps: int = 300) -> int:
    """Host reads during ``steps`` Trainer.step() calls after ``warmup`` (updates and actor already running)."""
    trainer = Trainer(cfg)
    for _ in range(warmup):
        trainer.step()
    assert trainer.num_updates > 0 and trainer.global_step >= cfg.start_steps
    calls = count_host_reads(monkeypatch)
    for _ in range(steps):
        trainer.step()
    monkeypatch.undo()
    assert trainer.device_log.pos == warmup + steps  # no flush ran in between
    trainer.env.close()
    return sum(calls.values())


def test_torch_backend_makes_no_host_transfer_per_step(monkeypatch):
    # total_steps only sizes the run's plan (small: no compile on CPU); the loop below calls step() itself
    cfg = torch_cfg(num_envs=4, total_steps=2_000, start_steps=40, update_after=40)
    assert steps_host_reads(cfg, monkeypatch) == 0
    # the same count on the Gymnasium backend sees the action copy of every step, so the wrappers do count
    gym_cfg = torch_cfg(num_envs=4, total_steps=2_000, start_steps=40, update_after=40, env_backend="gymnasium")
    assert steps_host_reads(gym_cfg, monkeypatch, steps=50) >= 50


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_torch_backend_never_syncs_on_cuda():
    trainer = Trainer(torch_cfg(num_envs=64, total_steps=10**7, device="cuda", start_steps=640, update_after=640))
    assert isinstance(trainer.env, TorchVecEnv) and trainer.env.device.type == "cuda"
    for _ in range(40):  # past start_steps and the first (possibly compiled) update
        trainer.step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(200):
            trainer.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert trainer.num_updates > 0


@pytest.mark.slow
def test_learns_pendulum_smoke_torch_backend():
    """The core smoke test (notebook defaults, 4 envs, 10k env steps, last-10 mean > -400) on the torch env."""
    result = train(Config(num_envs=4, total_steps=10_000, seed=1, device="cpu", env_backend="torch"))
    print(result.summary)  # shown with -s / -rP: the return reached
    assert result.summary["last10_mean_return"] > -400, result.summary


def test_async_mode_matches_sync():
    """The async workers (SIGINT-deaf, so the trainer decides how to stop) give sync's transitions."""
    import torch

    from fastddpg.envs.vector import make_env

    out = {}
    for mode in ("sync", "async"):
        env = make_env("Pendulum-v1", 2, torch.device("cpu"), mode)
        env.reset(seed=3)
        steps = [env.step(torch.full((2, 1), 0.5)) for _ in range(205)]
        env.close()
        out[mode] = torch.stack([torch.cat([s.next_obs, s.obs], -1) for s in steps])
    torch.testing.assert_close(out["sync"], out["async"])


class _CheckedAsymmetricEnv(gym.Env):
    """Refuses any action outside its Box [-1.3, 0.7] x [0.1, 0.3], as an env that checks its space does."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Box(np.array([-1.3, 0.1], np.float32), np.array([0.7, 0.3], np.float32))

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}

    def step(self, action):
        assert self.action_space.contains(action), action
        return np.zeros(3, np.float32), 0.0, False, False, {}


def test_actions_at_the_bounds_stay_inside_asymmetric_bounds():
    """scale * (+-1) + bias, a saturated tanh policy's action, rounds one float step outside bounds such as
    [-1.3, 0.7] in float32; VecEnv.step clips to the space, so such an env never sees it."""
    gym.register("fastddpg-test/CheckedAsymmetric-v0", entry_point=_CheckedAsymmetricEnv, max_episode_steps=5)
    try:
        env = make_env("fastddpg-test/CheckedAsymmetric-v0", 2, torch.device("cpu"), "sync", "gymnasium")
        env.reset(seed=0)
        scale, bias = (env.action_high - env.action_low) / 2, (env.action_high + env.action_low) / 2
        saturated = torch.stack([bias + scale, bias - scale])
        assert (saturated > env.action_high).any() or (saturated < env.action_low).any()  # the rounding is there
        env.step(saturated)
        env.close()
    finally:
        gym.registry.pop("fastddpg-test/CheckedAsymmetric-v0")


def test_a_replay_ratio_of_one_over_n_is_exact_for_any_n():
    from fractions import Fraction

    assert Config(updates_per_step=1 / 16384).replay_ratio == Fraction(1, 16384)
    assert Config(updates_per_step=7e-5).replay_ratio == Fraction(7, 100_000)
    assert Config(updates_per_step=1 / 3).replay_ratio == Fraction(1, 3)
    cfg = Config(num_envs=16384, updates_per_step=1 / 16384, total_steps=16384 * 10, batch_size=32, start_steps=0,
                 update_after=0, hidden_sizes=(8,), device="cpu", compile="off", threads=1, quiet=True)
    assert Trainer(cfg).train().summary["updates"] == 10  # one per vector step (1/10,000 made it 16)


@pytest.mark.parametrize("backend", ["gymnasium", "numpy"])
def test_step_observations_have_resets_strides(backend):
    """The acting step is compiled with static shapes on CUDA: an obs laid out differently after a step than after
    a reset would compile it a second time."""
    env = make_env("Pendulum-v1", 3, torch.device("cpu"), "sync", backend)
    first = env.reset(seed=0)
    step = env.step(torch.zeros(3, 1))
    assert step.obs.is_contiguous() and step.obs.stride() == first.stride()
    env.close()


def test_a_step_waits_for_the_last_upload_before_rewriting_the_pinned_pack():
    """On CUDA the pack array is pinned and uploaded asynchronously; the next step rewrites it only after the
    upload's event (CPU-runnable: the event is faked)."""
    env = make_env("Pendulum-v1", 2, torch.device("cpu"), "sync", "gymnasium")
    env.reset(seed=0)
    seen = []

    class Upload:
        def synchronize(self):
            seen.append(env._pack.copy())  # the pack as the upload left it: not yet rewritten

    env._uploaded = Upload()
    before = env._pack.copy()
    env.step(torch.zeros(2, 1))
    assert len(seen) == 1 and np.array_equal(seen[0], before) and not np.array_equal(env._pack, before)
    env.close()
