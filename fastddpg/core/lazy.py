"""Modules imported at their first use instead of at start-up.

pandas (with the pyarrow it loads) and plotly take ~0.4 s to import, and a run needs them only for its tables and
report at the end, so `fastddpg run` would otherwise reach its first update that much later. A module here is a
`LazyModule` stand-in until the first attribute is read; type checkers see the real module (``TYPE_CHECKING``).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any


class LazyModule:
    """``name``'s module, imported (``importlib.import_module``, thread-safe under the import lock) when the first
    attribute is read; later reads find it in ``sys.modules``. Nothing is put in ``sys.modules`` before that, so a
    plain ``import name`` elsewhere gets the real module as usual."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        name = self.__dict__.get("_name")
        if name is None:  # an instance not made by __init__ (unpickling, copying): no module to ask
            raise AttributeError(attr)
        return getattr(importlib.import_module(name), attr)

    def __reduce__(self) -> tuple[type[LazyModule], tuple[str]]:
        return LazyModule, (self._name,)

    def __repr__(self) -> str:
        return f"<LazyModule {self._name!r}>"


def not_installed(*names: str) -> list[str]:
    """Those of ``names`` that no import could find (``importlib.util.find_spec``, which imports nothing): checked
    when a run starts, so that a missing pandas or plotly is said then, not after the training that needs them at
    its end."""
    return [n for n in names if importlib.util.find_spec(n) is None]
