"""Failure safety for the training loop: a clean stop on SIGINT/SIGTERM, and non-finite detection without a
per-step host sync.

Signals (`StopSignals`): the first SIGINT or SIGTERM only sets a flag; the loop finishes the vector step it is
in, flushes, writes a checkpoint and raises `TrainingInterrupted`. A second signal exits the process at once
(``os._exit(128 + signum)``): everything on disk was written atomically or is append-only, so nothing already
there is corrupted (a CSV row being appended at that instant may be cut short; resume drops such a row).

Non-finite values (`health_tensor`, `check_health`): nothing is checked per step. At each flush, when the trainer
pulls its metric sums to the host anyway, a few device reductions go along in the same transfer:

- losses and other update metrics: their sum over the flush interval (already transferred) is non-finite iff
  one update's metrics were (NaN and Inf are sticky under addition);
- parameters: one finite flag per network (actor, critic and both targets);
- observations, actions, rewards: the replay rows written since the last flush, plus the current observation;
  the first non-finite row gives the exact env step and env.

A NaN that enters the loop shows up in all three within one interval (a NaN observation makes a NaN loss makes
NaN parameters makes NaN actions), so `check_health` names the origin: an observation or reward the env
returned with a finite action; else a loss; else a parameter; else an action.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import signal
import threading
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from ..core.fileio import IO_EXIT_CODE, errno_words

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
NONFINITE_EXIT_CODE = 3
RUNDIR_EXIT_CODE = IO_EXIT_CODE  # 74, EX_IOERR: the exit code of every OS error writing files
_COLUMNS = ("obs", "action", "reward", "next_obs", "terminated")  # Batch field order


class TrainingInterrupted(Exception):
    """SIGINT/SIGTERM stopped training cleanly after a vector step.

    signum: the signal; exit_code: 128 + signum (130 for SIGINT, 143 for SIGTERM); global_step: env steps
    done; checkpoint: the checkpoint written at the stop (None without a run directory); result: the
    `TrainResult` so far.
    """

    def __init__(self, signum: int, global_step: int, checkpoint: Path | None, result: Any = None) -> None:
        self.signum, self.global_step, self.checkpoint, self.result = signum, global_step, checkpoint, result
        self.run_dir: Path | None = None  # set by fastddpg.train when the run had a run directory
        self.exit_code = 128 + signum
        self.signal_name = signal.Signals(signum).name
        where = f"; checkpoint {checkpoint}" if checkpoint is not None else ""
        super().__init__(f"stopped by {self.signal_name} at env step {global_step:,}{where}")


class NonFiniteError(RuntimeError):
    """A NaN or Inf reached a loss, a parameter or an observation; training stopped without checkpointing it.

    what: 'observation', 'reward', 'terminated flag', 'loss', 'parameter' or 'action'; global_step and
    num_updates: where training stopped (the flush that found it); checkpoint: the last finite checkpoint
    (None if there is none). ``exit_code`` is 3.
    """

    exit_code = NONFINITE_EXIT_CODE

    def __init__(self, what: str, detail: str, global_step: int, num_updates: int,
                 checkpoint: Path | None = None) -> None:
        self.what, self.detail = what, detail
        self.global_step, self.num_updates, self.checkpoint = global_step, num_updates, checkpoint
        self.run_dir: Path | None = None  # set by fastddpg.train when the run had a run directory
        super().__init__(detail)

    def __str__(self) -> str:
        last = (f"the last finite checkpoint is {self.checkpoint}" if self.checkpoint is not None
                else "no checkpoint was written before it")
        return f"{self.detail}; stopped at env step {self.global_step:,} (update {self.num_updates:,}); {last}"


class RunDirError(OSError):
    """An OS error while writing the run directory stopped training (a full disk, a quota, an I/O error, a
    read-only or vanished directory, too many open files). What was written is whole: no half-written file, the
    CSVs end at a report, the checkpoints are complete.

    errno, strerror, filename: the OSError's (filename: the file that could not be written); run_dir: the run
    directory; checkpoint: its last intact checkpoint, to resume from (None if it has none), at env step
    checkpoint_step; global_step: where training stopped; reported_step: the env step the CSVs reach;
    checkpoint_bytes: about one checkpoint's size (what a full disk needs freed). ``exit_code`` is 74
    (EX_IOERR). ``str(e)`` is the one line the command prints: what failed, what is safe, what to do.
    """

    exit_code = RUNDIR_EXIT_CODE

    def __init__(self, errno_: int | None, strerror: str | None, filename: str | None, *, run_dir: Path,
                 checkpoint: Path | None = None, checkpoint_step: int | None = None, global_step: int = 0,
                 reported_step: int = 0, checkpoint_bytes: int = 0, run_dir_exists: bool | None = None) -> None:
        super().__init__(errno_, strerror or (os.strerror(errno_) if errno_ else "OS error"), filename)
        self.run_dir, self.checkpoint, self.checkpoint_step = Path(run_dir), checkpoint, checkpoint_step
        self.global_step, self.reported_step, self.checkpoint_bytes = global_step, reported_step, checkpoint_bytes
        self.run_dir_exists = self.run_dir.is_dir() if run_dir_exists is None else run_dir_exists

    def __reduce__(self) -> Any:  # pickles (Ray sends a trial's error to the driver) with the keywords
        return (_rebuild_run_dir_error, (self.errno, self.strerror, self.filename, {
            "run_dir": self.run_dir, "checkpoint": self.checkpoint, "checkpoint_step": self.checkpoint_step,
            "global_step": self.global_step, "reported_step": self.reported_step,
            "checkpoint_bytes": self.checkpoint_bytes, "run_dir_exists": self.run_dir_exists}))

    @property
    def resume_command(self) -> str:
        return f"fastddpg run --resume {shlex.quote(str(self.run_dir))}"

    def __str__(self) -> str:
        what = self.filename if self.filename is not None else f"a file in {self.run_dir}"
        failed = f"cannot write {what}: {errno_words(self)} at env step {self.global_step:,}"
        if not self.run_dir_exists:
            return (f"{failed}; the run directory {self.run_dir} no longer exists, so nothing of this run is left to "
                    "resume: restore the directory, or start a new run")
        metrics = f"the metrics up to env step {self.reported_step:,}"
        if self.checkpoint is None:
            safe = f"safe: {metrics} (no checkpoint was written yet, so there is nothing to resume)"
        else:
            safe = f"safe: the checkpoint {self.checkpoint} (env step {self.checkpoint_step:,}) and {metrics}"
        then = (f"then resume with: {self.resume_command}" if self.checkpoint is not None
                else f"then start the run again (after removing {self.run_dir}, or with another --run-dir)")
        return f"{failed}; {safe}; {self._remedy()}, {then}"

    def _remedy(self) -> str:
        mb = size_words(self.checkpoint_bytes)
        e = self.errno
        if e == errno.ENOSPC:
            return f"free about {mb} (one checkpoint) on that filesystem"
        if e == getattr(errno, "EDQUOT", None):
            return f"free about {mb} (one checkpoint) of your disk quota, or raise the quota"
        if e == errno.EROFS:
            return "make the filesystem writable again (it is read-only now)"
        if e == errno.EIO:
            return "check the disk (an I/O error: see dmesg) or move the run directory to a healthy one"
        if e in (errno.EMFILE, errno.ENFILE):
            return "raise the open-file limit (ulimit -n) or close other programs"
        if e in (errno.EACCES, errno.EPERM):
            return f"make {self.run_dir} writable again"
        return "fix that"


def size_words(n: float) -> str:
    """Bytes for a message: ``2.3 MB``, or ``7 kB`` below 0.1 MB."""
    return f"{n / 1e6:,.1f} MB" if n >= 1e5 else f"{n / 1e3:,.0f} kB"


def _rebuild_run_dir_error(errno_: int | None, strerror: str | None, filename: str | None,
                           kwargs: dict[str, Any]) -> RunDirError:
    return RunDirError(errno_, strerror, filename, **kwargs)


class StopSignals:
    """Context manager: while inside, the first SIGINT/SIGTERM sets ``signum``, a second exits the process at
    once with 128 + signum (with ``stopping=True`` the first one already does). The previous handlers come back
    on exit. Outside the main thread (where Python cannot install handlers) it does nothing."""

    def __init__(self, signals: tuple[int, ...] = STOP_SIGNALS, stopping: bool = False) -> None:
        self.signals = signals
        self.signum: int | None = -1 if stopping else None  # stopping: already stopping, any signal exits
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.signum is None:
            self.signum = signum
            _say(f"fastddpg: {name}: finishing the current step, then writing a checkpoint, the metrics and the "
                 f"report (send {name} again to exit at once)")
            return
        _say(f"fastddpg: second {name}: exiting now; the files on disk are the last complete ones")
        os._exit(128 + signum)


def _say(line: str) -> None:
    """Write from a signal handler: os.write, not print (print may be mid-call on the same stream)."""
    with contextlib.suppress(OSError):
        os.write(2, (line + "\n").encode())


# --- non-finite detection --------------------------------------------------------------------------------------

class Interval(NamedTuple):
    """The report interval that just ended: counters at its end, and how many env steps and updates it held."""

    num_envs: int
    global_step: int
    num_updates: int
    steps: int
    updates: int
    buffer_len: int


@torch.no_grad()
def health_tensor(buffer: Any, new_rows: int, obs: torch.Tensor, modules: dict[str, torch.nn.Module],
                  members: int = 0) -> torch.Tensor:
    """A float device tensor, per member: [index of the first of the last ``new_rows`` replay rows that holds a
    non-finite value, or -1; that row's bad flag per column (5: obs, action, reward, next_obs, terminated); bad flag
    of the current observations ``obs``; bad flag per network of ``modules``]. One agent (``members=0``): the
    buffer, obs (N, obs_dim) and the modules as they are. A population of ``members`` = K: each member's replay
    rows, envs (obs (K*N, obs_dim), member-major) and rows of every stacked network, concatenated (K * len,).
    Device ops only; the caller transfers it with the report's other numbers."""
    if not members:
        return _member_health(buffer, new_rows, obs, [list(m.parameters()) for m in modules.values()])
    obs = obs.reshape(members, -1, obs.shape[-1])
    return torch.cat([_member_health(_MemberRows(buffer, k), new_rows, obs[k],
                                     [_member_params(m, k, members) for m in modules.values()])
                      for k in range(members)])


def _member_health(buffer: Any, new_rows: int, obs: torch.Tensor, networks: list[list[torch.Tensor]]
                   ) -> torch.Tensor:
    """`health_tensor` of one agent: its replay rows, its observations, the parameters of each of its networks."""
    dev = obs.device
    n = min(new_rows, len(buffer))
    if n > 0:
        idx = (buffer.ptr - n + torch.arange(n, device=dev)) % buffer.capacity  # oldest first
        rows = buffer.data[idx]
        bad = ~torch.isfinite(rows).all(dim=1)
        first = torch.where(bad.any(), bad.int().argmax(), -1)  # argmax returns the first maximal index
        cols = buffer.as_batch(rows.index_select(0, first.clamp(min=0).reshape(1)))  # no host read of `first`
        parts = [first.reshape(1), torch.stack([~torch.isfinite(c).all() for c in cols]) & (first >= 0)]
    else:
        parts = [torch.full((1,), -1, device=dev), torch.zeros(len(_COLUMNS), dtype=torch.bool, device=dev)]
    parts.append((~torch.isfinite(obs).all()).reshape(1))
    parts.append(torch.stack([~torch.stack([torch.isfinite(p).all() for p in params]).all() for params in networks]))
    return torch.cat([p.float() for p in parts])


class _MemberRows:
    """Member k's rows of a population's replay buffer, as `health_tensor` reads a buffer."""

    def __init__(self, buffer: Any, k: int) -> None:
        self.data, self.ptr, self.capacity, self.as_batch = buffer.data[k], buffer.ptr, buffer.capacity, buffer.as_batch
        self._len = len(buffer)

    def __len__(self) -> int:
        return self._len


def _member_params(module: torch.nn.Module, k: int, members: int) -> list[torch.Tensor]:
    """Member k's rows of a stacked module's parameters (K rows, or K*C for C critics per member)."""
    out = []
    for p in module.parameters():
        c = p.shape[0] // members
        out.append(p[k * c:(k + 1) * c])
    return out


def check_health(metric_names: tuple[str, ...] | list[str], metric_sums: np.ndarray, health: np.ndarray,
                 module_names: list[str], at: Interval, last_checkpoint: Path | None = None,
                 member_labels: list[str] | None = None) -> None:
    """Raise NonFiniteError if the report interval ``at`` saw a non-finite value (see module docstring for how the
    origin is named). ``health`` is `health_tensor`'s value on the host (taken at the end of the interval, over
    the networks ``module_names``), ``metric_sums`` the interval's metric sums ((num_metrics,); a population's
    (K, num_metrics), with ``member_labels`` one per member and ``at`` counting one member's envs and steps: the
    first member with a non-finite value raises, its message starting with ``member k (<its label>)``)."""
    labels: list[str | None] = list(member_labels) if member_labels else [None]
    per_member = np.reshape(health, (len(labels), -1))
    sums = np.reshape(metric_sums, (len(labels), -1))
    for k, label in enumerate(labels):
        found = _problem(metric_names, sums[k], per_member[k], module_names, at)
        if found is not None:
            what, detail = found
            if label is not None:
                detail = f"member {k} ({label}): {detail}"
            raise NonFiniteError(what, detail, at.global_step, at.num_updates, last_checkpoint)


def _problem(metric_names: tuple[str, ...] | list[str], metric_sums: np.ndarray, health: np.ndarray,
             module_names: list[str], at: Interval) -> tuple[str, str] | None:
    """What went non-finite for one agent, (what, detail), or None."""
    first_row = int(health[0])
    col_bad = {c for c, b in zip(_COLUMNS, health[1:6], strict=True) if b > 0.5}
    obs_bad = health[6] > 0.5
    mod_bad = [m for m, b in zip(module_names, health[7:], strict=True) if b > 0.5]
    loss_bad = [k for k, v in zip(metric_names, metric_sums, strict=False) if not np.isfinite(v)]
    if not (mod_bad or first_row >= 0 or obs_bad or loss_bad):
        return None

    n = at.num_envs
    g, u = at.global_step, at.num_updates
    first_update = u - at.updates + 1
    found: list[tuple[str, str]] = []
    if first_row >= 0:
        t = g - min(at.steps, at.buffer_len) + first_row  # transition number
        step, env = (t // n + 1) * n, t % n
        where = f"from env {env} at env step {step:,}"
        if "obs" in col_bad:
            found.append(("observation", f"non-finite observation {where} (the env returned it)"))
        elif "action" not in col_bad:
            for col, what in (("next_obs", "observation"), ("reward", "reward"), ("terminated", "terminated flag")):
                if col in col_bad:
                    found.append((what, f"non-finite {what} {where} (the env returned it for a finite action)"))
                    break
    if loss_bad:
        span = f"update {u:,}" if first_update >= u else f"updates {first_update:,}-{u:,}"
        found.append(("loss", f"non-finite {', '.join(loss_bad)} in {span}"))
    if mod_bad:
        found.append(("parameter", f"non-finite parameters in {', '.join(mod_bad)} after update {u:,}"))
    if first_row >= 0 and "action" in col_bad:
        found.append(("action", f"non-finite action {where} (the actor's output)"))
    if obs_bad and not found:
        found.append(("observation", f"non-finite observation at env step {g:,} (the env returned it)"))
    what, detail = found[0]
    if len(found) > 1:
        detail += " (then also: " + ", ".join(dict.fromkeys(w for w, _ in found[1:])) + ")"
    return what, detail
