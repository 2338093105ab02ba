"""End-to-end runs shared by the CLI and the app: recipe → image → model → attack → report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from percviz.analysis.metrics import compare_images, ssim_map
from percviz.attacks.base import AttackResult, ProgressCallback, run_attack
from percviz.attacks.checks import png_still_adversarial
from percviz.errors import ImageError, RecipeError
from percviz.images import LoadedImage, fit_to_model, load_image, load_sample, to_tensor
from percviz.jsonsafe import json_safe
from percviz.models import Classifier, Prediction, load_model, predict, predictions
from percviz.recipes import ImageRef, Recipe, environment_versions, file_sha256


@dataclass(frozen=True)
class PreparedImage:
    """An image as loaded and as the model sees it (``H×W×3`` float32 in [0, 1])."""

    loaded: LoadedImage
    model_input: np.ndarray

    def tensor(self, device: torch.device | str | None = None) -> torch.Tensor:
        return to_tensor(self.model_input, device)


def load_ref(ref: ImageRef, *, check_hash: bool = False) -> LoadedImage:
    """Load the image a recipe names; optionally refuse a file whose SHA-256 changed."""
    if ref.sample is not None:
        return load_sample(ref.sample)
    path = str(ref.path)
    if check_hash and ref.sha256 and Path(path).is_file() and file_sha256(path) != ref.sha256:
        raise RecipeError(f"'{ref.path}' differs from the file the recipe was made with (SHA-256 mismatch).")
    return load_image(path)


def prepare(loaded: LoadedImage, size: int, crop_fraction: float = 1.0) -> PreparedImage:
    """Centre-crop and resize to the model's input (untouched if already that size)."""
    return PreparedImage(loaded, fit_to_model(loaded.pixels, size, crop_fraction))


@dataclass
class RunOutcome:
    recipe: Recipe
    model: Classifier
    image: PreparedImage
    result: AttackResult


def run_recipe(
    recipe: Recipe, progress: ProgressCallback | None = None, *, check_hash: bool = False, frames: int = 0
) -> RunOutcome:
    """Execute a recipe on its device (or the best one) and return everything produced (``frames``:
    iterates kept for replay, see :func:`~percviz.attacks.base.run_attack`)."""
    model = load_model(recipe.model, recipe.device)
    try:
        image = prepare(load_ref(recipe.image, check_hash=check_hash), model.input_size, recipe.crop_fraction)
    except ValueError as exc:
        if isinstance(exc, ImageError | RecipeError):
            raise
        raise ImageError(str(exc)) from None
    result = run_attack(
        recipe.attack,
        model,
        image.tensor(model.device),
        recipe.params,
        seed=recipe.seed,
        progress=progress,
        frames=frames,
    )
    return RunOutcome(recipe, model, image, result)


@dataclass
class Measured:
    """What is measured on image 0 of a finished run: top predictions before and after,
    :func:`~percviz.analysis.metrics.compare_images`'s metrics, and the 8-bit re-check."""

    before: list[Prediction]
    after: list[Prediction]
    metrics: dict[str, float]
    png_still_adversarial: bool
    ssim_map: np.ndarray
    """``H×W×3`` float32 SSIM map (float64 computation) behind ``metrics['ssim']`` and the views."""


def first_image_ssim_maps(result: AttackResult) -> torch.Tensor:
    """``1×3×H×W`` float64 SSIM maps of image 0: the attack's bound re-check's, else computed."""
    x = result.x[:1]
    maps = result.ssim_maps[:1].double() if result.ssim_maps is not None else None
    return (
        maps
        if maps is not None and maps.shape == x.shape
        else ssim_map(x.double(), result.x_adv[:1].double())
    )


def first_image_predictions(
    model: Classifier, result: AttackResult, top: int = 5
) -> tuple[list[Prediction], list[Prediction]]:
    """Top-``top`` predictions of image 0 before and after, from the attack's own label and final
    logits (a forward pass only where the run does not carry them)."""
    x, x_adv = result.x[:1], result.x_adv[:1]
    before = (
        predictions(model.labels, result.logits[:1], top)[0]
        if result.logits is not None
        else predict(model, x, top)[0]
    )
    after = (
        predictions(model.labels, result.adv_logits[:1], top)[0]
        if result.adv_logits is not None
        else predict(model, x_adv, top)[0]
    )
    return before, after


def measure(model: Classifier, result: AttackResult, top: int = 5) -> Measured:
    """:class:`Measured` for image 0 of ``result``, each quantity computed once: the predictions
    come from the attack's own forward passes (its label and final logits) and the SSIM map from
    its bound re-check (the metrics average it and the views show it); only the 8-bit PNG re-check
    is a new forward pass."""
    x, x_adv = result.x[:1], result.x_adv[:1]
    maps = first_image_ssim_maps(result)
    before, after = first_image_predictions(model, result, top)
    return Measured(
        before,
        after,
        compare_images(x, x_adv, ssim_maps=maps)[0],
        bool(png_still_adversarial(model, x_adv, result.labels[:1], result.target)[0]),
        maps[0].permute(1, 2, 0).numpy().astype(np.float32),
    )


def build_report(outcome: RunOutcome, top: int = 5, measured: Measured | None = None) -> dict[str, Any]:
    """Everything ``result.json`` holds for image 0 of the run.

    ``success`` is ``fooled`` (the prediction changed, or reached the target) **and**
    ``within_bound`` (every hard constraint of the attack holds on the re-measured distances);
    ``bounds`` lists each constraint judged, hard or soft, with its limit, value and excess.
    ``measured`` (from :func:`measure`, when the caller has it) is reused, not recomputed.
    """
    model, result = outcome.model, outcome.result
    m = measured or measure(model, result, top)
    before, after, metrics = m.before, m.after, m.metrics
    recipe = outcome.recipe.as_dict()
    recipe["params"] = json_safe(result.params)
    recipe["device"] = result.device
    recipe["versions"] = environment_versions()
    return {
        "image": {
            "name": outcome.image.loaded.name,
            "original_size": [outcome.image.loaded.height, outcome.image.loaded.width],
            "model_size": list(outcome.image.model_input.shape[:2]),
            "conversions": list(outcome.image.loaded.conversions),
        },
        "model": model.spec.id,
        "attack": result.attack_id,
        "prediction_before": [p.as_dict() for p in before],
        "prediction_after": [p.as_dict() for p in after],
        "success": bool(result.success[0]),
        "fooled": bool(result.fooled[0]),
        "within_bound": bool(result.within_bound[0]),
        "bounds": [bound_record(check, 0) for check in result.bounds],
        "png_still_adversarial": m.png_still_adversarial,
        "metrics": json_safe(metrics),
        "constraints": {k: json_safe(v[0]) for k, v in result.constraints.items()},
        "forward_passes": result.forward_passes,
        "backward_passes": result.backward_passes,
        "wall_time_s": result.wall_time,
        "cancelled": result.cancelled,
        "info": json_safe(result.info),
        "history": json_safe(result.history),
        "recipe": recipe,
    }


def bound_record(check: dict[str, Any], index: int) -> dict[str, Any]:
    """One judged constraint (see :func:`percviz.attacks.bounds.judge`) for image ``index``."""
    return json_safe(
        {
            "distance": check["distance"],
            "kind": check["kind"],
            "relation": check["relation"],
            "limit": check["limit"],
            "tolerance": check["tolerance"],
            "value": check["values"][index],
            "excess": check["excess"][index],
            "within": check["within"][index],
            "text": check["text"],
        }
    )
