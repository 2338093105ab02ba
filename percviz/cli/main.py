"""Command line: ``percviz models | attacks | predict | attack | figure | evaluate``.

Bad input exits non-zero with one line on stderr (``percviz: error: …``); set
``PERCVIZ_DEBUG=1`` to see tracebacks instead. Each command lives in its own module of this package;
:mod:`percviz.cli.args` holds what they share.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from percviz.cli import attack, evaluate, figure, info
from percviz.cli.args import MODEL_HELP, Parser, add_model_image, add_own_model_options, check_args
from percviz.errors import PercvizError

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="percviz", description="Perceptually guided adversarial examples: models, attacks, analysis."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="list models and whether their weights are here")
    models.add_argument("--json", action="store_true", help="machine-readable output")

    attacks = sub.add_parser("attacks", help="list attacks with their parameters")
    attacks.add_argument("--json", action="store_true", help="machine-readable output")

    pred = sub.add_parser("predict", help="top-k prediction of one image, as JSON")
    add_model_image(pred)
    pred.add_argument("--top", type=int, default=5, help="how many classes (default 5)")

    att = sub.add_parser("attack", help="run one attack on one image and write its outputs")
    add_model_image(att, required=False)
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
    add_own_model_options(ev, labels_flags=("--class-names",))
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


def _fail(message: str, code: int) -> int:
    print(f"percviz: error: {' '.join(message.split())}", file=sys.stderr)
    return code


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "models": info.cmd_models,
    "attacks": info.cmd_attacks,
    "predict": info.cmd_predict,
    "attack": attack.cmd_attack,
    "figure": figure.cmd_figure,
    "evaluate": evaluate.evaluate_command,
}
