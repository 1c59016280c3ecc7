"""`fastddpg run --resume RUN_DIR`: an interrupted (or crashed) run continues from its latest checkpoint and its
CSVs come out as if it had never stopped: no duplicated or lost rows, episode numbers and steps carrying on.
Every resume error is one line and exit code 2."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

from fastddpg import load_run
from fastddpg.cli import main
from fastddpg.runs.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, read_checkpoint
from tests.conftest import stop_at

FIXED_ID = "FastDDPGTest/Fixed-v0"
EPISODE_LEN = 10


class FixedEnv(gym.Env):
    """Episodes of exactly EPISODE_LEN steps (TimeLimit); obs (DIM,) drawn from the env's seeded RNG."""

    DIM = 2
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.DIM,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.np_random.uniform(-1, 1, self.DIM).astype(np.float32), {}

    def step(self, action):
        obs = self.np_random.uniform(-1, 1, self.DIM).astype(np.float32)
        return obs, -float(action[0] - obs[0]) ** 2, False, False, {}


if FIXED_ID not in gym.registry:
    gym.register(FIXED_ID, entry_point=FixedEnv, max_episode_steps=EPISODE_LEN)

# 2 envs, 200 env steps: 20 episodes; a flush every 20 env steps; auto checkpoints every 60 env steps
BASE = ["run", "--env", FIXED_ID, "--num-envs", "2", "--total-steps", "200", "--hidden-sizes", "8", "--batch-size",
        "8", "--replay-size", "1000", "--start-steps", "40", "--update-after", "20", "--updates-per-step", "0.5",
        "--log-every", "20", "--probe-n", "4", "--probe-every-episodes", "4", "--device", "cpu", "--compile", "off",
        "--quiet"]


def assert_tables_continuous(run_dir: Path, episodes: int) -> pd.DataFrame:
    run = load_run(run_dir)
    ep, up, pr = run.episodes, run.updates, run.probes
    assert not ep.duplicated().any() and not up.duplicated().any() and not pr.duplicated().any()
    assert ep["episode"].tolist() == list(range(1, episodes + 1))  # none lost, none twice, in order
    assert ep["global_step"].is_monotonic_increasing and ep["wall_time"].is_monotonic_increasing
    assert up["update"].is_monotonic_increasing and up["update"].is_unique
    assert up["global_step"].is_monotonic_increasing and up["global_step"].is_unique
    snaps = pr["snapshot"].drop_duplicates().tolist()
    assert snaps == list(range(len(snaps))) and (pr.groupby("snapshot").size() == 4).all()
    return ep


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """One finished 200-step run; tests copy it."""
    d = tmp_path_factory.mktemp("finished") / "run"
    assert main([*BASE, "--run-dir", str(d)]) == 0
    return d


def copy_run(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(src, dst)
    return dst


def test_interrupted_and_resumed_run_matches_an_uninterrupted_one(tmp_path, monkeypatch, finished, capsys):
    d = tmp_path / "interrupted"
    # interrupted at env step 100 = vector step 50: an episode boundary for both envs, so nothing is cut
    stop_at(monkeypatch, 100, lambda: signal.raise_signal(signal.SIGINT))
    assert main([*BASE, "--run-dir", str(d)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"fastddpg: SIGINT: stopped at env step 100 of 200; checkpoint {latest_checkpoint(d)}; "
                       f"metrics and report in {d}; resume with: fastddpg run --resume {d}")
    assert read_checkpoint(latest_checkpoint(d))["global_step"] == 100
    monkeypatch.undo()

    assert main(["run", "--resume", str(d)]) == 0
    ep = assert_tables_continuous(d, episodes=20)
    ref = load_run(finished)
    assert len(ep) == len(ref.episodes) == 20
    assert ep["global_step"].tolist() == ref.episodes["global_step"].tolist()
    assert load_run(d).updates["update"].iloc[-1] == ref.updates["update"].iloc[-1]  # same number of updates
    assert load_run(d).summary["episodes"] == 20
    meta = json.loads((d / "config.json").read_text())
    assert [r["global_step"] for r in meta["resumes"]] == [100]


def test_crash_after_a_checkpoint_drops_the_rows_written_after_it(tmp_path, monkeypatch):
    d = tmp_path / "crashed"

    def crash():
        raise RuntimeError("simulated crash")

    stop_at(monkeypatch, 160, crash)  # checkpoints at 60 and 120; CSV rows up to 160
    with pytest.raises(RuntimeError, match="simulated crash"):
        main([*BASE, "--run-dir", str(d)])
    monkeypatch.undo()
    assert read_checkpoint(latest_checkpoint(d))["global_step"] == 120
    assert load_run(d).episodes["global_step"].max() == 160
    with open(d / "episodes.csv", "a") as f:
        f.write("17,0,17")  # a row cut short by a kill in the middle of an append

    assert main(["run", "--resume", str(d)]) == 0
    assert_tables_continuous(d, episodes=20)  # rows 121-160 were written again, once


def test_an_old_checkpoint_holding_the_rows_still_resumes(tmp_path, monkeypatch):
    """Checkpoints written before the history lived only in the run directory held the rows ("logs") and no probe
    counters: they resume as before, the rows coming from the tables."""
    import torch

    d = tmp_path / "old"
    stop_at(monkeypatch, 100, lambda: signal.raise_signal(signal.SIGINT))
    assert main([*BASE, "--run-dir", str(d)]) == 130
    monkeypatch.undo()
    path = latest_checkpoint(d)
    state = read_checkpoint(path)
    run = load_run(d)
    counters = state["trainer"]["counters"]
    assert counters.pop("probe_snapshots") == run.probes["snapshot"].nunique()
    counters.pop("probe_last_step")
    state["trainer"]["logs"] = {"episodes": [tuple(r) for r in run.episodes.itertuples(index=False)],
                                "updates": run.updates.to_dict("records"),
                                "probes": [tuple(r) for r in run.probes.itertuples(index=False)]}
    torch.save(state, path)
    assert main(["run", "--resume", str(d)]) == 0
    assert_tables_continuous(d, episodes=20)


def test_the_end_checkpoint_counts_only_rows_the_tables_hold(finished):
    """The end-of-run probe snapshot is in probes.csv before the last checkpoint is written, so a crash between
    the two leaves tables that reach the checkpoint."""
    counters = read_checkpoint(latest_checkpoint(finished))["trainer"]["counters"]
    run = load_run(finished)
    assert "logs" not in read_checkpoint(latest_checkpoint(finished))["trainer"]  # the rows: the tables only
    assert counters["probe_snapshots"] == run.probes["snapshot"].nunique() > 1
    assert counters["probe_last_step"] == run.probes["global_step"].max() == 200
    assert counters["num_episodes"] == len(run.episodes)


def test_an_exploit_takes_the_history_from_the_tables_beside_the_checkpoint(tmp_path, monkeypatch):
    """A PBT exploit clones a checkpoint of another trial: its rows up to that checkpoint come from the tables the
    trial attached (cut back to the checkpoint, the source left as it is), else from an old checkpoint's rows."""
    from fastddpg.runs.resuming import history_at

    d = tmp_path / "src"
    stop_at(monkeypatch, 120, lambda: signal.raise_signal(signal.SIGINT))
    assert main([*BASE, "--run-dir", str(d), "--checkpoint-every", "60"]) == 130
    monkeypatch.undo()
    at_60 = read_checkpoint(list_checkpoints(d)[0])
    assert at_60["global_step"] == 60
    before = (d / "episodes.csv").read_bytes()
    tables = history_at(at_60, None, tmp_path / "nowhere", d)
    assert (d / "episodes.csv").read_bytes() == before
    run = load_run(d)
    assert tables["episodes"]["episode"].tolist() == list(range(1, at_60["num_episodes"] + 1))
    assert tables["episodes"]["global_step"].max() <= 60 < run.episodes["global_step"].max()
    assert tables["updates"]["update"].max() <= at_60["num_updates"] < run.updates["update"].max()
    assert history_at(at_60, tmp_path / "nowhere") is None
    at_60["trainer"]["logs"] = {"episodes": [tuple(r) for r in tables["episodes"].itertuples(index=False)],
                                "updates": tables["updates"].to_dict("records"), "probes": []}
    old = history_at(at_60, tmp_path / "nowhere")
    assert old["episodes"].equals(tables["episodes"]) and len(old["probes"]) == 0


def test_tables_short_of_the_checkpoint_are_refused(tmp_path, finished, capsys):
    """Rows missing before the checkpoint (an edited or cut CSV) would leave a gap: one line, exit 2."""
    d = copy_run(finished, tmp_path)
    lines = (d / "episodes.csv").read_text().splitlines(keepends=True)
    (d / "episodes.csv").write_text("".join(lines[:-3]))
    assert main(["run", "--resume", str(d), "--total-steps", "300"]) == 2
    assert "episodes.csv holds 17 episodes up to the checkpoint" in one_error_line(capsys)


def test_resume_raises_total_steps(tmp_path, finished):
    d = copy_run(finished, tmp_path)
    assert main(["run", "--resume", str(d), "--total-steps", "300"]) == 0
    ep = assert_tables_continuous(d, episodes=30)
    assert ep["global_step"].max() == 300
    assert load_run(d).config.total_steps == 300
    assert read_checkpoint(latest_checkpoint(d))["global_step"] == 300
    assert len(list_checkpoints(d)) == 3  # keep_checkpoints


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert err[0].startswith("fastddpg: error: ")
    return err[0]


def truncate_latest(d: Path) -> None:
    p = latest_checkpoint(d)
    p.write_bytes(p.read_bytes()[:1000])


def mark_stopped(d: Path) -> None:
    """The run as a stop leaves it (summary.json says what stopped it): resumable at its checkpoint's step."""
    summary = json.loads((d / "summary.json").read_text())
    (d / "summary.json").write_text(json.dumps({**summary, "stopped_by": "SIGINT"}))


def edit_config(d: Path, **changes) -> None:
    meta = json.loads((d / "config.json").read_text())
    meta["config"].update(changes)
    (d / "config.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("damage,args,needle", [
    (lambda d: shutil.rmtree(d), [], "no such run directory"),
    (lambda d: shutil.rmtree(d / "checkpoints"), [], "no checkpoint"),
    (truncate_latest, [], "truncated or corrupt"),
    (lambda d: edit_config(d, num_envs=3), [], "does not match"),
    (lambda d: edit_config(d, hidden_sizes=[16]), [], "hidden_sizes"),
    (lambda d: edit_config(d, hidden_sizes=["a"]), [], "config.json: --hidden-sizes=['a'] has the wrong type"),
    (lambda d: None, [], "pass a larger --total-steps"),
    (lambda d: None, ["--total-steps", "100"], "pass a larger --total-steps"),
    (mark_stopped, ["--total-steps", "100"], "pass a larger --total-steps"),  # below a stopped run's checkpoint
    (lambda d: None, ["--num-envs", "4"], "--num-envs cannot be changed on --resume"),
])
def test_resume_errors_are_one_line_exit_2(tmp_path, finished, capsys, damage, args, needle):
    d = copy_run(finished, tmp_path)
    damage(d)
    before = run_files(d)
    assert main(["run", "--resume", str(d), *args]) == 2
    assert needle in one_error_line(capsys)
    assert run_files(d) == before  # a refused resume leaves the run as it was


def run_files(d: Path) -> dict[str, bytes]:
    """The tables, config.json and summary.json of a run directory, as bytes ({} where it does not exist)."""
    return {p.name: p.read_bytes() for p in [*d.glob("*.csv"), *d.glob("*.json")]} if d.exists() else {}


def test_a_resume_refused_for_a_missing_package_leaves_the_run_resumable(tmp_path, finished, capsys, monkeypatch):
    """--resume --tensorboard without the package: one line, exit 2, and nothing of the run rewritten (its
    config.json still says no tensorboard), so a plain --resume still continues it."""
    d = copy_run(finished, tmp_path)
    before = run_files(d)
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "tensorboard", None)
        assert main(["run", "--resume", str(d), "--total-steps", "300", "--tensorboard"]) == 2
    assert "--tensorboard needs the tensorboard package" in one_error_line(capsys)
    assert run_files(d) == before
    assert main(["run", "--resume", str(d), "--total-steps", "300"]) == 0


def test_env_whose_shapes_changed_is_refused(tmp_path, finished, capsys, monkeypatch):
    d = copy_run(finished, tmp_path)
    monkeypatch.setattr(FixedEnv, "DIM", 3)  # same env id, another observation shape
    assert main(["run", "--resume", str(d), "--total-steps", "300"]) == 2
    assert "has obs_dim=2 but FastDDPGTest/Fixed-v0 gives obs_dim=3" in one_error_line(capsys)


def test_resume_error_in_a_real_process(tmp_path):
    p = subprocess.run([sys.executable, "-m", "fastddpg.cli", "run", "--resume", str(tmp_path / "missing")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "no such run directory" in p.stderr


def test_a_run_directory_another_process_holds_is_refused_untouched(tmp_path, finished, capsys):
    """A --resume while another process still has the run (here: a process holding it as a run does) is one line and
    exit 2, before anything is cut or rewritten; once that process ends, the same --resume goes on."""
    d = copy_run(finished, tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from fastddpg.runs.rundir import "
         "hold_run_dir; hold_run_dir(Path(sys.argv[1])); print('held', flush=True); time.sleep(120)", str(d)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = run_files(d)
        assert main(["run", "--resume", str(d), "--total-steps", "300"]) == 2
        assert "is in use by another process" in one_error_line(capsys)
        assert run_files(d) == before
    finally:
        holder.kill()
        holder.wait(timeout=60)
    assert main(["run", "--resume", str(d), "--total-steps", "300"]) == 0
    assert main(["run", "--resume", str(d), "--total-steps", "400"]) == 0  # this process let go of it at the end


@pytest.mark.parametrize("command", ["plot", "eval", "export"])
def test_a_hand_edited_run_directory_is_one_line_for_its_readers(tmp_path, finished, capsys, command):
    d = copy_run(finished, tmp_path)
    edit_config(d, hidden_sizes=["a"])
    assert main([command, str(d)]) == 2
    assert "config.json: --hidden-sizes=['a'] has the wrong type" in one_error_line(capsys)
    d = copy_run(finished, tmp_path / "summary")
    (d / "summary.json").write_text("{not json")
    assert main([command, str(d)]) == 2
    assert "summary.json is not valid JSON" in one_error_line(capsys)


def test_a_resumed_run_that_dies_leaves_no_earlier_result_behind(tmp_path, finished):
    """Resuming a finished run removes that segment's actor.pt, critic.pt and summary.json (written again when the
    resumed run ends): a resumed run killed midway (kill -9: nothing of it runs) then serves its latest
    checkpoint's policy, not the earlier end's, and does not read as finished."""
    from fastddpg.api import open_resume
    from fastddpg.runs.policy import load_policy
    from fastddpg.runs.rundir import release_run_dir

    d = copy_run(finished, tmp_path)
    trainer, writer = open_resume(d, {"total_steps": 400})
    trainer.callbacks.append(writer)  # the tables follow the reports, as in a run
    try:
        for _ in range(50):  # trains on, and checkpoints, without finishing (as a run killed at this point)
            trainer.step()
        trainer.checkpoint()
    finally:
        trainer.close()
        release_run_dir(d)
    assert not any((d / name).exists() for name in ("actor.pt", "critic.pt", "summary.json"))
    assert read_checkpoint(latest_checkpoint(d))["global_step"] == 300
    latest = load_checkpoint(d)["actor"].state_dict()
    assert all(torch.equal(v, latest[k]) for k, v in load_policy(d).actor.state_dict().items())
    assert main(["run", "--resume", str(d)]) == 0  # and the resume after it finishes the run
    assert json.loads((d / "summary.json").read_text())["env_steps"] == 400
