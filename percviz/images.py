"""Image input: load from path/bytes/array, validate, convert to RGB float, fit to a model.

Every image leaves this module as a ``float32`` array ``H×W×3`` in [0, 1] (or a tensor
``N×3×H×W`` via :func:`to_tensor`). Anything that cannot be read safely raises
:class:`percviz.errors.ImageError` with one sentence; conversions that change the data
(alpha flattened, 16-bit scaled, CMYK converted, EXIF rotation…) are listed in
``LoadedImage.conversions`` so the UI and CLI can say what happened.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from percviz.errors import ImageError, ParameterError

ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_BYTES = 60 * 1024 * 1024
MIN_SIDE = 8

ImageSource = str | Path | bytes | bytearray | np.ndarray | Image.Image


@dataclass(frozen=True)
class LoadedImage:
    """A decoded RGB image.

    Attributes:
        pixels: ``float32`` array ``H×W×3`` in [0, 1].
        name: a short label (file name, sample name or ``"array"``).
        format: the decoded container format (``"PNG"``…) or ``None`` for arrays.
        conversions: human-readable notes on every conversion applied.
    """

    pixels: np.ndarray
    name: str
    format: str | None
    conversions: tuple[str, ...]

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def load_image(
    source: ImageSource,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> LoadedImage:
    """Decode ``source`` (path, encoded bytes, array or PIL image) into a :class:`LoadedImage`.

    Raises:
        ImageError: unreadable, truncated, not an image, a disallowed format, too many pixels
            (decompression bomb), too small, or non-finite array values.
    """
    if isinstance(source, np.ndarray):
        pixels, notes = _array_to_rgb(source)
        return _finish(pixels, name or "array", None, notes, max_pixels)
    if isinstance(source, Image.Image):
        pixels, notes = _pil_to_rgb(source)
        return _finish(pixels, name or "image", source.format, notes, max_pixels)
    data, label = _read_bytes(source, max_bytes)
    return _decode(data, name or label, max_pixels)


#: Characters that make Markdown or HTML out of text (links, images, tags, code, LaTeX), mapped
#: to look-alikes that do not.
_INERT = str.maketrans({"[": "［", "]": "］", "<": "‹", ">": "›", "`": "ʼ", "$": "＄", "\\": "＼"})
MAX_SHOWN_NAME = 80


def display_name(name: str) -> str:
    """A user-supplied file name made safe to show in a message rendered as Markdown: control
    characters become ``?``, Markdown/HTML syntax characters become inert look-alikes (a name such
    as ``![t](http://…)`` can fetch nothing), and long names are shortened in the middle."""
    text = "".join("?" if ord(c) < 32 or 127 <= ord(c) < 160 else c for c in name).translate(_INERT)
    if len(text) > MAX_SHOWN_NAME:
        half = (MAX_SHOWN_NAME - 1) // 2
        text = f"{text[:half]}…{text[-half:]}"
    return text


def _read_bytes(source: str | Path | bytes | bytearray, max_bytes: int) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray):
        data, label = bytes(source), "upload"
    elif isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"No image file at '{display_name(str(path))}'.")
        if path.stat().st_size > max_bytes:
            raise ImageError(f"'{display_name(path.name)}' is larger than the {max_bytes // 2**20} MB limit.")
        data, label = path.read_bytes(), path.name
    else:
        raise ImageError(f"Cannot read an image from a {type(source).__name__}.")
    if len(data) > max_bytes:
        raise ImageError(f"The file is larger than the {max_bytes // 2**20} MB limit.")
    if not data:
        raise ImageError("The file is empty.")
    return data, label


def _decode(data: bytes, label: str, max_pixels: int) -> LoadedImage:
    allowed = ", ".join(ALLOWED_FORMATS)
    shown = display_name(label)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
            w, h = img.size
            if w * h > max_pixels:
                raise ImageError(
                    f"'{shown}' declares {w}×{h} = {w * h / 1e6:.0f} Mpx, over the "
                    f"{max_pixels / 1e6:.0f} Mpx limit (possible decompression bomb)."
                )
            fmt = img.format
            n_frames = int(getattr(img, "n_frames", 1))
            deep = _sixteen_bit_colour(img)
            img.load()
            pixels, notes = _pil_to_rgb(img)
            if deep:
                notes = (
                    *notes,
                    "16-bit colour reduced to 8 bits per channel (Pillow decodes colour at 8 bits)",
                )
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"'{shown}' is not an image in a supported format ({allowed}).") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"'{shown}' is too large to decode safely (decompression bomb).") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"'{shown}' is corrupt or truncated and cannot be decoded ({exc}).") from None
    if n_frames > 1:
        notes = (*notes, f"animated image: the first of {n_frames} frames is used")
    return _finish(pixels, label, fmt, notes, max_pixels)


def _sixteen_bit_colour(img: Image.Image) -> bool:
    """Whether an opened (not yet loaded) colour image stores 16 bits per channel, which Pillow
    decodes to 8 (its colour modes are 8-bit); 16-bit grey is read exactly (mode ``I;16``)."""
    if img.mode not in ("RGB", "RGBA", "LA"):
        return False
    for tile in getattr(img, "tile", None) or []:
        args = tile.args if hasattr(tile, "args") else tile[3]
        raw = args[0] if isinstance(args, tuple) and args else args
        if isinstance(raw, str) and ";16" in raw:
            return True
    return False


def _pil_to_rgb(img: Image.Image) -> tuple[np.ndarray, tuple[str, ...]]:
    """Convert any PIL mode to ``float32`` RGB in [0, 1], noting what changed."""
    notes: list[str] = []
    if _has_rotation(img):
        img = ImageOps.exif_transpose(img)
        notes.append("EXIF orientation applied")
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        scale = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        notes.append(f"{'16-bit' if scale > 255 else 'integer'} grey scaled to [0, 1] and copied to RGB")
        grey = np.clip(arr / scale, 0.0, 1.0)
        return np.repeat(grey[..., None], 3, axis=2).astype(np.float32), tuple(notes)
    if mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        lo, hi = float(arr.min()), float(arr.max())
        grey = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        notes.append("floating-point grey rescaled to [0, 1] and copied to RGB")
        return np.repeat(grey[..., None], 3, axis=2).astype(np.float32), tuple(notes)
    if mode == "P":
        has_alpha = "transparency" in img.info
        img = img.convert("RGBA" if has_alpha else "RGB")
        notes.append("palette image expanded to RGB")
        mode = img.mode
    if mode == "CMYK":
        img = img.convert("RGB")
        notes.append("CMYK converted to RGB")
    elif mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3:4]
        rgb = rgba[..., :3] * alpha + (1.0 - alpha)
        notes.append("alpha channel flattened onto white")
        return rgb.astype(np.float32), tuple(notes)
    elif mode in ("L", "1"):
        notes.append("greyscale copied to RGB")
        img = img.convert("RGB")
    elif mode != "RGB":
        notes.append(f"mode {mode} converted to RGB")
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.float32) / 255.0, tuple(notes)


def _has_rotation(img: Image.Image) -> bool:
    try:
        return int(img.getexif().get(0x0112, 1)) not in (0, 1)
    except (AttributeError, ValueError, TypeError):
        return False


def _array_to_rgb(arr: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Accept ``H×W``, ``H×W×1``, ``H×W×3`` or ``H×W×4`` arrays of uint8/uint16/float."""
    notes: list[str] = []
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[2] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)
        notes.append("channels-first array moved to channels-last")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ImageError(f"An image array must be H×W, H×W×3 or H×W×4; got shape {arr.shape}.")
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        out = arr.astype(np.float32) / 65535.0
        notes.append("16-bit values scaled to [0, 1]")
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageError("The image array contains NaN or infinite values.")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise ImageError(f"Float image values must lie in [0, 1]; got [{lo:.3g}, {hi:.3g}].")
        out = arr.astype(np.float32)
    elif arr.dtype == np.bool_:
        out = arr.astype(np.float32)
    else:
        raise ImageError(f"Unsupported image array dtype {arr.dtype}.")
    if out.shape[2] == 4:
        alpha = out[..., 3:4]
        out = out[..., :3] * alpha + (1.0 - alpha)
        notes.append("alpha channel flattened onto white")
    elif out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
        notes.append("greyscale copied to RGB")
    return np.ascontiguousarray(out, dtype=np.float32), tuple(notes)


def _finish(
    pixels: np.ndarray, name: str, fmt: str | None, notes: tuple[str, ...], max_pixels: int
) -> LoadedImage:
    h, w = pixels.shape[:2]
    if h * w > max_pixels:
        raise ImageError(
            f"'{display_name(name)}' has {h * w / 1e6:.0f} Mpx, over the {max_pixels / 1e6:.0f} Mpx limit."
        )
    if min(h, w) < MIN_SIDE:
        raise ImageError(f"'{display_name(name)}' is {w}×{h} pixels; both sides must be at least {MIN_SIDE}.")
    return LoadedImage(np.ascontiguousarray(pixels, dtype=np.float32), name, fmt, notes)


def fit_to_model(pixels: np.ndarray, size: int | tuple[int, int], crop_fraction: float = 1.0) -> np.ndarray:
    """Centre-crop to the target aspect ratio and resize to ``size`` (``(H, W)`` or square side).

    ``crop_fraction`` < 1 keeps only that central fraction of the short side (0.875 is the
    classic ImageNet evaluation crop). An image already at ``size`` with ``crop_fraction == 1``
    is returned unchanged (no resampling), so its pixels are exactly the file's.

    Args:
        pixels: ``float32`` ``H×W×3`` in [0, 1].
    Returns:
        ``float32`` ``size[0]×size[1]×3`` in [0, 1].
    """
    th, tw = (size, size) if isinstance(size, int) else size
    if not 0.1 <= crop_fraction <= 1.0:
        raise ParameterError(f"crop_fraction must lie in [0.1, 1]; got {crop_fraction}.")
    h, w = pixels.shape[:2]
    if (h, w) == (th, tw) and crop_fraction == 1.0:
        return pixels
    scale = min(h / th, w / tw) * crop_fraction
    ch, cw = max(1, round(th * scale)), max(1, round(tw * scale))
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = pixels[top : top + ch, left : left + cw]
    if (ch, cw) == (th, tw):
        return np.ascontiguousarray(crop)
    t = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None]
    out = F.interpolate(t, size=(th, tw), mode="bicubic", antialias=True, align_corners=False)
    return out[0].permute(1, 2, 0).clamp(0.0, 1.0).numpy().astype(np.float32)


def to_tensor(pixels: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """``H×W×3`` array in [0, 1] → ``1×3×H×W`` float32 tensor (a copy)."""
    t = torch.from_numpy(np.array(pixels, dtype=np.float32, copy=True)).permute(2, 0, 1)[None]
    return t.contiguous().to(device) if device is not None else t.contiguous()


def to_numpy(batch: torch.Tensor) -> np.ndarray:
    """``N×3×H×W`` (or ``3×H×W``) tensor → ``N×H×W×3`` (or ``H×W×3``) float32 array."""
    t = batch.detach().float().cpu()
    return (t.permute(1, 2, 0) if t.ndim == 3 else t.permute(0, 2, 3, 1)).numpy().copy()


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Round ``[0, 1]`` floats to 8-bit, as a PNG stores them."""
    return np.clip(np.rint(np.asarray(pixels) * 255.0), 0, 255).astype(np.uint8)


def quantise_8bit(batch: torch.Tensor) -> torch.Tensor:
    """``N×3×H×W`` in [0, 1] → the same images rounded to 8 bits as :func:`to_uint8` (and a PNG)
    stores them, back in [0, 1] as float32 on the same device."""
    return torch.round(batch.detach().float().clamp(0.0, 1.0) * 255.0) / 255.0


def encode_png(pixels: np.ndarray) -> bytes:
    """Lossless 8-bit PNG bytes of an ``H×W×3`` image in [0, 1]."""
    buf = io.BytesIO()
    Image.fromarray(to_uint8(pixels), mode="RGB").save(buf, format="PNG")
    return buf.getvalue()


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        img = getattr(data, name)()
        return img[0] if isinstance(img, tuple) else img

    return load


def _sklearn(file: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(file)

    return load


SAMPLES: dict[str, tuple[str, Callable[[], np.ndarray]]] = {
    "chelsea": ("Chelsea the cat (scikit-image)", _skimage("chelsea")),
    "coffee": ("A cup of coffee (scikit-image)", _skimage("coffee")),
    "rocket": ("A rocket on its launch pad (scikit-image)", _skimage("rocket")),
    "astronaut": ("Astronaut Eileen Collins (scikit-image)", _skimage("astronaut")),
    "motorcycle": ("A motorcycle (scikit-image stereo pair, left)", _skimage("stereo_motorcycle")),
    "china": ("A temple in China (scikit-learn)", _sklearn("china.jpg")),
    "flower": ("A flower (scikit-learn)", _sklearn("flower.jpg")),
}


def sample_names() -> list[str]:
    """Names of the bundled sample photos, in gallery order."""
    return list(SAMPLES)


def load_sample(name: str) -> LoadedImage:
    """Load a bundled sample photo by name (offline: they ship inside scikit-image/-learn)."""
    if name not in SAMPLES:
        raise ImageError(f"Unknown sample '{display_name(name)}'; choose one of: {', '.join(SAMPLES)}.")
    caption, loader = SAMPLES[name]
    try:
        arr = loader()
    except Exception as exc:
        raise ImageError(f"Sample '{name}' ({caption}) could not be loaded: {exc}") from None
    return load_image(np.asarray(arr), name=name)
