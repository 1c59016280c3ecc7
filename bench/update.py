"""Updates/s of one DDPG gradient step: the notebook's update as the notebook runs it, fastddpg eager, fastddpg's
hand-derived update (``--compile analytic``, no compile) and fastddpg compiled (torch.compile fullgraph; plus a
CUDA graph on CUDA), all measured in this one run.

    python bench/update.py                 # batch 32, 128, 256, 1024 on the default device
    python bench/update.py --quick         # fewer updates per point
    python bench/update.py --device cuda --out bench/results

Each point: every side is built and warmed up once (compile time reported separately), then measured in
`--repeats` rounds, each round timing `--updates` updates of every side and the limit, in an order rotated from
round to round (ABC, BCA, ...): a slow minute of the machine falls on every side alike, not on the one whose block
it was. The median over rounds is reported with min-max. fastddpg is driven the way the trainer drives it: all
batch indices of a group of updates drawn at once on the device, metrics summed on the device, one sync at
the end of the timed section. The compute limit is the measured (batch x 256) @ (256 x 256) matmul rate
divided by the FLOPs of one update: on a CPU the faster of MKL's (``torch.mm``) and oneDNN's product, both
recorded (``--cpu-matmul`` chooses which the compiled update runs, `fastddpg.learning.cpu_matmul`).

The hand-derived update's time is also split in two: its products alone (the matrix products of one update, recorded
with their shapes, strides and dtypes by a dispatch mode and replayed on random tensors, timed in the same repeats)
and the rest (every other op, the Python and the graph interpreter: the update's time less its products'). Against
the limit this says where the shortfall is: in products that run below the (batch x 256) @ (256 x 256) rate (small
or narrow ones) or in the ops between them. The replay calls each product from Python (~1 us each, 25 an update,
which the update's graphs call from C++) on tensors of its own (where the update's products share weights and
buffers), so its products' time is if anything overstated and the rest understated.

The floor is the same hand-derived update of 8-wide networks at batch 8, whose products and elementwise ops are next
to no arithmetic: what the update's ops cost by their number alone (dispatch, allocation, the graph interpreter, the
Python between its parts). The rest can shrink below it only with fewer ops, not faster ones.

The steps are the part of the rest that stays however its ops are fused: the two Adam steps and the soft update, a
pass over every parameter each update (~134,000 of them; per parameter Adam reads and writes it, its gradient and
its two moments, the soft update it and its target), timed alone on a twin learner of the same widths (so the timed
update's state is not touched). The budget is what the rest may take for the update to reach 75% of the limit: the
limit's time / 0.75 less the products' (negative where the products alone take longer). A difference of two large
times, it is as noisy as they are; against it, the steps say how much is left for the other ops, and the floor what
the update's ops cost by their number.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.baseline import matmul_rate, notebook_updates, update_flops
from bench.common import cpu_model, sync
from fastddpg.algos import DDPG
from fastddpg.core.config import CPU_MATMUL_CHOICES, Config
from fastddpg.learning import analytic as analytic_update
from fastddpg.learning.compile import compile_update
from fastddpg.learning.cpu_matmul import onednn_available, resolve_cpu_matmul
from fastddpg.learning.replay import ReplayBuffer
from fastddpg.learning.update import AdamHyper, Hyper, soft_update_
from fastddpg.training.denormals import apply_flush_denormal

OBS_DIM, ACT_DIM, HIDDEN = 3, 1, (256, 256)
# the floor: the hand-derived update's every op on networks and a batch so small that their arithmetic is next to
# nothing, i.e. what its ops cost by their number (dispatch, allocation, the graph interpreter, the Python between)
FLOOR_HIDDEN, FLOOR_BATCH = (8, 8), 8
GOAL_FRACTION = 0.75  # the share of the limit #26 asks the update to reach


@dataclass(frozen=True)
class TensorSpec:
    """What a product's tensor argument was: its size, strides, dtype and device (a dataclass, not a NamedTuple,
    so that ``tree_map`` takes it as a leaf)."""

    size: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device


class ProductCall(NamedTuple):
    """One matrix product of an update: the aten op overload and its arguments, tensors as `TensorSpec`s."""

    op: Any
    args: tuple
    kwargs: dict


PRODUCT_OPS = (torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.bmm, torch.ops.aten.baddbmm)


class _ProductRecorder(TorchDispatchMode):
    """Records every `PRODUCT_OPS` call below it, traced TorchScript graphs' included (they dispatch like eager)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[ProductCall] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func.overloadpacket in PRODUCT_OPS:
            def spec(x: Any) -> Any:
                return TensorSpec(tuple(x.shape), tuple(x.stride()), x.dtype, x.device) if isinstance(
                    x, torch.Tensor) else x
            self.calls.append(ProductCall(func, tree_map(spec, args), tree_map(spec, kwargs)))
        return func(*args, **kwargs)


def record_products(fn: Callable[..., Any], *args: Any) -> list[ProductCall]:
    """The matrix products one call ``fn(*args)`` runs, in order (the call runs once, as it would). A traced graph
    must be warm (called a few times): the call that makes TorchScript's executor optimize it fails in the mode."""
    recorder = _ProductRecorder()
    with recorder:
        fn(*args)
    return recorder.calls


def replay_products(calls: list[ProductCall], seed: int = 0) -> Callable[[], None]:
    """A function that runs ``calls``' products again, each on random tensors of its recorded size, strides and dtype
    (made once here; an ``out=`` argument is written each call, as the update writes its buffers)."""
    gen = torch.Generator().manual_seed(seed)

    def materialize(x: Any) -> Any:
        if not isinstance(x, TensorSpec):
            return x
        # a view of random storage as large as the strides reach, so a broadcast (stride 0) argument is one too
        extent = 1 + sum((n - 1) * st for n, st in zip(x.size, x.stride, strict=True)) if all(x.size) else 0
        storage = torch.randn(extent, generator=gen, dtype=x.dtype).to(x.device)
        return storage.as_strided(x.size, x.stride)

    bound = [(c.op, tree_map(materialize, c.args), tree_map(materialize, c.kwargs)) for c in calls]

    def run() -> None:
        for op, args, kwargs in bound:
            op(*args, **kwargs)

    return run


class Prepared(NamedTuple):
    """A side made ready once (built, compiled, warmed up): ``repeat(n_updates)`` times ``n_updates`` more updates
    and returns {"updates_per_sec"} (with ``split``, also "products_us" and, for the hand-derived update,
    "steps_us"); ``warmup_seconds``: the warm-up's time (compile and CUDA-graph capture included)."""

    repeat: Callable[[int], dict[str, float]]
    warmup_seconds: float


def pendulum_learner(hidden: tuple[int, ...], device: torch.device, hyper: Hyper, seed: int) -> DDPG:
    """A DDPG learner of Pendulum's shapes (obs 3, action 1 in [-2, 2]) with ``hidden`` widths, its weights drawn
    from torch's global generator seeded ``seed``."""
    torch.manual_seed(seed)
    return DDPG(OBS_DIM, ACT_DIM, hidden, torch.tensor([-2.0]), torch.tensor([2.0]), device, hyper)


def prepare_fastddpg(batch_size: int, mode: str, device: torch.device, group: int = 16, seed: int = 0,
                     cpu_matmul: str = "auto", split: bool = False, hidden: tuple[int, ...] = HIDDEN) -> Prepared:
    """fastddpg's update (mode 'off' = eager, 'analytic' = the hand-derived update, else a compile mode) of networks
    of ``hidden`` widths, driven as the trainer drives it: the batch indices of ``group`` updates drawn at once on
    the device, metrics summed there, one sync at the end of a repeat. With ``split``, each repeat also times the
    update's products alone (`record_products` of one update, replayed as many times right after) and, for the
    hand-derived update, its steps alone (`optimizer_steps`)."""
    hyper = Hyper(0.99, 0.005, 1.0, AdamHyper(1e-3), AdamHyper(1e-3))
    learner = pendulum_learner(hidden, device, hyper, seed)
    buf = ReplayBuffer(100_000, OBS_DIM, ACT_DIM, device)
    n = 50_000
    buf.add(torch.randn(n, OBS_DIM, device=device), torch.rand(n, ACT_DIM, device=device) * 4 - 2,
            -torch.rand(n, device=device) * 16, torch.randn(n, OBS_DIM, device=device), torch.zeros(n, device=device))
    gen = torch.Generator(device=device).manual_seed(seed)

    if mode == "analytic":
        fn = learner.analytic_update_fns(buf.as_batch, buf.width)[True]
    else:
        fn = compile_update(learner.update_fns(buf.as_batch, buf.width)[True], mode, device, cpu_matmul=cpu_matmul)
    state = learner.state
    acc = torch.zeros(4, device=device)
    t0 = time.perf_counter()
    for rows in buf.sample_rows(5, batch_size, gen):  # warm-up: compile, CUDA-graph capture, allocator
        acc += fn(state, rows)
    sync(device)
    warmup_s = time.perf_counter() - t0
    products = replay_products(record_products(fn, state, buf.sample_rows(1, batch_size, gen)[0])) if split else None
    steps = optimizer_steps(hidden, device, hyper, seed) if split and mode == "analytic" else None

    def repeat(n_updates: int) -> dict[str, float]:
        done = 0
        sync(device)
        t0 = time.perf_counter()
        while done < n_updates:
            k = min(group, n_updates - done)
            rows = buf.sample_rows(k, batch_size, gen)
            for i in range(k):
                acc.add_(fn(state, rows[i]))
            done += k
        acc.sum().cpu()
        out = {"updates_per_sec": n_updates / (time.perf_counter() - t0)}
        for key, part in (("products_us", products), ("steps_us", steps)):
            if part is not None:
                out[key] = us_per_call(part, n_updates, device)
        return out

    return Prepared(repeat, warmup_s)


def us_per_call(fn: Callable[[], None], n: int, device: torch.device) -> float:
    """Microseconds per call of ``fn`` over ``n`` calls in a row, the device synced before and after."""
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / n * 1e6


def optimizer_steps(hidden: tuple[int, ...], device: torch.device, hyper: Hyper, seed: int = 0) -> Callable[[], None]:
    """A function that runs the hand-derived update's steps once: the critic's and the actor's Adam steps and the soft
    update (`fastddpg.learning.analytic.ddpg_update_analytic` less its two gradient parts), on a twin DDPG learner
    of ``hidden`` widths built here, so the side being timed keeps its own state. The gradient buffers are its plan's
    own (zeros): Adam reads and writes every element alike whatever they hold."""
    twin = pendulum_learner(hidden, device, hyper, seed)
    plan = analytic_update.analytic_plan(twin.state, twin.nets)

    def run() -> None:
        analytic_update.critic_adam_step_(plan, twin.state, hyper)
        analytic_update.actor_adam_step_(plan, twin.state, hyper)
        soft_update_(plan.targets, plan.online, hyper.tau)

    return run


def fastddpg_update_rate(batch_size: int, mode: str, device: torch.device, n_updates: int, repeats: int,
                         group: int = 16, seed: int = 0, cpu_matmul: str = "auto", split: bool = False,
                         hidden: tuple[int, ...] = HIDDEN) -> dict:
    """Updates/s of `prepare_fastddpg`'s update alone, median over ``repeats`` (with ``split``: ``products_us``,
    the products' us per update, median, and ``rest_us``, the update's median us less its products'; for the
    hand-derived update also ``steps_us``, its Adam steps and soft update alone, median)."""
    side = prepare_fastddpg(batch_size, mode, device, group, seed, cpu_matmul, split, hidden)
    return summarize_side([side.repeat(n_updates) for _ in range(repeats)], side.warmup_seconds)


def summarize_side(repeats: list[dict[str, float]], warmup_seconds: float) -> dict:
    """A side's repeats as {updates_per_sec (median), min, max, warmup_seconds} and, where timed, products_us
    (median), rest_us (the median update's us less it) and steps_us (median)."""
    rates = [r["updates_per_sec"] for r in repeats]
    result = {"updates_per_sec": statistics.median(rates), "min": min(rates), "max": max(rates),
              "warmup_seconds": warmup_seconds}
    if "products_us" in repeats[0]:
        result["products_us"] = statistics.median(r["products_us"] for r in repeats)
        result["rest_us"] = 1e6 / result["updates_per_sec"] - result["products_us"]
    if "steps_us" in repeats[0]:
        result["steps_us"] = statistics.median(r["steps_us"] for r in repeats)
    return result


def limit_rates(batch_size: int, device: str) -> dict[str, float]:
    """One repeat of the limit: the (batch x 256) @ (256 x 256) product's FLOP/s by each library at hand (MKL's
    ``torch.mm``, on a CPU with it oneDNN's linear; ``torch`` on a GPU)."""
    rates = {"mkl" if torch.device(device).type == "cpu" else "torch": matmul_rate(batch_size, HIDDEN[0], device)}
    if torch.device(device).type == "cpu" and onednn_available():
        rates["onednn"] = matmul_rate(batch_size, HIDDEN[0], device, library="onednn")
    return rates


def interleaved(sides: dict[str, Prepared], n_updates: int, repeats: int) -> dict[str, list[dict[str, float]]]:
    """Each side's repeats, taken in rounds: round r runs one repeat of every side, in an order rotated by r
    (ABC, BCA, CAB, ...), so that a slow minute of the machine falls on every side alike rather than on the one
    whose block it was."""
    names = list(sides)
    out: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            out[name].append(sides[name].repeat(n_updates))
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128, 256, 1024])
    p.add_argument("--updates", type=int, default=300, help="timed updates per repetition")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compile-mode", default="default", choices=("default", "max-autotune"))
    p.add_argument("--cpu-matmul", default="auto", choices=CPU_MATMUL_CHOICES,
                   help="the compiled update's products on a CPU (fastddpg run's --cpu-matmul)")
    p.add_argument("--flush-denormal", default="on" if Config.flush_denormal else "off", choices=("on", "off"),
                   help="flush float32 subnormals to zero for the whole process, the notebook's update included "
                        "(on: what fastddpg run does by default, fastddpg.training.denormals)")
    p.add_argument("--quick", action="store_true", help="100 updates x 2 repeats per point")
    p.add_argument("--out", default="bench/results", help="folder for update.json")
    args = p.parse_args(argv)
    flush = apply_flush_denormal(args.flush_denormal == "on")  # before the first parallel region
    if args.quick:
        args.updates, args.repeats = 100, 2
    device = torch.device(args.device)
    rows = []
    for b in args.batch_sizes:
        notebook = notebook_updates(b, warmup=20, device=args.device, seed=0)
        sides = {"notebook": Prepared(lambda n, nb=notebook: {"updates_per_sec": nb(n)}, 0.0),
                 "eager": prepare_fastddpg(b, "off", device),
                 "analytic": prepare_fastddpg(b, "analytic", device, split=True),
                 "floor": prepare_fastddpg(FLOOR_BATCH, "analytic", device, hidden=FLOOR_HIDDEN),
                 "compiled": prepare_fastddpg(b, args.compile_mode, device, cpu_matmul=args.cpu_matmul),
                 "limit": Prepared(lambda n, b=b: limit_rates(b, args.device), 0.0)}
        runs = interleaved(sides, args.updates, args.repeats)
        nb = [r["updates_per_sec"] for r in runs["notebook"]]
        eager, analytic, floor, comp = (summarize_side(runs[k], sides[k].warmup_seconds)
                                        for k in ("eager", "analytic", "floor", "compiled"))
        flops = update_flops(OBS_DIM, ACT_DIM, HIDDEN, b)
        limits = {lib: statistics.median(r[lib] for r in runs["limit"]) / flops for lib in runs["limit"][0]}
        limit = max(limits.values())
        nb_med = statistics.median(nb)
        row = {"batch_size": b, "notebook": nb_med, "notebook_min": min(nb), "notebook_max": max(nb),
               "eager": eager["updates_per_sec"], "eager_min": eager["min"], "eager_max": eager["max"],
               "analytic": analytic["updates_per_sec"], "analytic_min": analytic["min"],
               "analytic_max": analytic["max"], "analytic_ratio": analytic["updates_per_sec"] / nb_med,
               "analytic_limit_fraction": analytic["updates_per_sec"] / limit,
               "analytic_products_us": analytic["products_us"], "analytic_rest_us": analytic["rest_us"],
               "analytic_floor_us": 1e6 / floor["updates_per_sec"],
               "limit_us": 1e6 / limit, "analytic_products_limit_fraction": 1e6 / limit / analytic["products_us"],
               "analytic_steps_us": analytic["steps_us"],
               # what the rest may take for the hand-derived update to reach 75% of the limit
               "analytic_rest_budget_us": 1e6 / limit / GOAL_FRACTION - analytic["products_us"],
               "compiled": comp["updates_per_sec"], "compiled_min": comp["min"], "compiled_max": comp["max"],
               "compile_warmup_seconds": comp["warmup_seconds"], "eager_ratio": eager["updates_per_sec"] / nb_med,
               "compiled_ratio": comp["updates_per_sec"] / nb_med, "flops_per_update": flops,
               "compute_limit_updates_per_sec": limit, "compute_limits_by_library": limits,
               "limit_fraction": comp["updates_per_sec"] / limit}
        rows.append(row)
        print(f"batch {b:5d} | notebook {nb_med:8.0f}/s | eager {row['eager']:8.0f}/s ({row['eager_ratio']:.2f}x) | "
              f"analytic {row['analytic']:8.0f}/s ({row['analytic_ratio']:.2f}x, "
              f"{row['analytic_limit_fraction']:.0%} of the limit) | "
              f"compiled {row['compiled']:8.0f}/s ({row['compiled_ratio']:.2f}x, "
              f"warm-up {comp['warmup_seconds']:.0f} s) | compute limit {limit:8.0f}/s "
              f"({row['limit_fraction']:.0%} of it)", flush=True)
        print(f"           | analytic: {1e6 / row['analytic']:.0f} us an update = its products alone "
              f"{row['analytic_products_us']:.0f} us (at {row['analytic_products_limit_fraction']:.0%} of the "
              f"limit's rate: {row['limit_us']:.0f} us) + the rest {row['analytic_rest_us']:.0f} us; "
              f"the floor {row['analytic_floor_us']:.0f} us (the same update of {FLOOR_HIDDEN[0]}-wide networks "
              f"at batch {FLOOR_BATCH})", flush=True)
        budget, steps_us = row["analytic_rest_budget_us"], row["analytic_steps_us"]
        print(f"           | {GOAL_FRACTION:.0%} of the limit leaves the rest {budget:.0f} us"
              f"{' (the products alone exceed it)' if budget < 0 else ''}; its Adam steps and soft update alone "
              f"take {steps_us:.0f} us, leaving {budget - steps_us:.0f} us for its other ops", flush=True)
    result = {"benchmark": "update", "device": str(device), "torch": torch.__version__,
              "machine": platform.machine(), "cpu": cpu_model(), "threads": torch.get_num_threads(),
              "date": time.strftime("%Y-%m-%d"),
              "updates_per_point": args.updates, "repeats": args.repeats, "compile_mode": args.compile_mode,
              "cpu_matmul": resolve_cpu_matmul(args.cpu_matmul) if device.type == "cpu" else None,
              "flush_denormal": flush, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "update.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {out / 'update.json'}")
    return result


if __name__ == "__main__":
    main()
