"""Where inductor keeps what it compiled: a directory that outlives the temp dir, so a compile is paid once per machine.

Kept apart from `fastddpg.learning.compile` and free of torch imports: it must run before anything imports
``torch._inductor`` or ``torch._dynamo``, since importing dynamo fixes inductor's cache directory (it sets
``TORCHINDUCTOR_CACHE_DIR`` to torch's default if the variable is unset).
"""

from __future__ import annotations

import os
from pathlib import Path


def compile_cache_dir() -> Path | None:
    """Where fastddpg keeps inductor's on-disk caches unless ``TORCHINDUCTOR_CACHE_DIR`` says otherwise:
    ``$XDG_CACHE_HOME/fastddpg/torchinductor`` (``~/.cache/...`` by default); None when no such directory can be
    made writable (a read-only or missing home), leaving torch's own default."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = Path(base) / "fastddpg" / "torchinductor"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return path if os.access(path, os.W_OK | os.X_OK) else None


def persistent_compile_cache() -> str | None:
    """Point inductor's caches (compiled graphs, their C++ libraries, its instruction-set probes) at
    `compile_cache_dir` unless ``TORCHINDUCTOR_CACHE_DIR`` is set; return the directory in use (None: torch's).

    torch's default lives in the temp dir (``/tmp/torchinductor_$USER``), which many systems empty at every boot
    (a tmpfs ``/tmp``) and containers start without, so the first run after each boot compiled cold again (10-20 s
    on a 2-core CPU instead of about 2). The cache keys hold the torch version, the compiler, its flags and the CPU's
    instruction sets, so one directory serves every torch and machine that shares the home. Call it before the
    first import of ``torch._inductor`` or ``torch._dynamo`` in the process (see the module docstring)."""
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        path = compile_cache_dir()
        if path is None:
            return None
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)
    return os.environ["TORCHINDUCTOR_CACHE_DIR"]
