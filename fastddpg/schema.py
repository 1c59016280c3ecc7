"""What a run leaves on disk, by name: the files of a run directory and the columns of its tidy tables.

The updates table's metric columns are the algorithm's (`fastddpg.algos`): `update_columns` puts them between
the bookkeeping columns, so a TD3 run's header names TD3's metrics from its first line.
"""

from __future__ import annotations

from collections.abc import Sequence

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
ACTOR_FILE = "actor.pt"
CRITIC_FILE = "critic.pt"
EVAL_FILE = "eval.csv"
CHECKPOINT_DIR = "checkpoints"
AUTO_RUN_DIR = "auto"  # Config.run_dir value for the default name, runs/<env>__<algo>__<seed>__<timestamp>
TABLES = ("episodes", "updates", "probes")

EPISODE_COLUMNS = ("episode", "env", "global_step", "return", "length", "wall_time")
PROBE_COLUMNS = ("snapshot", "episode", "global_step", "probe", "action", "q")
EVAL_COLUMNS = ("eval_time", "seed", "episode", "return", "length")
UPDATE_KEYS = ("update", "global_step")  # before the metrics
UPDATE_RATES = ("updates_in_row", "env_steps_per_sec", "updates_per_sec", "wall_time")  # after them
DDPG_METRICS = ("critic_loss", "actor_loss", "q_mean", "y_mean")


def update_columns(metric_names: Sequence[str] = DDPG_METRICS) -> tuple[str, ...]:
    """Columns of the updates table: UPDATE_KEYS, the algorithm's metrics, UPDATE_RATES."""
    return (*UPDATE_KEYS, *metric_names, *UPDATE_RATES)


UPDATE_COLUMNS = update_columns()  # a DDPG run's

# A population run (--num-seeds K > 1) puts the member (0..K-1) first in every table; a single run has no such column,
# so its files are what they always were.
MEMBER = "member"
MEMBERS_FILE = "members.csv"  # member, seed: one row per member of a population run


def with_member(columns: Sequence[str], members: int) -> tuple[str, ...]:
    """``columns`` of a run with ``members`` members: unchanged for 1, the member column first for more."""
    return (MEMBER, *columns) if members > 1 else tuple(columns)

# Documented dtypes of the tidy tables; any other column (e.g. an algorithm's extra metric) is read as float64.
INT_COLUMNS = frozenset({"member", "episode", "env", "global_step", "length", "update", "updates_in_row", "snapshot",
                         "probe", "seed"})
STR_COLUMNS = frozenset({"eval_time"})
DEFAULT_COLUMNS = {"episodes": EPISODE_COLUMNS, "updates": UPDATE_COLUMNS, "probes": PROBE_COLUMNS,
                   "eval": EVAL_COLUMNS}
