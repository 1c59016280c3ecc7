"""Fixed-seed CPU training runs, recorded to JSON and compared bit for bit: the before/after check of a change that
must not move any number (a refactor), made on one machine in one sitting. scripts/same-numbers.sh runs it for a
base commit and for the working tree; by hand:

    python scripts/fixed_seed_runs.py --out FILE             # record every run with the fastddpg on sys.path
    python scripts/fixed_seed_runs.py --compare A.json B.json  # exit 1 unless the numbers are identical

Each run records every episode return, the update metrics of every report and per-network parameter sums. Never
compare against a file recorded on another machine: another CPU model rounds differently, and a training run
amplifies the last bit (tests/test_golden.py is the check that holds on any CPU).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

BASE = {"env": "Pendulum-v1", "num_envs": 4, "total_steps": 2_000, "start_steps": 500, "update_after": 500,
        "updates_per_step": 0.25, "hidden_sizes": (32, 32), "batch_size": 64, "log_every": 500, "device": "cpu",
        "seed": 7, "quiet": True, "probe_n": 4,
        "threads": 1}  # one thread: a parallel reduction may split differently with another count
RUNS: dict[str, dict[str, Any]] = {
    f"{name}_{mode}": {**BASE, **extra, "compile": "off" if mode == "eager" else "default"}
    for name, extra in (("ddpg", {}), ("td3", {"algo": "td3"}), ("ddpg_ou_ln", {"noise": "ou", "layer_norm": True}))
    for mode in ("eager", "compiled")
} | {  # the hand-derived update (a CPU run's default), at the notebook's width: gradient buffers of ~67,000 floats
    f"{name}_analytic": {**BASE, **extra, "compile": "analytic", "hidden_sizes": (256, 256)}
    for name, extra in (("ddpg", {}), ("td3", {"algo": "td3"}))
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


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The runs and keys whose numbers differ between two recordings (as JSON text: exact floats, NaN equals NaN)."""
    diffs = [f"{name}: only in one recording" for name in sorted(set(a) ^ set(b))]
    for name in sorted(set(a) & set(b)):
        diffs += [f"{name}: {key} differ" for key in ("updates", "returns", "metrics", "params")
                  if json.dumps(a[name][key], sort_keys=True) != json.dumps(b[name][key], sort_keys=True)]
    return diffs


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--out":
        out = {}
        for name in RUNS:
            out[name] = record(name)
            print(f"recorded {name}", flush=True)
        Path(args[1]).write_text(json.dumps(out, indent=1) + "\n")
    elif len(args) == 3 and args[0] == "--compare":
        diffs = compare(json.loads(Path(args[1]).read_text()), json.loads(Path(args[2]).read_text()))
        print("\n".join(diffs) if diffs else f"same numbers: {len(RUNS)} runs identical to the last bit")
        sys.exit(1 if diffs else 0)
    else:
        sys.exit("usage: python scripts/fixed_seed_runs.py --out FILE | --compare A.json B.json")
