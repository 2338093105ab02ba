"""The arrays behind every view of one original/adversarial pair.

Everything here is plain ``float32`` NumPy, ``H×W×3`` (or ``H×W``), on the CPU: cheap to cache in
an app session and to save. Views: original, adversarial, the perturbation centred at grey with
a stated gain, per-channel SSIM maps, per-channel absolute difference, adversarial magnification
of both images on one shared scale (Zhang et al. 2020 App. 1), GradCAM++ maps (alone or overlaid), and the
Pochimireddy et al. 2021 §V-B comparison of the noise map N with the CAM region G (TP/FP/FN colouring).
:func:`save_maps` writes the ``--maps`` files.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from percviz.analysis.colour import overlay
from percviz.analysis.explain import (
    CAM_THRESHOLD,
    NOISE_THRESHOLD,
    PairCams,
    cam_layer_of,
    cam_region,
    explain_pair,
    explain_report,
    noise_map,
)
from percviz.analysis.metrics import ssim_interior, ssim_map
from percviz.errors import PercvizError
from percviz.jsonsafe import json_safe

Source = Any  # an AttackResult, or a pair (x, x_adv) of tensors/arrays


# ----------------------------------------------------------------------------- conversions


def as_batch(image: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``H×W×3`` array, ``3×H×W`` or ``1×3×H×W`` tensor → ``1×3×H×W`` float32 CPU tensor (a copy)."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"Expected an H×W×3 array; got shape {image.shape}.")
        return torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)[None].contiguous()
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"Expected a tensor or an array; got {type(image).__name__}.")
    t = image.detach().float().cpu()
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[:2] != (1, 3):
        raise ValueError(f"Expected one RGB image (1×3×H×W); got {tuple(image.shape)}.")
    return t.clone()


def as_hwc(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """One image as an ``H×W×3`` float32 array."""
    return as_batch(image)[0].permute(1, 2, 0).numpy().astype(np.float32)


def _pair(source: Source, index: int) -> tuple[torch.Tensor, torch.Tensor, int | None]:
    """``(x, x_adv, adv_label)`` of image ``index`` from an AttackResult or an ``(x, x_adv)`` pair."""
    if hasattr(source, "x") and hasattr(source, "x_adv"):
        n = source.x.shape[0]
        if not 0 <= index < n:
            raise ValueError(f"Image index {index} outside the batch of {n}.")
        adv = int(source.adv_labels[index]) if getattr(source, "adv_labels", None) is not None else None
        return as_batch(source.x[index]), as_batch(source.x_adv[index]), adv
    if isinstance(source, tuple | list) and len(source) == 2:
        x, x_adv = source
        if isinstance(x, torch.Tensor) and x.ndim == 4:
            x, x_adv = x[index], x_adv[index]
        xb, ab = as_batch(x), as_batch(x_adv)
        if xb.shape != ab.shape:
            raise ValueError(f"Original {tuple(xb.shape)} and adversarial {tuple(ab.shape)} differ in shape.")
        return xb, ab, None
    raise TypeError(
        f"Expected an AttackResult or an (original, adversarial) pair; got {type(source).__name__}."
    )


# ----------------------------------------------------------------------------- single views


def nice_gain(linf: float, fill: float = 0.5) -> float:
    """The largest 1-2-5 gain with ``gain · linf ≤ fill`` (1 for a zero perturbation)."""
    if not linf > 0:
        return 1.0
    target = fill / linf
    exp = math.floor(math.log10(target))
    for mantissa in (5.0, 2.0, 1.0):
        gain = mantissa * 10.0**exp
        if gain <= target * (1 + 1e-9):
            return float(gain)
    return float(10.0**exp)


def perturbation_view(
    x: np.ndarray | torch.Tensor, x_adv: np.ndarray | torch.Tensor, gain: float | None = None
) -> tuple[np.ndarray, float]:
    """``0.5 + gain · (x_adv − x)`` clipped to [0, 1], and the gain used.

    ``gain=None`` picks the largest 1-2-5 value that keeps the perturbation inside [0, 1]
    (so nothing is clipped); state it with the view ("perturbation × gain, grey = 0").
    """
    delta = as_hwc(x_adv).astype(np.float64) - as_hwc(x).astype(np.float64)
    if gain is None:
        gain = nice_gain(float(np.abs(delta).max()))
    if not (math.isfinite(gain) and gain > 0):
        raise ValueError(f"gain must be a positive finite number; got {gain}.")
    return np.clip(0.5 + gain * delta, 0.0, 1.0).astype(np.float32), float(gain)


def ssim_maps(x: np.ndarray | torch.Tensor, x_adv: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per-channel SSIM maps ``H×W×3`` (scikit-image's full map, Gaussian σ 1.5, data range 1)."""
    m = ssim_map(as_batch(x).double(), as_batch(x_adv).double())
    return m[0].permute(1, 2, 0).numpy().astype(np.float32)


def abs_diff(x: np.ndarray | torch.Tensor, x_adv: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per-channel absolute difference ``|x_adv − x|`` ``H×W×3`` in [0, 1] units."""
    return np.abs(as_hwc(x_adv).astype(np.float64) - as_hwc(x).astype(np.float64)).astype(np.float32)


def magnified_pair(
    x: np.ndarray | torch.Tensor,
    x_adv: np.ndarray | torch.Tensor,
    device: torch.device | str | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Adversarial magnification of each image (Zhang et al. 2020 App. 1) and their shared (low, high).

    Computed on ``device`` (e.g. the model's GPU) when given; results come back to the CPU.
    """
    from percviz.analysis.magnification import magnify, shared_scale

    batch = torch.cat([as_batch(x), as_batch(x_adv)])
    mags = magnify(batch.to(device) if device is not None else batch).cpu()
    a, b = mags[0:1], mags[1:2]
    low, high = shared_scale([a, b])
    return as_hwc(a), as_hwc(b), (float(low), float(high))


# ----------------------------------------------------------------------------- all views


class _ViewMethods:
    """What every holder of a pair's view arrays offers on top of them (:class:`ViewArrays`,
    :class:`LazyViews`)."""

    original: np.ndarray
    adversarial: np.ndarray
    ssim_map: np.ndarray
    cams: PairCams

    @property
    def ssim(self) -> float:
        """Mean SSIM over :func:`~percviz.analysis.metrics.ssim_interior`, as scikit-image averages."""
        return float(ssim_interior(self.ssim_map, channels_last=True).mean())

    def cam_overlay(
        self, which: str = "original", alpha: float = 0.45, *, shared: bool = False
    ) -> np.ndarray:
        """CAM ``which`` ∈ {original, adversarial, adversarial_original_class} over its image.

        ``shared=False`` uses the map min–max normalised on its own; ``shared=True`` the raw map on
        the scale shared by all three (:meth:`PairCams.shared`), so magnitudes stay comparable.
        """
        names = ("original", "adversarial", "adversarial_original_class")
        if which not in names:
            raise ValueError(f"which must be one of {', '.join(names)}; got {which!r}.")
        cam = self.cams.shared()[names.index(which)] if shared else getattr(self.cams, which)
        base = self.original if which == "original" else self.adversarial
        return overlay(base, cam, alpha)


@dataclass(frozen=True)
class ViewArrays(_ViewMethods):
    """Every view's array for one pair (``H×W×3`` or ``H×W`` float32; masks bool)."""

    original: np.ndarray
    adversarial: np.ndarray
    perturbation: np.ndarray
    perturbation_gain: float
    ssim_map: np.ndarray
    diff: np.ndarray
    cams: PairCams
    noise: np.ndarray
    region: np.ndarray
    explain: dict[str, Any]
    magnified_original: np.ndarray | None = None
    magnified_adversarial: np.ndarray | None = None
    magnification_scale: tuple[float, float] | None = None


VIEW_PARTS = ("ssim_map", "diff", "cams", "explain", "magnification")
"""The parts :class:`LazyViews` computes on first use (the perturbation is computed at once)."""


class LazyViews(_ViewMethods):
    """The view arrays of one pair, each part computed the first time something reads it, then kept.

    The same attributes as :class:`ViewArrays`, from the same functions (so the numbers are
    identical). The first screen of a result needs only ``original``, ``adversarial`` and the
    ``perturbation`` (computed here, milliseconds); the SSIM maps (or the ones given), the
    difference, GradCAM++ (one batched call), the noise-vs-CAM comparison and the adversarial
    magnification wait until a view or a download asks. Thread-safe: each part has its own lock,
    so a part being computed never blocks another part, and two readers never compute one twice.
    """

    def __init__(
        self,
        source: Source,
        model: torch.nn.Module,
        index: int = 0,
        *,
        gain: float | None = None,
        noise_threshold: float = NOISE_THRESHOLD,
        cam_threshold: float = CAM_THRESHOLD,
        ssim: np.ndarray | None = None,
    ) -> None:
        self._x, self._x_adv, self._adv_label = _pair(source, index)
        self._label = _known_label(source, index)
        self._model = model
        self.labels = _label_names(model)
        """The model's class names (None when it has none), for the views' titles."""
        self._thresholds = (noise_threshold, cam_threshold)
        self.original = as_hwc(self._x)
        self.adversarial = as_hwc(self._x_adv)
        self.perturbation, self.perturbation_gain = perturbation_view(self._x, self._x_adv, gain)
        self._parts: dict[str, Any] = {} if ssim is None else {"ssim_map": ssim}
        self._locks = {name: threading.Lock() for name in VIEW_PARTS}

    def ready(self, part: str) -> bool:
        """Whether ``part`` (one of :data:`VIEW_PARTS`) is computed already."""
        if part not in VIEW_PARTS:
            raise ValueError(f"part must be one of {', '.join(VIEW_PARTS)}; got {part!r}.")
        return part in self._parts

    def unavailable(self, part: str) -> str | None:
        """Why ``part`` cannot be computed for this model (one sentence), or None when it can:
        GradCAM++ (and the noise-vs-CAM comparison built on it) needs a layer of feature maps."""
        if part in ("cams", "explain") and "cams" not in self._parts:
            try:
                cam_layer_of(self._model)
            except PercvizError as exc:
                return str(exc)
        return None

    def compute(self, part: str) -> None:
        """Compute ``part`` (one of :data:`VIEW_PARTS`) now if it is not yet (a view about to open)."""
        if not self.ready(part):
            self._part(part)

    def _part(self, name: str) -> Any:
        if name not in self._parts:
            with self._locks[name]:
                if name not in self._parts:
                    self._parts[name] = getattr(self, f"_compute_{name}")()
        return self._parts[name]

    def _compute_ssim_map(self) -> np.ndarray:
        return ssim_maps(self._x, self._x_adv)

    def _compute_diff(self) -> np.ndarray:
        return abs_diff(self._x, self._x_adv)

    def _compute_cams(self) -> PairCams:
        return explain_pair(self._model, self._x, self._x_adv, label=self._label, adv_label=self._adv_label)

    def _compute_explain(self) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        noise_threshold, cam_threshold = self._thresholds
        cam = self.cams.original
        return (
            noise_map(self.ssim_map, noise_threshold),
            cam_region(cam, cam_threshold),
            explain_report(self.ssim_map, cam, noise_threshold, cam_threshold),
        )

    def _compute_magnification(self) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
        device = next(iter(self._model.buffers()), torch.empty(0)).device
        return magnified_pair(self._x, self._x_adv, device)

    @property
    def ssim_map(self) -> np.ndarray:  # type: ignore[override]
        return cast("np.ndarray", self._part("ssim_map"))

    @property
    def diff(self) -> np.ndarray:
        return cast("np.ndarray", self._part("diff"))

    @property
    def cams(self) -> PairCams:  # type: ignore[override]
        return cast("PairCams", self._part("cams"))

    @property
    def noise(self) -> np.ndarray:
        return cast("np.ndarray", self._part("explain")[0])

    @property
    def region(self) -> np.ndarray:
        return cast("np.ndarray", self._part("explain")[1])

    @property
    def explain(self) -> dict[str, Any]:
        return cast("dict[str, Any]", self._part("explain")[2])

    @property
    def magnified_original(self) -> np.ndarray:
        return cast("np.ndarray", self._part("magnification")[0])

    @property
    def magnified_adversarial(self) -> np.ndarray:
        return cast("np.ndarray", self._part("magnification")[1])

    @property
    def magnification_scale(self) -> tuple[float, float]:
        return cast("tuple[float, float]", self._part("magnification")[2])

    def complete(self, magnification: bool = True) -> ViewArrays:
        """Every part computed, as a :class:`ViewArrays` (``magnification=False`` leaves it out)."""
        mag = self._part("magnification") if magnification else (None, None, None)
        return ViewArrays(
            original=self.original,
            adversarial=self.adversarial,
            perturbation=self.perturbation,
            perturbation_gain=self.perturbation_gain,
            ssim_map=self.ssim_map,
            diff=self.diff,
            cams=self.cams,
            noise=self.noise,
            region=self.region,
            explain=self.explain,
            magnified_original=mag[0],
            magnified_adversarial=mag[1],
            magnification_scale=mag[2],
        )


Views = ViewArrays | LazyViews
"""Either holder of a pair's view arrays: what the figures take."""


def _known_label(source: Source, index: int) -> int | None:
    """The original's predicted class when the run already knows it (its label logits), else None."""
    logits = getattr(source, "logits", None)
    return int(logits[index].argmax()) if isinstance(logits, torch.Tensor) else None


def compute_views(
    source: Source,
    model: torch.nn.Module,
    index: int = 0,
    *,
    gain: float | None = None,
    noise_threshold: float = NOISE_THRESHOLD,
    cam_threshold: float = CAM_THRESHOLD,
    magnification: bool = True,
    ssim: np.ndarray | None = None,
) -> ViewArrays:
    """All view arrays of image ``index`` of an AttackResult (or of an ``(x, x_adv)`` pair).

    GradCAM++: original for its predicted class, adversarial for its new class and for the
    original class (one batched call; the classes come from the run's own logits when it has
    them). ``magnification=False`` skips the bilateral filters. ``ssim``: the pair's ``H×W×3``
    SSIM map when already computed (:func:`percviz.pipeline.measure`).
    """
    lazy = LazyViews(
        source,
        model,
        index,
        gain=gain,
        noise_threshold=noise_threshold,
        cam_threshold=cam_threshold,
        ssim=ssim,
    )
    return lazy.complete(magnification)


MAP_FILES = {
    "ssim_map.npy": "per-channel SSIM map, H×W×3 (scikit-image full map, Gaussian σ 1.5, data range 1)",
    "diff.npy": "per-channel absolute difference |adversarial − original|, H×W×3, [0,1] units",
    "magnified_original.npy": "adversarial magnification (Zhang et al. 2020 App. 1) of the original, H×W×3, unbounded",
    "magnified_adversarial.npy": "adversarial magnification of the adversarial image, H×W×3, unbounded",
    "gradcam_original.npy": "GradCAM++ of the original for its predicted class, H×W, min–max to [0,1]",
    "gradcam_adversarial.npy": "GradCAM++ of the adversarial image for its new class, H×W, min–max to [0,1]",
    "gradcam_adversarial_original_class.npy": "GradCAM++ of the adversarial image for the original class, H×W",
    "gradcam_raw.npy": "raw GradCAM++ (before min–max) 3×H×W: original, adversarial, adversarial@original class",
    "perturbation.npy": "0.5 + gain·(adversarial − original), clipped, H×W×3 (gain in maps.json)",
}


def save_maps(source: Source, model: torch.nn.Module, out_dir: str | Path, index: int = 0) -> dict[str, Path]:
    """Write the ``--maps`` files for image ``index`` into ``out_dir``; return their paths.

    ``ssim_map.npy``, ``diff.npy``, ``magnified_original.npy``, ``magnified_adversarial.npy``,
    ``gradcam_original.npy``, ``gradcam_adversarial.npy`` (float32 ``H×W(×3)``), ``explain.json``
    (Pochimireddy et al. 2021 §V-B scores at 0.11 and the threshold curve), plus ``maps.json`` describing each
    array (shape, meaning, the magnification's shared display scale, the perturbation gain) and
    three extra arrays (CAM of the adversarial for the original class, raw CAMs, perturbation).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    views = compute_views(source, model, index)
    c = views.cams
    arrays: dict[str, np.ndarray] = {
        "ssim_map.npy": views.ssim_map,
        "diff.npy": views.diff,
        "magnified_original.npy": views.magnified_original,  # type: ignore[dict-item]
        "magnified_adversarial.npy": views.magnified_adversarial,  # type: ignore[dict-item]
        "gradcam_original.npy": c.original,
        "gradcam_adversarial.npy": c.adversarial,
        "gradcam_adversarial_original_class.npy": c.adversarial_original_class,
        "gradcam_raw.npy": np.stack([c.raw_original, c.raw_adversarial, c.raw_adversarial_original_class]),
        "perturbation.npy": views.perturbation,
    }
    paths: dict[str, Path] = {}
    for name, arr in arrays.items():
        path = out / name
        np.save(path, np.asarray(arr, dtype=np.float32))
        paths[name] = path
    labels = _label_names(model)
    report = dict(views.explain)
    report["original_class"] = _class_entry(c.label, labels)
    report["adversarial_class"] = _class_entry(c.adv_label, labels)
    paths["explain.json"] = out / "explain.json"
    paths["explain.json"].write_text(json.dumps(json_safe(report), indent=2) + "\n", encoding="utf-8")
    index_doc = {
        "files": {
            name: {"shape": list(np.shape(arr)), "dtype": "float32", "meaning": MAP_FILES[name]}
            for name, arr in arrays.items()
        },
        "perturbation_gain": views.perturbation_gain,
        "magnification_shared_scale": list(views.magnification_scale or ()),
        "ssim": views.ssim,
    }
    paths["maps.json"] = out / "maps.json"
    paths["maps.json"].write_text(json.dumps(json_safe(index_doc), indent=2) + "\n", encoding="utf-8")
    return paths


def _label_names(model: torch.nn.Module) -> list[str] | None:
    try:
        names = cast("Sequence[str] | None", model.labels)
    except Exception:
        return None
    return list(names) if names is not None else None


def _class_entry(index: int, labels: list[str] | None) -> dict[str, Any]:
    name = labels[index] if labels is not None and 0 <= index < len(labels) else str(index)
    return {"index": int(index), "label": name}
