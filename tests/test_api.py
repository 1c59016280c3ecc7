"""The Python API keeps a run directory: ``train(Config(run_dir=...))`` writes what ``fastddpg run`` writes, the
same tables for the same seed; without a run directory it writes nothing; a run stopped from Python resumes from
Python; and without pyarrow a run directory is complete in CSV, with no error and no warning."""

from __future__ import annotations

import os
import signal
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest

from fastddpg import Config, TrainingInterrupted, load_run, resume, train
from fastddpg.cli import build_parser, config_from_args, main

# as tests/test_rundir.py's short run: 2 envs, 800 env steps, a report every 200, 150 updates, eager
SHORT_RUN = ["--env", "Pendulum-v1", "--num-envs", "2", "--total-steps", "800", "--log-every", "200",
             "--hidden-sizes", "16", "--batch-size", "32", "--start-steps", "200", "--update-after", "200",
             "--updates-per-step", "0.25", "--probe-n", "8", "--probe-every-episodes", "1", "--device", "cpu",
             "--quiet"]
FILES = ("config.json", "episodes.csv", "updates.csv", "probes.csv", "actor.pt", "critic.pt", "summary.json",
         "report.html")
PARQUET = ("episodes.parquet", "updates.parquet", "probes.parquet")
TIMING = ["env_steps_per_sec", "updates_per_sec", "wall_time"]  # the only columns that may differ between runs


def short_config(run_dir: Path | str = "") -> Config:
    cfg = config_from_args(build_parser().parse_args(["run", *SHORT_RUN]))
    return Config.from_dict({**cfg.to_dict(), "run_dir": str(run_dir)})


def files_of(run: Path) -> set[str]:
    return {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}


def test_python_api_writes_what_the_cli_writes(tmp_path):
    cli_dir, py_dir = tmp_path / "cli", tmp_path / "py"
    assert main(["run", *SHORT_RUN, "--run-dir", str(cli_dir)]) == 0
    result = train(short_config(py_dir))
    assert result.run_dir == py_dir
    assert files_of(py_dir) == files_of(cli_dir)
    assert set(FILES) | set(PARQUET) <= files_of(py_dir)
    assert any(name.startswith("checkpoints/step_") for name in files_of(py_dir))
    a, b = load_run(cli_dir), load_run(py_dir)
    assert a.config == Config.from_dict({**b.config.to_dict(), "run_dir": str(cli_dir)})
    pd.testing.assert_frame_equal(a.episodes.drop(columns="wall_time"), b.episodes.drop(columns="wall_time"),
                                  check_exact=True)
    pd.testing.assert_frame_equal(a.updates.drop(columns=TIMING), b.updates.drop(columns=TIMING), check_exact=True)
    pd.testing.assert_frame_equal(a.probes, b.probes, check_exact=True)
    # and what the Python API returns is what it wrote
    pd.testing.assert_frame_equal(b.episodes, result.episodes, check_exact=True)
    pd.testing.assert_frame_equal(b.updates, result.updates, check_exact=True)


def test_without_a_run_dir_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = train(short_config(), total_steps=400)
    assert result.run_dir is None and len(result.episodes) == 2
    assert list(tmp_path.iterdir()) == []


def test_run_dir_auto_takes_the_default_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = train(short_config("auto"), total_steps=400)
    assert result.run_dir is not None and result.run_dir.parent == Path("runs")
    assert result.run_dir.name.startswith("Pendulum-v1__ddpg__42__")
    assert set(FILES) <= files_of(tmp_path / result.run_dir)


def test_interrupted_from_python_resumes_from_python(tmp_path):
    """SIGINT at the report at env step 400 (as Ctrl-C would): the exception names the run directory and its
    checkpoint; `resume` finishes the run, and the tables continue without a duplicated or lost row."""
    run = tmp_path / "run"

    def ctrl_c_at_400(trainer, report):
        if report.global_step == 400:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted) as stop:
        train(short_config(run), callbacks=[ctrl_c_at_400])
    e = stop.value
    assert e.run_dir == run and e.checkpoint is not None and e.checkpoint.is_file()
    assert e.global_step == 400 and load_run(run).summary["stopped_by"] == "SIGINT"

    result = resume(run)
    assert result.run_dir == run and result.summary["env_steps"] == 800
    data = load_run(run)
    assert data.episodes["episode"].tolist() == list(range(1, len(data.episodes) + 1))
    assert data.episodes["global_step"].is_monotonic_increasing and data.episodes["global_step"].max() == 800
    assert data.updates["update"].is_monotonic_increasing and data.updates["update"].iloc[-1] == 150
    assert data.updates["updates_in_row"].sum() == 150
    pd.testing.assert_frame_equal(data.episodes, result.episodes, check_exact=True)
    assert "stopped_by" not in data.summary


def test_without_pyarrow_the_run_directory_is_complete_in_csv(tmp_path, monkeypatch):
    """A plain `pip install -e .` has no pyarrow: every file but the parquet copies, no error, no warning."""
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` now raises ImportError
    run = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(short_config(run))
        data = load_run(run)
    assert [str(w.message) for w in caught] == []
    names = files_of(run)
    assert set(FILES) <= names and not names & set(PARQUET)
    assert len(data.episodes) == 4 and len(data.updates) == 3


def test_parquet_is_written_and_read_when_pyarrow_is_installed(tmp_path):
    pytest.importorskip("pyarrow", reason="the dev extra installs pyarrow")
    run = tmp_path / "run"
    train(short_config(run), total_steps=400)
    for name in PARQUET:
        assert (run / name).stat().st_size > 0
    from_parquet = pd.read_parquet(run / "episodes.parquet")
    pd.testing.assert_frame_equal(from_parquet, load_run(run).episodes, check_exact=True)
