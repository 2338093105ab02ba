"""Dataset numbers and sweeps — the one engine behind ``percviz evaluate`` and the Sweep/Evaluate pages.

What it computes:

- per image and attack run: prediction before/after, success, SSIM, PSNR, S1, S2, L0/L2/L∞,
  the self-bounded perceptual distance (Laidlaw et al. 2021) (``lpips_self``), whether the 8-bit PNG is still adversarial,
  passes, wall time, and (unless ``explain=False``) the Pochimireddy et al. 2021 §V-B :mod:`percviz.analysis.explain`
  explainability scores at noise threshold 0.11 (precision, recall, IOU, IOU-outside);
- per run (attack + parameters): the fooling rate of Pochimireddy et al. 2021 §V-A, the success probability
  ``P_suc``, the conditional mean distortion ``D̄`` (mean L2 over successes) and the operating
  characteristic ``P(D)`` of Zhang et al. 2020 §5.1 eq. 20–21, and mean SSIM / PSNR / LPIPS-self;
- matched quality (Pochimireddy et al. 2021 Tables II–III): bisection on each attack's strength parameter until the
  mean SSIM (or PSNR) hits a target, then the fooling rate there (:func:`match_quality`);
- the ε1×ε2 grid of Pochimireddy et al. 2021 Fig. 1 (:func:`grid_sweep`) and strength-vs-metric curves of
  Fig. 6–9 (:func:`curve_sweep`).

Rows can be appended to a JSONL file as they finish (:class:`RowStore`); a later call with the same
store skips every (model, seed, image, attack, parameters) row already there, so an interrupted
evaluation resumes where it stopped. Progress goes through one callback ``(record) -> bool | None``;
returning ``False`` cancels (rows already finished are kept). No printing here: the CLI draws the
progress bar, the app its own.

Images are batched ``batch`` at a time through :func:`percviz.attacks.run_attack`; attacks with
random starts draw their noise per batch, so their rows depend (slightly) on the batch composition.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from percviz.analysis.explain import explain_scores, gradcam_plus_plus
from percviz.analysis.metrics import SSIM_RADIUS, perceptual_features, psnr, ssim, ssim_map
from percviz.attacks.base import AttackResult, get_attack, run_attack
from percviz.device import out_of_memory
from percviz.errors import ImageError, ParameterError
from percviz.images import ALLOWED_FORMATS, fit_to_model, load_image, to_numpy, to_uint8
from percviz.models import Classifier

ProgressCallback = Callable[[dict[str, Any]], bool | None]
QualityMetric = Literal["ssim", "psnr"]

EXPLAIN_THRESHOLD = 0.11
"""Noise threshold of Pochimireddy et al. 2021 Table I."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")

CSV_COLUMNS = (
    "image",
    "attack",
    "params",
    "model",
    "seed",
    "label_before",
    "class_before",
    "prob_before",
    "label_after",
    "class_after",
    "prob_after",
    "true_label",
    "success",
    "fooled",
    "within_bound",
    "bound_excess",
    "png_still_adversarial",
    "ssim",
    "psnr",
    "s1",
    "s2",
    "l0",
    "l2",
    "linf",
    "l2_255",
    "linf_255",
    "lpips_self",
    "precision",
    "recall",
    "iou",
    "iou_outside",
    "fraction_perturbed",
    "forward_passes",
    "backward_passes",
    "passes",
    "wall_time_s",
    "batch_size",
    "image_sha256",
)
EXPLAIN_COLUMNS = ("precision", "recall", "iou", "iou_outside", "fraction_perturbed")


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class EvalImage:
    """One image as the model sees it.

    Attributes:
        name: file or sample name (unique within an evaluation).
        pixels: ``float32`` ``H×W×3`` in [0, 1] at the model's input size.
        sha256: hash of ``pixels`` (so a changed file, crop or size is recomputed on resume).
        true_label: ground-truth class when known (for ``P_suc`` over correctly classified images).
    """

    name: str
    pixels: np.ndarray
    sha256: str
    true_label: int | None = None

    @classmethod
    def from_pixels(cls, name: str, pixels: np.ndarray, true_label: int | None = None) -> EvalImage:
        arr = np.ascontiguousarray(pixels, dtype=np.float32)
        return cls(name, arr, hashlib.sha256(arr.tobytes()).hexdigest(), true_label)


@dataclass(frozen=True)
class Skipped:
    """A file of the folder that was not evaluated, with a one-line reason."""

    name: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "reason": self.reason}


def load_folder(
    folder: str | Path,
    size: int,
    *,
    crop_fraction: float = 1.0,
    true_labels: Mapping[str, int] | None = None,
    limit: int | None = None,
) -> tuple[list[EvalImage], list[Skipped]]:
    """Every image file of ``folder`` (sorted by name), fitted to the model's input ``size``.

    Bad files never stop the evaluation: they come back in the ``Skipped`` list with the reason.
    Files whose suffix is not an image suffix are skipped too (named, so nothing vanishes silently).

    Raises:
        ParameterError: ``folder`` is not a readable folder.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ParameterError(f"--images must be a folder; '{root}' is not one.")
    images: list[EvalImage] = []
    skipped: list[Skipped] = []
    for path in sorted(p for p in root.iterdir() if not p.name.startswith(".")):
        if path.is_dir():
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append(Skipped(path.name, f"not an image file name ({', '.join(ALLOWED_FORMATS)})"))
            continue
        if limit is not None and len(images) >= limit:
            break
        try:
            loaded = load_image(path)
            pixels = fit_to_model(loaded.pixels, size, crop_fraction)
        except (ImageError, ValueError, OSError) as exc:
            skipped.append(Skipped(path.name, " ".join(str(exc).split())))
            continue
        label = None if true_labels is None else true_labels.get(path.name, true_labels.get(path.stem))
        images.append(EvalImage.from_pixels(path.name, pixels, label))
    return images, skipped


def load_samples(
    size: int, names: Sequence[str] | None = None, *, crop_fraction: float = 1.0
) -> tuple[list[EvalImage], list[Skipped]]:
    """The bundled sample photos (all, or ``names``) fitted to ``size`` — a dataset that ships offline."""
    from percviz.images import load_sample, sample_names

    images: list[EvalImage] = []
    skipped: list[Skipped] = []
    for name in names or sample_names():
        try:
            pixels = fit_to_model(load_sample(name).pixels, size, crop_fraction)
        except (ImageError, ValueError) as exc:
            skipped.append(Skipped(name, " ".join(str(exc).split())))
            continue
        images.append(EvalImage.from_pixels(name, pixels))
    return images, skipped


def read_true_labels(path: str | Path) -> dict[str, int]:
    """``file,class_index`` lines (a header line and ``#`` comments allowed) → mapping."""
    out: dict[str, int] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ParameterError(f"Cannot read labels file '{path}': {exc.strerror or exc}.") from None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.replace("\t", ",").partition(",")
        try:
            out[name.strip()] = int(value.strip())
        except ValueError:
            if number == 1:
                continue
            raise ParameterError(
                f"Labels file '{path}', line {number}: expected 'file,class_index'."
            ) from None
    return out


@dataclass(frozen=True)
class RunSpec:
    """One attack with fully validated parameters (one group of the summary)."""

    attack: str
    params: Mapping[str, Any]

    @property
    def key(self) -> str:
        """Canonical parameter string (sorted JSON; ``inf`` as a string)."""
        return params_key(self.params)

    @property
    def label(self) -> str:
        return f"{self.attack}({self.key})"


def params_key(params: Mapping[str, Any]) -> str:
    return json.dumps({k: _json_value(v) for k, v in sorted(params.items())}, sort_keys=True)


def make_runs(
    attacks: Sequence[str],
    params: Mapping[str, Any] | None = None,
    sweep: Mapping[str, Sequence[Any]] | None = None,
) -> list[RunSpec]:
    """Attack × swept-value runs, each validated against the registry schema.

    ``params`` and ``sweep`` names may be plain (``eps``: applied to every attack that has that
    parameter) or scoped (``pgd.eps``: that attack only). A name no selected attack accepts is an
    error listing the valid names. Several swept names give their Cartesian product.
    """
    params, sweep = dict(params or {}), dict(sweep or {})
    if not attacks:
        raise ParameterError("evaluate needs at least one --attack.")
    specs = [get_attack(a) for a in attacks]
    for name in [*params, *sweep]:
        attack, _, plain = name.rpartition(".")
        owners = [s for s in specs if (not attack or s.id == attack) and plain in s.param_names()]
        if not owners:
            valid = sorted({n for s in specs for n in s.param_names()})
            raise ParameterError(
                f"No selected attack has a parameter '{name}'; valid names: {', '.join(valid)}."
            )
    runs: list[RunSpec] = []
    for spec in specs:
        fixed = scoped_params(params, spec.id, spec.param_names())
        axes = scoped_params(sweep, spec.id, spec.param_names())
        combos: list[dict[str, Any]] = [{}]
        for name, values in axes.items():
            if not values:
                raise ParameterError(f"--sweep {name} needs at least one value.")
            combos = [{**c, name: v} for c in combos for v in values]
        for combo in combos:
            runs.append(RunSpec(spec.id, spec.validate({**fixed, **combo})))
    return runs


def scoped_params(values: Mapping[str, Any], attack: str, names: Sequence[str]) -> dict[str, Any]:
    """The entries of ``values`` that apply to ``attack``: plain names it has, and ``attack.name``."""
    plain = {k: v for k, v in values.items() if "." not in k and k in names}
    scoped = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith(f"{attack}.")}
    return {**plain, **scoped}


# --------------------------------------------------------------------------- persistence


class RowStore:
    """Rows appended one JSON line each (flushed), so a killed run keeps what it finished.

    A torn last line (killed mid-write) is ignored on reading.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and "key" in row:
                    self.rows[row["key"]] = row

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def get(self, key: str) -> dict[str, Any] | None:
        return self.rows.get(key)

    def append(self, row: dict[str, Any]) -> None:
        self.rows[row["key"]] = row
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
            fh.flush()


def row_key(model_id: str, seed: int, image: EvalImage, run: RunSpec) -> str:
    return json.dumps([model_id, seed, image.name, image.sha256, run.attack, run.key])


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
    explainer = _explainer() if explain else None
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
    if _emit(progress, {"stage": "start", "total": total, "reused": reused}):
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
                if _emit(progress, {"stage": "row", "done": done, "total": total, "row": row}):
                    ev.cancelled = True
    for run in runs:
        for im in images:
            key = row_key(model.spec.id, seed, im, run)
            row = fresh.get(key) or (rowstore.get(key) if rowstore is not None else None)
            if row is not None:
                ev.rows.append(row)
    return ev


def _emit(progress: ProgressCallback | None, record: dict[str, Any]) -> bool:
    """Send a record; True when the receiver asked to cancel."""
    return progress is not None and progress(record) is False


def run_unit(
    model: Classifier,
    chunk: Sequence[EvalImage],
    run: RunSpec,
    seed: int,
    explainer: Callable[..., list[dict[str, float | None]]] | None,
    progress: ProgressCallback | None,
) -> list[dict[str, Any]] | None:
    """One work unit (a batch of images × one attack × one parameter point): its rows, or ``None``
    when cancelled. The in-process loop and the Ray workers (:mod:`percviz.ray_engine`) both call it.

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
    quantised = torch.from_numpy(to_uint8(to_numpy(result.x_adv)).astype(np.float32) / 255.0)
    quantised = quantised.permute(0, 3, 1, 2).to(model.device)
    originals = _originals(model, x, images)
    probs = torch.softmax(model(torch.cat([x_adv, quantised])).float(), 1).cpu()
    p_before = torch.stack([originals[i][0] for i in range(n)])
    p_after, png_pred = probs[:n], probs[n:].argmax(1)
    target = result.params.get("target")
    png_ok = png_pred == target if target is not None else png_pred != result.labels
    x64, a64 = x.double().cpu(), x_adv.double().cpu()
    smap = ssim_map(x64, a64)
    r = SSIM_RADIUS
    ssim_v = smap[..., r:-r, r:-r].mean(dim=(-2, -1)).mean(dim=1)
    psnr_v = psnr(x64, a64)
    phi_adv = perceptual_features(model, x_adv).cpu()
    self_d = torch.stack([(originals[i][1] - phi_adv[i]).norm() for i in range(n)]).double()
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
            "params": {k: _json_value(v) for k, v in result.params.items()},
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


_ORIGINALS = PerModelCache(64)
_CAMS = PerModelCache(512)


def _originals(
    model: Classifier, x: torch.Tensor, images: Sequence[EvalImage]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Class probabilities and φ (Laidlaw et al. features) of each original, computed once per model
    and image content, each image alone: batched kernels round differently, and a row must not depend
    on which batch, run or worker first saw its image."""

    def original(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        one = x[i : i + 1]
        return torch.softmax(model(one).float(), 1)[0].cpu(), perceptual_features(model, one)[0].cpu()

    return [
        _ORIGINALS.get(model, (str(model.device), im.sha256), functools.partial(original, i))
        for i, im in enumerate(images)
    ]


def _explainer() -> Callable[..., list[dict[str, float | None]]]:
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


# --------------------------------------------------------------------------- summaries


def operating_characteristic(
    distortion: Sequence[float], success: Sequence[bool], n_total: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Zhang et al. 2020 eq. 21: ``P(D) = |{x ∈ X_suc : D(x) ≤ D}| / N`` as a step function.

    Returns the sorted distortions of the successes (with a leading 0) and ``P`` at each of them;
    ``P`` rises from ``P(0)`` (0 unless some success has no distortion) to ``P_suc`` at ``D_max``.
    """
    d = np.asarray(distortion, dtype=np.float64)
    s = np.asarray(success, dtype=bool)
    n = len(d) if n_total is None else n_total
    if n == 0:
        return np.zeros(1), np.zeros(1)
    ds = np.sort(d[s])
    grid = np.concatenate([[0.0], ds])
    p = np.searchsorted(ds, grid, side="right") / n
    return grid, p


def summarize_rows(rows: Sequence[Mapping[str, Any]], distortion: str = "l2") -> dict[str, Any]:
    """Dataset numbers of one group of rows (one attack with one parameter set, or an envelope).

    - ``fooling_rate`` (Pochimireddy et al. 2021 §V-A): fraction with prediction after ≠ before, over all images;
    - ``success_rate``: the attack's own success (reaches the target when targeted);
    - ``p_suc`` (Zhang et al. 2020 eq. 20): successes over ``X``, the correctly classified images when true
      labels are known (else all images, the model's prediction taken as the truth);
    - ``mean_distortion``: ``D̄``, the mean ``distortion`` column (L2, [0,1] units) over successes
      in ``X`` — conditional on success (``None`` when nothing succeeded);
    - ``operating_characteristic``: ``{"d": [...], "p": [...]}`` of eq. 21 over ``X``;
    - means of SSIM, PSNR (finite values; ``psnr_infinite`` counts unchanged images), LPIPS-self,
      explainability scores (defined values only), passes, wall time; fraction of successes whose
      8-bit PNG is still adversarial.
    """
    n = len(rows)
    if n == 0:
        return {"images": 0}
    in_x = [r for r in rows if r.get("true_label") is None or r["label_before"] == r["true_label"]]
    suc_x = [bool(r["success"]) for r in in_x]
    d_x = [float(r[distortion]) for r in in_x]
    successes = [r for r in rows if r["success"]]
    grid, p = operating_characteristic(d_x, suc_x)
    psnrs = [float(r["psnr"]) for r in rows]
    finite_psnr = [v for v in psnrs if math.isfinite(v)]
    out: dict[str, Any] = {
        "images": n,
        "correctly_classified": len(in_x),
        "fooling_rate": _mean(bool(r["fooled"]) for r in rows),
        "success_rate": _mean(bool(r["success"]) for r in rows),
        "within_bound_rate": _mean(bool(r.get("within_bound", True)) for r in rows),
        "p_suc": _mean(suc_x),
        "mean_distortion": _mean(d for d, s in zip(d_x, suc_x, strict=True) if s),
        "distortion": distortion,
        "operating_characteristic": {"d": grid.tolist(), "p": p.tolist()},
        "mean_ssim": _mean(float(r["ssim"]) for r in rows),
        "mean_psnr": _mean(finite_psnr),
        "psnr_infinite": len(psnrs) - len(finite_psnr),
        "mean_lpips_self": _mean(float(r["lpips_self"]) for r in rows),
        "mean_l2": _mean(float(r["l2"]) for r in rows),
        "mean_linf": _mean(float(r["linf"]) for r in rows),
        "png_still_adversarial": _mean(bool(r["png_still_adversarial"]) for r in successes),
        "mean_passes": _mean(float(r["passes"]) for r in rows),
        "mean_wall_time_s": _mean(float(r["wall_time_s"]) for r in rows),
    }
    for col in EXPLAIN_COLUMNS:
        values = [float(r[col]) for r in rows if r.get(col) is not None]
        if any(col in r for r in rows):
            out[f"mean_{col}"] = _mean(values)
            out[f"{col}_defined"] = len(values)
    return out


def summarize(rows: Sequence[Mapping[str, Any]], distortion: str = "l2") -> list[dict[str, Any]]:
    """One summary per (attack, parameters) group, in first-seen order, plus its identity."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["attack"], r["params_key"]), []).append(r)
    return [
        {"attack": a, "params": json.loads(k), **summarize_rows(g, distortion)}
        for (a, k), g in groups.items()
    ]


def envelope(rows: Sequence[Mapping[str, Any]], distortion: str = "l2") -> list[dict[str, Any]]:
    """Zhang et al. 2020 §5.1 protocol for distortion-targeting attacks run at several budgets.

    Per attack: an image counts as a success if any run succeeded on it, with the least distortion
    over its successful runs; then the usual statistics. Only attacks with more than one run appear.
    """
    by_attack: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    for r in rows:
        by_attack.setdefault(r["attack"], {}).setdefault(r["image"], []).append(r)
    out = []
    for attack, per_image in by_attack.items():
        if len({r["params_key"] for rs in per_image.values() for r in rs}) < 2:
            continue
        merged = []
        for rs in per_image.values():
            wins = [r for r in rs if r["success"]]
            best = (
                min(wins, key=lambda r: float(r[distortion]))
                if wins
                else max(rs, key=lambda r: float(r["ssim"]))
            )
            merged.append(best)
        out.append(
            {
                "attack": attack,
                "runs": len({r["params_key"] for r in rows if r["attack"] == attack}),
                **summarize_rows(merged, distortion),
            }
        )
    return out


def _mean(values: Iterable[float | bool]) -> float | None:
    vals = [float(v) for v in values]
    return float(np.mean(vals)) if vals else None


# --------------------------------------------------------------------------- matched quality


@dataclass
class MatchResult:
    """Outcome of :func:`match_quality` for one attack.

    ``value`` is the strength whose mean ``metric`` came closest to ``target``; ``achieved`` that
    mean; ``summary`` the dataset numbers there; ``probes`` every strength tried with its mean metric
    and fooling rate; ``converged`` whether ``|achieved − target| ≤ tol``.
    """

    attack: str
    param: str
    metric: str
    target: float
    value: float
    achieved: float
    converged: bool
    summary: dict[str, Any]
    probes: list[dict[str, float]]
    rows: list[dict[str, Any]]
    note: str = ""
    computed: int = 0
    reused: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "attack": self.attack,
            "param": self.param,
            "metric": self.metric,
            "target": self.target,
            "value": self.value,
            "achieved": self.achieved,
            "converged": self.converged,
            "fooling_rate": self.summary.get("fooling_rate"),
            "summary": self.summary,
            "probes": self.probes,
            "note": self.note,
            "rows_computed": self.computed,
            "rows_reused": self.reused,
        }


def strength_param(attack: str) -> str:
    """The strength parameter ``attack`` declares in the registry (larger = stronger).

    Norm-bounded attacks use their budget, the SSIM-ball attacks ``eps2``, the perceptual attacks
    their ``bound``; minimum-distortion attacks (C&W, DeepFool, min-norm) have no budget and
    declare their confidence ``kappa`` or ``overshoot``.
    """
    name = get_attack(attack).strength
    if name is None:
        from percviz.attacks import registry

        known = [k for k, s in registry().items() if s.strength is not None]
        raise ParameterError(
            f"Attack '{attack}' has no strength parameter for matched quality (known: {', '.join(known)})."
        )
    return name


_LABEL_EXTRAS = ("eps1", "smooth_alpha", "target")


def run_label(attack: str, params: Mapping[str, Any], *, with_attack: bool = True) -> str:
    """A run in a few characters, for legends, table rows and figure captions: ``pgd ε=0.01569``.

    The attack id (left out with ``with_attack=False``, e.g. under a title that names the attack),
    then, in schema order, its strength parameter (:attr:`AttackSpec.strength`) and whichever of
    ε₁, the smoothing α and the target class the run sets, written with each parameter's
    :meth:`Param.display_symbol`: ``pgap ε₁=0, ε₂=0.01``.
    """
    from percviz.attacks import registry

    spec = registry().get(attack)
    schema = {p.name: p for p in spec.params} if spec is not None else {}
    strength = spec.strength if spec is not None else None
    parts = [
        f"{schema[name].display_symbol() if name in schema else name}={_value_text(value)}"
        for name, value in params.items()
        if value is not None and (name == strength or name in _LABEL_EXTRAS)
    ]
    text = ", ".join(parts)
    return f"{attack} {text}".strip() if with_attack else text


def _value_text(value: Any) -> str:
    if isinstance(value, float):
        return "∞" if math.isinf(value) else f"{value:.4g}"
    return str(value)


def parse_match(text: str) -> tuple[QualityMetric, float]:
    """``"ssim=0.95"`` / ``"psnr=40"`` → ``("ssim", 0.95)``."""
    name, sep, value = text.partition("=")
    name = name.strip().lower()
    if not sep or name not in ("ssim", "psnr"):
        raise ParameterError(f"--match takes ssim=VALUE or psnr=VALUE; got '{text}'.")
    try:
        target = float(value)
    except ValueError:
        raise ParameterError(f"--match value must be a number; got '{value}'.") from None
    if (
        not math.isfinite(target)
        or (name == "ssim" and not 0.0 < target < 1.0)
        or (name == "psnr" and target <= 0)
    ):
        raise ParameterError(f"--match {name} target out of range: {target}.")
    return name, target  # type: ignore[return-value]


def match_quality(
    model: Classifier,
    images: Sequence[EvalImage],
    attack: str,
    *,
    metric: QualityMetric = "ssim",
    target: float = 0.95,
    params: Mapping[str, Any] | None = None,
    param: str | None = None,
    tol: float | None = None,
    max_evals: int = 12,
    seed: int = 0,
    batch: int = 8,
    store: RowStore | str | Path | None = None,
    explain: bool = False,
    tie_step: bool = True,
    progress: ProgressCallback | None = None,
) -> MatchResult:
    """Find the strength at which ``attack``'s mean ``metric`` over ``images`` equals ``target``.

    Pochimireddy et al. 2021 Tables II–III compare fooling rates at a fixed average SSIM / PSNR. The strength
    parameter (``param``, default the attack's declared strength) is searched in log space from its
    default, assuming quality falls as strength grows: outside a bracket, an extrapolation with
    ``1 − SSIM ∝ strength²`` (or RMS error ∝ strength for PSNR; the slope is re-estimated from the
    last two probes, jumps capped at ×16); inside, a safeguarded secant (regula falsi kept within
    10–90 % of the bracket). One probe usually lands close; three or four reach the tolerance.
    Each probe is a full (batched, resumable) evaluation. With ``tie_step`` (default) an iterative
    attack whose strength is ``eps`` and whose ``step_size`` is not given gets Madry et al.'s
    ``step_size = 2.5·eps/steps``, so the step follows the budget. ``tol`` defaults to
    ``max(2e-4, 0.05·(1 − target))`` for SSIM and 0.25 dB for PSNR.
    """
    name = param or strength_param(attack)
    spec = get_attack(attack)
    p = spec.param(name)
    if p.kind not in ("float", "int"):
        raise ParameterError(f"Strength parameter '{name}' of '{attack}' is not numeric.")
    if tol is None:
        tol = max(2e-4, 0.05 * (1.0 - target)) if metric == "ssim" else 0.25
    rowstore = RowStore(store) if isinstance(store, str | Path) else store
    base = dict(params or {})
    high = p.high if p.high is not None and math.isfinite(p.high) else 1e6
    low = max(p.low if p.low is not None else 0.0, high * 1e-7, 1e-9 if p.kind == "float" else 1.0)
    default = float(base.get(name, p.default if isinstance(p.default, int | float) else high / 10))
    probes: list[dict[str, Any]] = []
    cache: dict[float, tuple[float, list[dict[str, Any]]]] = {}
    cancelled = False
    counts = [0, 0]

    def probe(value: float) -> float | None:
        nonlocal cancelled
        value = float(round(value)) if p.kind == "int" else float(value)
        if value in cache:
            return cache[value][0]
        values = {**base, name: value}
        if tie_step and name == "eps" and "step_size" in spec.param_names() and "step_size" not in base:
            steps = int(
                values.get("steps", spec.param("steps").default if "steps" in spec.param_names() else 1)
            )
            values["step_size"] = min(2.5 * value / max(steps, 1), spec.param("step_size").high or math.inf)
        run = make_runs([attack], values)[0]
        ev = evaluate(
            model, images, [run], seed=seed, batch=batch, store=rowstore, explain=explain, progress=progress
        )
        counts[0] += ev.computed
        counts[1] += ev.reused
        if ev.cancelled or not ev.rows:
            cancelled = True
            return None
        s = summarize_rows(ev.rows)
        q = s["mean_ssim"] if metric == "ssim" else s["mean_psnr"]
        q = float(q) if q is not None else math.inf
        cache[value] = (q, ev.rows)
        probes.append({"value": value, metric: q, "fooling_rate": s["fooling_rate"]})
        if (
            progress is not None
            and progress({"stage": "probe", "attack": attack, "param": name, **probes[-1]}) is False
        ):
            cancelled = True
        return q

    slope_prior = 2.0 if metric == "ssim" else 1.0

    def y_of(q: float) -> float:
        """A quantity roughly linear in log(strength): log(1 − SSIM) (∝ ε²) or log RMS error (∝ ε)."""
        if metric == "ssim":
            return math.log(max(1.0 - q, 1e-12))
        return -q / 20.0 * math.log(10.0) if math.isfinite(q) else -50.0

    y_target = y_of(target)
    lo: tuple[float, float] | None = None  # (strength, y): too weak (quality above target)
    hi: tuple[float, float] | None = None  # too strong
    s = min(max(default if default > 0 else high / 100, low), high)
    q = probe(s)
    last: tuple[float, float] | None = None
    while q is not None and not cancelled and len(probes) < max_evals and abs(q - target) > tol:
        y = y_of(q)
        if q > target:
            lo = (s, y) if lo is None or s > lo[0] else lo
        else:
            hi = (s, y) if hi is None or s < hi[0] else hi
        if lo is not None and hi is not None:
            a, b = math.log(lo[0]), math.log(hi[0])
            t = (y_target - lo[1]) / (hi[1] - lo[1]) if hi[1] != lo[1] else 0.5
            cand = math.exp(a + min(max(t, 0.1), 0.9) * (b - a))
        else:
            slope = slope_prior
            if last is not None and last[0] != s:
                est = (y - last[1]) / (math.log(s) - math.log(last[0]))
                slope = est if est > 0.2 else slope_prior
            factor = math.exp((y_target - y) / slope)
            cand = min(max(s * min(max(factor, 1 / 16), 16.0), low), high)
        if p.kind == "int":
            cand = float(round(cand))
        if cand in cache or cand == s:
            break
        last = (s, y)
        s = cand
        q = probe(s)
    if not cache:
        raise ParameterError(f"Matched-quality search for '{attack}' was cancelled before any result.")
    best = min(cache, key=lambda v: abs(cache[v][0] - target))
    achieved, rows = cache[best]
    note = ""
    if cancelled:
        note = "cancelled"
    elif abs(achieved - target) > tol:
        note = (
            f"target {metric}={target} not reached within tolerance {tol:g} "
            f"in [{low:g}, {high:g}] after {len(probes)} probes"
        )
    return MatchResult(
        attack=attack,
        param=name,
        metric=metric,
        target=target,
        value=best,
        achieved=achieved,
        converged=abs(achieved - target) <= tol,
        summary=summarize_rows(rows),
        probes=probes,
        rows=rows,
        note=note,
        computed=counts[0],
        reused=counts[1],
    )


# --------------------------------------------------------------------------- sweeps


@dataclass
class CurveSweep:
    """Strength-vs-metric curves of Pochimireddy et al. 2021 Fig. 6–9: one summary per value of ``param``."""

    attack: str
    param: str
    values: list[float]
    points: list[dict[str, Any]]
    evaluation: Evaluation


def curve_sweep(
    model: Classifier,
    images: Sequence[EvalImage],
    attack: str,
    param: str,
    values: Sequence[float],
    *,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    batch: int = 8,
    store: RowStore | str | Path | None = None,
    explain: bool = False,
    progress: ProgressCallback | None = None,
) -> CurveSweep:
    """Evaluate ``attack`` at each ``param`` value; ``points[i]`` holds the summary at ``values[i]``
    (fooling rate, mean SSIM/PSNR, P_suc, D̄ …) with ``"value"`` added."""
    runs = make_runs([attack], params, {param: list(values)})
    ev = evaluate(
        model, images, runs, seed=seed, batch=batch, store=store, explain=explain, progress=progress
    )
    points = []
    for run in runs:
        group = [r for r in ev.rows if r["params_key"] == run.key]
        if group:
            points.append({"value": _json_value(run.params[param]), **summarize_rows(group)})
    return CurveSweep(attack, param, [float(v) for v in values], points, ev)


@dataclass
class GridCell:
    """One cell of :func:`grid_sweep`: the adversarial image's prediction and quality."""

    row_value: float
    col_value: float
    label: int
    class_name: str
    probability: float
    success: bool
    ssim: float
    psnr: float
    s1: float
    s2: float
    thumbnail: np.ndarray
    """``uint8`` ``h×w×3`` thumbnail of the adversarial image."""


@dataclass
class GridSweep:
    """Pochimireddy et al. 2021 Fig. 1: prediction and SSIM over a grid of two parameters (default ε1 × ε2)."""

    attack: str
    row_param: str
    col_param: str
    row_values: list[float]
    col_values: list[float]
    cells: list[list[GridCell]]
    original_label: int
    original_class: str
    cancelled: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "attack": self.attack,
            "rows": {"param": self.row_param, "values": self.row_values},
            "cols": {"param": self.col_param, "values": self.col_values},
            "original": {"label": self.original_label, "class": self.original_class},
            "cancelled": self.cancelled,
            "cells": [
                [{k: v for k, v in c.__dict__.items() if k != "thumbnail"} for c in row] for row in self.cells
            ],
        }


def grid_sweep(
    model: Classifier,
    image: np.ndarray | torch.Tensor,
    attack: str = "fpgap",
    rows: tuple[str, Sequence[float]] = ("eps1", (0.0, 0.01, 0.02, 0.05)),
    cols: tuple[str, Sequence[float]] = ("eps2", (0.005, 0.01, 0.02, 0.05)),
    *,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    thumbnail: int = 96,
    progress: ProgressCallback | None = None,
) -> GridSweep:
    """Run ``attack`` on one image for every (row value, col value) pair.

    ``image`` is ``H×W×3`` in [0, 1] or a ``1×3×H×W`` tensor at the model's size. Progress records
    ``{"stage": "cell", "done", "total", "row", "col"}`` (return ``False`` to cancel; the grid is
    then returned with the cells done so far, ``cancelled=True``).
    """
    x = _as_batch(image).to(model.device)
    row_name, row_values = rows
    col_name, col_values = cols
    with torch.no_grad():
        original = int(model(x).argmax(1)[0])
    names = model.labels
    grid: list[list[GridCell]] = []
    total = len(row_values) * len(col_values)
    done = 0
    cancelled = False
    for rv in row_values:
        line: list[GridCell] = []
        for cv in col_values:
            if cancelled:
                break
            run = make_runs([attack], {**dict(params or {}), row_name: rv, col_name: cv})[0]
            inner = (
                None
                if progress is None
                else (lambda rec: progress({"stage": "iteration", "attack": attack, **rec}))
            )
            res = run_attack(attack, model, x, run.params, seed=seed, progress=inner)
            if res.cancelled:
                cancelled = True
                break
            line.append(_cell(model, res, float(rv), float(cv), names, thumbnail))
            done += 1
            if _emit(progress, {"stage": "cell", "done": done, "total": total, "row": rv, "col": cv}):
                cancelled = True
        grid.append(line)
        if cancelled:
            break
    return GridSweep(
        attack,
        row_name,
        col_name,
        [float(v) for v in row_values],
        [float(v) for v in col_values],
        grid,
        original,
        names[original],
        cancelled,
    )


@torch.no_grad()
def _cell(
    model: Classifier, res: AttackResult, rv: float, cv: float, names: list[str], size: int
) -> GridCell:
    probs = torch.softmax(model(res.x_adv.to(model.device)).float(), 1)[0].cpu()
    label = int(res.adv_labels[0])
    thumb = torch.nn.functional.interpolate(res.x_adv, size=(size, size), mode="area")
    return GridCell(
        row_value=rv,
        col_value=cv,
        label=label,
        class_name=names[label],
        probability=float(probs[label]),
        success=bool(res.success[0]),
        ssim=float(ssim(res.x.double(), res.x_adv.double())[0]),
        psnr=float(psnr(res.x, res.x_adv)[0]),
        s1=float(res.constraints["s1"][0]),
        s2=float(res.constraints["s2"][0]),
        thumbnail=to_uint8(to_numpy(thumb)[0]),
    )


def _as_batch(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(image, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    return image if image.ndim == 4 else image[None]


# --------------------------------------------------------------------------- reports


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Per-image table: the fixed columns, then one ``param.NAME`` column per parameter."""
    pnames = sorted({k for r in rows for k in r.get("params", {})})
    header = [*CSV_COLUMNS, *(f"param.{n}" for n in pnames)]
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for r in rows:
            line = []
            for col in header:
                if col.startswith("param."):
                    line.append(_csv_value(r.get("params", {}).get(col[6:])))
                elif col == "params":
                    line.append(r.get("params_key", ""))
                else:
                    line.append(_csv_value(r.get(col)))
            writer.writerow(line)


def plot_report(
    out: str | Path,
    summaries: Sequence[Mapping[str, Any]],
    sweep_params: Sequence[str] = (),
) -> list[Path]:
    """PNG plots: fooling rate / mean SSIM / mean PSNR vs each swept parameter (one line per
    attack), mean SSIM vs fooling rate (Pochimireddy et al. 2021 Fig. 6), and P(D) per group (Zhang et al. 2020 Fig. 5–6)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    written: list[Path] = []
    for pname in sweep_params:
        for key, ylabel in (
            ("fooling_rate", "fooling rate"),
            ("mean_ssim", "mean SSIM"),
            ("mean_psnr", "mean PSNR (dB)"),
        ):
            fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
            for attack in dict.fromkeys(s["attack"] for s in summaries):
                pts = sorted(
                    (float(s["params"][pname]), s[key])
                    for s in summaries
                    if s["attack"] == attack
                    and pname in s["params"]
                    and s.get(key) is not None
                    and _is_number(s["params"][pname])
                )
                if pts:
                    ax.plot(*zip(*pts, strict=True), marker="o", label=attack)
            ax.set_xlabel(pname)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            fig.tight_layout()
            path = out / f"{key}_vs_{pname}.png"
            fig.savefig(path)
            plt.close(fig)
            written.append(path)
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for attack in dict.fromkeys(s["attack"] for s in summaries):
        pts = sorted(
            (s["fooling_rate"], s["mean_ssim"])
            for s in summaries
            if s["attack"] == attack and s.get("mean_ssim") is not None
        )
        ax.plot(*zip(*pts, strict=True), marker="o", label=attack)
    ax.set_xlabel("fooling rate")
    ax.set_ylabel("mean SSIM")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "ssim_vs_fooling_rate.png"
    fig.savefig(path)
    plt.close(fig)
    written.append(path)
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for s in summaries:
        oc = s.get("operating_characteristic") or {}
        if oc.get("d"):
            ax.step(oc["d"], oc["p"], where="post", label=run_label(str(s["attack"]), s.get("params") or {}))
    ax.set_xlabel("L2 distortion D ([0,1] units)")
    ax.set_ylabel("P(D)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    if len(summaries) <= 12:
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "operating_characteristic.png"
    fig.savefig(path)
    plt.close(fig)
    written.append(path)
    return written


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            repr(value)
            if math.isfinite(value)
            else ("inf" if value > 0 else ("-inf" if value < 0 else "nan"))
        )
    return str(value)


def strict_json(value: Any) -> Any:
    """NaN → None, ±inf → "inf"/"-inf", numpy scalars → Python (for a strict-JSON summary)."""
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value
