"""Nothing changed: fixed-seed runs (DDPG, TD3, DDPG with OU noise and LayerNorm; eager and compiled) give the
numbers recorded in tests/data/regression.json before the code was reorganised, to the last bit.

Bit for bit holds because the refactor kept the order of every floating-point operation. A deliberate change of
the numbers (a new equation, a different op order) re-records the file with `python tests/regression_runs.py
--write` and says why in its commit."""

from __future__ import annotations

import json

import pytest
import torch

from tests.regression_runs import DATA, RUNS, record


@pytest.fixture(scope="module")
def recorded():
    return json.loads(DATA.read_text())


@pytest.mark.parametrize("name", list(RUNS))
def test_fixed_seed_run_is_unchanged(name, recorded):
    threads = torch.get_num_threads()
    try:
        now = record(name)
    finally:
        torch.set_num_threads(threads)
    want = recorded[name]
    for key in ("updates", "returns", "metrics", "params"):  # as JSON text: exact floats, and NaN equals NaN
        assert json.dumps(now[key], sort_keys=True) == json.dumps(want[key], sort_keys=True), key
