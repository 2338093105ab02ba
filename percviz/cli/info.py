"""``percviz models``, ``percviz attacks`` and ``percviz predict``: what is here, and one prediction."""

from __future__ import annotations

import argparse
import json
from typing import Any

from percviz.cli.args import model_arg
from percviz.cli.regression import regression_models_help
from percviz.jsonsafe import json_safe
from percviz.limits import current_limits


def cmd_models(args: argparse.Namespace) -> int:
    from percviz.models import all_model_status

    rows = all_model_status()
    if args.json:
        payload = [
            {
                "id": s.spec.id,
                "title": s.spec.title,
                "available": s.available,
                "weight_file": s.weight_path.name,
                "folder": str(s.weight_path.parent),
                "how_to_enable": s.how_to_enable,
            }
            for s in rows
        ]
        print(json.dumps(json_safe(payload), indent=2))
        return 0
    for s in rows:
        state = "available" if s.available else "UNAVAILABLE"
        print(f"{s.spec.id:20s} {state:12s} {s.spec.title} (input {s.spec.input_size}×{s.spec.input_size})")
        if not s.available:
            print(f"{'':20s} to enable: {s.how_to_enable}")
    print()
    for line in regression_models_help():
        print(line)
    print()
    for line in own_models_help():
        print(line)
    return 0


def own_models_help() -> list[str]:
    """How to use your own model, as printed by ``percviz models``."""
    if not current_limits().allow_custom_models:
        return ["Own models are turned off on this server (hosted mode)."]
    return [
        "Your own model (--model):",
        "  file:PATH              TorchScript (.pt/.ts) or ONNX (.onnx), recognised from the content",
        "  ARCH@PATH              timm or torchvision architecture + safetensors or state-dict checkpoint",
        "                         (timm:NAME@PATH / torchvision:NAME@PATH to choose the library)",
        "  hf:REPO_ID             Hugging Face image classifier already in the local cache",
        "  --labels FILE          class names (default ImageNet-1k for 1000 outputs, else 'class i')",
        "  --input-size N         input side (inferred from ONNX / timm / Hugging Face, else 224)",
        "  --mean A,B,C --std A,B,C   input normalisation (default ImageNet; 0,0,0 and 1,1,1 = none)",
        "  --cam-layer NAME       GradCAM++ layer (default: the last layer with feature maps)",
        "Pickled whole-model files (torch.save(model)) are refused: unpickling can run code.",
    ]


def cmd_attacks(args: argparse.Namespace) -> int:
    from percviz.attacks import registry

    specs = registry()
    if args.json:
        print(json.dumps(json_safe([s.as_dict() for s in specs.values()]), indent=2))
        return 0
    for spec in specs.values():
        print(f"{spec.id:12s} {spec.title} — {spec.source}")
        bounds = "; ".join(_constraint_line(c) for c in spec.constraints) or "none"
        loops = ", ".join((*spec.iteration_params, *spec.cost_params)) or "none"
        print(f"{'':14s}strength={spec.strength} iterations/cost={loops} bound: {bounds}")
        for p in spec.params:
            rng = f"[{p.low}, {p.high}]" if p.low is not None or p.high is not None else ""
            choices = f"{{{', '.join(p.choices)}}}" if p.choices else ""
            default = "none" if p.default is None else p.default
            print(f"{'':14s}{p.name:14s} {p.kind:6s} default={default} {rng}{choices} {p.unit}".rstrip())
    return 0


def _constraint_line(c: Any) -> str:
    """``hard (anchor=original): S2 ≥ …``: a constraint's kind, the runs it applies to, and its text."""
    when = ", ".join(f"{k}={v}" for k, v in c.when.items())
    return f"{c.kind}{f' ({when})' if when else ''}: {c.text or c.distance}"


def cmd_predict(args: argparse.Namespace) -> int:
    from percviz.attacks.perturbation import robustness_rhos
    from percviz.models import load_model, predict
    from percviz.pipeline import load_ref, prepare
    from percviz.recipes import ImageRef

    model = load_model(model_arg(args) or "", args.device)
    image = prepare(load_ref(ImageRef.parse(args.image)), model.input_size, args.crop)
    x = image.tensor(model.device)
    preds = predict(model, x, args.top)[0]
    rho_l2, rho_linf = robustness_rhos(model, x, (2, "inf"))
    payload = {
        "model": model.spec.id,
        "image": image.loaded.name,
        "conversions": list(image.loaded.conversions),
        "top": [p.as_dict() for p in preds],
        # Balda et al. 2019 Theorem 1: the linearised distance to the closest decision boundary
        # (runner-up among the top 10 other classes), in [0, 1] units over the whole image.
        "rho_l2": float(rho_l2[0]),
        "rho_linf": float(rho_linf[0]),
    }
    print(json.dumps(json_safe(payload), indent=2))
    return 0
