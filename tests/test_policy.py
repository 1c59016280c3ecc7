"""`fastddpg.load_policy(RUN_DIR, which, member, device).predict(obs)`: numpy in -> float32 numpy out, torch in ->
torch out, one observation or a batch, actions inside the env's bounds, equal to the exported TorchScript and ONNX
actions; one-line errors for what it cannot load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fastddpg import ConfigError, load_policy
from fastddpg.cli import main
from fastddpg.runs.evaluate import load_actor
from fastddpg.runs.export import export_policy
from tests.conftest import trained_copy
from tests.test_export import TINY_RUN, observations

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "run"
    assert main(["run", *TINY_RUN, "--run-dir", str(path), "--eval-every", "200", "--eval-episodes", "1"]) == 0
    return path


def test_predict_shapes_types_and_bounds(run):
    policy = load_policy(run)
    assert (policy.obs_dim, policy.act_dim, policy.which, policy.member) == (3, 1, "final", 0)
    obs = observations(32).numpy() * 100.0  # far outside what Pendulum gives: tanh saturates
    batch = policy.predict(obs)
    assert isinstance(batch, np.ndarray) and batch.dtype == np.float32 and batch.shape == (32, 1)
    assert (np.abs(batch) <= 2.0).all() and np.abs(batch).max() > 1.9  # Pendulum's bounds, reached
    one = policy.predict(obs[3])
    assert isinstance(one, np.ndarray) and one.dtype == np.float32 and one.shape == (1,)
    np.testing.assert_allclose(one, batch[3], rtol=0, atol=1e-6)
    as_list = policy.predict(obs[3].astype(np.float64).tolist())  # anything np.asarray takes
    assert as_list.dtype == np.float32 and as_list.shape == (1,)
    t = policy.predict(torch.as_tensor(obs))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.shape == (32, 1)
    assert t.device == torch.device("cpu")
    np.testing.assert_allclose(t.numpy(), batch, rtol=0, atol=1e-6)
    t1 = policy(torch.as_tensor(obs[3], dtype=torch.float64))
    assert isinstance(t1, torch.Tensor) and t1.shape == (1,)
    with torch.no_grad():
        np.testing.assert_allclose(batch, load_actor(run)[0](torch.as_tensor(obs)).numpy(), rtol=0, atol=1e-6)
    for bad in (np.zeros(4), np.zeros((2, 2)), np.zeros((1, 2, 3))):
        with pytest.raises(ValueError, match="one observation"):
            policy.predict(bad)


def test_predict_equals_the_exported_torchscript_and_onnx(run, tmp_path):
    for which in ("final", "best"):
        policy = load_policy(run, which=which)
        obs = observations(64, seed=5)
        want = policy.predict(obs.numpy())
        ts = export_policy(policy.actor, "torchscript", tmp_path / f"{which}.ts.pt")
        with torch.no_grad():
            np.testing.assert_allclose(torch.jit.load(str(ts))(obs).numpy(), want, rtol=0, atol=1e-5)
        ort = pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
        onnx = export_policy(policy.actor, "onnx", tmp_path / f"{which}.onnx")
        session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(session.run(None, {"obs": obs.numpy()})[0], want, rtol=0, atol=1e-5)


def test_best_and_final_are_their_files(run):
    obs = observations(8)
    for which, name in (("final", "actor.pt"), ("best", "best_actor.pt")):
        saved = torch.load(run / name, weights_only=True)
        policy = load_policy(run, which=which)
        torch.testing.assert_close(policy.actor.state_dict()["net.0.weight"], saved["net.0.weight"], rtol=0, atol=0)
        assert policy.which == which
        assert policy.predict(obs).shape == (8, 1)


def test_load_policy_errors_are_one_line(run, tmp_path):
    with pytest.raises(ConfigError, match="--which='last' is invalid"):
        load_policy(run, which="last")
    with pytest.raises(ConfigError, match="--member=1 is invalid"):
        load_policy(run, member=1)
    with pytest.raises(ConfigError, match="not a fastddpg run directory"):
        load_policy(tmp_path)
    plain = tmp_path / "plain"
    trained_copy(TINY_RUN, plain)
    with pytest.raises(ConfigError, match=r"has no best_actor\.pt.*--eval-every N"):
        load_policy(plain, which="best")
