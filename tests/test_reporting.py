"""Console output: plain lines when stdout is not a terminal, the rich live panel when it is, only the summary
with --quiet."""

from __future__ import annotations

import io
import os
import select
import subprocess
import sys
import time
from types import SimpleNamespace

from rich.console import Console

from fastddpg.cli import main
from fastddpg.core.schema import EpisodeRow, Last10, Report
from fastddpg.reports import reporting
from fastddpg.reports.reporting import PlainReporter, RichReporter, make_reporter
from tests.test_rundir import SHORT_RUN

CLEAN_ENV = {k: v for k, v in os.environ.items()
             if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR", "COLUMNS", "LINES")}


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastddpg.cli", *args], capture_output=True, text=True,
                          timeout=300, env=CLEAN_ENV, **kw)


def test_plain_lines_when_stdout_is_a_pipe(tmp_path):
    p = cli("run", *SHORT_RUN, "--run-dir", str(tmp_path / "run"))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert "\x1b[" not in p.stdout  # no escape codes in a log file
    steps = [line for line in lines if line.startswith("step ")]
    assert [s.split("|")[0].split()[1] for s in steps] == ["200/800", "400/800", "600/800", "800/800"]
    assert "return" in steps[1] and "critic" in steps[1] and "Q " in steps[1] and "steps/s" in steps[1]
    assert lines[-3].startswith("done: 4 episodes, 800 env steps") and lines[-2] == f"run directory: {tmp_path}/run"
    assert lines[-1] == f"report: {tmp_path}/run/report.html"


def test_quiet_prints_only_the_summary(tmp_path, capsys):
    assert main(["run", *SHORT_RUN, "--quiet", "--run-dir", str(tmp_path / "run")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("done: ") and lines[1].startswith("run directory: ")
    assert lines[2].startswith("report: ") and lines[2].endswith("report.html")


def test_live_panel_on_a_terminal(tmp_path):
    """stdout is a pseudo-terminal: the rich panel is drawn, no plain lines."""
    master, slave = os.openpty()
    env = {**CLEAN_ENV, "TERM": "xterm-256color", "COLUMNS": "140"}
    proc = subprocess.Popen([sys.executable, "-m", "fastddpg.cli", "run", *SHORT_RUN, "--run-dir",
                             str(tmp_path / "run")], stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    out = b"".join(chunks).decode(errors="replace")
    for needle in ("env steps", "eta", "env steps/s", "updates/s", "return (10-ep mean)", "critic loss",
                   "mean TD target", "800/800", "done: 4 episodes"):
        assert needle in out, needle
    assert "\x1b[" in out and "step       200/800" not in out


def fake_trainer(step: int, updates: int, episodes: int) -> SimpleNamespace:
    return SimpleNamespace(cfg=SimpleNamespace(total_steps=1000, env="Pendulum-v1"), global_step=step,
                           num_updates=updates, num_episodes=episodes, num_envs=4)


def fake(trainer: SimpleNamespace, returns: list[float], row: dict | None) -> tuple[SimpleNamespace, Report]:
    """(trainer, the report it would hand its callbacks) with episodes of ``returns`` and update ``row``."""
    episodes = [EpisodeRow(0, i, 0, trainer.global_step, r, 200, 0.0) for i, r in enumerate(returns)]
    last10 = Last10(episodes)
    return trainer, Report(global_step=trainer.global_step, vector_steps=0, num_updates=trainer.num_updates,
                           num_episodes=trainer.num_episodes, member_episodes=(trainer.num_episodes,),
                           episodes=episodes, updates=[row] if row is not None else [], probes=[],
                           return_10=last10.value, member_return_10=last10.members(1), wall_time=0.0,
                           eval_seconds=0.0, compile_seconds=0.0)


ROW = {"update": 90, "global_step": 500, "critic_loss": 0.125, "actor_loss": 3.5, "q_mean": -3.25,
       "y_mean": -3.5, "updates_in_row": 90, "env_steps_per_sec": 1000.0, "updates_per_sec": 900.0,
       "wall_time": 1.0}


def test_rich_reporter_shows_the_numbers():
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=140, color_system=None)
    rep = RichReporter(1000, console=console, refresh_per_second=20)
    with rep:
        rep(*fake(fake_trainer(500, 90, 2), [-1200.0, -1000.0], ROW))
        rep(*fake(fake_trainer(1000, 590, 2), [], {**ROW, "critic_loss": 0.0625}))
    out = buf.getvalue()
    for needle in ("1000/1000", "100%", "eta", "return (last)", "-1000.0", "-1100.0", "critic loss", "0.0625",
                   "actor loss", "3.5", "mean Q", "-3.25", "mean TD target", "episodes", "updates/s"):
        assert needle in out, needle


def test_rich_reporter_redraws_at_most_at_its_rate():
    rep = RichReporter(1000, Console(file=io.StringIO(), force_terminal=True), refresh_per_second=1e-6)
    draws = []
    orig = rep.live.refresh
    rep.live.refresh = lambda: (draws.append(rep.t.steps), orig())[1]
    with rep:
        for step in (100, 200, 300):
            rep(*fake(fake_trainer(step, 0, 0), [], None))
        assert draws[-1:] == [100]  # drawn at the first report, then throttled
    assert draws[-1] == 300  # and once more at the end, with the last numbers


def test_plain_reporter_line():
    lines: list[str] = []
    rep = PlainReporter(lines.append)
    rep(*fake(fake_trainer(200, 0, 0), [], None))
    rep(*fake(fake_trainer(500, 90, 2), [-1200.0, -1000.0], ROW))
    assert lines[0].startswith("step       200/1,000 | ep     0") and "critic" not in lines[0]
    assert "no episode finished yet (episodes are 200 steps; each of the 4 envs has run 50)" in lines[0]
    assert "return  -1000.0 (last10  -1100.0)" in lines[1] and "critic 0.125" in lines[1]
    assert "Q -3.25 y -3.5" in lines[1]


def test_make_reporter_picks_by_terminal():
    assert make_reporter(True, 10) is None
    term = Console(file=io.StringIO(), force_terminal=True)
    assert isinstance(make_reporter(False, 10, term), RichReporter)
    assert isinstance(make_reporter(False, 10, Console(file=io.StringIO(), force_terminal=False)), PlainReporter)


def test_a_resumed_run_counts_its_rates_from_where_it_started(monkeypatch):
    """After --resume at env step 5,000, the first report's steps/s counts the 200 new steps, not 5,200."""
    now = [100.0]
    monkeypatch.setattr(reporting.time, "perf_counter", lambda: now[0])
    lines: list[str] = []
    rep = PlainReporter(lines.append)
    rep.at_start(fake_trainer(5000, 4000, 50))
    now[0] = 102.0
    rep(*fake(fake_trainer(5200, 4200, 51), [-150.0], None))
    assert rep.t.steps_per_sec == 100.0 and rep.t.updates_per_sec == 100.0
    assert lines[0].endswith("100 steps/s | 100 upd/s")


def test_eta_comes_from_the_runs_own_steps_and_time(monkeypatch):
    """Reports 100 s apart (longer than rich's estimation window): the ETA is still shown, from the run's rate."""
    now = [0.0]
    monkeypatch.setattr(reporting.time, "perf_counter", lambda: now[0])
    buf = io.StringIO()
    rep = RichReporter(1000, console=Console(file=buf, force_terminal=True, width=140, color_system=None))
    with rep:
        rep.at_start(fake_trainer(0, 0, 0))
        now[0] = 100.0
        rep(*fake(fake_trainer(250, 0, 0), [], None))
        assert rep.t.eta_seconds(1000) == 300.0
    out = buf.getvalue()
    assert "eta 0:05:00" in out and "No episode finished yet (episodes are 200 steps" in out


def test_summary_without_episodes_says_why():
    lines: list[str] = []
    summary = {"episodes": 0, "env_steps": 3000, "updates": 0, "wall_time_s": 1.0, "env_steps_per_sec": 3000.0,
               "updates_per_sec": 0.0, "replay_ratio": 0.0, "last10_mean_return": float("nan"), "num_envs": 4}
    reporting.print_summary(summary, lines.append, env_id="MountainCarContinuous-v0")
    assert lines[0].endswith("no episode finished yet (episodes are 999 steps; each of the 4 envs has run 750)")
    assert "nan" not in lines[0]
