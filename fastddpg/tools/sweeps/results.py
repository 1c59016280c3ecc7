"""A sweep's results: the trials, history and reports tables, read from the trials' own files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...core.schema import CONFIG_FILE, episode_records, return_10_curve
from .spec import _REPORT_COLUMNS, REPORTS_FILE, TRIALS_DIR, TRIALS_FILE, SweepSpec, read_spec
from .trial import _csv_value


@dataclass
class SweepResult:
    """A sweep's outcome, from its trials' own files.

    trials: one row per trial: trial, status (finished | stopped | error | running | unfinished), each swept
        field's (final) value, seed, env_steps, episodes, final_return_10, best_return_10 (and
        final/best_eval_return with --metric eval_return), exploits, wall_time_s, run_dir. Sorted by trial id. A
        trial that never made its run directory (it failed as it started, or a Ctrl-C came first) has a row too,
        with what Tune knows of it: its status and swept values.
    history: one row per episode of every trial, in the order they ended: trial, the swept fields (a swept field
        whose name the episodes table has, ``env``, as ``swept_env``), then the episodes table (episode, env,
        global_step, return, length, wall_time; a population's with member first)
        and return_10 (the trial's return_10 after that episode, `schema.return_10_curve`: a single run's
        10-episode moving mean; a population's, the mean over its members of theirs).
    reports: every trial's reports.csv (what it reported to Tune, with its hyperparameters at each report).
    """

    path: Path
    spec: SweepSpec
    trials: Any
    history: Any
    reports: Any
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def metric_column(self) -> str:
        return f"final_{self.spec.metric}"

    @property
    def best(self) -> Any:
        """The trials row with the highest final metric."""
        return self.trials.sort_values(self.metric_column, ascending=False).iloc[0]


def trial_dirs(spec: SweepSpec) -> list[Path]:
    d = spec.root / TRIALS_DIR
    return sorted(p for p in d.iterdir() if (p / CONFIG_FILE).is_file()) if d.is_dir() else []


def collect(spec: SweepSpec, statuses: dict[str, str] | None = None,
            params: dict[str, dict[str, Any]] | None = None) -> SweepResult:
    """Build the trials, history and reports tables from the trial directories; ``statuses`` and ``params`` (each
    trial's hyperparameters as Tune has them, by trial id) add the rows of trials that have none."""
    import numpy as np
    import pandas as pd

    from ...runs.rundir import load_run

    statuses = statuses or {}
    rows, history, reports = [], [], []
    swept = spec.swept
    for d in trial_dirs(spec):
        run = load_run(d)
        cfg, s = run.config, run.summary or {}
        keys = ["global_step", "member", "episode"] if "member" in run.episodes.columns else ["episode"]
        ep = run.episodes.sort_values(keys, kind="stable").reset_index(drop=True)  # the order the episodes ended
        r10 = pd.Series(return_10_curve(episode_records(ep)), dtype=float)
        steps = int(s.get("env_steps", ep["global_step"].max() if len(ep) else 0))
        finished = bool(s) and steps >= cfg.total_steps and "stopped_by" not in s
        status = statuses.get(d.name) or ("finished" if finished else ("stopped" if statuses else "running"))
        values = {n: _csv_value(getattr(cfg, n)) for n in swept}
        row = {"trial": d.name, "status": status, **values, "seed": cfg.seed, "env_steps": steps,
               "episodes": len(ep), "final_return_10": float(r10.iloc[-1]) if len(r10) else np.nan,
               "best_return_10": float(r10.max()) if len(r10) else np.nan}
        rep = _read_reports(d)
        if spec.metric == "eval_return":
            ev = rep["eval_return"].dropna() if len(rep) else pd.Series(dtype=float)
            row["final_eval_return"] = float(ev.iloc[-1]) if len(ev) else np.nan
            row["best_eval_return"] = float(ev.max()) if len(ev) else np.nan
        row.update(exploits=len(run.meta.get("exploits", [])), wall_time_s=float(s.get("wall_time_s", np.nan)),
                   run_dir=str(d))
        rows.append(row)
        h = ep.copy()
        h.insert(0, "trial", d.name)
        for i, n in enumerate(swept):
            h.insert(1 + i, history_column(n, ep.columns), values[n])
        h["return_10"] = r10.to_numpy()
        history.append(h)
        if len(rep):
            rep.insert(0, "trial", d.name)
            reports.append(rep)
    have = {r["trial"] for r in rows}
    for name in sorted(set(statuses) - have):  # no run directory: what Tune knows of the trial
        given = (params or {}).get(name, {})
        rows.append({"trial": name, "status": statuses[name] or "unfinished",
                     **{n: _csv_value(given[n]) if n in given else np.nan for n in swept}})
    trials = pd.DataFrame(rows)
    if len(trials):
        trials = trials.sort_values("trial", kind="stable").reset_index(drop=True)
    hist = pd.concat(history, ignore_index=True) if history else pd.DataFrame()
    reps = pd.concat(reports, ignore_index=True) if reports else pd.DataFrame()
    return SweepResult(path=Path(spec.out), spec=spec, trials=trials, history=hist, reports=reps)


def history_column(name: str, episode_columns: Any) -> str:
    """The history's column for swept field ``name``: the name itself, or ``swept_NAME`` where the episodes table
    has a column of that name (``env``, the env index within a vector)."""
    return f"swept_{name}" if name in episode_columns else name


def _read_reports(run_dir: Path) -> Any:
    import pandas as pd

    path = run_dir / REPORTS_FILE
    if not path.is_file():
        return pd.DataFrame(columns=list(_REPORT_COLUMNS))
    df = pd.read_csv(path, keep_default_na=True, dtype={"event": str, "node": str})
    df["event"] = df["event"].fillna("").astype(str)
    df["node"] = df["node"].fillna("").astype(str)
    return df


def load_sweep(path: str | Path) -> SweepResult:
    """Read a sweep directory back (its sweep.json and trial directories): trials, history, reports."""
    spec = read_spec(path)
    statuses: dict[str, str] = {}
    trials_csv = Path(path) / TRIALS_FILE
    if trials_csv.is_file():
        import pandas as pd

        t = pd.read_csv(trials_csv, dtype={"trial": str})  # a searcher's ids are hex: "01234567", "8e123456"
        statuses = dict(zip(t["trial"].astype(str), t["status"].astype(str), strict=True))
        # a trial without a run directory has only its row here: its swept values come from it
        params = {str(r["trial"]): {n: r[n] for n in spec.swept if n in t.columns} for _, r in t.iterrows()}
        if "error" in t.columns:
            errors = {str(k): str(v) for k, v in zip(t["trial"], t["error"], strict=True) if isinstance(v, str) and v}
            return _with_errors(collect(spec, statuses, params), errors)
        return collect(spec, statuses, params)
    return collect(spec, statuses)


def _with_errors(result: SweepResult, errors: dict[str, str]) -> SweepResult:
    """``result`` with its trials' error lines: ``errors`` and, when a trial has one, an ``error`` column."""
    result.errors = dict(errors)
    if errors and len(result.trials):
        result.trials["error"] = [errors.get(str(t), "") for t in result.trials["trial"]]
    return result


