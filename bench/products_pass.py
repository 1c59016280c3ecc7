"""The compiled CPU update with and without its products pass (`fastddpg.learning.cpu_matmul.reshape_products`:
MKL's slow shapes written as the same sums in fast ones), DDPG and TD3, in one process, alternating.

    python bench/products_pass.py                       # DDPG and TD3, this process's threads
    OMP_NUM_THREADS=2 python bench/products_pass.py --threads 2 --algos td3 --rounds 16

Both sides are compiled here (the pass keys inductor's cache, so each side is its own graph), warmed up, then timed
in ``--rounds`` rounds of ``--updates`` updates, the order of the two sides swapped every round (AB BA AB ...): a slow
stretch of the machine falls on both alike. Each round gives a ratio (with / without); the median ratio over rounds
and its range are reported, with each side's median updates/s. Networks 256-256, batch 128, Pendulum's sizes (obs 3,
action 1); TD3 with its policy delay of 2, so half the updates also step the actor. The batch indices of 16 updates
are drawn at once and the metrics summed on the device, as the trainer does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import cpu_model
from fastddpg.algos import DDPG, TD3
from fastddpg.learning import compile as compile_module
from fastddpg.learning.compile import compile_update
from fastddpg.learning.replay import ReplayBuffer
from fastddpg.learning.update import AdamHyper, Hyper
from fastddpg.training.denormals import apply_flush_denormal

OBS_DIM, ACT_DIM, HIDDEN, BATCH, GROUP = 3, 1, (256, 256), 128, 16


def prepare(algo: str, with_pass: bool, seed: int = 0) -> Callable[[int], float]:
    """A compiled update of ``algo`` (with or without the products pass) on a filled buffer: a function timing ``n``
    more updates, returning updates/s."""
    real_options = compile_module.cpu_matmul_options
    if not with_pass:  # MKL's products as inductor lowers them by itself: the options without the pass
        compile_module.cpu_matmul_options = lambda choice: {}
    try:
        torch.manual_seed(seed)
        low, high, device = torch.tensor([-2.0]), torch.tensor([2.0]), torch.device("cpu")
        hp = Hyper(0.99, 0.005, 1.0, AdamHyper(1e-3), AdamHyper(1e-3), 0.2, 0.5)
        learner = (DDPG(OBS_DIM, ACT_DIM, HIDDEN, low, high, device, hp) if algo == "ddpg" else
                   TD3(OBS_DIM, ACT_DIM, HIDDEN, low, high, device, hp, policy_delay=2))
        buf = ReplayBuffer(60_000, OBS_DIM, ACT_DIM, device)
        n = 50_000
        buf.add(torch.randn(n, OBS_DIM), torch.rand(n, ACT_DIM) * 4 - 2, -torch.rand(n) * 16,
                torch.randn(n, OBS_DIM), torch.zeros(n))
        fns = {key: compile_update(fn, "default", device, cpu_matmul="mkl")
               for key, fn in learner.update_fns(buf.as_batch, buf.width).items()}
    finally:
        compile_module.cpu_matmul_options = real_options
    gen = torch.Generator().manual_seed(seed)
    acc = torch.zeros(())
    count = [0]

    def rows() -> torch.Tensor:
        r = buf.sample_rows(GROUP, BATCH, gen)
        if learner.eps_dim:
            r = torch.cat([r, torch.randn(*r.shape[:-1], learner.eps_dim, generator=gen)], dim=-1)
        return r

    def run(n_updates: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n_updates // GROUP):
            batch = rows()
            for i in range(GROUP):
                count[0] += 1
                fn = fns[True] if len(fns) == 1 else fns[count[0] % 2 == 0]  # TD3: the actor every 2nd update
                acc.add_(fn(learner.state, batch[i]).sum())
        acc.item()
        return n_updates // GROUP * GROUP / (time.perf_counter() - t0)

    run(4 * GROUP)  # compile and warm up
    return run


def compare(algo: str, rounds: int, n_updates: int) -> dict:
    sides = {"without": prepare(algo, False), "with": prepare(algo, True)}
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(rounds):
        for name in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
            rates[name].append(sides[name](n_updates))
    ratios = [w / wo for w, wo in zip(rates["with"], rates["without"], strict=True)]
    return {"algo": algo, "threads": torch.get_num_threads(), "without": statistics.median(rates["without"]),
            "with": statistics.median(rates["with"]), "ratio": statistics.median(ratios), "ratio_min": min(ratios),
            "ratio_max": max(ratios), "rates": rates}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algos", nargs="+", default=["ddpg", "td3"], choices=["ddpg", "td3"])
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's own choice)")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--updates", type=int, default=320, help="updates per side per round")
    p.add_argument("--out", default="", help="a JSON file for the results")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    apply_flush_denormal(True)
    results = []
    for algo in args.algos:
        row = compare(algo, args.rounds, args.updates)
        results.append(row)
        print(f"{algo} {row['threads']} thread(s): without the pass {row['without']:.0f}/s, with it "
              f"{row['with']:.0f}/s: {row['ratio']:.3f}x (rounds {row['ratio_min']:.3f}-{row['ratio_max']:.3f})",
              flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"benchmark": "products_pass", "cpu": cpu_model(),
                                              "torch": torch.__version__, "rounds": args.rounds,
                                              "updates": args.updates, "results": results}, indent=1))
    return results


if __name__ == "__main__":
    main()
