"""`fastddpg export`: the exported TorchScript / ONNX policy gives the trained actor's actions (action scaling
included) on random observations within 1e-5, for any batch size, and loads without fastddpg."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fastddpg import load_checkpoint
from fastddpg.cli import main
from fastddpg.runs.evaluate import load_actor
from tests.conftest import trained_copy

# torch 2.13 deprecates TorchScript in favour of torch.export; the issue asks for TorchScript, still loadable
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

TINY_RUN = ["--env", "Pendulum-v1", "--num-envs", "2", "--total-steps", "400", "--start-steps", "200",
            "--update-after", "200", "--batch-size", "32", "--updates-per-step", "0.25", "--hidden-sizes", "16",
            "--device", "cpu", "--compile", "off", "--quiet"]


@pytest.fixture(scope="module", params=["plain", "layer-norm"])
def run(request, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("export") / "run"
    extra = ["--layer-norm"] if request.param == "layer-norm" else []
    return trained_copy([*TINY_RUN, *extra], path)


def observations(batch: int, seed: int = 0) -> torch.Tensor:
    """Random observations, wide enough that tanh saturates for some (so the action bounds matter)."""
    return torch.randn(batch, 3, generator=torch.Generator().manual_seed(seed)) * 5.0


def actor_actions(run: Path, obs: torch.Tensor) -> np.ndarray:
    actor, _ = load_actor(run)
    with torch.no_grad():
        a = actor(obs).numpy()
    assert np.abs(a).max() > 1.0  # Pendulum's bound is 2: the scaling is part of what is compared
    return a


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


def test_torchscript_equals_the_actor(run, capsys):
    assert main(["export", str(run), "--format", "torchscript"]) == 0
    out = run / "actor.ts.pt"
    assert str(out.resolve()) in capsys.readouterr().out
    policy = torch.jit.load(str(out))
    with torch.no_grad():
        np.testing.assert_allclose(policy(observations(64)).numpy(), actor_actions(run, observations(64)),
                                   rtol=0, atol=1e-5)
        one = observations(1, seed=1)
        np.testing.assert_allclose(policy(one).numpy(), load_actor(run)[0](one).numpy(), rtol=0, atol=1e-5)


def test_torchscript_runs_without_fastddpg(run, tmp_path):
    """A fresh interpreter, run from elsewhere, with fastddpg made unimportable: plain torch loads and acts."""
    out = tmp_path / "policy.pt"
    assert main(["export", str(run), "--out", str(out)]) == 0
    obs = observations(16, seed=3)
    code = ("import sys, json; sys.modules['fastddpg'] = None\n"
            "import torch\n"
            "try:\n    import fastddpg\nexcept ImportError:\n    pass\n"
            "else:\n    raise SystemExit('fastddpg imported')\n"
            f"p = torch.jit.load({str(out)!r})\n"
            f"obs = torch.tensor({obs.tolist()!r})\n"
            "print(json.dumps(p(obs).tolist()))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    np.testing.assert_allclose(np.array(json.loads(p.stdout)), actor_actions(run, obs), rtol=0, atol=1e-5)


def test_onnx_equals_the_actor(run, capsys):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'fastddpg[export]')")
    pytest.importorskip("onnxscript", reason="onnxscript not installed (pip install 'fastddpg[export]')")
    assert main(["export", str(run), "--format", "onnx"]) == 0
    out = run / "actor.onnx"
    assert str(out.resolve()) in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (inp,), (outp,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, outp.name) == ("obs", "action")
    assert isinstance(inp.shape[0], str) and inp.shape[1] == 3  # batch axis dynamic
    for batch in (1, 7, 256):
        obs = observations(batch, seed=batch)
        (got,) = session.run(None, {"obs": obs.numpy()})
        with torch.no_grad():
            want = load_actor(run)[0](obs).numpy()
        assert got.shape == (batch, 1)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(session.run(None, {"obs": observations(64).numpy()})[0],
                               actor_actions(run, observations(64)), rtol=0, atol=1e-5)


def test_unfinished_run_exports_its_latest_checkpoint(run, tmp_path):
    copy = tmp_path / "unfinished"
    shutil.copytree(run, copy)
    (copy / "actor.pt").unlink()
    assert main(["export", str(copy)]) == 0
    obs = observations(32)
    with torch.no_grad():
        want = load_checkpoint(copy)["actor"](obs).numpy()
        got = torch.jit.load(str(copy / "actor.ts.pt"))(obs).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_bad_export_input_one_line_exit_2(run, tmp_path, capsys, monkeypatch):
    cases = [
        (["export", str(run), "--format", "tflite"], "--format='tflite' is invalid"),
        (["export", str(run), "--member", "1"], "--member=1 is invalid"),
        (["export", str(run), "--out", str(tmp_path / "no" / "dir.pt")], "does not exist"),
        (["export", str(run), "--out", str(tmp_path)], "is a directory"),
        (["export", str(tmp_path)], "not a fastddpg run directory"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2
        line = one_error_line(capsys)
        assert line.startswith("fastddpg: error:") and needle in line, line
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if the export extra were not installed
    assert main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "a.onnx")]) == 2
    assert "pip install 'fastddpg[export]'" in one_error_line(capsys)
    assert not (tmp_path / "a.onnx").exists()


def test_export_never_overwrites_the_runs_own_files(run, tmp_path, capsys):
    """--out naming actor.pt or config.json would leave a run that can no longer be evaluated, exported or
    resumed: refused, with the file untouched; export's own default file may be written again."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    for name in ("actor.pt", "config.json", "episodes.csv"):
        before = (copy / name).read_bytes()
        assert main(["export", str(copy), "--out", str(copy / name)]) == 2
        assert "is one of the run's own files; export to a new name, such as" in one_error_line(capsys)
        assert (copy / name).read_bytes() == before
    for _ in range(2):
        assert main(["export", str(copy)]) == 0
    assert (copy / "actor.ts.pt").is_file()


def test_a_damaged_actor_file_is_one_line_for_export_and_eval(run, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "actor.pt").write_bytes((copy / "actor.pt").read_bytes()[:500])  # cut short
    for command in (["export", str(copy)], ["eval", str(copy), "--episodes", "1"]):
        assert main(command) == 2
        line = one_error_line(capsys)
        assert f"{copy / 'actor.pt'} is not this run's actor" in line, line
    torch.save({"net.0.weight": torch.zeros(3, 3)}, copy / "actor.pt")  # another network's weights
    assert main(["export", str(copy)]) == 2
    assert "is not this run's actor" in one_error_line(capsys)


def test_export_of_a_missing_run_directory_says_so(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope")]) == 2
    line = one_error_line(capsys)
    assert "not a fastddpg run directory" in line and "--out" not in line, line
