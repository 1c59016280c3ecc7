"""The run directory: everything a run leaves on disk, written as the run goes, and `load_run` to read it back.

Layout of ``runs/<env>__<algo>__<seed>__<timestamp>/`` (or ``--run-dir``)::

    config.json       {"config": Config.to_dict(), "versions": {...}, "device", "command", "argv", "created",
                       "obs_dim", "act_dim", "run_dir", "threads"}; written before the first env step
    episodes.csv      one row per finished episode: EPISODE_COLUMNS          } appended at every report
    updates.csv       one row per report interval with updates:           } (every --log-every env steps),
                      update_columns(the algorithm's metrics)             } so a run that dies keeps them
    probes.csv        probe_n rows per probe snapshot: PROBE_COLUMNS      }
    *.parquet         the same three tables, written at the end (from the trainer's tables in memory) when
                      pyarrow is installed
    actor.pt          final actor state_dict  } written at the end
    critic.pt         final critic state_dict }
    summary.json      the end-of-run summary (episodes, env steps, updates, wall time, steps/s, ...)
    report.html       the Plotly report (written by `fastddpg.train`; `fastddpg plot RUN_DIR` regenerates it)
    eval.csv          noise-free evaluation episodes: periodic and final ones (--eval-every), appended as the
                      run goes, and `fastddpg eval`'s (manual)
    best_actor.pt     with --eval-every: the actor of the best evaluation so far (a population's: each member's)
    best.json         the env step and mean return at which best_actor.pt was best
    checkpoints/      step_<env step>.pt: full checkpoints (fastddpg.runs.checkpoint), the last --keep-checkpoints
    members.csv       a population's (--num-seeds/--grid: K > 1 members) members: member, seed, grid_point and
                      each --grid field's value

A population run writes one directory for all its members: every table starts with a ``member`` column, the
weights and checkpoints hold the whole population (stacked: every tensor's leading dim is the member, or K*2 for
TD3's twin critics, member-major). A single run's files have no member column, as before populations existed.

File names and columns are `fastddpg.core.schema`'s. `RunWriter` is a trainer callback: it writes the rows of each
`fastddpg.core.schema.Report` (what the trainer already pulled to the host), so it adds no device sync. CSV floats are
written with Python's repr, so they read back bit for bit.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..algos import metric_names
from ..core.config import Config, ConfigError
from ..core.fileio import atomic_save, atomic_write, finite_or_null, naming, write_json
from ..core.lazy import LazyModule, not_installed
from ..core.schema import (
    ACTOR_FILE,
    AUTO_RUN_DIR,
    CONFIG_FILE,
    CRITIC_FILE,
    DEFAULT_COLUMNS,
    EPISODE_COLUMNS,
    EVAL_COLUMNS,
    EVAL_FILE,
    INT_COLUMNS,
    MEMBER,
    MEMBERS_FILE,
    PROBE_COLUMNS,
    STR_COLUMNS,
    SUMMARY_FILE,
    TABLES,
    Report,
    update_columns,
    with_member,
)
from .tensorboard import require_tensorboard

if TYPE_CHECKING:
    import pandas as pd
else:  # imported at first use (fastddpg.core.lazy): a run needs pandas and plotly only at its end
    pd = LazyModule("pandas")


def require_run_packages(cfg: Config) -> None:
    """A one-line ConfigError, before anything is built or written, where a package the run directory's files need
    is missing: pandas and plotly (its tables and report, imported only at the run's end), tensorboard with
    ``--tensorboard``."""
    if cfg.tensorboard:
        require_tensorboard()
    if missing := not_installed("pandas", "plotly"):
        raise ConfigError(f"{' and '.join(missing)} not installed: a run's tables and report need them; "
                          f"pip install {' '.join(missing)}")


def sanitize(name: str) -> str:
    """A file-name-safe version of an env id: 'ALE/Pong-v5' -> 'ALE-Pong-v5'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "env"


def default_run_dir(cfg: Config, root: str | Path = "runs", now: float | None = None) -> Path:
    """``root/<env>__<algo>__<seed>__<YYYYmmdd-HHMMSS>`` (not created; `RunWriter.create` adds a suffix on a
    name clash)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return Path(root) / f"{sanitize(cfg.env)}__{sanitize(cfg.algo)}__{cfg.seed}__{stamp}"


def _versions() -> dict[str, str]:
    import importlib.metadata

    import gymnasium

    from .. import __version__

    # pandas by its installed metadata: importing it here would put its ~0.4 s before the first update
    return {"fastddpg": __version__, "torch": torch.__version__, "gymnasium": gymnasium.__version__,
            "numpy": np.__version__, "pandas": importlib.metadata.version("pandas"),
            "python": sys.version.split()[0]}


def thread_settings(threads: int) -> dict[str, Any]:
    """The run's torch threads and the OpenMP wait settings it started with (fastddpg.core.threads)."""
    return {"torch_threads": threads, **{k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                                                                          "OMP_NUM_THREADS")}}


_HELD: dict[str, int] = {}  # run directories this process holds: resolved path -> the descriptor holding its lock


def hold_run_dir(path: Path) -> None:
    """Take ``path`` for this process, until `release_run_dir` or the process's end: an exclusive ``flock`` on the
    directory, so that a second process (a ``--resume`` while the run still trains, a duplicate launch, a scheduler's
    retry) is refused in one line before it cuts or appends to the tables under the first. A directory this
    process already holds is held again without a second lock (a retried trial in the same Ray worker). Where
    ``flock`` is missing (Windows) or refused by the filesystem (some network mounts), the directory is left
    unguarded."""
    key = str(path.resolve())
    if key in _HELD:
        return
    try:
        import fcntl
    except ImportError:
        return
    fd = os.open(key, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(f"{path} is in use by another process (a run or a --resume of it still going); let it "
                          "end or stop it, then resume.") from None
    except OSError:
        os.close(fd)
        return
    _HELD[key] = fd


def release_run_dir(path: Path) -> None:
    """Let go of a run directory `hold_run_dir` took (nothing if this process does not hold it)."""
    fd = _HELD.pop(str(Path(path).resolve()), None)
    if fd is not None:
        os.close(fd)


def probe_writable(directory: Path) -> None:
    """Write and delete a small file in ``directory``; raises OSError where that directory is not writable."""
    probe = directory / ".write_test"
    probe.write_text("ok")
    probe.unlink()


def _make_dir(path: Path, unique: bool) -> Path:
    """Create ``path`` (or ``path-2``, ``path-3``... when ``unique`` and it exists) and prove it is writable.
    Raises ConfigError with one line when it is not."""
    try:
        if unique:
            base, i = path, 1
            while True:
                try:
                    path.mkdir(parents=True, exist_ok=False)
                    break
                except FileExistsError:
                    i += 1
                    path = base.with_name(f"{base.name}-{i}")
        else:
            path.mkdir(parents=True, exist_ok=True)
            if (path / CONFIG_FILE).exists():
                raise ConfigError(f"--run-dir={path} already holds a run ({CONFIG_FILE}); choose a new directory "
                                  "or remove that one.")
        probe_writable(path)
    except OSError as e:
        raise ConfigError(f"cannot write the run directory {path}: {e.strerror or e}; choose a writable "
                          "location with --run-dir.") from None
    return path


class RunWriter:
    """Trainer callback that appends a report's episode, update and probe rows to the CSVs at every report.

    Make one with `RunWriter.create` (checks writability and writes config.json and the CSV headers before
    training), add it to ``trainer.callbacks``, and call `finish` after ``trainer.train()`` (also after a crash:
    it keeps what the run had and adds the weights, parquet copies and summary). `fastddpg.train` does all this
    and writes the report.
    """

    def __init__(self, path: Path, algo: str = "ddpg", members: int = 1) -> None:
        self.path = Path(path)
        self.members = members
        self.probes_written = 0  # rows of trainer.probe_rows already on disk
        self.reported_step = 0  # the env step the CSVs reach (the last report written whole)
        self.failed = False  # a report could not be written: the CSVs stay at the last whole one
        self.update_header = list(with_member(update_columns(metric_names(algo)), members))

    @classmethod
    def create(cls, cfg: Config, trainer: Any | None = None, argv: list[str] | None = None,
               root: str | Path = "runs") -> RunWriter:
        """Create the run directory (``cfg.run_dir`` or the default name under ``root``), check that it is
        writable (ConfigError if not), write config.json and the CSV headers."""
        if cfg.run_dir in ("", AUTO_RUN_DIR):
            path = _make_dir(default_run_dir(cfg, root), unique=True)
        else:
            path = _make_dir(Path(cfg.run_dir), unique=False)
        hold_run_dir(path)
        try:
            argv = list(sys.argv if argv is None else argv)
            meta: dict[str, Any] = {
                "config": cfg.to_dict(),
                "algo": cfg.algo,
                "run_dir": str(path),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "command": shlex.join(argv),
                "argv": argv,
                "versions": _versions(),
                "device": str(trainer.device) if trainer is not None else cfg.device,
            }
            if trainer is not None:
                meta.update(obs_dim=trainer.env.obs_dim, act_dim=trainer.env.act_dim, num_envs=trainer.num_envs,
                            threads=thread_settings(trainer.threads))
                if getattr(trainer.device, "type", "") == "cuda":
                    meta["device_name"] = torch.cuda.get_device_name(trainer.device)
            write_json(path / CONFIG_FILE, meta)
            k = cfg.num_members
            writer = cls(path, cfg.algo, k)
            writer._write_header("episodes", with_member(EPISODE_COLUMNS, k))
            writer._write_header("updates", writer.update_header)
            writer._write_header("probes", with_member(PROBE_COLUMNS, k))
            if k > 1:
                members_table(cfg).to_csv(path / MEMBERS_FILE, index=False)
        except BaseException:
            release_run_dir(path)
            raise
        return writer

    # --- at every report -----------------------------------------------------------------------------------------
    def __call__(self, trainer: Any, report: Report) -> None:
        with self._whole_report():
            if report.episodes:
                self._append("episodes", [r.values(self.members) for r in report.episodes])
            if report.updates:  # a population's: one per member
                self._append("updates", [[r.get(k, "") for k in self.update_header] for r in report.updates])
            if report.probes:
                self._append("probes", [r.values(self.members) for r in report.probes])
        self.probes_written += len(report.probes)
        self.reported_step = report.global_step

    def at_end(self, trainer: Any) -> None:
        """The end-of-run probe snapshot, before the trainer's last checkpoint: a checkpoint never counts rows that
        the tables do not hold."""
        if not self.failed:
            self.write_probes(trainer)

    def write_probes(self, trainer: Any) -> None:
        """Append the probe rows the trainer took that no report carried (the end-of-run snapshot)."""
        new = trainer.probe_rows[self.probes_written:]
        if new:
            with self._whole_report():
                self._append("probes", [r.values(self.members) for r in new])
            self.probes_written += len(new)

    @contextlib.contextmanager
    def _whole_report(self) -> Any:
        """On an OSError inside (a full disk...), cut every CSV back to its size before: the tables end at the
        last report written whole, with no partial row (cutting a file needs no free space)."""
        sizes = {}
        for table in TABLES:
            with contextlib.suppress(OSError):
                sizes[table] = (self.path / f"{table}.csv").stat().st_size
        try:
            yield
        except OSError:
            self.failed = True
            for table, size in sizes.items():
                with contextlib.suppress(OSError):
                    os.truncate(self.path / f"{table}.csv", size)
            raise

    # --- at the end ----------------------------------------------------------------------------------------------
    def finish(self, trainer: Any, summary: dict[str, Any] | None = None,
               tables: dict[str, pd.DataFrame] | None = None, weights: bool = True) -> None:
        """Write the last probe rows (the final snapshot comes after the last report), the final actor and critic
        state_dicts (unless not ``weights``), summary.json and parquet copies of the tables (if pyarrow is
        installed): of ``tables`` (`fastddpg.training.trainer.Trainer.tables`, the whole run in memory) when given,
        else of ``trainer.tables()``."""
        if not self.failed:
            self.write_probes(trainer)
        if weights:  # host copies: a GPU run's weights load on a machine without CUDA too
            atomic_save({k: v.to("cpu") for k, v in trainer.algo.actor.state_dict().items()}, self.path / ACTOR_FILE)
            atomic_save({k: v.to("cpu") for k, v in trainer.algo.critic.state_dict().items()},
                        self.path / CRITIC_FILE)
        # strict JSON: a number with no value (no finished episode, a non-finite stop) is null, not NaN
        write_json(self.path / SUMMARY_FILE, finite_or_null(summary if summary is not None else trainer.summary()))
        if not self.failed:  # the CSVs end at the last whole report: the copies must not hold more
            write_parquet(self.path, tables if tables is not None else trainer.tables())

    # --- files ---------------------------------------------------------------------------------------------------
    def _write_header(self, table: str, columns: Any) -> None:
        path = self.path / f"{table}.csv"
        with naming(path), open(path, "w", newline="") as f:
            csv.writer(f).writerow(columns)

    def _append(self, table: str, rows: Any) -> None:
        path = self.path / f"{table}.csv"
        with naming(path), open(path, "a", newline="") as f:
            csv.writer(f).writerows(rows)


def members_table(cfg: Config) -> pd.DataFrame:
    """A population's members: member, seed, grid_point, and the value of each --grid field."""
    names = list(cfg.grid_points()[0])
    members = cfg.member_configs()
    return pd.DataFrame({"member": range(len(members)), "seed": [c.seed for c in members],
                         "grid_point": [k // cfg.num_seeds for k in range(len(members))],
                         **{n: [getattr(c, n) for c in members] for n in names}})


def write_parquet(path: Path, tables: dict[str, pd.DataFrame] | None = None) -> bool:
    """Parquet copies of episodes/updates/probes next to the CSVs: of ``tables`` (the run's tables in memory, in
    the CSVs' columns) when given, else read from the CSVs; False (and nothing written) without pyarrow."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    for table in TABLES:  # atomic: a cut parquet newer than its CSV would be read instead of the CSV
        buf = io.BytesIO()
        frame = _typed(tables[table], table) if tables is not None else read_table(path, table)
        frame.to_parquet(buf, index=False)
        atomic_write(path / f"{table}.parquet", lambda f, b=buf: f.write(b.getbuffer()))
    return True


def _typed(df: pd.DataFrame, table: str) -> pd.DataFrame:
    if df.columns.empty:
        df = pd.DataFrame(columns=list(DEFAULT_COLUMNS[table]))
    dtypes = {c: ("int64" if c in INT_COLUMNS else "object" if c in STR_COLUMNS else "float64")
              for c in df.columns}
    return df.astype(dtypes)


def read_table(path: str | Path, table: str) -> pd.DataFrame:
    """One tidy table of a run directory (``episodes``, ``updates``, ``probes`` or ``eval``) with the
    documented dtypes; the parquet copy when it is at least as new as the CSV, else the CSV (without a last row
    cut short); an empty frame with the default columns when neither exists."""
    path = Path(path)
    csv_path, pq_path = path / f"{table}.csv", path / f"{table}.parquet"
    if pq_path.exists() and (not csv_path.exists() or pq_path.stat().st_mtime >= csv_path.stat().st_mtime):
        try:
            return _typed(pd.read_parquet(pq_path), table)
        except ImportError:
            pass
    if not csv_path.exists():
        return _typed(pd.DataFrame(), table)
    text = csv_path.read_text()
    if not text.endswith("\n"):  # a last row cut short (a kill, a full disk, a report being appended): not a row
        text = text[:text.rfind("\n") + 1]
    if not text:
        return _typed(pd.DataFrame(), table)
    return _typed(pd.read_csv(io.StringIO(text), keep_default_na=True), table)


def upgrade_evals(evals: pd.DataFrame, final_step: int = -1) -> pd.DataFrame:
    """An eval table in `EVAL_COLUMNS`: one written before its kind and global_step columns existed held only
    `fastddpg eval`'s rows of the final actor, so they become kind "manual" at ``final_step`` (the run's last env
    step; -1 when unknown); one written before its wall_time and eval_seconds columns gets them as NaN. A table
    that has them all is returned as it is."""
    if set(EVAL_COLUMNS) <= set(evals.columns):
        return evals
    out = evals
    if "kind" not in out.columns:
        out = out.assign(kind="manual", global_step=int(final_step))
    out = out.assign(**{c: math.nan for c in ("wall_time", "eval_seconds") if c not in out.columns})
    columns = [MEMBER] if MEMBER in out.columns else []
    return out[columns + list(EVAL_COLUMNS)].astype({"global_step": "int64", "kind": "object"})


# --- cutting the tables back (resume) ----------------------------------------------------------------------------

def truncate_tables(run_dir: str | Path, episodes: int | list[int], updates: int, snapshots: int,
                    global_step: int) -> dict[str, int]:
    """Cut the run directory's tables back to a checkpoint's counters: the rows of episodes.csv after episode
    ``episodes`` (a population's: a list, one count per member), of updates.csv after update ``updates``, of
    probes.csv after its first ``snapshots`` snapshots, the periodic and final rows of eval.csv after env step
    ``global_step``, and any row cut short by a kill; so a run resumed from that checkpoint appends with no
    duplicate and no gap. Returns the number of rows dropped per table."""
    run_dir = Path(run_dir)
    limits = {"episodes": ("episode", episodes), "updates": ("update", updates),
              "probes": ("snapshot", snapshots - 1)}
    dropped = {table: _truncate_csv(run_dir / f"{table}.csv", key, limit) for table, (key, limit) in limits.items()}
    dropped["eval"] = truncate_evals(run_dir / EVAL_FILE, global_step)
    return dropped


def truncate_evals(path: Path, global_step: int) -> int:
    """Drop eval.csv's periodic and final rows after env step ``global_step`` (the resumed run evaluates those
    steps again) and a row cut short by a kill; manual rows (`fastddpg eval`) stay. Returns the rows dropped."""
    if not path.is_file():
        return 0
    with open(path, newline="") as f:
        lines = f.readlines()
    header = next(csv.reader(lines[:1]), [])
    if "kind" not in header or "global_step" not in header:  # a file from before periodic evaluation
        return 0
    kind, step = header.index("kind"), header.index("global_step")
    keep = lines[:1]
    for line in lines[1:]:
        fields = next(csv.reader([line]), [])
        if not (line.endswith("\n") and len(fields) == len(header)):
            continue
        if fields[kind] == "manual" or (_int_or_none(fields[step]) or 0) <= global_step:
            keep.append(line)
    dropped = len(lines) - len(keep)
    if dropped:
        atomic_write(path, lambda f: f.write("".join(keep).encode()))
    return dropped


def _truncate_csv(path: Path, key: str, limit: int | list[int]) -> int:
    """Keep the header and the complete rows whose integer ``key`` column is <= ``limit`` (a list: one limit per
    member, by the row's member column); rewrite atomically."""
    if not path.is_file():
        return 0
    with open(path, newline="") as f:
        lines = f.readlines()
    if not lines:
        return 0
    header = next(csv.reader([lines[0]]))
    if key not in header:
        return 0
    k = header.index(key)
    m = header.index(MEMBER) if isinstance(limit, list) else None
    keep = [lines[0] if lines[0].endswith("\n") else lines[0] + "\r\n"]
    for line in lines[1:]:
        fields = next(csv.reader([line]), [])
        if not (line.endswith("\n") and len(fields) == len(header)) or _int_or_none(fields[k]) is None:
            continue
        if m is None:
            row_limit = limit
        else:
            member = _int_or_none(fields[m])
            if member is None or not 0 <= member < len(limit):
                continue
            row_limit = limit[member]
        if _int_or_none(fields[k]) <= row_limit:
            keep.append(line)
    dropped = len(lines) - len(keep)
    if dropped:
        atomic_write(path, lambda f: f.write("".join(keep).encode()))
    return dropped


def _int_or_none(s: str) -> int | None:
    try:
        return int(s)
    except ValueError:
        return None




@dataclass
class RunData:
    """A run directory read back by `load_run`.

    episodes: episode, env, global_step, return, length, wall_time (int64 but return and wall_time: float64)
    updates: update, global_step, the algorithm's metrics (DDPG: critic_loss, actor_loss, q_mean, y_mean; TD3
        adds q1_mean, q2_mean, target_min_mean), updates_in_row, env_steps_per_sec, updates_per_sec, wall_time;
        one row per report interval (metrics are means over its updates)
    probes: snapshot, episode, global_step, probe, action, q; probe_n rows per snapshot
    evals: eval_time, kind (periodic, final or manual), global_step (of the weights evaluated), seed, episode,
        return, length, wall_time, eval_seconds (`fastddpg.core.schema.EvalRow`; empty until `fastddpg eval` or
        --eval-every ran)
    """

    path: Path
    config: Config
    meta: dict[str, Any]
    episodes: pd.DataFrame
    updates: pd.DataFrame
    probes: pd.DataFrame
    evals: pd.DataFrame
    summary: dict[str, Any] | None = field(default=None)

    @property
    def label(self) -> str:
        return self.path.name

    @classmethod
    def in_memory(cls, path: str | Path, config: Config, tables: dict[str, pd.DataFrame],
                  summary: dict[str, Any] | None) -> RunData:
        """A run being finished, from its tables in memory (`fastddpg.training.trainer.Trainer.tables`) rather than read
        back from its CSVs: for its report. Only config.json and eval.csv (which the evaluator and `fastddpg
        eval` write) are read from ``path``."""
        path = Path(path)
        try:
            meta = json.loads((path / CONFIG_FILE).read_text())
        except (OSError, ValueError):
            meta = {"config": config.to_dict()}
        return cls(path=path, config=config, meta=meta, episodes=_typed(tables["episodes"], "episodes"),
                   updates=_typed(tables["updates"], "updates"), probes=_typed(tables["probes"], "probes"),
                   evals=upgrade_evals(read_table(path, "eval"), int((summary or {}).get("env_steps", -1))),
                   summary=summary)


def read_run_config(cfg_file: Path) -> tuple[dict[str, Any], Config]:
    """A run's config.json: its metadata and its Config; one that does not read as one (edited by hand, a value
    the config refuses) is a one-line ConfigError naming the file. A missing file raises FileNotFoundError."""
    try:
        meta = json.loads(cfg_file.read_text())
        return meta, Config.from_dict(meta["config"])
    except ConfigError as e:  # a value the config refuses says so itself
        raise ConfigError(f"{cfg_file}: {e}") from None
    except FileNotFoundError:
        raise
    except (ValueError, KeyError, TypeError) as e:  # (json's decode error is a ValueError)
        raise ConfigError(f"{cfg_file} is not a valid fastddpg config ({e}); was it edited by hand?") from None


def load_run(path: str | Path) -> RunData:
    """Read a run directory: tidy DataFrames (episodes, updates, probes, evals), the Config and the metadata.
    Works on a run that is still going or that died (the CSVs hold every flush so far)."""
    path = Path(path)
    cfg_file = path / CONFIG_FILE
    if not cfg_file.is_file():
        raise ConfigError(f"{path} is not a fastddpg run directory (no {CONFIG_FILE}); give the directory a "
                          "`fastddpg run` created.")
    meta, config = read_run_config(cfg_file)
    summary_file = path / SUMMARY_FILE
    try:
        summary = json.loads(summary_file.read_text()) if summary_file.is_file() else None
    except ValueError as e:
        raise ConfigError(f"{summary_file} is not valid JSON ({e}); was it edited by hand?") from None
    return RunData(path=path, config=config, meta=meta, episodes=read_table(path, "episodes"),
                   updates=read_table(path, "updates"), probes=read_table(path, "probes"),
                   evals=upgrade_evals(read_table(path, "eval"), int((summary or {}).get("env_steps", -1))),
                   summary=summary)
