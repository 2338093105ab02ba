"""The images of an evaluation: a folder or the bundled photos, fitted to the model, with true labels."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from percviz.errors import ImageError, ParameterError
from percviz.images import ALLOWED_FORMATS, fit_to_model, load_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class EvalImage:
    """One image as the model sees it.

    Attributes:
        name: file or sample name (unique within an evaluation).
        pixels: ``float32`` ``H×W×3`` in [0, 1] at the model's input size.
        sha256: hash of ``pixels`` (so a changed file, crop or size is recomputed on resume).
        true_label: ground-truth class when known (for ``P_suc`` over correctly classified images).
    """

    name: str
    pixels: np.ndarray
    sha256: str
    true_label: int | None = None

    @classmethod
    def from_pixels(cls, name: str, pixels: np.ndarray, true_label: int | None = None) -> EvalImage:
        arr = np.ascontiguousarray(pixels, dtype=np.float32)
        return cls(name, arr, hashlib.sha256(arr.tobytes()).hexdigest(), true_label)


@dataclass(frozen=True)
class Skipped:
    """A file of the folder that was not evaluated, with a one-line reason."""

    name: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "reason": self.reason}


def load_folder(
    folder: str | Path,
    size: int,
    *,
    crop_fraction: float = 1.0,
    true_labels: Mapping[str, int] | None = None,
    limit: int | None = None,
) -> tuple[list[EvalImage], list[Skipped]]:
    """Every image file of ``folder`` (sorted by name), fitted to the model's input ``size``.

    Bad files never stop the evaluation: they come back in the ``Skipped`` list with the reason.
    Files whose suffix is not an image suffix are skipped too (named, so nothing vanishes silently).

    Raises:
        ParameterError: ``folder`` is not a readable folder.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ParameterError(f"--images must be a folder; '{root}' is not one.")
    images: list[EvalImage] = []
    skipped: list[Skipped] = []
    for path in sorted(p for p in root.iterdir() if not p.name.startswith(".")):
        if path.is_dir():
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append(Skipped(path.name, f"not an image file name ({', '.join(ALLOWED_FORMATS)})"))
            continue
        if limit is not None and len(images) >= limit:
            break
        try:
            loaded = load_image(path)
            pixels = fit_to_model(loaded.pixels, size, crop_fraction)
        except (ImageError, ValueError, OSError) as exc:
            skipped.append(Skipped(path.name, " ".join(str(exc).split())))
            continue
        label = None if true_labels is None else true_labels.get(path.name, true_labels.get(path.stem))
        images.append(EvalImage.from_pixels(path.name, pixels, label))
    return images, skipped


def load_samples(
    size: int, names: Sequence[str] | None = None, *, crop_fraction: float = 1.0
) -> tuple[list[EvalImage], list[Skipped]]:
    """The bundled sample photos (all, or ``names``) fitted to ``size`` — a dataset that ships offline."""
    from percviz.images import load_sample, sample_names

    images: list[EvalImage] = []
    skipped: list[Skipped] = []
    for name in names or sample_names():
        try:
            pixels = fit_to_model(load_sample(name).pixels, size, crop_fraction)
        except (ImageError, ValueError) as exc:
            skipped.append(Skipped(name, " ".join(str(exc).split())))
            continue
        images.append(EvalImage.from_pixels(name, pixels))
    return images, skipped


def read_true_labels(path: str | Path) -> dict[str, int]:
    """``file,class_index`` lines (a header line and ``#`` comments allowed) → mapping."""
    out: dict[str, int] = {}
    from percviz.textio import read_capped_text

    text = read_capped_text(path, "labels file", error=ParameterError)
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.replace("\t", ",").partition(",")
        try:
            out[name.strip()] = int(value.strip())
        except ValueError:
            if number == 1:
                continue
            raise ParameterError(
                f"Labels file '{path}', line {number}: expected 'file,class_index'."
            ) from None
    return out
