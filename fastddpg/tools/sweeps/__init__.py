"""Hyperparameter sweeps and scale-out on Ray Tune: ``fastddpg sweep`` and `sweep`.

A sweep is a set of trials; **each trial is an ordinary fastddpg run directory**, ``OUT/trials/<trial id>/``
(config.json, the CSVs, checkpoints, report.html), written by `fastddpg.api.open_run` and `run_to_end`, so
``fastddpg plot``, ``eval``, ``export`` and `load_run` work on it. Ray Tune schedules the trials; fastddpg
trains them. Layout of the sweep directory ``OUT`` (``--out``)::

    sweep.json        the sweep's definition: base config, grid, samples, scheduler, resources (for --resume)
    trials/<id>/      one fastddpg run directory per trial, plus reports.csv (what the trial told Tune, with
                      its hyperparameters at each report: the PBT schedule) and, after a PBT exploit, exploits/
    trials.csv        one row per trial: its swept values, final and best metrics, status, run directory
    report.html       every trial's curve, the grid points' means with a band over seeds, the ranking, and for
                      PBT each trial's hyperparameter schedule
    tune/             Ray Tune's own experiment state (what ``--resume`` restores); under --storage if given

**Modules.** `spec`: the sweep's definition (search space, --space TOML, checks, sweep.json); `cluster`: Ray (local
or a cluster at --address, shared storage); `trial`: one trial in a Ray worker (Tune's trainable, its reporter,
PBT's exploit); `progress`: the console lines while it runs; `driver`: the Tune experiment (schedulers, search
algorithms, failure config) and `sweep`; `resume`: ``--resume``; `results`: the tables read back from the trials;
`report`: trials.csv and report.html.

**Reporting.** At each fastddpg report (every ``--log-every`` env steps; with PBT at each PBT interval, see
`TuneReporter`) a trial reports to Tune, once at least one episode has ended: ``env_steps`` (Tune's time
attribute for ASHA and PBT: env steps, not wall time, so a compile or a slow node does not count),
``return_10`` (the mean return of the last 10 episodes), and with ``--metric eval_return`` the mean return of
``--eval-episodes`` noise-free episodes of the current actor. A trial that is a population (``--num-seeds K``)
reports as ``return_10`` the mean over its members of each member's own last-10 mean (`schema.Last10`;
members without a finished episode are left out), so ASHA and PBT rank it by its members' returns.

**PBT through fastddpg's checkpoints.** With ``--scheduler pbt`` a trial writes a fastddpg checkpoint every
``--pbt-interval`` env steps and attaches it to that report (a Tune `Checkpoint` of a directory holding the
``step_*.pt`` file and a note naming the trial that wrote it). When PBT makes trial A exploit trial B, Tune
restarts A with B's checkpoint and A's mutated config; A then builds a new Trainer from its mutated config (the
update functions are rebuilt, and recompiled if compiling, with the new hyperparameters) and loads B's
checkpoint into it through the resume path (`Trainer.load_state_dict`: weights, targets, Adam states, replay
buffer, counters), so A's env steps continue from B's, not from 0.

**The replay buffer on an exploit is copied with the weights** (it is in the checkpoint). DDPG is off-policy and
B's networks were fitted to B's buffer: copying it makes the exploit a clone of the whole learner (PBT's
"copy the better member"), and the clone trains on at once, with the mutated hyperparameters, on the data its
weights came from. Dropping it would stall the clone until ``--update-after`` steps and then fit the copied
critic to a small, narrow buffer from one policy (the critic forgets); keeping A's own buffer would pair B's
weights with the data of the policy PBT just judged worse. The cost: every PBT checkpoint carries the buffer
(36 bytes per transition on Pendulum: 7 MB at the default 200k). After the exploit, A's random streams are
re-seeded from (A's seed, env step), so it does not replay B's noise and minibatch draws, and its envs restart
(as on any resume). A's run directory becomes B's history up to the checkpoint (its CSVs and checkpoint agree,
so ``fastddpg run --resume`` works on it), followed by A's own; what A itself did before is kept in
``exploits/<k>/`` and config.json lists the exploits.
"""

from .cluster import TOKEN_AUTH_NOTICE, check_shared_storage, connect, require_ray
from .driver import SweepInterrupted, clamp_mutation, drive, run_sweep, sweep, trial_error_line
from .progress import SweepProgress, tune_callback
from .report import finish_sweep, sweep_figures, write_sweep_report
from .results import SweepResult, collect, load_sweep, trial_dirs
from .resume import refuse_new_definition, restore_tuner, resume_sweep
from .spec import (
    DEFAULT_MAX_FAILURES,
    EXPLOITS_DIR,
    INSTALL_HINT,
    METRICS,
    PBT_MUTABLE,
    REPORTS_FILE,
    SCHEDULERS,
    SEARCHES,
    SOURCE_FILE,
    SWEEP_EVAL_EPISODES,
    SWEEP_FILE,
    TIME_ATTR,
    TRIALS_DIR,
    TRIALS_FILE,
    TUNE_DIR,
    SweepSpec,
    make_spec,
    parse_grid,
    parse_sample,
    read_space,
    read_spec,
    sweep_grid_scope,
    with_eval_episodes,
)
from .trial import (
    TuneReporter,
    eval_return,
    exploit,
    final_metrics,
    open_trial,
    return_10,
    run_trial,
    trial_config,
)

__all__ = [
    "DEFAULT_MAX_FAILURES", "EXPLOITS_DIR", "INSTALL_HINT", "METRICS", "PBT_MUTABLE", "REPORTS_FILE", "SCHEDULERS",
    "SEARCHES", "SOURCE_FILE", "SWEEP_EVAL_EPISODES", "SWEEP_FILE", "TIME_ATTR", "TOKEN_AUTH_NOTICE", "TRIALS_DIR",
    "TRIALS_FILE", "TUNE_DIR", "SweepInterrupted", "SweepProgress", "SweepResult", "SweepSpec", "TuneReporter",
    "check_shared_storage", "clamp_mutation", "collect", "connect", "drive", "eval_return", "exploit",
    "final_metrics", "finish_sweep", "load_sweep", "make_spec", "open_trial", "parse_grid", "parse_sample",
    "read_space", "read_spec", "refuse_new_definition", "require_ray", "restore_tuner", "resume_sweep", "return_10",
    "run_sweep", "run_trial", "sweep", "sweep_figures", "sweep_grid_scope", "trial_config", "trial_dirs",
    "trial_error_line", "tune_callback", "with_eval_episodes", "write_sweep_report",
]
