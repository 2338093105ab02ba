"""Transferability: adversarial examples made on one model, classified by others.

An example crafted with full gradient access to a *source* model is shown to *target* models
that the attack never saw (the black-box transfer setting). The transfer matrix holds, for each
source × target pair, the fooling rate of Pochimireddy, Siripuram, Channappayya (§V-A): the
fraction of images whose target prediction on the adversarial image differs from its prediction
on the clean image. The diagonal is the white-box fooling rate.

Models may differ in input size (EfficientNet-Lite0/1/2 take 224/240/260 pixels): each image is
fitted to the source's size and attacked there; for a target of another size, the clean and the
adversarial image are both resized the same way (bilinear, antialiased), so the only difference
the target sees is the perturbation.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from percviz.attacks.base import run_attack
from percviz.errors import ParameterError
from percviz.images import fit_to_model
from percviz.jsonsafe import json_safe
from percviz.models import Classifier, Prediction, predict
from percviz.progress import ProgressCallback

CSV_COLUMNS = ("source", "target", "image", "class_clean", "class_adversarial", "fooled")


@dataclass
class TransferMatrix:
    """Fooling rates of examples made on ``sources[i]`` when classified by ``targets[j]``.

    Attributes:
        fooling: ``S×T`` fraction of images whose target prediction changed (NaN where not run).
        fooled: ``S×T`` counts behind it; ``images`` the image names.
        white_box_success: per source, the attack's own success rate (bounds included).
        rows: one per (source, target, image) with the clean and adversarial classes.
    """

    sources: tuple[str, ...]
    targets: tuple[str, ...]
    attack: str
    params: dict[str, Any]
    images: tuple[str, ...]
    fooling: np.ndarray
    fooled: np.ndarray
    white_box_success: dict[str, float] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    cancelled: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the matrix as nested lists (``None`` where not run) and the per-image rows."""
        return {
            "attack": self.attack,
            "params": json_safe(self.params),
            "sources": list(self.sources),
            "targets": list(self.targets),
            "images": list(self.images),
            "fooling_rate": [[None if np.isnan(v) else float(v) for v in row] for row in self.fooling],
            "fooled": self.fooled.astype(int).tolist(),
            "white_box_success": self.white_box_success,
            "definition": "fraction of images whose target-model prediction on the adversarial image "
            "differs from its prediction on the clean image (both resized alike to the target's input)",
            "complete": not self.cancelled,
            "rows": self.rows,
        }

    def write(self, out_dir: str | Path, stem: str = "transfer") -> list[Path]:
        """``STEM.json`` (matrix + rows) and ``STEM.csv`` (per-image rows) in ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        json_path, csv_path = out / f"{stem}.json", out / f"{stem}.csv"
        json_path.write_text(json.dumps(json_safe(self.as_dict()), indent=2) + "\n", encoding="utf-8")
        with csv_path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows)
        return [json_path, csv_path]


def resize_batch(x: torch.Tensor, size: int) -> torch.Tensor:
    """``N×3×H×W`` → ``N×3×size×size`` (bilinear, antialiased; unchanged when already that size)."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(
        0, 1
    )


@torch.no_grad()
def classify(model: Classifier, x: torch.Tensor) -> torch.Tensor:
    """Predicted classes ``(N,)`` of ``model`` for ``x`` of any square size (resized to its input)."""
    return model(resize_batch(x, model.input_size).to(model.device)).argmax(1).cpu()


def top_predictions(
    models: Sequence[Classifier], x: torch.Tensor, top: int = 5
) -> dict[str, list[Prediction]]:
    """Top-``top`` of each model for one image ``1×3×H×W`` (resized to each model's input)."""
    return {m.spec.id: predict(m, resize_batch(x, m.input_size), top)[0] for m in models}


def transfer_matrix(
    models: Sequence[Classifier],
    images: Sequence[tuple[str, np.ndarray]],
    attack: str,
    params: dict[str, Any] | None = None,
    *,
    sources: Sequence[Classifier] | None = None,
    seed: int = 0,
    batch: int = 8,
    progress: ProgressCallback | None = None,
) -> TransferMatrix:
    """Attack every image on each source (default: every model) and classify by every model.

    Args:
        models: the target models (the columns).
        images: ``(name, pixels)`` with pixels ``H×W×3`` float32 in [0, 1], any size.
        attack, params: a registered attack and its parameters (validated by the registry).
        progress: receives ``{"stage": "transfer", "source", "done", "total"}`` per batch;
            returning ``False`` stops (the matrix keeps NaN for what did not run).
    """
    if not models or not images:
        raise ParameterError("A transfer matrix needs at least one model and one image.")
    if batch < 1:
        raise ParameterError(f"batch must be at least 1; got {batch}.")
    srcs = list(models if sources is None else sources)
    names = tuple(n for n, _ in images)
    fooled = np.zeros((len(srcs), len(models)))
    fooling = np.full((len(srcs), len(models)), np.nan)
    result = TransferMatrix(
        tuple(m.spec.id for m in srcs),
        tuple(m.spec.id for m in models),
        attack,
        dict(params or {}),
        names,
        fooling,
        fooled,
    )
    total = len(srcs) * len(images)
    done = 0
    for i, source in enumerate(srcs):
        successes = 0
        counts = np.zeros(len(models))
        for start in range(0, len(images), batch):
            chunk = images[start : start + batch]
            x = torch.stack(
                [torch.from_numpy(fit_to_model(p, source.input_size)).permute(2, 0, 1) for _, p in chunk]
            ).to(source.device)
            res = run_attack(attack, source, x, params, seed=seed)
            if res.cancelled:
                result.cancelled = True
                return result
            result.params = dict(res.params)
            successes += int(res.success.sum())
            x_cpu, adv_cpu = res.x.detach().cpu(), res.x_adv.detach().cpu()
            for j, target in enumerate(models):
                clean, adv = classify(target, x_cpu), classify(target, adv_cpu)
                changed = clean != adv
                counts[j] += int(changed.sum())
                labels = target.labels
                for k, (name, _) in enumerate(chunk):
                    result.rows.append(
                        {
                            "source": source.spec.id,
                            "target": target.spec.id,
                            "image": name,
                            "class_clean": labels[int(clean[k])],
                            "class_adversarial": labels[int(adv[k])],
                            "fooled": bool(changed[k]),
                        }
                    )
            done += len(chunk)
            if (
                progress is not None
                and progress({"stage": "transfer", "source": source.spec.id, "done": done, "total": total})
                is False
            ):
                result.cancelled = True
                return result
        fooled[i] = counts
        fooling[i] = counts / len(images)
        result.white_box_success[source.spec.id] = successes / len(images)
    return result
