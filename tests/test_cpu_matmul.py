"""oneDNN's products in a compiled CPU update: which products the pass takes, the op's numbers, the compiled update
against eager, and which CPUs ``auto`` picks it for. Runs on any x86 CPU whose torch carries oneDNN (forced with
``cpu_matmul="onednn"``, whatever ``auto`` would pick there)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch._dynamo
from torch.fx.experimental.proxy_tensor import make_fx

from fastddpg.core.cpuinfo import CpuInfo
from fastddpg.learning import cpu_matmul
from fastddpg.learning.compile import compile_update, inductor_options
from fastddpg.learning.cpu_matmul import replace_products, resolve_cpu_matmul, worth_onednn
from tests.conftest import make_learner
from tests.test_compile import all_state, filled_buffer

CPU = torch.device("cpu")
needs_onednn = pytest.mark.skipif(not cpu_matmul.onednn_available(), reason="this torch has no oneDNN linear")


def products(a, b, c, w2, bias2, x3, w3, bias3, small_a, small_b, d):
    """Each kind of product the pass sees, above and below its size limit, and one it must leave alone."""
    return (torch.mm(a, b), torch.addmm(c, a, b), torch.bmm(x3, w3), torch.baddbmm(bias3, x3, w3),
            torch.mm(small_a, small_b), torch.addmm(c, a, b, beta=0.5), torch.mm(a.double(), b.double()),
            torch.addmm(bias2, a, w2), torch.mm(a.t(), d))


def product_inputs() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    rows = r(128, 80)  # a column slice of it, as the replay rows' obs are: oneDNN's slow case unless copied
    return (r(128, 64), r(64, 96), r(96), r(64, 16), r(16), r(2, 128, 64), r(2, 64, 96), r(2, 1, 96),
            r(8, 4), r(4, 8), rows[:, 3:67])


@needs_onednn
def test_the_pass_takes_the_large_plain_float32_products_and_gives_their_numbers():
    inputs = product_inputs()
    gm = make_fx(products)(*inputs)
    want = products(*inputs)
    replaced = replace_products(gm.graph)
    gm.recompile()
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    # mm, addmm, bmm, baddbmm and the transposed mm: 128*64*96 etc. >= MIN_MACS; the 8x4x8 product, the scaled addmm,
    # the float64 one and the 16-wide output (128*64*16 < MIN_MACS) stay aten's
    assert replaced == 5 and targets.count(torch.ops.fastddpg.onednn_matmul.default) == 5
    assert torch.ops.aten.addmm.default in targets and torch.ops.aten.mm.default in targets
    for got, ref in zip(gm(*inputs), want, strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_size_rule():
    assert worth_onednn(256, 256, 256) and worth_onednn(128, 256, 256) and worth_onednn(256, 256, 12)
    assert not worth_onednn(256, 256, 1)  # a Q head: MKL's matrix-vector product is 3x faster
    assert not worth_onednn(256, 6, 256)  # an inner size of 6: MKL faster
    assert not worth_onednn(64, 64, 64)  # 0.26M multiply-adds: oneDNN's fixed cost dominates


@pytest.mark.parametrize(("machine", "vendor", "flags", "want"), [
    ("x86_64", "AuthenticAMD", {"avx2", "avx512f"}, "onednn"),
    ("x86_64", "AuthenticAMD", {"avx2"}, "mkl"),  # Zen 2/3: both libraries run AVX2
    ("x86_64", "GenuineIntel", {"avx2", "avx512f"}, "mkl"),  # MKL runs AVX-512 on Intel's CPUs
    ("aarch64", "", set(), "mkl"),
])
def test_auto_picks_onednn_on_amd_avx512_only(monkeypatch, machine, vendor, flags, want):
    monkeypatch.setattr(cpu_matmul.platform, "machine", lambda: machine)
    monkeypatch.setattr(cpu_matmul, "read_cpuinfo", lambda: CpuInfo(vendor, "", "", "", frozenset(flags)))
    monkeypatch.setattr(cpu_matmul, "onednn_available", lambda: True)
    assert resolve_cpu_matmul("auto") == want
    assert resolve_cpu_matmul("mkl") == "mkl" and resolve_cpu_matmul("onednn") == "onednn"


@needs_onednn
def test_onednn_and_mkl_options_carry_their_own_products_pass():
    on = inductor_options("default", CPU, cpu_matmul="onednn")
    off = inductor_options("default", CPU, cpu_matmul="mkl")
    on_uuid, off_uuid = on.pop("post_grad_custom_post_pass").uuid(), off.pop("post_grad_custom_post_pass").uuid()
    assert on_uuid.startswith("fastddpg-products-onednn-matmul-") and off_uuid.startswith("fastddpg-products-mkl-")
    assert on == off
    assert "post_grad_custom_post_pass" not in inductor_options("default", torch.device("cuda"), cpu_matmul="onednn")


def test_mkls_products_are_reshaped_on_x86_only(monkeypatch):
    """The reshaping was measured on MKL, the products of PyTorch's x86 wheels: elsewhere an MKL-routed compile gets
    no pass at all."""
    monkeypatch.setattr(cpu_matmul.platform, "machine", lambda: "x86_64")
    assert cpu_matmul.mkl_products()
    uuid = inductor_options("default", CPU, cpu_matmul="mkl")["post_grad_custom_post_pass"].uuid()
    assert uuid.startswith("fastddpg-products-mkl-") and "-narrow-2-8" in uuid
    monkeypatch.setattr(cpu_matmul.platform, "machine", lambda: "aarch64")
    assert not cpu_matmul.mkl_products()
    assert "post_grad_custom_post_pass" not in inductor_options("default", CPU, cpu_matmul="mkl")


def td3_compiled_against_eager(cpu_matmul_choice: str, hidden: tuple[int, ...]) -> None:
    """TD3 (twin critics, policy delay 1) with ``hidden`` layers, compiled with ``cpu_matmul_choice``'s products and
    no cache (so the passes run, not a cached graph), against eager over 10 updates: the metrics and every state
    tensor within test_compile's tolerances."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = make_learner(3, 1, hidden, torch.tensor([-2.0]), torch.tensor([2.0]), 1e-3, 1e-3, CPU,
                         num_critics=2, policy_delay=1)
    comp = copy.deepcopy(eager)
    buf = filled_buffer()
    g = torch.Generator().manual_seed(2)
    rows = buf.sample_rows(10, 64, g)
    rows = torch.cat([rows, torch.randn(*rows.shape[:-1], eager.eps_dim, generator=g)], dim=-1)  # TD3's smoothing
    f_eager = eager.update_fns(buf.as_batch, buf.width)[True]
    with torch._inductor.config.patch(force_disable_caches=True):
        f_comp = compile_update(comp.update_fns(buf.as_batch, buf.width)[True], "default", CPU,
                                cpu_matmul=cpu_matmul_choice)
        for i in range(10):
            torch.testing.assert_close(f_comp(comp.state, rows[i]), f_eager(eager.state, rows[i]), rtol=1e-5,
                                       atol=1e-6)
    s_eager, s_comp = all_state(eager), all_state(comp)
    for k in s_eager:
        torch.testing.assert_close(s_comp[k], s_eager[k], rtol=1e-5, atol=1e-6, msg=k)


@needs_onednn
def test_compiled_update_with_onednn_products_equals_eager(monkeypatch):
    """TD3 (an actor's addmm, the twin critics' baddbmm, their gradients' mm and bmm) at sizes the pass takes: the
    compiled update, through oneDNN, gives eager's (MKL's) numbers within test_compile's tolerances."""
    seen = []
    monkeypatch.setattr(cpu_matmul, "replace_products", lambda graph: seen.append(replace_products(graph)))
    td3_compiled_against_eager("onednn", (128, 128))
    assert seen and seen[0] >= 10  # the 128x128 layers' products, forward and backward

def products_to_reshape(a, w4, d, b, x3, w3n, bias3, q_w, h, h3, w_t, c2, dq):
    """Each product `reshape_products` rewrites, and those it must leave alone."""
    return (torch.mm(d.t(), a),  # (256, 4): a first layer's weight gradient -> transposed
            torch.mm(d, w4),  # (128, 4): the gradient with respect to a critic's input -> transposed
            torch.addmm(b, a, w4.t()),  # (128, 256) with a bias -> mm + add
            torch.bmm(x3, w3n),  # (2, 128, 4) -> transposed
            torch.baddbmm(bias3, x3, q_w),  # (2, 128, 1): stacked Q heads -> a sum, then the bias
            torch.bmm(dq.transpose(1, 2), h3),  # (2, 1, 256): their weight gradient -> a sum
            torch.mm(h, w_t),  # (128, 256): wide, left alone
            torch.mm(h, w_t[:, :1]),  # (128, 1): MKL's matrix-vector product, left alone
            torch.addmm(b, a, w4.t(), beta=0.5),  # scaled: left alone
            torch.mm(d.double().t(), a.double()),  # float64: left alone
            torch.mm(c2, a[:2]))  # (2, 4): no wider than narrow, left alone


def reshape_inputs() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return (r(128, 4), r(256, 4), r(128, 256), r(256), r(2, 128, 256), r(2, 256, 4), r(2, 1, 1), r(2, 256, 1),
            r(128, 256), r(2, 128, 256), r(256, 256), r(2, 2), r(2, 128, 1))


def test_reshape_products_writes_mkls_slow_shapes_as_the_same_sums_in_fast_ones():
    inputs = reshape_inputs()
    gm = make_fx(products_to_reshape, tracing_mode="fake")(*inputs)  # one fake mode for all, as inductor has
    want = products_to_reshape(*inputs)
    assert cpu_matmul.reshape_products(gm.graph) == cpu_matmul.ProductRewrites(transposed=3, summed=2, unfused=2)
    gm.recompile()
    aten = torch.ops.aten
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert targets.count(aten.addmm.default) == 1 and aten.baddbmm.default not in targets  # the scaled one stays
    assert targets.count(aten.sum.dim_IntList) == 2 and targets.count(aten.add.Tensor) == 2
    for node in gm.graph.nodes:  # every new node carries the fake value inductor's lowering reads
        if node.op == "call_function":
            assert isinstance(node.meta.get("val"), torch.Tensor), node
    for got, ref in zip(gm(*inputs), want, strict=True):
        assert got.shape == ref.shape
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_narrow_rule():
    assert cpu_matmul.narrow_output(256, 4) and cpu_matmul.narrow_output(128, 2) and cpu_matmul.narrow_output(9, 8)
    assert not cpu_matmul.narrow_output(128, 1)  # a matrix-vector product: MKL's is fast
    assert not cpu_matmul.narrow_output(256, 16)  # from 16 columns up the plain product is as fast
    assert not cpu_matmul.narrow_output(4, 4)  # no wider than it is long: nothing to gain


@pytest.mark.skipif(not cpu_matmul.mkl_products(), reason="the reshaping runs where MKL computes the products (x86)")
def test_compiled_update_with_mkls_products_reshaped_equals_eager(monkeypatch):
    """TD3 compiled with MKL's products (the products pass rewriting the first layers' weight gradients and the
    critic's gradient with respect to its input, the twin critics' stacked Q heads and every bias): eager's numbers
    within test_compile's tolerances, and the pass did run (DDPG's graph has the same products but the stacked
    ones; test_compile holds it to eager through the same pass)."""
    seen = []
    reshape = cpu_matmul.reshape_products
    monkeypatch.setattr(cpu_matmul, "reshape_products", lambda graph: seen.append(reshape(graph)))
    td3_compiled_against_eager("mkl", (64, 64))
    assert len(seen) == 1
    assert seen[0].transposed >= 2 and seen[0].summed >= 2 and seen[0].unfused >= 6
