"""Golden values: a few updates of each algorithm from a fixed state and fixed batches, recorded once and compared
within a tolerance on any machine (tests/test_golden.py).

    python tests/golden.py --write      # re-record tests/data/golden.json (only on purpose; say why in the commit)
    python tests/golden.py --check      # print each case's deviation from the recorded values, in tolerances
                                        # (--eager: without the compiled updates)

The state and batches are `fastddpg.tools.verify.build_setup`'s: drawn from a CPU generator (the same numbers on every
machine), then ``WARMUP`` eager updates so the targets differ from the online networks and Adam's moments are
mid-training. From there ``UPDATES`` updates run, and a case records the metrics of each and a fingerprint of how
every tensor of the learner state moved (`fingerprint`).

Why a tolerance and not bit-identity: another CPU picks other kernels (vector width, FMA, how a reduction is
split), so the last bits of the first rounding differ and later updates carry that forward. A short run from a
fixed state keeps that growth small (about 1e-7 of a value's size); a wrong equation moves the same values by
1e-3 or more (tests/test_golden.py shows by how much, per injected mistake).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

DATA = Path(__file__).resolve().parent / "data" / "golden.json"
WARMUP, UPDATES, BATCH, HIDDEN, SEED = 20, 6, 128, (64, 64), 3  # the shapes tests/test_compile.py compiles too
CASES: dict[str, dict[str, Any]] = {"ddpg": {"algo": "ddpg"}, "td3": {"algo": "td3"},
                                    "ddpg_layernorm": {"algo": "ddpg", "layer_norm": True}}
# |now - recorded| <= ATOL + RTOL scale for every value (`deviation` says what the scale is). Measured when these were
# set: eager vs compiled, and AVX-512 vs no SIMD (ATen default, MKL at SSE4.2), stayed below 0.17 of it; each
# mistake tests/test_golden.py injects exceeds it by 100x or more (gamma, clip norm: 1e4x or more).
RTOL, ATOL = 1e-5, 1e-9
SIZE_FLOOR = 0.1  # so no recorded value is held closer than RTOL * SIZE_FLOOR (1e-6, ~16 float32 ulps) of its tensor
PROJECTIONS = 3  # fixed random directions each tensor's change is projected on
# Added to the critics' output bias before the warm-up: Q near -100, as on Pendulum mid-training. At a fresh
# critic's Q ~ 0 the target hardly depends on gamma, and a wrong gamma would move little.
Q_OFFSET = -100.0


def build(case: str, compiled: bool = False, **overrides: Any) -> dict[str, Any]:
    """Run ``case``'s updates (eager, or through the trainer's compiled wrapper) and return its record:
    ``metrics`` (UPDATES lists) and ``moves`` {tensor name: fingerprint}. ``overrides`` inject a mistake: a field of
    `fastddpg.learning.update.Hyper` (gamma, tau, grad_clip_norm, ...) or ``policy_delay``."""
    from fastddpg.learning.compile import compile_update
    from fastddpg.tools.verify import build_setup, learner_state

    spec = CASES[case]
    torch._dynamo.reset()
    setup = build_setup(spec["algo"], torch.device("cpu"), UPDATES, BATCH, HIDDEN, SEED, warmup=0,
                        layer_norm=spec.get("layer_norm", False))
    learner = setup.learner
    for group in ("critic", "target_critic"):  # Q at a mid-training scale, so that gamma weighs in the target
        list(learner.state[group].values())[-1].add_(Q_OFFSET)
    fns = setup.raw_update_fns(learner, **overrides)
    warm = setup.raw_update_fns(learner)  # the warm-up is always the correct update: only the verified steps differ
    rows = _rows(setup)
    for u in range(1, WARMUP + 1):
        warm[learner.is_actor_step(u)](learner.state, rows[u - 1])
    if compiled:
        fns = {k: compile_update(fn, "default", torch.device("cpu"), cuda_graph=False) for k, fn in fns.items()}
    before = {k: v.clone() for k, v in learner_state(learner).items()}
    delay = overrides.get("policy_delay", learner.policy_delay)
    metrics = []
    for i in range(UPDATES):
        u = WARMUP + 1 + i
        metrics.append(fns[u % delay == 0](learner.state, rows[u - 1]).tolist())
    after = learner_state(learner)
    return {"metrics": metrics, "moves": {k: fingerprint(moved(k, before, after), k) for k in sorted(before)},
            "sizes": {k: float(after[k].double().norm()) for k in sorted(before)}}


def moved(name: str, before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> torch.Tensor:
    """What the updates did to tensor ``name``: a parameter's change; a target's lag behind its online tensor
    (a target moves by tau times that lag per soft update: its own change would be a few ulps of its value);
    an optimizer tensor's value."""
    if name.startswith("params."):
        return after[name].double() - before[name].double()
    if name.startswith("targets."):
        online = "params." + name.removeprefix("targets.").replace("target_", "", 1)
        return after[name].double() - after[online].double()
    return after[name].double()


def fingerprint(change: torch.Tensor, name: str) -> list[float]:
    """A tensor's movement as a few numbers: its L2 and L1 norms (the scales the others are compared at), its sum
    and its projections on PROJECTIONS fixed random unit directions (seeded by the name, so every machine uses the
    same directions). Computed in float64."""
    x = change.detach().double().flatten()
    gen = torch.Generator().manual_seed(sum(ord(c) * 131 ** i for i, c in enumerate(name)) % 2**31)
    dirs = torch.randn(PROJECTIONS, x.numel(), generator=gen, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    return [float(x.norm()), float(x.abs().sum()), float(x.sum()), *(float(v) for v in dirs @ x)]


def _rows(setup: Any) -> torch.Tensor:
    """WARMUP + UPDATES batches of rows from the setup's buffer (and TD3's smoothing noise), from a CPU generator."""
    gen = torch.Generator().manual_seed(SEED + 1)
    n = WARMUP + UPDATES
    rows = setup.buffer.data[torch.randint(0, setup.buffer.size, (n, BATCH), generator=gen)]
    if setup.learner.eps_dim:
        rows = torch.cat([rows, torch.randn(n, BATCH, setup.learner.eps_dim, generator=gen)], dim=-1)
    return rows


def deviation(now: dict[str, Any], want: dict[str, Any]) -> tuple[float, str]:
    """The largest |now - want| / (ATOL + RTOL scale) over every recorded value, and where it is. A metric's scale is
    its own size; a fingerprint's sum is compared at the tensor's recorded L1 norm and its projections at its L2
    norm (either can cancel to near zero while the tensor itself is large); none at less than SIZE_FLOOR times
    the tensor's own size, since a target's lag or a parameter's change is a difference of float32 values whose
    last bits are the other machine's."""
    worst, where = 0.0, "-"
    pairs = [(f"metrics[{i}][{j}]", a, b, abs(b))
             for i, (ra, rb) in enumerate(zip(now["metrics"], want["metrics"], strict=True))
             for j, (a, b) in enumerate(zip(ra, rb, strict=True))]
    for k, rec in want["moves"].items():  # [L2, L1, sum, projections...]
        floor = SIZE_FLOOR * want["sizes"][k]
        scales = [max(s, floor) for s in (rec[0], rec[1], max(abs(rec[2]), rec[1]),
                                          *(max(abs(v), rec[0]) for v in rec[3:]))]
        pairs += [(f"{k}[{j}]", a, b, sc) for j, (a, b, sc) in enumerate(zip(now["moves"][k], rec, scales,
                                                                              strict=True))]
    for name, a, b, scale in pairs:
        excess = abs(a - b) / (ATOL + RTOL * scale) if a == a else float("inf")  # NaN: infinitely out
        if excess > worst:
            worst, where = excess, name
    return worst, where


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    torch.set_num_threads(1)
    if "--write" in sys.argv:
        DATA.write_text(json.dumps({c: build(c) for c in CASES}, indent=1) + "\n")
        print(f"wrote {DATA}")
    elif "--check" in sys.argv:  # --eager: the eager updates only (no compiling)
        recorded = json.loads(DATA.read_text())
        for c in CASES:
            for compiled in (False,) if "--eager" in sys.argv else (False, True):
                excess, where = deviation(build(c, compiled), recorded[c])
                print(f"{c:16s} {'compiled' if compiled else 'eager':8s} {excess:.3g} tolerances ({where})")
    else:
        sys.exit("usage: python tests/golden.py --write | --check [--eager]")
