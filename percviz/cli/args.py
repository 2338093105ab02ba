"""Command-line arguments shared by every ``percviz`` command: the argparse flavour that reports a
bad command line as one sentence, the model/image options, ``--param NAME=VALUE``, ``--sweep
NAME=V1,V2``, the model reference with its options, and the checks of common options and the
output folder."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from percviz.errors import ParameterError, PercvizError

if TYPE_CHECKING:
    from percviz.evaluation import EvalImage, Skipped

MAX_SEED = 2**63 - 1


class UsageError(PercvizError):
    """A command line argparse refused (unknown flag, missing value, not an integer…)."""


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one sentence (exit 2), not usage plus error."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`).")


MODEL_HELP = (
    "zoo id (default efficientnet_lite0; see `percviz models`), file:PATH (TorchScript or ONNX), "
    "ARCH@PATH (timm/torchvision architecture + checkpoint) or hf:REPO_ID (Hugging Face cache)"
)


def add_model_image(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--model", default=None if not required else "efficientnet_lite0", help=MODEL_HELP)
    add_own_model_options(p, labels_flags=("--labels", "--class-names"))
    p.add_argument("--image", required=required, help="image file, or sample:NAME (e.g. sample:chelsea)")
    p.add_argument(
        "--crop", type=float, default=1.0, help="central crop fraction before resizing (default 1)"
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best available)")


def add_own_model_options(p: argparse.ArgumentParser, labels_flags: tuple[str, ...]) -> None:
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


def parse_params(items: Sequence[str]) -> dict[str, str]:
    """``["eps=0.03", "loss=cw"]`` → ``{"eps": "0.03", "loss": "cw"}`` (validated later)."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ParameterError(f"--param takes NAME=VALUE; got '{item}'.")
        out[name.strip()] = value.strip()
    return out


def parse_sweep(items: Sequence[str]) -> dict[str, list[str]]:
    """``["eps=0.01,0.02"]`` → ``{"eps": ["0.01", "0.02"]}`` (validated against the schema later)."""
    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        parts = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not name.strip() or not parts:
            raise ParameterError(f"--sweep takes NAME=V1,V2,...; got '{item}'.")
        out[name.strip()] = parts
    return out


def model_arg(args: argparse.Namespace, default: str | None = None) -> str | None:
    """The model reference from ``--model`` plus ``--labels/--input-size/--mean/--std/--cam-layer``."""
    from percviz.models.custom import model_ref

    base = args.model or default
    if base is None:
        return None
    return model_ref(
        base,
        labels=getattr(args, "class_names", None),
        input_size=getattr(args, "input_size", None),
        mean=getattr(args, "mean", None),
        std=getattr(args, "std", None),
        cam_layer=getattr(args, "cam_layer", None),
    )


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


def load_image_set(
    args: argparse.Namespace, size: int, true_labels: dict[str, int] | None = None
) -> tuple[list[EvalImage], list[Skipped]]:
    """``--images`` (a folder, or ``sample:all`` / ``sample:chelsea,coffee``) at ``size``×``size`` with
    ``--crop`` and ``--limit``: the images read and those skipped, each with its reason."""
    from percviz import evaluation as ev

    if args.images.startswith("sample:"):
        wanted = args.images.split(":", 1)[1]
        names = None if wanted in ("", "all") else [n.strip() for n in wanted.split(",") if n.strip()]
        images, skipped = ev.load_samples(size, names, crop_fraction=args.crop)
        return (images[: args.limit] if args.limit else images), skipped
    return ev.load_folder(
        args.images, size, crop_fraction=args.crop, true_labels=true_labels, limit=args.limit
    )


def report_image_set(
    args: argparse.Namespace, images: Sequence[EvalImage], skipped: Sequence[Skipped]
) -> None:
    """Say on stderr which files were skipped and why; refuse a set with no readable image."""
    for item in skipped:
        print(f"percviz: skipped {item.name}: {item.reason}", file=sys.stderr)
    if not images:
        raise ParameterError(f"No readable image in '{args.images}'.")
