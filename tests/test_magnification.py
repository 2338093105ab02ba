"""Adversarial magnification (Zhang et al. 2020, Smooth adversarial examples, Appendix 1) against a brute-force reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from percviz.analysis.colour import to_unit
from percviz.analysis.magnification import joint_bilateral, magnify, shared_scale, window_radius


def _reference_magnify(x: np.ndarray, beta: float, ss: float, sr: float) -> np.ndarray:
    """Eq. 22 for one C×H×W image by a double loop over pixels and window offsets."""
    c, h, w = x.shape
    r = math.ceil(2.33 * ss)

    def bilateral(values: np.ndarray) -> np.ndarray:
        out = np.zeros_like(values)
        for i in range(h):
            for j in range(w):
                num = np.zeros(c)
                den = 0.0
                for k in range(max(0, i - r), min(h, i + r + 1)):
                    for m in range(max(0, j - r), min(w, j + r + 1)):
                        dist2 = float(((x[:, i, j] - x[:, k, m]) ** 2).sum())
                        wt = math.exp(-((i - k) ** 2 + (j - m) ** 2) / (2 * ss**2)) * math.exp(
                            -dist2 / (2 * sr**2)
                        )
                        num += wt * values[:, k, m]
                        den += wt
                out[:, i, j] = num / den
        return out

    mu = bilateral(x)
    sigma = np.sqrt(bilateral((x - mu) ** 2))
    sigma_global = x.reshape(c, -1).std(axis=1)[:, None, None]
    return (x - mu) / (beta * sigma + (1 - beta) * sigma_global)


def _image(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = 0.2 + 0.3 * torch.rand(n, 3, h, w, generator=g, dtype=torch.float64)
    x[..., :, : w // 2] += 0.4
    return x


def test_window_radius() -> None:
    assert window_radius(5.0) == 12 and window_radius(1.0) == 3


@pytest.mark.parametrize(("sigma_spatial", "h", "w"), [(1.5, 9, 11), (5.0, 8, 7)])
def test_matches_brute_force(sigma_spatial: float, h: int, w: int) -> None:
    x = _image(2, h, w)
    got = magnify(x, beta=0.8, sigma_spatial=sigma_spatial, sigma_range=0.2)
    for i in range(2):
        ref = _reference_magnify(x[i].numpy(), 0.8, sigma_spatial, 0.2)
        np.testing.assert_allclose(got[i].numpy(), ref, rtol=0, atol=1e-4)
    # float32 agrees too
    got32 = magnify(x.float(), sigma_spatial=sigma_spatial)
    np.testing.assert_allclose(got32.double().numpy(), got.numpy(), rtol=0, atol=1e-4)


def test_colour_distance_matches_kornia_in_the_interior() -> None:
    """kornia's joint bilateral with the L2 colour distance agrees away from the border."""
    kornia = pytest.importorskip("kornia")
    x = _image(1, 40, 40).float()
    (mu,) = joint_bilateral([x], x, sigma_spatial=2.0, sigma_range=0.2)
    r = window_radius(2.0)
    k = kornia.filters.joint_bilateral_blur(
        x, x, (2 * r + 1, 2 * r + 1), 0.2, (2.0, 2.0), color_distance_type="l2"
    )
    torch.testing.assert_close(mu[..., r:-r, r:-r], k[..., r:-r, r:-r], rtol=0, atol=1e-5)


def test_flat_image_and_no_mutation() -> None:
    x = torch.full((1, 3, 10, 10), 0.5)
    before = x.clone()
    out = magnify(x)
    assert torch.equal(x, before)
    assert torch.isfinite(out).all() and float(out.abs().max()) == 0.0
    with pytest.raises(ValueError):
        magnify(torch.zeros(3, 10, 10))


def test_shared_display_scale() -> None:
    a = torch.tensor([[[[-1.0, 0.0], [1.0, 2.0]]]])
    b = torch.tensor([[[[-3.0, 0.0], [0.5, 1.0]]]])
    assert shared_scale([a, b]) == (-3.0, 2.0)
    scale = shared_scale([a, b])
    da, db = (torch.from_numpy(to_unit(m.numpy(), scale)) for m in (a, b))
    assert float(db.min()) == 0.0 and float(da.max()) == 1.0
    torch.testing.assert_close(da[0, 0, 0, 1], db[0, 0, 0, 1])  # same value, same grey


def test_magnify_224_is_finite_and_repeatable(photos224: torch.Tensor) -> None:
    """A 224×224 photo's magnification has the input's shape, finite values, and is the same on a
    second call (its time is measured in ``benchmarks/``, not asserted here)."""
    x = photos224[:1]
    first = magnify(x)
    out = magnify(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    torch.testing.assert_close(out, first, rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu() -> None:
    x = _image(2, 32, 32).float()
    torch.testing.assert_close(magnify(x.cuda()).cpu(), magnify(x), rtol=1e-4, atol=1e-4)
