"""Attacks: one module per family, each registering its entries in the one registry.

:func:`load_all` imports the families named in :data:`ATTACK_MODULES`; adding an attack family is
one module with ``register(AttackSpec(...))`` calls and its name here (``tests/test_registry.py``
fails when a registering module is missing from the list or a listed one registers nothing). The
other modules are the machinery: the contract (base, schema, params), the run templates (template,
regression_run), caps, bound checks, losses, frames and the solvers.
"""

from __future__ import annotations

import importlib
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

#: The modules that register attacks (families), imported by :func:`load_all` in this order.
ATTACK_MODULES = (
    "cw",
    "deepfool",
    "gradient",
    "lp",
    "perceptual",
    "perturbation",
    "regression",
    "smooth",
    "ssim_guided",
)
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
        for name in ATTACK_MODULES:
            importlib.import_module(f"{__name__}.{name}")
        _loaded = True


__all__ = [
    "ATTACK_MODULES",
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
