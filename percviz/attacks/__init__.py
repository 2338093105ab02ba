"""Attacks: one module per family, each registering its entries in the one registry.

Every module in this package other than the infrastructure below is imported by
:func:`load_all`, so adding an attack is one module with a ``register(AttackSpec(...))`` call.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading

from percviz.attacks.base import (
    AttackContext,
    AttackOutput,
    AttackResult,
    AttackSpec,
    get_attack,
    register,
    registry,
    run_attack,
)
from percviz.attacks.schema import Param

_INFRASTRUCTURE = {"base", "bounds", "checks", "losses", "params", "schema"}
_loaded = False
_load_lock = threading.RLock()


def load_all() -> None:
    """Import every attack module once (they register themselves); safe from many threads.

    The first caller imports under a lock while the others wait for it; the flag is set only
    after every module registered, so no caller ever sees a partial registry.
    """
    global _loaded
    if _loaded:
        return
    with _load_lock:
        if _loaded:
            return
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
            if info.name not in _INFRASTRUCTURE and not info.name.startswith("_"):
                importlib.import_module(f"{__name__}.{info.name}")
        _loaded = True


__all__ = [
    "AttackContext",
    "AttackOutput",
    "AttackResult",
    "AttackSpec",
    "Param",
    "get_attack",
    "load_all",
    "register",
    "registry",
    "run_attack",
]
