"""The Explore job: one attack on one image, its first screen at once, every view on demand.

:func:`explore_work` is the job body the Explore page queues (``percviz.serving.jobs`` runs it with
progress and Cancel). When the attack ends it measures what the first screen shows — the verdict,
both top-5 lists (from the attack's own label and final logits), the metrics (on the SSIM maps of
the attack's bound re-check), the 8-bit PNG re-check (one forward pass) and ``result.json`` — and
returns. The views (SSIM maps, difference, adversarial magnification, GradCAM++, noise vs CAM) are a
:class:`~percviz.analysis.views.LazyViews`: each is computed the first time a view or a download
reads it, once per result, with the same functions as ``percviz attack --maps``. The attack keeps
up to :data:`~percviz.attacks.frames.MAX_FRAMES` iterates for the replay view, classified when it
first opens (:meth:`ExploreResult.replay`).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from percviz.analysis.replay import Replay, build_replay
from percviz.analysis.views import LazyViews
from percviz.attacks.base import AttackResult, AttackSpec, get_attack, run_attack
from percviz.attacks.caps import check_params
from percviz.attacks.frames import MAX_FRAMES
from percviz.images import to_numpy
from percviz.limits import Limits, current_limits
from percviz.models import Classifier, Prediction
from percviz.pipeline import PreparedImage, RunOutcome, build_report, measure
from percviz.progress import ProgressCallback
from percviz.recipes import Recipe

CANCELLED = " #cancelled"  # suffix of a cancelled run's key: a later full run of that recipe is kept apart


def plan_attack(
    attack: str | AttackSpec, raw: Mapping[str, Any], limits: Limits | None = None
) -> dict[str, Any]:
    """One attack's parameters from the page or a link, checked before anything is queued: the
    registry schema (:meth:`AttackSpec.validate`), then this server's caps
    (:func:`percviz.attacks.caps.check_params`); raises :class:`percviz.errors.ParameterError`."""
    spec = get_attack(attack) if isinstance(attack, str) else attack
    values = spec.validate(raw)
    check_params(spec, values, limits or current_limits())
    return values


def recipe_key(recipe: Recipe) -> str:
    """The cache key of a result: the recipe without versions/device (what decides the numbers here)."""
    data = recipe.as_dict()
    data.pop("versions", None)
    data.pop("device", None)
    return json.dumps(data, sort_keys=True)


@dataclass
class ExploreResult:
    """One finished attack and everything Explore shows about it (CPU data; views on demand)."""

    key: str
    recipe: Recipe
    image_name: str
    result: AttackResult
    before: list[Prediction]
    after: list[Prediction]
    metrics: dict[str, float]
    png_ok: bool
    report: dict[str, Any]
    ssim_map: np.ndarray
    views: LazyViews
    seconds: float = 0.0
    """The whole job: attack, measurements and report (live mode shows it)."""
    model: Classifier | None = None
    _replay: list[Replay | None] = field(default_factory=list, repr=False)
    _replay_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def replay(self) -> Replay | None:
        """The run's recorded iterates with their predictions (computed on first call, then kept);
        None when the run kept no frames."""
        with self._replay_lock:
            if not self._replay:
                self._replay.append(
                    None if self.model is None else build_replay(self.model, self.result, self.model.labels)
                )
            return self._replay[0]

    @property
    def short(self) -> str:
        return hashlib.sha1(self.key.encode()).hexdigest()[:10]

    @property
    def original(self) -> np.ndarray:
        return to_numpy(self.result.x)[0]

    @property
    def adversarial(self) -> np.ndarray:
        return to_numpy(self.result.x_adv)[0]


def explore_result(
    model: Classifier, image: PreparedImage, image_name: str, recipe: Recipe, key: str, result: AttackResult
) -> ExploreResult:
    """The first screen of ``result`` (image 0) and its views, computed on demand."""
    measured = measure(model, result)
    report = build_report(RunOutcome(recipe, model, image, result), measured=measured)
    return ExploreResult(
        key=key + CANCELLED if result.cancelled else key,
        recipe=recipe,
        image_name=image_name,
        result=result,
        before=measured.before,
        after=measured.after,
        metrics=measured.metrics,
        png_ok=measured.png_still_adversarial,
        report=report,
        ssim_map=measured.ssim_map,
        views=LazyViews(result, model, 0, ssim=measured.ssim_map),
        model=model,
    )


def explore_work(
    model: Classifier, image: PreparedImage, image_name: str, recipe: Recipe, key: str | None = None
) -> Callable[[ProgressCallback], ExploreResult]:
    """The job body: run ``recipe``'s attack on ``image``, then :func:`explore_result`."""
    x = image.tensor(model.device)
    result_key = recipe_key(recipe) if key is None else key

    def work(progress: ProgressCallback) -> ExploreResult:
        start = time.perf_counter()
        result = run_attack(
            recipe.attack, model, x, recipe.params, seed=recipe.seed, progress=progress, frames=MAX_FRAMES
        )
        out = explore_result(model, image, image_name, recipe, result_key, result)
        out.seconds = time.perf_counter() - start
        return out

    return work
