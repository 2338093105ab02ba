"""Recipes: the JSON that regenerates a result bit-for-bit (same device) from the command line.

A recipe names the model, the image (a bundled sample, or a file with its SHA-256), the crop,
the attack with its full validated parameters, and the seed; saved recipes also carry the
package versions (percviz's own and, from a git checkout, its commit) and the device they were made
on. Loading is strict: a field of the wrong type (``seed: true``, ``seed: 1.7``), a file that is not
UTF-8 JSON, or one nested or sized beyond any recipe is refused with one sentence.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import platform
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from percviz.errors import RecipeError
from percviz.jsonsafe import json_safe

RECIPE_VERSION = 1
_VERSIONED_PACKAGES = ("torch", "torchvision", "timm", "numpy", "pillow")
#: Recipes are a few kB; anything far larger is not one.
MAX_RECIPE_BYTES = 1_000_000
MAX_SEED = 2**63 - 1
#: Integers beyond this cannot be parameters (steps, classes…): JSON allows any length.
MAX_PARAM_INT = 2**53


@dataclass(frozen=True)
class ImageRef:
    """Where the image comes from: ``sample`` name, or ``path`` with its ``sha256``."""

    sample: str | None = None
    path: str | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        if (self.sample is None) == (self.path is None):
            raise RecipeError("A recipe image needs exactly one of 'sample' or 'path'.")
        for name in ("sample", "path", "sha256"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or "\x00" in value):
                raise RecipeError(f"The recipe image's '{name}' must be a text without NUL characters.")

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
            "params": json_safe(self.params),
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
        versions = data.get("versions") or {}
        if not isinstance(versions, dict):
            raise RecipeError("The recipe's 'versions' must be an object.")
        device = data.get("device")
        if device is not None and not isinstance(device, str):
            raise RecipeError(f"The recipe's 'device' must be a text such as \"cpu\"; got {device!r}.")
        return cls(
            model=_text(data, "model"),
            image=ImageRef(image.get("sample"), image.get("path"), image.get("sha256")),
            attack=_text(data, "attack"),
            params={str(k): _decode(str(k), v) for k, v in params.items()},
            seed=_seed(data.get("seed", 0)),
            crop_fraction=_crop(data.get("crop_fraction", 1.0)),
            device=device,
            versions={str(k): str(v) for k, v in versions.items()},
        )

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        from percviz.textio import read_capped

        raw = read_capped(path, "recipe", MAX_RECIPE_BYTES, RecipeError)
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise RecipeError(f"Recipe '{path}' is not a UTF-8 JSON text file.") from None
        except json.JSONDecodeError as exc:
            raise RecipeError(f"Recipe '{path}' is not valid JSON ({exc.msg}, line {exc.lineno}).") from None
        except RecursionError:
            raise RecipeError(f"Recipe '{path}' is nested too deeply to be a recipe.") from None
        return cls.from_dict(data.get("recipe", data) if isinstance(data, dict) else data)


def _text(data: dict[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str) or not value.strip():
        raise RecipeError(f"The recipe's '{key}' must be a non-empty text; got {value!r}.")
    return value


def _seed(value: Any) -> int:
    """An integer in [0, 2⁶³ − 1]; booleans and floats (``true``, ``1.7``, ``1e23``) are refused."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise RecipeError(f"The recipe's 'seed' must be an integer in [0, 2^63 − 1]; got {value!r}.")
    return value


def _crop(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.1 <= value <= 1.0:
        raise RecipeError(f"The recipe's 'crop_fraction' must be a number in [0.1, 1]; got {value!r}.")
    return float(value)


def _decode(name: str, value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_PARAM_INT:
        raise RecipeError(f"The recipe's parameter '{name}' is out of range ({len(str(abs(value)))} digits).")
    return math.inf if value == "inf" else value


def environment_versions() -> dict[str, str]:
    """Versions of the packages that decide the numbers, plus Python and percviz (with its commit);
    read once per process (a fresh copy each call)."""
    return dict(_environment_versions())


@functools.lru_cache(maxsize=1)
def _environment_versions() -> dict[str, str]:
    import percviz

    versions = {"python": platform.python_version(), "percviz": percviz.__version__}
    commit = source_commit()
    if commit:
        versions["percviz_commit"] = commit
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


@functools.lru_cache(maxsize=1)
def source_commit() -> str | None:
    """The git commit of the percviz checkout in use (``-dirty`` with uncommitted changes to
    tracked files), or None when percviz is not run from a git checkout."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode != 0 or not head.stdout.strip():
        return None
    return head.stdout.strip() + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")
