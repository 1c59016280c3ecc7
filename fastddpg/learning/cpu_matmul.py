"""The compiled update's matrix products on a CPU: oneDNN's instead of MKL's where MKL leaves the CPU half idle.

PyTorch's x86 builds compute a float32 ``mm`` / ``addmm`` / ``bmm`` / ``baddbmm`` with MKL's sgemm. MKL picks its
kernels by CPU vendor: on an AMD CPU with AVX-512 (Zen 4, Zen 5) it runs its AVX2 code, half the vector width the
CPU has. oneDNN, which the same build carries, picks its kernels by the instructions the CPU reports and runs
AVX-512 there. Measured on a 2-core AMD EPYC (Zen 5, family 26), 1 thread: a 256 x 256 x 256 product in 176 us
against MKL's 347 us (1.97x); 128 x 256 x 256 in 88 against 168 us; SAC's whole update at HalfCheetah's sizes,
batch 256, 218 against 113 updates/s (CONTRIBUTING, "Compile options"). A Zen 4 (family 25) runs AVX-512 on 256-bit
units, so there the two are equal (128 x 256 x 256: 174 against 172 us; 256 x 256 x 256: 325 against 338 us), and
``auto``'s oneDNN costs nothing.

How: a post-grad pass of the compiled update (`onednn_matmul_pass`) replaces each float32 CPU product large enough
to gain (`worth_onednn`) with ``fastddpg::onednn_matmul``, a custom op whose inductor lowering is oneDNN's linear
(``mkldnn._linear_pointwise``, called straight from the generated C++): ``addmm(bias, a, b)`` becomes ``linear(a,
b^T, bias)``, a ``bmm``/``baddbmm`` one linear per slice. The equations and the eager update do not change; the
numbers differ from MKL's by the order of the float32 sums only (tested against the eager update to the
tolerances that compiled and eager are held to, and checked on any machine by ``fastddpg verify``).

Where: ``--cpu-matmul auto`` takes oneDNN on an AMD x86 CPU that reports AVX-512 and MKL everywhere else (Intel's
MKL runs AVX-512 on Intel CPUs; nothing was measured elsewhere); ``onednn`` and ``mkl`` force either. Only the
compiled update on a CPU is concerned: eager updates, acting and CUDA are not.
"""

from __future__ import annotations

import functools
import platform
from typing import Any

import torch

from ..core.config import ConfigError
from ..core.cpuinfo import read_cpuinfo
from .compile_cache import persistent_compile_cache

# oneDNN's call costs ~13 us whatever the size (its primitive cache lookup), MKL's ~4 us: below ~0.5M
# multiply-adds, or with an inner or output size that small, MKL's product is as fast or faster
# (measured: 256x256x1 13.8 vs 4.1 us, 256x6x256 14.3 vs 10.1, 64x64x64 13.8 vs 6.5; 256x256x12 21 vs 41)
MIN_MACS = 1 << 19
MIN_INNER = 8
MIN_OUT = 2
_PASS_VERSION = "1"


def worth_onednn(m: int, k: int, n: int) -> bool:
    """Whether oneDNN's product (m, k) @ (k, n) beats MKL's on an AMD AVX-512 CPU (see the constants)."""
    return k >= MIN_INNER and n >= MIN_OUT and m * k * n >= MIN_MACS


@functools.cache
def onednn_available() -> bool:
    """Whether this torch carries oneDNN's linear (``mkldnn._linear_pointwise``) for the CPU, and the inductor node
    (``mkldnn_ir.LinearUnary.create``) and pass hook that the lowering uses: internal APIs, so checked rather than
    assumed (``auto`` then falls back to MKL)."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return False
    persistent_compile_cache()  # importing inductor fixes its cache directory
    try:
        from torch._inductor import config as inductor_config
        from torch._inductor import mkldnn_ir
        from torch._inductor.custom_graph_pass import CustomGraphPass  # noqa: F401
    except ImportError:
        return False
    return hasattr(mkldnn_ir, "LinearUnary") and hasattr(mkldnn_ir.LinearUnary, "create") and hasattr(
        inductor_config, "post_grad_custom_post_pass")


def resolve_cpu_matmul(choice: str) -> str:
    """``auto`` -> ``onednn`` on an x86 CPU whose vendor is AMD and that reports AVX-512 (with oneDNN in this torch),
    else ``mkl``; ``mkl`` and ``onednn`` as they are."""
    if choice != "auto":
        return choice
    if platform.machine() not in ("x86_64", "AMD64") or not onednn_available():
        return "mkl"
    info = read_cpuinfo()
    return "onednn" if info.vendor == "AuthenticAMD" and "avx512f" in info.flags else "mkl"


# --- the op -------------------------------------------------------------------------------------------------------

def _linear(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    # oneDNN takes a row-major input and weight at full speed; any other stride sends it to its reference kernel
    # (a 256 x 256 x 17 product with a column slice of the replay rows as its weight: 26 ms instead of 0.05)
    return torch.ops.mkldnn._linear_pointwise.default(a.contiguous(), b.t().contiguous(),
                                                      None if bias is None else bias.contiguous(), "none", [], "")


@functools.cache
def _op() -> Any:
    """``fastddpg::onednn_matmul(bias, a, b)``: bias + a @ b for a (m, k), b (k, n), bias None or (n,); or a, b
    stacked (r, m, k), (r, k, n), bias None or (r, 1, n): each slice's product. Defined on first use, with its
    inductor lowering (`_register_lowering`)."""

    @torch.library.custom_op("fastddpg::onednn_matmul", mutates_args=())
    def onednn_matmul(bias: torch.Tensor | None, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.dim() == 2:
            return _linear(a, b, bias)
        return torch.stack([_linear(a[i], b[i], None if bias is None else bias[i, 0]) for i in range(a.shape[0])])

    @onednn_matmul.register_fake
    def _(bias: torch.Tensor | None, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a.new_empty((*a.shape[:-1], b.shape[-1]))

    _register_lowering(torch.ops.fastddpg.onednn_matmul.default)
    return torch.ops.fastddpg.onednn_matmul.default


def _register_lowering(op: Any) -> None:
    """Lower the op to inductor's own oneDNN linear node, so the generated C++ calls oneDNN directly (through a
    Python op each product cost ~60 us more, half of what oneDNN saves)."""
    from torch._inductor import ir, mkldnn_ir
    from torch._inductor.lowering import permute, register_lowering, select
    from torch._inductor.virtualized import ops

    def linear(a: Any, b: Any, bias: Any) -> Any:
        return ir.TensorBox.create(mkldnn_ir.LinearUnary.create(a, permute(b, [1, 0]), bias, "none", [], ""))

    def stack(slices: list[Any]) -> Any:
        # a pointwise select over the slices rather than inductor's cat lowering, which reads the FX node it lowers
        # (torch 2.11 asserts that node is a cat); the consumer kernel can fuse the select and skip the copy
        loaders = [s.make_loader() for s in slices]

        def inner_fn(index: Any) -> Any:
            which = ops.index_expr(index[0], torch.int64)
            out = loaders[-1](index[1:])
            for i in range(len(loaders) - 2, -1, -1):
                out = ops.where(ops.eq(which, ops.constant(i, torch.int64)), loaders[i](index[1:]), out)
            return out

        return ir.Pointwise.create(device=slices[0].get_device(), dtype=slices[0].get_dtype(), inner_fn=inner_fn,
                                   ranges=[len(slices), *slices[0].get_size()])

    @register_lowering(op)
    def _lower(bias: Any, a: Any, b: Any) -> Any:
        if len(a.get_size()) == 2:
            return linear(a, b, bias)
        return stack([linear(select(a, 0, i), select(b, 0, i),
                             None if bias is None else select(select(bias, 0, i), 0, 0))
                      for i in range(int(a.get_size()[0]))])


# --- the pass -----------------------------------------------------------------------------------------------------

def replace_products(graph: torch.fx.Graph) -> int:
    """Every float32 CPU ``mm``/``addmm``/``bmm``/``baddbmm`` of ``graph`` (plain: alpha = beta = 1, the bias a row
    vector per slice) whose per-slice product is `worth_onednn` becomes ``fastddpg::onednn_matmul``, in place.
    Returns how many."""
    aten = torch.ops.aten
    with_bias = {aten.mm.default: False, aten.bmm.default: False, aten.addmm.default: True,
                 aten.baddbmm.default: True}
    replaced = 0
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in with_bias:
            continue
        out = node.meta.get("val")
        if not isinstance(out, torch.Tensor) or out.dtype != torch.float32 or out.device.type != "cpu":
            continue
        if with_bias[node.target]:
            if node.kwargs.get("beta", 1) != 1 or node.kwargs.get("alpha", 1) != 1 or len(node.args) != 3:
                continue
            bias, a, b = node.args
            row = (out.shape[-1],) if out.dim() == 2 else (out.shape[0], 1, out.shape[-1])
            if tuple(bias.meta["val"].shape) != row:
                continue
        else:
            bias, (a, b) = None, node.args
        m, k = a.meta["val"].shape[-2:]
        if not worth_onednn(int(m), int(k), int(out.shape[-1])):
            continue
        with graph.inserting_before(node):
            new = graph.call_function(_op(), (bias, a, b))
        new.meta.update(node.meta)
        node.replace_all_uses_with(new)
        graph.erase_node(node)
        replaced += 1
    return replaced


@functools.cache
def onednn_matmul_pass() -> Any:
    """The inductor post-grad pass (a ``CustomGraphPass``) running `replace_products`; its ``uuid`` keys inductor's
    cache, so graphs compiled with and without it never mix. Built on first use: inductor's import costs ~1 s of
    start-up that a run which never compiles should not pay."""
    from torch._inductor.custom_graph_pass import CustomGraphPass

    class OneDNNMatmulPass(CustomGraphPass):
        def __call__(self, graph: torch.fx.Graph) -> None:
            replace_products(graph)

        def uuid(self) -> Any:
            # this file's hash: any edit to the pass or its lowering keys inductor's cache anew
            try:
                from torch._inductor.custom_graph_pass import get_hash_for_files
                digest = get_hash_for_files((__file__,)).hex()[:16]
            except ImportError:
                digest = _PASS_VERSION
            return f"fastddpg-onednn-matmul-{digest}-{MIN_MACS}-{MIN_INNER}-{MIN_OUT}"

    return OneDNNMatmulPass()


def cpu_matmul_options(choice: str) -> dict[str, Any]:
    """The inductor options that route a CPU update's products as ``choice`` (resolved) says: oneDNN's pass, or
    none (MKL, inductor's default)."""
    if choice == "onednn":
        if not onednn_available():
            raise ConfigError(f"--cpu-matmul onednn: torch {torch.__version__} has no oneDNN linear (or not the "
                              "inductor hooks fastddpg lowers it with); use --cpu-matmul mkl or auto")
        return {"post_grad_custom_post_pass": onednn_matmul_pass()}
    return {}
