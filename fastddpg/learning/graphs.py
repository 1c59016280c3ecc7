"""A part of an update run as one TorchScript graph: the same aten ops as eager, dispatched from C++ instead of Python.

Why: on a CPU the hand-derived update (`fastddpg.learning.analytic`) is ~110 small ops around its products, and each
op's Python binding costs a few microseconds more than its kernel at these sizes. ``torch.jit.trace`` records the ops
one eager call runs and replays them from its C++ interpreter: no code generation and no compiler, a few tens of
milliseconds to trace, and the same kernels in the same order (tests/test_graphs.py holds the 256-wide DDPG and TD3
graphs to their eager runs bit for bit).
Measured on a 2-core AMD EPYC (Zen 4), batch 128: the DDPG update at 1.06-1.09x the same parts' eager updates/s, TD3's
at 1.08-1.13x (bench/results/PERFORMANCE_LOG.md).

What may be a graph part (`GraphPart`): a function ``fn(static, rows)`` of a fixed arrangement of tensors ``static``
(an `fastddpg.learning.analytic.AnalyticPlan`: views of the learner state, its gradient buffers) and one batch of
replay ``rows``, which returns a tensor or a tuple of tensors, and whose ops depend on nothing but their shapes. It may
write in place into ``static``'s tensors with ordinary ops, by overwriting them (the gradient buffers), not by adding
to them. Two things a trace cannot hold, so a part must not do them:
- a data-dependent Python value (``.item()``, ``if t > 0``): the trace would bake in the first call's (shapes are
  the exception: `GraphPart` traces again for rows of another shape);
- an op that returns nothing and writes into a list of tensors (``torch._fused_adam_``, ``torch._foreach_mul_``):
  TorchScript's dead-code elimination drops it from the graph. Such steps run between parts (the Adam steps and the
  soft update of `fastddpg.learning.analytic`).
And one thing a trace changes: the graph executor's passes split a traced ``torch.addmm`` into ``mm`` + ``add``
(TorchScript's DecomposeOps), which rounds a bias added after a long sum differently and costs a pass over the
output; ``nn.functional.linear`` (an ``nn.Linear``'s own call, ``addmm`` in eager) is left whole, so the layers of a
part are written with it.

Graphs are for the CPU, where the Python per op is what they save; on CUDA a part runs eagerly (TorchScript would
fuse its elementwise ops into kernels of its own there, and CUDA runs compile their update anyway).
``PYTORCH_JIT=0`` (torch's own switch) makes every part run eagerly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.utils._pytree as pytree

Outputs = torch.Tensor | tuple[torch.Tensor, ...]
PartFn = Callable[[Any, torch.Tensor], Outputs]


class _Graph(NamedTuple):
    """One trace of a part: the ``static`` it was traced for (held, so its identity stays valid), the graph (or the
    part's eager run where it cannot be traced) and its tensor inputs."""

    static: Any
    run: Callable[..., Outputs]
    inputs: tuple[torch.Tensor, ...]


class GraphPart:
    """``fn(static, rows)`` as a traced graph, on a CPU: traced on the first call, again for a call that brings another
    ``static`` (by identity, as `fastddpg.learning.analytic.AnalyticPlans` builds one per learner state) or rows of
    another shape or dtype (the trace holds the first call's shapes, e.g. a batch mean's 1/B); the last few traces
    are kept, so a part that alternates between two of them traces each once. ``static``'s tensors (found once per
    trace by ``torch.utils._pytree``: tuples, lists and dicts of them; other leaves, as floats and bools, are the
    trace's constants) are the graph's inputs beside ``rows``, so in-place writes to them by the graph or by anyone
    else show both ways. ``fn`` may write into them only by overwriting: the call that traces runs ``fn`` once (its
    outputs are that call's), and a trace that fails part-way runs it once more, eagerly. Rows on another device
    (CUDA, where TorchScript would fuse elementwise ops into kernels of its own) and ``enabled=False`` run ``fn``
    itself: the eager path a graph must equal.
    """

    keep = 4  # traces kept per part

    def __init__(self, fn: PartFn, enabled: bool = True) -> None:
        self.fn = fn
        self.enabled = enabled
        self._graphs: dict[tuple, _Graph] = {}
        self._last: _Graph | None = None

    def __call__(self, static: Any, rows: torch.Tensor) -> Outputs:
        if not self.enabled or rows.device.type != "cpu":
            return self.fn(static, rows)
        graph = self._graphs.get((id(static), rows.shape, rows.dtype))
        if graph is None:
            return self._trace(static, rows)
        self._last = graph
        return graph.run(rows, *graph.inputs)

    @property
    def traced(self) -> bool:
        """Whether the part's latest trace is a graph (False before the first call, when disabled, under
        ``PYTORCH_JIT=0``, or where the trace failed and the part runs eagerly)."""
        return self._last is not None and isinstance(self._last.run, torch.jit.ScriptFunction)

    def _trace(self, static: Any, rows: torch.Tensor) -> Outputs:
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

        def eager(rows: torch.Tensor, *tensors: torch.Tensor) -> Outputs:
            return fn(static, rows)

        try:
            with warnings.catch_warnings():
                # the tracer warns about every shape it reads as a Python value: the trace holds the first call's,
                # which is why a call with rows of another shape traces again
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit's notice; the graph is what we use
                traced = torch.jit.trace(graph_fn, (rows, *inputs), check_trace=False)
            # under PYTORCH_JIT=0 trace returns the function itself: run fn eagerly, without graph_fn's bookkeeping
            run = traced if isinstance(traced, torch.jit.ScriptFunction) else eager
        except Exception as err:  # any torch that cannot trace it still runs it, eagerly
            warnings.warn(f"{getattr(fn, '__name__', fn)} runs eagerly: torch.jit.trace failed ({err})", stacklevel=3)
            run = eager
        # stored only once complete: an interrupted trace leaves no graph behind for these arguments
        if len(self._graphs) >= self.keep:
            del self._graphs[next(iter(self._graphs))]  # the oldest
        self._last = self._graphs[(id(static), rows.shape, rows.dtype)] = _Graph(static, run, tuple(inputs))
        return ran[0] if ran else fn(static, rows)  # the trace's run, or none (PYTORCH_JIT=0, an early failure)
