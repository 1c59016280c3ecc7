"""The sweep's report: report.html (curves, grid-point bands, the ranking, PBT schedules)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...core.config import format_hyper
from ...core.fileio import atomic_write_text
from ...core.schema import REPORT_FILE
from .results import SweepResult, _with_errors, collect, trial_dirs
from .spec import SWEEP_FILE, TIME_ATTR, TRIALS_FILE, SweepSpec


def _group_label(row: Any, grid_names: Sequence[str]) -> str:
    names = [n for n in grid_names if n != "seed"]
    return ", ".join(f"{n}={format_hyper(getattr(row, n))}" for n in names) if names else "all trials"


def sweep_figures(result: SweepResult) -> list[Any]:
    """Curves of all trials overlaid (colour: grid point), the grid points' mean with its min..max band over seeds,
    and for PBT each mutated field's schedule per trial."""
    import numpy as np
    import plotly.graph_objects as go

    from ...reports.plots import COLORS, TEMPLATE

    figs = []
    trials, hist = result.trials, result.history
    names = [*result.spec.grid, *result.spec.sample]
    groups = {t.trial: _group_label(t, names) for t in trials.itertuples(index=False)} if len(trials) else {}
    order = list(dict.fromkeys(groups.values()))
    color = {g: COLORS[i % len(COLORS)] for i, g in enumerate(order)}
    fig = go.Figure()
    shown: set[str] = set()
    for trial, h in (hist.groupby("trial", sort=True) if len(hist) else []):
        g = groups.get(trial, "")
        fig.add_trace(go.Scatter(x=h["global_step"], y=h["return_10"], mode="lines", name=g, legendgroup=g,
                                 showlegend=g not in shown, line=dict(color=color.get(g, COLORS[0]), width=1.5),
                                 hovertemplate=f"{trial}<br>env step %{{x:,}}<br>return_10 %{{y:.1f}}"
                                               f"<extra>{g}</extra>"))
        shown.add(g)
    fig.update_layout(title="Every trial: 10-episode mean return", xaxis_title="Env steps",
                      yaxis_title="Return (10-episode mean)", template=TEMPLATE)
    figs.append(fig)

    fig = go.Figure()
    for g in order:
        members = [t for t, gg in groups.items() if gg == g]
        parts = [hist[hist["trial"] == t] for t in members] if len(hist) else []
        parts = [p for p in parts if len(p)]
        if not parts:
            continue
        x = np.unique(np.concatenate([p["global_step"].to_numpy() for p in parts]))
        ys = []
        for p in parts:
            px, py = p["global_step"].to_numpy(dtype=float), p["return_10"].to_numpy(dtype=float)
            y = np.interp(x, px, py)
            y[(x < px.min()) | (x > px.max())] = np.nan
            ys.append(y)
        ys = np.array(ys)
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, lo, hi = np.nanmean(ys, 0), np.nanmin(ys, 0), np.nanmax(ys, 0)
        c = color[g]
        fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([hi, lo[::-1]]), fill="toself",
                                 fillcolor=c, opacity=0.2, line=dict(width=0), legendgroup=g, showlegend=False,
                                 hoverinfo="skip", name=f"{g}: range"))
        fig.add_trace(go.Scatter(x=x, y=mean, mode="lines", line=dict(color=c, width=2.5), legendgroup=g,
                                 name=f"{g} ({len(parts)} trial{'s' if len(parts) > 1 else ''})"))
    fig.update_layout(title="By grid point: mean over seeds, band from min to max", xaxis_title="Env steps",
                      yaxis_title="Return (10-episode mean)", template=TEMPLATE)
    figs.append(fig)

    reps = result.reports
    for name in result.spec.mutate if result.spec.scheduler == "pbt" and len(reps) else []:
        if name not in reps.columns:
            continue
        fig = go.Figure()
        for i, (trial, r) in enumerate(reps.groupby("trial", sort=True)):
            c = COLORS[i % len(COLORS)]
            fig.add_trace(go.Scatter(x=np.arange(len(r)), y=r[name], mode="lines+markers", name=trial,
                                     line=dict(color=c, shape="hv"), customdata=r[TIME_ATTR],
                                     hovertemplate=f"{trial}<br>report %{{x}}<br>env step %{{customdata:,}}<br>"
                                                   f"{name} %{{y:.4g}}<extra></extra>"))
            ex = r[r["event"].str.startswith("exploit")]
            if len(ex):
                fig.add_trace(go.Scatter(x=np.flatnonzero(r["event"].str.startswith("exploit").to_numpy()),
                                         y=ex[name], mode="markers", marker=dict(symbol="star", size=12, color=c),
                                         name=f"{trial}: exploit", text=ex["event"], hovertemplate="%{text}"))
        fig.update_layout(title=f"PBT schedule of {name} (stars: exploits)", xaxis_title="Report (in order)",
                          yaxis_title=name, template=TEMPLATE)
        figs.append(fig)
    return figs


def _ranking_table(result: SweepResult) -> str:
    import html

    t = result.trials
    if not len(t):
        return "<p>No trial has started yet.</p>"
    col = result.metric_column
    ranked = t.sort_values(col, ascending=False, na_position="last")
    cols = ["trial", "status", *result.spec.swept, *([] if "seed" in result.spec.swept else ["seed"]), "env_steps",
            "episodes", "final_return_10", "best_return_10",
            *(["final_eval_return", "best_eval_return"] if result.spec.metric == "eval_return" else []), "exploits",
            *(["error"] if "error" in t.columns else [])]

    hypers = set(result.spec.swept)

    def cell(c: str, v: Any) -> str:  # hyperparameters with their significant digits, metrics to 0.1
        if c in hypers:
            return html.escape(format_hyper(v))
        return f"{v:,.1f}" if isinstance(v, float) else html.escape(str(v))

    head = "<tr><th>rank</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>"
    body = "".join("<tr><td>" + str(i + 1) + "</td>" + "".join(f"<td>{cell(c, r[c])}</td>" for c in cols) + "</tr>"
                   for i, (_, r) in enumerate(ranked.iterrows()))
    return f"<h2>Ranking by {html.escape(col)}</h2><table><thead>{head}</thead><tbody>{body}</tbody></table>"


def write_sweep_report(result: SweepResult, out: Path, plotly_cdn: bool = False) -> Path:
    """The sweep's report.html (the run report's page layout; `fastddpg.reports.plots.read_report_figures` reads it)."""
    import html

    from ...reports.plots import render_page

    details = (f"<details><summary>sweep definition ({SWEEP_FILE})</summary><pre>"
               f"{html.escape(json.dumps(result.spec.to_dict(), indent=2))}</pre></details>")
    title = f"fastddpg sweep: {result.spec.name} ({len(result.trials)} trials)"
    return atomic_write_text(out, render_page(title, _ranking_table(result), details, sweep_figures(result),
                                              plotly_cdn))


def finish_sweep(spec: SweepSpec, statuses: dict[str, str] | None = None,
                 errors: dict[str, str] | None = None, params: dict[str, dict[str, Any]] | None = None
                 ) -> SweepResult:
    """trials.csv and report.html of the sweep; report.html for a trial that stopped without one. ``errors``: the
    failed trials' error lines, an ``error`` column of trials.csv and the report; ``params``: each trial's
    hyperparameters as Tune has them, for the rows of trials without a run directory (`collect`)."""
    from ...reports.plots import write_report

    result = _with_errors(collect(spec, statuses, params), errors or {})
    for d in trial_dirs(spec):
        if not (d / REPORT_FILE).exists():
            with contextlib.suppress(Exception):
                write_report([d], d / REPORT_FILE)
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    result.trials.to_csv(out / TRIALS_FILE, index=False)
    write_sweep_report(result, out / REPORT_FILE)
    return result

