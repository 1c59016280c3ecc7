"""Where a training loop's time goes, against the same update run alone, in one process.

    python bench/loop_profile.py                       # the defaults (Pendulum-v1, 4 envs, compiled, batch 128)
    python bench/loop_profile.py --num-envs 16 --threads 2
    python bench/loop_profile.py --compile off
    python bench/loop_profile.py --compile analytic --num-envs 1
    python bench/loop_profile.py --algo sac --env HalfCheetah-v5 --num-envs 1 --batch-size 256 --threads 1

One `Trainer` at the given settings first runs past its first update (so the compile, if any, is done) and a
little further, then runs ``--steps`` env steps under cProfile and reports each part of a step as a share of the
loop's time: the update calls (split into the compiled function itself and the Python around it), drawing the
batch indices (``sample_rows``), the algorithm's extra random inputs, the device log, acting, the env step, the
replay write. Then the same update function runs alone, on rows drawn as the trainer draws them (in groups of
``num_envs``), for as many updates as the loop made. Reported: the loop's updates/s, the isolated update's, and their
ratio (the loop's efficiency; #26 asks for >= 0.9). cProfile's own overhead slows the profiled section; the ratio
is therefore taken from unprofiled passes of the loop and the isolated update, interleaved (loop, update, loop,
update, ...), medians.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from bench.common import cpu_model
from fastddpg import Config, Trainer
from fastddpg.core.config import CPU_MATMUL_CHOICES
from fastddpg.core.registry import ALGORITHMS

# part of a step -> the functions whose cumulative time it is (file suffix, function name)
PARTS: dict[str, list[tuple[str, str]]] = {
    "update calls (all)": [("training/trainer.py", "run_updates")],
    "  the compiled update itself": [("output_code.py", "__call__")],
    "  the hand-derived update itself": [("learning/analytic.py", "ddpg_update_analytic")],
    "  draw batch indices (sample_rows)": [("learning/replay.py", "sample_rows")],
    "  extra random inputs": [("/algos/", "extra_inputs")],
    "  device log (record_update)": [("training/devicelog.py", "record_update")],
    "acting (act)": [("training/trainer.py", "act")],
    "env step": [("envs/vector.py", "step")],
    "replay write (add)": [("learning/replay.py", "add")],
    "device log (record_step)": [("training/devicelog.py", "record_step")],
    "report (flush)": [("training/trainer.py", "flush")],
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-envs", type=int, default=Config.num_envs)
    p.add_argument("--threads", type=int, default=0, help="torch threads (default 0: fastddpg's auto)")
    p.add_argument("--compile", default="default", choices=("default", "off", "analytic"),
                   help="how the update runs (analytic: DDPG's hand-derived update, what a short default CPU run "
                        "takes; this loop's planned length would compile under auto)")
    p.add_argument("--cpu-matmul", default=Config.cpu_matmul, choices=CPU_MATMUL_CHOICES,
                   help="the compiled update's products (fastddpg run's --cpu-matmul)")
    p.add_argument("--flush-denormal", default="on" if Config.flush_denormal else "off", choices=("on", "off"),
                   help="fastddpg run's --flush-denormal / --no-flush-denormal")
    p.add_argument("--algo", default="ddpg", choices=tuple(ALGORITHMS))
    p.add_argument("--env", default=Config.env)
    p.add_argument("--batch-size", type=int, default=Config.batch_size)
    p.add_argument("--hidden-sizes", type=int, nargs="+", default=list(Config().hidden_sizes))
    p.add_argument("--steps", type=int, default=2_000, help="env steps per measured pass (default: 2,000)")
    p.add_argument("--passes", type=int, default=3, help="unprofiled loop/update pass pairs (default: 3)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "loop_profile.json"))
    return p.parse_args(argv)


def cumulative(stats: pstats.Stats, keys: list[tuple[str, str]]) -> float:
    """Summed cumulative seconds of the functions matching (a part of the file's path ending it or inside it, name);
    recursion counted once."""
    total = 0.0
    for (file, _, name), (_, _, _, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        if any((file.endswith(part) or (part.endswith("/") and part in file)) and name == fn for part, fn in keys):
            total += cum
    return total


def loop_pass(trainer: Trainer, steps: int) -> tuple[float, int]:
    """Run ``steps`` more env steps: (seconds, updates made)."""
    end, u0 = trainer.global_step + steps, trainer.num_updates
    t0 = time.perf_counter()
    while trainer.global_step < end:
        trainer.step()
    return time.perf_counter() - t0, trainer.num_updates - u0


def update_pass(trainer: Trainer, updates: int) -> float:
    """The trainer's update functions alone, ``updates`` times, rows drawn in groups of num_envs: seconds."""
    algo, cfg, group = trainer.algo, trainer.cfg, max(1, trainer.num_envs)
    done, n = 0, trainer.num_updates
    acc = torch.zeros(())
    t0 = time.perf_counter()
    while done < updates:
        k = min(group, updates - done)
        rows = trainer.buffer.sample_rows(k, cfg.batch_size, trainer.gen)
        extra = algo.extra_inputs(k, cfg.batch_size, trainer.gen)
        if extra is not None:
            rows = torch.cat([rows, extra], dim=-1)
        for i in range(k):
            n += 1
            acc += trainer.update_fns[algo.is_actor_step(n)](algo.state, rows[i]).sum()  # as the device log adds
        done += k
    acc.cpu()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    a = parse_args(argv)
    cfg = Config(env=a.env, num_envs=a.num_envs, threads=a.threads, compile=a.compile, algo=a.algo, device="cpu",
                 quiet=True, total_steps=10**9, log_every=1_000, batch_size=a.batch_size,
                 hidden_sizes=tuple(a.hidden_sizes), cpu_matmul=a.cpu_matmul,
                 flush_denormal=a.flush_denormal == "on")
    trainer = Trainer(cfg)
    while trainer.num_updates < 200:  # past the compile and the first updates
        trainer.step()
    loop_pass(trainer, 500)

    loops, updates = [], []
    for _ in range(a.passes):
        seconds, n = loop_pass(trainer, a.steps)
        loops.append(n / seconds)
        updates.append(n / update_pass(trainer, n))

    prof = cProfile.Profile()
    prof.enable()
    profiled_s, _ = loop_pass(trainer, a.steps)
    prof.disable()
    stats = pstats.Stats(prof)
    parts = {name: cumulative(stats, keys) / profiled_s for name, keys in PARTS.items()}

    cpu = cpu_model()
    loop_rate, update_rate = statistics.median(loops), statistics.median(updates)
    res = {"cpu": cpu, "torch": torch.__version__, "threads": trainer.threads, "env": a.env, "num_envs": a.num_envs,
           "batch_size": a.batch_size, "hidden_sizes": a.hidden_sizes,
           "compile": trainer.compile_mode, "cpu_matmul": trainer.cpu_matmul,
           "flush_denormal": trainer.flush_denormal, "algo": a.algo, "steps_per_pass": a.steps,
           "loop_updates_per_s": loops, "isolated_updates_per_s": updates,
           "loop_over_isolated": loop_rate / update_rate, "profiled_shares": parts}
    print(f"{cpu}, torch {torch.__version__}, {trainer.threads} thread(s), {a.num_envs} envs, {a.algo}, "
          f"compile {trainer.compile_mode}, products {trainer.cpu_matmul}")
    print(f"loop {loop_rate:,.0f} updates/s, the update alone {update_rate:,.0f}/s: the loop runs at "
          f"{loop_rate / update_rate:.2f}x the isolated update (medians of {a.passes} interleaved passes)")
    print("share of the profiled loop's time:")
    for name, share in parts.items():
        print(f"  {name:<40s} {100 * share:5.1f}%")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
