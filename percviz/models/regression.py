"""Regression models ``f: R^M → R^K`` for the regression attacks of Balda, Behboodi and Mathar,
"Perturbation Analysis of Learning Algorithms" (§III, §VI-B).

Three kinds, all taking ``N×3×H×W`` in [0, 1], frozen and in eval mode like the classifiers:

- ``autoencoder``: a small convolutional denoising autoencoder (image → image, outputs in [0, 1]),
  trained deterministically on the bundled photos at first use (a few seconds on a CPU) and cached
  under ``~/.cache/percviz`` (``$XDG_CACHE_HOME/percviz``), never in the repository;
- ``embedding:<classifier>``: the penultimate features (input of the last linear layer) of any
  available zoo classifier (image → vector), sharing the classifier's frozen weights;
- ``file:PATH``: a user's TorchScript image-to-image model, local mode only (never an arbitrary
  pickle; refused when ``PERCVIZ_HOSTED`` is on).

Classifiers and regressors are distinct types with an explicit ``kind``; a regression attack
refuses a classifier and a classification attack refuses a regressor.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from percviz.device import best_device
from percviz.errors import ModelUnavailableError, UnknownIdError
from percviz.limits import Limits, current_limits

if TYPE_CHECKING:
    from percviz.models.classifier import Classifier

OutputKind = Literal["image", "vector"]

AUTOENCODER = "autoencoder"
EMBEDDING_PREFIX = "embedding:"
FILE_PREFIX = "file:"
USER_INPUT_SIZE = 128

#: Training recipe of the autoencoder; any change gives a new cache file name.
AE_CONFIG = {
    "version": 1,
    "widths": (32, 16),
    "patch": 32,
    "batch": 16,
    "steps": 300,
    "lr": 3e-3,
    "noise_std": 0.1,
    "seed": 0,
    "photo_size": 160,
}


@dataclass(frozen=True)
class RegressorSpec:
    """What percviz knows about one regression model.

    Attributes:
        id: model id (``autoencoder``, ``embedding:efficientnet_lite0``, ``file:PATH``).
        title: human-readable name.
        source: architecture and weights, with the paper it stands in for.
        input_size: square input side in pixels.
        output: ``image`` (``N×3×H×W`` in [0, 1]) or ``vector`` (``N×K``).
        kind: always ``"regressor"`` (classifiers carry ``"classifier"``).
    """

    id: str
    title: str
    source: str
    input_size: int
    output: OutputKind
    kind: Literal["regressor"] = "regressor"


class Regressor(nn.Module):
    """``f(x)`` for ``x`` of shape ``N×3×H×W`` in [0, 1]; frozen, eval, ``train()`` refused."""

    kind = "regressor"
    _anchor: torch.Tensor

    def __init__(self, net: nn.Module, spec: RegressorSpec) -> None:
        super().__init__()
        self.net = net
        self.spec = spec
        self.register_buffer("_anchor", torch.zeros(()))  # carries the device
        self.net.eval()
        for param in self.net.parameters():  # ScriptModules refuse requires_grad_()
            param.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> Regressor:
        if mode:
            raise RuntimeError("percviz regressors are frozen in eval mode; train() is refused.")
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``N×3×H×W`` for image outputs, ``N×K`` for vector outputs."""
        return self.net(x)


class ConvAutoencoder(nn.Module):
    """Two stride-2 convolutions down to ``widths[1]×H/4×W/4`` (1/3 of the input values), two
    transposed convolutions up, sigmoid output in [0, 1]. ``H`` and ``W`` must be multiples of 4.
    """

    def __init__(self, widths: tuple[int, int] = (32, 16)) -> None:
        super().__init__()
        a, b = widths
        self.encoder = nn.Sequential(
            nn.Conv2d(3, a, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(a, b, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(b, a, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(a, 3, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/percviz`` or ``~/.cache/percviz`` (outside any repository)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "percviz"


def autoencoder_cache_path() -> Path:
    """The cached weights file; its name hashes :data:`AE_CONFIG` and the torch version."""
    key = repr(sorted(AE_CONFIG.items())) + torch.__version__.split("+")[0]
    return cache_dir() / f"autoencoder-{hashlib.sha256(key.encode()).hexdigest()[:12]}.pt"


def _seeded_init(net: nn.Module, generator: torch.Generator) -> None:
    """He-uniform weights and zero biases from ``generator`` (the global RNG is never touched)."""
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                fan_in = (
                    module.weight[0].numel()
                    if isinstance(module, nn.Conv2d)
                    else (module.weight.shape[0] * module.weight[0, 0].numel())
                )
                bound = math.sqrt(6.0 / fan_in)
                module.weight.copy_((torch.rand(module.weight.shape, generator=generator) * 2 - 1) * bound)
                if module.bias is not None:
                    module.bias.zero_()


def _training_photos(size: int) -> torch.Tensor:
    from percviz.images import fit_to_model, load_sample, sample_names, to_tensor

    return torch.cat([to_tensor(fit_to_model(load_sample(n).pixels, size)) for n in sample_names()])


def train_autoencoder(config: dict[str, object] | None = None) -> ConvAutoencoder:
    """Train the denoising autoencoder on random crops of the bundled photos (CPU, seeded).

    Each step draws ``batch`` patches of ``patch×patch`` pixels and random flips, adds Gaussian
    noise of std ``noise_std`` and minimises the MSE to the clean patch (Adam). Deterministic:
    every random number comes from one seeded CPU generator.
    """
    cfg = {**AE_CONFIG, **(config or {})}
    gen = torch.Generator().manual_seed(int(cfg["seed"]))  # type: ignore[call-overload]
    net = ConvAutoencoder(tuple(cfg["widths"]))  # type: ignore[arg-type]
    _seeded_init(net, gen)
    photos = _training_photos(int(cfg["photo_size"]))  # type: ignore[call-overload]
    n, _, h, w = photos.shape
    patch, batch = int(cfg["patch"]), int(cfg["batch"])  # type: ignore[call-overload]
    opt = torch.optim.Adam(net.parameters(), lr=float(cfg["lr"]))  # type: ignore[arg-type]
    steps = int(cfg["steps"])  # type: ignore[call-overload]
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    net.train()
    for _ in range(steps):
        idx = torch.randint(n, (batch,), generator=gen)
        top = torch.randint(h - patch + 1, (batch,), generator=gen)
        left = torch.randint(w - patch + 1, (batch,), generator=gen)
        clean = torch.stack(
            [photos[i, :, t : t + patch, s : s + patch] for i, t, s in zip(idx, top, left, strict=True)]
        )
        flip = torch.rand(batch, generator=gen) < 0.5
        clean = torch.where(flip.view(-1, 1, 1, 1), clean.flip(-1), clean)
        noisy = (clean + float(cfg["noise_std"]) * torch.randn(clean.shape, generator=gen)).clamp(0, 1)  # type: ignore[arg-type]
        loss = (net(noisy) - clean).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    return net


_TRAIN_LOCK = threading.Lock()


def autoencoder_net() -> ConvAutoencoder:
    """The trained autoencoder: from the cache, or trained now and cached (thread-safe)."""
    path = autoencoder_cache_path()
    with _TRAIN_LOCK:
        net = ConvAutoencoder(tuple(AE_CONFIG["widths"]))  # type: ignore[arg-type]
        if path.is_file():
            try:
                net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
                return net
            except Exception:  # a truncated or foreign file: retrain and overwrite it
                pass
        net = train_autoencoder()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(net.state_dict(), tmp)
        tmp.replace(path)
        return net


def _last_linear_path(net: nn.Module) -> str:
    names = [name for name, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ModelUnavailableError("This classifier has no final linear layer to take an embedding from.")
    return names[-1]


def without_last_linear(net: nn.Module) -> nn.Module:
    """A view of ``net`` whose last ``nn.Linear`` is the identity: its output is the penultimate
    features. Parameters are shared (no copy of the weights); the original module is untouched.
    """
    parts = _last_linear_path(net).split(".")
    root = copy.copy(net)
    root._modules = dict(net._modules)
    parent = root
    for name in parts[:-1]:
        found = parent._modules[name]
        assert found is not None  # the path was read from this module tree
        child = copy.copy(found)
        child._modules = dict(child._modules)
        parent._modules[name] = child
        parent = child
    parent._modules[parts[-1]] = nn.Identity()
    return root


class _Embedding(nn.Module):
    def __init__(self, classifier: Classifier) -> None:
        super().__init__()
        self.classifier = classifier
        self.body = without_last_linear(classifier.net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.classifier.normalize(x)).flatten(1)


def _embedding_spec(classifier_id: str) -> RegressorSpec:
    from percviz.models.zoo import get_spec

    spec = get_spec(classifier_id)
    return RegressorSpec(
        id=f"{EMBEDDING_PREFIX}{classifier_id}",
        title=f"{spec.title}: penultimate features",
        source=f"the input of the last linear layer of {classifier_id}",
        input_size=spec.input_size,
        output="vector",
    )


AUTOENCODER_MODEL = RegressorSpec(
    id=AUTOENCODER,
    title="Convolutional denoising autoencoder (offline)",
    source="trained at first use on the bundled photos; stands in for the autoencoders of Balda et "
    "al. §VI-B (input 128×128, bottleneck 1/3 of the input values)",
    input_size=128,
    output="image",
)


def is_regressor_id(model_id: str) -> bool:
    """Whether ``model_id`` names a regression model (``file:`` paths are checked when loaded)."""
    return model_id == AUTOENCODER or model_id.startswith(EMBEDDING_PREFIX)


def regressor_ids() -> list[str]:
    """Regression models that can be built on this machine now."""
    from percviz.models.zoo import all_model_status

    return [AUTOENCODER] + [f"{EMBEDDING_PREFIX}{s.spec.id}" for s in all_model_status() if s.available]


def regressor_spec(model_id: str, input_size: int | None = None) -> RegressorSpec:
    """Spec of a regressor id; unknown ids raise :class:`UnknownIdError`. ``input_size`` applies
    to ``file:`` models only (default :data:`USER_INPUT_SIZE`)."""
    if model_id == AUTOENCODER:
        return AUTOENCODER_MODEL
    if model_id.startswith(EMBEDDING_PREFIX):
        return _embedding_spec(model_id[len(EMBEDDING_PREFIX) :])
    if model_id.startswith(FILE_PREFIX):
        path = model_id[len(FILE_PREFIX) :]
        size = input_size or USER_INPUT_SIZE
        return RegressorSpec(model_id, Path(path).name, f"TorchScript file {path}", size, "image")
    raise UnknownIdError(
        f"Unknown regression model '{model_id}'; choose one of: {', '.join(regressor_ids())}, or file:PATH."
    )


def _load_torchscript(path: str, limits: Limits | None = None) -> nn.Module:
    from percviz.models.custom import load_torchscript

    if not (limits or current_limits()).allow_custom_models:
        raise ModelUnavailableError("Own models are disabled in hosted mode.")
    file = Path(path)
    if not file.is_file():
        raise ModelUnavailableError(f"No model file at '{path}'.")
    if not zipfile.is_zipfile(file):
        raise ModelUnavailableError(f"'{path}' is not a TorchScript archive (only TorchScript is loaded).")
    try:
        return load_torchscript(file)
    except Exception as exc:
        raise ModelUnavailableError(f"'{path}' could not be loaded as TorchScript ({exc}).") from None


def _check_image_to_image(model: Regressor) -> None:
    size = model.input_size
    with torch.no_grad():
        out = model(torch.full((1, 3, size, size), 0.5, device=model.device))
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, 3, size, size):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelUnavailableError(
            f"'{model.spec.id}' must map 1×3×{size}×{size} to the same shape; it returned {shape}."
        )


def build_regressor(
    model_id: str,
    device: torch.device | str | None = None,
    input_size: int | None = None,
    limits: Limits | None = None,
) -> Regressor:
    """Construct a regressor (no cache); ``limits`` (default: this process's) decide whether own
    TorchScript models may be loaded. Raises UnknownIdError / ModelUnavailableError."""
    dev = best_device(str(device) if device is not None else None)
    spec = regressor_spec(model_id, input_size)
    if model_id == AUTOENCODER:
        return Regressor(autoencoder_net(), spec).to(dev)
    if model_id.startswith(EMBEDDING_PREFIX):
        from percviz.models.classifier import load_model

        classifier = load_model(model_id[len(EMBEDDING_PREFIX) :], dev, limits)
        return Regressor(_Embedding(classifier), spec).to(dev)
    model = Regressor(_load_torchscript(model_id[len(FILE_PREFIX) :], limits), spec).to(dev)
    _check_image_to_image(model)
    return model


_CACHE: dict[tuple[str, str, int | None], Regressor] = {}
_CACHE_LOCK = threading.Lock()


def load_regressor(
    model_id: str,
    device: torch.device | str | None = None,
    input_size: int | None = None,
    limits: Limits | None = None,
) -> Regressor:
    """A shared, cached regressor per (model, device, input size); thread-safe construction
    (``limits``: as :func:`build_regressor`)."""
    dev = best_device(str(device) if device is not None else None)
    key = (model_id, str(dev), input_size if model_id.startswith(FILE_PREFIX) else None)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = build_regressor(model_id, dev, key[2], limits)
        return _CACHE[key]
