"""`fastddpg sweep` input handling, without running a trial: the grid and sample syntax, each field's own
validation, PBT's rules, an unreachable cluster, the shared-storage check, and Ray missing. Every bad input is
one line and exit 2, before anything is written."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pytest

from fastddpg import Config, ConfigError
from fastddpg.cli import main
from fastddpg.tools.sweeps import (
    PBT_MUTABLE,
    SWEEP_FILE,
    check_shared_storage,
    clamp_mutation,
    make_spec,
    parse_grid,
    parse_sample,
    read_space,
    read_spec,
    trial_config,
)
from tests.conftest import stop_at

ROOT = Path(__file__).resolve().parent.parent

ray_installed = pytest.mark.skipif(subprocess.run([sys.executable, "-c", "import ray.tune"], capture_output=True)
                                   .returncode != 0, reason="Ray Tune is not installed (pip install -e '.[sweep]')")


def test_grid_syntax_and_types():
    base = Config()
    g = parse_grid(["seed=0..3", "actor_lr=1e-3,3e-4", "hidden_sizes=64x64,32", "layer_norm=true,false"], base)
    assert g == {"seed": [0, 1, 2, 3], "actor_lr": [1e-3, 3e-4], "hidden_sizes": [(64, 64), (32,)],
                 "layer_norm": [True, False]}
    assert parse_grid(["batch-size=64"], base) == {"batch_size": [64]}


def test_sample_syntax():
    s = parse_sample(["actor_lr=loguniform:1e-4:1e-2", "tau=uniform:0.001:0.01", "noise=choice:gaussian,ou"],
                     Config())
    assert s == {"actor_lr": ["loguniform", 1e-4, 1e-2], "tau": ["uniform", 0.001, 0.01],
                 "noise": ["choice", "gaussian", "ou"]}


@pytest.mark.parametrize("items, words", [
    (["nosuch=1,2"], "--grid nosuch is invalid: not a field"),
    (["run_dir=a,b"], "run_dir: not a field"),
    (["gamma=0.9,1.5"], "--gamma=1.5 is invalid"),
    (["batch_size=0"], "--batch-size=0 is invalid"),
    (["seed"], "NAME=V1,V2"),
    (["actor_lr=fast"], "'fast' is not a number"),
])
def test_bad_grid_is_one_line(items, words):
    with pytest.raises(ConfigError, match=words.replace("[", r"\[")) as e:
        parse_grid(items, Config())
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("items, words", [
    (["actor_lr=normal:0:1"], "loguniform:LO:HI"),
    (["actor_lr=loguniform:0:1"], "LO > 0"),
    (["actor_lr=uniform:1:0.1"], "LO < HI"),
    (["env=uniform:1:2"], "numeric field"),
    (["tau=uniform:0.5:2"], "--tau=2.0 is invalid"),
])
def test_bad_sample_is_one_line(items, words):
    with pytest.raises(ConfigError, match=words):
        parse_sample(items, Config())


def test_pbt_rules(tmp_path):
    with pytest.raises(ConfigError, match="--scheduler pbt needs --mutate"):
        make_spec(Config(), tmp_path / "s", scheduler="pbt")
    with pytest.raises(ConfigError, match="--mutate hidden_sizes: PBT can change only"):
        make_spec(Config(), tmp_path / "s", scheduler="pbt", mutate=["hidden_sizes"])
    with pytest.raises(ConfigError, match="--mutate is for --scheduler pbt"):
        make_spec(Config(), tmp_path / "s", mutate=["actor_lr"])
    spec = make_spec(Config(total_steps=10_000, log_every=1_000, num_envs=4), tmp_path / "s", scheduler="pbt",
                     mutate=["actor_lr"], pbt_interval=1_500)
    assert spec.interval() == 2_000  # rounded up to whole reports
    cfg = trial_config(spec, {"actor_lr": 3e-4}, tmp_path / "s" / "trials" / "t0")
    assert cfg.actor_lr == 3e-4 and cfg.checkpoint_every == 2_000 and cfg.quiet and cfg.threads == 1
    assert set(PBT_MUTABLE) <= {f for f in Config().to_dict()}


def test_pbt_perturbations_stay_valid():
    out = clamp_mutation({"gamma": 1.188, "tau": 0.0, "batch_size": 153.6, "actor_lr": 1.2e-3})
    assert out == {"gamma": 1.0, "tau": 1e-6, "batch_size": 154, "actor_lr": 1.2e-3}
    Config(gamma=out["gamma"], tau=out["tau"], batch_size=out["batch_size"])


def test_an_existing_sweep_is_not_overwritten(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / SWEEP_FILE).write_text("{}")
    with pytest.raises(ConfigError, match="--resume"):
        make_spec(Config(), tmp_path / "s")
    # another sweep of the same --out name in the same --storage: its trials would be read as this one's
    (tmp_path / "shared" / "s2" / "trials").mkdir(parents=True)
    with pytest.raises(ConfigError, match="already holds another sweep's trials/"):
        make_spec(Config(), tmp_path / "elsewhere" / "s2", storage=str(tmp_path / "shared"))


def test_storage_must_be_seen_by_every_node(tmp_path):
    nodes = [{"NodeID": "a", "NodeManagerAddress": "10.0.0.1", "Alive": True},
             {"NodeID": "b", "NodeManagerAddress": "10.0.0.2", "Alive": True}]
    check_shared_storage(tmp_path / "ok", nodes, lambda n, p: Path(p).exists(), given=True)
    check_shared_storage(tmp_path / "one", nodes[:1], lambda n, p: False, given=True)  # one node: nothing to share
    blind = r"--storage .* is not shared storage: .* 10\.0\.0\.2 \(node b\) cannot see it"  # nodes may share an address
    with pytest.raises(ConfigError, match=blind):
        check_shared_storage(tmp_path / "local", nodes, lambda n, p: n["NodeID"] == "a" and Path(p).exists(),
                             given=True)
    assert not any(p.name.startswith(".shared-check") for p in (tmp_path / "local").iterdir())


def _cli(args, capsys):
    code = main(["sweep", *args])
    err = capsys.readouterr().err.strip()
    return code, err


@ray_installed
@pytest.mark.parametrize("args, words", [
    (["--grid", "nosuch=1,2"], "--grid nosuch is invalid: not a field"),
    (["--grid", "gamma=0.5,2"], "--gamma=2.0 is invalid"),
    (["--scheduler", "pbt"], "--scheduler pbt needs --mutate"),
    (["--address", "127.0.0.1:9"], "--address 127.0.0.1:9: no Ray cluster answers there"),
    (["--scheduler", "fifo"], "--scheduler fifo: choose one of none, asha, pbt"),
    (["--max-failures", "-1"], "--max-failures -1: give 0"),
    (["--search", "hyperopt", "--sample", "tau=uniform:0.001:0.01"], "--search hyperopt: choose one of random, optuna"),
    (["--search", "optuna"], "--search optuna needs something to sample"),
    (["--search", "optuna", "--grid", "seed=0,1"], "--search optuna with --grid seed: Optuna proposes every value"),
    (["--search", "optuna", "--sample", "actor_lr=normal:0:1"], "--sample 'actor_lr=normal:0:1': write NAME="),
    (["--search", "optuna", "--sample", "actor_lr=loguniform:1e-4:1e-2", "--scheduler", "pbt", "--mutate",
      "actor_lr"], "--search optuna cannot run with --scheduler pbt: PBT changes a trial's hyperparameters"),
    (["--space", "nosuch.toml"], "--space nosuch.toml: cannot read it"),
    # each value fine on its own, not together: refused before any trial, not retried in each
    (["--grid", "batch_size=32,300", "replay_size=256,1000"], "--grid point batch_size=300, replay_size=256"),
    (["--grid", "env=Foo-v9,Pendulum-v1"], "cannot make environment 'Foo-v9'"),
    (["--sample", "env=choice:Pendulum-v1,Foo-v9"], "cannot make environment 'Foo-v9'"),
    # more than this machine's own Ray has: Tune would wait for it forever
    (["--cpus-per-trial", "64"], "--cpus-per-trial 64: this machine has"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, words):
    out = tmp_path / "sweep"
    code, err = _cli([*args, "--out", str(out), "--total-steps", "400"], capsys)
    assert code == 2, err
    assert err.startswith("fastddpg: error: ") and words in err and "\n" not in err
    assert not (out / SWEEP_FILE).exists()  # refused before any trial (or Ray) started


@ray_installed
def test_cli_resume_takes_no_new_definition(tmp_path, capsys):
    code, err = _cli(["--resume", str(tmp_path), "--grid", "seed=1,2"], capsys)
    assert code == 2 and "--resume takes no --grid" in err
    code, err = _cli(["--resume", str(tmp_path), "--search", "optuna"], capsys)  # the search is the sweep's own
    assert code == 2 and "--resume takes no --search" in err and "\n" not in err
    code, err = _cli(["--resume", str(tmp_path), "--max-failures", "5"], capsys)
    assert code == 2 and "--resume takes no --max-failures" in err


def test_max_failures_and_search_are_saved_and_default(tmp_path):
    spec = make_spec(Config(), tmp_path / "s")
    assert spec.max_failures == 2 and spec.search == "random"
    spec = make_spec(Config(), tmp_path / "s", sample=parse_sample(["tau=uniform:0.001:0.01"], Config()),
                     search="optuna", max_failures=0, num_samples=3)
    from fastddpg.tools.sweeps.spec import _write_spec

    _write_spec(spec, "test")
    back = read_spec(tmp_path / "s")
    assert (back.search, back.max_failures, back.num_samples) == ("optuna", 0, 3)
    (tmp_path / "old").mkdir()  # a sweep.json written before these fields existed reads with their defaults
    (tmp_path / "old" / SWEEP_FILE).write_text('{"spec": {"out": "x", "base": {}}}')
    assert (read_spec(tmp_path / "old").search, read_spec(tmp_path / "old").max_failures) == ("random", 2)


def test_the_zoo_space_file_reads_and_its_values_are_valid():
    grid, sample = read_space(ROOT / "configs" / "sweeps" / "pendulum_zoo.toml", Config())
    assert grid == {}
    assert sample["actor_lr"] == ["loguniform", 1e-5, 0.002] and sample["tau"] == ["loguniform", 0.001, 0.08]
    assert sample["batch_size"] == ["choice", *(2 ** p for p in range(2, 12))]
    assert sample["hidden_sizes"] == ["choice", (64, 64), (256, 256), (400, 300)]
    assert set(sample) == {"actor_lr", "critic_lr", "gamma", "batch_size", "tau", "noise", "noise_sigma",
                           "hidden_sizes"}


@pytest.mark.parametrize("text, words", [
    ('[sample]\nactor_lr = "normal:0:1"\n', "--sample 'actor_lr=normal:0:1': write NAME=loguniform"),
    ('[base]\nseed = 1\n', "--space .* give only \\[sample\\] and \\[grid\\] tables \\(found base\\)"),
    ('[grid]\nseed = [0, 1]\nnosuch = [1]\n', "--grid nosuch is invalid: not a field"),
    ("[sample\n", "is not valid TOML"),
])
def test_bad_space_file_is_one_line(tmp_path, text, words):
    path = tmp_path / "space.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words) as e:
        read_space(path, Config())
    assert "\n" not in str(e.value)


@ray_installed
def test_cli_space_file_and_flags_combine(tmp_path, capsys, monkeypatch):
    """--space gives the fields, a --grid or --sample flag replaces the file's entry for its field."""
    from fastddpg.tools import sweeps

    seen = {}

    def run_sweep(spec, **kw):  # the spec the command built; no Ray
        seen["spec"] = spec
        raise ConfigError("stop here")

    monkeypatch.setattr(sweeps, "run_sweep", run_sweep)
    space = tmp_path / "space.toml"
    space.write_text('[sample]\ntau = "uniform:0.001:0.01"\nactor_lr = "loguniform:1e-4:1e-2"\n[grid]\nseed = [0, 1]\n')
    code, err = _cli(["--space", str(space), "--grid", "tau=0.005", "--sample", "seed=choice:3,4", "--out",
                      str(tmp_path / "s")], capsys)
    assert code == 2 and "stop here" in err
    spec = seen["spec"]
    assert spec.grid == {"tau": [0.005]} and spec.sample == {"actor_lr": ["loguniform", 1e-4, 1e-2],
                                                            "seed": ["choice", 3, 4]}


# One --grid parser (`fastddpg.core.config.parse_grid`) serves `run --grid` (a population's members) and `sweep --grid`
# (trials): over the fields both may vary, the two commands accept the same strings and refuse the same ones with
# the same line. Only a NAME that no field has gets each command's own list of what to give instead.
SAME_GRID = [
    (["tau=0.01,0.02"], None), (["actor-lr=1e-3, 3e-4"], None), (["noise_sigma=0.1", "tau=0.005"], None),
    (["tau"], "write NAME=V1,V2"), (["tau="], "write NAME=V1,V2"), (["=0.1"], "write NAME=V1,V2"),
    (["tau=0.1,,0.2"], "write NAME=V1,V2"), (["tau=0.1,"], "write NAME=V1,V2"),
    (["tau=0.1,big"], "'big' is not a number"), (["tau=1..2"], "'1..2' is not a number"),
    (["tau=0.1,2"], "--grid: --tau=2.0 is invalid"), (["gamma=0.5,1.5"], "--grid: --gamma=1.5 is invalid"),
    (["tau=0.1", "tau=0.2"], "--grid tau is given twice"), (["lr=1,2"], "--grid lr is invalid: not a field;"),
]


@ray_installed
@pytest.mark.parametrize("entries, refused", SAME_GRID)
def test_run_and_sweep_accept_and_refuse_the_same_grid_strings(tmp_path, capsys, monkeypatch, entries, refused):
    from fastddpg.tools import sweeps

    def run_sweep(spec, **kw):  # accepted: the sweep's spec was built; no Ray
        raise ConfigError("accepted")

    monkeypatch.setattr(sweeps, "run_sweep", run_sweep)
    grid = [a for e in entries for a in ("--grid", e)]
    run_code = main(["run", *grid, "--total-steps", "100", "--dry-run"])
    run_err = capsys.readouterr().err.strip()
    sweep_code, sweep_err = _cli([*grid, "--total-steps", "100", "--out", str(tmp_path / "s")], capsys)
    if refused is None:
        assert run_code == 0 and run_err == "", run_err
        assert sweep_code == 2 and sweep_err == "fastddpg: error: accepted", sweep_err
        return
    assert run_code == sweep_code == 2
    for err in (run_err, sweep_err):
        assert err.startswith("fastddpg: error: ") and refused in err and "\n" not in err, err
    same = (run_err, sweep_err) if "not a field" not in refused else (run_err.split(";")[0], sweep_err.split(";")[0])
    assert same[0] == same[1]


def test_without_ray_the_command_says_how_to_install_it(tmp_path):
    code = ("import sys; sys.modules['ray'] = None; from fastddpg.cli import main; "
            f"sys.exit(main(['sweep', '--grid', 'seed=0,1', '--out', {str(tmp_path / 's')!r}]))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'fastddpg[sweep]'" in lines[0]


class _TuneCheckpoint:
    """What `tune.get_checkpoint()` gives a retried trial: a directory with a fastddpg checkpoint and its source."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def as_directory(self):
        import contextlib

        return contextlib.nullcontext(str(self.directory))


def test_a_retried_trial_continues_its_own_run_directory(tmp_path, monkeypatch):
    """Tune restarts a failed trial with no checkpoint, with its own last PBT checkpoint, or, after an exploit,
    with the checkpoint it cloned: each continues the trial's run directory from its latest fastddpg checkpoint
    (`open_resume`); a checkpoint of another trial not yet cloned is an exploit; a trial that failed before its
    first checkpoint starts again from scratch."""
    import json
    import shutil
    import signal

    from fastddpg import TrainingInterrupted, train
    from fastddpg.api import open_run
    from fastddpg.runs.checkpoint import latest_checkpoint
    from fastddpg.tools.sweeps import SOURCE_FILE, open_trial

    tiny = dict(env="Pendulum-v1", num_envs=2, log_every=200, hidden_sizes=(16,), batch_size=32, start_steps=200,
                update_after=200, updates_per_step=0.25, probe_n=8, device="cpu", compile="off", eval_every=400,
                eval_episodes=1)
    spec = make_spec(Config(**tiny, total_steps=800), tmp_path / "s", scheduler="pbt", mutate=["actor_lr"],
                     pbt_interval=400)
    run_dir = spec.root / "trials" / "t0"
    cfg = trial_config(spec, {}, run_dir)
    stop_at(monkeypatch, 400, lambda: signal.raise_signal(signal.SIGINT))  # a trial stopped at its checkpoint 400
    with pytest.raises(TrainingInterrupted):
        train(cfg)
    monkeypatch.undo()
    latest = latest_checkpoint(run_dir)

    def tune_checkpoint(trial: str) -> _TuneCheckpoint:
        d = tmp_path / f"tune-{trial}"
        d.mkdir(exist_ok=True)
        shutil.copy2(latest, d / latest.name)
        (d / SOURCE_FILE).write_text(json.dumps({"trial_id": trial, "file": latest.name, "global_step": 400}))
        return _TuneCheckpoint(d)

    def event(checkpoint) -> str:
        trainer, _, what = open_trial(spec, cfg, run_dir, "t0", checkpoint)
        trainer.env.close()
        # a resume and an exploit alike keep --eval-every's evaluator (and --tensorboard's writer) on the trainer
        assert trainer.checkpointer is not None
        assert any(type(cb).__name__ == "PeriodicEvaluator" for cb in trainer.callbacks), what
        return what

    assert event(None) == "resume@400"
    assert event(tune_checkpoint("t0")) == "resume@400"
    meta = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**meta, "exploits": [{"from_trial": "t1", "global_step": 400}]}))
    assert event(tune_checkpoint("t1")) == "resume@400"  # t1's checkpoint, cloned already: not cloned again
    assert event(tune_checkpoint("t2")) == "exploit t2@400"
    assert [e["from_trial"] for e in json.loads((run_dir / "config.json").read_text())["exploits"]] == ["t1", "t2"]

    fresh = spec.root / "trials" / "t3"  # failed before its first checkpoint: starts again from scratch
    trainer, _ = open_run(trial_config(spec, {}, fresh))
    trainer.env.close()
    (fresh / "episodes.csv").write_text("episode,env,global_step,return,length,wall_time\n1,0,200,-1.0,200,0.1\n")
    trainer, _, what = open_trial(spec, trial_config(spec, {}, fresh), fresh, "t3", None)
    trainer.env.close()
    assert what == "" and trainer.global_step == 0 and "1,0,200" not in (fresh / "episodes.csv").read_text()


@ray_installed
def test_a_retry_is_one_progress_line(capsys):
    from types import SimpleNamespace

    from fastddpg.tools.sweeps import SweepProgress, tune_callback

    progress = SweepProgress("return_10", ["seed"])
    callback = tune_callback(progress)
    callback.on_trial_start(0, [], SimpleNamespace(trial_id="t1", config={"seed": 1}))
    callback.on_trial_recover(0, [], SimpleNamespace(trial_id="t1", config={"seed": 1}, num_failures=1))
    assert capsys.readouterr().out.splitlines() == [
        "sweep: 1 running, 0 finished, 0 failed",
        "sweep: trial t1 failed (1 so far); retrying it from its last checkpoint"]
    assert progress.status == {"t1": "running"}


def test_a_reused_worker_keeps_its_compiled_graphs_only_for_the_same_threads(monkeypatch):
    """`trial.keep_or_reset_graphs` before each trial in a worker: dynamo's graphs stay while the thread count is
    the one they were compiled for and few graphs have piled up; another thread count, auto threads, or graphs
    nearing dynamo's recompile limit reset them."""
    import torch
    from torch._dynamo.utils import counters

    from fastddpg.tools.sweeps import trial

    resets = []
    monkeypatch.setattr(torch._dynamo, "reset", lambda: resets.append(1))
    monkeypatch.setattr(trial, "_graphs", {"threads": 1, "graphs": counters["stats"]["unique_graphs"]})
    monkeypatch.setitem(counters["stats"], "unique_graphs", counters["stats"]["unique_graphs"])
    assert trial.keep_or_reset_graphs(Config(threads=1)) and not resets
    assert not trial.keep_or_reset_graphs(Config(threads=2)) and len(resets) == 1
    assert trial.keep_or_reset_graphs(Config(threads=2)) and len(resets) == 1
    counters["stats"]["unique_graphs"] += torch._dynamo.config.recompile_limit // 2
    assert trial.keep_or_reset_graphs(Config(threads=2)) and len(resets) == 1  # up to half the limit: kept
    counters["stats"]["unique_graphs"] += 1
    assert not trial.keep_or_reset_graphs(Config(threads=2)) and len(resets) == 2
    assert trial.keep_or_reset_graphs(Config(threads=2)) and len(resets) == 2  # counted from the reset
    assert not trial.keep_or_reset_graphs(Config(threads=0)) and len(resets) == 3  # auto: the count may change
    assert not trial.keep_or_reset_graphs(Config(threads=0)) and len(resets) == 4


def test_the_trials_table_has_every_trial_and_a_swept_env_keeps_its_own_column(tmp_path):
    """A trial that never made its run directory (it failed as it started) still has its row, with its status,
    error line and swept values, also when the sweep is read back; a swept ``env`` goes into the history as
    ``swept_env`` beside the episodes' own ``env`` (the env index), where it used to end the sweep in a ValueError."""
    from fastddpg import train
    from fastddpg.tools.sweeps import finish_sweep, load_sweep
    from fastddpg.tools.sweeps.driver import _write_spec

    tiny = dict(num_envs=2, log_every=200, hidden_sizes=(16,), batch_size=32, start_steps=200, update_after=200,
                updates_per_step=0.25, probe_n=8, device="cpu", compile="auto", total_steps=400)
    base = Config(**tiny)
    grid = parse_grid(["env=Pendulum-v1", "batch_size=32,64"], base)
    spec = make_spec(base, tmp_path / "s", grid=grid)
    _write_spec(spec, "test")  # sweep.json, as a sweep writes it before its trials
    train(trial_config(spec, {"env": "Pendulum-v1", "batch_size": 32}, spec.root / "trials" / "t0"))
    line = "ConfigError: --batch-size=64 is invalid"
    params = {"t0": {"env": "Pendulum-v1", "batch_size": 32}, "t1": {"env": "Pendulum-v1", "batch_size": 64}}
    result = finish_sweep(spec, {"t0": "", "t1": "error"}, {"t1": line}, params)
    for trials in (result.trials, load_sweep(tmp_path / "s").trials):
        assert list(trials["trial"]) == ["t0", "t1"] and list(trials["status"]) == ["finished", "error"]
        assert list(trials["batch_size"]) == [32, 64] and list(trials["env"]) == ["Pendulum-v1"] * 2
        assert list(trials["error"].fillna("")) == ["", line]
    history = result.history
    assert list(history.columns[:4]) == ["trial", "swept_env", "batch_size", "episode"] and "env" in history.columns
    assert (history["swept_env"] == "Pendulum-v1").all() and set(history["env"]) == {0, 1}


@ray_installed
def test_pbt_explores_inside_each_fields_range(tmp_path):
    """Ray's own PBT explore (x0.8/x1.2, or a resample, then fastddpg's clamp), many times over: gamma moves
    between discount steps and never reaches 1 (x1.2 of 0.99 used to be clamped to exactly 1: no discount), and a
    --sample range holds (README: a mutated field's range is its --sample or --grid)."""
    import random

    from ray.tune.schedulers.pbt import _explore

    from fastddpg.tools.sweeps.driver import GAMMA_STEPS, _mutations, mutation_ranges

    spec = make_spec(Config(total_steps=10_000, log_every=1_000), tmp_path / "s", scheduler="pbt",
                     mutate=["gamma", "actor_lr", "tau"],
                     sample=parse_sample(["actor_lr=loguniform:1e-4:1e-3"], Config()))
    explore = functools.partial(clamp_mutation, ranges=mutation_ranges(spec))
    random.seed(0)
    config = {"gamma": 0.99, "actor_lr": 1e-3, "tau": 0.005}
    seen = []
    for _ in range(500):
        config, _ = _explore(config, _mutations(spec), 0.25, (1.2, 0.8), explore)
        seen.append(dict(config))
    assert {c["gamma"] for c in seen} <= set(GAMMA_STEPS) and len({c["gamma"] for c in seen}) > 2
    assert all(1e-4 <= c["actor_lr"] <= 1e-3 for c in seen)
    assert all(0.005 / 4 <= c["tau"] <= 0.005 * 4 for c in seen)


def test_a_sweeps_evaluation_episodes_come_from_the_flag_the_config_or_the_sweep_default(tmp_path, monkeypatch):
    """--eval-episodes, else a --config file's eval_episodes (the flag's default no longer hides it), else 5: the
    trials' --eval-every evaluations and eval_return use the same number, from the command line and from Python."""
    from fastddpg.cli import build_parser
    from fastddpg.cli.options import config_from_args
    from fastddpg.tools import sweeps
    from fastddpg.tools.sweeps import driver

    toml = tmp_path / "c.toml"
    toml.write_text("[evaluation]\neval_episodes = 3\n")

    def cli(*flags: str) -> int:
        args = build_parser().parse_args(["sweep", *flags, "--out", str(tmp_path / "s")])
        return sweeps.with_eval_episodes(config_from_args(args), None).eval_episodes

    assert (cli(), cli("--config", str(toml)), cli("--config", str(toml), "--eval-episodes", "7")) == (5, 3, 7)
    specs = []
    monkeypatch.setattr(driver, "run_sweep", lambda spec, **kw: specs.append(spec))
    for cfg, n in ((Config(), None), (Config(eval_episodes=4), None), (Config(eval_episodes=4), 6)):
        driver.sweep(cfg, {"seed": [0, 1]}, out=tmp_path / f"p{len(specs)}", eval_episodes=n)
    assert [(s.eval_episodes, s.base["eval_episodes"]) for s in specs] == [(5, 5), (4, 4), (6, 6)]
