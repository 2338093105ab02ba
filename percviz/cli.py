"""Command line: ``percviz models | attacks | predict | attack | figure | evaluate``.

Bad input exits non-zero with one line on stderr (``percviz: error: …``); set
``PERCVIZ_DEBUG=1`` to see tracebacks instead.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from percviz.cli_args import model_arg, parse_params
from percviz.errors import ParameterError, PercvizError

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
MAX_SEED = 2**63 - 1


class _UsageError(PercvizError):
    """A command line argparse refused (unknown flag, missing value, not an integer…)."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one sentence (exit 2), not usage plus error."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see `{self.prog} --help`).")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="percviz", description="Perceptually guided adversarial examples: models, attacks, analysis."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="list models and whether their weights are here")
    models.add_argument("--json", action="store_true", help="machine-readable output")

    attacks = sub.add_parser("attacks", help="list attacks with their parameters")
    attacks.add_argument("--json", action="store_true", help="machine-readable output")

    pred = sub.add_parser("predict", help="top-k prediction of one image, as JSON")
    _add_model_image(pred)
    pred.add_argument("--top", type=int, default=5, help="how many classes (default 5)")

    att = sub.add_parser("attack", help="run one attack on one image and write its outputs")
    _add_model_image(att, required=False)
    att.add_argument("--attack", help="attack id (see `percviz attacks`)")
    att.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="attack parameter")
    att.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    att.add_argument("--recipe", help="replay a saved recipe (JSON); --param/--seed override it")
    att.add_argument("--out", required=True, help="output folder")
    att.add_argument("--maps", action="store_true", help="also write the arrays behind every view")
    att.add_argument(
        "--frames",
        action="store_true",
        help="also write the replay: up to 40 evenly spaced iterates with their top-1 class, loss and "
        "distances (frames.npz) and an animated replay.gif",
    )

    fig = sub.add_parser("figure", help="render a publication figure from a recipe")
    fig.add_argument("--recipe", required=True, action="append", help="recipe JSON (repeat for rows)")
    fig.add_argument("--out", required=True, help="output file: .png, .svg or .pdf")
    fig.add_argument("--device", default=None)
    fig.add_argument(
        "--ssim-colormap",
        choices=("viridis", "gray"),
        default="viridis",
        help="SSIM maps in viridis (as the app shows them; default) or grey (as Pochimireddy et al. "
        "2021 Fig. 3)",
    )

    ev = sub.add_parser(
        "evaluate",
        help="run attacks over a folder of images: CSV + JSON summary + plots (resumable)",
        description="Dataset numbers (fooling rate, P_suc, conditional mean distortion, P(D), mean "
        "SSIM/PSNR/LPIPS-self, explainability scores) for one or more attacks over a folder. "
        "Rows are appended to OUT/rows.jsonl as images finish; rerunning the same command skips them.",
    )
    ev.add_argument(
        "--images",
        required=True,
        help="folder of images (PNG/JPEG/WebP/BMP/TIFF), or sample:all / sample:chelsea,coffee for the bundled photos",
    )
    ev.add_argument("--attack", action="append", required=True, help="attack id (repeat for several)")
    ev.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="parameter (NAME or ATTACK.NAME)"
    )
    ev.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="NAME=V1,V2,...",
        help="sweep a parameter (NAME or ATTACK.NAME)",
    )
    ev.add_argument("--match", default=None, metavar="ssim=V|psnr=V", help="matched-quality mode (bisection)")
    ev.add_argument("--model", default="efficientnet_lite0", help=MODEL_HELP)
    _add_own_model_options(ev, labels_flags=("--class-names",))
    ev.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ev.add_argument("--batch", type=int, default=8, help="images per pass (default 8)")
    ev.add_argument(
        "--crop", type=float, default=1.0, help="central crop fraction before resizing (default 1)"
    )
    ev.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best available)")
    ev.add_argument(
        "--labels", default=None, help="optional CSV 'file,class_index' of true labels (for P_suc)"
    )
    ev.add_argument("--limit", type=int, default=None, help="use only the first N images (sorted by name)")
    ev.add_argument("--no-explain", action="store_true", help="skip GradCAM++ explainability scores")
    ev.add_argument(
        "--transfer-to",
        default=None,
        metavar="M1,M2",
        help="also write the transfer matrix (fooling rate of examples made on each of --model, M1, M2… "
        "when classified by each of them) to OUT/transfer-ATTACK.json and .csv",
    )
    ev.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process (default); ray: work units spread over Ray workers (same rows)",
    )
    ev.add_argument(
        "--address",
        default=None,
        help="with --engine ray: cluster address (auto, ray://HOST:10001); default: a local runtime",
    )
    ev.add_argument("--workers", type=int, default=2, help="with --engine ray: worker actors (default 2)")
    ev.add_argument(
        "--gpus-per-worker", type=float, default=0.0, help="with --engine ray: GPUs per worker (default 0)"
    )
    ev.add_argument(
        "--threads-per-worker",
        type=int,
        default=None,
        help="with --engine ray: PyTorch threads per worker (default: this process's count, which keeps "
        "CPU rows bit-identical to an in-process run; fewer lets several workers share a machine's cores)",
    )
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.add_argument("--out", required=True, help="output folder")
    return parser


MODEL_HELP = (
    "zoo id (default efficientnet_lite0; see `percviz models`), file:PATH (TorchScript or ONNX), "
    "ARCH@PATH (timm/torchvision architecture + checkpoint) or hf:REPO_ID (Hugging Face cache)"
)


def _add_model_image(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--model", default=None if not required else "efficientnet_lite0", help=MODEL_HELP)
    _add_own_model_options(p, labels_flags=("--labels", "--class-names"))
    p.add_argument("--image", required=required, help="image file, or sample:NAME (e.g. sample:chelsea)")
    p.add_argument(
        "--crop", type=float, default=1.0, help="central crop fraction before resizing (default 1)"
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best available)")


def _add_own_model_options(p: argparse.ArgumentParser, labels_flags: tuple[str, ...]) -> None:
    p.add_argument(
        *labels_flags,
        dest="class_names",
        default=None,
        metavar="FILE",
        help="class names of your own model (one per line, or JSON); default ImageNet-1k for 1000 outputs",
    )
    p.add_argument("--input-size", type=int, default=None, help="your model's input side in pixels")
    p.add_argument("--mean", default=None, metavar="A,B,C", help="your model's input mean (default ImageNet)")
    p.add_argument("--std", default=None, metavar="A,B,C", help="your model's input std (default ImageNet)")
    p.add_argument("--cam-layer", default=None, metavar="NAME", help="GradCAM++ target layer (dotted name)")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        check_args(args)
        return _COMMANDS[args.command](args)
    except PercvizError as exc:
        return _fail(str(exc), EXIT_USER_ERROR)
    except KeyboardInterrupt:
        return _fail("interrupted.", 130)
    except Exception as exc:
        if os.environ.get("PERCVIZ_DEBUG") == "1":
            raise
        return _fail(f"{type(exc).__name__}: {exc}", EXIT_INTERNAL_ERROR)


def check_args(args: argparse.Namespace) -> None:
    """Refuse out-of-range common options before anything is loaded or written (ParameterError)."""
    crop = getattr(args, "crop", None)
    if crop is not None and not (math.isfinite(crop) and 0.1 <= crop <= 1.0):
        raise ParameterError(f"--crop must be a central fraction in [0.1, 1]; got {crop}.")
    seed = getattr(args, "seed", None)
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise ParameterError(f"--seed must be an integer in [0, 2^63 − 1]; got {seed}.")
    top = getattr(args, "top", None)
    if top is not None and not 1 <= top <= 1000:
        raise ParameterError(f"--top must lie in [1, 1000]; got {top}.")
    for flag in ("batch", "limit"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            raise ParameterError(f"--{flag} must be at least 1; got {value}.")
    if getattr(args, "device", None) is not None:
        check_device(args.device)


def check_device(text: str) -> None:
    """``--device``: ``cpu``, ``cuda``, ``cuda:N`` or ``mps``, present on this machine (ParameterError)."""
    from percviz.device import check_device as present

    present(text, "--device")


def check_out_folder(out: Path) -> None:
    """Refuse an ``--out`` that exists and is not a folder, before any work (nothing is created)."""
    if out.exists() and not out.is_dir():
        raise ParameterError(f"--out '{out}' exists and is not a folder.")


def make_out_folder(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PercvizError(f"Cannot create output folder '{out}': {exc.strerror or exc}.") from None


def _fail(message: str, code: int) -> int:
    print(f"percviz: error: {' '.join(message.split())}", file=sys.stderr)
    return code


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
        from percviz.jsonsafe import json_safe

        print(json.dumps(json_safe(payload), indent=2))
        return 0
    for s in rows:
        state = "available" if s.available else "UNAVAILABLE"
        print(f"{s.spec.id:20s} {state:12s} {s.spec.title} (input {s.spec.input_size}×{s.spec.input_size})")
        if not s.available:
            print(f"{'':20s} to enable: {s.how_to_enable}")
    from percviz.cli_regression import regression_models_help

    print()
    for line in regression_models_help():
        print(line)
    print()
    for line in own_models_help():
        print(line)
    return 0


def own_models_help() -> list[str]:
    """How to use your own model, as printed by ``percviz models``."""
    from percviz.limits import current_limits

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
        from percviz.jsonsafe import json_safe

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
    from percviz.models import load_model, predict
    from percviz.pipeline import load_ref, prepare
    from percviz.recipes import ImageRef

    model = load_model(model_arg(args) or "", args.device)
    image = prepare(load_ref(ImageRef.parse(args.image)), model.input_size, args.crop)
    preds = predict(model, image.tensor(model.device), args.top)[0]
    payload = {
        "model": model.spec.id,
        "image": image.loaded.name,
        "conversions": list(image.loaded.conversions),
        "top": [p.as_dict() for p in preds],
    }
    from percviz.jsonsafe import json_safe

    print(json.dumps(json_safe(payload), indent=2))
    return 0


def _recipe_from_args(args: argparse.Namespace) -> Any:
    from percviz.attacks import get_attack
    from percviz.models import DEFAULT_MODEL
    from percviz.recipes import ImageRef, Recipe

    overrides = parse_params(args.param)
    if args.recipe:
        base = Recipe.load(args.recipe)
        spec = get_attack(args.attack or base.attack)
        params = (
            spec.validate({**base.params, **overrides})
            if (args.attack in (None, base.attack))
            else (spec.validate(overrides))
        )
        return Recipe(
            model=model_arg(args) or base.model,
            image=ImageRef.parse(args.image) if args.image else base.image,
            attack=spec.id,
            params=params,
            seed=base.seed if args.seed is None else args.seed,
            crop_fraction=base.crop_fraction if args.crop == 1.0 else args.crop,
            device=args.device or base.device,
        )
    missing = [flag for flag, value in (("--image", args.image), ("--attack", args.attack)) if not value]
    if missing:
        raise ParameterError(f"attack needs {' and '.join(missing)} (or --recipe).")
    spec = get_attack(args.attack)
    model_id = model_arg(args, DEFAULT_MODEL) or DEFAULT_MODEL
    return Recipe(
        model=model_id,
        image=ImageRef.parse(args.image),
        attack=spec.id,
        params=spec.validate(overrides),
        seed=0 if args.seed is None else args.seed,
        crop_fraction=args.crop,
        device=args.device,
    )


def cmd_attack(args: argparse.Namespace) -> int:
    from percviz import cli_regression
    from percviz.images import encode_png, to_numpy
    from percviz.pipeline import build_report, run_recipe

    if cli_regression.routes_to_regression(args):
        return cli_regression.cmd_attack(args)
    recipe = _recipe_from_args(args)
    out = Path(args.out)
    check_out_folder(out)
    from percviz.attacks.frames import MAX_FRAMES

    frames = MAX_FRAMES if getattr(args, "frames", False) else 0
    outcome = run_recipe(recipe, check_hash=bool(args.recipe), frames=frames)
    make_out_folder(out)  # only once the model, image and attack all worked
    original = to_numpy(outcome.result.x)[0]
    adversarial = to_numpy(outcome.result.x_adv)[0]
    (out / "original.png").write_bytes(encode_png(original))
    (out / "adversarial.png").write_bytes(encode_png(adversarial))
    np.save(out / "original.npy", original.astype(np.float32))
    np.save(out / "adversarial.npy", adversarial.astype(np.float32))
    from percviz.jsonsafe import dumps

    report = build_report(outcome)
    if args.maps:
        from percviz.analysis.views import save_maps

        save_maps(outcome.result, outcome.model, out)
    if frames:
        from percviz.analysis.replay import build_replay, save_replay

        replay = build_replay(outcome.model, outcome.result, outcome.model.labels)
        if replay is not None:
            save_replay(replay, out)
    (out / "result.json").write_text(dumps(report, indent=2) + "\n", encoding="utf-8")
    before = report["prediction_before"][0]["label"]
    after = report["prediction_after"][0]["label"]
    verdict = "fooled" if report["fooled"] else "not fooled"
    if any(b["kind"] == "hard" for b in report["bounds"]):
        verdict += ", within bound" if report["within_bound"] else ", OUTSIDE its bound: not a success"
    print(
        f"{recipe.attack}: {before} → {after} ({verdict}); SSIM {report['metrics']['ssim']:.4f}; wrote {out}"
    )
    return 0


def cmd_figure(args: argparse.Namespace) -> int:
    from percviz.figures import render_recipes

    suffix = Path(args.out).suffix.lower()
    if suffix not in (".png", ".svg", ".pdf"):
        raise ParameterError(f"--out must end in .png, .svg or .pdf; got '{args.out}'.")
    from percviz.recipes import Recipe

    recipes = [Recipe.load(path) for path in args.recipe]
    render_recipes(recipes, Path(args.out), device=args.device, ssim_colormap=args.ssim_colormap)
    print(f"wrote {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``percviz evaluate`` (:func:`percviz.cli_evaluate.evaluate_command`)."""
    from percviz.cli_evaluate import evaluate_command

    return evaluate_command(args)


_COMMANDS = {
    "models": cmd_models,
    "attacks": cmd_attacks,
    "predict": cmd_predict,
    "attack": cmd_attack,
    "figure": cmd_figure,
    "evaluate": cmd_evaluate,
}


if __name__ == "__main__":
    raise SystemExit(main())
