"""Under auto threads on a CPU: train on 1 thread or on the run's share of the cores, whichever is measured faster.

The share (`fastddpg.core.threads`) keeps runs side by side from oversubscribing the cores, but a lone run's share is
not always its fastest count. On a 2-core VM (AMD EPYC, KVM) the batch-128 update ran at 1.3-1.4x its 1-thread rate
on 2 threads for minutes at a time, then for minutes at 0.8x (the same binary, nothing else running: the host's
placement of the second vCPU); two threads also lose wherever the second core is busy with work that takes no lease.
Which count wins is a property of the moment, so it is measured, the way FFTW or cuDNN's benchmark mode pick a kernel:

- after ``window`` updates (the first ones warm allocations and caches), a *probe* times ``window`` updates at each
  count in turn, the other count first: other, current, other, current. A window's time is wall time from the end
  of one update batch to the end of a later one, env steps and acting included, so what is compared is the
  training loop's throughput, not the update's alone (on the caller's clock: the trainer's stands still during
  reports, callbacks and checkpoints);
- the other count is taken if its mean seconds per update is at least ``margin`` below the current one's (a
  tie keeps what runs);
- every ``every`` updates a shorter probe (other, current) checks again: the machine's state drifts;
- between probes the chosen count's windows are timed too, and one that runs ``drift`` slower than the last probe
  measured (another process took a core, the VM's second core turned slow) starts that shorter probe at once;
- a new share (runs started or ended) resets the choice to the share and probes again soon.

What it costs: the windows timed at the count not chosen, 2 of the first probe's 4 and 1 per re-check (one window of
``window`` updates in every ``every``: 5% at the defaults, plus the re-checks a slowdown starts). What it does not
change: the numbers, on the machine measured (a 2-core AMD EPYC Zen 4: the update gave bit-identical parameters at 1
and 2 threads and with the count switched every 37 updates); torch does not promise that a reduction split across
threads sums in the same order, so runs that must repeat bit for bit pass ``--threads N``, which is never changed.
The trainer uses it for the updates that read the thread count at each call (the hand-derived and the eager ones, not
a compiled one, whose C++ kernels keep the count they were compiled for).

No torch here: the caller sets the threads this returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

TUNE_WINDOW = 100  # updates per measured window: ~0.2-0.3 s at batch 128 on a 2-core CPU
TUNE_EVERY = 2000  # updates between re-checks
TUNE_MARGIN = 0.03  # the other count must be this much faster per update to be taken
TUNE_DRIFT = 0.15  # a window at the chosen count this much slower than its probe measured starts a probe
TUNE_MIN_UPDATES = 2000  # a run planning fewer updates keeps its share: a probe would not pay back


@dataclass
class ThreadTuner:
    """The choice between 1 thread and ``share`` threads, by measured seconds per update (see the module docstring).

    Call `observe` after each batch of updates with the run's update count, and `set_share` when the share changes;
    each returns the thread count to run on from now (which may be a probe's, not the choice: `chosen` is the
    choice)."""

    share: int
    clock: Callable[[], float] = time.perf_counter
    window: int = TUNE_WINDOW
    every: int = TUNE_EVERY
    margin: float = TUNE_MARGIN
    drift: float = TUNE_DRIFT
    chosen: int = 0  # the count chosen by the last probe (the share until then)
    probes: list[dict[str, object]] = field(default_factory=list)  # one record per finished probe, for summary.json
    _schedule: list[int] = field(default_factory=list)  # counts of the probe's windows still to time
    _seconds: dict[int, list[float]] = field(default_factory=dict)  # seconds per update of the probe's windows
    _window_start: tuple[int, float] | None = None  # (update count, clock) where the timed window began
    _next_probe: int | None = None  # update count at which the next probe starts (set by the first `observe`)
    _first: bool = True  # the first probe times two windows of each count
    _baseline: float | None = None  # seconds per update the last probe measured at the chosen count
    _reason: str = "scheduled"  # what started the probe under way: "scheduled" or "slower"

    def __post_init__(self) -> None:
        self.chosen = self.chosen or self.share

    @property
    def probing(self) -> bool:
        return bool(self._schedule)

    def _other(self) -> int:
        return 1 if self.chosen != 1 else self.share

    def observe(self, updates: int) -> int:
        """The run has done ``updates`` updates so far; returns the thread count to run on from now."""
        if self.share <= 1:
            return 1
        if self._next_probe is None:  # the first call: a resumed run starts at its checkpoint's count
            self._next_probe = updates + self.window
        if not self._schedule:
            slowed = self._slowed(updates)
            if updates < self._next_probe and not slowed:
                return self.chosen
            other, current = self._other(), self.chosen
            self._schedule = [other, current, other, current] if self._first else [other, current]
            self._seconds, self._reason = {}, "slower" if slowed else "scheduled"
            self._window_start = (updates, self.clock())
            return self._schedule[0]
        seconds = self._close_window(updates)
        if seconds is None:
            return self._schedule[0]
        self._seconds.setdefault(self._schedule.pop(0), []).append(seconds)
        if self._schedule:
            return self._schedule[0]
        self._decide(updates)
        return self.chosen

    def _close_window(self, updates: int) -> float | None:
        """Seconds per update of the timed window, if it has run ``window`` updates by ``updates`` (the next window
        then starts here); else None."""
        if self._window_start is None:
            return None
        start_updates, start_time = self._window_start
        if updates - start_updates < self.window:
            return None
        now = self.clock()
        self._window_start = (updates, now)
        return (now - start_time) / (updates - start_updates)

    def _slowed(self, updates: int) -> bool:
        """Between probes: whether the window just timed at the chosen count ran ``drift`` slower per update than
        the last probe measured."""
        if self._baseline is None:
            return False
        seconds = self._close_window(updates)
        return seconds is not None and seconds > self._baseline * (1.0 + self.drift)

    def _decide(self, updates: int) -> None:
        mean = {n: sum(s) / len(s) for n, s in self._seconds.items()}
        other = self._other()
        if mean[other] < mean[self.chosen] * (1.0 - self.margin):
            self.chosen = other
        self.probes.append({"update": updates, "threads": self.chosen, "after": self._reason,
                            "seconds_per_update": {str(n): round(s, 7) for n, s in sorted(mean.items())}})
        self._baseline = mean[self.chosen]
        self._first = False
        self._next_probe = updates + self.every

    def set_share(self, share: int, updates: int) -> int:
        """The run's share of the cores is now ``share``; returns the thread count to run on from now. A changed
        share drops the choice and any probe under way: the share runs, and a first probe starts after
        ``window`` more updates."""
        if share != self.share:
            self.share, self.chosen = share, share
            self._schedule, self._first, self._baseline = [], True, None
            self._next_probe = updates + self.window
        return self._schedule[0] if self._schedule else self.chosen
