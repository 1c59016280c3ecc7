"""Issue #24's papercuts, one test (or more) each: hyperparameters shown with their significant digits, error
messages that point to the command that does the job, ``eval`` refreshing report.html, ``--dry-run`` and
``--help`` agreeing on run_dir, ``train()`` and ``resume()`` equally quiet, MuJoCo's ``settotalmass`` warning
filtered (and only it), the sweep's own progress lines."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from fastddpg import Config, ConfigError
from fastddpg.core.config import format_hyper

# --- hyperparameters with enough significant digits ---------------------------------------------------------------

# 2.4665e-3 is stored as 0.0024664999...: its 4th digit rounds down
@pytest.mark.parametrize("value, shown", [(3e-4, "0.0003"), (2.4665e-3, "0.002466"), (0.00048254, "0.0004825"),
                                          (1e-5, "1e-05"), (0.99, "0.99"), (np.float64(2.46651e-3), "0.002467"),
                                          (np.float32(3e-4), "0.0003"), (256, "256"), (True, "True"),
                                          ("64x64", "64x64")])
def test_format_hyper_keeps_four_significant_digits(value, shown):
    assert format_hyper(value) == shown


def test_grid_labels_keep_small_learning_rates_apart():
    cfg = Config(grid=("actor_lr=3e-4,2.4665e-3", "tau=0.005"), num_seeds=2)
    assert cfg.grid_members() == {"actor_lr=0.0003, tau=0.005": [0, 1], "actor_lr=0.002466, tau=0.005": [2, 3]}
    # two points that 4 digits would merge are labelled in full, so no grid point loses its members
    close = Config(grid=("actor_lr=2.46651e-3,2.46652e-3",))
    assert close.grid_members() == {"actor_lr=0.00246651": [0], "actor_lr=0.00246652": [1]}


def _sweep_result(tmp_path):
    """A two-trial sweep result built by hand (no Ray): actor_lr as trials.csv holds it."""
    from fastddpg.tools.sweeps import SweepResult, make_spec

    spec = make_spec(Config(), tmp_path / "s", grid={"actor_lr": [2.4665e-3, 3e-4]})
    lrs = [0.0024665123456789, 0.0003]
    trials = pd.DataFrame({"trial": ["t0", "t1"], "status": ["finished"] * 2, "actor_lr": lrs, "seed": [42, 42],
                           "env_steps": [1000, 1000], "episodes": [5, 5], "final_return_10": [-1234.56, -800.0],
                           "best_return_10": [-1000.0, -700.0], "exploits": [0, 0], "wall_time_s": [1.0, 1.0],
                           "run_dir": ["a", "b"]})
    history = pd.DataFrame({"trial": ["t0", "t0", "t1", "t1"], "actor_lr": [lrs[0]] * 2 + [lrs[1]] * 2,
                            "global_step": [200, 400, 200, 400], "return_10": [-1500.0, -1234.56, -900.0, -800.0]})
    return SweepResult(path=tmp_path / "s", spec=spec, trials=trials, history=history, reports=pd.DataFrame())


def test_sweep_ranking_table_shows_learning_rates_not_zero(tmp_path):
    from fastddpg.tools.sweeps.report import _ranking_table

    table = _ranking_table(_sweep_result(tmp_path))
    cells = re.findall(r"<td>([^<]*)</td>", table)
    assert "0.002467" in cells and "0.0003" in cells  # trials.csv's 0.0024665123456789
    assert "0.0" not in cells  # what it showed before: every learning rate rounded to one decimal
    assert "-1,234.6" in cells  # returns keep their one decimal


def test_sweep_legends_and_hover_show_four_significant_digits(tmp_path):
    from fastddpg.tools.sweeps import sweep_figures

    names, extras = set(), set()
    for fig in sweep_figures(_sweep_result(tmp_path)):
        for tr in fig.data:
            names.add(tr.name)
            extras.update(re.findall(r"<extra>(.*?)</extra>", tr.hovertemplate or ""))
    assert {"actor_lr=0.002467", "actor_lr=0.0003"} <= names
    assert {"actor_lr=0.002467", "actor_lr=0.0003"} <= extras
    assert not any("0.0024665123" in n for n in names | extras)


# --- error messages point to the command that does the job ---------------------------------------------------------

@pytest.mark.parametrize("entry, points_to", [("batch_size=64,128", "fastddpg sweep --grid batch_size=V1,V2"),
                                              ("hidden_sizes=64,128", "fastddpg sweep --grid hidden_sizes=V1,V2"),
                                              ("seed=0,1", "--num-seeds K")])
def test_refused_grid_fields_point_to_the_command_that_varies_them(entry, points_to):
    with pytest.raises(ConfigError) as e:
        Config(grid=(entry,))
    msg = str(e.value)
    assert points_to in msg and "\n" not in msg
    assert "separately" not in msg and "later issue" not in msg  # the stale advice to do it by hand


# --- eval refreshes report.html ---------------------------------------------------------------------------------------

def test_eval_refreshes_the_report(tmp_path, capsys):
    from fastddpg.cli import main
    from fastddpg.core.schema import REPORT_FILE
    from tests.test_rundir import short_run

    run = short_run(tmp_path / "run")
    report = run / REPORT_FILE
    before = report.read_text()
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "2", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    mean = re.search(r"return (-?\d+\.\d) \+- ", out).group(1)
    after = report.read_text()
    assert f"{mean} ±" not in before and f"{mean} ±" in after  # the report's summary shows the new evaluation
    assert f"report: {report.resolve()}" in out
    assert main(["eval", str(run), "--seed", "-1"]) == 2  # gymnasium's own refusal would be a traceback
    assert capsys.readouterr().err.strip() == "fastddpg: error: --seed=-1 is invalid: use a seed of 0 or more."


# --- --dry-run, --help and the run agree on run_dir -------------------------------------------------------------------

def test_dry_run_and_help_agree_on_run_dir(capsys):
    from fastddpg.cli import build_parser, main

    assert main(["run", "--dry-run"]) == 0
    assert 'run_dir = "auto"' in capsys.readouterr().out.splitlines()
    run = next(a for a in build_parser()._subparsers._group_actions[0].choices["run"]._actions if a.dest == "run_dir")
    assert run.help.endswith("(default: auto)")
    assert main(["run", "--dry-run", "--run-dir", "runs/x"]) == 0
    assert 'run_dir = "runs/x"' in capsys.readouterr().out.splitlines()


# --- MuJoCo's settotalmass warning, and only it, is filtered ---------------------------------------------------------

@pytest.mark.parametrize("mode", ["sync", "async"])
def test_halfcheetah_is_made_without_the_settotalmass_warning(mode, capfd):
    mujoco = pytest.importorskip("mujoco")
    import torch

    from fastddpg.envs.vector import SETTOTALMASS_WARNING, make_env

    before = mujoco.get_mju_user_warning()
    env = make_env("HalfCheetah-v5", 2, torch.device("cpu"), mode)
    env.reset(seed=0)
    env.close()
    err = capfd.readouterr().err
    assert "settotalmass" not in err, err
    assert mujoco.get_mju_user_warning() is before  # the process-wide handler is put back
    # what is filtered is MuJoCo's text: if MuJoCo ever rewords it, this test says so
    assert SETTOTALMASS_WARNING in _unfiltered_settotalmass_warning(mujoco)


def _unfiltered_settotalmass_warning(mujoco) -> str:
    """The warning MuJoCo gives for Gymnasium's half_cheetah.xml without the filter."""
    import gymnasium as gym

    seen: list[str] = []
    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(seen.append)
    try:
        gym.make("HalfCheetah-v5").close()
    finally:
        mujoco.set_mju_user_warning(previous)
    return " ".join(seen)


def test_other_mujoco_warnings_still_show(capfd):
    mujoco = pytest.importorskip("mujoco")
    from fastddpg.envs.vector import SETTOTALMASS_WARNING, settotalmass_filtered

    seen: list[str] = []
    mujoco.set_mju_user_warning(seen.append)  # a handler of the user's own keeps getting the others
    try:
        with settotalmass_filtered():
            handler = mujoco.get_mju_user_warning()
            handler(f"{SETTOTALMASS_WARNING} and will be removed")
            handler("Nan, Inf or huge value in QACC at DOF 0")
        assert seen == ["Nan, Inf or huge value in QACC at DOF 0"]
    finally:
        mujoco.set_mju_user_warning(None)
    with settotalmass_filtered():  # without one: stderr, as MuJoCo's own handler prints it
        mujoco.get_mju_user_warning()("Nan, Inf or huge value in QACC at DOF 1")
        mujoco.get_mju_user_warning()(SETTOTALMASS_WARNING)
    err = capfd.readouterr().err
    assert "WARNING: Nan, Inf or huge value in QACC at DOF 1" in err and "settotalmass" not in err


def test_pendulum_is_made_without_touching_mujoco():
    from fastddpg.envs.vector import is_mujoco_env

    assert is_mujoco_env("HalfCheetah-v5") and is_mujoco_env("Hopper-v5")
    assert not is_mujoco_env("Pendulum-v1") and not is_mujoco_env("NoSuchEnv-v0")


# --- train() and resume() print the same: nothing by default, the command's progress with progress=True ---------------

class _TrainerLine:
    """A callback that prints through the trainer's ``log``, as the compile lines do."""

    def at_start(self, trainer) -> None:
        trainer.log("a line of the trainer's own")

    def __call__(self, trainer, report) -> None:
        pass


@pytest.mark.parametrize("progress", [False, True])
def test_train_and_resume_print_alike(tmp_path, capsys, progress):
    from fastddpg import resume, train

    cfg = Config(total_steps=400, num_envs=2, update_after=10_000, start_steps=0, hidden_sizes=(8,), log_every=200,
                 compile="off", device="cpu", probe_n=4, run_dir=str(tmp_path / "r"))
    capsys.readouterr()
    train(cfg, callbacks=[_TrainerLine()], progress=progress)
    trained = capsys.readouterr()
    resume(tmp_path / "r", total_steps=800, callbacks=[_TrainerLine()], progress=progress)
    resumed = capsys.readouterr()
    for out in (trained, resumed):
        if progress:
            assert "a line of the trainer's own" in out.out
            assert "fastddpg: warning: no gradient update will happen" in out.err  # update_after 10,000
            assert re.search(r"^step +\d", out.out, re.MULTILINE)  # the reporter's lines (not a terminal here)
        else:
            assert (out.out, out.err) == ("", ""), out


# --- the sweep's own progress lines ---------------------------------------------------------------------------------

def test_sweep_progress_lines(capsys, monkeypatch):
    from fastddpg.tools import sweeps
    from fastddpg.tools.sweeps import progress

    now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    p = sweeps.SweepProgress("return_10", ["actor_lr", "seed"], min_interval=5.0)
    p.total = 3
    a, b = {"actor_lr": 2.4665e-3, "seed": 0}, {"actor_lr": 3e-4, "seed": 1}
    p.started("t0", a)
    p.started("t1", b)
    p.result("t0", a, {"return_10": -900.0})  # a new best, 0 s after the last line: held back
    now[0] += 6
    p.result("t1", b, {"return_10": -1200.0})  # not better: no line
    p.result("t1", b, {"return_10": float("nan")})  # no episode yet: ignored
    p.result("t1", b, {"return_10": -800.0})  # better, 6 s later: a line
    p.ended("t0")
    p.ended("t1", failed=True)
    p.close()  # nothing held back
    assert capsys.readouterr().out.splitlines() == [
        "sweep: 1 running, 0 finished, 0 failed of 3",
        "sweep: 2 running, 0 finished, 0 failed of 3",
        "sweep: 2 running, 0 finished, 0 failed of 3 | best return_10 -800.0: t1 (actor_lr=0.0003, seed=1)",
        "sweep: 1 running, 1 finished, 0 failed of 3 | best return_10 -800.0: t1 (actor_lr=0.0003, seed=1)",
        "sweep: 0 running, 1 finished, 1 failed of 3 | best return_10 -800.0: t1 (actor_lr=0.0003, seed=1)"]
    q = sweeps.SweepProgress("eval_return", ["actor_lr"])
    q.result("t2", a, {"return_10": -5.0, "eval_return": -150.25})  # the first best: at once
    q.result("t2", a, {"eval_return": -100.0})  # within the interval: held back until close
    q.close()
    assert capsys.readouterr().out.splitlines() == [
        "sweep: 0 running, 0 finished, 0 failed | best eval_return -150.2: t2 (actor_lr=0.002466)",
        "sweep: 0 running, 0 finished, 0 failed | best eval_return -100.0: t2 (actor_lr=0.002466)"]


def test_sweep_verbose_flag_and_resume(capsys):
    from fastddpg.cli import build_parser, main

    sweep = build_parser()._subparsers._group_actions[0].choices["sweep"]
    assert sweep.parse_args(["--out", "x"]).verbose is False and sweep.parse_args(["--verbose"]).verbose is True
    pytest.importorskip("ray.tune")
    assert main(["sweep", "--resume", "somewhere", "--verbose"]) == 2  # a resumed sweep prints as it did
    assert "--resume takes no --verbose" in capsys.readouterr().err
