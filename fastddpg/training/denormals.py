"""Float32 subnormals flushed to zero on the CPU: the x86 flush-to-zero and denormals-are-zero modes.

A subnormal float32 (0 < |x| < 1.18e-38) sends many x86 cores' floating-point units to a slow path (a microcode
assist) for the operation that reads or makes it. Training makes many: Adam's first moment of a weight whose
gradient has vanished (a unit that no longer activates) shrinks by beta1 = 0.9 each update into the subnormal range,
and a gradient that stays tiny keeps it there. After 10,000 env steps of a default Pendulum run (IEEE mode, seed 0),
44,040 of the 65,536 moments of the actor's second layer and 26,904 of the critic's were subnormal, and the update,
the products included, reads them every step. On a 2-core AMD EPYC (Zen 5), 1 thread, the default training loop ran
at 737-799 updates/s with the modes set against 630-693 without, and the compiled update alone (bench/update.py's
replay rows) stayed at ~860 updates/s instead of slowing from ~870 to ~700 over its first 4,000 updates
(CONTRIBUTING, "Compile options"). TensorFlow and PaddlePaddle set the same modes on their CPU threads.

The modes change only results that would be subnormal (they become 0) and subnormal inputs (read as 0): a
rounding of less than 1.2e-38 per float32 value (2.3e-308 per float64 value: the modes cover both, e.g. a MuJoCo
env stepped in this process). They are a per-thread CPU state: ``torch.set_flush_denormal`` sets the
calling thread's, and a thread inherits its creator's when it starts. So `apply_flush_denormal` is called before the
run's first parallel region (the first thing a `Trainer` does): OpenMP's worker threads, started at that region by
this thread, inherit the modes. Workers that an earlier computation of the same process already started keep
theirs (a `Trainer` built after other torch work in a notebook: then only the main thread's share of each parallel
kernel is flushed; the numbers stay deterministic, as the thread count fixes each thread's share, and the run's
summary reports what it asked for, ``flush_denormal``, not what those workers do).
"""

from __future__ import annotations

import torch


def apply_flush_denormal(on: bool) -> bool:
    """Set (``on``) or clear flush-to-zero / denormals-are-zero for this thread and the threads it starts later.

    Returns whether the modes are now on: False when ``on`` is False or the CPU has no such mode (torch reports
    which)."""
    supported = torch.set_flush_denormal(on)
    return bool(on and supported)
