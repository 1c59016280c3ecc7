"""A part of an update run as one TorchScript graph: the same aten ops as eager, dispatched from C++ instead of Python.

Why: on a CPU the hand-derived update (`fastddpg.learning.analytic`) is ~110 small ops around its products, and each
op's Python binding costs a few microseconds more than its kernel at these sizes. ``torch.jit.trace`` records the ops
one eager call runs and replays them from its C++ interpreter: no code generation and no compiler, a few tens of
milliseconds to trace, and the same kernels in the same order (tests/test_graphs.py holds a graph to its eager run;
in float32 they agreed bit for bit on the machine this was written on).
Measured on a 2-core AMD EPYC (Zen 4), batch 128: the DDPG update at 1.06-1.09x the same parts' eager updates/s, TD3's
at 1.08-1.13x (README, Performance).

What may be a graph part (`GraphPart`): a function ``fn(static, rows)`` of a fixed arrangement of tensors ``static``
(an `fastddpg.learning.analytic.AnalyticPlan`: views of the learner state, its gradient buffers) and one batch of
replay ``rows``, which returns a tensor or a tuple of tensors, and whose ops depend on nothing but their shapes. It may
write in place into ``static``'s tensors with ordinary ops. Two things a trace cannot hold, so a part must not do them:
- a data-dependent Python value (``.item()``, ``if t > 0``): the trace would bake in the first call's (shapes are
  the exception: `GraphPart` traces again for rows of another shape);
- an op that returns nothing and writes into a list of tensors (``torch._fused_adam_``, ``torch._foreach_mul_``):
  TorchScript's dead-code elimination drops it from the graph. Such steps run between parts (the Adam steps and the
  soft update of `fastddpg.learning.analytic`).

``PYTORCH_JIT=0`` (torch's own switch) makes every part run eagerly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.utils._pytree as pytree

Outputs = torch.Tensor | tuple[torch.Tensor, ...]
PartFn = Callable[[Any, torch.Tensor], Outputs]


class GraphPart:
    """``fn(static, rows)`` as a traced graph: traced on the first call, again when a call brings another ``static``
    (by identity, as `fastddpg.learning.analytic.AnalyticPlans` builds one per learner state) or rows of another
    shape, dtype or device (the trace holds the first call's shapes, e.g. a batch mean's 1/B). ``static``'s tensors
    (found once per trace by ``torch.utils._pytree``: tuples, lists and dicts of them; other leaves, as floats and
    bools, are the trace's constants) are the graph's inputs beside ``rows``, so in-place writes to them by the graph
    or by anyone else show both ways. ``enabled=False`` runs ``fn`` itself: the eager path the graph must equal.
    """

    def __init__(self, fn: PartFn, enabled: bool = True) -> None:
        self.fn = fn
        self.enabled = enabled
        self._static: Any = None
        self._key: tuple | None = None
        self._graph: Callable[..., Outputs] | None = None
        self._inputs: tuple[torch.Tensor, ...] = ()

    def __call__(self, static: Any, rows: torch.Tensor) -> Outputs:
        if not self.enabled:
            return self.fn(static, rows)
        key = (rows.shape, rows.dtype, rows.device)
        if static is not self._static or key != self._key:
            return self._trace(static, rows, key)
        return self._graph(rows, *self._inputs)

    @property
    def traced(self) -> bool:
        """Whether the last call ran as a graph (False before the first call, when disabled, under
        ``PYTORCH_JIT=0``, or where the trace failed and the part runs eagerly)."""
        return isinstance(self._graph, torch.jit.ScriptFunction)

    def _eager(self, rows: torch.Tensor, *inputs: torch.Tensor) -> Outputs:
        return self.fn(self._static, rows)

    def _trace(self, static: Any, rows: torch.Tensor, key: tuple) -> Outputs:
        """Trace ``fn`` on this call's arguments and return this call's outputs: tracing runs it once, as the
        call would."""
        leaves, spec = pytree.tree_flatten(static)
        # each tensor leaf's position among the graph's inputs (a tensor held twice, as a layer's bias and a list's
        # element, is one input)
        position: dict[int, int] = {}
        slots: dict[int, int] = {}
        inputs: list[torch.Tensor] = []
        for i, leaf in enumerate(leaves):
            if isinstance(leaf, torch.Tensor):
                if id(leaf) not in position:
                    position[id(leaf)] = len(inputs)
                    inputs.append(leaf)
                slots[i] = position[id(leaf)]
        fn = self.fn
        ran: list[Outputs] = []

        def graph_fn(rows: torch.Tensor, *tensors: torch.Tensor) -> Outputs:
            filled = [tensors[slots[i]] if i in slots else leaf for i, leaf in enumerate(leaves)]
            ran.append(fn(pytree.tree_unflatten(filled, spec), rows))
            return ran[-1]

        self._static, self._key, self._inputs = static, key, tuple(inputs)
        try:
            with warnings.catch_warnings():
                # the tracer warns about every shape it reads as a Python value: the trace holds the first call's,
                # which is why a call with rows of another shape traces again
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit's notice; the graph is what we use
                graph = torch.jit.trace(graph_fn, (rows, *inputs), check_trace=False)
            # under PYTORCH_JIT=0 trace returns the function itself: run fn eagerly, without graph_fn's bookkeeping
            self._graph = graph if isinstance(graph, torch.jit.ScriptFunction) else self._eager
        except Exception as err:  # any torch that cannot trace it still runs it, eagerly
            warnings.warn(f"{getattr(fn, '__name__', fn)} runs eagerly: torch.jit.trace failed ({err})", stacklevel=3)
            self._graph = self._eager
        return ran[0] if ran else fn(static, rows)  # the trace's run, or none (PYTORCH_JIT=0, an early failure)
