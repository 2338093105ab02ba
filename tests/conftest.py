"""Shared fixtures: the real offline model on real photos, and a tiny seeded CNN for fast checks."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from percviz.images import fit_to_model, load_sample, to_tensor
from percviz.models import Classifier, load_model
from percviz.models.regression import Regressor, RegressorSpec
from percviz.models.zoo import ModelSpec

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

PHOTOS = ("chelsea", "coffee", "rocket")


@pytest.fixture(scope="session")
def lite0() -> Classifier:
    """The real EfficientNet-Lite0 (ImageNet weights, offline) on CPU."""
    return load_model("efficientnet_lite0", "cpu")


@pytest.fixture(scope="session")
def photos224() -> torch.Tensor:
    """chelsea, coffee, rocket at 224×224: ``3×3×224×224`` in [0, 1]."""
    return torch.cat([to_tensor(fit_to_model(load_sample(n).pixels, 224)) for n in PHOTOS])


@pytest.fixture(scope="session")
def photos32() -> torch.Tensor:
    """The same photos at 32×32 for fast tests on the tiny model."""
    return torch.cat([to_tensor(fit_to_model(load_sample(n).pixels, 32)) for n in PHOTOS])


class TinyNet(nn.Module):
    """A small seeded CNN with 10 classes; deterministic, fast, differentiable."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


TINY_SPEC = ModelSpec(
    id="tiny",
    title="tiny test CNN",
    source="tests",
    input_size=32,
    mean=(0.5, 0.5, 0.5),
    std=(0.25, 0.25, 0.25),
    weight_file=None,
    feature_layers=("features.1", "features.4"),
    cam_layer="features.4",
)


def make_tiny(seed: int = 0) -> Classifier:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = TinyNet()
    return Classifier(net, TINY_SPEC)


class _DeviceMemory:
    """A forward pre-hook: a pass over more than ``limit`` images raises CUDA's out-of-memory error,
    as a full GPU does (a hook, not a ``forward`` override, so feature extractors still trace)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def __call__(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if args[0].shape[0] > self.limit:
            raise torch.OutOfMemoryError(
                f"CUDA out of memory (test device: {args[0].shape[0]} > {self.limit} images)."
            )


def make_tiny_with_memory_for(limit: int) -> Classifier:
    """``make_tiny()`` on a device with memory for ``limit`` images per pass."""
    model = make_tiny()
    model.net.register_forward_pre_hook(_DeviceMemory(limit))
    return model


@pytest.fixture(scope="session")
def tiny() -> Classifier:
    """A seeded tiny CNN wrapped as a percviz Classifier (CPU, eval, frozen)."""
    return make_tiny()


SSIM_TOL = 1e-6
"""Tolerance of the SSIM-ball constraints (S1, S2, box) in the QCQP and SSIM-attack tests."""


def saturate(x: torch.Tensor, gain: float = 2.5) -> torch.Tensor:
    """A real photo with boosted contrast: many pixels clipped at 0 and 1."""
    return ((x - 0.5) * gain + 0.5).clamp(0.0, 1.0)


LPIPS_TOL = 1e-4
"""Tolerance of the perceptual bounds in the projection and perceptual-attack tests."""


class PassCounter:
    """Stands in for an attack context where only the pass counters are read."""

    forward_passes = 0
    backward_passes = 0


def lpips_distance(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The perceptual distance of Laidlaw et al. 2021 under ``model``, without gradient."""
    from percviz.analysis.metrics import perceptual_distance

    with torch.no_grad():
        return perceptual_distance(model, x, y)


def tiny_regressor(seed: int = 0, size: int = 8) -> Regressor:
    """A seeded 3×size×size → 3×size×size conv autoencoder small enough to form its Jacobian."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = nn.Sequential(
            nn.Conv2d(3, 4, 3, stride=2, padding=1),
            nn.Tanh(),
            nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )
    return Regressor(net, RegressorSpec("tiny_ae", "tiny", "tests", size, "image"))


def explicit_jacobian(model: Regressor, x: torch.Tensor) -> torch.Tensor:
    """``K×M`` Jacobian of image 0 (float64)."""
    jac = torch.autograd.functional.jacobian(lambda z: model(z), x[:1])
    return jac.reshape(x[0].numel(), x[0].numel()).double()
