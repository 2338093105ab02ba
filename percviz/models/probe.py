"""What one forward pass reveals about a user's network (its class count, feature-map modules, whether it
ends in tokens or is TorchScript) and the layers percviz picks from it: the GradCAM++ layer (the last
feature-map module of a CNN, or none and why) and the stage outputs the perceptual distance uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from percviz.errors import ModelFileError, one_line, out_of_memory_text

POOLING = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
MAX_FEATURE_LAYERS = 5


@dataclass(frozen=True)
class Probe:
    """What one forward pass on a ``2×3×S×S`` input revealed.

    Attributes:
        classes: C of the ``N×C`` output.
        maps: ``(name, (C, h, w))`` of every once-called, non-pooling module with a 4-D output
            with h, w > 1, in execution order (containers after their children).
        tokens_after: whether a module produced ``N×T×D`` tokens after the last of those maps.
        scripted: TorchScript (no hooks: no layer information).
    """

    classes: int
    maps: tuple[tuple[str, tuple[int, int, int]], ...]
    tokens_after: bool
    scripted: bool


def probe(net: nn.Module, size: int) -> Probe:
    """Run ``net`` once on a grey ``2×3×size×size`` batch (hooks on a private, unshared net)."""
    scripted = isinstance(net, torch.jit.ScriptModule)
    records: list[tuple[str, nn.Module, tuple[int, ...]]] = []
    calls: dict[str, int] = {}
    handles = []
    if not scripted:
        for name, module in net.named_modules():
            if not name:
                continue

            def hook(mod: nn.Module, _inp: Any, out: Any, name: str = name) -> None:
                calls[name] = calls.get(name, 0) + 1
                if isinstance(out, torch.Tensor):
                    records.append((name, mod, tuple(out.shape)))

            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            out = net(torch.full((2, 3, size, size), 0.5))
    except Exception as exc:
        if out_of_memory_text(exc):
            raise ModelFileError(
                f"The model asks for more memory than this machine has on a 2×3×{size}×{size} input "
                f"({one_line(exc)}); percviz cannot run it here."
            ) from None
        raise ModelFileError(
            f"The model fails on a 2×3×{size}×{size} input ({one_line(exc)}); if it expects another "
            "image size, set input_size."
        ) from None
    finally:
        for h in handles:
            h.remove()
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 2 or out.shape[1] < 2:
        shape = "×".join(map(str, out.shape)) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelFileError(
            f"The model's output for a 2×3×{size}×{size} batch is {shape}, not N×C class logits; "
            "percviz attacks classifiers."
        )
    maps = tuple(
        (name, shape[1:])
        for name, mod, shape in records
        if len(shape) == 4
        and shape[2] > 1
        and shape[3] > 1
        and calls[name] == 1
        and not isinstance(mod, POOLING)
    )
    last = max((i for i, (n, _, s) in enumerate(records) if maps and n == maps[-1][0]), default=-1)
    tokens = any(len(s) == 3 for _, _, s in records[last + 1 :])
    return Probe(
        int(out.shape[1]), maps, tokens or (not maps and any(len(s) == 3 for *_, s in records)), scripted
    )


def choose_cam_layer(found: Probe) -> tuple[str, str]:
    """``(layer, note)``: the last feature-map module of a CNN, or ``""`` and why there is none."""
    if found.scripted:
        return "", (
            "GradCAM++ needs hooks on a layer, which a loaded TorchScript model does not allow; "
            "export to ONNX or load the architecture with ARCH@PATH to get GradCAM++."
        )
    if found.tokens_after:
        return "", (
            "GradCAM++ needs N×C×h×w feature maps, but this model ends in tokens (N×T×D, as a vision "
            "transformer does), which need a reshape percviz does not guess; choose a convolutional "
            "layer with cam_layer=NAME."
        )
    if not found.maps:
        return "", "GradCAM++ found no layer with N×C×h×w feature maps in this model."
    return found.maps[-1][0], ""


def choose_feature_layers(found: Probe) -> tuple[str, ...]:
    """Stage outputs: the last feature-map module at each spatial size (at most the last five)."""
    last_at: dict[tuple[int, int], str] = {}
    for name, (_, h, w) in found.maps:
        last_at.pop((h, w), None)
        last_at[(h, w)] = name
    return tuple(last_at.values())[-MAX_FEATURE_LAYERS:]


def check_cam_layer(net: nn.Module, found: Probe, layer: str) -> None:
    """Refuse a layer name that does not exist or whose output is not ``N×C×h×w``."""
    names = dict(net.named_modules())
    if layer not in names or not layer:
        options = ", ".join(n for n, _ in found.maps[-8:]) or "none found"
        raise ModelFileError(f"Layer '{layer}' does not exist in this model; feature-map layers: {options}.")
    if found.scripted:
        raise ModelFileError(choose_cam_layer(found)[1])
    if layer not in dict(found.maps):
        raise ModelFileError(
            f"Layer '{layer}' does not produce N×C×h×w feature maps (called once), which GradCAM++ needs."
        )


def working_feature_layers(net: nn.Module, found: Probe, size: int) -> tuple[str, ...]:
    """Stage outputs that a torch.fx feature extractor can return (empty when it cannot trace)."""
    layers = choose_feature_layers(found)
    if not layers or found.scripted:
        return ()
    try:
        from torchvision.models.feature_extraction import create_feature_extractor

        extractor = create_feature_extractor(net, return_nodes={n: n for n in layers})
        with torch.no_grad():
            extractor(torch.full((1, 3, size, size), 0.5))
    except Exception:
        return ()
    return layers
