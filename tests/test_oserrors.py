"""A full disk or another OS error while writing the run directory: one line (what failed, what is safe, what to
do), exit 74, no traceback, nothing half-written, and `fastddpg run --resume` works once the cause is gone.

Each error is made at one write site by a file whose write (or open) raises ``OSError(errno)``: a checkpoint, a
CSV append, the report, the final weights, an export. The slow test fills a real small filesystem (a tmpfs in a
private mount namespace, where the machine allows one)."""

from __future__ import annotations

import builtins
import csv
import errno
import fnmatch
import os
import pickle
import shutil
import subprocess
import sys
import threading
from collections import namedtuple
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import fastddpg
from fastddpg.cli import main
from fastddpg.core import fileio
from fastddpg.core.config import Config
from fastddpg.core.fileio import IO_EXIT_CODE, TMP_SUFFIX, os_error_of
from fastddpg.runs import rundir
from fastddpg.runs.checkpoint import checkpoint_bytes, disk_space_warning, list_checkpoints, save_checkpoint
from fastddpg.runs.rundir import load_run
from fastddpg.training.failsafe import RUNDIR_EXIT_CODE, RunDirError
from fastddpg.training.trainer import Trainer
from tests.conftest import stop_at  # stop_at(monkeypatch, step, action): action() after the report at step

ROOT = Path(__file__).resolve().parent.parent
ENV_ID = "FastDDPGTest/OSErrFixed-v0"
EPISODE_LEN = 10


class FixedEnv(gym.Env):
    """Episodes of exactly EPISODE_LEN steps; obs (2,) from the env's seeded RNG."""

    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.np_random.uniform(-1, 1, 2).astype(np.float32), {}

    def step(self, action):
        obs = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return obs, -float(action[0] - obs[0]) ** 2, False, False, {}


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=FixedEnv, max_episode_steps=EPISODE_LEN)

# 2 envs, 200 env steps: 20 episodes, a report every 20 env steps, checkpoints at 60, 120, 180 and 200
FLAGS = ["--num-envs", "2", "--total-steps", "200", "--hidden-sizes", "8", "--batch-size", "8", "--replay-size",
         "1000", "--start-steps", "40", "--update-after", "20", "--updates-per-step", "0.5", "--log-every", "20",
         "--probe-n", "4", "--probe-every-episodes", "4", "--device", "cpu", "--compile", "off", "--quiet",
         "--checkpoint-every", "60"]
BASE = ["run", "--env", ENV_ID, *FLAGS]


# --- making a write fail ----------------------------------------------------------------------------------------

class FailingFile:
    """A file whose writes raise OSError(err) once ``limit`` bytes went through; the bytes up to the limit are
    written first, as a disk that fills part way through a write leaves them."""

    def __init__(self, f, err: int, limit: int) -> None:
        self._f, self.err, self.limit, self.n = f, err, limit, 0

    def write(self, b):
        room = self.limit - self.n
        if len(b) > room:
            if room > 0:
                self._f.write(b[:room])
            self.n = self.limit
            raise OSError(self.err, os.strerror(self.err))
        self.n += len(b)
        return self._f.write(b)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def __getattr__(self, name):
        return getattr(self._f, name)


def fail_atomic_write(monkeypatch, name: str, err: int, limit: int = 1000) -> None:
    """Every atomic write of a file called ``name`` (a glob) fails after ``limit`` bytes (torch.save's too)."""
    init = fileio._RecordingFile.__init__

    def wrapped(self, f):
        hit = fnmatch.fnmatch(Path(f.name).name, f".{name}.*{TMP_SUFFIX}")
        init(self, FailingFile(f, err, limit) if hit else f)

    monkeypatch.setattr(fileio._RecordingFile, "__init__", wrapped)


def fail_atomic_open(monkeypatch, name: str, err: int) -> None:
    """Opening the temporary file of ``name`` (a glob) fails: too many open files, a read-only filesystem."""
    def fake_open(path, *args, **kwargs):
        if fnmatch.fnmatch(Path(path).name, f".{name}.*{TMP_SUFFIX}"):
            raise OSError(err, os.strerror(err), str(path))
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(fileio, "open", fake_open, raising=False)


def fail_csv_append(monkeypatch, table: str, err: int, nth: int, limit: int = 12) -> None:
    """The ``nth`` append to ``table``.csv (and every later one) writes ``limit`` bytes, then fails."""
    calls = {"n": 0}

    def fake_open(path, mode="r", *args, **kwargs):
        f = builtins.open(path, mode, *args, **kwargs)  # noqa: SIM115 (the caller's `with` closes it)
        if Path(path).name == f"{table}.csv" and mode == "a":
            calls["n"] += 1
            if calls["n"] >= nth:
                return FailingFile(f, err, limit)
        return f

    monkeypatch.setattr(rundir, "open", fake_open, raising=False)


def run_config(run_dir: Path) -> Config:
    """BASE's run, from Python."""
    return Config(env=ENV_ID, num_envs=2, total_steps=200, hidden_sizes=(8,), batch_size=8, replay_size=1000,
                  start_steps=40, update_after=20, updates_per_step=0.5, log_every=20, probe_n=4,
                  probe_every_episodes=4, device="cpu", compile="off", quiet=True, checkpoint_every=60,
                  run_dir=str(run_dir))


# --- what must hold afterwards -----------------------------------------------------------------------------------

def run_cli(capsys, argv: list[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("fastddpg: error: ")]
    assert len(lines) == 1, err
    return lines[0].removeprefix("fastddpg: error: ")


def assert_whole(run_dir: Path) -> None:
    """No temporary file left; every CSV ends with a complete row (no row cut short)."""
    assert [p for p in run_dir.rglob(f"*{TMP_SUFFIX}")] == []
    for table in ("episodes", "updates", "probes"):
        text = (run_dir / f"{table}.csv").read_text()
        assert text.endswith("\n"), table
        rows = list(csv.reader(text.splitlines()))
        assert all(len(r) == len(rows[0]) for r in rows), table


def assert_resumes(capsys, run_dir: Path) -> None:
    """`fastddpg run --resume` finishes the run: every episode once, in order; a finished run's files."""
    code, err = run_cli(capsys, ["run", "--resume", str(run_dir)])
    assert code == 0, err
    run = load_run(run_dir)
    assert run.episodes["episode"].tolist() == list(range(1, 21))
    assert run.updates["update"].is_unique and run.updates["update"].is_monotonic_increasing
    assert run.summary["env_steps"] == 200 and "stopped_by" not in run.summary
    assert (run_dir / "report.html").is_file() and (run_dir / "actor.pt").is_file()
    assert_whole(run_dir)


def ckpt(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:012d}.pt"


# --- the write sites ---------------------------------------------------------------------------------------------

def test_full_disk_at_a_checkpoint(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "r"
    fail_atomic_write(monkeypatch, "step_000000000120.pt", errno.ENOSPC)
    code, err = run_cli(capsys, [*BASE, "--run-dir", str(run_dir)])
    assert code == IO_EXIT_CODE == 74
    line = one_error_line(err)
    size = ckpt(run_dir, 60).stat().st_size
    assert line == (f"cannot write {ckpt(run_dir, 120)}: No space left on device (ENOSPC) at env step 120; safe: "
                    f"the checkpoint {ckpt(run_dir, 60)} (env step 60) and the metrics up to env step 120; free about "
                    f"{size / 1e3:,.0f} kB (one checkpoint) on that filesystem, then resume with: fastddpg run "
                    f"--resume {run_dir}")
    assert list_checkpoints(run_dir) == [ckpt(run_dir, 60)]  # the one before stayed whole, no partial one
    assert_whole(run_dir)
    assert load_run(run_dir).summary["stopped_by"] == "OSError: No space left on device"
    monkeypatch.undo()
    assert_resumes(capsys, run_dir)


def test_full_csv_append_cuts_the_tables_back_to_the_last_whole_report(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "r"
    fail_csv_append(monkeypatch, "updates", errno.EIO, nth=4)  # reports with updates: 20, 40, 60, then 80 fails
    code, err = run_cli(capsys, [*BASE, "--run-dir", str(run_dir)])
    assert code == 74
    line = one_error_line(err)
    assert line.startswith(f"cannot write {run_dir / 'updates.csv'}: Input/output error (EIO) at env step 80; "
                           f"safe: the checkpoint {ckpt(run_dir, 60)} (env step 60) and the metrics up to env step "
                           "60; check the disk")
    assert line.endswith(f"then resume with: fastddpg run --resume {run_dir}")
    assert_whole(run_dir)
    run = load_run(run_dir)
    # the episodes of the report that failed were appended before updates.csv failed: cut back with it
    assert run.updates["global_step"].max() == 60 and run.episodes["global_step"].max() == 60
    assert run.probes.empty or run.probes["global_step"].max() <= 60
    monkeypatch.undo()
    assert_resumes(capsys, run_dir)


@pytest.mark.parametrize("name, err, remedy", [
    ("report.html", errno.EDQUOT, "of your disk quota, or raise the quota"),
    ("actor.pt", errno.ENOSPC, "(one checkpoint) on that filesystem"),
])
def test_failure_after_the_last_step_is_finished_by_resume(tmp_path, monkeypatch, capsys, name, err, remedy):
    """The run trained to the end and wrote its last checkpoint; the report or the final weights did not fit.
    Resuming trains nothing more and writes them."""
    run_dir = tmp_path / "r"
    fail_atomic_write(monkeypatch, name, err)
    code, out = run_cli(capsys, [*BASE, "--run-dir", str(run_dir)])
    assert code == 74
    line = one_error_line(out)
    assert line.startswith(f"cannot write {run_dir / name}: {os.strerror(err)} ({errno.errorcode[err]}) at env "
                           f"step 200; safe: the checkpoint {ckpt(run_dir, 200)} (env step 200)")
    assert remedy in line and line.endswith(f"then resume with: fastddpg run --resume {run_dir}")
    assert not (run_dir / name).exists()
    assert_whole(run_dir)
    episodes = load_run(run_dir).episodes
    monkeypatch.undo()
    assert_resumes(capsys, run_dir)
    assert load_run(run_dir).episodes.equals(episodes)  # nothing trained again


@pytest.mark.parametrize("err, remedy", [
    (errno.EMFILE, "raise the open-file limit (ulimit -n) or close other programs"),
    (errno.EROFS, "make the filesystem writable again (it is read-only now)"),
])
def test_open_failing_before_the_first_checkpoint(tmp_path, monkeypatch, capsys, err, remedy):
    """Nothing to resume from: the line says so, and gives no resume command."""
    run_dir = tmp_path / "r"
    fail_atomic_open(monkeypatch, "step_000000000060.pt", err)
    code, out = run_cli(capsys, [*BASE, "--run-dir", str(run_dir)])
    assert code == 74
    line = one_error_line(out)
    assert line == (f"cannot write {ckpt(run_dir, 60)}: {os.strerror(err)} ({errno.errorcode[err]}) at env step 60; "
                    "safe: the metrics up to env step 60 (no checkpoint was written yet, so there is nothing to "
                    f"resume); {remedy}, then start the run again (after removing {run_dir}, or with another "
                    "--run-dir)")
    assert list_checkpoints(run_dir) == []
    assert_whole(run_dir)
    monkeypatch.undo()
    code, out = run_cli(capsys, ["run", "--resume", str(run_dir)])
    assert code == 2 and "no checkpoint" in out


def test_run_directory_removed_during_the_run(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "r"
    stop_at(monkeypatch, 100, lambda: shutil.rmtree(run_dir))
    code, out = run_cli(capsys, [*BASE, "--run-dir", str(run_dir)])
    assert code == 74
    line = one_error_line(out)
    assert line == (f"cannot write {run_dir / 'episodes.csv'}: No such file or directory (ENOENT) at env step 120; "
                    f"the run directory {run_dir} no longer exists, so nothing of this run is left to resume: restore "
                    "the directory, or start a new run")
    assert not run_dir.exists()  # nothing wrote a new, partial run directory


def test_tensorboard_event_file_on_a_full_disk(tmp_path, monkeypatch, capsys):
    """TensorBoard writes in a thread of its own; its error comes out as the same one line, no thread traceback."""
    pytest.importorskip("tensorboard")
    from tensorboard.summary.writer import record_writer

    run_dir = tmp_path / "r"
    full = {"now": False}
    write, flush = record_writer.RecordWriter.write, Trainer.flush

    def failing_write(self, data):
        if full["now"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write(self, data)

    def flushing(self):
        full["now"] = full["now"] or self.global_step == 100
        flush(self)

    monkeypatch.setattr(record_writer.RecordWriter, "write", failing_write)
    monkeypatch.setattr(Trainer, "flush", flushing)
    monkeypatch.setattr(threading, "excepthook", threading.__excepthook__)  # Python's own: prints the traceback
    code, out = run_cli(capsys, [*BASE, "--tensorboard", "--run-dir", str(run_dir)])
    assert code == 74
    line = one_error_line(out)
    assert line.startswith(f"cannot write {run_dir / 'tensorboard'}: No space left on device (ENOSPC) at env step "
                           f"100; safe: the checkpoint {ckpt(run_dir, 60)} (env step 60)")
    assert_whole(run_dir)
    monkeypatch.undo()
    assert_resumes(capsys, run_dir)


def test_an_os_error_outside_the_run_directory_is_not_called_a_run_directory_error(tmp_path, monkeypatch, capsys):
    """An env that fails to read its own file mid-run is not a disk problem of the run: no resume advice."""
    run_dir = tmp_path / "r"

    def missing_asset():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(tmp_path / "asset.xml"))

    stop_at(monkeypatch, 100, missing_asset)
    with pytest.raises(FileNotFoundError) as info:
        fastddpg.train(run_config(run_dir))
    assert type(info.value) is FileNotFoundError
    # finished as after any other error, which the summary names
    assert load_run(run_dir).summary["stopped_by"] == f"FileNotFoundError: [Errno 2] No such file or directory: " \
        f"'{tmp_path / 'asset.xml'}'"
    assert (run_dir / "report.html").is_file()
    code, out = run_cli(capsys, [*BASE, "--run-dir", str(tmp_path / "r2")])
    assert code == 74 and one_error_line(out) == f"{tmp_path / 'asset.xml'}: No such file or directory (ENOENT)"


def test_cli_in_a_subprocess(tmp_path):
    """The command's own process: its stderr and exit status; then `fastddpg run --resume` in another."""
    run_dir = tmp_path / "r"
    flags = [f for f in FLAGS if f != "--quiet"]  # the live panel must not print a traceback either
    inject = (
        "import errno, sys; sys.path.insert(0, sys.argv.pop(1)); import test_oserrors as t; "
        "import pytest; mp = pytest.MonkeyPatch(); "
        "t.fail_atomic_write(mp, 'step_000000000120.pt', errno.ENOSPC); "
        "from fastddpg.cli import main; sys.exit(main(sys.argv[1:]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", inject, str(Path(__file__).parent), *BASE[:3], *flags,
                        "--run-dir", str(run_dir)], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 74, p.stderr
    line = one_error_line(p.stderr)
    assert line.startswith(f"cannot write {ckpt(run_dir, 120)}: No space left on device (ENOSPC)")
    assert p.stderr.strip().splitlines()[-1] == f"fastddpg: error: {line}"
    assert_whole(run_dir)
    # resumed in this process, which shares nothing with the one that wrote the run but its directory
    assert main(["run", "--resume", str(run_dir), "--quiet"]) == 0
    assert load_run(run_dir).episodes["episode"].tolist() == list(range(1, 21))


# --- Python, export, sweeps ---------------------------------------------------------------------------------------

def test_python_api_raises_run_dir_error(tmp_path, monkeypatch):
    run_dir = tmp_path / "r"
    fail_atomic_write(monkeypatch, "step_000000000120.pt", errno.ENOSPC)
    with pytest.raises(fastddpg.RunDirError) as info:
        fastddpg.train(run_config(run_dir))
    e = info.value
    assert isinstance(e, OSError) and e.errno == errno.ENOSPC and e.exit_code == 74
    assert e.run_dir == run_dir and e.checkpoint == ckpt(run_dir, 60) and e.checkpoint_step == 60
    assert e.global_step == 120 and e.filename == str(ckpt(run_dir, 120))
    assert e.resume_command == f"fastddpg run --resume {run_dir}"
    assert str(pickle.loads(pickle.dumps(e))) == str(e)  # Ray sends a trial's error to the driver pickled


def test_export_on_a_full_disk(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "r"
    assert main([*BASE, "--run-dir", str(run_dir)]) == 0
    capsys.readouterr()
    fail_atomic_write(monkeypatch, "actor.ts.pt", errno.ENOSPC)
    code, out = run_cli(capsys, ["export", str(run_dir)])
    assert code == 74
    assert one_error_line(out) == f"{run_dir / 'actor.ts.pt'}: No space left on device (ENOSPC)"
    assert not (run_dir / "actor.ts.pt").exists() and list(run_dir.rglob(f"*{TMP_SUFFIX}")) == []


def test_sweep_trial_error_line():
    from fastddpg.tools.sweeps import SweepResult, trial_error_line
    from fastddpg.tools.sweeps.results import _with_errors

    e = RunDirError(errno.ENOSPC, None, "/s/trials/t1/updates.csv", run_dir="/s/trials/t1", global_step=40,
                    reported_step=20, checkpoint_bytes=5000, run_dir_exists=True)

    class RayTaskError(Exception):  # what Ray hands the driver: the worker's traceback, the exception as cause
        cause = e

        def __str__(self):
            return f"ray::ImplicitFunc.train()\n  File 'x.py', line 1\nfastddpg.failsafe.RunDirError: {e}"

    assert trial_error_line(RayTaskError()) == str(e)
    assert trial_error_line(ValueError("Traceback ...\nValueError: bad")) == "ValueError: bad"
    import pandas as pd

    result = _with_errors(SweepResult(Path("/s"), None, pd.DataFrame({"trial": ["t0", "t1"]}), None, None),
                          {"t1": str(e)})
    assert result.trials["error"].tolist() == ["", str(e)] and result.errors == {"t1": str(e)}


# --- the start-of-run warning -------------------------------------------------------------------------------------

Usage = namedtuple("Usage", "total used free")


def small_trainer(**kw) -> Trainer:
    return Trainer(Config(env=ENV_ID, num_envs=2, hidden_sizes=(8,), batch_size=8, device="cpu", compile="off",
                          quiet=True, **kw))


def test_checkpoint_size_estimate_matches_a_full_buffer_checkpoint(tmp_path):
    trainer = small_trainer(replay_size=50_000, total_steps=100_000)
    trainer.buffer.data.normal_()
    trainer.buffer.size = trainer.buffer.capacity  # as full as it gets
    size = save_checkpoint(trainer, tmp_path).stat().st_size
    assert 0.9 < checkpoint_bytes(trainer) / size < 1.1
    trainer.env.close()


def test_disk_space_warning(tmp_path, monkeypatch):
    trainer = small_trainer(replay_size=50_000, total_steps=100_000, keep_checkpoints=2)
    one = checkpoint_bytes(trainer)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10**12, 0, 3 * one + 1))
    assert disk_space_warning(trainer, tmp_path) is None  # room for 2 kept + the next
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10**12, 0, 3 * one - 1))
    warning = disk_space_warning(trainer, tmp_path)
    assert warning is not None and "\n" not in warning
    assert f"one checkpoint of this run takes about {one / 1e6:,.1f} MB and it keeps 2" in warning
    trainer.env.close()


def test_run_warns_once_at_the_start(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10**9, 10**9 - 2000, 2000))
    code, err = run_cli(capsys, [*BASE, "--run-dir", str(tmp_path / "r")])
    assert code == 0  # a warning, not a stop: the run goes on (and here has the room it needs)
    warnings = [line for line in err.splitlines() if line.startswith("fastddpg: warning: ")]
    assert len(warnings) == 1 and f"{tmp_path / 'r'} has 2 kB free" in warnings[0]
    assert "--keep-checkpoints" in warnings[0]


# --- the pieces ---------------------------------------------------------------------------------------------------

def test_exit_code_and_export():
    assert fastddpg.RunDirError is RunDirError and "RunDirError" in fastddpg.__all__
    assert RunDirError.exit_code == RUNDIR_EXIT_CODE == IO_EXIT_CODE == 74


def test_os_error_of_finds_the_disk_error_only():
    full = OSError(errno.ENOSPC, "No space left on device")
    wrapped = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 826560 vs 826448")
    wrapped.__context__ = full
    assert os_error_of(full) is full and os_error_of(wrapped) is full
    assert os_error_of(ConnectionResetError(errno.ECONNRESET, "reset")) is None
    assert os_error_of(BrokenPipeError(errno.EPIPE, "pipe")) is None
    bug = KeyError("x")
    bug.__context__ = full
    assert os_error_of(bug) is None  # a bug while handling a disk error stays a bug


def test_torch_save_error_comes_out_as_the_os_error(tmp_path, monkeypatch):
    fail_atomic_write(monkeypatch, "x.pt", errno.ENOSPC, limit=100)
    with pytest.raises(OSError) as info:
        fileio.atomic_save({"w": torch.zeros(10_000)}, tmp_path / "x.pt")
    assert type(info.value) is OSError and info.value.errno == errno.ENOSPC
    assert info.value.filename == str(tmp_path / "x.pt")
    assert list(tmp_path.iterdir()) == []


# --- a real small filesystem -------------------------------------------------------------------------------------

SMALL_FS = """
set -e
mount -t tmpfs -o size=3m tmpfs "$1"
set +e
python -m fastddpg.cli run --env Pendulum-v1 --num-envs 4 --total-steps 1200 --checkpoint-every 400 \\
    --updates-per-step 0.1 --log-every 200 --device cpu --compile off --threads 1 --quiet --run-dir "$1/r"
echo "first-exit=$?"
find "$1" -name '*.tmp' | sed 's/^/tmp-left: /'
mount -o remount,size=64m "$1"
python -m fastddpg.cli run --resume "$1/r" --quiet > /dev/null
echo "resume-exit=$?"
python -c "import sys, pandas as pd; e = pd.read_csv(sys.argv[1]); print('episodes', e.episode.tolist())" \\
    "$1/r/episodes.csv"
"""


@pytest.mark.slow
def test_real_full_filesystem(tmp_path):
    """A 3 MB tmpfs: the second checkpoint (about 2.3 MB with 256x256 networks) does not fit."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare")
    mnt = tmp_path / "small"
    mnt.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {mnt}"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {probe.stderr.strip()}")
    p = subprocess.run(["unshare", "-rm", "sh", "-c", SMALL_FS, "sh", str(mnt)], capture_output=True, text=True,
                       env=env, timeout=600)
    out = p.stdout + p.stderr
    assert "first-exit=74" in out and "resume-exit=0" in out, out
    assert "tmp-left" not in out and "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("fastddpg: error: ")]
    assert len(errors) == 1, out
    assert "No space left on device (ENOSPC)" in errors[0]
    assert errors[0].endswith(f"then resume with: fastddpg run --resume {mnt / 'r'}")
    episodes = eval(next(line for line in out.splitlines() if line.startswith("episodes ")).split(" ", 1)[1])
    assert episodes == list(range(1, len(episodes) + 1)) and episodes  # every episode once, in order


@pytest.mark.slow
def test_sweep_trial_on_a_full_disk(tmp_path, local_ray):
    """A trial whose run directory fills up ends with the one line in trials.csv, the report and result.errors."""
    pytest.importorskip("ray.tune", reason="Ray Tune is not installed (pip install -e '.[sweep]')")
    import pandas as pd

    def full_disk(trainer, metrics):  # runs in the trial's process, at a report: as a write there would fail
        if trainer.cfg.seed == 1 and trainer.global_step >= 400:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(trainer.cfg.run_dir) / "reports.csv"))

    tiny = dict(env="Pendulum-v1", num_envs=2, total_steps=800, log_every=200, hidden_sizes=(16,), batch_size=32,
                start_steps=200, update_after=200, updates_per_step=0.25, device="cpu", compile="off",
                checkpoint_every=200)
    import html

    # not retried: the line of its one failure; retried (the default), each try resumes and fails at a later report,
    # the last at the report sent after its run directory is finished, and the line is the last try's
    from fastddpg.tools.sweeps import DEFAULT_MAX_FAILURES

    for max_failures in (0, DEFAULT_MAX_FAILURES):
        step = min(400 + 200 * max_failures, 800)  # each try resumes at its checkpoint and fails one report on
        out = tmp_path / f"s{max_failures}"
        result = fastddpg.sweep(Config(**tiny), {"seed": [0, 1]}, out=out, report_hook=full_disk,
                                max_failures=max_failures)
        trials = pd.read_csv(out / "trials.csv", keep_default_na=False).set_index("seed")
        line = trials.loc[1, "error"]
        run_dir = Path(trials.loc[1, "run_dir"])
        assert trials.loc[1, "status"] == "error" and trials.loc[0, "status"] == "finished"
        assert line.startswith(f"cannot write {run_dir / 'reports.csv'}: No space left on device (ENOSPC) at env "
                               f"step {step}")
        assert line.endswith(f"then resume with: fastddpg run --resume {run_dir}") and "\n" not in line
        assert trials.loc[0, "error"] == "" and list(result.errors.values()) == [line]
        assert html.escape(line) in (out / "report.html").read_text()


def test_video_encoder_on_a_full_disk(tmp_path, monkeypatch):
    """ffmpeg writes the mp4 in its own process, so a full disk reaches fastddpg as a broken pipe: with the disk
    full that becomes ENOSPC naming the video (one line, exit 74, via the CLI's OSError path) and the partial file
    goes; with space left the encoder's own error passes through unchanged."""
    pytest.importorskip("pygame", reason="the video extra is not installed")
    imageio = pytest.importorskip("imageio.v2", reason="the video extra is not installed")
    from fastddpg.learning.networks import Actor
    from fastddpg.runs import video

    class BrokenEncoder:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def append_data(self, frame):
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

    def get_writer(path, **kwargs):
        Path(path).write_bytes(b"partial")
        return BrokenEncoder()

    monkeypatch.setattr(imageio, "get_writer", get_writer)
    actor = Actor(3, 1, (8,), torch.tensor([-2.0]), torch.tensor([2.0]))
    for free, expected in ((0, errno.ENOSPC), (10**9, errno.EPIPE)):
        monkeypatch.setattr(video.shutil, "disk_usage", lambda p, free=free: shutil._ntuple_diskusage(10**9, 0, free))
        with pytest.raises(OSError) as caught:
            video.record_video(actor, "Pendulum-v1", tmp_path, 1, 0)
        assert caught.value.errno == expected
        assert not [p for p in (tmp_path / "videos").iterdir()]  # the partial file is gone either way
    monkeypatch.setattr(video.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 0, 0))
    with pytest.raises(OSError) as caught:
        video.record_video(actor, "Pendulum-v1", tmp_path, 1, 0)
    assert caught.value.filename.startswith(str(tmp_path / "videos"))
    assert fileio.os_error_line(caught.value).endswith("No space left on device (ENOSPC)")
