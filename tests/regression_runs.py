"""Fixed-seed CPU runs whose numbers must not change when the code is reorganised (tests/test_regression.py).

    python tests/regression_runs.py --write     # record tests/data/regression.json (only on purpose)

Each run records every episode return, the update metrics of every report and per-network parameter sums.
Written before the architecture refactor (issue 14); a change to these numbers is a change of behaviour.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

DATA = Path(__file__).resolve().parent / "data" / "regression.json"
BASE = {"env": "Pendulum-v1", "num_envs": 4, "total_steps": 2_000, "start_steps": 500, "update_after": 500,
        "updates_per_step": 0.25, "hidden_sizes": (32, 32), "batch_size": 64, "log_every": 500, "device": "cpu",
        "seed": 7, "quiet": True, "probe_n": 4,
        "threads": 1}  # one thread: a parallel reduction may split differently with another count
RUNS: dict[str, dict[str, Any]] = {
    f"{name}_{mode}": {**BASE, **extra, "compile": "off" if mode == "eager" else "default"}
    for name, extra in (("ddpg", {}), ("td3", {"algo": "td3"}), ("ddpg_ou_ln", {"noise": "ou", "layer_norm": True}))
    for mode in ("eager", "compiled")
}
METRIC_SKIP = {"update", "global_step", "updates_in_row", "env_steps_per_sec", "updates_per_sec", "wall_time"}


def record(name: str) -> dict[str, Any]:
    """Train run ``name`` and return its numbers (floats as Python floats, exactly)."""
    from fastddpg import Config, train

    torch._dynamo.reset()
    result = train(Config(**RUNS[name]))
    metrics = {c: result.updates[c].tolist() for c in result.updates.columns if c not in METRIC_SKIP}
    learner = result.algo
    params = {m: [float(sum(p.double().sum() for p in mod.parameters())),
                  float(sum(p.double().abs().sum() for p in mod.parameters()))]
              for m, mod in learner.modules().items()}
    return {"returns": result.episodes["return"].tolist(), "metrics": metrics, "params": params,
            "updates": int(result.summary["updates"])}


if __name__ == "__main__":
    if "--write" not in sys.argv:
        sys.exit("usage: python tests/regression_runs.py --write")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    DATA.write_text(json.dumps({name: record(name) for name in RUNS}, indent=1) + "\n")
    print(f"wrote {DATA}")
