"""Modules imported at their first use instead of at start-up.

pandas (with the pyarrow it loads) and plotly take ~0.4 s to import, and a run needs them only for its tables and
report at the end, so `fastddpg run` would otherwise reach its first update that much later. A module here is a
`LazyModule` stand-in until the first attribute is read; type checkers see the real module (``TYPE_CHECKING``).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """``name``'s module, imported (``importlib.import_module``, thread-safe under the import lock) when the first
    attribute is read; later reads find it in ``sys.modules``. Nothing is put in ``sys.modules`` before that, so a
    plain ``import name`` elsewhere gets the real module as usual."""

    def __init__(self, name: str) -> None:
        self._name = name

    def module(self) -> ModuleType:
        """The real module (imported now if it is not yet)."""
        return importlib.import_module(self._name)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.module(), attr)

    def __repr__(self) -> str:
        return f"<LazyModule {self._name!r}>"
