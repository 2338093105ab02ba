"""Image loading: every format, every conversion, every refusal."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from percviz.errors import ImageError
from percviz.images import (
    encode_png,
    fit_to_model,
    load_image,
    load_sample,
    sample_names,
    to_numpy,
    to_tensor,
    to_uint8,
)


def _encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(40, 60, 3), dtype=np.uint8)


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "WEBP"])
def test_lossless_formats_roundtrip_exactly(rgb: np.ndarray, fmt: str) -> None:
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    loaded = load_image(_encode(Image.fromarray(rgb), fmt, **kwargs))
    assert loaded.pixels.dtype == np.float32 and loaded.pixels.shape == (40, 60, 3)
    np.testing.assert_array_equal(to_uint8(loaded.pixels), rgb)
    assert loaded.conversions == ()


def test_jpeg_decodes_close(rgb: np.ndarray) -> None:
    smooth = np.kron(rgb[:5, :5], np.ones((8, 8, 1), dtype=np.uint8))
    loaded = load_image(_encode(Image.fromarray(smooth), "JPEG", quality=95, subsampling=0))
    assert loaded.format == "JPEG"
    assert np.abs(loaded.pixels * 255 - smooth).mean() < 4


def test_path_input(tmp_path, rgb: np.ndarray) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(_encode(Image.fromarray(rgb), "PNG"))
    loaded = load_image(path)
    assert loaded.name == "x.png"
    np.testing.assert_array_equal(to_uint8(loaded.pixels), rgb)


def test_exif_rotation_applied(rgb: np.ndarray) -> None:
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    loaded = load_image(_encode(img, "JPEG", exif=exif.tobytes(), quality=95))
    assert loaded.pixels.shape == (60, 40, 3)
    assert any("EXIF" in note for note in loaded.conversions)


def test_palette_converted(rgb: np.ndarray) -> None:
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    loaded = load_image(_encode(pal, "PNG"))
    assert loaded.pixels.shape == (40, 60, 3)
    assert any("palette" in n for n in loaded.conversions)


def test_alpha_flattened_on_white() -> None:
    rgba = np.zeros((16, 16, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[:8, :, 3] = 255  # top half opaque red, bottom half transparent
    loaded = load_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    np.testing.assert_allclose(loaded.pixels[0, 0], [1, 0, 0])
    np.testing.assert_allclose(loaded.pixels[-1, -1], [1, 1, 1])
    assert any("alpha" in n for n in loaded.conversions)


def test_grey_copied_to_rgb() -> None:
    grey = np.arange(256, dtype=np.uint8).reshape(16, 16)
    loaded = load_image(_encode(Image.fromarray(grey, "L"), "PNG"))
    np.testing.assert_allclose(loaded.pixels[..., 0], loaded.pixels[..., 2])
    assert any("grey" in n for n in loaded.conversions)


def test_16bit_scaled_not_clipped() -> None:
    values = np.full((16, 16), 63000, dtype=np.uint16)
    values[0, 0] = 1000
    loaded = load_image(_encode(Image.fromarray(values), "PNG"))
    assert loaded.pixels[1, 1, 0] == pytest.approx(63000 / 65535, abs=1e-6)
    assert loaded.pixels[0, 0, 0] == pytest.approx(1000 / 65535, abs=1e-6)
    assert any("16-bit" in n for n in loaded.conversions)


def test_cmyk_converted(rgb: np.ndarray) -> None:
    cmyk = Image.fromarray(rgb).convert("CMYK")
    loaded = load_image(_encode(cmyk, "JPEG", quality=95))
    assert loaded.pixels.shape == (40, 60, 3)
    assert any("CMYK" in n for n in loaded.conversions)


def test_animated_uses_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, format="WEBP", save_all=True, append_images=frames[1:], lossless=True)
    loaded = load_image(buf.getvalue())
    np.testing.assert_allclose(loaded.pixels[0, 0], [1, 0, 0], atol=1e-6)
    assert any("animated" in n for n in loaded.conversions)


def test_truncated_file_refused(rgb: np.ndarray) -> None:
    data = _encode(Image.fromarray(np.kron(rgb, np.ones((4, 4, 1), np.uint8))), "JPEG", quality=95)
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(data[: len(data) // 2])


def test_non_image_refused() -> None:
    with pytest.raises(ImageError, match="not an image"):
        load_image(b"%PDF-1.4 this is not an image at all")


def test_disallowed_format_refused() -> None:
    data = _encode(Image.new("RGB", (16, 16)), "GIF")
    with pytest.raises(ImageError, match="supported format"):
        load_image(data)


def test_empty_and_missing_refused(tmp_path) -> None:
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageError, match="No image file"):
        load_image(tmp_path / "nothing.png")


def test_decompression_bomb_refused_before_decoding() -> None:
    """A small PNG declaring a huge canvas is refused from its header (144 Mpx in 17 kB)."""
    bomb = _encode(Image.new("1", (12000, 12000)), "PNG")
    assert len(bomb) < 100_000
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(bomb)


def test_pixel_limit_is_configurable(rgb: np.ndarray) -> None:
    with pytest.raises(ImageError, match="Mpx"):
        load_image(_encode(Image.fromarray(rgb), "PNG"), max_pixels=1000)


def test_tiny_image_refused() -> None:
    with pytest.raises(ImageError, match="at least"):
        load_image(_encode(Image.new("RGB", (4, 4)), "PNG"))


def test_array_inputs() -> None:
    assert load_image(np.zeros((16, 16), np.uint8)).pixels.shape == (16, 16, 3)
    assert load_image(np.ones((16, 16, 4), np.float32)).pixels.shape == (16, 16, 3)
    assert load_image(np.zeros((3, 16, 16), np.float32)).pixels.shape == (16, 16, 3)
    with pytest.raises(ImageError, match="NaN"):
        load_image(np.full((16, 16, 3), np.nan, np.float32))
    with pytest.raises(ImageError, match=r"\[0, 1\]"):
        load_image(np.full((16, 16, 3), 2.0, np.float32))
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((16, 16, 5), np.uint8))


def test_fit_to_model_passthrough_and_crop() -> None:
    square = np.random.default_rng(1).random((224, 224, 3), dtype=np.float32)
    assert fit_to_model(square, 224) is square
    wide = np.random.default_rng(2).random((100, 300, 3), dtype=np.float32)
    out = fit_to_model(wide, 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    exact = fit_to_model(wide, (100, 100))
    np.testing.assert_array_equal(exact, wide[:, 100:200])
    with pytest.raises(ValueError, match="crop_fraction"):
        fit_to_model(wide, 64, crop_fraction=0.0)


def test_tensor_roundtrip_and_png() -> None:
    px = np.random.default_rng(3).random((20, 30, 3), dtype=np.float32)
    t = to_tensor(px)
    assert t.shape == (1, 3, 20, 30)
    np.testing.assert_array_equal(to_numpy(t)[0], px)
    decoded = load_image(encode_png(px))
    np.testing.assert_array_equal(to_uint8(decoded.pixels), to_uint8(px))


@pytest.mark.parametrize("name", sample_names())
def test_every_sample_loads_offline(name: str) -> None:
    img = load_sample(name)
    assert img.pixels.ndim == 3 and img.pixels.shape[2] == 3 and min(img.pixels.shape[:2]) >= 256


def test_unknown_sample() -> None:
    with pytest.raises(ImageError, match="Unknown sample"):
        load_sample("nope")


def test_quantise_8bit_matches_what_a_png_stores() -> None:
    import torch

    from percviz.images import encode_png, load_image, quantise_8bit, to_numpy

    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 1.2 - 0.1
    q = quantise_8bit(x)
    for i in range(2):
        stored = load_image(encode_png(to_numpy(x[i])), name="q.png").pixels
        assert np.array_equal(to_numpy(q[i]), stored)
    assert torch.equal(quantise_8bit(q), q)
