"""Python's garbage collector while ``fastddpg run`` starts: paused, then what the imports built is frozen.

Why: a run's start-up imports torch, gymnasium and fastddpg, about 250,000 objects the cyclic collector tracks, and
CPython runs a full collection (generation 2, a walk over every tracked object) each time the long-lived objects
have grown by a quarter: three during the imports and one later in the run, 0.1-0.14 s and ~0.1 s, on a 2-core AMD
EPYC (timed with ``gc.callbacks``). None of it is garbage: modules, functions and classes live as long as the
process. So the command pauses the collector while it imports and then moves everything that exists to the
permanent generation that collections skip (``gc.freeze``) and turns the collector back on, before the run is built:
the collections during training walk only the objects made since, and an env's worker processes (Gymnasium's async
vector env forks them) start with the collector on.

Only where the command owns its process (``fastddpg run`` from the command line): a Python caller's process (a
notebook, a test calling ``main([...])``) keeps its collector as it is, as freezing would keep the garbage among its
objects alive for good.
"""

from __future__ import annotations

import gc
from types import TracebackType


class StartupCollector:
    """``with StartupCollector(owns_process) as startup: ... startup.started() ...``: with ``owns_process`` (and the
    collector on), the collector is off from entering until `started` (which freezes the objects that exist and
    turns it back on) or, where the block ends before that (bad input, an error), until the block ends (without
    freezing). Otherwise it changes nothing."""

    def __init__(self, owns_process: bool) -> None:
        self.paused = owns_process and gc.isenabled()

    def __enter__(self) -> StartupCollector:
        if self.paused:
            gc.disable()
        return self

    def started(self) -> None:
        """The start-up's imports are done: freeze what exists and turn the collector back on."""
        if self.paused:
            gc.freeze()
            gc.enable()
            self.paused = False

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self.paused:
            gc.enable()
            self.paused = False
