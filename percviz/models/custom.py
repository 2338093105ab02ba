"""Users' own classifiers (local mode only): a model reference string → network + :class:`ModelSpec`.

A *model reference* is ``BASE[?key=value&key=value…]``:

- ``BASE`` is a zoo id (``efficientnet_lite0``), ``file:PATH`` (a TorchScript archive or an ONNX
  model, recognised from the file's content, not its name), ``ARCH@PATH`` (a timm or torchvision
  architecture by name — ``timm:NAME`` / ``torchvision:NAME`` to choose the library — plus a
  checkpoint: safetensors, or a state dict read with ``torch.load(weights_only=True)``), or
  ``hf:REPO_ID`` (a Hugging Face image classifier already in the local cache).
- options: ``labels=FILE`` (class names: one per line, or a JSON list / ``{index: name}``),
  ``input_size=N``, ``mean=a,b,c``, ``std=a,b,c``, ``cam_layer=NAME`` (GradCAM++ target layer;
  the only option a zoo model takes).

Nothing here unpickles arbitrary objects: a ``torch.save`` of a whole module is refused with one
sentence. ONNX graphs are converted to torch by ``onnx2torch`` so gradients flow through them.
Whatever is not declared is inferred: input size (ONNX graph input, timm config, Hugging Face
preprocessor config, else 224), mean/std (the library's config, else the ImageNet values), labels
(ImageNet-1k for 1000 outputs, else ``class 0…C−1``). A probe forward pass checks that the output
is ``N×C`` logits and picks the GradCAM++ layer and the perceptual feature layers
(:mod:`percviz.models.probe`).
"""

from __future__ import annotations

import json
import pickle
import struct
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import torch
from torch import nn

from percviz.errors import ModelFileError, one_line
from percviz.models.hf_models import read_hf
from percviz.models.onnx_models import read_onnx
from percviz.models.probe import check_cam_layer, choose_cam_layer, probe, working_feature_layers
from percviz.models.zoo import IMAGENET_MEAN, IMAGENET_STD, ZOO_MODELS, ModelSpec
from percviz.textio import read_capped_text

OPTIONS = ("labels", "input_size", "mean", "std", "cam_layer")
DEFAULT_INPUT_SIZE = 224
OWN_MODELS_HELP = (
    "file:PATH (TorchScript .pt/.ts or ONNX .onnx), ARCH@PATH (timm or torchvision architecture "
    "+ safetensors or state-dict checkpoint), hf:REPO_ID (Hugging Face image classifier in the "
    "local cache); options ?labels=FILE&input_size=N&mean=a,b,c&std=a,b,c&cam_layer=NAME"
)


# ----------------------------------------------------------------------------- references


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference: ``base`` plus sorted ``options``."""

    base: str
    options: tuple[tuple[str, str], ...] = ()

    @property
    def kind(self) -> str:
        """``"zoo"``, ``"file"``, ``"arch"`` or ``"hf"``."""
        if self.base.startswith("file:"):
            return "file"
        if self.base.startswith("hf:"):
            return "hf"
        if "@" in self.base:
            return "arch"
        return "zoo"

    @property
    def custom(self) -> bool:
        """Whether this is a user's own model (or a zoo model with user files attached)."""
        return self.kind != "zoo" or any(k != "cam_layer" for k, _ in self.options)

    def option(self, name: str) -> str | None:
        return dict(self.options).get(name)

    def __str__(self) -> str:
        return self.base + (f"?{urlencode(self.options, safe='/,:@')}" if self.options else "")


def parse_model_ref(text: str) -> ModelRef:
    """Parse ``BASE[?key=value&…]``; unknown options and malformed values raise ModelFileError."""
    if not isinstance(text, str) or not text.strip():
        raise ModelFileError("A model reference must be a non-empty string.")
    base, _, query = text.strip().partition("?")
    options: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in OPTIONS:
            raise ModelFileError(f"Unknown model option '{key}'; valid options: {', '.join(OPTIONS)}.")
        if not value.strip():
            raise ModelFileError(f"Model option {key} is empty; give a value or leave the option out.")
        options[key] = value
    ref = ModelRef(base, tuple(sorted(options.items())))
    if ref.kind == "zoo" and ref.base not in ZOO_MODELS:
        from percviz.errors import UnknownIdError

        raise UnknownIdError(
            f"Unknown model '{ref.base}'; choose one of: {', '.join(ZOO_MODELS)}, or your own: {OWN_MODELS_HELP}."
        )
    if ref.kind == "zoo" and ref.custom:
        raise ModelFileError(f"Zoo model '{ref.base}' takes only the cam_layer option.")
    size_text = ref.option("input_size")
    if size_text is not None:
        _positive_int(size_text, "input_size")
    for name in ("mean", "std"):
        given = ref.option(name)
        if given is not None:
            _triple(given, name)
    return ref


def model_ref(
    base: str,
    *,
    labels: str | None = None,
    input_size: int | None = None,
    mean: str | None = None,
    std: str | None = None,
    cam_layer: str | None = None,
) -> str:
    """Compose a reference from a base and options; file paths become absolute (replayable)."""
    parsed = parse_model_ref(base)
    base_text = parsed.base
    if parsed.kind == "file":
        base_text = "file:" + str(Path(base_text[5:]).expanduser().resolve())
    elif parsed.kind == "arch":
        arch, _, path = base_text.partition("@")
        base_text = f"{arch}@{Path(path).expanduser().resolve()}"
    options = dict(parsed.options)
    given = {"labels": labels, "input_size": input_size, "mean": mean, "std": std, "cam_layer": cam_layer}
    for key, value in given.items():
        if value is not None:
            options[key] = str(Path(str(value)).expanduser().resolve()) if key == "labels" else str(value)
    composed = ModelRef(base_text, tuple(sorted(options.items())))
    return str(parse_model_ref(str(composed)))


def _positive_int(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ModelFileError(f"Model option {name} must be a whole number; got '{text}'.") from None
    if not 8 <= value <= 2048:
        raise ModelFileError(f"Model option {name} must lie in [8, 2048]; got {value}.")
    return value


def _triple(text: str, name: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(v == v and abs(v) < 1e6 for v in values):
        raise ModelFileError(f"Model option {name} takes three numbers 'a,b,c'; got '{text}'.")
    if name == "std" and min(values) <= 0:
        raise ModelFileError(f"Model option std must be positive; got '{text}'.")
    return values


# ----------------------------------------------------------------------------- file content


def sniff_format(path: Path) -> str:
    """``"torchscript"``, ``"onnx"``, ``"torch-pickle"``, ``"safetensors"`` or ``"unknown"`` from content."""
    with path.open("rb") as fh:
        head = fh.read(16)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            return "torchscript"
        if any(n.endswith("/data.pkl") for n in names):
            return "torch-pickle"
        return "unknown"
    if head[:1] == b"\x80":
        return "torch-pickle"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 0 < n < path.stat().st_size:
            return "safetensors"
    if head[:1] == b"\x08" and _is_onnx(path):
        return "onnx"
    return "unknown"


def _is_onnx(path: Path) -> bool:
    try:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
    except Exception:
        return False
    return proto.ir_version > 0 and len(proto.graph.node) > 0


def _pickle_message(path: Path) -> str:
    return (
        f"'{path.name}' is a pickled PyTorch file (torch.save of a whole model), which percviz never "
        "loads because unpickling can run arbitrary code; export it with torch.jit.script/trace or "
        "torch.onnx.export and use file:PATH, or save its state_dict and use ARCH@PATH."
    )


def _existing_file(text: str) -> Path:
    path = Path(text).expanduser()
    if path.is_dir():
        raise ModelFileError(f"'{text}' is a folder; give the model file inside it.")
    if not path.is_file():
        raise ModelFileError(f"Model file '{text}' does not exist.")
    return path


def load_torchscript(path: Path) -> nn.Module:
    """``torch.jit.load`` on the CPU, without its "deprecated" FutureWarning on stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu")


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from safetensors or ``torch.load(weights_only=True)``; unwraps common wrappers."""
    fmt = sniff_format(path)
    if fmt == "safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(path))
    elif fmt == "torchscript":
        raise ModelFileError(f"'{path.name}' is a TorchScript model, not a checkpoint; use file:{path}.")
    elif fmt == "onnx":
        raise ModelFileError(f"'{path.name}' is an ONNX model, not a checkpoint; use file:{path}.")
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise ModelFileError(_pickle_message(path)) from None
        except Exception as exc:
            raise ModelFileError(
                f"'{path.name}' is not a readable checkpoint ({type(exc).__name__})."
            ) from None
    for key in ("state_dict", "model_state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"'{path.name}' does not hold a state dict of tensors.")
    return {k.removeprefix("module."): v for k, v in state.items()}


# ----------------------------------------------------------------------------- builders


@dataclass(frozen=True)
class _Built:
    net: nn.Module
    source: str
    title: str
    input_size: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    labels: tuple[str, ...] = ()


def _build_file(text: str) -> _Built:
    path = _existing_file(text)
    fmt = sniff_format(path)
    if fmt == "torch-pickle":
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            raise ModelFileError(_pickle_message(path)) from None
        raise ModelFileError(
            f"'{path.name}' is a state dict without an architecture; load it as ARCH@{path} "
            "(e.g. resnet18@PATH)."
        )
    if fmt == "safetensors":
        raise ModelFileError(
            f"'{path.name}' is a safetensors checkpoint without an architecture; load it as ARCH@{path}."
        )
    if fmt == "torchscript":
        try:
            net = load_torchscript(path)
        except Exception as exc:
            raise ModelFileError(f"TorchScript file '{path.name}' cannot be loaded ({exc}).") from None
        return _Built(net, f"TorchScript file {path}", f"{path.name} (TorchScript)")
    if fmt == "onnx":
        return _build_onnx(path)
    raise ModelFileError(
        f"'{path.name}' is neither a TorchScript archive nor an ONNX model (checked its content, not its name)."
    )


def _build_onnx(path: Path) -> _Built:
    net, source, size = read_onnx(path)
    return _Built(net, source, f"{path.name} (ONNX)", size)


def _build_arch(text: str) -> _Built:
    arch, _, path_text = text.partition("@")
    lib, _, name = arch.rpartition(":")
    if lib not in ("", "timm", "torchvision", "tv"):
        raise ModelFileError(f"Architecture library '{lib}' is unknown; use timm:NAME or torchvision:NAME.")
    path = _existing_file(path_text)
    state = read_checkpoint(path)
    classes = _num_classes(state)
    errors: list[str] = []
    for library in ("torchvision", "timm") if lib == "" else ("torchvision" if lib == "tv" else lib,):
        factory = _factory(library, name)
        if factory is None:
            errors.append(f"{library} has no architecture '{name}'")
            continue
        net = factory(classes)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            errors.append(f"{library} '{name}': {one_line(exc)}")
            continue
        size, mean, std = _library_config(library, net)
        return _Built(net, f"{library} {name} + {path}", f"{name} ({path.name})", size, mean, std)
    raise ModelFileError(f"Checkpoint '{path.name}' does not fit: {'; '.join(errors)}.")


def _num_classes(state: dict[str, torch.Tensor]) -> int:
    matrices = [v for k, v in state.items() if k.endswith("weight") and v.ndim == 2]
    return int(matrices[-1].shape[0]) if matrices else 1000


def _factory(library: str, name: str) -> Callable[[int], nn.Module] | None:
    if library == "timm":
        import timm

        if name not in timm.list_models():
            return None
        return lambda c: timm.create_model(name, pretrained=False, num_classes=c)
    import torchvision.models as tvm

    if name not in tvm.list_models():
        return None
    return lambda c: tvm.get_model(name, weights=None, num_classes=c)


def _library_config(library: str, net: nn.Module) -> tuple[int | None, Any, Any]:
    cfg = getattr(net, "pretrained_cfg", None) if library == "timm" else None
    if not cfg:
        return None, IMAGENET_MEAN, IMAGENET_STD
    size = cfg.get("input_size", (3, DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE))
    return int(size[-1]), tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))


def _build_hf(repo: str) -> _Built:
    net, size, mean, std, labels = read_hf(repo)
    return _Built(net, f"Hugging Face {repo} (local cache)", repo, size, mean, std, labels)


# ----------------------------------------------------------------------------- labels


def read_labels(path_text: str, classes: int) -> tuple[str, ...]:
    """Class names from a text file (one per line), a JSON list, or a JSON ``{index: name}``."""
    path = Path(path_text).expanduser()
    text = read_capped_text(path, "labels file", error=ModelFileError)
    names: Sequence[Any]
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            raise ModelFileError(f"Labels file '{path_text}' is not valid JSON.") from None
        if isinstance(data, dict):
            try:
                names = [data[k] for k in sorted(data, key=int)]
            except ValueError:
                raise ModelFileError(f"Labels file '{path_text}': keys must be class indices.") from None
        elif isinstance(data, list):
            names = data
        else:
            raise ModelFileError(f"Labels file '{path_text}' must hold a list or an {{index: name}} map.")
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != classes:
        raise ModelFileError(
            f"Labels file '{path_text}' has {len(names)} names but the model has {classes} classes."
        )
    return tuple(str(n) for n in names)


def default_labels(classes: int) -> tuple[str, ...]:
    """Empty (= ImageNet-1k) for 1000 classes, else ``class 0…C−1``."""
    return () if classes == 1000 else tuple(f"class {i}" for i in range(classes))


# ----------------------------------------------------------------------------- entry point


def build_custom(ref: ModelRef) -> tuple[nn.Module, ModelSpec]:
    """Build a user's model (frozen, eval, CPU) and its spec; every failure is a ModelFileError."""
    kind = ref.kind
    if kind == "file":
        built = _build_file(ref.base[5:])
    elif kind == "arch":
        built = _build_arch(ref.base)
    elif kind == "hf":
        built = _build_hf(ref.base[3:])
    else:
        raise ModelFileError(f"'{ref}' is a zoo model, not an own model.")
    net = built.net.eval()
    freeze(net)
    given = ref.option("input_size")
    size = _positive_int(given, "input_size") if given else built.input_size or DEFAULT_INPUT_SIZE
    found = probe(net, size)
    layer, note = choose_cam_layer(found)
    chosen_layer = ref.option("cam_layer")
    if chosen_layer:
        layer, note = chosen_layer, ""
        check_cam_layer(net, found, layer)
    labels_file = ref.option("labels")
    labels = read_labels(labels_file, found.classes) if labels_file else built.labels
    if labels and len(labels) != found.classes:
        labels = ()
    mean_text, std_text = ref.option("mean"), ref.option("std")
    mean = _triple(mean_text, "mean") if mean_text else built.mean or IMAGENET_MEAN
    std = _triple(std_text, "std") if std_text else built.std or IMAGENET_STD
    spec = ModelSpec(
        id=str(ref),
        title=built.title,
        source=built.source,
        input_size=size,
        mean=(float(mean[0]), float(mean[1]), float(mean[2])),
        std=(float(std[0]), float(std[1]), float(std[2])),
        weight_file=None,
        feature_layers=working_feature_layers(net, found, size),
        cam_layer=layer,
        labels=labels or default_labels(found.classes),
        num_classes=found.classes,
        cam_note=note,
    )
    return net, spec


def with_cam_layer(net: nn.Module, spec: ModelSpec, layer: str) -> ModelSpec:
    """A zoo spec with a user-chosen GradCAM++ layer (checked against a probe of ``net``)."""
    found = probe(net, spec.input_size)
    check_cam_layer(net, found, layer)
    return replace(spec, id=str(ModelRef(spec.id, (("cam_layer", layer),))), cam_layer=layer, cam_note="")


def freeze(net: nn.Module) -> None:
    """No parameter requires grad (works for TorchScript modules too, which lack requires_grad_)."""
    for param in net.parameters():
        param.requires_grad_(False)
