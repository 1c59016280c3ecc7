"""What a run leaves on disk, by name: the files of a run directory and the columns of its tidy tables.

The updates table's metric columns are the algorithm's (`fastddpg.algos`): `update_columns` puts them between
the bookkeeping columns, so a TD3 run's header names TD3's metrics from its first line.

A finished episode is an `EpisodeRow`, read by name; `last10_mean` is the one definition of "the mean return of
the last 10 episodes", and `run_return_10` what a run (a population: the mean over its members) reports as its
return.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
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


# the columns of episodes.csv: the record's fields, the member column only in a population's (`with_member`)
EPISODE_COLUMNS = tuple("return" if f == "return_" else f for f in EpisodeRow._fields[1:])
PROBE_COLUMNS = ("snapshot", "episode", "global_step", "probe", "action", "q")
# kind: "periodic" (--eval-every), "final" (the end of a run with --eval-every) or "manual" (`fastddpg eval`);
# global_step: the env step (per member) of the weights evaluated. Files written before these two columns existed
# read back as kind "manual" (`fastddpg.rundir.load_run`).
EVAL_COLUMNS = ("eval_time", "kind", "global_step", "seed", "episode", "return", "length")
UPDATE_KEYS = ("update", "global_step")  # before the metrics
UPDATE_RATES = ("updates_in_row", "env_steps_per_sec", "updates_per_sec", "wall_time")  # after them
DDPG_METRICS = CORE_METRICS  # a DDPG run's metrics: the core every algorithm's start with (fastddpg.registry)


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
    recent: dict[int, list[float]] = {}
    curve = []
    for r in rows:
        mine = recent.setdefault(r.member, [])
        mine.append(r.return_)
        del mine[:-LAST_N]
        curve.append(run_return_10(recent))
    return curve


def episode_records(table: Any) -> list[EpisodeRow]:
    """An episodes table (a DataFrame as `fastddpg.rundir.load_run` reads episodes.csv, with or without the
    member column) as records, in the order the episodes ended."""
    keys = ["global_step", MEMBER, "episode"] if MEMBER in table.columns else ["global_step", "episode"]
    t = table.sort_values(keys, kind="stable")
    members = t[MEMBER].tolist() if MEMBER in t.columns else [0] * len(t)
    return [EpisodeRow(int(m), int(e), int(n), int(g), float(r), int(ln), float(w)) for m, e, n, g, r, ln, w in
            zip(members, *(t[c].tolist() for c in EPISODE_COLUMNS), strict=True)]
