"""The evaluation engine: every run on every image in batches, one row per (image, run), resumable."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from percviz.analysis.explain import explain_scores, gradcam_plus_plus
from percviz.analysis.metrics import perceptual_features, psnr, ssim_interior, ssim_map
from percviz.attacks.base import AttackResult, run_attack
from percviz.attacks.losses import is_adversarial
from percviz.device import out_of_memory
from percviz.errors import ParameterError
from percviz.evaluation.cache import PerModelCache
from percviz.evaluation.data import EvalImage, Skipped
from percviz.evaluation.plan import RunSpec
from percviz.evaluation.store import EXPLAIN_COLUMNS, RowStore, row_key
from percviz.images import quantise_8bit
from percviz.jsonsafe import json_safe
from percviz.models import Classifier
from percviz.progress import ProgressCallback, emit

EXPLAIN_THRESHOLD = 0.11
"""Noise threshold of Pochimireddy et al. 2021 Table I."""


# --------------------------------------------------------------------------- the engine


@dataclass
class Evaluation:
    """Rows of one evaluation (in run × image order), and how they were obtained."""

    rows: list[dict[str, Any]]
    computed: int = 0
    reused: int = 0
    cancelled: bool = False
    skipped: list[Skipped] = field(default_factory=list)
    explain_available: bool = False


def evaluate(
    model: Classifier,
    images: Sequence[EvalImage],
    runs: Sequence[RunSpec],
    *,
    seed: int = 0,
    batch: int = 8,
    store: RowStore | str | Path | None = None,
    explain: bool = True,
    progress: ProgressCallback | None = None,
) -> Evaluation:
    """Run every ``run`` on every image, ``batch`` images per pass; rows already in ``store`` are reused.

    Progress records (the callback may return ``False`` to cancel):
    ``{"stage": "start", "total", "reused"}`` once; ``{"stage": "iteration", "attack", "iteration",
    "total", ...}`` for each attack iteration; ``{"stage": "row", "done", "total", "row"}`` after each
    finished image. A cancelled batch leaves no rows; finished rows stay in the store.
    """
    if batch < 1:
        raise ParameterError(f"batch must be at least 1; got {batch}.")
    names = [im.name for im in images]
    if len(set(names)) != len(names):
        raise ParameterError("Image names must be unique within an evaluation.")
    rowstore = RowStore(store) if isinstance(store, str | Path) else store
    explainer = explainability_scorer() if explain else None
    todo: list[tuple[RunSpec, list[EvalImage]]] = []
    reused = 0
    for run in runs:
        pending = [
            im for im in images if rowstore is None or row_key(model.spec.id, seed, im, run) not in rowstore
        ]
        reused += len(images) - len(pending)
        todo.append((run, pending))
    total = len(images) * len(runs)
    ev = Evaluation([], reused=reused, explain_available=explain)
    if emit(progress, {"stage": "start", "total": total, "reused": reused}):
        ev.cancelled = True
    done = reused
    fresh: dict[str, dict[str, Any]] = {}
    for run, pending in todo:
        for start in range(0, len(pending), batch):
            if ev.cancelled:
                break
            chunk = pending[start : start + batch]
            rows = run_unit(model, chunk, run, seed, explainer, progress)
            if rows is None:
                ev.cancelled = True
                break
            for row in rows:
                if rowstore is not None:
                    rowstore.append(row)
                fresh[row["key"]] = row
                ev.computed += 1
                done += 1
                if emit(progress, {"stage": "row", "done": done, "total": total, "row": row}):
                    ev.cancelled = True
    for run in runs:
        for im in images:
            key = row_key(model.spec.id, seed, im, run)
            found = fresh.get(key) or (rowstore.get(key) if rowstore is not None else None)
            if found is not None:
                ev.rows.append(found)
    return ev


def run_unit(
    model: Classifier,
    chunk: Sequence[EvalImage],
    run: RunSpec,
    seed: int,
    explainer: Callable[..., list[dict[str, float | None]]] | None,
    progress: ProgressCallback | None,
) -> list[dict[str, Any]] | None:
    """One work unit (a batch of images × one attack × one parameter point): its rows, or ``None``
    when cancelled. The in-process loop and the Ray workers (:mod:`percviz.evaluation.cluster`) both call it.

    A batch the device has no memory for is retried as two halves, down to one image, whose
    out-of-memory error is raised (the Ray engine turns it into an error row). Rows of a split batch
    can differ from the unsplit batch's by float32 rounding (batched kernels accumulate differently).
    """

    def inner(record: dict[str, Any]) -> bool | None:
        if progress is None:
            return None
        return progress({"stage": "iteration", "attack": run.attack, **record})

    try:
        x = torch.from_numpy(np.stack([im.pixels for im in chunk])).permute(0, 3, 1, 2).contiguous()
        started = time.perf_counter()
        result = run_attack(run.attack, model, x.to(model.device), run.params, seed=seed, progress=inner)
        if result.cancelled:
            return None
        rows = result_rows(model, result, chunk, seed, explainer=explainer)
    except RuntimeError as exc:
        if len(chunk) == 1 or not out_of_memory(exc):
            raise
        half = (len(chunk) + 1) // 2
        first = run_unit(model, chunk[:half], run, seed, explainer, progress)
        second = None if first is None else run_unit(model, chunk[half:], run, seed, explainer, progress)
        return None if first is None or second is None else first + second
    extra = (time.perf_counter() - started - result.wall_time) / len(chunk)
    for row in rows:
        row["metrics_time_s"] = extra
    return rows


@torch.no_grad()
def result_rows(
    model: Classifier,
    result: AttackResult,
    images: Sequence[EvalImage],
    seed: int,
    *,
    explainer: Callable[..., list[dict[str, float | None]]] | None = None,
) -> list[dict[str, Any]]:
    """One row per image of an attack result (all per-image columns of the evaluation)."""
    n = len(images)
    x, x_adv = result.x.to(model.device), result.x_adv.to(model.device)
    originals = _originals(model, x, images)
    # One forward for x_adv and its 8-bit copy (the re-check of checks.png_still_adversarial).
    logits = model(torch.cat([x_adv, quantise_8bit(x_adv)])).float().cpu()
    p_after = torch.softmax(logits[:n], 1)
    p_before = torch.stack([originals[i][0] for i in range(n)])
    png_ok = is_adversarial(logits[n:], result.labels.cpu(), result.target)
    x64, a64 = x.double().cpu(), x_adv.double().cpu()
    smap = ssim_map(x64, a64)
    ssim_v = ssim_interior(smap).mean(dim=(-2, -1)).mean(dim=1)
    psnr_v = psnr(x64, a64)
    phi_adv = _self_features(model, x_adv).cpu()
    self_d = torch.stack([(originals[i][1] - phi_adv[i]).norm() for i in range(n)]).double()  # NaN: none
    scores = (
        explainer(model, x, smap, result.labels, [im.sha256 for im in images])
        if explainer is not None
        else None
    )
    names = model.labels
    run = RunSpec(result.attack_id, result.params)
    rows = []
    for i, im in enumerate(images):
        before, after = int(result.labels[i]), int(result.adv_labels[i])
        c = result.constraints
        row: dict[str, Any] = {
            "key": row_key(model.spec.id, seed, im, run),
            "image": im.name,
            "image_sha256": im.sha256,
            "attack": run.attack,
            "params": {k: json_safe(v) for k, v in result.params.items()},
            "params_key": run.key,
            "model": model.spec.id,
            "seed": seed,
            "label_before": before,
            "class_before": names[before] if before < len(names) else str(before),
            "prob_before": float(p_before[i, before]),
            "label_after": after,
            "class_after": names[after] if after < len(names) else str(after),
            "prob_after": float(p_after[i, after]),
            "true_label": im.true_label,
            "success": bool(result.success[i]),
            "already_target": result.target is not None and before == result.target,  # left unchanged
            "fooled": before != after,
            "within_bound": bool(result.within_bound[i]),
            "bound_excess": max((b["excess"][i] for b in result.bounds if b["kind"] == "hard"), default=0.0),
            "png_still_adversarial": bool(png_ok[i]),
            "ssim": float(ssim_v[i]),
            "psnr": float(psnr_v[i]),
            "s1": float(c["s1"][i]),
            "s2": float(c["s2"][i]),
            "l0": float(c["l0"][i]),
            "l2": float(c["l2"][i]),
            "linf": float(c["linf"][i]),
            "l2_255": float(c["l2"][i]) * 255.0,
            "linf_255": float(c["linf"][i]) * 255.0,
            "lpips_self": float(self_d[i]),
            "forward_passes": result.forward_passes,
            "backward_passes": result.backward_passes,
            "passes": result.forward_passes + result.backward_passes,
            "wall_time_s": result.wall_time / len(images),
            "batch_size": len(images),
            "device": result.device,
        }
        if scores is not None:
            row.update(scores[i])
        rows.append(row)
    return rows


_ORIGINALS = PerModelCache(64)
_CAMS = PerModelCache(512)


def _self_features(model: Classifier, x: torch.Tensor) -> torch.Tensor:
    """φ of Laidlaw et al. (the model's own feature layers), ``N×D``; a model that exposes none (an
    own TorchScript or ONNX file) gives ``N×1`` NaN, so its ``lpips_self`` is written as null
    instead of refusing the whole evaluation."""
    if not getattr(model.spec, "feature_layers", ()):
        return torch.full((x.shape[0], 1), float("nan"))
    return perceptual_features(model, x)


def _originals(
    model: Classifier, x: torch.Tensor, images: Sequence[EvalImage]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Class probabilities and φ (Laidlaw et al. features) of each original, computed once per model
    and image content, each image alone: batched kernels round differently, and a row must not depend
    on which batch, run or worker first saw its image."""

    def original(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        one = x[i : i + 1]
        return torch.softmax(model(one).float(), 1)[0].cpu(), _self_features(model, one)[0].cpu()

    return [
        _ORIGINALS.get(model, (str(model.device), im.sha256), functools.partial(original, i))
        for i, im in enumerate(images)
    ]


def explainability_scorer() -> Callable[..., list[dict[str, float | None]]]:
    """Pochimireddy et al. 2021 §V-B scores at threshold 0.11 from :mod:`percviz.analysis.explain`.

    The GradCAM++ map of an original image does not depend on the attack, so it is computed once
    per (model, image content, class), each image alone (as :func:`_originals`), and kept (at most
    512 maps per model) for the other runs and probes.
    """

    def run(
        model: Classifier, x: torch.Tensor, smap: torch.Tensor, labels: torch.Tensor, keys: Sequence[str]
    ) -> list[dict[str, float | None]]:
        def cam(i: int, label: int) -> np.ndarray:
            return gradcam_plus_plus(model, x[i : i + 1], [label]).cam[0]

        cams = [
            _CAMS.get(model, (str(model.device), k, c), functools.partial(cam, i, c))
            for i, (k, c) in enumerate(zip(keys, labels.tolist(), strict=True))
        ]
        maps = smap.permute(0, 2, 3, 1).cpu().numpy()
        out = []
        for i, reference_cam in enumerate(cams):
            scores = explain_scores(maps[i], reference_cam, EXPLAIN_THRESHOLD)
            out.append({k: _none_if_nan(scores.get(k)) for k in EXPLAIN_COLUMNS})
        return out

    return run


def _none_if_nan(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value
