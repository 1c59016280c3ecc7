"""Console reporting. Reporters are trainer callbacks: they only see the `fastddpg.core.schema.Report` the trainer
builds at a flush (every ``--log-every`` env steps) from data it already pulled to the host, so they never add a
device sync of their own.

- `RichReporter`: a live panel (progress bar with elapsed time and ETA, throughput, episodes, returns,
  losses, Q vs TD target) when stdout is a terminal; redrawn at reports, at most ``refresh_per_second`` times
  a second, and never from a background thread (a redraw costs milliseconds of Python: it must not compete
  with the training loop between reports).
- `PlainReporter`: one plain line per flush when stdout is not a terminal (CI, a pipe, a log file).
- ``--quiet``: no reporter; only `print_summary` at the end.

`make_reporter` picks one. Reporters are also context managers (the live panel starts and stops there). With
``--eval-every`` both print `eval_line` at each evaluation (``on_eval``), and `print_summary` adds the evaluations'
count, time and best return.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from typing import Any

from ..core.schema import Report

# update-row keys that are bookkeeping, not metrics
_NOT_METRICS = frozenset({"update", "global_step", "updates_in_row", "env_steps_per_sec", "updates_per_sec",
                          "wall_time"})
_KNOWN_METRICS = ("critic_loss", "actor_loss", "q_mean", "y_mean")
MAX_GRID_ROWS = 8  # grid points shown in the live panel


def no_episode_yet(env_id: str, num_envs: int, env_steps: int) -> str:
    """'No episode finished yet (episodes are N steps; ...)': why there is no return to show."""
    from ..envs.vector import episode_limit

    limit = episode_limit(env_id)
    if limit is None:
        return "No episode finished yet."
    per_env = env_steps // max(1, num_envs)
    envs = f"each of the {num_envs} envs has run {per_env:,}" if num_envs > 1 else f"the env has run {per_env:,}"
    return f"No episode finished yet (episodes are {limit:,} steps; {envs})."


class _Tracker:
    """Host-side numbers a reporter shows: the reports' returns (their `fastddpg.core.schema.Last10` values), each
    member's last return, throughput between calls, the last update row, and the ETA from this process's own
    steps and wall time."""

    def __init__(self) -> None:
        self.last: dict[int, float] = {}  # each member's last return (a single run's: {0: it}) this process saw
        self.mean10 = math.nan  # the run's return_10 (a population's: the mean of its members' last-10 means)
        self.member_10: tuple[float, ...] = ()  # each member's last-10 mean (NaN before its first episode)
        self.groups: dict[str, list[int]] = {}  # a population's grid points: label -> members
        self.episodes = 0
        self.members = 1  # a population's counts are per member, its episodes over all members: labelled so
        self.row: dict[str, float] | None = None
        self.steps = self.updates = 0
        self.steps_per_sec = self.updates_per_sec = math.nan
        self._t = self._t0 = time.perf_counter()
        self._last_steps = self._last_updates = self._steps0 = 0
        self._eval_seconds = 0.0  # the trainer's evaluation time at the last call: rates leave it out

    def start(self, trainer: Any) -> None:
        """Count from where the trainer starts (a resumed run starts at its checkpoint's step, not at 0)."""
        self._t = self._t0 = time.perf_counter()
        self.steps = self._last_steps = self._steps0 = trainer.global_step
        self.updates = self._last_updates = trainer.num_updates
        self.episodes = trainer.num_episodes
        self.members = getattr(trainer, "members", 1)
        self._eval_seconds = getattr(trainer, "eval_seconds", 0.0)

    def eta_seconds(self, total: int) -> float:
        """Seconds left at this run's average rate since it started (NaN before it has a rate)."""
        done = self.steps - self._steps0
        elapsed = time.perf_counter() - self._t0
        return max(0, total - self.steps) * elapsed / done if done > 0 else math.nan

    def observe(self, trainer: Any, report: Report) -> None:
        self.members = report.members
        if not self.groups and self.members > 1:
            self.groups = trainer.cfg.grid_members()
        for r in report.episodes:
            self.last[r.member] = r.return_
        self.mean10, self.member_10 = report.return_10, report.member_return_10
        self.episodes = report.num_episodes
        self.steps, self.updates = report.global_step, report.num_updates
        row = report.update_row  # a population's K rows: the members' mean
        if row is not None:
            self.row = row
        now = time.perf_counter()
        eval_seconds = report.eval_seconds
        dt = now - self._t - (eval_seconds - self._eval_seconds)
        self._eval_seconds = eval_seconds
        if dt > 0:
            self.steps_per_sec = (self.steps - self._last_steps) / dt
            self.updates_per_sec = (self.updates - self._last_updates) / dt
        self._t, self._last_steps, self._last_updates = now, self.steps, self.updates

    @property
    def population(self) -> bool:
        """A population that has finished an episode: its lines show the members' spread."""
        return self.members > 1 and bool(self.last)

    @property
    def last_return(self) -> float:
        """The last return (a population's: the mean over its members of each member's last)."""
        return sum(self.last.values()) / len(self.last) if self.last else math.nan

    @property
    def member_means(self) -> list[float]:
        """A population's: each member's mean of its last 10 returns (members with an episode so far)."""
        return [m for m in self.member_10 if not math.isnan(m)]

    def population_line(self) -> str:
        """'mean [min, max] over K members' of the members' last-10 means, or '' for a single run."""
        return _spread(self.member_means)

    @property
    def per_member(self) -> str:
        """' per member' for a population (its steps, updates and rates are one member's), '' for a single run."""
        return " per member" if self.members > 1 else ""

    @property
    def all_members(self) -> str:
        """' over K members' for a population (its episode count is all members'), '' for a single run."""
        return f" over {self.members} members" if self.members > 1 else ""

    def grid_lines(self) -> list[tuple[str, str]]:
        """(grid point, its members' `population_line`) per grid point with an episode, for a population with a
        --grid; [] otherwise."""
        if len(self.groups) < 2:
            return []
        out = []
        for label, members in self.groups.items():
            means = [self.member_10[k] for k in members if k < len(self.member_10)
                     and not math.isnan(self.member_10[k])]
            if means:
                out.append((label, _spread(means)))
        return out


def _spread(means: list[float]) -> str:
    if not means:
        return ""
    return f"{sum(means) / len(means):.1f} [{min(means):.1f}, {max(means):.1f}] over {len(means)} members"



class PlainReporter:
    """One plain line per flush: steps, episodes, returns, losses, Q vs y, throughput."""

    def __init__(self, print_fn: Any = None) -> None:
        self.print = print_fn or functools.partial(print, flush=True)  # flush: a pipe sees each line at once
        self.t = _Tracker()

    def __enter__(self) -> PlainReporter:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def at_start(self, trainer: Any) -> None:
        self.t.start(trainer)

    def __call__(self, trainer: Any, report: Report) -> None:
        t = self.t
        t.observe(trainer, report)
        row = report.update_row  # a population's K rows: their mean
        total = trainer.cfg.total_steps
        parts = [f"step {t.steps:>9,}/{total:,}{t.per_member}", f"ep {t.episodes:>5}{t.all_members}"]
        if t.population:
            parts.append(f"last10 return {t.population_line()}")
            parts += [f"{label}: {line}" for label, line in t.grid_lines()]
        elif t.last:
            parts.append(f"return {t.last_return:8.1f} (last10 {t.mean10:8.1f})")
        else:
            parts.append(no_episode_yet(trainer.cfg.env, trainer.num_envs, t.steps).rstrip(".").lower())
        if row is not None:
            parts += [f"critic {row['critic_loss']:.4g}", f"actor {row['actor_loss']:.4g}",
                      f"Q {row['q_mean']:.3g} y {row['y_mean']:.3g}"]
            parts += [f"{k} {v:.3g}" for k, v in row.items() if k not in _NOT_METRICS and k not in _KNOWN_METRICS]
        parts += [f"{t.steps_per_sec:,.0f} steps/s{t.per_member}", f"{t.updates_per_sec:,.0f} upd/s{t.per_member}"]
        self.print(" | ".join(parts))

    def on_eval(self, trainer: Any, evaluation: Any) -> None:
        self.print(eval_line(evaluation))


class RichReporter:
    """The live console panel. Use as a context manager around ``trainer.train()``::

        with RichReporter(cfg.total_steps) as rep:
            trainer.callbacks.append(rep)
            trainer.train()

    The panel is redrawn at flushes (its numbers change only then), at most ``refresh_per_second`` times a
    second, and once more at the end.
    """

    def __init__(self, total_steps: int, console: Any = None, refresh_per_second: float = 2.0) -> None:
        from rich.console import Console
        from rich.live import Live
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = console or Console()
        self.t = _Tracker()
        # the ETA is the run's own (steps and wall time since it started), not rich's moving window, which
        # reports nothing when reports are further apart than the window
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TaskProgressColumn(), TextColumn("elapsed"), TimeElapsedColumn(),
                                 TextColumn("eta {task.fields[eta]}"), console=self.console)
        self.task = self.progress.add_task("env steps", total=total_steps, eta="-:--:--")
        self.total_steps = total_steps
        self.min_interval = 1.0 / refresh_per_second
        self._last_draw = -math.inf
        self.live = Live(self.render(), console=self.console, auto_refresh=False, transient=False)

    def __enter__(self) -> RichReporter:
        self.live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.update(self.render(), refresh=True)
        self.live.stop()

    def at_start(self, trainer: Any) -> None:
        self.t.start(trainer)
        self.progress.update(self.task, completed=min(trainer.global_step, self.total_steps),
                             description="env steps" + self.t.per_member)
        self.env_id, self.num_envs = trainer.cfg.env, trainer.num_envs

    def __call__(self, trainer: Any, report: Report) -> None:
        self.t.observe(trainer, report)
        self.env_id, self.num_envs = trainer.cfg.env, trainer.num_envs
        self.progress.update(self.task, completed=min(trainer.global_step, trainer.cfg.total_steps),
                             eta=_clock(self.t.eta_seconds(trainer.cfg.total_steps)))
        now = time.perf_counter()
        draw = now - self._last_draw >= self.min_interval
        if draw:
            self._last_draw = now
        self.live.update(self.render(), refresh=draw)

    def on_eval(self, trainer: Any, evaluation: Any) -> None:
        """The evaluation's line above the panel (it stays in the scrollback), and its numbers in the panel."""
        self.last_eval = evaluation
        self.live.console.print(eval_line(evaluation), highlight=False, markup=False)

    def render(self) -> Any:
        """The panel: progress bar above a grid of the latest numbers."""
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table

        t, row = self.t, self.t.row or {}
        grid = Table.grid(padding=(0, 2))
        for _ in range(3):
            grid.add_column(style="dim", justify="right")
            grid.add_column(justify="right", min_width=10)
        grid.add_row("env steps/s" + t.per_member, _fmt(t.steps_per_sec, ",.0f"), "updates/s" + t.per_member,
                     _fmt(t.updates_per_sec, ",.0f"), "episodes" + t.all_members, f"{t.episodes:,}")
        if t.last or not getattr(self, "env_id", None):
            grid.add_row("return (last)", _fmt(t.last_return, ".1f"), "return (10-ep mean)", _fmt(t.mean10, ".1f"),
                         "updates" + t.per_member, f"{t.updates:,}")
        else:
            grid.add_row("return", no_episode_yet(self.env_id, self.num_envs, t.steps), "", "",
                         "updates" + t.per_member, f"{t.updates:,}")
        if t.population:
            grid.add_row("members' 10-ep mean", t.population_line(), "", "", "", "")
            lines = t.grid_lines()
            for label, line in lines[:MAX_GRID_ROWS]:
                grid.add_row(label, line, "", "", "", "")
            if len(lines) > MAX_GRID_ROWS:
                grid.add_row("", f"... {len(lines) - MAX_GRID_ROWS} more grid points", "", "", "", "")
        grid.add_row("critic loss", _fmt(row.get("critic_loss"), ".4g"), "actor loss",
                     _fmt(row.get("actor_loss"), ".4g"), "", "")
        grid.add_row("mean Q", _fmt(row.get("q_mean"), ".4g"), "mean TD target", _fmt(row.get("y_mean"), ".4g"),
                     "", "")
        ev = getattr(self, "last_eval", None)
        if ev is not None:
            grid.add_row("eval return", _fmt(ev.mean, ".1f"), "at env step", f"{ev.global_step:,}", "best",
                         _fmt(sum(b.return_ for b in ev.best) / len(ev.best), ".1f"))
        extra = [(k, v) for k, v in row.items() if k not in _NOT_METRICS and k not in _KNOWN_METRICS]
        for i in range(0, len(extra), 3):
            cells: list[str] = []
            for k, v in extra[i:i + 3]:
                cells += [k, _fmt(v, ".4g")]
            grid.add_row(*cells, *[""] * (6 - len(cells)))
        return Panel(Group(self.progress, grid), title="fastddpg", border_style="blue")


def _clock(seconds: float) -> str:
    if math.isnan(seconds):
        return "-:--:--"
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def make_reporter(quiet: bool, total_steps: int, console: Any = None) -> PlainReporter | RichReporter | None:
    """None with ``quiet``; the live panel when stdout (or the given rich ``console``) is a terminal; plain lines
    otherwise."""
    if quiet:
        return None
    is_terminal = console.is_terminal if console is not None else sys.stdout.isatty()
    return RichReporter(total_steps, console) if is_terminal else PlainReporter()


def eval_line(ev: Any) -> str:
    """The console line of one evaluation during training (`fastddpg.runs.evaluate.Evaluation`), e.g.
    ``eval at 2,000 env steps: return -152.3 +- 10.1 (10 episodes, 0.4 s) | new best`` (or ``| best -140.0
    at 1,000``); a population's: the members' mean [min, max] and which members improved."""
    results = list(ev.results.values())
    n = len(results[0].returns)
    episodes = f"{n} episode{'s' if n != 1 else ''}"
    head = f"{ev.kind} eval" if ev.kind != "periodic" else "eval"
    if len(results) == 1:
        r, b = results[0], ev.best[0]
        best = "new best" if ev.improved else f"best {b.return_:.1f} at {b.global_step:,}"
        return (f"{head} at {ev.global_step:,} env steps: return {r.mean:.1f} +- {r.std:.1f} ({episodes}, "
                f"{ev.seconds:.1f} s) | {best}")
    means = [r.mean for r in results]
    improved = (f"new best for member{'s' if len(ev.improved) > 1 else ''} {', '.join(map(str, ev.improved))}"
                if ev.improved else "no member improved")
    return (f"{head} at {ev.global_step:,} env steps: return {_spread(means)} ({episodes} each, "
            f"{ev.seconds:.1f} s) | {improved}")


def print_summary(summary: dict[str, Any], print_fn: Any = print, env_id: str | None = None) -> None:
    """The end-of-run summary (``env_id`` names the episode length when no episode finished)."""
    s = summary
    if s["episodes"]:
        last10 = f"last-10-episode mean return {s['last10_mean_return']:.1f}"
    elif env_id is not None:
        last10 = no_episode_yet(env_id, s["num_envs"], s["env_steps"]).rstrip(".").lower()
    else:
        last10 = "no episode finished yet"
    if "members" in s:
        lines = population_summary_lines(s, last10)
    else:
        lines = [f"done: {s['episodes']} episodes, {s['env_steps']:,} env steps, {s['updates']:,} updates in "
                 f"{s['wall_time_s']:.1f} s | {s['env_steps_per_sec']:,.0f} env steps/s, "
                 f"{s['updates_per_sec']:,.0f} updates/s | replay ratio {s['replay_ratio']:.3f} | " + last10]
    if s.get("evaluations"):
        if "member_best_eval_return" in s:
            best = (f"members' best eval return {_spread(s['member_best_eval_return'])}, at env steps "
                    f"{', '.join(f'{x:,}' for x in s['member_best_eval_step'])}")
        else:
            best = f"best eval return {s['best_eval_return']:.1f} at env step {s['best_eval_step']:,}"
        lines.append(f"evaluation: {s['evaluations']} x {s['eval_episodes']} noise-free episodes in "
                     f"{s['eval_seconds']:.1f} s (not counted in the steps/s above) | {best} -> best_actor.pt")
    for line in lines:
        print_fn(line)


def population_summary_lines(s: dict[str, Any], last10: str) -> list[str]:
    """A population's summary in two labelled units: one member's counts and rates (``--total-steps`` counts
    per member), then all members' together; then the members' last-10 returns (``last10``: the text for no
    episode yet). The rates leave evaluation time out, as a single run's do."""
    k = s["members"]
    eps = s["member_episodes"]
    per_eps = f"{min(eps):,}" if min(eps) == max(eps) else f"{min(eps):,}-{max(eps):,}"
    steps, updates = s["env_steps"], s["updates"]
    returns = (f"last-10-episode mean return {s['last10_mean_return']:.1f} [{s['last10_min_return']:.1f}, "
               f"{s['last10_max_return']:.1f}] over members" if s["episodes"] else last10)
    return [f"done in {s['wall_time_s']:.1f} s | per member: {per_eps} episodes, {steps:,} env steps, "
            f"{updates:,} updates, {s['env_steps_per_sec_per_member']:,.0f} env steps/s, "
            f"{s['updates_per_sec_per_member']:,.0f} updates/s | replay ratio {s['replay_ratio']:.3f}",
            f"all {k} members: {s['episodes']:,} episodes, {steps * k:,} env steps, {updates * k:,} updates, "
            f"{s['env_steps_per_sec_total']:,.0f} env steps/s, {s['updates_per_sec_total']:,.0f} updates/s",
            f"population: {k} members, {returns}"]
