"""Checkpoint files: a checkpoint restores every tensor and counter exactly, writes are atomic, only the last K
are kept, and `load_checkpoint` hands back a plain actor."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

import fastddpg
import fastddpg.runs.checkpoint as ckpt
from fastddpg import Config, ConfigError, Trainer
from fastddpg.runs.checkpoint import (
    Checkpointer,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from fastddpg.training.trainer import checkpoint_interval, resume_seed
from tests.conftest import COUNTING_ID


def small(**kw) -> Config:
    base = dict(env=COUNTING_ID, num_envs=3, total_steps=150, hidden_sizes=(8,), batch_size=4, replay_size=1000,
                start_steps=30, update_after=10, log_every=15, device="cpu", probe_n=4, compile="off",
                updates_per_step=0.5, probe_every_episodes=3)
    return Config(**{**base, **kw})


def trained(tmp_path: Path, **kw) -> Trainer:
    trainer = Trainer(small(**kw), checkpointer=Checkpointer(tmp_path))
    trainer.train()
    return trainer


def assert_same(a, b, path: str = "state") -> None:
    """Recursive exact equality of nested dicts/lists/tuples of tensors and plain values."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), path
        assert a.dtype == b.dtype and a.shape == b.shape, path
        assert torch.equal(a.cpu(), b.cpu()), path
    elif isinstance(a, dict):
        assert set(a) == set(b), (path, set(a) ^ set(b))
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and np.isnan(a):
        assert isinstance(b, float) and np.isnan(b), path
    else:
        assert a == b, (path, a, b)


VARIANTS = [dict(noise="gaussian"), dict(noise="ou", layer_norm=True), dict(algo="td3"), dict(algo="sac"),
            dict(algo="crossq", critic_width=16, renorm_warmup=20)]


@pytest.mark.parametrize("variant", VARIANTS, ids=["ddpg", "ou-layernorm", "td3", "sac", "crossq"])
def test_resume_restores_every_tensor_and_counter(tmp_path, variant):
    a = trained(tmp_path, **variant)
    assert a.num_updates > 50 and a.num_episodes > 10 and a.probes.states is not None
    assert a.update_credit == Fraction(1, 2)  # 3 envs x 0.5 updates: half an update is owed after every vector step
    saved = read_checkpoint(latest_checkpoint(tmp_path))
    assert saved["global_step"] == a.global_step == 150

    b = Trainer(small(**variant))
    b.load_state_dict(saved["trainer"])
    sa, sb = a.state_dict(), b.state_dict()
    # the wall clock and the cut episodes (with the noise process, which restarts with them) are the only
    # differences, on purpose
    for s in (sa, sb):
        s["counters"].pop("wall_time")
    episodes, noise = sb.pop("episodes"), sb.pop("noise")
    sa.pop("episodes")
    assert_same(sa.pop("noise"), saved["trainer"]["noise"])
    assert_same(sa, sb)
    assert_same(saved["trainer"]["modules"], sb["modules"])  # ... and both equal the file
    # the parts the issue names, spelled out
    for name, m in a.algo.modules().items():
        for k, v in m.state_dict().items():
            assert torch.equal(v, b.algo.modules()[name].state_dict()[k]), (name, k)
    for opt in ("actor", "critic"):
        oa, ob = a.algo.state["optim"][opt], b.algo.state["optim"][opt]
        assert torch.equal(oa["step"], ob["step"]) and oa["step"].item() > 0
        for x, y in zip(oa["exp_avg"] + oa["exp_avg_sq"], ob["exp_avg"] + ob["exp_avg_sq"], strict=True):
            assert torch.equal(x, y)
    assert torch.equal(a.buffer.data, b.buffer.data)
    assert (a.buffer.ptr, a.buffer.size) == (b.buffer.ptr, b.buffer.size) == (150, 150)
    assert (a.global_step, a.vector_steps, a.num_updates, a.num_episodes, a.update_credit) == \
        (b.global_step, b.vector_steps, b.num_updates, b.num_episodes, b.update_credit)
    assert torch.equal(a.gen.get_state(), b.gen.get_state())
    # the episodes in progress are cut: fresh episodes from envs re-seeded from (seed, global_step)
    assert torch.count_nonzero(episodes["ep_return"]) == 0 and torch.count_nonzero(episodes["ep_len"]) == 0
    if noise:  # OU: the state restarts at mu = 0, as at any episode start
        assert torch.count_nonzero(noise["state"]) == 0 and torch.count_nonzero(saved["trainer"]["noise"]["state"])


@pytest.mark.parametrize("algo, compile_mode", [("ddpg", "off"), ("sac", "off"), ("ddpg", "analytic")])
def test_resume_from_the_file_continues_like_the_live_trainer(tmp_path, algo, compile_mode):
    """A trainer restored from the file and the live trainer that wrote it, both with their episodes restarted
    the same way, train on bit-identically: everything that shapes the future (RNG streams, replay-ratio credit,
    optimizer states, SAC's temperature and its Adam, buffer) is in the file, nothing is left to the fresh
    trainer's own state."""
    cfg = small(env="Pendulum-v1", num_envs=2, total_steps=100, start_steps=40, algo=algo, compile=compile_mode)
    live = Trainer(cfg, checkpointer=Checkpointer(tmp_path))
    while live.global_step < 100:
        live.step()
    live.checkpoint()
    live.restart_episodes()
    restored = Trainer(cfg)  # fresh: its generators are at their initial state, the live ones have advanced
    restored.load_state_dict(read_checkpoint(latest_checkpoint(tmp_path))["trainer"])
    for t in (live, restored):
        while t.global_step < 160:
            t.step()
        t.flush()
        t.env.close()
    assert restored.num_updates == live.num_updates > 60
    assert_same(live.algo.state_dict(), restored.algo.state_dict())  # every module and every Adam state
    assert torch.equal(live.buffer.data, restored.buffer.data)
    assert [r for r in live.episode_rows if r.global_step > 100] == restored.episode_rows  # history: the tables'


def test_restarted_episodes_are_reseeded_from_seed_and_step(tmp_path):
    cfg = small(env="Pendulum-v1", num_envs=2, total_steps=60)
    t = Trainer(cfg, checkpointer=Checkpointer(tmp_path))
    t.train()
    state = read_checkpoint(latest_checkpoint(tmp_path))["trainer"]
    obs = []
    for _ in range(2):
        t = Trainer(cfg)
        t.load_state_dict(state)
        obs.append(t.obs.clone())
        t.env.close()
    assert torch.equal(obs[0], obs[1])
    fresh = Trainer(cfg)  # env i of a resume at env step 60 starts as Pendulum reset with resume_seed(42, 60) + i
    assert torch.equal(obs[0], fresh.env.reset(seed=resume_seed(42, 60)))
    assert not torch.equal(obs[0], fresh.env.reset(seed=42))
    fresh.env.close()
    assert resume_seed(42, 60) == resume_seed(42, 60) != resume_seed(42, 62)


def test_checkpoint_schedule_and_keep_last_k(tmp_path):
    t = trained(tmp_path, total_steps=150, checkpoint_every=30, keep_checkpoints=2)
    steps = [int(p.stem.split("_")[1]) for p in list_checkpoints(tmp_path)]
    assert steps == [120, 150]  # every 30 env steps (whole vector steps of 3), the last 2 kept
    assert t.last_checkpoint == latest_checkpoint(tmp_path)
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if not p.name.startswith("step_")]


def test_auto_interval_is_a_quarter_in_whole_flushes(tmp_path):
    # 3 envs: a flush every 14 vector steps = 42 env steps
    assert checkpoint_interval(small(total_steps=1000, log_every=40), 3) == 252  # ceil(250 / 42) * 42
    assert checkpoint_interval(small(checkpoint_every=100), 3) == 100


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    t = trained(tmp_path)
    good = latest_checkpoint(tmp_path)

    def boom(src, dst):
        raise OSError("disk full (simulated, between the temp write and the rename)")

    monkeypatch.setattr(ckpt.os, "replace", boom)
    t.global_step += 3  # as if one more vector step had happened
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(t, tmp_path)
    monkeypatch.undo()
    assert latest_checkpoint(tmp_path) == good
    assert read_checkpoint(good)["global_step"] == 150
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [p.name for p in list_checkpoints(tmp_path)]


def test_a_temp_file_left_by_a_kill_is_never_a_checkpoint(tmp_path):
    t = trained(tmp_path)
    good = latest_checkpoint(tmp_path)
    stale = tmp_path / "checkpoints" / ".step_000000000999.pt.12345.tmp"
    stale.write_bytes(b"PK\x03\x04 half a zip")  # what kill -9 in the middle of torch.save leaves
    assert latest_checkpoint(tmp_path) == good
    t.global_step += 3
    save_checkpoint(t, tmp_path)
    assert not stale.exists()  # cleaned up by the next save


def test_truncated_checkpoint_is_a_one_line_error(tmp_path):
    trained(tmp_path, checkpoint_every=60)
    paths = list_checkpoints(tmp_path)
    data = paths[-1].read_bytes()
    paths[-1].write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="truncated or corrupt") as e:
        read_checkpoint(paths[-1])
    assert paths[-2].name in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "other.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match="truncated or corrupt"):
        read_checkpoint(tmp_path / "other.pt")


def test_checkpoint_loads_with_weights_only(tmp_path):
    trained(tmp_path)
    state = torch.load(latest_checkpoint(tmp_path), weights_only=True)  # no pickled code, only data
    assert state["format"] == "fastddpg-checkpoint" and state["config"]["env"] == COUNTING_ID


@pytest.mark.parametrize("variant", VARIANTS, ids=["ddpg", "ou-layernorm", "td3", "sac", "crossq"])
def test_load_checkpoint_gives_a_plain_actor(tmp_path, variant):
    t = trained(tmp_path, **variant)
    for where in (tmp_path, latest_checkpoint(tmp_path)):
        loaded = fastddpg.load_checkpoint(where)
        actor = loaded["actor"]
        assert isinstance(actor, torch.nn.Module) and not actor.training
        assert loaded["config"] == t.cfg and loaded["global_step"] == 150
        obs = torch.randn(5, 3)
        with torch.no_grad():
            np.testing.assert_array_equal(actor(obs).numpy(), t.algo.actor(obs).numpy())
    with pytest.raises(ConfigError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nowhere")


def test_state_dict_needs_a_flush():
    t = Trainer(small())
    t.step()
    with pytest.raises(RuntimeError, match="flush"):
        t.state_dict()
    t.flush()
    assert t.state_dict()["counters"]["global_step"] == 3
    t.env.close()


def test_checkpoint_file_is_written_durably(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(ckpt.os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    trained(tmp_path, checkpoint_every=1000)
    assert synced  # the file (and its directory) are fsync'd before the checkpoint counts
