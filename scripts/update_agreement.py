"""Old versus new update: N eager updates of DDPG, TD3 and DDPG+LayerNorm, one agent and a population of 3, from the
same initial state and the same batches, run by the code at BASE_DIR (another checkout, e.g. a worktree of the
commit before a change to fastddpg/learning/update.py) and by this working tree, each in a subprocess of its
own; prints the
largest absolute and relative difference of the parameters, targets, Adam states and metrics.

    OMP_NUM_THREADS=1 python scripts/update_agreement.py BASE_DIR [--updates 500] [--compiled] [--cases td3 ...]

``--compiled``: through `fastddpg.learning.compile.compile_update` (torch.compile, no CUDA graph) on both sides
instead of eager, to see where the compiler's kernels round differently.

Both sides use only what both versions have: the `Algorithm` constructors, `Population`, ``update_fns``,
`fastddpg.learning.update.Batch` and `Hyper`. Relative differences are to the largest |value| of each tensor (or metric
column over all updates), so a tensor that is all tiny does not inflate them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

OBS, ACT, HIDDEN, BATCH = 3, 1, (64, 64), 128
CASES = {"ddpg": ("ddpg", False), "td3": ("td3", False), "ddpg_layernorm": ("ddpg", True)}
MEMBERS = 3


def child(out: str, updates: int, compiled: bool, cases: list[str]) -> None:
    """Run every case with the fastddpg on sys.path; save {case: {"state": {...}, "metrics": (N, ...)}}."""
    import torch

    import fastddpg
    from fastddpg.algos import DDPG, TD3
    from fastddpg.algos.population import Population
    from fastddpg.learning.update import AdamHyper, Batch, Hyper

    code = os.environ["PYTHONPATH"]
    assert fastddpg.__file__.startswith(code), f"imported {fastddpg.__file__}, not the code at {code}"
    print(f"running {fastddpg.__file__}", file=sys.stderr)
    torch.set_num_threads(1)
    low, high = torch.tensor([-2.0] * ACT), torch.tensor([2.0] * ACT)
    width = 2 * OBS + ACT + 2

    def as_batch(rows: torch.Tensor) -> Batch:
        o, a = OBS, ACT
        return Batch(rows[..., :o], rows[..., o:o + a], rows[..., o + a:o + a + 1], rows[..., o + a + 1:2 * o + a + 1],
                     rows[..., 2 * o + a + 1:2 * o + a + 2])

    def learner(algo: str, layer_norm: bool, k: int, seed: int):
        # members differ: clipping active, off, loose; other tau, gamma, lrs, smoothing noise
        hp = Hyper((0.99, 0.98, 0.95)[k], (0.005, 0.01, 0.02)[k], (1.0, 0.0, 10.0)[k], AdamHyper((1e-3, 3e-4, 2e-3)[k]),
                   AdamHyper((1e-3, 2e-3, 5e-4)[k]), (0.2, 0.1, 0.3)[k], (0.5, 0.3, 0.6)[k])
        torch.manual_seed(seed)
        if algo == "ddpg":
            return DDPG(OBS, ACT, HIDDEN, low, high, torch.device("cpu"), hp, layer_norm)
        return TD3(OBS, ACT, HIDDEN, low, high, torch.device("cpu"), hp, layer_norm, policy_delay=2)

    def rows_for(gen: torch.Generator, lead: tuple[int, ...], eps_dim: int) -> torch.Tensor:
        obs = torch.randn(*lead, BATCH, OBS, generator=gen)
        act = torch.rand(*lead, BATCH, ACT, generator=gen) * 4 - 2
        rew = torch.randn(*lead, BATCH, 1, generator=gen) - 5.0
        nxt = obs + 0.1 * torch.randn(*lead, BATCH, OBS, generator=gen)
        term = (torch.rand(*lead, BATCH, 1, generator=gen) < 0.05).float()
        extra = [torch.randn(*lead, BATCH, eps_dim, generator=gen)] if eps_dim else []
        return torch.cat([obs, act, rew, nxt, term, *extra], dim=-1)

    result = {}
    for case, (algo, ln) in CASES.items():
        if case not in cases:
            continue
        for pop in (False, True):
            name = f"{case}{'_pop3' if pop else ''}"
            if pop:
                agent = Population([learner(algo, ln, k, 100 + k) for k in range(MEMBERS)])
            else:
                agent = learner(algo, ln, 0, 100)
            fns = agent.update_fns(as_batch, width)
            if compiled:
                from fastddpg.learning.compile import compile_update

                torch._dynamo.reset()
                fns = {k: compile_update(fn, "default", torch.device("cpu"), cuda_graph=False) for k, fn in fns.items()}
            gen = torch.Generator().manual_seed(7)
            metrics = []
            for u in range(1, updates + 1):
                rows = rows_for(gen, (MEMBERS,) if pop else (), agent.eps_dim)
                metrics.append(fns[agent.is_actor_step(u)](agent.state, rows).clone())
            state = {f"{g}.{n}": t.clone() for g in ("actor", "critic", "target_actor", "target_critic")
                     for n, t in agent.state[g].items()}
            for g, opt in agent.state["optim"].items():
                state[f"optim.{g}.step"] = opt["step"].clone()
                for key in ("exp_avg", "exp_avg_sq"):
                    for i, t in enumerate(opt[key]):
                        state[f"optim.{g}.{key}.{i}"] = t.clone()
            result[name] = {"state": state, "metrics": torch.stack(metrics)}
    torch.save(result, out)


def run(code_dir: Path, out: Path, updates: int, flags: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(code_dir.resolve()), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(out), "--updates", str(updates),
                    *flags], env=env, check=True, cwd=code_dir)


def compare(old: dict, new: dict) -> None:

    print(f"{'case':<22}{'what':<10}{'max abs diff':>14}{'max rel diff':>14}  worst")
    for case in old:
        for what in ("state", "metrics"):
            a = old[case][what] if what == "state" else {"metrics": old[case]["metrics"]}
            b = new[case][what] if what == "state" else {"metrics": new[case]["metrics"]}
            assert a.keys() == b.keys(), (case, set(a) ^ set(b))
            worst_abs, worst_rel, worst = 0.0, 0.0, ""
            for key in a:
                x, y = a[key].double(), b[key].double()
                if what == "metrics":  # per column (metric): relative to that metric's largest |value|
                    scale = x.abs().flatten(0, -2).amax(dim=0).clamp_min(1e-12)
                else:
                    scale = x.abs().max().clamp_min(1e-12)
                diff = (x - y).abs()
                rel = float((diff / scale).max())
                if float(diff.max()) > worst_abs:
                    worst_abs = float(diff.max())
                if rel > worst_rel:
                    worst_rel, worst = rel, key
            print(f"{case:<22}{what:<10}{worst_abs:>14.3e}{worst_rel:>14.3e}  {worst}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base_dir", nargs="?", help="checkout of the old code (its repository root)")
    p.add_argument("--updates", type=int, default=500)
    p.add_argument("--compiled", action="store_true", help="torch.compile both sides (default: eager)")
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.updates, args.compiled, args.cases)
        return
    flags = ["--cases", *args.cases, *(["--compiled"] if args.compiled else [])]
    import torch

    here = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        run(Path(args.base_dir), Path(tmp) / "old.pt", args.updates, flags)
        run(here, Path(tmp) / "new.pt", args.updates, flags)
        old, new = torch.load(Path(tmp) / "old.pt"), torch.load(Path(tmp) / "new.pt")
    mode = "compiled" if args.compiled else "eager"
    print(f"{args.updates} {mode} updates each, old = {args.base_dir}, new = {here}")
    compare(old, new)


if __name__ == "__main__":
    main()
