"""``percviz figure``: a publication figure (PNG, SVG or PDF) from one or more recipes."""

from __future__ import annotations

import argparse
from pathlib import Path

from percviz.errors import ParameterError


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
