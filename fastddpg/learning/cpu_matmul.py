"""The compiled update's matrix products on a CPU: oneDNN's instead of MKL's where MKL leaves the CPU half idle, and
MKL's in the shapes it runs fast.

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

On x86 (`mkl_products`), the products left to MKL (all of them with ``mkl``) go through the same pass, which
writes the shapes MKL runs slowly as the same sums in shapes it runs fast (`reshape_products`): an output of 2-8
columns as its transpose, a stack of products with one output column or row as a multiply and a sum, and a bias added
after the product rather than copied in before it. On a 2-core AMD EPYC Zen 3 the compiled DDPG update gained
1.06-1.08x, TD3's 1.09x, 1 and 2 threads (CONTRIBUTING, "Compile options"). The hand-derived update
(`fastddpg.learning.analytic`) picks its products' shapes by the same measurements.
"""

from __future__ import annotations

import contextlib
import functools
import platform
from typing import Any, NamedTuple

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


# --- the passes ---------------------------------------------------------------------------------------------------

class PlainProduct(NamedTuple):
    """A float32 CPU product node of an FX graph with alpha = beta = 1: ``bias + a @ b`` (bias None for ``mm`` and
    ``bmm``), its output's fake value ``out``, and the same product's op without a bias (``mm`` or ``bmm``)."""

    out: torch.Tensor
    bias: torch.fx.Node | None
    a: torch.fx.Node
    b: torch.fx.Node
    unbiased: Any


def plain_product(node: torch.fx.Node) -> PlainProduct | None:
    """``node`` as a `PlainProduct`, or None if it is not one (another op, dtype or device, a scaled product)."""
    aten = torch.ops.aten
    unbiased = {aten.mm.default: aten.mm.default, aten.bmm.default: aten.bmm.default,
                aten.addmm.default: aten.mm.default, aten.baddbmm.default: aten.bmm.default}
    if node.op != "call_function" or node.target not in unbiased:
        return None
    out = node.meta.get("val")
    if not isinstance(out, torch.Tensor) or out.dtype != torch.float32 or out.device.type != "cpu":
        return None
    if unbiased[node.target] is node.target:
        return PlainProduct(out, None, *node.args, unbiased[node.target])
    if node.kwargs.get("beta", 1) != 1 or node.kwargs.get("alpha", 1) != 1 or len(node.args) != 3:
        return None
    return PlainProduct(out, *node.args, unbiased[node.target])


def replace_products(graph: torch.fx.Graph) -> int:
    """Every float32 CPU ``mm``/``addmm``/``bmm``/``baddbmm`` of ``graph`` (plain: alpha = beta = 1, the bias a row
    vector per slice) whose per-slice product is `worth_onednn` becomes ``fastddpg::onednn_matmul``, in place.
    Returns how many."""
    replaced = 0
    for node in list(graph.nodes):
        plain = plain_product(node)
        if plain is None:
            continue
        out, bias, a, b = plain.out, plain.bias, plain.a, plain.b
        if bias is not None:
            row = (out.shape[-1],) if out.dim() == 2 else (out.shape[0], 1, out.shape[-1])
            if tuple(bias.meta["val"].shape) != row:
                continue
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


# --- MKL's products: shapes it runs slowly, written as the same sums in shapes it runs fast --------------------------

# MKL's float32 product whose output has 2-8 columns (a first layer's weight gradient, 256 x 128 @ 128 x 4; the
# gradient of a critic with respect to its input, 128 x 256 @ 256 x 4) runs a slow kernel: 54 us against 11 us for the
# same product computed as its transpose (4 x 128 @ 128 x 256), 30 against 15 us on 2 threads; a stack of two, 85
# against 21 us. From 16 columns up the plain product is as fast or faster, and a 1-column one is a matrix-vector
# product MKL does well (6.0 against 7.3 us transposed). Measured on a 2-core AMD EPYC Zen 3 (MKL's AVX2 code).
NARROW_OUT = (2, 8)


def narrow_output(m: int, n: int) -> bool:
    """Whether a product with an (m, n) output runs faster as its transpose: n in `NARROW_OUT`, below m."""
    return NARROW_OUT[0] <= n <= NARROW_OUT[1] < m


class ProductRewrites(NamedTuple):
    """What `reshape_products` changed: products computed as their transpose, stacked products with one output row
    or column computed as a sum, and biases added after the product instead of copied in before it."""

    transposed: int
    summed: int
    unfused: int


def _fake(target: Any, args: tuple) -> Any:
    """``target(*args)`` on the args' fake tensors (in the graph's fake mode): the ``val`` inductor's lowering reads
    from every node."""
    from torch._guards import detect_fake_mode

    vals = [a.meta["val"] if isinstance(a, torch.fx.Node) else a for a in args]
    with detect_fake_mode(vals) or contextlib.nullcontext():
        return target(*vals)


def _call(graph: torch.fx.Graph, target: Any, *args: Any) -> torch.fx.Node:
    """A new node ``target(*args)`` of ``graph``, at its insertion point, with its fake value."""
    node = graph.call_function(target, args)
    node.meta["val"] = _fake(target, args)
    return node


def reshape_products(graph: torch.fx.Graph) -> ProductRewrites:
    """Every float32 CPU ``mm``/``addmm``/``bmm``/``baddbmm`` left to ATen (plain: alpha = beta = 1), in place:

    - an output with `narrow_output` columns: ``(b^T @ a^T)^T``, the same dot products in MKL's fast shape;
    - a stack of products with one output column or row (the twin critics' Q heads, forward and backward): a
      broadcast multiply and a sum, which inductor fuses with its neighbours; ATen's batched product takes a slow
      path there (87 us for (2, 128, 256) @ (2, 256, 1), 1 thread, against ~6 us a slice);
    - a bias: added after the product (``add``, fused into the kernel that reads the product, a ReLU's) instead of
      expanded and copied into the output before it, a pass over the output that cost ~10 us a 128 x 256 layer.

    The numbers are the same sums in another order (tested against the eager update)."""
    aten = torch.ops.aten
    transposed = summed = unfused = 0
    for node in list(graph.nodes):
        plain = plain_product(node)
        if plain is None:
            continue
        out, bias, a, b = plain.out, plain.bias, plain.a, plain.b
        m, n = (int(d) for d in out.shape[-2:])
        stacked = out.dim() == 3
        swap = [0, 2, 1] if stacked else [1, 0]
        with graph.inserting_before(node):
            if stacked and (n == 1 or m == 1):
                # n == 1: sum_k a[c, i, k] b[c, k, 0]; m == 1: sum_k a[c, 0, k] b[c, k, j]
                if n == 1:
                    terms = _call(graph, aten.mul.Tensor, a, _call(graph, aten.permute.default, b, swap))
                    product = _call(graph, aten.sum.dim_IntList, terms, [2], True)
                else:
                    terms = _call(graph, aten.mul.Tensor, _call(graph, aten.permute.default, a, swap), b)
                    product = _call(graph, aten.sum.dim_IntList, terms, [1], True)
                summed += 1
            elif narrow_output(m, n):
                b_t, a_t = (_call(graph, aten.permute.default, x, swap) for x in (b, a))
                product = _call(graph, aten.permute.default, _call(graph, plain.unbiased, b_t, a_t), swap)
                transposed += 1
            elif bias is not None:
                product = _call(graph, plain.unbiased, a, b)
            else:
                continue
            if bias is not None:
                product = _call(graph, aten.add.Tensor, product, bias)
                unfused += 1
        node.replace_all_uses_with(product)
        graph.erase_node(node)
    return ProductRewrites(transposed, summed, unfused)


def mkl_products() -> bool:
    """Whether this machine's float32 CPU products are MKL's, whose shapes `reshape_products` was measured on: an
    x86 CPU (PyTorch's aarch64 wheels use other libraries, not measured)."""
    return platform.machine() in ("x86_64", "AMD64")


@functools.cache
def products_pass(onednn: bool, reshape: bool) -> Any:
    """The inductor post-grad pass (a ``CustomGraphPass``) of a CPU update's products: with ``onednn``
    `replace_products`, then with ``reshape`` `reshape_products` of those left to MKL. Its ``uuid`` keys inductor's
    cache, so graphs compiled with one pass never mix with another's. Built on first use: inductor's import costs
    ~1 s of start-up that a run which never compiles should not pay."""
    from torch._inductor.custom_graph_pass import CustomGraphPass

    class ProductsPass(CustomGraphPass):
        def __call__(self, graph: torch.fx.Graph) -> None:
            if onednn:
                replace_products(graph)
            if reshape:
                reshape_products(graph)

        def uuid(self) -> Any:
            # this file's hash: any edit to the passes or the lowering keys inductor's cache anew
            try:
                from torch._inductor.custom_graph_pass import get_hash_for_files
                digest = get_hash_for_files((__file__,)).hex()[:16]
            except ImportError:
                digest = _PASS_VERSION
            routing = f"onednn-matmul-{MIN_MACS}-{MIN_INNER}-{MIN_OUT}" if onednn else "mkl"
            shapes = f"narrow-{NARROW_OUT[0]}-{NARROW_OUT[1]}" if reshape else "as-traced"
            return f"fastddpg-products-{routing}-{digest}-{shapes}"

    return ProductsPass()


def cpu_matmul_options(choice: str) -> dict[str, Any]:
    """The inductor options that route a CPU update's products as ``choice`` (resolved) says: the products pass
    (`products_pass`) with oneDNN's products and/or MKL's reshaped (on x86); none where it would do nothing or this
    torch's inductor takes no pass."""
    if choice == "onednn" and not onednn_available():
        raise ConfigError(f"--cpu-matmul onednn: torch {torch.__version__} has no oneDNN linear (or not the "
                          "inductor hooks fastddpg lowers it with); use --cpu-matmul mkl or auto")
    persistent_compile_cache()  # importing inductor fixes its cache directory
    from torch._inductor import config as inductor_config

    onednn, reshape = choice == "onednn", mkl_products()
    if not (onednn or reshape) or not hasattr(inductor_config, "post_grad_custom_post_pass"):
        return {}
    return {"post_grad_custom_post_pass": products_pass(onednn, reshape)}
