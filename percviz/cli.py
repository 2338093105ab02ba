"""Command line (SPEC §7): ``percviz models | attacks | predict | attack | figure``.

Bad input exits non-zero with one line on stderr (``percviz: error: …``); set
``PERCVIZ_DEBUG=1`` to see tracebacks instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from percviz.errors import ParameterError, PercvizError

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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

    fig = sub.add_parser("figure", help="render a publication figure from a recipe")
    fig.add_argument("--recipe", required=True, action="append", help="recipe JSON (repeat for rows)")
    fig.add_argument("--out", required=True, help="output file: .png, .svg or .pdf")
    fig.add_argument("--device", default=None)
    return parser


def _add_model_image(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--model",
        default=None if not required else "efficientnet_lite0",
        help="model id (default efficientnet_lite0)",
    )
    p.add_argument("--image", required=required, help="image file, or sample:NAME (e.g. sample:chelsea)")
    p.add_argument(
        "--crop", type=float, default=1.0, help="central crop fraction before resizing (default 1)"
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best available)")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except PercvizError as exc:
        return _fail(str(exc), EXIT_USER_ERROR)
    except KeyboardInterrupt:
        return _fail("interrupted.", 130)
    except Exception as exc:
        if os.environ.get("PERCVIZ_DEBUG") == "1":
            raise
        return _fail(f"{type(exc).__name__}: {exc}", EXIT_INTERNAL_ERROR)


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
        print(json.dumps(payload, indent=2))
        return 0
    for s in rows:
        state = "available" if s.available else "UNAVAILABLE"
        print(f"{s.spec.id:20s} {state:12s} {s.spec.title}")
        if not s.available:
            print(f"{'':20s} to enable: {s.how_to_enable}")
    return 0


def cmd_attacks(args: argparse.Namespace) -> int:
    from percviz.attacks import registry

    specs = registry()
    if args.json:
        print(json.dumps([s.as_dict() for s in specs.values()], indent=2))
        return 0
    for spec in specs.values():
        print(f"{spec.id:12s} {spec.title} — {spec.source}")
        for p in spec.params:
            rng = f"[{p.low}, {p.high}]" if p.low is not None or p.high is not None else ""
            choices = f"{{{', '.join(p.choices)}}}" if p.choices else ""
            default = "none" if p.default is None else p.default
            print(f"{'':14s}{p.name:14s} {p.kind:6s} default={default} {rng}{choices} {p.unit}".rstrip())
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from percviz.models import load_model, predict
    from percviz.pipeline import load_ref, prepare
    from percviz.recipes import ImageRef

    model = load_model(args.model, args.device)
    image = prepare(load_ref(ImageRef.parse(args.image)), model.input_size, args.crop)
    preds = predict(model, image.tensor(model.device), args.top)[0]
    payload = {
        "model": model.spec.id,
        "image": image.loaded.name,
        "conversions": list(image.loaded.conversions),
        "top": [p.as_dict() for p in preds],
    }
    print(json.dumps(payload, indent=2))
    return 0


def parse_params(items: Sequence[str]) -> dict[str, str]:
    """``["eps=0.03", "loss=cw"]`` → ``{"eps": "0.03", "loss": "cw"}`` (validated later)."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ParameterError(f"--param takes NAME=VALUE; got '{item}'.")
        out[name.strip()] = value.strip()
    return out


def _recipe_from_args(args: argparse.Namespace) -> Any:
    from percviz.attacks import get_attack
    from percviz.models import DEFAULT_MODEL, get_spec
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
            model=args.model or base.model,
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
    model_id = args.model or DEFAULT_MODEL
    get_spec(model_id)
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
    from percviz.images import encode_png, to_numpy
    from percviz.pipeline import build_report, run_recipe

    recipe = _recipe_from_args(args)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PercvizError(f"Cannot create output folder '{out}': {exc.strerror or exc}.") from None
    outcome = run_recipe(recipe, check_hash=bool(args.recipe))
    original = to_numpy(outcome.result.x)[0]
    adversarial = to_numpy(outcome.result.x_adv)[0]
    (out / "original.png").write_bytes(encode_png(original))
    (out / "adversarial.png").write_bytes(encode_png(adversarial))
    np.save(out / "original.npy", original.astype(np.float32))
    np.save(out / "adversarial.npy", adversarial.astype(np.float32))
    report = build_report(outcome)
    if args.maps:
        from percviz.views import save_maps

        save_maps(outcome.result, outcome.model, out)
    (out / "result.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    before = report["prediction_before"][0]["label"]
    after = report["prediction_after"][0]["label"]
    verdict = "fooled" if report["success"] else "not fooled"
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
    render_recipes(recipes, Path(args.out), device=args.device)
    print(f"wrote {args.out}")
    return 0


_COMMANDS = {
    "models": cmd_models,
    "attacks": cmd_attacks,
    "predict": cmd_predict,
    "attack": cmd_attack,
    "figure": cmd_figure,
}


if __name__ == "__main__":
    raise SystemExit(main())
