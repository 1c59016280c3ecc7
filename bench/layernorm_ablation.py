"""Where does DDPG + LayerNorm's Q overestimation come from? LayerNorm in the actor only, the critic only, both,
and both without gradient-norm clipping, on Pendulum-v1 (num_envs 16, replay ratio 1, 20k env steps).

`--layer-norm` puts LayerNorm in actor and critic together; this script splits it by wrapping
`fastddpg.learning.networks.mlp` inside each worker process (the actor is the MLP that ends in tanh), and otherwise
trains and evaluates exactly as `bench/exercises.py` does (its `worker`: the same Q - G measurement).

    python bench/layernorm_ablation.py --jobs 2 --threads 1     # 4 placements x 3 seeds: about 20 minutes
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workers import run_workers

ROOT = Path(__file__).resolve().parent.parent
PLACEMENTS = ("actor", "critic", "both", "both-noclip")


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    from torch import nn

    import bench.exercises as ex
    import fastddpg.learning.networks as nets

    where = spec["where"]
    plain_mlp = nets.mlp

    def mlp(sizes, output_activation=nn.Identity, layer_norm=False):  # type: ignore[no-untyped-def]
        is_actor = output_activation is nn.Tanh
        on = layer_norm and (where.startswith("both") or (where == "actor") == is_actor)
        return plain_mlp(sizes, output_activation=output_activation, layer_norm=on)

    nets.mlp = mlp
    if where == "both-noclip":
        ex.VARIANTS["ddpg-ln"] = {"layer_norm": True, "grad_clip_norm": 0.0}
    rec = ex.worker({"variant": "ddpg-ln", "num_envs": spec["num_envs"], "seed": spec["seed"], "env": "Pendulum-v1",
                     "total_steps": spec["total_steps"], "device": "cpu", "threads": spec["threads"],
                     "tail_steps": 500})
    return {"where": where, **{k: rec[k] for k in ("seed", "eval_return", "q_over", "q_mean", "g_mean",
                                                   "last10_train_return", "steps_to_threshold", "wall_seconds")}}


def markdown(runs: list[dict[str, Any]]) -> str:
    lines = ["| LayerNorm in | final 10-ep eval return | last 10 training episodes | Q - G per seed | mean Q - G |",
             "|---|---|---|---|---|"]
    for w in PLACEMENTS:
        rs = [r for r in runs if r["where"] == w]
        if not rs:
            continue
        lines.append(f"| {w} | {statistics.mean(r['eval_return'] for r in rs):.0f} | "
                     f"{statistics.mean(r['last10_train_return'] for r in rs):.0f} | "
                     f"{', '.join(format(r['q_over'], '.0f') for r in rs)} | "
                     f"{statistics.mean(r['q_over'] for r in rs):.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--placements", nargs="+", default=list(PLACEMENTS), choices=PLACEMENTS)
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--total-steps", type=int, default=20_000)
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (timings stay honest only with 1 per core)")
    p.add_argument("--threads", type=int, default=0, help="torch threads per run (0: torch's default)")
    p.add_argument("--out", default="bench/results")
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    specs = [{"where": w, "seed": s, "num_envs": args.num_envs, "total_steps": args.total_steps,
              "threads": args.threads} for w in args.placements for s in range(args.seeds)]
    runs = run_workers(__file__, specs, args.jobs, on_result=lambda r: print(
        f"  {r['where']:12s} seed {r['seed']}: eval {r['eval_return']:7.1f}  Q-G {r['q_over']:6.1f}", flush=True))
    out = ROOT / args.out if not Path(args.out).is_absolute() else Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "layernorm_ablation.json").write_text(json.dumps({"args": vars(args), "runs": runs}, indent=1) + "\n")
    (out / "layernorm_ablation.md").write_text(markdown(runs))
    print(markdown(runs))


if __name__ == "__main__":
    main()
