"""Values computed once per model instance (originals' probabilities, features, GradCAM++ maps)."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

from percviz.models import Classifier


class PerModelCache:
    """Values computed once per (model instance, key) and kept while the model lives; thread-safe,
    at most ``size`` values per model. Keyed by the instance, never by its id string, so two models
    that share an id (a retrained checkpoint, a test double) never see each other's values."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._values: weakref.WeakKeyDictionary[Classifier, dict[Any, Any]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self, model: Classifier, key: Any, compute: Callable[[], Any]) -> Any:
        with self._lock:
            values = self._values.setdefault(model, {})
            if key in values:
                return values[key]
        value = compute()
        with self._lock:
            if len(values) >= self.size:
                values.clear()
            values[key] = value
        return value
