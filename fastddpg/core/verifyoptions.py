"""What `fastddpg verify` takes and the tolerance it holds the fast paths to.

Kept apart from `fastddpg.tools.verify` so that the CLI can build ``verify --help`` (its defaults and
tolerances) without importing torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config import ConfigError
from .registry import algo_names

if TYPE_CHECKING:
    import torch

# Tolerance, float32, per update (each path steps from eager's state, see `verify_updates`), reported: compiled kernels
# fuse and reorder float operations, so bit-identity is not expected. On a 2-core CPU (torch 2.13) the worst
# honest deviation over 50 updates of DDPG and TD3 was 0.008 of this tolerance (|diff| <= 6e-8 in weights,
# 6e-6 in metrics of magnitude ~30); injected bugs went 14x (gamma 0.98 instead of 0.99) to 6e5x beyond it
# (tau ~0, i.e. no soft update: 20x; no smoothing noise: 77x; no gradient clipping: 1e3x; policy delay 1: 6e5x).
# tests/test_verify.py injects such bugs and checks that verify fails and names the tensor.
ATOL = 1e-5
RTOL = 1e-4
# The verdict on an update path is taken in float64 (fastddpg.tools.verify.verify_updates: each path also runs from
# a float64 copy of the state on float64 rows). At verify's default sizes CrossQ's compiled update came within
# 1.3e-4 of this tolerance (|diff| <= 5.4e-12), DDPG's, TD3's and SAC's within 3e-7, though float32 itself is off by
# up to ~2e-3 there; injected bugs go 1.9e3x (gamma 0.98) to 1e10x beyond it. ATOL and RTOL above are the float32
# run's.
ATOL64 = 1e-10
RTOL64 = 1e-7
# The float32 run, which is what the trainer runs, is held to ATOL + RTOL |eager| too, in each tensor group that
# float32 resolves well within that: where eager on the same batch with its rows in reverse order stays within
# F32_RESOLVED of it. Honest float32 paths of DDPG, TD3 and SAC sit below 0.01 of the tolerance; CrossQ's reversed
# rows reach 71x in its critic groups, and another rounding (compiled) lands up to a few times further than a
# reordering does, so a group is judged in float32 only with that factor of 10 to spare. A fast path whose float32
# arithmetic alone is wrong (a lower precision, a miscompiled float32 kernel) then still fails there, though its
# float64 twin passes.
F32_RESOLVED = 0.1
ACT_ATOL = 1e-5  # the acting step is one forward pass: no accumulation over updates
ACT_RTOL = 1e-5


@dataclass
class VerifyOptions:
    """What `fastddpg verify` takes (see `fastddpg verify --help`)."""

    device: str = "auto"
    algo: str = "ddpg"
    num_seeds: int = 1
    updates: int = 50
    batch_size: int = 256
    hidden_sizes: tuple[int, ...] = (256, 256)
    seed: int = 0
    compile_mode: str = "default"
    timed_updates: int = 100
    repeats: int = 3
    acting: bool = True
    graph_logic_on_cpu: bool = False  # tests: run CudaGraphUpdate's static-buffer logic on the CPU too

    def validate(self) -> torch.device:
        """Raise ConfigError (one line) for bad options; return the resolved device."""
        from .config import select_device

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(msg)

        need(self.algo in algo_names(), f"--algo={self.algo!r}: use one of {', '.join(algo_names())}.")
        need(self.num_seeds >= 1, f"--num-seeds={self.num_seeds}: use 1 (one agent) or more (a population).")
        need(self.updates >= 1, f"--updates={self.updates}: verify at least 1 update.")
        need(self.batch_size >= 1, f"--batch-size={self.batch_size}: use a batch of at least 1.")
        need(len(self.hidden_sizes) >= 1 and all(h >= 1 for h in self.hidden_sizes),
             f"--hidden-sizes={' '.join(map(str, self.hidden_sizes))}: use one or more widths of at least 1.")
        need(self.timed_updates >= 1 and self.repeats >= 1, "--timed-updates and --repeats: use 1 or more.")
        need(self.compile_mode in ("default", "max-autotune"),
             f"--compile-mode={self.compile_mode!r}: use default or max-autotune.")
        return select_device(self.device)
