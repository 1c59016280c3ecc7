"""Flush-to-zero on the CPU (`fastddpg.training.denormals`): set by the run, reaching every OpenMP thread."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from fastddpg.training.denormals import apply_flush_denormal

SUBNORMAL_BITS = 0x116C2  # the float32 1e-40, a subnormal (0 < x < 1.18e-38), as its bit pattern


def subnormals(n: int) -> torch.Tensor:
    """n float32 subnormals made from their bits: converting a Python float would itself be flushed under the mode."""
    return torch.full((n,), SUBNORMAL_BITS, dtype=torch.int32).view(torch.float32)


def test_the_mode_flushes_subnormals_on_this_thread_and_clears() -> None:
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU has no flush-to-zero mode")
    x = subnormals(1)
    assert x.item() > 0.0
    assert apply_flush_denormal(True) is True
    assert (x * 1.5).item() == 0.0
    assert apply_flush_denormal(False) is False
    assert (x * 1.5).item() > 0.0


@pytest.mark.parametrize("flush", [True, False])
def test_a_trainer_sets_it_for_every_openmp_thread(flush: bool) -> None:
    """A fresh process, as `fastddpg run` is: the Trainer, built with 2 threads, sets the modes before OpenMP starts
    its workers, so a parallel kernel flushes in every thread's share (a worker without the mode leaves its share
    of the subnormal products nonzero)."""
    script = textwrap.dedent(f"""
        import json, torch
        from fastddpg import Config, Trainer
        trainer = Trainer(Config(threads=2, total_steps=200, flush_denormal={flush}, compile="off", quiet=True))
        x = torch.full((1 << 22,), {SUBNORMAL_BITS}, dtype=torch.int32).view(torch.float32)
        nonzero = int(((x * 1.5).view(torch.int32) != 0).sum())
        print(json.dumps({{"nonzero": nonzero, "threads": torch.get_num_threads(),
                           "flag": trainer.summary()["flush_denormal"], "supported": torch.set_flush_denormal(False)}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if not res["supported"]:
        pytest.skip("this CPU has no flush-to-zero mode")
    assert res["threads"] == 2
    assert res["flag"] is flush
    assert res["nonzero"] == (0 if flush else 1 << 22)
