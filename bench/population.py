"""Population throughput: agent env steps/s and agent updates/s of a K-member population (one process, one
stacked update) against K separate single-agent processes run in the same sitting (one per core, one thread
each), for K in {1, 2, 4, 8, 16, 32} at replay ratio 1 and 1/N, on Pendulum-v1.

    python bench/population.py --quick                      # K 1 2 4, short timings (a few minutes on 2 cores)
    python bench/population.py                              # K 1 2 4 8 16 32
    python bench/population.py --device cuda --env-backend torch --members 1 8 64 256 1024 --no-separate

"Agent" rates count every member: a population of K doing one vector step of N envs makes K*N agent env steps;
one population update is K agent updates. Method: each point builds a fresh Trainer (compile as --compile),
runs it past start_steps/update_after and a warm-up (compile time excluded), then times --seconds of steady
state --repeats times (median). The separate-process baseline runs K single-agent trainers of the same config,
at most --jobs at a time (default: the cores), one torch thread each, each timed the same way; their rates are
summed over the K agents, with the wall time of the whole batch of processes (a second batch runs after the
first when K > jobs). The population process gets all the cores the separate processes share (--threads, default
all usable cores). When K > jobs the batches are alike (the same single-agent run, `jobs` at a time), so only
--max-batches of them are run and timed (default 2; 0: all K processes): the K agents' rate is their summed
rate in those batches, over the time those batches took. Writes JSON and a Plotly chart
(bench/results/population.{json,html}).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import cpu_model, sync
from fastddpg import Config, Trainer

WARM = 500  # start_steps = update_after: the steady state costs the same, the warm-up is shorter
RESULTS = Path(__file__).resolve().parent / "results"


def make_config(args: argparse.Namespace, members: int, ratio: float) -> Config:
    return Config(env="Pendulum-v1", num_envs=args.num_envs, num_seeds=members, total_steps=10**9,
                  start_steps=WARM, update_after=WARM, updates_per_step=ratio, device=args.device,
                  env_backend=args.env_backend, compile=args.compile, threads=args.threads, quiet=True,
                  log_every=10**6, hidden_sizes=tuple(args.hidden_sizes), batch_size=args.batch_size)


def measure(cfg: Config, seconds: float, repeats: int, warmup_vsteps: int) -> dict[str, float]:
    """Median agent env steps/s and agent updates/s of ``cfg``'s trainer in steady state."""
    trainer = Trainer(cfg)
    k = cfg.num_members
    try:
        while trainer.global_step < WARM:
            trainer.step()
        for _ in range(warmup_vsteps):  # the first updates compile
            trainer.step()
        steps, updates = [], []
        for _ in range(repeats):
            sync(trainer.device)
            s0, u0, t0 = trainer.global_step, trainer.num_updates, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                trainer.step()
            sync(trainer.device)
            dt = time.perf_counter() - t0
            steps.append((trainer.global_step - s0) * k / dt)
            updates.append((trainer.num_updates - u0) * k / dt)
    finally:
        trainer.env.close()
    return {"agent_env_steps_per_sec": statistics.median(steps), "agent_updates_per_sec": statistics.median(updates)}


def separate(args: argparse.Namespace, members: int, ratio: float) -> dict[str, float]:
    """K single-agent processes (at most --jobs at once, one thread each): summed agent rates per batch, and the
    K agents' total work over the total wall time."""
    cmd = [sys.executable, __file__, "--child", "--ratio", str(ratio), *args.child_args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    total_steps = total_updates = 0.0
    t0 = time.perf_counter()
    batches = -(-members // args.jobs)
    if args.max_batches:
        batches = min(batches, args.max_batches)
    remaining = min(members, batches * args.jobs)
    while remaining:
        batch = min(remaining, args.jobs)
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(batch)]
        outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        # each child ran for the same steady-state seconds: in this batch's time the K agents did sum(rate) x secs
        total_steps += sum(o["agent_env_steps_per_sec"] for o in outs) * args.seconds * args.repeats
        total_updates += sum(o["agent_updates_per_sec"] for o in outs) * args.seconds * args.repeats
        remaining -= batch
    busy = batches * args.seconds * args.repeats  # steady-state seconds of wall time the batches took
    return {"agent_env_steps_per_sec": total_steps / busy, "agent_updates_per_sec": total_updates / busy,
            "processes": members, "processes_run": min(members, batches * args.jobs), "jobs": args.jobs,
            "wall_s_including_startup": time.perf_counter() - t0}


def chart(results: list[dict[str, Any]], out: Path) -> None:
    import plotly.graph_objects as go

    fig = go.Figure()
    for ratio in sorted({r["ratio_label"] for r in results}):
        for kind, dash in (("population", "solid"), ("separate", "dot")):
            pts = [r for r in results if r["ratio_label"] == ratio and kind in r]
            if pts:
                fig.add_trace(go.Scatter(x=[r["members"] for r in pts],
                                         y=[r[kind]["agent_env_steps_per_sec"] for r in pts], mode="lines+markers",
                                         name=f"{kind}, ratio {ratio}", line=dict(dash=dash)))
    fig.update_layout(title="Population vs separate processes: agent env steps/s", xaxis_title="members K",
                      yaxis_title="agent env steps/s", xaxis_type="log", yaxis_type="log", template="plotly_white")
    fig.write_html(out, include_plotlyjs="cdn")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--members", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    p.add_argument("--num-envs", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--env-backend", default="gymnasium")
    p.add_argument("--compile", default="default")
    p.add_argument("--hidden-sizes", type=int, nargs="+", default=[256, 256])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads of the population process (0: all usable cores, as the separate processes "
                        "use together)")
    p.add_argument("--max-batches", type=int, default=2,
                   help="separate-process batches run per K (they are alike; 0: run all K processes)")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup-vsteps", type=int, default=20)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="separate processes at once")
    p.add_argument("--no-separate", action="store_true", help="skip the separate-process baseline (e.g. K=1024)")
    p.add_argument("--quick", action="store_true", help="K 1 2 4, 2 s x 2")
    p.add_argument("--out", default=str(RESULTS / "population.json"))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ratio", type=float, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.members, args.seconds, args.repeats = [1, 2, 4], 2.0, 2
    if args.threads == 0 and not args.child:
        from fastddpg.core.threads import usable_cores

        args.threads = usable_cores()
    args.child_args = ["--num-envs", str(args.num_envs), "--device", args.device, "--env-backend", args.env_backend,
                       "--compile", args.compile, "--hidden-sizes", *map(str, args.hidden_sizes), "--batch-size",
                       str(args.batch_size), "--seconds", str(args.seconds), "--repeats", str(args.repeats),
                       "--warmup-vsteps", str(args.warmup_vsteps), "--threads", "1"]
    if args.child:  # one single agent of the separate-process baseline
        print(json.dumps(measure(make_config(args, 1, args.ratio), args.seconds, args.repeats, args.warmup_vsteps)))
        return
    results = []
    for ratio, label in ((1.0, "1"), (1.0 / args.num_envs, f"1/{args.num_envs}")):
        for k in args.members:
            row: dict[str, Any] = {"members": k, "ratio": ratio, "ratio_label": label}
            row["population"] = measure(make_config(args, k, ratio), args.seconds, args.repeats, args.warmup_vsteps)
            if not args.no_separate:
                row["separate"] = separate(args, k, ratio)
            print(json.dumps(row), flush=True)
            results.append(row)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.processor() or platform.machine(), "cpu": cpu_model(), "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "device": args.device, "num_envs": args.num_envs, "compile": args.compile, "seconds": args.seconds,
            "repeats": args.repeats, "jobs": args.jobs, "population_threads": args.threads,
            "max_batches": args.max_batches}
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    chart(results, out.with_suffix(".html"))
    print(f"wrote {out} and {out.with_suffix('.html')}")


if __name__ == "__main__":
    main()
