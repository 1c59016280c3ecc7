"""The Plotly report: the notebook's section-3 diagnostics for one run or several overlaid.

Figures (titles as in the notebook where it has them):

1. learning curve: score per episode and its 10-episode moving average against env steps (a menu switches the
   x axis to episodes or wall-clock seconds; the hover shows the episode);
2. critic outputs vs TD targets: Q(s, a) mean and TD target y mean over update steps (a critic that diverges
   shows Q drifting away from y);
3. actor/critic losses, and the algorithm's own metrics beyond the core four where it has any (SAC's alpha and
   entropy), one panel each;
4. policy evolution and 5. Q-values on the fixed probe states, heatmaps (probe x snapshot), one pair per run;
6. throughput: env steps/s and updates/s over wall-clock time.

A run with ``--eval-every`` adds, after the learning curve, its evaluation curve: the mean noise-free return of
each evaluation against the env step (± one std over its episodes as a band; a population's: one line per
member), the best evaluation of each member marked with a star.

A population run (`fastddpg.reports.bands`) adds, first, its curve per grid point (mean, 95% band over seeds, each
member as a thin line) and a table ranking the grid points; the learning curve, the Q-vs-target and the loss panels then
draw one trace per member (named "member k", coloured by its grid point), the throughput panel the per-member
rates once, and the probe heatmaps member 0's.

The HTML holds every figure as JSON in one ``<script type="application/json" id="fastddpg-figures">`` block
(`read_report_figures` parses it back) plus plotly.js, inlined by default so the file works offline, or
referenced from the CDN with ``plotly_cdn=True`` (a few hundred kB instead of several MB).
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.fileio import atomic_write_text
from ..core.lazy import LazyModule
from ..core.registry import CORE_METRICS
from ..core.schema import LAST_N, UPDATE_KEYS, UPDATE_RATES
from ..runs.rundir import RunData, load_run
from ..runs.video import newest_video
from .bands import population_curve, ranking_html
from .reporting import no_episode_yet

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go
    from plotly import subplots
else:  # imported at first use (fastddpg.core.lazy): a run needs pandas and plotly only at its end
    pd = LazyModule("pandas")
    go = LazyModule("plotly.graph_objects")
    subplots = LazyModule("plotly.subplots")

MA_WINDOW = LAST_N
TEMPLATE = "plotly_white"
COLORS = ("#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880", "#FF97FF",
          "#FECB52")
TITLE_RETURNS = "learning curve (score per episode)"  # after the algorithm name, as in the notebook
TITLE_Q = "Critic outputs vs TD targets (mean over minibatch)"
TITLE_LOSSES = "Actor/Critic losses"
TITLE_OWN_METRICS = "The algorithm's own update metrics (mean per report)"
TITLE_POLICY = "Policy evolution on fixed probe states"
TITLE_QPROBE = "Q-values on probe states (critic under current actor)"
TITLE_THROUGHPUT = "Throughput (env steps/s over time)"
TITLE_EVAL = "Evaluation during training (noise-free episodes, mean ± std)"
_FIGS_ID = "fastddpg-figures"


def moving_average(x: np.ndarray, window: int = MA_WINDOW) -> np.ndarray:
    """Trailing mean over the last ``window`` values (fewer at the start), same length as ``x``."""
    return pd.Series(np.asarray(x, dtype=np.float64)).rolling(window, min_periods=1).mean().to_numpy()


def run_labels(runs: Sequence[RunData]) -> list[str]:
    """Each run's directory name (of its resolved path: `.` is named too), with as many parent folders as it takes
    to tell runs with the same name apart, and "(2)", "(3)" ... for the same directory given twice."""
    paths = [r.path.resolve() for r in runs]
    distinct = list(dict.fromkeys(paths))

    def tail(path: Path) -> str:  # its last folders, as few as tell it from every other run's
        others = [q for q in distinct if q != path]
        for depth in range(1, len(path.parts) + 1):
            if all(q.parts[-depth:] != path.parts[-depth:] for q in others):
                break
        return Path(*path.parts[-depth:]).as_posix()

    labels = [tail(p) for p in paths]
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def _name(label: str, what: str, multi: bool) -> str:
    return f"{label}: {what}" if multi else what


def by_member(run: RunData, table: pd.DataFrame, run_index: int, label: str,
              multi: bool) -> list[tuple[pd.DataFrame, str, str, str]]:
    """``table`` (a run's episodes or updates) as (rows, trace name prefix, colour, legend group) per line to
    draw: the whole table for a single run; for a population one entry per member ("member k", coloured by its
    grid point when the report shows one run, by the run otherwise), so no trace jumps between members."""
    color = COLORS[run_index % len(COLORS)]
    if "member" not in table.columns:
        return [(table, label, color, label)]
    point = {k: g for g, members in enumerate(run.config.grid_members().values()) for k in members}
    out = []
    for k, rows in table.groupby("member", sort=True):
        k = int(k)
        out.append((rows, f"{label}: member {k}" if multi else f"member {k}",
                    color if multi else COLORS[point.get(k, 0) % len(COLORS)], f"{label} member {k}"))
    return out


# the learning curve's hover per x axis (the menu switches both): customdata holds (episode, wall s, env step)
LEARNING_HOVER = {
    "steps": "env step %{x:,}<br>episode %{customdata[0]}<br>wall %{customdata[1]:.1f} s<br>%{fullData.name}: "
             "%{y:.1f}<extra></extra>",
    "episodes": "episode %{x:,}<br>env step %{customdata[2]:,}<br>wall %{customdata[1]:.1f} s<br>"
                "%{fullData.name}: %{y:.1f}<extra></extra>",
    "wall": "wall %{x:.1f} s<br>episode %{customdata[0]}<br>env step %{customdata[2]:,}<br>%{fullData.name}: "
            "%{y:.1f}<extra></extra>",
}


def learning_curve(runs: Sequence[RunData], labels: Sequence[str]) -> go.Figure:
    fig = go.Figure()
    multi = len(runs) > 1
    xs: dict[str, list[np.ndarray]] = {"steps": [], "episodes": [], "wall": []}
    for i, (run, label) in enumerate(zip(runs, labels, strict=True)):
        lines = by_member(run, run.episodes, i, label, multi)
        pop = "member" in run.episodes.columns
        for ep, prefix, color, group in lines:
            ep = ep.sort_values("episode")
            custom = (np.stack([ep["episode"].to_numpy(), ep["wall_time"].to_numpy(), ep["global_step"].to_numpy()],
                               axis=-1) if len(ep) else None)
            hover = LEARNING_HOVER["steps"]
            common = dict(x=ep["global_step"].to_numpy(), customdata=custom, hovertemplate=hover, legendgroup=group)
            # markers, not lines: with N envs several episodes end at the same env step
            fig.add_trace(go.Scatter(y=ep["return"].to_numpy(), name=_name(prefix, "Return", multi or pop),
                                     mode="markers", opacity=0.4 if pop else 0.6,
                                     marker=dict(color=color, size=4 if pop else 6), **common))
            fig.add_trace(go.Scatter(y=moving_average(ep["return"].to_numpy()), mode="lines",
                                     name=_name(prefix, f"Return (MA {MA_WINDOW})", multi or pop),
                                     line=dict(color=color, width=1.5 if pop else 2.5), **common))
            for _ in range(2):
                xs["steps"].append(ep["global_step"].to_numpy())
                xs["episodes"].append(ep["episode"].to_numpy())
                xs["wall"].append(ep["wall_time"].to_numpy())
    per = " (per member)" if any("member" in run.episodes.columns for run in runs) else ""
    axis_titles = {"steps": f"Env steps{per}", "episodes": f"Episode{per}", "wall": "Wall-clock time (s)"}
    buttons = [dict(label=f"x: {axis_titles[k].lower()}", method="update",
                    args=[{"x": [a.tolist() for a in xs[k]], "hovertemplate": LEARNING_HOVER[k]},
                          {"xaxis.title.text": axis_titles[k]}])
               for k in ("steps", "episodes", "wall")]
    algos = {run.config.algo.upper() for run in runs}
    title = f"{algos.pop()} {TITLE_RETURNS}" if len(algos) == 1 else TITLE_RETURNS.capitalize()
    fig.update_layout(title=title, xaxis_title=axis_titles["steps"], yaxis_title="Return",
                      updatemenus=[dict(buttons=buttons, direction="down", x=1.0, xanchor="right", y=1.15,
                                        yanchor="top")])
    empty = [(run, label) for run, label in zip(runs, labels, strict=True) if run.episodes.empty]
    if empty:
        text = "<br>".join(_name(label, no_episode_text(run), multi) for run, label in empty)
        fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    if len(empty) == len(runs):  # nothing to draw: the env step range instead of Plotly's meaningless -1..6
        fig.update_xaxes(range=[0, max(_env_steps(run) for run in runs)], tickformat=",d")
        fig.update_yaxes(showticklabels=False)
    return fig


def training_evals(run: RunData) -> pd.DataFrame:
    """The evaluations during training (kind periodic or final) of a run, one row per evaluation and member:
    member, global_step, mean, std (ddof=0), episodes."""
    ev = run.evals
    ev = ev[ev["kind"].isin(("periodic", "final"))] if "kind" in ev.columns else ev.iloc[:0]
    ev = ev.assign(member=ev["member"] if "member" in ev.columns else 0)
    g = ev.groupby(["member", "global_step"], sort=True)["return"]
    return pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=0), "episodes": g.size()}).reset_index()


def eval_curve(runs: Sequence[RunData], labels: Sequence[str]) -> go.Figure | None:
    """The evaluation curve of the runs that evaluated during training (`training_evals`); None when none did."""
    tables = [training_evals(run) for run in runs]
    if all(t.empty for t in tables):
        return None
    fig = go.Figure()
    multi = len(runs) > 1
    for i, (t, label) in enumerate(zip(tables, labels, strict=True)):
        members = sorted(t["member"].unique())
        for m in members:
            rows = t[t["member"] == m]
            color = COLORS[(i if multi or len(members) == 1 else m) % len(COLORS)]
            what = f"member {m}: eval return" if len(members) > 1 else "eval return"
            name = _name(label, what, multi)
            x, y, sd = rows["global_step"].to_numpy(), rows["mean"].to_numpy(), rows["std"].to_numpy()
            if len(members) == 1:  # one std band (a population's K bands would hide each other)
                fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([y + sd, (y - sd)[::-1]]),
                                         fill="toself", fillcolor=color, opacity=0.15, line=dict(width=0),
                                         hoverinfo="skip", showlegend=False, legendgroup=name))
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=name, legendgroup=name,
                                     line=dict(color=color, width=2 if len(members) == 1 else 1.2),
                                     customdata=np.stack([sd, rows["episodes"].to_numpy()], axis=-1),
                                     hovertemplate="env step %{x:,}<br>return %{y:.1f} ± %{customdata[0]:.1f} "
                                     "(%{customdata[1]} episodes)<extra>%{fullData.name}</extra>"))
            best = rows.loc[rows["mean"].idxmax()]  # the first of equal means: the one best_actor.pt kept
            fig.add_trace(go.Scatter(x=[best["global_step"]], y=[best["mean"]], mode="markers", legendgroup=name,
                                     name=_name(label, "best" if len(members) == 1 else "each member's best", multi),
                                     showlegend=bool(m == members[0]), marker=dict(color=color, symbol="star", size=13,
                                                                              line=dict(color="black", width=1)),
                                     hovertemplate="best: env step %{x:,}, return %{y:.1f}<extra></extra>"))
    fig.update_layout(title=TITLE_EVAL, xaxis_title="Env steps", yaxis_title="Eval return")
    return fig


def _env_steps(run: RunData) -> int:
    steps = (run.summary or {}).get("env_steps")
    if steps is None:
        steps = int(run.updates["global_step"].max()) if len(run.updates) else run.config.total_steps
    return int(steps)


def no_episode_text(run: RunData) -> str:
    """'No episode finished yet (episodes are N steps ...)': why a learning curve is empty."""
    return no_episode_yet(run.config.env, run.config.num_envs, _env_steps(run))


_METRIC_LABELS = {"q2_mean": "Q2(s,a) mean", "target_min_mean": "min Q'(s',a') mean"}
# One dash per metric (the colour is the run's): Q solid, y dash, then these for the extra means in order
_EXTRA_DASHES = ("dot", "dashdot", "longdash", "longdashdot")


def _extra_means(updates: pd.DataFrame) -> list[str]:
    """Other ``*_mean`` metric columns (e.g. TD3's twin critics) to draw next to Q and y. TD3's ``q1_mean`` is
    left out: Q is Q1 (the critic the actor ascends), so it would lie exactly on the Q line."""
    return [c for c in updates.columns if c.endswith("_mean") and c not in ("q_mean", "y_mean", "q1_mean")]


def q_vs_target(runs: Sequence[RunData], labels: Sequence[str]) -> go.Figure:
    fig = go.Figure()
    multi = len(runs) > 1
    for i, (run, label) in enumerate(zip(runs, labels, strict=True)):
        q_name = "Q(s,a) mean" if "q1_mean" not in run.updates.columns else "Q1(s,a) mean"
        pop = "member" in run.updates.columns
        for up, prefix, color, group in by_member(run, run.updates, i, label, multi):
            x = up["update"].to_numpy()
            fig.add_trace(go.Scatter(x=x, y=up["q_mean"].to_numpy(), mode="lines", legendgroup=group,
                                     name=_name(prefix, q_name, multi or pop), line=dict(color=color)))
            fig.add_trace(go.Scatter(x=x, y=up["y_mean"].to_numpy(), mode="lines", legendgroup=group,
                                     name=_name(prefix, "TD target y mean", multi or pop),
                                     line=dict(color=color, dash="dash")))
            for j, col in enumerate(_extra_means(up)):
                fig.add_trace(go.Scatter(x=x, y=up[col].to_numpy(), mode="lines", legendgroup=group,
                                         name=_name(prefix, _METRIC_LABELS.get(col, col), multi or pop),
                                         line=dict(color=color, dash=_EXTRA_DASHES[j % len(_EXTRA_DASHES)],
                                                   width=1.5), opacity=0.8))
    fig.update_layout(title=TITLE_Q, xaxis_title="Update step", yaxis_title="Value")
    return _note_runs_without_updates(fig, runs, labels)


def losses(runs: Sequence[RunData], labels: Sequence[str]) -> go.Figure:
    fig = subplots.make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                                 subplot_titles=("Critic loss (MSE)", "Actor loss (-Q)"))
    multi = len(runs) > 1
    for i, (run, label) in enumerate(zip(runs, labels, strict=True)):
        pop = "member" in run.updates.columns
        for up, prefix, color, group in by_member(run, run.updates, i, label, multi):
            x = up["update"].to_numpy()
            fig.add_trace(go.Scatter(x=x, y=up["critic_loss"].to_numpy(), mode="lines", legendgroup=group,
                                     name=_name(prefix, "Critic loss (MSE)", multi or pop), line=dict(color=color)),
                          row=1, col=1)
            fig.add_trace(go.Scatter(x=x, y=up["actor_loss"].to_numpy(), mode="lines", legendgroup=group,
                                     name=_name(prefix, "Actor loss (-Q)", multi or pop),
                                     line=dict(color=color, dash="dash")), row=2, col=1)
    fig.update_layout(title=TITLE_LOSSES, height=600)
    fig.update_xaxes(title_text="Update step", row=2, col=1)
    fig.update_yaxes(title_text="Loss")
    return _note_runs_without_updates(fig, runs, labels)


def _note_runs_without_updates(fig: go.Figure, runs: Sequence[RunData], labels: Sequence[str]) -> go.Figure:
    """An annotation naming each run that made no gradient update (its panel would be empty, unexplained)."""
    multi = len(runs) > 1
    idle = [_name(label, "no gradient update (the run ended before --update-after and --batch-size were reached)",
                  multi) for run, label in zip(runs, labels, strict=True) if run.updates.empty]
    if idle:
        fig.add_annotation(text="<br>".join(idle), showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    return fig


def _own_metrics(updates: pd.DataFrame) -> list[str]:
    """The algorithm's own metric columns that no other figure draws: beyond the core four, not a ``*_mean`` (those
    go next to Q and y), not a key or a rate (SAC's alpha and entropy; none for DDPG and TD3)."""
    drawn = {*UPDATE_KEYS, *CORE_METRICS, *UPDATE_RATES, "member"}
    return [c for c in updates.columns if c not in drawn and not c.endswith("_mean")]


def own_metrics(runs: Sequence[RunData], labels: Sequence[str]) -> go.Figure | None:
    """One panel per metric of `_own_metrics` (of any run) against the update step; None when no run has one."""
    names = list(dict.fromkeys(c for run in runs for c in _own_metrics(run.updates)))
    if not names:
        return None
    fig = subplots.make_subplots(rows=len(names), cols=1, shared_xaxes=True, vertical_spacing=0.08,
                                 subplot_titles=names)
    multi = len(runs) > 1
    for i, (run, label) in enumerate(zip(runs, labels, strict=True)):
        pop = "member" in run.updates.columns
        for up, prefix, color, group in by_member(run, run.updates, i, label, multi):
            for row, col in enumerate(names, start=1):
                if col in up.columns:
                    fig.add_trace(go.Scatter(x=up["update"].to_numpy(), y=up[col].to_numpy(), mode="lines",
                                             legendgroup=group, name=_name(prefix, col, multi or pop),
                                             line=dict(color=color)), row=row, col=1)
    fig.update_layout(title=TITLE_OWN_METRICS, height=300 * len(names))
    fig.update_xaxes(title_text="Update step", row=len(names), col=1)
    return fig


def probe_matrix(probes: pd.DataFrame, value: str) -> tuple[np.ndarray, pd.DataFrame]:
    """Probes (tidy) -> z (probe_n, snapshots) of ``value`` and one row per snapshot (snapshot, episode,
    global_step). A snapshot taken at the same env step as the one before it (the end-of-run snapshot right
    after a flush's) replaces it."""
    snaps = probes.groupby("snapshot", sort=True)[["episode", "global_step"]].first().reset_index()
    snaps = snaps.drop_duplicates("global_step", keep="last")
    z = probes.pivot(index="probe", columns="snapshot", values=value)[snaps["snapshot"]].to_numpy()
    return z, snaps


def probe_heatmap(run: RunData, label: str, value: str, multi: bool) -> go.Figure:
    """The notebook's policy (``value='action'``) or Q (``value='q'``) heatmap over probe snapshots."""
    policy = value == "action"
    title = TITLE_POLICY if policy else TITLE_QPROBE
    if multi:
        title = f"{title} — {label}"
    probes = run.probes
    if "member" in probes.columns:  # a population: member 0's probes (each member has its own probe states)
        probes = probes[probes["member"] == 0]
        title = f"{title} (member 0)"
    fig = go.Figure()
    if probes.empty:
        stopped = (run.summary or {}).get("stopped_by")
        why = (f"the run was stopped ({stopped}) before its first snapshot" if stopped else
               "the run ended before the buffer held max(probe_n, batch_size) transitions")
        fig.add_annotation(text=f"No probe snapshots recorded ({why}).", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")
    else:
        z, snaps = probe_matrix(probes, value)
        one_d = int(run.meta.get("act_dim", 1)) == 1
        if policy:  # the notebook's: the action itself for 1-D actions, else its norm
            colorbar, colorscale, zmid = ("action", "RdBu", 0.0) if one_d else ("||a||", "Viridis", None)
        else:
            colorbar, colorscale, zmid = "Q(s, mu(s))", "Viridis", None
        episodes = np.broadcast_to(snaps["episode"].to_numpy(), z.shape)
        fig.add_trace(go.Heatmap(z=z, x=snaps["global_step"].to_numpy(), y=np.arange(z.shape[0]),
                                 customdata=episodes, colorscale=colorscale, zmid=zmid,
                                 colorbar=dict(title=colorbar), name=label,
                                 hovertemplate="env step %{x:,} (episode %{customdata})<br>probe %{y}<br>"
                                               f"{colorbar} %{{z:.3f}}<extra></extra>"))
    # one column per snapshot, labelled with its env step: a numeric axis would extend half a column past the
    # run's last step and, for a single snapshot, invent fractional ticks
    if not probes.empty:
        steps = snaps["global_step"].tolist()[:: -(-len(snaps) // 10)]  # at most 10 labels
        fig.update_xaxes(type="category", tickvals=steps, ticktext=[f"{s:,}" for s in steps])
    per = " (per member)" if "member" in run.probes.columns else ""
    fig.update_layout(title=title, xaxis_title=f"Env steps at snapshot{per}", yaxis_title="Probe state index")
    return fig


def throughput(runs: Sequence[RunData], labels: Sequence[str]) -> go.Figure:
    fig = go.Figure()
    multi = len(runs) > 1
    for i, (run, label) in enumerate(zip(runs, labels, strict=True)):
        color = COLORS[i % len(COLORS)]
        rows = run.updates
        unit = ""
        if "member" in rows.columns:  # a population's K rows per report carry the same per-member rates: draw one
            rows, unit = rows[rows["member"] == rows["member"].min()], " per member"
        warm = warmup_rows(run, rows)
        up = rows[~warm] if not warm.all() else rows  # all warm-up: show them rather than nothing
        x = up["wall_time"].to_numpy()
        fig.add_trace(go.Scatter(x=x, y=up["env_steps_per_sec"].to_numpy(), mode="lines+markers", legendgroup=label,
                                 name=_name(label, f"env steps/s{unit}", multi), line=dict(color=color)))
        fig.add_trace(go.Scatter(x=x, y=up["updates_per_sec"].to_numpy(), mode="lines", legendgroup=label,
                                 name=_name(label, f"updates/s{unit}", multi), line=dict(color=color, dash="dot")))
        if warm.any() and not warm.all():  # off by default so the spike does not squash the axis; a click shows it
            w = rows[warm]
            fig.add_trace(go.Scatter(x=w["wall_time"].to_numpy(), y=w["env_steps_per_sec"].to_numpy(),
                                     mode="markers", legendgroup=label, visible="legendonly",
                                     name=_name(label, f"env steps/s{unit}, warm-up (before --update-after)", multi),
                                     marker=dict(color=color, symbol="x", size=9)))
    fig.update_layout(title=TITLE_THROUGHPUT, xaxis_title="Wall-clock time (s)", yaxis_title="Per second")
    return _note_runs_without_updates(fig, runs, labels)  # (the rates come with the update rows)


def warmup_rows(run: RunData, updates: pd.DataFrame | None = None) -> pd.Series:
    """Rows of ``updates`` (default ``run.updates``; one row per report) whose report interval began before
    ``update_after``: env steps without updates (and with random actions) for most of it, so its env steps/s is
    no measure of training throughput but a spike (e.g. 4 updates in the 1,000 steps up to update_after =
    1,000). An interval begins at the previous row's env step; the first one ``log_every`` env steps before its
    own."""
    up = run.updates if updates is None else updates
    start = up["global_step"].shift(1, fill_value=0)
    if len(up):
        start.iloc[0] = max(0, int(up["global_step"].iloc[0]) - run.config.log_every)
    return start < run.config.update_after


def _is_population(run: RunData) -> bool:
    return "member" in run.episodes.columns and run.config.num_members > 1


def build_figures(runs: Sequence[RunData]) -> list[go.Figure]:
    """All report figures for one or more runs, in report order."""
    labels = run_labels(runs)
    multi = len(runs) > 1
    figs = [population_curve(run, COLORS, label if multi else "")
            for run, label in zip(runs, labels, strict=True) if _is_population(run)]
    figs += [learning_curve(runs, labels), q_vs_target(runs, labels), losses(runs, labels)]
    evals = eval_curve(runs, labels)
    if evals is not None:  # right after the learning curve
        figs.insert(len(figs) - 2, evals)
    own = own_metrics(runs, labels)
    if own is not None:  # after the losses
        figs.append(own)
    for run, label in zip(runs, labels, strict=True):
        figs += [probe_heatmap(run, label, "action", multi), probe_heatmap(run, label, "q", multi)]
    figs.append(throughput(runs, labels))
    for fig in figs:
        fig.update_layout(template=TEMPLATE, legend=dict(groupclick="toggleitem"))
    return figs


# --- HTML -------------------------------------------------------------------------------------------------------
def _plotly_script(cdn: bool) -> str:
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    if cdn:
        return f'<script src="https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js" charset="utf-8"></script>'
    return f'<script type="text/javascript">{get_plotlyjs()}</script>'


def _fmt(x: Any, spec: str = ",.1f") -> str:
    """``x`` formatted; "-" for a missing or non-finite number (a run with no episode, or stopped by NaN)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    try:
        return format(x, spec)
    except (TypeError, ValueError):
        return str(x)


def _summary_table(runs: Sequence[RunData], labels: Sequence[str]) -> str:
    head = ("run", "env", "algo", "seed", "num envs", "device", "episodes", "env steps", "updates", "wall time (s)",
            "env steps/s", "last-10 return", "eval return (mean ± std)", "ended")
    rows = []
    for run, label in zip(runs, labels, strict=True):
        cfg, s = run.config, run.summary or {}
        ev = run.evals
        if len(ev):
            last = ev[ev["eval_time"] == ev["eval_time"].iloc[-1]]["return"].to_numpy()
            evtxt = f"{last.mean():.1f} ± {last.std():.1f} ({len(last)} ep)"
        else:
            evtxt = "-"
        episodes, steps, updates, rate = (
            (s.get("episodes", len(run.episodes)), _fmt(s.get("env_steps"), ","), _fmt(s.get("updates"), ","),
             _fmt(s.get("env_steps_per_sec"), ",.0f")) if "members" not in s else _population_counts(s))
        cells = (label, cfg.env, cfg.algo, cfg.seed, cfg.num_envs, run.meta.get("device", cfg.device),
                 episodes, steps, updates, _fmt(s.get("wall_time_s")), rate, _fmt(s.get("last10_mean_return")), evtxt,
                 _ended(s))
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return ("<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _ended(summary: dict[str, Any]) -> str:
    """How a run ended, for the summary table: "finished", "stopped: <why>" (a signal, a non-finite value, an
    error: summary.json's ``stopped_by``), or "-" for a run still going or that died without a summary."""
    if not summary:
        return "-"
    stopped = summary.get("stopped_by")
    return f"stopped: {stopped}" if stopped else "finished"


def _population_counts(s: dict[str, Any]) -> tuple[str, str, str, str]:
    """A population's episodes, env steps, updates and env steps/s for the summary table, each in both units,
    labelled: per member and over all members."""
    k = int(s["members"])
    eps = s.get("member_episodes") or []
    per = (f"{min(eps):,}" if min(eps) == max(eps) else f"{min(eps):,}-{max(eps):,}") if eps else "-"

    def both(per_member: Any, total: Any, spec: str) -> str:
        return f"{_fmt(per_member, spec)} per member ({_fmt(total, spec)} over {k} members)"

    steps, updates, rate = s.get("env_steps"), s.get("updates"), s.get("env_steps_per_sec")
    return (f"{per} per member ({_fmt(s.get('episodes'), ',')} over {k} members)",
            both(steps, None if steps is None else steps * k, ","),
            both(updates, None if updates is None else updates * k, ","),
            both(rate, None if rate is None else rate * k, ",.0f"))


def _details(runs: Sequence[RunData], labels: Sequence[str]) -> str:
    out = []
    for run, label in zip(runs, labels, strict=True):
        info = {k: run.meta.get(k) for k in ("command", "created", "device", "versions")}
        info["config"] = run.config.to_dict()
        out.append(f"<details><summary>{html.escape(label)}: config, versions, command line</summary><pre>"
                   f"{html.escape(json.dumps(info, indent=2))}</pre></details>")
    return "".join(out)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9em; }} th, td {{ padding: 0.25em 0.6em; border-bottom: 1px solid #ddd;
text-align: right; }} th:first-child, td:first-child {{ text-align: left; }}
.fig {{ width: 100%; min-height: 450px; margin-top: 1em; }} pre {{ font-size: 0.8em; }}
.video {{ display: inline-block; margin: 1em 1em 0 0; }} .video video, .video img {{ max-width: 400px; }}
</style>
{plotly}
</head><body>
<h1>{title}</h1>
{table}
{details}
{videos}
<div id="figures"></div>
<script type="application/json" id="{figs_id}">{figures}</script>
<script>
const figs = JSON.parse(document.getElementById("{figs_id}").textContent);
const root = document.getElementById("figures");
for (const f of figs) {{
  const div = document.createElement("div"); div.className = "fig"; root.appendChild(div);
  Plotly.newPlot(div, f.data, f.layout, {{responsive: true}});
}}
</script>
</body></html>
"""


def _videos(runs: Sequence[RunData], labels: Sequence[str], base: Path | None) -> str:
    """The newest evaluation video of each run (``fastddpg eval --video``), linked relative to ``base`` (the
    directory the HTML is written to) so the report and its run directory can move together."""
    out = []
    for run, label in zip(runs, labels, strict=True):
        video = newest_video(run.path)
        if video is None:
            continue
        src = html.escape(Path(os.path.relpath(video, base)).as_posix() if base is not None else video.as_uri())
        tag = (f'<video src="{src}" controls loop muted autoplay playsinline></video>' if video.suffix == ".mp4"
               else f'<img src="{src}" alt="evaluation episodes">')
        out.append(f'<figure class="video">{tag}<figcaption>{html.escape(label)}: {html.escape(video.name)}'
                   "</figcaption></figure>")
    return "<h2>Evaluation video</h2>" + "".join(out) if out else ""


def render_html(runs: Sequence[RunData], plotly_cdn: bool = False, base: Path | None = None) -> str:
    """The report page for ``runs``: a summary table, configs, the newest evaluation videos, then every
    figure. ``base``: the directory the page will be written to (for the videos' relative links)."""
    labels = run_labels(runs)
    title = f"fastddpg report: {labels[0]}" if len(runs) == 1 else f"fastddpg report: {len(runs)} runs"
    table = _summary_table(runs, labels) + "".join(ranking_html(run, label) for run, label in
                                                   zip(runs, labels, strict=True) if _is_population(run))
    return render_page(title, table, _details(runs, labels), build_figures(runs), plotly_cdn,
                       videos=_videos(runs, labels, base))


def render_page(title: str, table_html: str, details_html: str, figures: Sequence[Any], plotly_cdn: bool = False,
                videos: str = "") -> str:
    """fastddpg's report page: ``title``, the given HTML blocks, then every Plotly figure, embedded as JSON
    that `read_report_figures` reads back (the run report and the sweep report share it)."""
    data = "[" + ",".join(f.to_json() for f in figures) + "]"
    return _PAGE.format(title=html.escape(title), plotly=_plotly_script(plotly_cdn), table=table_html,
                        details=details_html, videos=videos, figs_id=_FIGS_ID, figures=data.replace("</", "<\\/"))


def write_report(runs: Sequence[str | Path | RunData], out: str | Path, plotly_cdn: bool = False) -> Path:
    """Write the report of one or more run directories to ``out`` (written atomically). Returns ``out``."""
    data = [r if isinstance(r, RunData) else load_run(r) for r in runs]
    out = Path(out)
    return atomic_write_text(out, render_html(data, plotly_cdn, base=out.resolve().parent))


# --- reading a report back (tests, scripts) ----------------------------------------------------------------------
def _decode(obj: Any) -> Any:
    """Plotly's base64 typed arrays ({"dtype", "bdata", "shape"?}) -> nested lists; recursively."""
    if isinstance(obj, dict):
        if "bdata" in obj and "dtype" in obj:
            arr = np.frombuffer(base64.b64decode(obj["bdata"]), dtype=np.dtype(obj["dtype"]))
            if "shape" in obj:
                arr = arr.reshape([int(s) for s in str(obj["shape"]).split(",")])
            return arr.tolist()
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


def read_report_figures(report: str | Path) -> list[dict[str, Any]]:
    """The figures embedded in a report.html (path or HTML text) as plain dicts, typed arrays decoded to lists:
    ``[{"data": [trace, ...], "layout": {...}}, ...]``."""
    text = Path(report).read_text(encoding="utf-8") if isinstance(report, Path) or not report.lstrip().startswith(
        "<") else report
    m = re.search(rf'<script type="application/json" id="{_FIGS_ID}">(.*?)</script>', text, re.S)
    if m is None:
        raise ValueError("no fastddpg figure block in this HTML")
    return _decode(json.loads(m.group(1)))


def figure_title(fig: dict[str, Any]) -> str:
    title = fig.get("layout", {}).get("title", "")
    return title.get("text", "") if isinstance(title, dict) else str(title)
