"""GradCAM++ heat maps and the explainability scores of Pochimireddy et al. 2021 §V-B.

GradCAM++ is computed by the ``grad-cam`` package (``pytorch_grad_cam.GradCAMPlusPlus``) at the
model's ``spec.cam_layer``. Thread safety: the package registers forward hooks on the
target layer, so it never runs on the shared, cached classifier. Each classifier gets one private
*CAM network*: a structural copy of ``model.net`` that shares every parameter and buffer tensor
(no extra weight memory) and whose target layer is wrapped in a tap. The package registers its
own hooks on that tap for each call and releases them before the call returns; calls on one
model are serialised by a per-model lock. The shared classifier never carries a hook, so
attacks running in other threads are unaffected.

Speed: the tap turns the target layer's output into a fresh leaf that requires grad,
so the backward pass runs only through the layers *after* the target layer (weights are frozen
and the input needs no gradient); the map is identical to the one obtained by back-propagating
to the input.

Explainability (Pochimireddy et al. 2021 §V-B): ``N = (1 − SSIM map) > noise threshold`` (channel mean, or one
channel), ``G = GradCAM++ > 0.75`` (normalised CAM of the original for its predicted class);
TP/FP/FN/TN, precision ``TP/(TP+FP)``, recall ``TP/(TP+FN)``, IOU ``TP/(TP+FP+FN)``, IOU-outside
``FP/(TP+FP+TN)``, fraction of pixels perturbed ``(TP+FP)/(H·W)``. Undefined ratios (0/0) are
``None`` (JSON ``null``), never 0.
"""

from __future__ import annotations

import copy
import itertools
import math
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn

from percviz.errors import PercvizError

if TYPE_CHECKING:
    from percviz.models.zoo import ModelSpec

NOISE_THRESHOLD = 0.11  # Pochimireddy et al. 2021 Table I
CAM_THRESHOLD = 0.75  # Pochimireddy et al. 2021 §V-B, G_i = GradCAM++ > 0.75
CURVE_THRESHOLDS: tuple[float, ...] = tuple(round(0.01 * i, 2) for i in range(51))  # Fig. 5 sweep
SCORE_NAMES = ("precision", "recall", "iou", "iou_outside", "fraction_perturbed")
CHANNELS = ("r", "g", "b")


# ----------------------------------------------------------------------------- GradCAM++


def resolve_layer(root: nn.Module, dotted: str) -> nn.Module:
    """The submodule at a dotted path (``"features.18"``, ``"layer4"``, ``"bn2"``) of ``root``."""
    module = root
    for part in dotted.split("."):
        if not part:
            raise ValueError(f"Invalid layer path {dotted!r}.")
        child = module._modules.get(part)
        if child is None:
            raise ValueError(f"Layer {dotted!r} not found: {type(module).__name__} has no child {part!r}.")
        module = child
    return module


class _Tap(nn.Module):
    """Runs the target layer; under grad mode its output becomes a new leaf requiring grad."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = self.layer(*args, **kwargs)
        if torch.is_grad_enabled():
            return out.detach().requires_grad_(True)
        return out


class _CamNet(nn.Module):
    """Private structural copy of a classifier for CAM: shares all tensors, owns its modules."""

    def __init__(self, model: nn.Module, cam_layer: str) -> None:
        super().__init__()
        net: nn.Module = model.net  # type: ignore[assignment]
        shared = {id(t): t for t in itertools.chain(net.parameters(), net.buffers())}
        self.net = copy.deepcopy(net, memo=shared)
        parent_path, _, name = cam_layer.rpartition(".")
        parent = resolve_layer(self.net, parent_path) if parent_path else self.net
        target = resolve_layer(self.net, cam_layer)
        self.tap = _Tap(target)
        parent._modules[name] = self.tap
        self.device = next(iter(model.buffers())).device
        # plain (unregistered) references to the classifier's normalisation tensors
        self.norm_mean: torch.Tensor = model.mean  # type: ignore[assignment]
        self.norm_std: torch.Tensor = model.std  # type: ignore[assignment]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.norm_mean) / self.norm_std)


@dataclass
class _CamEntry:
    net: _CamNet
    lock: threading.Lock
    n_classes: int | None = None


_CAM_NETS: weakref.WeakKeyDictionary[nn.Module, _CamEntry] = weakref.WeakKeyDictionary()
_CAM_NETS_LOCK = threading.Lock()


def cam_layer_of(model: nn.Module) -> str:
    """The GradCAM++ target layer of ``model.spec``; a model without one raises with the reason.

    Zoo models name theirs; an own model gets the last once-called module with ``N×C×h×w``
    output (:func:`percviz.models.probe.choose_cam_layer`), or none when it ends in tokens
    (a vision transformer) or is TorchScript — then ``spec.cam_note`` says why.
    """
    spec = cast("ModelSpec", model.spec)
    if not spec.cam_layer:
        raise PercvizError(
            f"No GradCAM++ for model '{spec.title}': "
            + (spec.cam_note or "it has no layer with N×C×h×w feature maps; choose one with cam_layer=NAME.")
        )
    return str(spec.cam_layer)


def _cam_entry(model: nn.Module) -> _CamEntry:
    layer = cam_layer_of(model)
    with _CAM_NETS_LOCK:
        entry = _CAM_NETS.get(model)
        if entry is None or entry.net.device != next(iter(model.buffers())).device:
            entry = _CamEntry(_CamNet(model, layer), threading.Lock())
            _CAM_NETS[model] = entry
        return entry


@dataclass(frozen=True)
class CamMaps:
    """GradCAM++ maps of a batch, each ``N×H×W`` float32 at the input resolution.

    Attributes:
        cam: the package's output — ReLU, per-image min–max to [0, 1], bilinear upsampling.
        raw: the same map *before* min–max (ReLU'd weighted activations), bilinearly upsampled;
            keeps the magnitude, for a shared scale across images.
        raw_lowres: ``N×h×w`` raw map at the target layer's resolution.
        classes: ``(N,)`` class explained per image.
        logits: ``(N,)`` logit of that class.
    """

    cam: np.ndarray
    raw: np.ndarray
    raw_lowres: np.ndarray
    classes: np.ndarray
    logits: np.ndarray


def _as_classes(classes: Sequence[int] | torch.Tensor | np.ndarray | int | None, n: int) -> list[int] | None:
    if classes is None:
        return None
    if np.ndim(classes) == 0:
        return [int(classes)] * n  # type: ignore[arg-type]
    items = classes.tolist() if isinstance(classes, torch.Tensor | np.ndarray) else classes
    out = [int(c) for c in items]  # type: ignore[union-attr]
    if len(out) != n:
        raise ValueError(f"Expected {n} classes (one per image); got {len(out)}.")
    return out


def gradcam_plus_plus(
    model: nn.Module,
    x: torch.Tensor,
    classes: Sequence[int] | torch.Tensor | np.ndarray | int | None = None,
) -> CamMaps:
    """GradCAM++ (``grad-cam`` package) at ``model.spec.cam_layer`` for ``x`` ``N×3×H×W`` in [0, 1].

    ``classes`` gives the class to explain per image (an int for all; ``None`` = the model's
    prediction). Thread-safe for a shared model (see the module docstring); works under
    ``torch.no_grad()``; the input is not modified.
    """
    import cv2
    from pytorch_grad_cam import GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"GradCAM++ takes an N×3×H×W tensor; got {shape}.")
    wanted = _as_classes(classes, x.shape[0])
    entry = _cam_entry(model)
    device = next(iter(model.buffers())).device
    inp = x.detach().to(device, torch.float32)
    with entry.lock:
        if wanted is None:
            with torch.no_grad():
                wanted = entry.net(inp).argmax(1).tolist()
        if entry.n_classes is None:
            with torch.no_grad():
                entry.n_classes = int(entry.net(inp[:1]).shape[1])
        bad = [c for c in wanted if not 0 <= c < entry.n_classes]
        if bad:
            raise ValueError(f"Class index {bad[0]} outside the model's {entry.n_classes} classes.")
        cam = GradCAMPlusPlus(model=entry.net, target_layers=[entry.net.tap])
        try:
            with torch.enable_grad():
                targets = [ClassifierOutputTarget(c) for c in wanted]
                normalised = cam(input_tensor=inp, targets=targets)
            store = cam.activations_and_grads
            acts = store.activations[0].float().numpy()
            grads = store.gradients[0].float().numpy()
            logits = cam.outputs.detach().float().cpu()
            raw_low = np.maximum(cam.get_cam_image(inp, entry.net.tap, targets, acts, grads), 0)
        finally:
            cam.activations_and_grads.release()
            cam.outputs = None
    h, w = x.shape[-2:]
    raw = np.stack([cv2.resize(np.asarray(m, dtype=np.float32), (w, h)) for m in raw_low]).astype(np.float32)
    idx = torch.tensor(wanted)
    return CamMaps(
        cam=np.asarray(normalised, dtype=np.float32),
        raw=raw,
        raw_lowres=raw_low.astype(np.float32),
        classes=np.asarray(wanted, dtype=np.int64),
        logits=logits[torch.arange(len(wanted)), idx].numpy(),
    )


@dataclass(frozen=True)
class PairCams:
    """CAMs of one original/adversarial pair (``H×W`` each, normalised and raw).

    ``original``: original image for its predicted class; ``adversarial``: adversarial image for
    its new class; ``adversarial_original_class``: adversarial image for the original class.
    """

    original: np.ndarray
    adversarial: np.ndarray
    adversarial_original_class: np.ndarray
    raw_original: np.ndarray
    raw_adversarial: np.ndarray
    raw_adversarial_original_class: np.ndarray
    label: int
    adv_label: int

    def shared(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The three raw maps on one shared [0, 1] scale (divided by their common maximum)."""
        a, b, c = shared_scale(self.raw_original, self.raw_adversarial, self.raw_adversarial_original_class)
        return a, b, c


def explain_pair(
    model: nn.Module,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    label: int | None = None,
    adv_label: int | None = None,
) -> PairCams:
    """All three CAMs of one pair in a single batched GradCAM++ call (``1×3×H×W`` inputs)."""
    if x.ndim != 4 or x.shape[0] != 1 or x.shape != x_adv.shape:
        raise ValueError(
            f"explain_pair takes two 1×3×H×W tensors; got {tuple(x.shape)} and {tuple(x_adv.shape)}."
        )
    device = next(iter(model.buffers())).device
    if label is None or adv_label is None:
        with torch.no_grad():
            preds = model(torch.cat([x, x_adv]).to(device)).argmax(1).tolist()
        label = preds[0] if label is None else label
        adv_label = preds[1] if adv_label is None else adv_label
    maps = gradcam_plus_plus(model, torch.cat([x, x_adv, x_adv]), [label, adv_label, label])
    return PairCams(
        original=maps.cam[0],
        adversarial=maps.cam[1],
        adversarial_original_class=maps.cam[2],
        raw_original=maps.raw[0],
        raw_adversarial=maps.raw[1],
        raw_adversarial_original_class=maps.raw[2],
        label=int(label),
        adv_label=int(adv_label),
    )


def shared_scale(*maps: np.ndarray) -> tuple[np.ndarray, ...]:
    """Non-negative maps divided by their *common* maximum (so magnitudes stay comparable)."""
    top = max((float(np.max(m)) for m in maps), default=0.0)
    scale = 1.0 / top if top > 0 else 0.0
    return tuple((np.asarray(m, dtype=np.float32) * scale).astype(np.float32) for m in maps)


# ----------------------------------------------------------------------------- explainability


def _hwc(ssim_map: np.ndarray) -> np.ndarray:
    arr = np.asarray(ssim_map, dtype=np.float64)
    if arr.ndim == 2:
        return arr[..., None]
    if arr.ndim != 3:
        raise ValueError(f"Expected an SSIM map H×W×C (or H×W); got shape {arr.shape}.")
    return arr


def noise_map(
    ssim_map: np.ndarray, threshold: float = NOISE_THRESHOLD, channel: int | None = None
) -> np.ndarray:
    """Pochimireddy et al. 2021 §V-B ``N = (1 − SSIM map) > threshold`` as an ``H×W`` bool mask.

    ``ssim_map`` is ``H×W×C``; ``channel=None`` averages ``1 − SSIM`` over channels, an index
    uses that channel alone.
    """
    dist = 1.0 - _hwc(ssim_map)
    d = dist.mean(axis=-1) if channel is None else dist[..., channel]
    return d > threshold


def cam_region(cam: np.ndarray, threshold: float = CAM_THRESHOLD) -> np.ndarray:
    """Pochimireddy et al. 2021 §V-B ``G = GradCAM++ > 0.75`` (on the normalised ``H×W`` CAM)."""
    return np.asarray(cam) > threshold


def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def scores_from_counts(tp: int, fp: int, fn: int, tn: int) -> dict[str, Any]:
    """Counts and the §V-B ratios; a ratio with a zero denominator is ``None``."""
    total = tp + fp + fn + tn
    return {
        "tp": int(tp),
        "fp": int(fp),
        "fn": int(fn),
        "tn": int(tn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "iou": _ratio(tp, tp + fp + fn),
        "iou_outside": _ratio(fp, tp + fp + tn),
        "fraction_perturbed": _ratio(tp + fp, total),
    }


def confusion(noise: np.ndarray, region: np.ndarray) -> dict[str, Any]:
    """TP/FP/FN/TN of a noise mask against a CAM region (both ``H×W`` bool) and the ratios."""
    n, g = np.asarray(noise, dtype=bool), np.asarray(region, dtype=bool)
    if n.shape != g.shape:
        raise ValueError(f"Noise mask {n.shape} and CAM region {g.shape} differ in shape.")
    tp = int(np.count_nonzero(n & g))
    fp = int(np.count_nonzero(n & ~g))
    fn = int(np.count_nonzero(~n & g))
    return scores_from_counts(tp, fp, fn, n.size - tp - fp - fn)


def explain_scores(
    ssim_map: np.ndarray,
    cam: np.ndarray,
    noise_threshold: float = NOISE_THRESHOLD,
    cam_threshold: float = CAM_THRESHOLD,
    channel: int | None = None,
) -> dict[str, Any]:
    """Pochimireddy et al. 2021 §V-B scores of one image at one noise threshold (Table I uses 0.11)."""
    return confusion(noise_map(ssim_map, noise_threshold, channel), cam_region(cam, cam_threshold))


def explain_curve(
    ssim_map: np.ndarray,
    cam: np.ndarray,
    thresholds: Sequence[float] = CURVE_THRESHOLDS,
    cam_threshold: float = CAM_THRESHOLD,
    channel: int | None = None,
) -> dict[str, list[Any]]:
    """The scores over noise thresholds (Pochimireddy et al. 2021 Fig. 5): one list per score, ``None`` where 0/0."""
    dist = 1.0 - _hwc(ssim_map)
    d = (dist.mean(axis=-1) if channel is None else dist[..., channel]).ravel()
    g = cam_region(cam, cam_threshold).ravel()
    if d.shape != g.shape:
        raise ValueError(f"SSIM map and CAM differ in size ({d.size} vs {g.size} pixels).")
    t = np.asarray(thresholds, dtype=np.float64)
    inside, outside = np.sort(d[g]), np.sort(d[~g])
    tp = inside.size - np.searchsorted(inside, t, side="right")  # count of d > t
    fp = outside.size - np.searchsorted(outside, t, side="right")
    rows = [
        scores_from_counts(int(a), int(b), inside.size - int(a), outside.size - int(b))
        for a, b in zip(tp, fp, strict=True)
    ]
    curve: dict[str, list[Any]] = {"thresholds": [float(v) for v in t]}
    for key in ("tp", "fp", "fn", "tn", *SCORE_NAMES):
        curve[key] = [r[key] for r in rows]
    return curve


def explain_report(
    ssim_map: np.ndarray,
    cam: np.ndarray,
    noise_threshold: float = NOISE_THRESHOLD,
    cam_threshold: float = CAM_THRESHOLD,
    thresholds: Sequence[float] = CURVE_THRESHOLDS,
) -> dict[str, Any]:
    """What ``explain.json`` holds: scores at the threshold (mean and per channel) and the curve."""
    hwc = _hwc(ssim_map)
    per_channel = {
        CHANNELS[c] if hwc.shape[-1] == 3 else str(c): explain_scores(
            hwc, cam, noise_threshold, cam_threshold, c
        )
        for c in range(hwc.shape[-1])
    }
    return {
        "source": "Pochimireddy et al. 2021 §V-B (Table I, Fig. 5)",
        "noise_map": "N = mean over channels of (1 − SSIM map) > noise_threshold",
        "cam_region": "G = GradCAM++ of the original image for its predicted class (min–max normalised) > cam_threshold",
        "undefined": "ratios with a zero denominator are null",
        "noise_threshold": float(noise_threshold),
        "cam_threshold": float(cam_threshold),
        "scores": explain_scores(hwc, cam, noise_threshold, cam_threshold),
        "per_channel": per_channel,
        "curve": explain_curve(hwc, cam, thresholds, cam_threshold),
    }


def mean_scores(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Dataset averages as in Pochimireddy et al. 2021 (``1/N Σ_i``), over the images where each ratio is defined.

    Returns each score's mean (``None`` if undefined for every image) and ``n_<score>``, the number
    of images it was averaged over.
    """
    out: dict[str, Any] = {"images": len(rows)}
    for key in SCORE_NAMES:
        values = [float(r[key]) for r in rows if r.get(key) is not None and math.isfinite(float(r[key]))]
        out[key] = sum(values) / len(values) if values else None
        out[f"n_{key}"] = len(values)
    return out
