"""A classifier wrapped to the percviz contract: [0,1] input, normalisation inside, frozen, eval.

The wrapper also exposes ``features(x)`` — the activations of the layers named in the model's
spec — through a torch.fx feature extractor that shares the parameters but registers no hooks,
so one cached model can serve many threads (SPEC §9).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache

import torch
from torch import nn

from percviz.device import best_device
from percviz.models.zoo import ModelSpec, copy_in_order, get_spec, load_state_dict


class Classifier(nn.Module):
    """``logits = net((x − mean) / std)`` for ``x`` of shape ``N×3×H×W`` in [0, 1].

    The wrapped network is in eval mode and its parameters never require grad. Calling
    ``.train()`` is refused: the model may be shared between sessions.
    """

    def __init__(self, net: nn.Module, spec: ModelSpec) -> None:
        super().__init__()
        self.net = net
        self.spec = spec
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1))
        self._extractor: nn.Module | None = None
        self._extractor_lock = threading.Lock()
        self.net.eval()
        self.net.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> Classifier:
        if mode:
            raise RuntimeError("percviz classifiers are frozen in eval mode; train() is refused.")
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    @property
    def labels(self) -> list[str]:
        return imagenet_labels()

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``N×1000`` for ``x`` ``N×3×H×W`` in [0, 1]."""
        return self.net(self.normalize(x))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations of ``spec.feature_layers`` for ``x`` in [0, 1] (each ``N×C×h×w``)."""
        out = self._feature_extractor()(self.normalize(x))
        return [out[name] for name in self.spec.feature_layers]

    def _feature_extractor(self) -> nn.Module:
        with self._extractor_lock:
            if self._extractor is None:
                self._extractor = _build_extractor(self.net, self.spec.feature_layers)
            return self._extractor


def _build_extractor(net: nn.Module, layers: tuple[str, ...]) -> nn.Module:
    from torchvision.models.feature_extraction import create_feature_extractor

    extractor = create_feature_extractor(net, return_nodes={name: name for name in layers})
    extractor.eval()
    extractor.requires_grad_(False)
    return extractor


def build_classifier(model_id: str, device: torch.device | str | None = None) -> Classifier:
    """Construct a fresh classifier with its pretrained weights (no cache).

    Raises:
        UnknownIdError: the id is not in the zoo.
        ModelUnavailableError: the weights are not on this machine (message says which file).
    """
    spec = get_spec(model_id)
    state = load_state_dict(spec)
    net = spec.builder()
    if spec.weight_file is None:
        copy_in_order(net, state)
    else:
        net.load_state_dict(state)
    model = Classifier(net, spec)
    return model.to(best_device(str(device) if device is not None else None))


_CACHE: dict[tuple[str, str], Classifier] = {}
_CACHE_LOCK = threading.Lock()


def load_model(model_id: str, device: torch.device | str | None = None) -> Classifier:
    """A shared, cached classifier per (model, device); thread-safe construction."""
    dev = best_device(str(device) if device is not None else None)
    key = (model_id, str(dev))
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = build_classifier(model_id, dev)
        return _CACHE[key]


@cache
def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names, in index order (from torchvision, offline)."""
    from torchvision.models import MobileNet_V2_Weights

    return list(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


@dataclass(frozen=True)
class Prediction:
    """One class of a top-k prediction."""

    index: int
    label: str
    probability: float

    def as_dict(self) -> dict[str, object]:
        return {"index": self.index, "label": self.label, "probability": self.probability}


@torch.no_grad()
def predict(model: Classifier, x: torch.Tensor, top: int = 5) -> list[list[Prediction]]:
    """Top-``top`` predictions per image for ``x`` ``N×3×H×W`` in [0, 1]."""
    if not 1 <= top <= 1000:
        raise ValueError(f"top must lie in [1, 1000]; got {top}.")
    probs = torch.softmax(model(x.to(model.device)).float(), dim=1).cpu()
    values, indices = probs.topk(top, dim=1)
    names = imagenet_labels()
    return [
        [Prediction(int(i), names[int(i)], float(p)) for p, i in zip(row_p, row_i, strict=True)]
        for row_p, row_i in zip(values, indices, strict=True)
    ]
