"""`realized(x)`: a value a compiled CPU update computes once, into its own buffer, instead of inline in every
kernel that reads it.

Inductor inlines a cheap pointwise value into each consumer. For a scalar read by a fused elementwise kernel, such
as Adam's bias corrections ``1 - beta^t`` or the clipping coefficient, the C++ compiler then cannot hoist it out of
the kernel's vector loop: it is a load from memory that the loop's stores might alias, so ``pow``, ``sqrt`` and the
divisions around it run again for every 16 floats of every parameter (perf showed ``powf`` alone at 2.4% of a
1-thread DDPG update on an AMD EPYC). Realized, each is computed once per update and the loop reads one value. Only
where each value is computed changes, not how: the numbers are the same.

Outside a compile (eager, ``make_fx``) `realized` is the identity. On CUDA the lowering leaves the value inline,
as before (a kernel launch for a scalar costs more there). The op is defined when this module is imported (dynamo
cannot define it while tracing); its inductor lowering is registered by `register_lowering`, which
`fastddpg.learning.compile` calls before compiling, so importing the math does not import inductor.
"""

from __future__ import annotations

import functools
from typing import Any

import torch


@torch.library.custom_op("fastddpg::realized", mutates_args=())
def _realized(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


@_realized.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


def realized(x: torch.Tensor) -> torch.Tensor:
    """``x``, computed once into its own buffer by a compiled CPU graph (identity outside a compile)."""
    return _realized(x) if torch.compiler.is_compiling() else x


@functools.cache
def register_lowering() -> None:
    """Teach inductor the op: realize the value on a CPU, leave it inline elsewhere."""
    from torch._inductor.lowering import register_lowering as inductor_lowering

    @inductor_lowering(torch.ops.fastddpg.realized.default)
    def _lower(x: Any) -> Any:
        device = x.get_device()
        if device is not None and device.type == "cpu":
            x.realize()
        return x
