"""Attacks: one module per family, each registering its entries in the one registry.

Every module in this package other than the infrastructure below is imported by
:func:`load_all`, so adding an attack is one module with a ``register(AttackSpec(...))`` call.
"""

from __future__ import annotations

import importlib
import pkgutil

from percviz.attacks.base import (
    AttackContext,
    AttackOutput,
    AttackResult,
    AttackSpec,
    Param,
    get_attack,
    register,
    registry,
    run_attack,
)

_INFRASTRUCTURE = {"base", "checks", "losses", "params"}
_loaded = False


def load_all() -> None:
    """Import every attack module once (they register themselves)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name not in _INFRASTRUCTURE and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


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
