"""What a run leaves on disk, by name: the files of a run directory and the columns of its tidy tables.

The updates table's metric columns are the algorithm's (`fastddpg.algos`): `update_columns` puts them between
the bookkeeping columns, so a TD3 run's header names TD3's metrics from its first line.

A finished episode is an `EpisodeRow` and a probe value a `ProbeRow`, read by name; what the trainer hands its
callbacks at each report is one `Report`. `Last10` is the one last-10 helper: `last10_mean` is the one definition
of "the mean return of the last 10 episodes", and `run_return_10` what a run (a population: the mean over its
members) reports as its return.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from .registry import CORE_METRICS

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
ACTOR_FILE = "actor.pt"
CRITIC_FILE = "critic.pt"
EVAL_FILE = "eval.csv"
BEST_ACTOR_FILE = "best_actor.pt"  # the actor with the best periodic evaluation (a population's: each member's best)
BEST_FILE = "best.json"  # the env step and return at which best_actor.pt was best
CHECKPOINT_DIR = "checkpoints"
AUTO_RUN_DIR = "auto"  # Config.run_dir value for the default name, runs/<env>__<algo>__<seed>__<timestamp>
TABLES = ("episodes", "updates", "probes")


class EpisodeRow(NamedTuple):
    """One finished episode, by name: a row of episodes.csv. ``member`` is 0 in a single run, whose files have no
    member column; ``return_`` is the column "return" (a Python keyword). Rows of a run are kept in the order
    the episodes ended (by env step, member, env), each member numbering its own episodes from 1."""

    member: int
    episode: int
    env: int  # the env within its member
    global_step: int  # env steps of one member when the episode ended
    return_: float
    length: int
    wall_time: float  # seconds since the run started

    def values(self, members: int) -> tuple:
        """The row in the column order of ``with_member(EPISODE_COLUMNS, members)``: the CSV's and the
        checkpoint's (no member for a single run)."""
        return tuple(self) if members > 1 else tuple(self)[1:]

    @classmethod
    def from_values(cls, values: Sequence[Any], members: int) -> EpisodeRow:
        """The inverse of `values` (a checkpoint's rows)."""
        return cls(*values) if members > 1 else cls(0, *values)


class ProbeRow(NamedTuple):
    """One probe state's values at one snapshot (`fastddpg.training.probes`), by name: a row of probes.csv.
    ``member`` is 0 in a single run, whose files have no member column."""

    member: int
    snapshot: int
    episode: int  # episodes per member when the snapshot was taken
    global_step: int
    probe: int  # the probe state
    action: float  # the actor's action (its norm for multi-dimensional actions)
    q: float  # Q_1(s, mu(s))

    def values(self, members: int) -> tuple:
        """The row in the column order of ``with_member(PROBE_COLUMNS, members)``: the CSV's and the checkpoint's."""
        return tuple(self) if members > 1 else tuple(self)[1:]

    @classmethod
    def from_values(cls, values: Sequence[Any], members: int) -> ProbeRow:
        """The inverse of `values` (a checkpoint's rows)."""
        return cls(*values) if members > 1 else cls(0, *values)


# the columns of episodes.csv and probes.csv: the records' fields, the member column only in a population's
# (`with_member`)
EPISODE_COLUMNS = tuple("return" if f == "return_" else f for f in EpisodeRow._fields[1:])
PROBE_COLUMNS = ProbeRow._fields[1:]
class EvalRow(NamedTuple):
    """One noise-free evaluation episode, by name: a row of eval.csv. ``kind``: "periodic" (--eval-every), "final"
    (the end of a run with --eval-every) or "manual" (`fastddpg eval`); ``global_step``: the env step (per member)
    of the weights evaluated. Files written before these two columns existed read back as kind "manual", and
    files written before wall_time and eval_seconds with those NaN (`fastddpg.runs.rundir.upgrade_evals`).
    ``member`` is 0 in a single run, whose files have no member column."""

    member: int
    eval_time: str  # when the evaluation ran (ISO 8601, local time)
    kind: str
    global_step: int
    seed: int  # the first env seed of the evaluation
    episode: int
    return_: float
    length: int
    # On episodes.csv's clock, so that the evaluations can be plotted against the seconds a user waited: the run's
    # seconds when the evaluation began, and how many of them earlier evaluations took (wall_time - eval_seconds:
    # the seconds of training and compile, from the trainer's start, that reached these weights). NaN for `fastddpg
    # eval`'s rows.
    wall_time: float = float("nan")
    eval_seconds: float = float("nan")

    def values(self, members: int) -> tuple:
        """The row in the column order of ``with_member(EVAL_COLUMNS, members)``."""
        return tuple(self) if members > 1 else tuple(self)[1:]


EVAL_COLUMNS = tuple("return" if f == "return_" else f for f in EvalRow._fields[1:])
UPDATE_KEYS = ("update", "global_step")  # before the metrics
UPDATE_RATES = ("updates_in_row", "env_steps_per_sec", "updates_per_sec", "wall_time")  # after them
DDPG_METRICS = CORE_METRICS  # a DDPG run's metrics: the core every algorithm's start with (fastddpg.core.registry)


def update_columns(metric_names: Sequence[str] = DDPG_METRICS) -> tuple[str, ...]:
    """Columns of the updates table: UPDATE_KEYS, the algorithm's metrics, UPDATE_RATES."""
    return (*UPDATE_KEYS, *metric_names, *UPDATE_RATES)


UPDATE_COLUMNS = update_columns()  # a DDPG run's

# A population run (--num-seeds K > 1) puts the member (0..K-1) first in every table; a single run has no such column,
# so its files are what they always were.
MEMBER = "member"
MEMBERS_FILE = "members.csv"  # member, seed, grid_point, each --grid field: one row per member of a population run


def with_member(columns: Sequence[str], members: int) -> tuple[str, ...]:
    """``columns`` of a run with ``members`` members: unchanged for 1, the member column first for more."""
    return (MEMBER, *columns) if members > 1 else tuple(columns)

# Documented dtypes of the tidy tables; any other column (e.g. an algorithm's extra metric) is read as float64.
INT_COLUMNS = frozenset({"member", "episode", "env", "global_step", "length", "update", "updates_in_row", "snapshot",
                         "probe", "seed"})
STR_COLUMNS = frozenset({"eval_time", "kind"})
DEFAULT_COLUMNS = {"episodes": EPISODE_COLUMNS, "updates": UPDATE_COLUMNS, "probes": PROBE_COLUMNS,
                   "eval": EVAL_COLUMNS}


# --- the return a run reports ------------------------------------------------------------------------------------

LAST_N = 10  # "the last 10 episodes": of the console, summary.json, the sweep's return_10 and the reports' curves


def last10_mean(returns: Iterable[float]) -> float:
    """The mean of the last `LAST_N` of ``returns`` (in the order the episodes ended; all of them when fewer);
    NaN when there are none."""
    last = list(returns)[-LAST_N:]
    return math.fsum(last) / len(last) if last else math.nan


class Last10:
    """The one last-10 helper: fed a run's episodes in the order they ended, it keeps each member's last `LAST_N`
    returns, and gives each member's `last10_mean` and the run's `run_return_10` (a single run's: the mean of its
    last 10 episodes; a population's: the mean over its members of each member's last-10 mean). The trainer's
    reports and summary, the console, the sweep's return_10 and the reports' curves all read it."""

    def __init__(self, rows: Iterable[EpisodeRow] = ()) -> None:
        self.recent: dict[int, deque[float]] = {}
        self.add(rows)

    def add(self, rows: Iterable[EpisodeRow]) -> Last10:
        for r in rows:
            self.recent.setdefault(r.member, deque(maxlen=LAST_N)).append(r.return_)
        return self

    @property
    def value(self) -> float:
        """The run's `run_return_10` (NaN before the first episode)."""
        return run_return_10(self.recent)

    def member(self, k: int) -> float:
        """Member k's `last10_mean` (NaN before its first episode)."""
        return last10_mean(self.recent.get(k, ()))

    def members(self, count: int) -> tuple[float, ...]:
        """`member` of each of ``count`` members."""
        return tuple(self.member(k) for k in range(count))


def first_crossing(moments: Sequence[float], returns: Sequence[float], threshold: float, window: int = LAST_N
                   ) -> int | None:
    """The index of the episode at which the mean return of the last ``window`` episodes first reaches
    ``threshold`` (None: never). ``moments``: when each episode ended (env step or seconds), ``returns`` its
    return, both in the order the episodes ended.

    Checked once per moment, after every episode that ended then: with N envs, N episodes end at one env step,
    and checking after each of them (in the arbitrary order they were logged) would give that run N chances at
    every moment where a one-env run has one. Only full windows count, as the notebook's moving average. The
    reports' "reached -200" and every benchmark's time to -200 use it."""
    n = len(returns)
    for i in range(window - 1, n):
        if (i + 1 == n or moments[i + 1] != moments[i]) and \
                math.fsum(returns[i - window + 1:i + 1]) / window >= threshold:
            return i
    return None


def returns_by_member(rows: Iterable[EpisodeRow]) -> dict[int, list[float]]:
    """Each member's returns in the order its episodes ended (a single run's: {0: returns}); members without a
    finished episode are absent."""
    out: dict[int, list[float]] = {}
    for r in rows:
        out.setdefault(r.member, []).append(r.return_)
    return out


def run_return_10(returns: Mapping[int, Iterable[float]]) -> float:
    """What a run reports as its return (``returns``: `returns_by_member`): the `last10_mean` of its episodes;
    a population's: the mean over its members of each member's `last10_mean`, members without a finished
    episode left out. NaN when no episode has ended."""
    means = [m for m in (last10_mean(r) for r in returns.values()) if not math.isnan(m)]
    return math.fsum(means) / len(means) if means else math.nan


def return_10_curve(rows: Iterable[EpisodeRow]) -> list[float]:
    """`run_return_10` after each of ``rows`` (in the order the episodes ended): a single run's 10-episode moving
    mean; a population's, the mean over the members that have an episode of their moving means."""
    last10 = Last10()
    return [last10.add((r,)).value for r in rows]


def episode_records(table: Any) -> list[EpisodeRow]:
    """An episodes table (a DataFrame as `fastddpg.runs.rundir.load_run` reads episodes.csv, with or without the
    member column) as records, in the order the episodes ended."""
    keys = ["global_step", MEMBER, "episode"] if MEMBER in table.columns else ["global_step", "episode"]
    t = table.sort_values(keys, kind="stable")
    members = t[MEMBER].tolist() if MEMBER in t.columns else [0] * len(t)
    return [EpisodeRow(int(m), int(e), int(n), int(g), float(r), int(ln), float(w)) for m, e, n, g, r, ln, w in
            zip(members, *(t[c].tolist() for c in EPISODE_COLUMNS), strict=True)]


# --- what a callback sees at each report ------------------------------------------------------------------------

@dataclass
class Report:
    """What the trainer hands each callback at a report (every ``log_every`` env steps), as
    ``cb(trainer, report)``: the rows that are new since the last report and the run's counters after it. The
    trainer (its networks, buffer and config) is for callbacks that act on the run; what happened is here.

    ``updates`` is the report interval's update row (updates.csv's columns by name; a population's: K rows, each
    with its "member"); empty when the interval had no update. ``probes``: the probe snapshot taken at this report,
    if any. ``member_return_10``: each member's `Last10.member` (a single run's: one value). ``checkpoint``: the
    checkpoint the trainer wrote at this report's env step, filled in after the callbacks have seen the report
    (callbacks that act on it do so in ``after_report``); None when none was written."""

    global_step: int  # env steps (a population's: per member)
    vector_steps: int
    num_updates: int  # (per member)
    num_episodes: int  # over all members
    member_episodes: tuple[int, ...]  # each member's episodes (a single run's: (num_episodes,))
    episodes: list[EpisodeRow]
    updates: list[dict[str, float]]
    probes: list[ProbeRow]
    return_10: float  # the run's `Last10.value` after this report's episodes
    member_return_10: tuple[float, ...]
    wall_time: float  # seconds since the run started (a resumed run's: since its first start)
    eval_seconds: float  # of wall_time, spent on evaluation during training
    compile_seconds: float  # of wall_time, spent compiling (this process's)
    checkpoint: Path | None = None

    @property
    def members(self) -> int:
        return len(self.member_episodes)

    @property
    def update_row(self) -> dict[str, float] | None:
        """The update row of a single run (a population's: the members' mean, without "member"); None without
        updates."""
        if not self.updates:
            return None
        if len(self.updates) == 1:
            return {k: v for k, v in self.updates[0].items() if k != MEMBER}
        return {k: sum(r[k] for r in self.updates) / len(self.updates) for k in self.updates[0] if k != MEMBER}
