"""The compiled update gives the eager update's numbers, as one graph, compiled once."""

from __future__ import annotations

import copy

import pytest
import torch
import torch._dynamo

from fastddpg import Config, Trainer
from fastddpg.algos import Algorithm
from fastddpg.learning.compile import CudaGraphUpdate, compile_explore, compile_update, resolve_compile_mode
from fastddpg.learning.replay import ReplayBuffer
from tests.conftest import make_learner

CPU = torch.device("cpu")


def filled_buffer() -> ReplayBuffer:
    buf = ReplayBuffer(1000, 3, 1, CPU)
    g = torch.Generator().manual_seed(1)
    buf.add(torch.randn(1000, 3, generator=g), torch.rand(1000, 1, generator=g) * 4 - 2,
            torch.randn(1000, generator=g), torch.randn(1000, 3, generator=g),
            (torch.rand(1000, generator=g) < 0.1).float())
    return buf


def update_fn(learner: Algorithm, buf: ReplayBuffer):
    """The DDPG update ``fn(state, rows)`` (gamma 0.99, tau 0.005, clip 1.0)."""
    return learner.update_fns(buf.as_batch, buf.width)[True]


def all_state(learner: Algorithm) -> dict[str, torch.Tensor]:
    out = {}
    for name, m in learner.modules().items():
        out.update({f"{name}.{k}": v for k, v in m.state_dict().items()})
    for name in ("actor", "critic"):
        st = learner.state["optim"][name]
        name = f"{name}_opt"
        out[f"{name}.step"] = st["step"]
        out.update({f"{name}.m{i}": t for i, t in enumerate(st["exp_avg"])})
        out.update({f"{name}.v{i}": t for i, t in enumerate(st["exp_avg_sq"])})
    return out


def test_deepcopy_keeps_parameter_aliases():
    learner = make_learner(3, 1, (8,), torch.tensor([-2.0]), torch.tensor([2.0]), 1e-3, 1e-3, CPU)
    clone = copy.deepcopy(learner)
    assert clone.state["actor"]["net.0.weight"].data_ptr() == clone.actor.net[0].weight.data_ptr()
    assert clone.state["actor"]["net.0.weight"].data_ptr() != learner.state["actor"]["net.0.weight"].data_ptr()
    assert clone.state["optim"]["actor"]["step"].data_ptr() != learner.state["optim"]["actor"]["step"].data_ptr()


@pytest.mark.parametrize("layer_norm", [False, True])
def test_compiled_equals_eager_after_20_updates(layer_norm):
    torch._dynamo.reset()  # the other parametrization compiled the same code: not a recompile of this one's
    torch.manual_seed(0)
    eager = make_learner(3, 1, (64, 64), torch.tensor([-2.0]), torch.tensor([2.0]), 1e-3, 1e-3, CPU,
                    layer_norm=layer_norm)
    comp = copy.deepcopy(eager)
    buf = filled_buffer()
    rows = buf.sample_rows(20, 128, torch.Generator().manual_seed(2))
    f_eager = update_fn(eager, buf)
    f_comp = compile_update(update_fn(comp, buf), "default", CPU)
    with torch._dynamo.config.patch(error_on_recompile=True):  # one compilation serves every update
        for i in range(20):
            torch.testing.assert_close(f_comp(comp.state, rows[i]), f_eager(eager.state, rows[i]), rtol=1e-5,
                                       atol=1e-6)
    s_eager, s_comp = all_state(eager), all_state(comp)
    assert s_eager.keys() == s_comp.keys()
    for k in s_eager:
        torch.testing.assert_close(s_comp[k], s_eager[k], rtol=1e-5, atol=1e-6, msg=k)
    assert s_comp["actor_opt.step"].item() == 20


def test_update_traces_as_one_graph():
    torch.manual_seed(0)
    learner = make_learner(3, 1, (16,), torch.tensor([-2.0]), torch.tensor([2.0]), 1e-3, 1e-3, CPU)
    buf = filled_buffer()
    explanation = torch._dynamo.explain(update_fn(learner, buf))(learner.state, buf.sample_rows(1, 32)[0])
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


def test_static_buffer_wrapper_matches_direct_calls():
    """The CUDA-graph wrapper's logic (warm-up, static input copy, static output), run without a graph."""
    torch.manual_seed(0)
    a = make_learner(3, 1, (16,), torch.tensor([-2.0]), torch.tensor([2.0]), 1e-3, 1e-3, CPU)
    b = copy.deepcopy(a)
    buf = filled_buffer()
    rows = buf.sample_rows(8, 32, torch.Generator().manual_seed(3))
    direct, wrapped = update_fn(a, buf), CudaGraphUpdate(update_fn(b, buf), warmup=2, capture=False)
    for i in range(8):
        torch.testing.assert_close(wrapped(b.state, rows[i]).clone(), direct(a.state, rows[i]))
    assert wrapped.static_rows is not None and wrapped.calls == 8
    for k, v in all_state(a).items():
        torch.testing.assert_close(all_state(b)[k], v)


def test_auto_compile_mode():
    assert resolve_compile_mode("auto", torch.device("cuda"), 10) == "default"
    assert resolve_compile_mode("auto", CPU, 1_000) == "off"
    assert resolve_compile_mode("auto", CPU, 10**7) == "default"
    assert resolve_compile_mode("max-autotune", CPU, 1) == "max-autotune"


def test_trainer_compiled_matches_eager_returns():
    """Same seed, compile on and off: the same episode returns (the first update compiles, then reuses)."""
    base = dict(num_envs=2, total_steps=800, start_steps=400, update_after=200, hidden_sizes=(32,), device="cpu",
                quiet=True)
    eager = Trainer(Config(**base, compile="off")).train()
    comp = Trainer(Config(**base, compile="default")).train()
    assert comp.summary["compile"] == "default" and comp.summary["compile_seconds"] > 0
    assert comp.summary["updates"] == eager.summary["updates"] == 2 * 301  # vector steps 100..400 update
    torch.testing.assert_close(torch.tensor(comp.episodes["return"].to_numpy()),
                               torch.tensor(eager.episodes["return"].to_numpy()), rtol=1e-4, atol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the CPU tests above cover the same logic)")
def test_cuda_graph_update_no_sync():
    dev = torch.device("cuda")
    learner = make_learner(3, 1, (64, 64), torch.tensor([-2.0]), torch.tensor([2.0]), 1e-3, 1e-3, dev)
    ref = copy.deepcopy(learner)
    buf = ReplayBuffer(1000, 3, 1, dev)
    buf.add(torch.randn(1000, 3, device=dev), torch.rand(1000, 1, device=dev) * 4 - 2, torch.randn(1000, device=dev),
            torch.randn(1000, 3, device=dev), torch.zeros(1000, device=dev))
    fn = compile_update(update_fn(learner, buf), "default", dev)
    eager = update_fn(ref, buf)
    rows = buf.sample_rows(10, 128)
    for i in range(5):  # warm-up and capture
        torch.testing.assert_close(fn(learner.state, rows[i]).clone(), eager(ref.state, rows[i]), rtol=1e-4,
                                   atol=1e-5)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        outs = [fn(learner.state, rows[i]).clone() for i in range(5, 10)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for i, out in zip(range(5, 10), outs, strict=True):
        torch.testing.assert_close(out, eager(ref.state, rows[i]), rtol=1e-4, atol=1e-5)


def test_compiled_acting_equals_eager():
    """The acting step (compiled on CUDA by the trainer) gives eager's actions; run here on the CPU."""
    torch.manual_seed(0)
    learner = make_learner(3, 1, (32, 32), torch.tensor([-2.0]), torch.tensor([2.0]), 1e-3, 1e-3, CPU)
    eager = learner.explore
    comp = compile_explore(learner.explore)
    obs, noise = torch.randn(16, 3), torch.randn(16, 1) * 3  # large noise: the clip must act
    with torch.no_grad():
        want = eager(obs, noise)
        torch.testing.assert_close(comp(obs, noise), want)
    assert (want.abs() == 2.0).any() and want.abs().max() <= 2.0
    torch.testing.assert_close(want, torch.clamp(learner.actor(obs) + noise, -2.0, 2.0))


def test_a_cpu_compile_is_a_cpp_wrapper_built_in_two_files_and_cuda_leaves_the_graph_to_the_update():
    from fastddpg.learning.compile import CPU_CPP_WRAPPER, inductor_options

    cpu = inductor_options("default", torch.device("cpu"), cpu_matmul="mkl")
    assert cpu["cpp_wrapper"] is True and cpu["cpp_cache_precompile_headers"] is False
    import torch._inductor as inductor

    autotune = inductor.list_mode_options("max-autotune")  # whatever this torch's mode sets
    assert autotune["max_autotune"] is True
    cpu_autotune = inductor_options("max-autotune", torch.device("cpu"), cpu_matmul="mkl")
    assert cpu_autotune.pop("post_grad_custom_post_pass").uuid().startswith("fastddpg-products-mkl-")
    assert cpu_autotune == {**autotune, **CPU_CPP_WRAPPER}
    # on CUDA the update captures its own graph: inductor's cudagraphs, which max-autotune turns on, stay off
    assert autotune["triton.cudagraphs"] is True
    assert inductor_options("max-autotune", torch.device("cuda")) == {**autotune, "triton.cudagraphs": False}
    assert inductor_options("default", torch.device("cuda")) == {"triton.cudagraphs": False}


def aten_ops_of(fn) -> set[str]:
    """The aten overloads ``fn()`` dispatches, eagerly."""
    from torch.utils._python_dispatch import TorchDispatchMode

    seen: set[str] = set()

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.add(str(func))
            return func(*args, **(kwargs or {}))

    with Record():
        fn()
    return seen


@pytest.mark.parametrize("members", [0, 3])
def test_the_update_uses_no_op_a_cpu_cpp_wrapper_lacks(members):
    """A CPU compile's C++ wrapper calls each op through a direct C shim; _foreach_norm and _foreach_lerp with tensor
    weights have none (inductor warns and takes a slow generic path), so clipping and a population's soft update avoid
    them."""
    from fastddpg.learning.update import clip_grad_norm_, soft_update_

    rows = max(members, 1)
    grads = [torch.randn(rows, 4, 3), torch.randn(rows, 3)] if members else [torch.randn(4, 3), torch.randn(3)]
    targets = [g.clone() for g in grads]
    tau = torch.full((members,), 0.01) if members else 0.01
    limit = torch.full((members,), 0.5) if members else 0.5
    ops = aten_ops_of(lambda: (clip_grad_norm_(grads, limit, stacked=bool(members)),
                               soft_update_(targets, grads, tau)))
    names = {tuple(op.split(".")[1:]) for op in ops}  # (name, overload): ("_foreach_lerp_", "List"), ...
    assert not {(n, o) for n, o in names if n.rstrip("_") == "_foreach_norm"
                or (n.rstrip("_") == "_foreach_lerp" and o == "List")}, ops
    assert any(n.rstrip("_") in ("lerp", "_foreach_lerp") for n, _ in names)  # the recorder sees the soft update


def test_the_compile_cache_lives_in_the_users_cache_dir_unless_torch_is_told(monkeypatch, tmp_path):
    import os

    from fastddpg.learning.compile_cache import persistent_compile_cache

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert persistent_compile_cache() == str(tmp_path / "xdg" / "fastddpg" / "torchinductor")
    assert (tmp_path / "xdg" / "fastddpg" / "torchinductor").is_dir()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "xdg" / "fastddpg" / "torchinductor")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))  # the user's choice wins
    assert persistent_compile_cache() == str(tmp_path / "mine")
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # no directory can be made there: torch's default stays
    assert persistent_compile_cache() is None and "TORCHINDUCTOR_CACHE_DIR" not in os.environ


def test_a_compiling_trainer_in_a_fresh_process_keeps_its_compiles_in_the_users_cache_dir(tmp_path):
    """End to end, in the order a run takes its steps (the products' check imports inductor, which fixes its cache
    directory, before the update is compiled): a compiled function's graph and C++ library land under the user's
    cache dir, nothing under torch's default in the temp dir."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    env |= {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    code = ("import torch\n"
            "from fastddpg import Config, Trainer\n"
            "from fastddpg.learning.compile import compile_update\n"
            "Trainer(Config(num_envs=1, total_steps=6000, hidden_sizes=(8,), device='cpu', compile='default',"
            " quiet=True))\n"
            "fn = compile_update(lambda state, rows: (rows * state).relu().sum(0), 'default', torch.device('cpu'),"
            " cpu_matmul='mkl')\n"
            "print(fn(torch.ones(3), torch.randn(4, 3)).shape)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    cache = tmp_path / "xdg" / "fastddpg" / "torchinductor"
    assert list(cache.rglob("*.so")) and (cache / "fxgraph").is_dir(), sorted(p.name for p in cache.rglob("*"))
    assert not list((tmp_path / "tmp").glob("torchinductor_*"))


class FakeBuilder:
    """A CppBuilder stand-in: ``build()`` takes 0.3 s and records when it ran; its target exists once built."""

    def __init__(self, path, log):
        self.path, self.log = path, log

    def get_target_file_path(self):
        return str(self.path)

    def build(self):
        import time

        start = time.monotonic()
        time.sleep(0.3)
        self.path.write_text("")
        self.log[self.path.name] = (start, time.monotonic())


def test_the_wrapper_and_the_kernels_compile_side_by_side_then_link(tmp_path):
    from fastddpg.learning.compile import build_cpp_side_by_side, build_wrapper_and_kernels_side_by_side

    log = {}
    main, kernels, link = (FakeBuilder(tmp_path / n, log) for n in ("main.o", "kernels.o", "main.so"))
    build_cpp_side_by_side(str(tmp_path / "lock"), [main, kernels, link])
    (m0, m1), (k0, k1), (l0, _) = log["main.o"], log["kernels.o"], log["main.so"]
    assert max(m0, k0) < min(m1, k1), log  # the two object files at once
    assert l0 >= max(m1, k1), log  # the link after both
    log.clear()
    build_cpp_side_by_side(str(tmp_path / "lock"), [main, kernels, link])  # all on disk: nothing built again
    assert not log
    (tmp_path / "kernels.o").unlink()
    (tmp_path / "main.so").unlink()
    build_cpp_side_by_side(str(tmp_path / "lock"), [main, kernels, link])  # a partial build: the missing ones, in turn
    assert list(log) == ["kernels.o", "main.so"] and log["main.so"][0] >= log["kernels.o"][1]
    # installed over inductor's own, which has this form in the torch the project pins
    import torch._inductor.codecache as codecache

    assert build_wrapper_and_kernels_side_by_side() and codecache._worker_compile_cpp is build_cpp_side_by_side
