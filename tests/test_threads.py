"""Runs side by side share the cores: the mechanism a run applies (its torch threads, recorded in config.json and
summary.json; OpenMP's own settings left as the user set them), not its speed (bench/side_by_side.py measures
that)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from fastddpg import Config, ConfigError
from fastddpg.core.threads import AUTO_THREADS, apply_threads, resolve_threads, usable_cores


def test_usable_cores_sees_affinity_and_cgroup_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    quota = tmp_path / "cpu.max"
    assert usable_cores(quota) == 4  # no cgroup file
    quota.write_text("max 100000\n")
    assert usable_cores(quota) == 4
    quota.write_text("150000 100000\n")  # docker --cpus 1.5
    assert usable_cores(quota) == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)  # taskset -c 3
    assert usable_cores(quota) == 1


def test_threads_setting_is_applied_and_validated():
    before = torch.get_num_threads()
    try:
        assert resolve_threads(0) == AUTO_THREADS == 1 and resolve_threads(3) == 3
        assert apply_threads(2) == 2 == torch.get_num_threads()
        assert apply_threads(0) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="--threads"):
        Config(threads=-1)


def _run_cli(tmp_path, env_extra: dict[str, str], *flags: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    env.update(env_extra)
    run = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    code = ("import sys, fastddpg.cli\n"
            "rc = fastddpg.cli.main(sys.argv[1:])\n"
            "import os, torch\n"
            "print(os.environ.get('OMP_WAIT_POLICY'), torch.get_num_threads())\n"
            "sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code, "run", "--total-steps", "40", "--num-envs", "2",
                        "--hidden-sizes", "8", "--batch-size", "8", "--start-steps", "20", "--update-after", "20",
                        "--device", "cpu", "--compile", "off", "--quiet", "--run-dir", str(run), *flags],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    meta = json.loads((run / "config.json").read_text())
    return {"meta": meta["threads"], "summary": json.loads((run / "summary.json").read_text())["threads"],
            "seen": p.stdout.strip().splitlines()[-1].split()}


def test_a_cli_run_uses_one_thread_unless_told_and_leaves_openmp_alone(tmp_path):
    auto = _run_cli(tmp_path, {})
    assert auto["meta"]["torch_threads"] == 1 == auto["summary"] and auto["seen"] == ["None", "1"]
    assert auto["meta"]["OMP_WAIT_POLICY"] is None
    two = _run_cli(tmp_path, {"OMP_WAIT_POLICY": "PASSIVE"}, "--threads", "2")
    assert two["meta"]["torch_threads"] == 2 == two["summary"] and two["seen"] == ["PASSIVE", "2"]
    assert two["meta"]["OMP_WAIT_POLICY"] == "PASSIVE"  # the user's choice, recorded
