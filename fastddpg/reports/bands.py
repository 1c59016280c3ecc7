"""The report of a population run (--num-seeds / --grid): per grid point, the members' mean learning curve with a
95% band over seeds and each member as a thin line, against env steps or wall-clock seconds; and a table
ranking the grid points by final return and by time to a 10-episode mean of -200.

A member's curve is its 10-episode moving average of the training return, at each of its episode ends. To
average members, each curve is interpolated onto a common grid of 100 points (env steps or seconds) within the
range every member of the grid point covers. The band is mean +- t(0.975, n - 1) s / sqrt(n) over the n seeds
of the grid point (none for a single seed).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..core.lazy import LazyModule
from ..core.schema import LAST_N, first_crossing, last10_mean
from ..runs.rundir import RunData

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go
else:  # imported at first use (fastddpg.core.lazy): a run needs pandas and plotly only at its end
    pd = LazyModule("pandas")
    go = LazyModule("plotly.graph_objects")

MA_WINDOW = LAST_N
TARGET_ENV, TARGET_RETURN = "Pendulum-v1", -200.0  # the notebook's "solved": the ranking reports it on Pendulum only
GRID_POINTS = 100
# two-sided 95% Student t quantiles by degrees of freedom (1..30); beyond, `t975`'s expansion
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
_Z975 = 1.959964


def t975(dof: int) -> float:
    """The 97.5% quantile of Student's t with ``dof`` degrees of freedom: the table to 30, beyond it the
    Cornish-Fisher expansion in 1/dof about the normal quantile (within 1e-4 of the exact value from dof 31 on)."""
    if 1 <= dof <= len(_T975):
        return _T975[dof - 1]
    z, v = _Z975, float(dof)
    return z + (z ** 3 + z) / (4 * v) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * v ** 2)


def ci95(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(mean, half-width of the 95% interval) over ``axis`` (half-width NaN for fewer than 2 values)."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[axis]
    mean = values.mean(axis=axis)
    if n < 2:
        return mean, np.full_like(mean, np.nan)
    return mean, t975(n - 1) * values.std(axis=axis, ddof=1) / math.sqrt(n)


def member_curves(run: RunData) -> dict[int, pd.DataFrame]:
    """Each member's episodes in order, with ``ma``: the moving average of its last 10 returns."""
    out = {}
    for k, ep in run.episodes.groupby("member", sort=True):
        ep = ep.sort_values("episode").reset_index(drop=True)
        ep["ma"] = ep["return"].rolling(MA_WINDOW, min_periods=1).mean()
        out[int(k)] = ep
    return out


def grid_groups(run: RunData) -> dict[str, list[int]]:
    """{grid point label: its members} ('all members' for a population without a grid)."""
    return run.config.grid_members()


def _band(curves: list[pd.DataFrame], x: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(grid, mean, half-width) of the members' ``ma`` against column ``x`` on the range all of them cover."""
    if not curves or any(c.empty for c in curves):
        return None
    lo, hi = max(c[x].min() for c in curves), min(c[x].max() for c in curves)
    if not hi > lo:
        return None
    grid = np.linspace(lo, hi, GRID_POINTS)
    ys = np.stack([np.interp(grid, c[x].to_numpy(float), c["ma"].to_numpy(float)) for c in curves])
    mean, half = ci95(ys)
    return grid, mean, half


def population_curve(run: RunData, colors: Sequence[str], run_label: str = "") -> go.Figure:
    """Per grid point: the mean 10-episode return with its 95% band over seeds, and every member as a thin
    line; a menu switches the x axis between env steps and wall-clock seconds. ``run_label`` (reports of several
    runs) names the run in the title, so that two populations' figures tell apart."""
    curves = member_curves(run)
    fig = go.Figure()
    xs: dict[str, list[list[float]]] = {"global_step": [], "wall_time": []}
    ys: dict[str, list[list[float]]] = {"global_step": [], "wall_time": []}

    def add(trace: go.Scatter, per_x: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        fig.add_trace(trace)
        for key in xs:
            x, y = per_x[key]
            xs[key].append(np.asarray(x, float).tolist())
            ys[key].append(np.asarray(y, float).tolist())

    for i, (label, members) in enumerate(grid_groups(run).items()):
        color = colors[i % len(colors)]
        mine = [curves[k] for k in members if k in curves]
        for k in members:
            if k in curves:
                c = curves[k]
                per_x = {key: (c[key], c["ma"]) for key in xs}
                add(go.Scatter(x=c["global_step"], y=c["ma"], mode="lines", line=dict(color=color, width=0.8),
                               opacity=0.45, name=f"member {k}", legendgroup=label, showlegend=False,
                               hovertemplate=f"member {k}<br>%{{x:,}}: %{{y:.1f}}<extra>{html.escape(label)}</extra>"),
                    per_x)
        bands = {key: _band(mine, key) for key in xs}
        if all(b is not None for b in bands.values()):
            per_mean = {key: (b[0], b[1]) for key, b in bands.items()}
            per_upper = {key: (b[0], b[1] + np.nan_to_num(b[2])) for key, b in bands.items()}
            per_lower = {key: (b[0], b[1] - np.nan_to_num(b[2])) for key, b in bands.items()}
            g = bands["global_step"]
            add(go.Scatter(x=g[0], y=g[1] + np.nan_to_num(g[2]), mode="lines", line=dict(width=0),
                           legendgroup=label, showlegend=False, hoverinfo="skip"), per_upper)
            add(go.Scatter(x=g[0], y=g[1] - np.nan_to_num(g[2]), mode="lines", line=dict(width=0),
                           fill="tonexty", fillcolor=_rgba(color, 0.2), legendgroup=label, showlegend=False,
                           hoverinfo="skip"), per_lower)
            add(go.Scatter(x=g[0], y=g[1], mode="lines", line=dict(color=color, width=2.5),
                           name=f"{label} (mean of {len(mine)}, 95% band)", legendgroup=label), per_mean)
    titles = {"global_step": "Env steps (per member)", "wall_time": "Wall-clock time (s)"}
    buttons = [dict(label=f"x: {titles[k].lower()}", method="update",
                    args=[{"x": xs[k], "y": ys[k]}, {"xaxis.title.text": titles[k]}]) for k in xs]
    of = f" ({run_label})" if run_label else ""
    fig.update_layout(title=f"{run.config.algo.upper()} population{of}: {MA_WINDOW}-episode mean return per grid "
                      "point",
                      xaxis_title=titles["global_step"], yaxis_title=f"Return ({MA_WINDOW}-episode mean)",
                      updatemenus=[dict(buttons=buttons, direction="down", x=1.0, xanchor="right", y=1.15,
                                        yanchor="top")])
    return fig


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    return f"rgba({int(h[0:2], 16)}, {int(h[2:4], 16)}, {int(h[4:6], 16)}, {alpha})"


def first_hit(curve: pd.DataFrame, target: float = TARGET_RETURN) -> pd.DataFrame:
    """The row of a member's curve (`member_curves`) at which its mean of the last 10 returns first reaches
    ``target`` (`fastddpg.core.schema.first_crossing`: full windows, once per env step), or no row."""
    i = first_crossing(curve["global_step"].tolist(), curve["return"].tolist(), target, MA_WINDOW)
    return curve.iloc[[] if i is None else [i]]


def ranking(run: RunData) -> pd.DataFrame:
    """One row per grid point, best final return first: members, final return (mean of the members' last-10
    means) with its 95% half-width; on Pendulum-v1 also the members that reached a 10-episode mean of -200
    (`first_hit`), and the median env steps and seconds they took."""
    curves = member_curves(run)
    pendulum = run.config.env == TARGET_ENV
    rows = []
    for label, members in grid_groups(run).items():
        finals, steps, secs = [], [], []
        for k in members:
            c = curves.get(k)
            if c is None or c.empty:
                continue
            finals.append(last10_mean(c["return"].tolist()))
            hit = first_hit(c)
            if len(hit):
                steps.append(int(hit["global_step"].iloc[0]))
                secs.append(float(hit["wall_time"].iloc[0]))
        mean, half = ci95(np.array(finals)) if finals else (np.nan, np.nan)
        row = {"grid point": label, "members": len(members), "final return": float(mean),
               "95% half-width": float(half)}
        if pendulum:
            row.update({"reached -200": f"{len(steps)}/{len(members)}",
                        "median env steps to -200": float(np.median(steps)) if steps else np.nan,
                        "median s to -200": float(np.median(secs)) if secs else np.nan})
        rows.append(row)
    return pd.DataFrame(rows).sort_values("final return", ascending=False, na_position="last").reset_index(drop=True)


def ranking_html(run: RunData, label: str) -> str:
    """`ranking` as an HTML table with a heading."""
    table = ranking(run)

    def cell(v: object) -> str:
        if isinstance(v, float):
            return "-" if math.isnan(v) else f"{v:,.1f}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>"
                   for row in table.itertuples(index=False))
    return (f"<h2>{html.escape(label)}: grid points ranked by final return (last {MA_WINDOW} training episodes, "
            f"mean and 95% interval over seeds)</h2><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
            "</table>")
