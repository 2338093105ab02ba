"""Metrics agree with scikit-image and with their definitions ."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from percviz.analysis.metrics import (
    C1,
    C2,
    CalibratedLPIPS,
    compare_images,
    gaussian_blur,
    lpips_status,
    perceptual_distance,
    perturbation_norms,
    psnr,
    s1_s2,
    ssim,
    ssim_map,
)
from percviz.errors import ModelUnavailableError
from percviz.images import fit_to_model, load_sample, to_tensor


def _pair(name: str, size: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x = fit_to_model(load_sample(name).pixels, size)
    rng = np.random.default_rng(seed)
    y = np.clip(x + rng.normal(0, noise, x.shape), 0, 1).astype(np.float32)
    return x, y


@pytest.mark.parametrize(
    ("name", "size", "noise"), [("chelsea", 64, 0.05), ("coffee", 97, 0.02), ("rocket", 32, 0.2)]
)
def test_ssim_matches_scikit_image(name: str, size: int, noise: float) -> None:
    x, y = _pair(name, size, noise, seed=size)
    ref, ref_map = structural_similarity(
        x.astype(np.float64),
        y.astype(np.float64),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=-1,
        full=True,
    )
    tx, ty = to_tensor(x), to_tensor(y)
    assert float(ssim(tx, ty)) == pytest.approx(float(ref), abs=1e-4)
    ours = ssim_map(tx, ty)[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - ref_map).max() < 1e-4
    for c in range(3):
        ref_c = structural_similarity(
            x[..., c],
            y[..., c],
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
        )
        assert float(ssim(tx, ty, per_channel=True)[0, c]) == pytest.approx(float(ref_c), abs=1e-4)


def test_ssim_is_batched_and_differentiable() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1).requires_grad_(True)
    assert ssim(x, y).shape == (2,)
    assert torch.autograd.gradcheck(lambda v: ssim(x, v), (y,), eps=1e-6, atol=1e-6)
    assert float(ssim(x, x).min()) == pytest.approx(1.0, abs=1e-12)


def test_gaussian_blur_preserves_constants() -> None:
    x = torch.full((1, 3, 20, 20), 0.3)
    torch.testing.assert_close(gaussian_blur(x), x)


def test_ssim_refuses_tiny_or_mismatched() -> None:
    with pytest.raises(ValueError, match="11×11"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="one shape"):
        ssim(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 17))


def test_s1_s2_moment_form() -> None:
    x = torch.rand(2, 3, 12, 12, dtype=torch.float64)
    y = (0.8 * x + 0.1).clamp(0, 1)
    s1, s2 = s1_s2(x, y)
    for i in range(2):
        a, b = x[i].flatten(), y[i].flatten()
        mx, my = a.mean(), b.mean()
        xa, yb = a - mx, b - my
        n = a.numel()
        exp1 = (2 * mx * my + C1) / (mx**2 + my**2 + C1)
        exp2 = (2 * xa @ yb / n + C2) / (xa @ xa / n + yb @ yb / n + C2)
        assert float(s1[i]) == pytest.approx(float(exp1), rel=1e-12)
        assert float(s2[i]) == pytest.approx(float(exp2), rel=1e-12)
    c1, c2 = s1_s2(x, y, scope="channel")
    assert c1.shape == (2, 3) and c2.shape == (2, 3)
    one1, one2 = s1_s2(x, x)
    torch.testing.assert_close(one1, torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(one2, torch.ones(2, dtype=torch.float64))


def test_psnr_matches_scikit_image() -> None:
    x, y = _pair("coffee", 48, 0.03, seed=4)
    ref = peak_signal_noise_ratio(x.astype(np.float64), y.astype(np.float64), data_range=1.0)
    assert float(psnr(to_tensor(x), to_tensor(y))) == pytest.approx(ref, abs=1e-3)
    assert math.isinf(float(psnr(to_tensor(x), to_tensor(x))))


def test_perturbation_norms() -> None:
    x = torch.zeros(1, 3, 4, 4)
    y = x.clone()
    y[0, :, 0, 0] = torch.tensor([0.1, -0.0, 0.2])
    y[0, 1, 3, 3] = 0.3
    n = perturbation_norms(x, y)
    assert float(n["l0"]) == 2 and float(n["l0_values"]) == 3
    assert float(n["linf"]) == pytest.approx(0.3)
    assert float(n["l2"]) == pytest.approx(math.sqrt(0.01 + 0.04 + 0.09), rel=1e-6)
    assert float(n["l2_255"]) == pytest.approx(255 * float(n["l2"]))
    assert float(n["linf_255"]) == pytest.approx(255 * 0.3, rel=1e-6)


def test_perceptual_distance_properties(tiny, photos32) -> None:
    x = photos32
    y = (x + 0.05 * torch.sign(torch.sin(torch.arange(x.numel()).view_as(x).float()))).clamp(0, 1)
    d = perceptual_distance(tiny, x, y)
    assert d.shape == (3,) and (d > 0).all()
    torch.testing.assert_close(perceptual_distance(tiny, y, x), d)
    assert float(perceptual_distance(tiny, x, x).abs().max()) == 0.0
    feats = tiny.features(x)
    assert d.max() <= 2 * math.sqrt(len(feats)) + 1e-6  # unit vectors: each layer contributes ≤ 2


def test_calibrated_lpips_missing_weights_is_clear(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    ok, message = lpips_status("alex")
    assert not ok and "alexnet-owt-7be5be79.pth" in message
    with pytest.raises(ModelUnavailableError, match=r"alexnet-owt-7be5be79\.pth"):
        CalibratedLPIPS("alex")


def test_calibrated_lpips_matches_package_when_backbone_present(tmp_path, monkeypatch) -> None:
    """With a backbone file in the cache, our wrapper equals the lpips package on that backbone."""
    import lpips
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        torch.save(torchvision.models.alexnet(weights=None).state_dict(), folder / "alexnet-owt-7be5be79.pth")
    ours = CalibratedLPIPS("alex")
    reference = lpips.LPIPS(net="alex", verbose=False).eval()
    x = torch.rand(2, 3, 64, 64)
    y = (x + 0.1 * torch.rand_like(x)).clamp(0, 1)
    torch.testing.assert_close(ours(x, y), reference(x, y, normalize=True).flatten())


def test_compare_images_has_every_metric(photos32) -> None:
    y = (photos32 + 0.02).clamp(0, 1)
    rows = compare_images(photos32, y)
    assert len(rows) == 3
    for key in ("ssim", "ssim_r", "s1", "s2", "psnr", "l0", "l2", "linf", "l2_255", "linf_255"):
        assert key in rows[0] and isinstance(rows[0][key], float)
