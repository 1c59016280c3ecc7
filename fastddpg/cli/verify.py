"""``fastddpg verify``: the fast update paths against the eager update, on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..core.config import ALGOS, ConfigError


def add_parser(sub: Any) -> None:
    """``fastddpg verify``: its flags mirror `fastddpg.tools.verify.VerifyOptions`."""
    from ..core.verifyoptions import ACT_ATOL, ACT_RTOL, ATOL, ATOL64, RTOL, RTOL64, VerifyOptions

    d = VerifyOptions()
    v = sub.add_parser(
        "verify", help="prove the fast update paths compute what the eager update computes, on this machine",
        description="From one initial state and one fixed sequence of batches, run the update eager, compiled and "
        "(on CUDA) compiled inside the CUDA graph, and the acting step eager and compiled. After every update, "
        "compare each path's parameters, target networks, Adam state and metrics with eager's; print the largest "
        "difference per group and each path's rate. Each update path is judged in float64 (every path run again "
        f"from a float64 copy of the state): |x - eager| <= {ATOL64:g} + {RTOL64:g} |eager| per update; its float32 "
        f"run must be within {ATOL:g} + {RTOL:g} |eager| of eager float32 wherever float32 resolves the update that "
        f"finely (eager on the rows in reverse order stays within it; CrossQ's critics do not). Acting: "
        f"{ACT_ATOL:g} + {ACT_RTOL:g} |eager| in float32. Exit 0 when every path is "
        "within it, 1 otherwise (the tensor that differs is named), 2 on bad input.")
    v.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N (default: auto)")
    v.add_argument("--algo", default=d.algo, choices=ALGOS, help=f"which update (default: {d.algo})")
    v.add_argument("--num-seeds", type=int, default=d.num_seeds, metavar="K",
                   help="members: 1 verifies one agent's update, K > 1 a population's (default: 1)")
    v.add_argument("--updates", type=int, default=d.updates, help=f"updates compared (default: {d.updates})")
    v.add_argument("--batch-size", type=int, default=d.batch_size, help=f"batch size (default: {d.batch_size})")
    v.add_argument("--hidden-sizes", type=int, nargs="+", default=list(d.hidden_sizes), metavar="N",
                   help="hidden layer widths (default: 256 256)")
    v.add_argument("--seed", type=int, default=d.seed,
                   help=f"seed of the initial state and the batches (default: {d.seed})")
    v.add_argument("--compile-mode", default=d.compile_mode, choices=("default", "max-autotune"),
                   help="torch.compile mode (default: default)")
    v.add_argument("--timed-updates", type=int, default=d.timed_updates,
                   help=f"updates per timed repetition, after the compared ones (default: {d.timed_updates})")
    v.add_argument("--repeats", type=int, default=d.repeats, help=f"timed repetitions, median (default: {d.repeats})")
    v.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON to PATH")
    # for tests: on the CPU also run CudaGraphUpdate's static-buffer logic (capture=False)
    v.add_argument("--graph-logic-on-cpu", action="store_true", help=argparse.SUPPRESS)


def command(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    from ..tools.verify import VerifyOptions, format_report, run_verify, write_json

    opts = VerifyOptions(device=args.device, algo=args.algo, num_seeds=args.num_seeds, updates=args.updates,
                         batch_size=args.batch_size, hidden_sizes=tuple(args.hidden_sizes), seed=args.seed,
                         compile_mode=args.compile_mode, timed_updates=args.timed_updates, repeats=args.repeats,
                         graph_logic_on_cpu=args.graph_logic_on_cpu)
    if args.json:  # an unwritable --json is bad input: say so before the work, not after
        from ..runs.rundir import probe_writable

        try:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            probe_writable(Path(args.json).parent)
        except OSError as e:
            raise ConfigError(f"--json={args.json}: cannot write there ({e.strerror}); choose another path.") from None
    report = run_verify(opts)
    print(format_report(report))
    if args.json:
        print(f"wrote {write_json(report, args.json)}")
    return 0 if report["passed"] else 1


