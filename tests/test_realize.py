"""`realized`: a compiled CPU graph computes the value once, outside the vector loops that read it; eager is the
identity; the numbers are the same."""

from __future__ import annotations

import torch
import torch._dynamo
from torch._inductor.utils import run_and_get_code

from fastddpg.learning.realize import realized, register_lowering


def scale_realized(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return x * realized(torch.sqrt(s))


def scale_inline(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return x * torch.sqrt(s)


def compiled_loop(fn) -> tuple[torch.Tensor, torch.Tensor, str, str]:
    """Input, compiled ``fn``'s result on it, the generated code, and the C++ of its loop over the 4096-vector."""
    torch._dynamo.reset()
    register_lowering()
    x, s = torch.randn(4096), torch.tensor(2.0)
    with torch._inductor.config.patch(force_disable_caches=True):
        out, code = run_and_get_code(torch.compile(fn, fullgraph=True), x, s)
    src = "\n".join(code)
    start = src.index("x0<static_cast<int64_t>(4096L)")
    return x, out, src, src[start:src.index("store(", start)]


def test_eager_is_the_identity() -> None:
    x = torch.randn(3)
    assert realized(x) is x


def test_a_realized_scalar_is_computed_once_outside_the_loop_with_the_same_numbers() -> None:
    x, out, src, body = compiled_loop(scale_realized)
    assert "sqrt" not in body, body
    assert "realized" not in src  # lowered into a buffer, not called as an op
    torch.testing.assert_close(out, x * torch.sqrt(torch.tensor(2.0)))
    _, _, _, inline_body = compiled_loop(scale_inline)
    assert "sqrt" in inline_body  # what the op is for: inlined, the scalar is recomputed for every vector
