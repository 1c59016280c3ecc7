"""Making an update fast without changing its numbers: ``torch.compile`` and, on CUDA, a CUDA graph.

An update function here is ``fn(state, rows (B, width)) -> metrics`` (`fastddpg.learning.update`: the state is
updated in place, its tensors never replaced). Compiled, graphed and eager give the same numbers (tested, and checked
on any machine by ``fastddpg verify``).
"""

from __future__ import annotations

import functools
import inspect
import os
import platform
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from .compile_cache import persistent_compile_cache
from .cpu_matmul import cpu_matmul_options, resolve_cpu_matmul
from .realize import register_lowering as register_realize_lowering

UpdateFn = Callable[[Any, torch.Tensor], torch.Tensor]
# break-even on a 2-core CPU: a 10-15 s cold compile / (1/280 - 1/600) s saved per update = 5,000-8,000 updates;
# with a warm cache (2 s) about 1,000
AUTO_COMPILE_MIN_UPDATES_CPU = 5_000


def resolve_compile_mode(mode: str, device: torch.device, planned_updates: int, analytic_max_updates: int = 0) -> str:
    """``auto``: compile on CUDA always; on a CPU, for a run of fewer than ``analytic_max_updates`` updates the
    algorithm's hand-derived update (`Algorithm.analytic_auto_max_updates`, 0 where it has none: how long a run it
    outpaces a cold compile over), else compile when the run has enough updates to pay back the one-off compile time
    (on a 2-core CPU: about 2 s with a warm inductor cache, 10-15 s cold; see bench/update.py), else eager."""
    if mode != "auto":
        return mode
    if device.type == "cuda":
        return "default"
    if planned_updates < analytic_max_updates:
        return "analytic"
    return "default" if planned_updates >= AUTO_COMPILE_MIN_UPDATES_CPU else "off"


def compile_update(fn: UpdateFn, mode: str, device: torch.device, cuda_graph: bool = True,
                   cpu_matmul: str = "auto") -> UpdateFn:
    """Wrap an update ``fn(state, rows) -> metrics`` for speed; the numbers do not change (tested).

    - ``off``: eager.
    - ``default`` / ``max-autotune``: ``torch.compile(fullgraph=True)``: the critic step, actor step and soft
      update become one graph; a graph break or a recompilation would be a bug (tested with fullgraph and
      ``error_on_recompile``). Inductor's on-disk FX graph cache is on, so a second run reuses the kernels. On a
      CPU the graph becomes C++ wrapper and kernels, two files built side by side (`CPU_CPP_WRAPPER`).
    - on CUDA, the compiled update is also captured in a CUDA graph (`CudaGraphUpdate`), so an update costs one
      input copy and one graph launch. ``cuda_graph=False`` leaves the graph out (`fastddpg verify` checks
      compiled and compiled-in-a-graph apart).
    ``auto`` must be resolved by the caller (`resolve_compile_mode`), and ``analytic`` is not a compile (the
    algorithm's `analytic_update_fns` instead). ``cpu_matmul`` (``auto``, ``mkl``,
    ``onednn``) routes a CPU update's matrix products (`fastddpg.learning.cpu_matmul`).
    """
    if mode == "off":
        return fn
    if mode not in ("default", "max-autotune"):
        raise ValueError(f"unresolved compile mode {mode!r}")
    persistent_compile_cache()
    import torch._inductor.config as inductor_config

    inductor_config.fx_graph_cache = True
    register_realize_lowering()
    trust_cpu_vector_isa()
    build_wrapper_and_kernels_side_by_side()
    # The generated wrapper checks each buffer's size and each scalar input at every call: ~100 checks per update,
    # 3-12% of a 2-core CPU's update. The shapes are static and checked once by the guards at the first call, so
    # they are skipped unless the user asked for them (TORCHINDUCTOR_SIZE_ASSERTS / TORCHINDUCTOR_SCALAR_ASSERTS).
    for name in ("size_asserts", "scalar_asserts"):
        if f"TORCHINDUCTOR_{name.upper()}" not in os.environ:
            setattr(inductor_config, name, False)
    compiled = torch.compile(fn, fullgraph=True, dynamic=False, options=inductor_options(mode, device, cpu_matmul))
    if device.type == "cuda" and cuda_graph:
        return CudaGraphUpdate(compiled)
    return GuardFreeCall(compiled)


# A CPU update compiles as inductor's C++ wrapper: the code that calls the kernels is C++ too, instead of a Python
# wrapper that loads each fused kernel from a C++ file of its own. Every C++ file parses inductor's vectorised headers
# (~1.5 s of a 2-core CPU each), so two files instead of ~15 cut a cold compile by a third; the generated kernels and
# the matrix products they call are the same, and so are the numbers and the speed (CONTRIBUTING, "Compile
# options"). The headers' precompiled form would be built for those files only, which costs more than it saves.
# The wrapper and the kernels are built apart ("build separate"): the wrapper, straight-line calls, at -O1, the kernels
# at -O3, each its own object file, compiled side by side on two cores (`build_wrapper_and_kernels_side_by_side`) and
# then linked; as one -O3 file g++ spent about half its time optimising the wrapper.
CPU_CPP_WRAPPER = {"cpp_wrapper": True, "cpp_cache_precompile_headers": False, "cpp_wrapper_build_separate": True}


def inductor_options(mode: str, device: torch.device, cpu_matmul: str = "auto") -> dict[str, Any]:
    """The inductor options of ``torch.compile`` for ``mode`` (``default`` or ``max-autotune``) on ``device``: the
    mode's own options, plus on a CPU `CPU_CPP_WRAPPER` (those this torch knows) and the products' routing
    (``cpu_matmul``, `fastddpg.learning.cpu_matmul`), on CUDA inductor's own CUDA graphs off."""
    import torch._inductor as inductor
    import torch._inductor.config as inductor_config

    options = dict(inductor.list_mode_options(mode))
    if device.type == "cuda":
        # max-autotune's own CUDA graphs (inductor's graph trees) would run inside the update's capture
        # (`CudaGraphUpdate`), and in `fastddpg verify`'s compiled-without-a-graph check would put one back
        options["triton.cudagraphs"] = False
    if device.type == "cpu":
        options |= {k: v for k, v in CPU_CPP_WRAPPER.items() if hasattr(inductor_config, k)}
        options |= cpu_matmul_options(resolve_cpu_matmul(cpu_matmul))
    return options


def trust_cpu_vector_isa() -> None:
    """Let inductor take the SIMD instruction sets the CPU reports (/proc/cpuinfo: avx2, avx512, ...) as usable
    instead of proving each one first.

    Unless told (``torch._inductor.config.cpp.vec_isa_ok``), every process that compiles for the CPU builds a test
    library per reported instruction set with the C++ compiler and loads it in a child Python; with an empty cache
    (a fresh machine) that took about 6 s of a 2-core machine's 20-30 s compile. A compiler too old for an instruction
    set the CPU has would fail the compile instead, which says so. A value the user set is kept; only x86 is
    concerned (elsewhere inductor asks no compiler)."""
    import torch._inductor.config as inductor_config

    if inductor_config.cpp.vec_isa_ok is None and platform.machine() in ("x86_64", "AMD64"):
        inductor_config.cpp.vec_isa_ok = True


def build_cpp_side_by_side(lock_path: str, cpp_builders: Sequence[Any]) -> None:
    """Inductor's ``_worker_compile_cpp``, but with the wrapper's and the kernels' object files compiled at once, each
    by its own g++ (a thread waiting on each), before the link; any other list of builders one by one, as inductor
    does. A target already on disk is not built again."""
    from torch._inductor import codecache
    from torch.utils._filelock import FileLock

    with FileLock(lock_path, timeout=codecache.LOCK_TIMEOUT):
        todo = [b for b in cpp_builders if not os.path.exists(b.get_target_file_path())]
        if len(cpp_builders) == 3 and len(todo) == 3:  # the wrapper, the kernels, then the link of the two
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(lambda builder: builder.build(), todo[:2]))
            todo = todo[2:]
        for builder in todo:
            builder.build()


@functools.cache
def build_wrapper_and_kernels_side_by_side() -> bool:
    """Have inductor compile a C++ wrapper's two object files side by side (`build_cpp_side_by_side`) instead of one
    after the other. On a 2-core AMD EPYC (Zen 4) the cold compile of `fastddpg run`'s default update went from
    14.0-15.3 to 11.2-13.8 s (3 pairs, medians 14.2 and 11.7 s) with the same numbers to the bit
    (``scripts/same-numbers.sh``). The compile is the process's only work while it runs, so the second core would
    otherwise be idle.
    Replaces a private function of inductor, so only where it has the form this was written for (returns whether)."""
    try:
        from torch._inductor import codecache
    except ImportError:
        return False
    original = getattr(codecache, "_worker_compile_cpp", None)
    if original is None or list(inspect.signature(original).parameters) != ["lock_path", "cpp_builders"]:
        return False
    codecache._worker_compile_cpp = build_cpp_side_by_side
    return True


class GuardFreeCall:
    """Calls a compiled update, skipping dynamo's guard checks after the first (compiling) call.

    The guards re-check every state tensor (parameters, optimizer state) on each call. Skipping them saved about
    0.5 ms of a 4 ms CPU update on the torch this was written for; torch 2.13 checks them so fast that on a 2-core
    AMD EPYC the default update ran at the same speed either way (443 and 446 updates/s, 1 thread), so this is kept
    for older torch and for CUDA, where a call is far shorter. They can be skipped because the update is compiled
    exactly once and called with one state and one input shape ever after (tested with ``error_on_recompile``), and
    the state is only ever changed in place.
    """

    def __init__(self, compiled: UpdateFn) -> None:
        self.compiled = compiled
        self.calls = 0

    def __call__(self, state: Any, rows: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 1:
            return self.compiled(state, rows)
        with torch.compiler.set_stance("default", skip_guard_eval_unsafe=True):
            return self.compiled(state, rows)


class CudaGraphUpdate:
    """Runs ``fn(state, rows)`` a few times to warm up, then captures one call in a CUDA graph and replays it.

    Every call copies ``rows`` into a static input tensor and replays the graph; the state's tensors are the
    graph's own (they are updated in place, so the same ``state`` must be passed every time); the returned
    metrics tensor is the graph's static output (read or accumulate it before the next call). ``capture=False``
    runs the same static-buffer logic without a graph, so it can be tested on a CPU.
    """

    def __init__(self, fn: UpdateFn, warmup: int = 3, capture: bool = True) -> None:
        self.fn, self.warmup, self.capture = fn, warmup, capture
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_rows: torch.Tensor | None = None
        self.static_out: torch.Tensor | None = None

    def __call__(self, state: Any, rows: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.static_rows is None:
            if self.calls <= self.warmup:
                return self._warm(state, rows)
            self.static_rows = rows.clone()
            if self.capture:
                self.graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.graph):
                    self.static_out = self.fn(state, self.static_rows)
            else:
                self.static_out = self.fn(state, self.static_rows)
                return self.static_out
        self.static_rows.copy_(rows)
        if self.graph is not None:
            self.graph.replay()
        else:
            self.static_out = self.fn(state, self.static_rows)
        return self.static_out

    def _warm(self, state: Any, rows: torch.Tensor) -> torch.Tensor:
        if not self.capture:
            return self.fn(state, rows)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            out = self.fn(state, rows)
        torch.cuda.current_stream().wait_stream(stream)
        return out


def compile_explore(explore: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
                    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The acting step ``explore(obs, noise) -> action``, compiled as one fullgraph (a fused kernel chain on CUDA
    instead of ~10 launches per step)."""
    persistent_compile_cache()
    return torch.compile(explore, fullgraph=True, dynamic=False)
