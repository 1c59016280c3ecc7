"""MuJoCo through the `mujoco` extra: a short TD3 run on HalfCheetah-v5 with the run directory, and its shapes."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("mujoco", reason="pip install 'fastddpg[mujoco]' (CI installs it)")

from fastddpg import Config, load_run, train


def test_halfcheetah_td3_smoke(tmp_path):
    run = tmp_path / "run"
    result = train(Config(env="HalfCheetah-v5", algo="td3", num_envs=2, total_steps=600, start_steps=200,
                          update_after=200, batch_size=32, hidden_sizes=(32, 32), log_every=200, device="cpu",
                          compile="off", quiet=True, run_dir=str(run)))
    meta = json.loads((run / "config.json").read_text())
    assert (meta["obs_dim"], meta["act_dim"]) == (17, 6)
    assert result.summary["updates"] == 402 and result.episodes.empty  # from env step 200 on; episodes: 1,000 steps
    ups = load_run(run).updates
    assert len(ups) == 3 and np.isfinite(ups[["critic_loss", "q1_mean", "q2_mean"]].to_numpy()).all()
    assert "No episode finished yet (episodes are 1,000 steps" in (run / "report.html").read_text()
