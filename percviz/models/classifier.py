"""A classifier wrapped to the percviz contract: [0,1] input, normalisation inside, frozen, eval.

The wrapper also exposes ``features(x)`` — the activations of the layers named in the model's
spec — through a torch.fx feature extractor that shares the parameters but registers no hooks,
so one cached model can serve many threads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from torch import nn

from percviz.device import best_device
from percviz.errors import ModelFileError, PercvizError
from percviz.limits import Limits, current_limits
from percviz.models.custom import (
    ModelRef,
    build_custom,
    freeze,
    parse_model_ref,
    with_cam_layer,
)
from percviz.models.zoo import ModelSpec, copy_in_order, get_spec, load_state_dict


class Classifier(nn.Module):
    """``logits = net((x − mean) / std)`` for ``x`` of shape ``N×3×H×W`` in [0, 1].

    The wrapped network is in eval mode and its parameters never require grad. Calling
    ``.train()`` is refused: the model may be shared between sessions.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, net: nn.Module, spec: ModelSpec) -> None:
        super().__init__()
        self.net = net
        self.spec = spec
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1))
        self._extractor: nn.Module | None = None
        self._extractor_lock = threading.Lock()
        self.net.eval()
        freeze(self.net)
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
        """Class names in index order (the spec's, or the ImageNet-1k names)."""
        return list(self.spec.labels) if self.spec.labels else imagenet_labels()

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``N×C`` (C = ``spec.num_classes``) for ``x`` ``N×3×H×W`` in [0, 1]."""
        return self.net(self.normalize(x))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations of ``spec.feature_layers`` for ``x`` in [0, 1] (each ``N×C×h×w``)."""
        if not self.spec.feature_layers:
            raise PercvizError(
                f"Model '{self.spec.id}' exposes no feature layers, so it cannot bound itself; "
                "use distance_net=alexnet or a zoo model."
            )
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


def build_classifier(
    model_id: str, device: torch.device | str | None = None, limits: Limits | None = None
) -> Classifier:
    """Construct a fresh classifier from a model reference (no cache).

    ``model_id`` is a zoo id or a reference to the user's own model (``file:PATH``,
    ``ARCH@PATH``, ``hf:REPO_ID``, with ``?option=value`` — see :mod:`percviz.models.custom`).

    Raises:
        UnknownIdError: the id is not in the zoo.
        ModelUnavailableError: the weights are not on this machine (message says which file).
        ModelFileError: an own model that cannot be used (pickle, not N×C logits, bad layer…),
            or own models are turned off (hosted mode).
    """
    ref = parse_model_ref(model_id)
    dev = best_device(str(device) if device is not None else None)
    if ref.kind != "zoo":
        check_custom_allowed(limits)
        net, spec = build_custom(ref)
        return Classifier(net, spec).to(dev)
    base = _build_zoo(ref.base, limits)
    if ref.option("cam_layer"):
        base = Classifier(base.net, with_cam_layer(base.net, base.spec, ref.option("cam_layer") or ""))
    return base.to(dev)


def _build_zoo(model_id: str, limits: Limits | None = None) -> Classifier:
    spec = get_spec(model_id)
    state = load_state_dict(spec, limits)
    net = spec.builder()
    if spec.weight_file is None:
        copy_in_order(net, state)
    else:
        net.load_state_dict(state)
    return Classifier(net, spec)


def check_custom_allowed(limits: Limits | None = None) -> None:
    """Refuse own models where ``limits`` (default: this process's) turn them off (hosted mode)."""
    if not (limits or current_limits()).allow_custom_models:
        raise ModelFileError("Own models are turned off on this server (hosted mode); choose a zoo model.")


_CacheKey = tuple[str, str, tuple[int, int]]
_CACHE: dict[_CacheKey, Classifier] = {}  # zoo models: a handful, kept for the process
_OWN: OrderedDict[_CacheKey, Classifier] = OrderedDict()  # own models: least recently used first
_CACHE_LOCK = threading.Lock()
MAX_OWN_MODELS = 4
MAX_OWN_MODEL_BYTES = 2 * 2**30


def model_bytes(model: nn.Module) -> int:
    """Bytes held by a model's parameters and buffers."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def _keep_own(key: _CacheKey, model: Classifier) -> None:
    """Cache an own model, evicting the least recently used ones beyond :data:`MAX_OWN_MODELS` or
    :data:`MAX_OWN_MODEL_BYTES` (uploads are stored by content hash, so each one is a new entry;
    without a bound every upload would stay in memory). Call with ``_CACHE_LOCK`` held."""
    _OWN[key] = model
    while len(_OWN) > 1 and (
        len(_OWN) > MAX_OWN_MODELS or sum(model_bytes(m) for m in _OWN.values()) > MAX_OWN_MODEL_BYTES
    ):
        _OWN.popitem(last=False)


def load_model(
    model_id: str, device: torch.device | str | None = None, limits: Limits | None = None
) -> Classifier:
    """A shared, cached classifier per (model reference, device); thread-safe construction.
    ``limits`` (default: this process's) decide whether own models may be loaded and how a missing
    zoo model is reported (hosted mode names no server path).

    A zoo model with a chosen ``cam_layer`` shares the cached zoo network (no second copy). An
    own model's cache entry is keyed by its file's size and modification time too, so a rewritten
    file is read again, and own models are kept least-recently-used, at most :data:`MAX_OWN_MODELS`
    and :data:`MAX_OWN_MODEL_BYTES` (zoo models stay for the process).
    """
    ref = parse_model_ref(model_id)
    dev = best_device(str(device) if device is not None else None)
    if ref.kind == "zoo" and ref.option("cam_layer"):
        base = load_model(ref.base, dev, limits)
        key = (str(ref), str(dev), (0, 0))
        with _CACHE_LOCK:
            if key not in _CACHE:
                spec = with_cam_layer(base.net, base.spec, ref.option("cam_layer") or "")
                _CACHE[key] = Classifier(base.net, spec).to(dev)
            return _CACHE[key]
    key = (str(ref), str(dev), _file_stamp(ref))
    if ref.kind != "zoo":
        check_custom_allowed(limits)
        with _CACHE_LOCK:
            if key in _OWN:
                _OWN.move_to_end(key)
                return _OWN[key]
            model = build_classifier(str(ref), dev, limits)
            _keep_own(key, model)
            return model
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = build_classifier(str(ref), dev, limits)
        return _CACHE[key]


def _file_stamp(ref: ModelRef) -> tuple[int, int]:
    text = {"file": ref.base[5:], "arch": ref.base.partition("@")[2]}.get(ref.kind)
    try:
        stat = Path(text).expanduser().stat() if text else None
    except OSError:
        return (0, 0)
    return (stat.st_size, stat.st_mtime_ns) if stat else (0, 0)


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
    with torch.no_grad():
        return predictions(model.labels, model(x.to(model.device)), top)


def predictions(names: Sequence[str], logits: torch.Tensor, top: int = 5) -> list[list[Prediction]]:
    """Top-``top`` predictions per row of ``logits`` (``N×K``, e.g. an attack's own forward)."""
    if not 1 <= top <= len(names):
        raise ValueError(f"top must lie in [1, {len(names)}]; got {top}.")
    probs = torch.softmax(logits.detach().float(), dim=1).cpu()
    values, indices = probs.topk(top, dim=1)
    return [
        [Prediction(int(i), names[int(i)], float(p)) for p, i in zip(row_p, row_i, strict=True)]
        for row_p, row_i in zip(values, indices, strict=True)
    ]
