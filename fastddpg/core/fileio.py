"""Atomic file writes: a reader, a crash or a kill -9 sees the old file or the new one, never half of one.

Every write goes to a temporary name in the same directory, is flushed and fsync'd, and is renamed over the final
name (``os.replace``, atomic on POSIX and Windows); the directory is fsync'd so the rename survives a power cut.

A write that fails (a full disk, a quota, an I/O error, a read-only or vanished directory, too many open files)
removes its temporary file and raises the OSError itself, naming the final file: `atomic_write` records the
OSError a ``write`` raised, so one that a library wraps (torch.save turns it into a RuntimeError "unexpected pos
...") comes out as the OSError. `os_error_of` finds such an error in an exception; `os_error_line` says it in one
line; `IO_EXIT_CODE` is the exit code the command gives for it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

TMP_SUFFIX = ".tmp"
IO_EXIT_CODE = 74  # EX_IOERR of sysexits.h: an error while doing I/O on a file
# errnos that mean "this file could not be written": the disk or the directory, not the program
WRITE_ERRNOS = frozenset(getattr(errno, name) for name in (
    "ENOSPC", "EDQUOT", "EIO", "EROFS", "ENOENT", "ENOTDIR", "EMFILE", "ENFILE", "EACCES", "EPERM", "EFBIG",
    "ESTALE", "ENODEV", "ENXIO") if hasattr(errno, name))


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(f)`` on a temporary binary file next to ``path``, then move it to ``path`` atomically. On an
    OSError (also one a library wrapped, see the module docstring) the temporary file is removed and the OSError
    is raised with ``filename`` the final path."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as raw:
        f = _RecordingFile(raw)
        try:
            write(f)  # type: ignore[arg-type]
        except Exception as e:
            if f.error is None or f.error is e:
                raise
        if f.error is not None:  # a library wrapped it (raised here, outside the handler: no context cycle)
            raise f.error
        raw.flush()
        os.fsync(raw.fileno())
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary name next to ``path`` to write to (by name: for writers that take a path); moved to ``path``
    atomically when the block ends, removed when it raises. An OSError inside names ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        with naming(path):
            yield tmp
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


@contextlib.contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """Name ``path`` in an OSError raised inside (a write or close on an open file names no file; a temporary
    name means nothing to the user)."""
    try:
        yield
    except OSError as e:
        if e.strerror is not None and (e.filename is None or str(e.filename).endswith(TMP_SUFFIX)):
            e.filename = str(path)  # (only an errno-style OSError: a message-only one would print as "[Errno None]")
        raise


class _RecordingFile:
    """A binary file that remembers the first OSError its ``write`` raised (see `atomic_write`)."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.error: OSError | None = None

    def write(self, b: Any) -> int:
        try:
            return self._f.write(b)
        except OSError as e:
            self.error = self.error or e
            raise

    def __getattr__(self, name: str) -> Any:  # flush, tell, seek, fileno...: the file's own
        return getattr(self._f, name)


def os_error_of(exc: BaseException) -> OSError | None:
    """The OSError of a failed file write in ``exc``: ``exc`` itself, or one a RuntimeError wraps (torch's file
    writers raise RuntimeError for an OSError underneath); None when ``exc`` is no such error (a ConnectionError,
    a broken pipe and other errnos are not file writes, and pass through)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError):
            return e if e.errno in WRITE_ERRNOS else None
        if not isinstance(e, RuntimeError):
            return None
        e = e.__cause__ or e.__context__
    return None


def errno_words(e: OSError) -> str:
    """``No space left on device (ENOSPC)``: the errno's text and its name."""
    name = errno.errorcode.get(e.errno or 0, "")
    text = e.strerror or (os.strerror(e.errno) if e.errno else str(e))
    return f"{text} ({name})" if name else text


def os_error_line(e: OSError) -> str:
    """One line for an OSError outside a run: the file and the errno's words."""
    return f"{e.filename}: {errno_words(e)}" if e.filename else errno_words(e)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode()))


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically."""
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


def write_json(path: str | Path, obj: Any) -> Path:
    """JSON (indented, NaN allowed; numpy scalars and paths converted) written atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default, allow_nan=True) + "\n")


def finite_or_null(obj: Any) -> Any:
    """``obj`` (dicts and lists of numbers, strings...) with every non-finite float as None: JSON's null, where
    Python would write NaN or Infinity, which strict JSON readers (JavaScript's JSON.parse) refuse."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_null(v) for v in obj]
    return obj


def _json_default(x: Any) -> Any:
    if hasattr(x, "item") and callable(x.item):  # numpy and torch scalars
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


def fsync_dir(d: Path) -> None:
    """Make a rename in ``d`` durable (POSIX); a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
