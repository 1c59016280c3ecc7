"""The run directory: every file is there, load_run gives the documented tidy frames, the config round-trips,
and a run that dies keeps every flush it had."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fastddpg import Config, ConfigError, Trainer, load_run
from fastddpg.cli import build_parser, config_from_args, main
from fastddpg.runs import rundir as rundir_mod
from fastddpg.runs.rundir import RunWriter, default_run_dir, sanitize
from tests.conftest import trained_copy

# A short Pendulum run: 2 envs, 800 env steps (4 episodes, ending at steps 400 and 800), a flush every 200 env
# steps, 150 updates, probe snapshots at the flushes where an episode ended and at the end.
SHORT_RUN = ["--env", "Pendulum-v1", "--num-envs", "2", "--total-steps", "800", "--log-every", "200",
             "--hidden-sizes", "16", "--batch-size", "32", "--start-steps", "200", "--update-after", "200",
             "--updates-per-step", "0.25", "--probe-n", "8", "--probe-every-episodes", "1", "--device", "cpu"]
EPISODE_DTYPES = {"episode": "int64", "env": "int64", "global_step": "int64", "return": "float64",
                  "length": "int64", "wall_time": "float64"}
UPDATE_DTYPES = {"update": "int64", "global_step": "int64", "critic_loss": "float64", "actor_loss": "float64",
                 "q_mean": "float64", "y_mean": "float64", "updates_in_row": "int64",
                 "env_steps_per_sec": "float64", "updates_per_sec": "float64", "wall_time": "float64"}
PROBE_DTYPES = {"snapshot": "int64", "episode": "int64", "global_step": "int64", "probe": "int64",
                "action": "float64", "q": "float64"}


def short_run(run_dir: Path, *extra: str) -> Path:
    """Train the short run into ``run_dir`` through the CLI (in process) and return the directory."""
    return trained_copy(["--quiet", *SHORT_RUN, *extra], run_dir)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return short_run(tmp_path_factory.mktemp("rundir") / "run")


def test_run_directory_has_every_file(run):
    for name in ("config.json", "episodes.csv", "updates.csv", "probes.csv", "episodes.parquet", "updates.parquet",
                 "probes.parquet", "actor.pt", "critic.pt", "summary.json", "report.html"):
        assert (run / name).is_file(), name
        assert (run / name).stat().st_size > 0, name


def test_load_run_gives_documented_frames(run):
    data = load_run(run)
    for df, dtypes in ((data.episodes, EPISODE_DTYPES), (data.updates, UPDATE_DTYPES), (data.probes, PROBE_DTYPES)):
        assert list(df.columns) == list(dtypes)
        assert {c: str(t) for c, t in df.dtypes.items()} == dtypes
    s = data.summary
    ep, up, pr = data.episodes, data.updates, data.probes
    assert len(ep) == s["episodes"] == 4
    assert ep["global_step"].tolist() == [400, 400, 800, 800] and (ep["length"] == 200).all()
    assert ep["episode"].tolist() == [1, 2, 3, 4] and sorted(ep["env"]) == [0, 0, 1, 1]
    # one row per flush with updates (the flushes at 400, 600, 800: updates start after 200 env steps)
    assert up["global_step"].tolist() == [200, 400, 600, 800][-len(up):] and len(up) >= 3
    assert up["update"].iloc[-1] == s["updates"] == up["updates_in_row"].sum()
    assert np.isfinite(up[["critic_loss", "actor_loss", "q_mean", "y_mean"]].to_numpy()).all()
    assert (pr.groupby("snapshot").size() == 8).all() and pr["snapshot"].nunique() >= 2
    assert pr["action"].between(-2, 2).all()  # Pendulum's torque bounds
    assert data.evals.empty and list(data.evals.columns) == ["eval_time", "kind", "global_step", "seed", "episode",
                                                             "return", "length", "wall_time", "eval_seconds"]


def test_config_round_trips(run):
    data = load_run(run)
    expected = config_from_args(build_parser().parse_args(["run", *SHORT_RUN, "--quiet", "--run-dir", str(run)]))
    assert data.config == expected
    assert Config.from_dict(json.loads((run / "config.json").read_text())["config"]) == expected
    meta = data.meta
    assert set(meta["versions"]) >= {"fastddpg", "torch", "gymnasium", "numpy"}
    assert meta["device"] == "cpu" and meta["obs_dim"] == 3 and meta["act_dim"] == 1
    assert meta["argv"][:2] == ["fastddpg", "run"] and "--total-steps 800" in meta["command"]


def test_parquet_and_csv_agree(run, tmp_path):
    csv_only = tmp_path / "csv_only"
    shutil.copytree(run, csv_only)
    for p in csv_only.glob("*.parquet"):
        p.unlink()
    a, b = load_run(run), load_run(csv_only)  # parquet (newer than the CSVs) vs CSV
    for table in ("episodes", "updates", "probes", "evals"):
        pd.testing.assert_frame_equal(getattr(a, table), getattr(b, table), check_exact=True)


def test_a_last_row_cut_short_is_not_read(run, tmp_path):
    """A run killed (or a disk filled) while a report was being appended leaves a last CSV row without its end:
    load_run reads the whole rows before it, as resume keeps them, instead of failing on the half row."""
    d = tmp_path / "cut"
    shutil.copytree(run, d)
    for p in d.glob("*.parquet"):
        p.unlink()
    whole = load_run(d)
    for table in ("episodes", "updates"):
        path = d / f"{table}.csv"
        text = path.read_text()
        path.write_text(text[:-12])  # into the last row
    cut = load_run(d)
    for table in ("episodes", "updates"):
        pd.testing.assert_frame_equal(getattr(cut, table), getattr(whole, table).iloc[:-1], check_exact=True)


def test_default_run_dir_name_and_clashes(tmp_path, monkeypatch):
    cfg = Config(env="ALE/Pong-v5", seed=3, total_steps=10)
    name = default_run_dir(cfg, tmp_path).name
    assert name.startswith("ALE-Pong-v5__ddpg__3__") and len(name.split("__")[-1]) == len("20250101-120000")
    assert sanitize("My Env:v0/x") == "My-Env-v0-x"
    monkeypatch.setattr(rundir_mod, "default_run_dir", lambda cfg, root: Path(root) / "same")
    a = RunWriter.create(Config(total_steps=10), argv=["x"], root=tmp_path)
    b = RunWriter.create(Config(total_steps=10), argv=["x"], root=tmp_path)
    assert (a.path.name, b.path.name) == ("same", "same-2")
    assert (a.path / "config.json").is_file() and (b.path / "episodes.csv").is_file()


def test_unwritable_or_used_run_dir_is_refused(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot write the run directory"):
        RunWriter.create(Config(run_dir=str(blocker / "run"), total_steps=10))
    assert main(["run", *SHORT_RUN, "--run-dir", str(blocker / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fastddpg: error: cannot write the run directory")
    used = tmp_path / "used"
    RunWriter.create(Config(run_dir=str(used), total_steps=10))
    with pytest.raises(ConfigError, match="already holds a run"):
        RunWriter.create(Config(run_dir=str(used), total_steps=10))


def test_a_run_that_dies_keeps_its_flushes(tmp_path, monkeypatch):
    """The CLI run crashes at its third flush: the CSVs hold what the first flushes wrote, and the weights and
    report are still written."""
    flushes = []
    orig = Trainer.flush

    def flush_then_die(self):
        orig(self)
        flushes.append(self.global_step)
        if len(flushes) == 3:
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(Trainer, "flush", flush_then_die)
    run = tmp_path / "dies"
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(["run", *SHORT_RUN, "--quiet", "--run-dir", str(run)])
    data = load_run(run)
    assert flushes == [200, 400, 600]
    assert data.episodes["global_step"].tolist() == [400, 400]  # the episodes that ended before the crash
    assert data.updates["global_step"].tolist() == [400, 600]
    assert data.probes["global_step"].max() <= 600
    assert (run / "actor.pt").is_file() and (run / "report.html").is_file()


def test_writer_appends_only_new_rows(tmp_path):
    """Driven directly as a callback: after each flush the files hold exactly the trainer's rows so far."""
    cfg = Config(**{**config_from_args(build_parser().parse_args(["run", *SHORT_RUN])).to_dict(),
                    "run_dir": str(tmp_path / "w")})
    trainer = Trainer(cfg)
    writer = RunWriter.create(cfg, trainer, argv=["test"])
    seen = []

    def check(tr, report):
        on_disk = load_run(writer.path)
        assert len(on_disk.episodes) == len(tr.episode_rows)
        assert len(on_disk.updates) == len(tr.update_rows)
        assert len(on_disk.probes) == len(tr.probe_rows)
        seen.append(tr.global_step)

    trainer.callbacks += [writer, check]
    result = trainer.train()
    writer.finish(trainer, result.summary)
    assert seen == [200, 400, 600, 800]
    data = load_run(writer.path)
    pd.testing.assert_frame_equal(data.episodes, result.episodes, check_exact=True)
    pd.testing.assert_frame_equal(data.updates, result.updates, check_exact=True)
    pd.testing.assert_frame_equal(data.probes, result.probes, check_exact=True)  # including the end-of-run snapshot


def test_summary_json_is_strict_json_when_a_number_has_no_value(tmp_path):
    """A run with no finished episode has no last-10 mean: summary.json says null (NaN is Python's JSON only,
    which JavaScript's JSON.parse refuses), and the report reads it as missing."""
    import json

    from fastddpg import load_run
    from fastddpg.cli import main

    run = tmp_path / "run"
    assert main(["run", "--total-steps", "100", "--start-steps", "50", "--update-after", "50", "--batch-size", "16",
                 "--hidden-sizes", "8", "--compile", "off", "--quiet", "--run-dir", str(run)]) == 0

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    summary = json.loads((run / "summary.json").read_text(), parse_constant=refuse)
    assert summary["last10_mean_return"] is None and summary["episodes"] == 0
    assert load_run(run).summary["last10_mean_return"] is None
