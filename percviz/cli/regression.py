"""The regressor branches of ``percviz attack`` and ``percviz evaluate`` (called from :mod:`percviz.cli.attack` and :mod:`percviz.cli.evaluate`).

``percviz attack --model autoencoder --attack reg_quad --image sample:chelsea --out DIR`` writes the
input pair as the classifier branch does, plus ``output_original.npy`` / ``output_adversarial.npy``
(``f(x)``, ``f(x + η)``: ``H×W×3`` for image outputs, ``(K,)`` for embeddings) and the output metrics
in ``result.json``. ``percviz evaluate --model autoencoder --attack reg_quad ... --sweep eps=...``
writes the output-PSNR-against-ε curve (Balda et al. §VI-B Fig. 4) as JSON, CSV, PDF and SVG.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from percviz.cli.args import load_image_set, make_out_folder, parse_params, parse_sweep, report_image_set
from percviz.errors import ParameterError
from percviz.jsonsafe import dumps
from percviz.regression_eval import DEFAULT_EPS

#: ε grid of the curve when ``--sweep eps=...`` is not given, per norm.


def is_regression_attack(attack_id: str | None) -> bool:
    """Whether ``attack_id`` is a registered regression attack (unknown ids: False)."""
    from percviz.attacks.base import registry

    spec = registry().get(attack_id or "")
    return spec is not None and spec.task == "regression"


def regression_models_help() -> list[str]:
    """The regression models, as ``percviz models`` lists them (for the reg_* attacks)."""
    from percviz.models.regression import regressor_ids, regressor_spec

    lines = ["Regression models (for reg_quad, reg_linear, reg_subset, reg_random):"]
    for model_id in regressor_ids():
        spec = regressor_spec(model_id)
        lines.append(
            f"  {model_id:34s} {spec.output:6s} {spec.title} (input {spec.input_size}×{spec.input_size})"
        )
    lines.append(
        "  file:PATH                          image  your TorchScript image-to-image model (local mode)"
    )
    return lines


def routes_to_regression(args: argparse.Namespace) -> bool:
    """Whether ``percviz attack`` runs a regression attack (``--attack``, else the recipe's)."""
    attack = args.attack
    if not attack and args.recipe:
        from percviz.recipes import Recipe

        attack = Recipe.load(args.recipe).attack
    if is_regression_attack(attack):
        return True
    refuse_regressor_for_classifier_attack(args.model, attack)
    return False


def refuse_regressor_for_classifier_attack(model_id: str | None, attack_id: str | None) -> None:
    """One clear line when a classification attack is pointed at a regression model."""
    from percviz.models.regression import is_regressor_id

    if model_id and is_regressor_id(model_id) and not is_regression_attack(attack_id):
        raise ParameterError(
            f"Model '{model_id}' is a regression model; attack it with reg_quad, reg_linear, "
            f"reg_subset or reg_random, not '{attack_id}'."
        )


def _model(model_id: str | None, device: str | None, input_size: int | None = None) -> Any:
    from percviz.models.regression import load_regressor

    if not model_id:
        raise ParameterError(
            "Regression attacks need --model: autoencoder, embedding:<classifier> or file:PATH (TorchScript)."
        )
    return load_regressor(model_id, device, input_size)


def cmd_attack(args: argparse.Namespace) -> int:
    """``percviz attack`` with a regression attack."""
    from percviz import regression_eval as rev
    from percviz.attacks import get_attack
    from percviz.attacks.regression_run import run_regression_attack
    from percviz.images import encode_png, to_numpy
    from percviz.pipeline import load_ref, prepare
    from percviz.recipes import ImageRef, Recipe, environment_versions

    base = Recipe.load(args.recipe) if args.recipe else None
    attack = args.attack or (base.attack if base else None)
    spec = get_attack(attack or "")
    given = base.params if base is not None and attack == base.attack else {}
    params = spec.validate({**given, **parse_params(args.param)})
    image = ImageRef.parse(args.image) if args.image else (base.image if base else None)
    if image is None:
        raise ParameterError("attack needs --image (or --recipe).")
    seed = args.seed if args.seed is not None else (base.seed if base else 0)
    crop = args.crop if (base is None or args.crop != 1.0) else base.crop_fraction
    model = _model(
        args.model or (base.model if base else None),
        args.device or (base.device if base else None),
        getattr(args, "input_size", None),
    )
    prepared = prepare(load_ref(image, check_hash=bool(args.recipe)), model.input_size, crop)
    result = run_regression_attack(spec.id, model, prepared.tensor(model.device), params, seed=seed)
    out = Path(args.out)
    make_out_folder(out)
    original, adversarial = to_numpy(result.x)[0], to_numpy(result.x_adv)[0]
    (out / "original.png").write_bytes(encode_png(original))
    (out / "adversarial.png").write_bytes(encode_png(adversarial))
    np.save(out / "original.npy", original.astype(np.float32))
    np.save(out / "adversarial.npy", adversarial.astype(np.float32))
    out_clean, out_adv = rev.output_array(result.output), rev.output_array(result.output_adv)
    np.save(out / "output_original.npy", out_clean)
    np.save(out / "output_adversarial.npy", out_adv)
    if model.spec.output == "image":
        (out / "output_original.png").write_bytes(encode_png(np.clip(out_clean, 0, 1)))
        (out / "output_adversarial.png").write_bytes(encode_png(np.clip(out_adv, 0, 1)))
    recipe = Recipe(model.spec.id, image, spec.id, dict(params), seed, crop, result.device).as_dict()
    recipe["versions"] = environment_versions()
    extra = {
        "image": {
            "name": prepared.loaded.name,
            "original_size": [prepared.loaded.height, prepared.loaded.width],
            "model_size": list(prepared.model_input.shape[:2]),
            "conversions": list(prepared.loaded.conversions),
        },
        "recipe": recipe,
    }
    report = rev.report(result, model, extra)
    (out / "result.json").write_text(dumps(report, indent=2) + "\n", encoding="utf-8")
    m = result.metrics[0]
    print(
        f"{attack}: output PSNR {m['output_psnr']:.2f} dB (MSE {m['output_mse']:.3g}); input PSNR "
        f"{m['psnr']:.2f} dB; within bound: {bool(result.within_bound[0])}; wrote {out}"
    )
    return 0


def _eps_values(args: argparse.Namespace, runs: list[Any]) -> list[float]:

    sweep = parse_sweep(args.sweep)
    other = [n for n in sweep if n.rpartition(".")[2] != "eps"]
    if other:
        raise ParameterError(f"The regression curve sweeps eps only; got --sweep {', '.join(other)}.")
    if sweep:
        values = [float(v) for v in next(iter(sweep.values()))]
    else:
        from percviz.attacks import get_attack

        p = str(get_attack(runs[0].attack).validate(runs[0].params).get("p", "inf"))
        values = list(DEFAULT_EPS.get(p, DEFAULT_EPS["inf"]))
    if any(not np.isfinite(v) or v < 0 for v in values):
        raise ParameterError(f"eps values must be finite and ≥ 0; got {values}.")
    return values


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``percviz evaluate`` with regression attacks: the Fig. 4 curve over a folder or the samples."""
    import torch

    from percviz import evaluation as ev
    from percviz import regression_eval as rev
    from percviz.attacks import get_attack

    attacks = list(dict.fromkeys(args.attack))
    wrong = [a for a in attacks if not is_regression_attack(a)]
    if wrong:
        raise ParameterError(
            f"Regression and classification attacks cannot share one evaluation: {', '.join(wrong)}."
        )
    raw = parse_params(args.param)
    runs = []
    for attack in attacks:
        spec = get_attack(attack)
        given = {k: v for k, v in ev.scoped_params(raw, attack, spec.param_names()).items() if k != "eps"}
        spec.validate(given)
        runs.append(rev.CurveRun(attack, given))
    runs = rev.with_baselines(runs)
    eps_values = _eps_values(args, runs)
    model = _model(args.model, args.device, getattr(args, "input_size", None))
    images, skipped = load_image_set(args, model.input_size)
    report_image_set(args, images, skipped)
    x = torch.from_numpy(np.stack([im.pixels for im in images])).permute(0, 3, 1, 2).to(model.device)

    def progress(record: dict[str, Any]) -> None:
        if not args.quiet:
            print(
                f"  [{record['done']}/{record['total']}] {record['label']} ε={record['eps']:.4g}",
                file=sys.stderr,
            )

    rows = rev.output_psnr_curve(model, x, runs, eps_values, seed=args.seed, progress=progress)
    out = Path(args.out)
    make_out_folder(out)
    meta = {
        "model": model.spec.id,
        "device": str(model.device),
        "seed": args.seed,
        "images": [im.name for im in images],
        "skipped": [s.as_dict() for s in skipped],
        "eps": eps_values,
    }
    files = rev.write_curve(out, rows, meta)
    for label in dict.fromkeys(r["label"] for r in rows):
        points = [r for r in rows if r["label"] == label]
        psnrs = ", ".join(f"{r['output_psnr']:.2f}" for r in points)
        eps = ", ".join(f"{r['eps']:.4g}" for r in points)
        print(f"{label}: output PSNR {psnrs} dB at ε = {eps}")
    print(f"wrote {out} ({', '.join(files)}; {len(images)} images)")
    return 0
