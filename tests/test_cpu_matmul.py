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
def test_onednn_options_carry_the_pass_and_mkl_none():
    on = inductor_options("default", CPU, cpu_matmul="onednn")
    off = inductor_options("default", CPU, cpu_matmul="mkl")
    assert on.pop("post_grad_custom_post_pass").uuid().startswith("fastddpg-onednn-matmul-")
    assert on == off and "post_grad_custom_post_pass" not in off
    assert "post_grad_custom_post_pass" not in inductor_options("default", torch.device("cuda"), cpu_matmul="onednn")


@needs_onednn
def test_compiled_update_with_onednn_products_equals_eager(monkeypatch):
    """TD3 (an actor's addmm, the twin critics' baddbmm, their gradients' mm and bmm) at sizes the pass takes: the
    compiled update, through oneDNN, gives eager's (MKL's) numbers within test_compile's tolerances."""
    torch._dynamo.reset()
    seen = []
    monkeypatch.setattr(cpu_matmul, "replace_products", lambda graph: seen.append(replace_products(graph)))
    torch.manual_seed(0)
    eager = make_learner(3, 1, (128, 128), torch.tensor([-2.0]), torch.tensor([2.0]), 1e-3, 1e-3, CPU,
                         num_critics=2, policy_delay=1)
    comp = copy.deepcopy(eager)
    buf = filled_buffer()
    g = torch.Generator().manual_seed(2)
    rows = buf.sample_rows(10, 64, g)
    rows = torch.cat([rows, torch.randn(*rows.shape[:-1], eager.eps_dim, generator=g)], dim=-1)  # TD3's smoothing
    f_eager = eager.update_fns(buf.as_batch, buf.width)[True]
    with torch._inductor.config.patch(force_disable_caches=True):  # so the pass runs, not a cached graph
        f_comp = compile_update(comp.update_fns(buf.as_batch, buf.width)[True], "default", CPU, cpu_matmul="onednn")
        for i in range(10):
            torch.testing.assert_close(f_comp(comp.state, rows[i]), f_eager(eager.state, rows[i]), rtol=1e-5,
                                       atol=1e-6)
    assert seen and seen[0] >= 10  # the 128x128 layers' products, forward and backward
    s_eager, s_comp = all_state(eager), all_state(comp)
    for k in s_eager:
        torch.testing.assert_close(s_comp[k], s_eager[k], rtol=1e-5, atol=1e-6, msg=k)
