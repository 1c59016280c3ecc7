"""--tensorboard: the run's numbers as TensorBoard scalars, read back with TensorBoard's own reader and compared
with updates.csv and episodes.csv; the config as hparams; one line and exit 2 without the package."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from fastddpg import load_run, train
from fastddpg.cli import main
from tests.test_api import SHORT_RUN, short_config

pytest.importorskip("tensorboard", reason="pip install 'fastddpg[tensorboard]' (CI installs it)")


def test_event_files_hold_what_the_tables_hold(tmp_path):
    from fastddpg.runs.tensorboard import read_scalars

    run = tmp_path / "run"
    train(short_config(run), algo="td3", tensorboard=True)
    data, scalars = load_run(run), read_scalars(run)
    by_tag = {tag: df.sort_values("step") for tag, df in scalars.groupby("tag")}
    ups = data.updates
    for metric in ("critic_loss", "actor_loss", "q_mean", "y_mean", "q1_mean", "q2_mean", "target_min_mean"):
        got = by_tag[f"losses/{metric}"]
        assert got["step"].tolist() == ups["global_step"].tolist(), metric
        np.testing.assert_allclose(got["value"], ups[metric], rtol=1e-6, err_msg=metric)  # float32 in the file
    for rate in ("env_steps_per_sec", "updates_per_sec"):
        np.testing.assert_allclose(by_tag[f"charts/{rate}"]["value"], ups[rate], rtol=1e-6)
    ret = by_tag["charts/episodic_return"]
    assert ret["step"].tolist() == data.episodes["global_step"].tolist()
    np.testing.assert_allclose(ret["value"], data.episodes["return"], rtol=1e-6)
    assert by_tag["charts/episodic_length"]["value"].tolist() == data.episodes["length"].astype(float).tolist()


def test_config_is_written_as_hparams(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    assert main(["run", *SHORT_RUN, "--total-steps", "400", "--tensorboard", "--run-dir", str(run)]) == 0
    (events,) = (run / "tensorboard").glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    assert "_hparams_/experiment" in acc.summary_metadata and "_hparams_/session_start_info" in acc.summary_metadata
    text = acc.Tensors("hyperparameters/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "|batch_size|32|" in text and "|hidden_sizes|16|" in text


def test_without_the_package_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    assert main(["run", *SHORT_RUN, "--tensorboard", "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["fastddpg: error: --tensorboard needs the tensorboard package: pip install "
                   "'fastddpg[tensorboard]'"]
    assert not (tmp_path / "run").exists()


def test_a_resumed_run_purges_what_its_dead_process_wrote_after_the_checkpoint(tmp_path):
    """A run killed at step 600 whose last checkpoint is at 400 resumes from 400, as its CSVs do: TensorBoard's
    loader then shows steps 500 and 600 once, as the resumed process wrote them, not the dead one's too."""
    from types import SimpleNamespace

    from fastddpg import Config
    from fastddpg.runs.tensorboard import TensorBoardWriter, read_scalars

    cfg = Config(hidden_sizes=(16,))
    dead = TensorBoardWriter(tmp_path, cfg)
    dead.at_start(SimpleNamespace(global_step=0))
    for step in (100, 200, 300, 400, 500, 600):
        dead.writer.add_scalar("losses/critic_loss", -step, step)
    dead.writer.flush()  # killed: never closed
    # its file is named for the second it opened, as a process that ran before the resumed one would have it;
    # within one second the names would sort by a per-process counter ("...9" after "...10") instead
    (events,) = tmp_path.joinpath("tensorboard").glob("events.out.tfevents.*")
    stamp = events.name.split(".")[3]
    events.rename(events.with_name(events.name.replace(f".{stamp}.", f".{int(stamp) - 60:010d}.", 1)))
    resumed = TensorBoardWriter(tmp_path, cfg)
    resumed.at_start(SimpleNamespace(global_step=400))
    for step in (500, 600):
        resumed.writer.add_scalar("losses/critic_loss", step, step)
    resumed.at_end(None)
    got = read_scalars(tmp_path).sort_values("step")
    assert got["step"].tolist() == [100, 200, 300, 400, 500, 600]
    assert got["value"].tolist() == [-100, -200, -300, -400, 500, 600]


def test_a_population_writes_its_members_mean_evaluation_in_its_own_run(tmp_path):
    from types import SimpleNamespace

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from fastddpg import Config
    from fastddpg.runs.tensorboard import TensorBoardWriter, read_scalars

    tb = TensorBoardWriter(tmp_path, Config(hidden_sizes=(16,), num_seeds=2))
    tb.at_start(SimpleNamespace(global_step=0))
    results = {0: SimpleNamespace(mean=-300.0, lengths=np.array([200.0])),
               1: SimpleNamespace(mean=-100.0, lengths=np.array([100.0]))}
    tb.on_eval(None, SimpleNamespace(global_step=800, results=results, mean=-200.0, mean_length=150.0))
    tb.at_end(None)
    root = EventAccumulator(str(tmp_path / "tensorboard"))
    root.Reload()
    assert [(e.step, e.value) for e in root.Scalars("eval/mean_reward")] == [(800, -200.0)]
    assert [(e.step, e.value) for e in root.Scalars("eval/mean_ep_length")] == [(800, 150.0)]
    members = read_scalars(tmp_path)
    rewards = members[members["tag"] == "eval/mean_reward"].sort_values("member")
    assert rewards["value"].tolist() == [-300.0, -100.0]
