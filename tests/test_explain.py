"""GradCAM++ (reference: the grad-cam package), thread safety, and Pochimireddy et al. 2021 §V-B scores."""

from __future__ import annotations

import copy
import json
import threading

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from percviz.analysis.explain import (
    confusion,
    explain_curve,
    explain_pair,
    explain_report,
    explain_scores,
    gradcam_plus_plus,
    mean_scores,
    noise_map,
    resolve_layer,
    scores_from_counts,
    shared_scale,
)


class _Unfrozen(nn.Module):
    """The textbook grad-cam setup: a private copy of the network whose weights require grad."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.net = copy.deepcopy(model.net).requires_grad_(True)
        self.register_buffer("mean", model.mean.clone())
        self.register_buffer("std", model.std.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def reference_cam(model: nn.Module, x: torch.Tensor, classes: list[int]) -> np.ndarray:
    ref = _Unfrozen(model)
    cam = GradCAMPlusPlus(ref, [resolve_layer(ref.net, model.spec.cam_layer)])
    try:
        return cam(x, [ClassifierOutputTarget(c) for c in classes])
    finally:
        cam.activations_and_grads.release()


def _hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()
    )


# ----------------------------------------------------------------------------- GradCAM++


def test_gradcam_equals_package_tiny(tiny, photos32):
    classes = [1, 7, 3]
    before = photos32.clone()
    maps = gradcam_plus_plus(tiny, photos32, classes)
    np.testing.assert_allclose(maps.cam, reference_cam(tiny, photos32, classes), atol=1e-5)
    assert maps.cam.shape == maps.raw.shape == (3, 32, 32)
    assert maps.raw_lowres.shape == (3, 16, 16)
    assert maps.cam.dtype == np.float32 and maps.classes.tolist() == classes
    torch.testing.assert_close(photos32, before, rtol=0, atol=0)
    # the raw map keeps magnitude; its own min–max equals the normalised map
    for raw, cam in zip(maps.raw, maps.cam, strict=True):
        assert raw.min() >= 0
        np.testing.assert_allclose((raw - raw.min()) / (raw.max() - raw.min()), cam, atol=1e-4)
    with torch.no_grad():
        logits = tiny(photos32)
    np.testing.assert_allclose(maps.logits, logits[torch.arange(3), torch.tensor(classes)].numpy(), atol=1e-5)


@pytest.mark.slow
def test_gradcam_equals_package_lite0(lite0, photos224):
    x = photos224[:1]
    with torch.no_grad():
        pred = int(lite0(x).argmax(1))
    maps = gradcam_plus_plus(lite0, x)  # None → the predicted class
    assert maps.classes.tolist() == [pred]
    np.testing.assert_allclose(maps.cam, reference_cam(lite0, x, [pred]), atol=1e-5)
    assert maps.cam.shape == (1, 224, 224) and maps.raw_lowres.shape == (1, 7, 7)
    assert maps.cam.min() >= 0.0 and maps.cam.max() <= 1.0
    assert _hook_count(lite0) == 0
    assert not any(p.requires_grad for p in lite0.parameters())
    assert all(p.grad is None for p in lite0.parameters())


def test_gradcam_shares_weights_and_leaves_model_clean(tiny, photos32):
    with torch.no_grad():  # must work even under no_grad (the app's default)
        maps = gradcam_plus_plus(tiny, photos32[:1], 0)
    assert maps.cam.shape == (1, 32, 32)
    assert _hook_count(tiny) == 0
    assert not any(p.requires_grad for p in tiny.parameters())
    assert all(p.grad is None for p in tiny.parameters())
    from percviz.analysis.explain import _CAM_NETS

    private = _CAM_NETS[tiny].net
    shared = {p.data_ptr() for p in tiny.parameters()}
    assert {p.data_ptr() for p in private.parameters()} == shared  # no weight copy
    assert private.net.features[4] is not tiny.net.features[4]  # but its own modules


def test_gradcam_rejects_bad_input(tiny, photos32):
    with pytest.raises(ValueError, match="N×3×H×W"):
        gradcam_plus_plus(tiny, photos32[0])
    with pytest.raises(ValueError, match="3 classes"):
        gradcam_plus_plus(tiny, photos32, [1, 2])
    with pytest.raises(ValueError, match="outside the model's 10 classes"):
        gradcam_plus_plus(tiny, photos32[:1], 10)
    assert gradcam_plus_plus(tiny, photos32[:1], np.int64(2)).classes.tolist() == [2]
    with pytest.raises(ValueError, match="not found"):
        resolve_layer(tiny.net, "features.99")


def test_concurrent_threads_equal_sequential(tiny, photos32):
    """Threads explaining with one shared model (and one attacking it) get the sequential answers."""
    jobs = [(i % 3, (i * 3) % 10) for i in range(12)]
    sequential = [gradcam_plus_plus(tiny, photos32[i : i + 1], c) for i, c in jobs]
    x_grad = photos32.clone().requires_grad_(True)
    expected_grad = torch.autograd.grad(tiny(x_grad)[:, 0].sum(), x_grad)[0]
    results: dict[int, object] = {}
    grads: list[torch.Tensor] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(5)

    def explain(worker: int) -> None:
        try:
            barrier.wait()
            for k in range(worker, len(jobs), 4):
                i, c = jobs[k]
                results[k] = gradcam_plus_plus(tiny, photos32[i : i + 1], c)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def attack() -> None:  # plain input gradients on the shared model meanwhile
        try:
            barrier.wait()
            for _ in range(20):
                xg = photos32.clone().requires_grad_(True)
                grads.append(torch.autograd.grad(tiny(xg)[:, 0].sum(), xg)[0])
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=explain, args=(w,)) for w in range(4)]
    threads.append(threading.Thread(target=attack))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for k, ref in enumerate(sequential):
        got = results[k]
        np.testing.assert_array_equal(got.cam, ref.cam)  # type: ignore[attr-defined]
        np.testing.assert_array_equal(got.raw, ref.raw)  # type: ignore[attr-defined]
    for g in grads:
        torch.testing.assert_close(g, expected_grad, rtol=0, atol=0)
    assert _hook_count(tiny) == 0


@pytest.mark.slow
def test_concurrent_threads_equal_sequential_lite0(lite0, photos224):
    jobs = [(0, None), (1, 5)]
    sequential = [gradcam_plus_plus(lite0, photos224[i : i + 1], c).cam for i, c in jobs]
    out: dict[int, np.ndarray] = {}

    def run(k: int) -> None:
        i, c = jobs[k]
        out[k] = gradcam_plus_plus(lite0, photos224[i : i + 1], c).cam

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, ref in enumerate(sequential):
        np.testing.assert_array_equal(out[k], ref)


def test_explain_pair_classes_and_shared_scale(tiny, photos32):
    x, x_adv = photos32[:1], photos32[1:2]
    with torch.no_grad():
        y, y_adv = int(tiny(x).argmax()), int(tiny(x_adv).argmax())
    pair = explain_pair(tiny, x, x_adv)
    assert (pair.label, pair.adv_label) == (y, y_adv)
    close = {"atol": 1e-5, "rtol": 0}  # one batch of three vs single images: float32 rounding only
    np.testing.assert_allclose(pair.original, gradcam_plus_plus(tiny, x, y).cam[0], **close)
    np.testing.assert_allclose(pair.adversarial, gradcam_plus_plus(tiny, x_adv, y_adv).cam[0], **close)
    np.testing.assert_allclose(
        pair.adversarial_original_class, gradcam_plus_plus(tiny, x_adv, y).cam[0], **close
    )
    a, b, c = pair.shared()
    top = max(pair.raw_original.max(), pair.raw_adversarial.max(), pair.raw_adversarial_original_class.max())
    assert max(a.max(), b.max(), c.max()) == pytest.approx(1.0)
    np.testing.assert_allclose(b, pair.raw_adversarial / top, rtol=1e-6)
    z = shared_scale(np.zeros((4, 4)), np.zeros((4, 4)))
    assert all(np.all(m == 0) for m in z)


# ----------------------------------------------------------------------------- §V-B scores


def test_confusion_counts_by_hand():
    n = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], bool)
    g = np.array([[1, 0, 1, 0], [1, 1, 0, 0]], bool)
    s = confusion(n, g)
    assert (s["tp"], s["fp"], s["fn"], s["tn"]) == (2, 1, 2, 3)
    assert s["precision"] == pytest.approx(2 / 3)
    assert s["recall"] == pytest.approx(2 / 4)
    assert s["iou"] == pytest.approx(2 / 5)
    assert s["iou_outside"] == pytest.approx(1 / 6)
    assert s["fraction_perturbed"] == pytest.approx(3 / 8)


def test_undefined_ratios_are_none_not_zero():
    s = scores_from_counts(0, 0, 5, 11)  # nothing perturbed
    assert s["precision"] is None
    assert s["recall"] == 0.0 and s["iou"] == 0.0 and s["iou_outside"] == 0.0
    s = scores_from_counts(0, 4, 0, 0)  # empty CAM region, all perturbed
    assert s["recall"] is None and s["precision"] == 0.0
    s = scores_from_counts(0, 0, 3, 0)  # whole image in G, nothing perturbed
    assert s["iou_outside"] is None
    identical = np.ones((16, 16, 3))
    report = explain_report(identical, np.linspace(0, 1, 256).reshape(16, 16))
    assert report["scores"]["precision"] is None
    assert json.loads(json.dumps(report))["scores"]["precision"] is None  # JSON null
    assert all(v is None for v in report["curve"]["precision"])
    assert mean_scores([{"precision": None}, {"precision": 0.5}, {"precision": 0.25}])["precision"] == 0.375
    assert mean_scores([{"precision": None}])["precision"] is None


def test_noise_map_channel_mean_and_single_channel():
    smap = np.ones((4, 4, 3))
    smap[0, 0] = (0.7, 1.0, 1.0)  # mean 1 − SSIM = 0.1
    smap[1, 1] = (0.6, 1.0, 1.0)  # mean 0.1333
    assert noise_map(smap, 0.11).sum() == 1 and noise_map(smap, 0.11)[1, 1]
    assert noise_map(smap, 0.11, channel=0).sum() == 2
    assert noise_map(smap, 0.11, channel=1).sum() == 0


def test_curve_equals_pointwise_scores():
    rng = np.random.default_rng(0)
    smap = 1 - rng.uniform(0, 0.4, size=(20, 24, 3))
    cam = rng.uniform(size=(20, 24))
    thresholds = [0.0, 0.05, 0.11, 0.2, 0.5]
    curve = explain_curve(smap, cam, thresholds)
    for i, t in enumerate(thresholds):
        point = explain_scores(smap, cam, t)
        for key, value in point.items():
            assert curve[key][i] == value, (key, t)
    report = explain_report(smap, cam)
    assert report["scores"] == explain_scores(smap, cam, 0.11)
    assert report["per_channel"]["g"] == explain_scores(smap, cam, 0.11, channel=1)
    assert 0.11 in report["curve"]["thresholds"]
