"""Recipes: the JSON that regenerates a result bit-for-bit (same device) from the command line.

A recipe names the model, the image (a bundled sample, or a file with its SHA-256), the crop,
the attack with its full validated parameters, and the seed; saved recipes also carry the
package versions and the device they were made on.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from percviz.errors import RecipeError

RECIPE_VERSION = 1
_VERSIONED_PACKAGES = ("percviz", "torch", "torchvision", "timm", "numpy", "pillow")


@dataclass(frozen=True)
class ImageRef:
    """Where the image comes from: ``sample`` name, or ``path`` with its ``sha256``."""

    sample: str | None = None
    path: str | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        if (self.sample is None) == (self.path is None):
            raise RecipeError("A recipe image needs exactly one of 'sample' or 'path'.")

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """``sample:NAME`` or a file path (hashed now)."""
        if text.startswith("sample:"):
            return cls(sample=text.split(":", 1)[1])
        return cls(path=text, sha256=file_sha256(text) if Path(text).is_file() else None)

    def describe(self) -> str:
        return f"sample:{self.sample}" if self.sample else str(self.path)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in (("sample", self.sample), ("path", self.path), ("sha256", self.sha256)) if v}


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass(frozen=True)
class Recipe:
    """One attack run, fully specified."""

    model: str
    image: ImageRef
    attack: str
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    crop_fraction: float = 1.0
    device: str | None = None
    versions: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "percviz_recipe": RECIPE_VERSION,
            "model": self.model,
            "image": self.image.as_dict(),
            "crop_fraction": self.crop_fraction,
            "attack": self.attack,
            "params": {k: _encode(v) for k, v in self.params.items()},
            "seed": self.seed,
            "device": self.device,
            "versions": self.versions or environment_versions(),
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=False)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, data: Any) -> Recipe:
        if not isinstance(data, dict):
            raise RecipeError("A recipe must be a JSON object.")
        missing = [k for k in ("model", "image", "attack") if k not in data]
        if missing:
            raise RecipeError(f"The recipe lacks {', '.join(missing)}.")
        image = data["image"]
        if not isinstance(image, dict):
            raise RecipeError("The recipe's 'image' must be an object with 'sample' or 'path'.")
        params = data.get("params") or {}
        if not isinstance(params, dict):
            raise RecipeError("The recipe's 'params' must be an object.")
        try:
            return cls(
                model=str(data["model"]),
                image=ImageRef(image.get("sample"), image.get("path"), image.get("sha256")),
                attack=str(data["attack"]),
                params={str(k): _decode(v) for k, v in params.items()},
                seed=int(data.get("seed", 0)),
                crop_fraction=float(data.get("crop_fraction", 1.0)),
                device=data.get("device"),
                versions=dict(data.get("versions") or {}),
            )
        except (TypeError, ValueError) as exc:
            raise RecipeError(f"The recipe has an invalid field ({exc}).") from None

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise RecipeError(f"Cannot read recipe '{path}': {exc.strerror or exc}.") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RecipeError(f"Recipe '{path}' is not valid JSON ({exc.msg}, line {exc.lineno}).") from None
        return cls.from_dict(data.get("recipe", data) if isinstance(data, dict) else data)


def _encode(value: Any) -> Any:
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return value


def _decode(value: Any) -> Any:
    return math.inf if value == "inf" else value


def environment_versions() -> dict[str, str]:
    """Versions of the packages that decide the numbers, plus Python."""
    versions = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions
