"""`fastddpg eval`: noise-free episodes with the saved actor, mean +- std printed and written to the run dir."""

from __future__ import annotations

import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from fastddpg import load_run
from fastddpg.cli import main
from fastddpg.runs.evaluate import evaluate_actor, evaluate_run, load_actor
from tests.test_rundir import short_run


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return short_run(tmp_path_factory.mktemp("eval") / "run")


def test_eval_prints_mean_and_writes_its_file(run, capsys):
    assert main(["eval", str(run), "--episodes", "3", "--seed", "5"]) == 0
    out = capsys.readouterr().out
    m = re.search(r"return (-?\d+\.\d) \+- (\d+\.\d)", out)
    assert m is not None, out
    ev = load_run(run).evals
    assert list(ev.columns) == ["eval_time", "kind", "global_step", "seed", "episode", "return", "length",
                                "wall_time", "eval_seconds"]
    assert ev[["wall_time", "eval_seconds"]].isna().all().all()  # not during a run: no run's clock
    assert len(ev) == 3 and ev["seed"].tolist() == [5, 5, 5] and ev["episode"].tolist() == [0, 1, 2]
    assert ev["kind"].tolist() == ["manual"] * 3 and ev["global_step"].tolist() == [800] * 3  # the final actor's
    assert (ev["length"] == 200).all()  # Pendulum's time limit
    assert float(m.group(1)) == pytest.approx(ev["return"].mean(), abs=0.051)
    assert float(m.group(2)) == pytest.approx(ev["return"].std(ddof=0), abs=0.051)
    # a second evaluation appends, and the same seed gives the same returns (no noise)
    assert main(["eval", str(run), "--episodes", "3", "--seed", "5"]) == 0
    ev = load_run(run).evals
    assert len(ev) == 6 and ev["eval_time"].nunique() == 2
    np.testing.assert_array_equal(ev["return"][:3].to_numpy(), ev["return"][3:].to_numpy())


def test_eval_default_seed_differs_from_training(run):
    r = evaluate_run(run, episodes=2)
    assert r.seed == load_run(run).config.seed + 10_000 and r.returns.shape == (2,)


def test_eval_uses_the_saved_actor_without_noise(run):
    """Replaying episode i by hand in a plain Gymnasium env (seed + i) with the loaded actor gives the same
    return: eval acts with mu(s) itself, nothing added."""
    actor, cfg = load_actor(run)
    saved = torch.load(run / "actor.pt", weights_only=True)
    for k, v in actor.state_dict().items():
        torch.testing.assert_close(v, saved[k], rtol=0, atol=0)
    result = evaluate_actor(actor, cfg.env, episodes=2, seed=11)
    for i in range(2):
        env = gym.make(cfg.env)
        obs, _ = env.reset(seed=11 + i)
        total, done = 0.0, False
        while not done:
            with torch.no_grad():
                a = actor(torch.as_tensor(obs, dtype=torch.float32)[None])[0].numpy()
            obs, r, term, trunc, _ = env.step(a)
            total += float(np.float32(r))
            done = term or trunc
        env.close()
        assert result.returns[i] == pytest.approx(total, rel=1e-6)


def test_eval_errors_are_one_line(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    assert "not a fastddpg run directory" in capsys.readouterr().err
    unfinished = tmp_path / "unfinished"
    main(["run", "--total-steps", "10", "--run-dir", str(unfinished), "--quiet", "--device", "cpu",
          "--hidden-sizes", "8"])
    (unfinished / "actor.pt").unlink()
    assert main(["eval", str(unfinished)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no actor.pt" in err[0]
    assert main(["eval", str(unfinished), "--episodes", "0"]) == 2
