"""Tests for fastddpg.envs.torch_pendulum: equivalence with gymnasium's Pendulum-v1, autoreset, seeding."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from fastddpg.envs.torch_pendulum import (
    TorchPendulumVectorEnv,
    pendulum_autoreset_step,
    pendulum_obs,
    pendulum_step,
)

PI_F32 = float(torch.tensor(math.pi, dtype=torch.float32))


def _gym_vec(num_envs: int) -> gym.vector.VectorEnv:
    return gym.make_vec(
        "Pendulum-v1",
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
    )


def _sync_gym_state(genv: gym.vector.SyncVectorEnv, state: torch.Tensor) -> None:
    """Copy our float32 (theta, thetadot) into gymnasium's float64 states (exactly representable)."""
    st = state.numpy().astype(np.float64)
    for i, e in enumerate(genv.envs):
        e.unwrapped.state = st[i].copy()


def test_spaces_and_metadata() -> None:
    env = TorchPendulumVectorEnv(5)
    ref = gym.make("Pendulum-v1")
    assert env.num_envs == 5
    assert env.single_observation_space == ref.observation_space
    assert env.single_action_space == ref.action_space
    assert env.observation_space.shape == (5, 3)
    assert env.action_space.shape == (5, 1)
    assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert env.device == torch.device("cpu")
    obs, info = env.reset(seed=0)
    assert obs.shape == (5, 3) and obs.dtype == torch.float32 and info == {}
    obs, rew, term, trunc, info = env.step(torch.zeros(5, 1))
    assert obs.shape == (5, 3) and obs.dtype == torch.float32
    assert rew.shape == (5,) and rew.dtype == torch.float32
    assert term.dtype == torch.bool and trunc.dtype == torch.bool
    assert info["final_obs"].shape == (5, 3) and info["_final_obs"].dtype == torch.bool
    env.close()


def test_equivalence_with_gymnasium_500_steps() -> None:
    # Gymnasium integrates in float64 (only the obs is cast to float32), we in float32. Pendulum is chaotic,
    # so free-running trajectories drift apart (~1e-5 after 20 steps, O(1) after ~150). To check that each
    # step's math agrees, gymnasium's state is re-synced to ours before every step; the free-running agreement
    # over a short horizon is checked separately below.
    n, steps = 64, 500
    env = TorchPendulumVectorEnv(n)
    genv = _gym_vec(n)
    genv.reset(seed=1)
    rng = np.random.default_rng(0)
    init = np.stack([rng.uniform(-np.pi, np.pi, n), rng.uniform(-8, 8, n)], axis=1)
    env.reset(seed=1, options={"state": torch.as_tensor(init, dtype=torch.float32)})
    ep_len = np.zeros(n, dtype=np.int64)
    lengths_ours: list[np.ndarray] = []
    trunc_steps: list[int] = []
    for t in range(1, steps + 1):
        _sync_gym_state(genv, env.state)
        # Actions beyond the bounds exercise the clipping.
        actions = rng.uniform(-3, 3, (n, 1)).astype(np.float32)
        obs, rew, term, trunc, info = env.step(torch.from_numpy(actions))
        gobs, grew, gterm, gtrunc, ginfo = genv.step(actions)
        ep_len += 1

        np.testing.assert_array_equal(term.numpy(), gterm)
        np.testing.assert_array_equal(trunc.numpy(), gtrunc)
        np.testing.assert_allclose(rew.numpy(), grew, rtol=0, atol=1e-5)
        done = term.numpy() | trunc.numpy()
        np.testing.assert_array_equal(info["_final_obs"].numpy(), done)
        if done.any():
            np.testing.assert_array_equal(ginfo["_final_obs"], done)
            gfinal = np.stack([ginfo["final_obs"][i] for i in np.flatnonzero(done)])
            np.testing.assert_allclose(info["final_obs"].numpy()[done], gfinal, rtol=0, atol=1e-5)
            trunc_steps.append(t)
            lengths_ours.append(ep_len[done].copy())
            ep_len[done] = 0
        # Post-reset states come from different RNGs; only the not-ended envs are comparable here, the ended
        # ones continue from our reset states after the next re-sync.
        np.testing.assert_allclose(obs.numpy()[~done], gobs[~done], rtol=0, atol=1e-5)
        np.testing.assert_allclose(info["final_obs"].numpy()[~done], obs.numpy()[~done], rtol=0, atol=0)
    assert trunc_steps == [200, 400]
    assert all((lens == 200).all() and lens.size == n for lens in lengths_ours)
    genv.close()


def test_free_running_matches_gymnasium_short_horizon() -> None:
    # No re-sync: over a short horizon float32 vs float64 drift stays below 1e-5.
    n, steps = 64, 10
    env = TorchPendulumVectorEnv(n)
    genv = _gym_vec(n)
    genv.reset(seed=2)
    env.reset(seed=2)
    _sync_gym_state(genv, env.state)
    rng = np.random.default_rng(1)
    for _ in range(steps):
        actions = rng.uniform(-2, 2, (n, 1)).astype(np.float32)
        obs, rew, *_ = env.step(torch.from_numpy(actions))
        gobs, grew, *_ = genv.step(actions)
        np.testing.assert_allclose(obs.numpy(), gobs, rtol=0, atol=1e-5)
        np.testing.assert_allclose(rew.numpy(), grew, rtol=0, atol=1e-5)
    genv.close()


def test_final_obs_on_truncation_are_pre_reset() -> None:
    n = 256
    env = TorchPendulumVectorEnv(n, max_episode_steps=200)
    env.reset(seed=3)
    gen = torch.Generator().manual_seed(0)
    for t in range(1, 201):
        actions = torch.rand(n, 1, generator=gen) * 4 - 2
        before = env.state
        obs, _, term, trunc, info = env.step(actions)
        assert not term.any()
        if t < 200:
            assert not trunc.any() and not info["_final_obs"].any()
            torch.testing.assert_close(info["final_obs"], obs, rtol=0, atol=0)
    assert trunc.all() and info["_final_obs"].all()
    new_th, new_thdot, _ = pendulum_step(before[:, 0], before[:, 1], actions[:, 0])
    torch.testing.assert_close(info["final_obs"], pendulum_obs(new_th, new_thdot), rtol=0, atol=1e-6)
    # The returned obs is the reset observation of the next episode, not the final one.
    assert (info["final_obs"] - obs).abs().amax(dim=1).min() > 0
    after = env.state
    torch.testing.assert_close(obs, pendulum_obs(after[:, 0], after[:, 1]), rtol=0, atol=0)
    assert (after[:, 1].abs() <= 1.0).all()
    # Step counters restarted: the next truncation is 200 steps later.
    for _ in range(199):
        *_, trunc, _ = env.step(torch.zeros(n, 1))
        assert not trunc.any()
    *_, trunc, _ = env.step(torch.zeros(n, 1))
    assert trunc.all()


def test_reset_distribution_bounds() -> None:
    env = TorchPendulumVectorEnv(4096, max_episode_steps=1)
    states = []
    for seed in range(10):
        env.reset(seed=seed)
        states.append(env.state)
    # With max_episode_steps=1 every step autoresets every env: this samples the autoreset path too.
    for _ in range(10):
        env.step(torch.zeros(4096))
        states.append(env.state)
    s = torch.cat(states)
    th, thdot = s[:, 0], s[:, 1]
    # float32(pi) is the closest float32 to pi, and lies just above it.
    assert (th.abs() <= PI_F32).all() and (thdot.abs() <= 1.0).all()
    assert th.min() < -3.1 and th.max() > 3.1 and thdot.min() < -0.99 and thdot.max() > 0.99
    assert abs(th.mean().item()) < 0.05 and abs(thdot.mean().item()) < 0.02


def _rollout(seed: int, steps: int = 250, n: int = 32) -> torch.Tensor:
    env = TorchPendulumVectorEnv(n)
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for t in range(steps):
        actions = torch.full((n, 1), math.sin(t))
        obs, *_ = env.step(actions)
        out.append(obs)
    return torch.stack(out)


def test_seeding_reproduces() -> None:
    a, b, c = _rollout(7), _rollout(7), _rollout(8)
    # 250 steps cross the autoreset at step 200, so the autoreset draws are reproduced too.
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[-1], c[-1])
    env = TorchPendulumVectorEnv(8)
    o1, _ = env.reset(seed=5)
    env.step(torch.zeros(8))
    o2, _ = env.reset(seed=5)
    torch.testing.assert_close(o1, o2, rtol=0, atol=0)


def test_reset_state_option_and_action_shapes() -> None:
    state = torch.tensor([[0.5, -2.0], [-3.0, 7.5], [math.pi, 0.0]])
    env = TorchPendulumVectorEnv(3)
    obs, _ = env.reset(options={"state": state})
    torch.testing.assert_close(env.state, state, rtol=0, atol=0)
    torch.testing.assert_close(obs, pendulum_obs(state[:, 0], state[:, 1]), rtol=0, atol=0)
    with pytest.raises(ValueError):
        env.reset(options={"state": torch.zeros(2, 2)})

    outs = []
    for actions in (torch.tensor([[1.0], [-0.5], [2.0]]), torch.tensor([1.0, -0.5, 5.0])):
        env.reset(options={"state": state})
        outs.append(env.step(actions)[:2])
    # (N, 1) and (N,) agree; 5.0 is clipped to 2.0.
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_step_before_reset_raises() -> None:
    with pytest.raises(RuntimeError):
        TorchPendulumVectorEnv(2).step(torch.zeros(2, 1))


def _compile_check(backend: str) -> None:
    n = 128
    gen = torch.Generator().manual_seed(0)
    args = (
        torch.rand(n, generator=gen) * 20 - 10,
        torch.rand(n, generator=gen) * 16 - 8,
        # Half the envs are on their last step, so both branches of the autoreset are exercised.
        torch.where(torch.arange(n) % 2 == 0, 199, torch.randint(0, 199, (n,), generator=gen)).int(),
        torch.rand(n, generator=gen) * 6 - 3,
        torch.rand(n, generator=gen) * 2 * math.pi - math.pi,
        torch.rand(n, generator=gen) * 2 - 1,
    )
    torch._dynamo.reset()
    try:
        compiled = torch.compile(pendulum_autoreset_step, fullgraph=True, backend=backend)
        got = compiled(*args, 200, 10.0)
    except Exception as e:  # pragma: no cover - depends on the toolchain
        if isinstance(e, torch._dynamo.exc.Unsupported):
            raise  # a graph break is a real failure, not a missing toolchain
        pytest.skip(f"torch.compile(backend={backend!r}) unavailable here: {type(e).__name__}: {e}")
    want = pendulum_autoreset_step(*args, 200, 10.0)
    for g, w in zip(got, want, strict=True):
        # Inductor may fuse sin/cos differently: allow float32 rounding.
        torch.testing.assert_close(g, w, rtol=0, atol=1e-6)
    assert bool(got[6].any()) and not bool(got[6].all())


def test_pure_step_compiles_fullgraph() -> None:
    # aot_eager runs Dynamo's full-graph capture (what fullgraph=True checks) without the C++ codegen, so it
    # takes well under a second; inductor on this CPU takes ~20 s and is the slow variant below.
    _compile_check("aot_eager")


@pytest.mark.slow
def test_pure_step_compiles_fullgraph_inductor() -> None:
    _compile_check("inductor")


def test_no_host_sync_in_step(monkeypatch: pytest.MonkeyPatch) -> None:
    n = 64
    env = TorchPendulumVectorEnv(n)
    env.reset(seed=0)
    actions = torch.rand(300, n, 1) * 4 - 2
    calls: dict[str, int] = {}

    def counting(name: str):
        orig = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):
            calls[name] = calls.get(name, 0) + 1
            return orig(self, *args, **kwargs)

        return wrapper

    names = ["item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__"]
    for name in names:
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    for t in range(300):
        env.step(actions[t])
    monkeypatch.undo()
    assert calls == {}, f"host syncs in step: {calls}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    n = 256
    state = torch.stack([torch.rand(n) * 2 * math.pi - math.pi, torch.rand(n) * 2 - 1], dim=1)
    envs = [TorchPendulumVectorEnv(n, device=d) for d in ("cpu", "cuda")]
    for e in envs:
        e.reset(seed=0, options={"state": state})
        assert e.state.device.type == e.device.type
    for _ in range(20):
        a = torch.rand(n, 1) * 4 - 2
        (o1, r1, *_), (o2, r2, *_) = (e.step(a.to(e.device)) for e in envs)
        assert o2.device.type == "cuda" and r2.device.type == "cuda"
        torch.testing.assert_close(o2.cpu(), o1, rtol=0, atol=1e-4)
        torch.testing.assert_close(r2.cpu(), r1, rtol=0, atol=1e-4)
