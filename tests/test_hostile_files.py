"""Hostile and malformed uploads: each gets one clear sentence, none escapes as a traceback."""

from __future__ import annotations

import io
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from percviz.errors import ImageError
from percviz.images import load_image

ROOT = Path(__file__).resolve().parent.parent


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(img: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares a huge canvas, with one tiny compressed IDAT (a classic bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def hostile_files() -> dict[str, tuple[bytes, str]]:
    """name → (bytes, a fragment the refusal message must contain)."""
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    jpeg = _jpeg(rgb, quality=90)
    png = _png(rgb)
    gif = io.BytesIO()
    Image.new("RGB", (32, 32)).save(gif, format="GIF")
    ico = io.BytesIO()
    Image.new("RGB", (32, 32)).save(ico, format="ICO")
    return {
        "zero_bytes.png": (b"", "empty"),
        "bomb_declared_50000x50000.png": (_png_header_only(50_000, 50_000), "decompression bomb"),
        "bomb_bilevel_12000x12000.png": (_png(Image.new("1", (12_000, 12_000))), "decompression bomb"),
        "truncated.jpg": (jpeg[: len(jpeg) // 3], "corrupt or truncated"),
        "truncated.png": (png[: len(png) // 2], "corrupt or truncated"),
        "header_only.jpg": (jpeg[:20], "not an image"),
        "image.svg": (
            b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script></svg>',
            "not an image",
        ),
        "page.html.png": (b"<html><body><img src=x onerror=alert(1)></body></html>", "not an image"),
        "polyglot_zip_in_jpeg.jpg": (b"PK\x03\x04" + b"\x00" * 26 + jpeg, "not an image"),
        "script.php.jpg": (b"<?php system($_GET['c']); ?>", "not an image"),
        "animated.gif": (gif.getvalue(), "supported format"),
        "icon.ico": (ico.getvalue(), "supported format"),
        "huge_aspect_1x20000.png": (_png(Image.new("RGB", (20_000, 1))), "at least"),
        "random_noise.bin": (np.random.default_rng(1).bytes(4096), "not an image"),
    }


@pytest.mark.parametrize("name", list(hostile_files()))
def test_hostile_file_refused_with_one_sentence(name: str) -> None:
    data, fragment = hostile_files()[name]
    with pytest.raises(ImageError) as info:
        load_image(data, name=name)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message and "Traceback" not in message and len(message) < 300


def test_accepted_odd_files_are_converted_and_said() -> None:
    """Odd but legitimate files are converted, with the conversion reported."""
    rgb = Image.fromarray(np.random.default_rng(2).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    wrong_extension = _png(rgb)  # a PNG uploaded as "photo.jpg" decodes by content
    assert load_image(wrong_extension, name="photo.jpg").format == "PNG"
    sixteen = _png(Image.fromarray(np.full((32, 32), 40000, dtype=np.uint16)))
    assert any("16-bit" in n for n in load_image(sixteen).conversions)
    cmyk = _jpeg(rgb.convert("CMYK"))
    assert any("CMYK" in n for n in load_image(cmyk).conversions)


def test_pins_keep_advisory_floors() -> None:
    """Security pins: streamlit ≥1.66.1,<1.68 and Pillow ≥13 (pip-audit cannot reach its database here)."""
    pins = dict(
        re.match(r"([A-Za-z0-9_.-]+)==([0-9.]+)", line).groups()  # type: ignore[union-attr]
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if re.match(r"[A-Za-z0-9_.-]+==", line)
    )

    def version(text: str) -> tuple[int, ...]:
        return tuple(int(p) for p in text.split("."))

    assert (1, 66, 1) <= version(pins["streamlit"]) < (1, 68)
    assert version(pins["pillow"]) >= (13, 0, 0)
    assert version(pins["torch"]) >= (2, 10)


def _png_rgb16(values: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (colour type 2, depth 16), written by hand: Pillow cannot."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w, _ = values.shape
    rows = b"".join(b"\x00" + values[i].astype(">u2").tobytes() for i in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_sixteen_bit_rgb_png_is_scaled_and_the_loss_of_depth_is_said() -> None:
    """16-bit RGB PNGs were reduced to 8 bits silently; scaled (never clipped) and said."""
    values = np.stack([np.full((16, 16), v) for v in (63000, 32768, 257)], axis=2).astype(np.uint16)
    loaded = load_image(_png_rgb16(values))
    assert any("16-bit colour reduced to 8 bits" in c for c in loaded.conversions), loaded.conversions
    np.testing.assert_allclose(loaded.pixels[0, 0], values[0, 0] / 65535.0, atol=1 / 255)
    eight = load_image(_png(Image.fromarray(np.zeros((16, 16, 3), np.uint8))))
    assert not any("16-bit" in c for c in eight.conversions)


@pytest.mark.parametrize(
    "name", ["![t](http://127.0.0.1:9/x.png).png", "<img src=x onerror=alert(1)>.png", "`$x$`.png"]
)
def test_a_file_name_in_an_error_cannot_form_markdown_or_html(name: str) -> None:
    """An upload named ``![t](http://…)`` made the browser fetch that URL from the error."""
    with pytest.raises(ImageError) as info:
        load_image(b"not an image", name=name)
    message = str(info.value)
    assert not set("[]<>`$") & set(message.split(" is not an image")[0]), message
    assert len(message.splitlines()) == 1
