"""``percviz attack``: one attack on one image (or a replayed recipe) → the images, arrays and
``result.json``; regression attacks go to :mod:`percviz.cli.regression`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from percviz.cli import regression
from percviz.cli.args import check_out_folder, make_out_folder, model_arg, parse_params
from percviz.errors import ParameterError


def recipe_from_args(args: argparse.Namespace) -> Any:
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
    from percviz.images import encode_png, to_numpy
    from percviz.pipeline import build_report, run_recipe

    if regression.routes_to_regression(args):
        return regression.cmd_attack(args)
    recipe = recipe_from_args(args)
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
