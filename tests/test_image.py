import io
import random
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, features

from openblip.image import (
    CLIP_MEAN,
    CLIP_STD,
    DEFAULT_MAX_PIXELS,
    ImageError,
    _random_resized_crop_box,
    load_image,
    preprocess,
    train_transform,
)


def _png_bytes(image: Image.Image, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **params)
    return buffer.getvalue()


def _noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _pixels(image: Image.Image) -> list[tuple[int, ...]]:
    assert image.mode == "RGB"
    return [tuple(int(v) for v in px) for px in np.asarray(image).reshape(-1, 3)]


# --------------------------------------------------------------------------- modes


def test_modes_1_l_rgb() -> None:
    bw = Image.new("1", (2, 1))
    bw.putpixel((1, 0), 1)
    assert _pixels(load_image(bw)) == [(0, 0, 0), (255, 255, 255)]
    gray = Image.fromarray(np.array([[0, 77, 255]], dtype=np.uint8), mode="L")
    assert _pixels(load_image(gray)) == [(0, 0, 0), (77, 77, 77), (255, 255, 255)]
    rgb = Image.fromarray(_noise(3, 4))
    out = load_image(rgb)
    assert out is not rgb and np.array_equal(np.asarray(out), np.asarray(rgb))


def test_palette_and_palette_transparency() -> None:
    pal = Image.new("P", (3, 1))
    pal.putpalette([10, 20, 30, 200, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    pal.putdata([0, 1, 2])
    assert _pixels(load_image(pal)) == [(10, 20, 30), (200, 0, 0), (0, 0, 255)]
    # index 0 transparent -> composited on white, through a real PNG round trip
    data = _png_bytes(pal, transparency=0)
    assert _pixels(load_image(data)) == [(255, 255, 255), (200, 0, 0), (0, 0, 255)]


def test_alpha_composited_on_white() -> None:
    rgba = Image.new("RGBA", (3, 1))
    rgba.putdata([(255, 0, 0, 0), (255, 0, 0, 255), (0, 0, 255, 128)])
    got = _pixels(load_image(_png_bytes(rgba)))
    assert got[0] == (255, 255, 255) and got[1] == (255, 0, 0)
    assert np.allclose(got[2], (127, 127, 255), atol=1)
    la = Image.new("LA", (2, 1))
    la.putdata([(0, 0), (0, 255)])
    assert _pixels(load_image(la)) == [(255, 255, 255), (0, 0, 0)]
    pa = Image.new("PA", (1, 1))
    pa.putpalette([0, 255, 0] + [0] * 765)
    pa.putpixel((0, 0), (0, 0))
    assert _pixels(load_image(pa)) == [(255, 255, 255)]


def test_cmyk_ycbcr_lab() -> None:
    cmyk = Image.new("CMYK", (2, 1))
    cmyk.putdata([(0, 255, 255, 0), (0, 0, 0, 255)])
    assert _pixels(load_image(cmyk)) == [(255, 0, 0), (0, 0, 0)]
    ycbcr = Image.new("YCbCr", (1, 1), (76, 85, 255))
    assert np.allclose(_pixels(load_image(ycbcr))[0], (255, 0, 0), atol=2)
    lab = Image.new("LAB", (1, 1), (137, 208, 195))  # roughly sRGB red
    r, g, b = _pixels(load_image(lab))[0]
    assert r > 200 and g < 40 and b < 40


def test_high_bit_depth_scaled() -> None:
    values = np.array([[0, 65535, 32896, 257, 65280]], dtype=np.uint16)
    sixteen = Image.fromarray(values)
    assert sixteen.mode == "I;16"
    expected = [(0, 0, 0), (255, 255, 255), (128, 128, 128), (1, 1, 1), (254, 254, 254)]
    assert _pixels(load_image(sixteen)) == expected
    assert _pixels(load_image(_png_bytes(sixteen))) == expected  # a real 16-bit PNG
    # 32-bit "I" holding 16-bit data is scaled, holding 8-bit data is kept
    assert _pixels(load_image(Image.fromarray(values.astype(np.int32), mode="I"))) == expected
    eight = Image.fromarray(np.array([[0, 200]], dtype=np.int32), mode="I")
    assert _pixels(load_image(eight)) == [(0, 0, 0), (200, 200, 200)]
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), mode="F")
    assert _pixels(load_image(unit)) == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]
    wide = Image.fromarray(np.array([[-5.0, 100.0, 300.0]], dtype=np.float32), mode="F")
    assert _pixels(load_image(wide)) == [(0, 0, 0), (100, 100, 100), (255, 255, 255)]


def test_exif_orientation_6_rotates_clockwise() -> None:
    image = Image.new("RGB", (2, 1))
    image.putdata([(255, 0, 0), (0, 0, 255)])  # red | blue
    exif = Image.Exif()
    exif[0x0112] = 6
    out = load_image(_png_bytes(image, exif=exif.tobytes()))
    assert out.size == (1, 2)
    assert _pixels(out) == [(255, 0, 0), (0, 0, 255)]  # red on top, blue below


def test_exif_orientation_jpeg(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "sideways.jpg"
    Image.fromarray(_noise(16, 32)).save(path, exif=exif.tobytes())
    assert load_image(path).size == (16, 32)


def test_animated_gif_first_frame() -> None:
    frames = [Image.new("RGB", (4, 4), colour) for colour in [(255, 0, 0), (0, 0, 255)]]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert getattr(Image.open(io.BytesIO(buffer.getvalue())), "n_frames", 1) == 2
    assert set(_pixels(load_image(buffer.getvalue()))) == {(255, 0, 0)}


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")
def test_animated_webp_first_frame() -> None:
    frames = [Image.new("RGB", (4, 4), colour) for colour in [(0, 255, 0), (255, 0, 0)]]
    buffer = io.BytesIO()
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:], lossless=True, duration=50)
    assert set(_pixels(load_image(buffer.getvalue()))) == {(0, 255, 0)}


# --------------------------------------------------------------------------- errors


def _fails(source: object, match: str, **kwargs: object) -> ImageError:
    with pytest.raises(ImageError, match=match) as info:
        load_image(source, **kwargs)  # type: ignore[arg-type]
    return info.value


def test_errors_name_the_file(tmp_path: Path) -> None:
    jpeg = io.BytesIO()
    Image.fromarray(_noise(64, 64)).save(jpeg, "JPEG", quality=95)
    cases = {
        "truncated.jpg": (jpeg.getvalue()[: len(jpeg.getvalue()) // 2], "truncated"),
        "corrupt.png": (bytes(np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8)), "not an image"),
        "empty.jpg": (b"", "empty file"),
        "notes.jpg": (b"just some text, not pixels\n", "not an image"),
    }
    for name, (payload, reason) in cases.items():
        path = tmp_path / name
        path.write_bytes(payload)
        error = _fails(path, reason)
        assert error.source == str(path) and str(path) in str(error)
    assert _fails(tmp_path / "missing.jpg", "no such file").source == str(tmp_path / "missing.jpg")
    assert str(tmp_path) in str(_fails(tmp_path, "is a directory"))


def test_path_errors_say_what_is_wrong(tmp_path: Path) -> None:
    """A symbolic link loop, or a name too long for the file system, is not "no such file"."""
    (tmp_path / "a.png").symlink_to("b.png")
    (tmp_path / "b.png").symlink_to("a.png")
    error = _fails(tmp_path / "a.png", "symbolic link loop")
    assert error.source == str(tmp_path / "a.png")
    assert "no such file" not in str(error)
    long = tmp_path / ("x" * 300 + ".png")
    assert "File name too long" in str(_fails(long, "unreadable path"))
    (tmp_path / "dangling.png").symlink_to("nowhere.png")
    _fails(tmp_path / "dangling.png", "no such file")
    (tmp_path / "plain.png").write_bytes(b"x")
    _fails(tmp_path / "plain.png" / "inside.png", "no such file")  # a parent that is not a directory


def test_corrupt_png_body_detected_at_load() -> None:
    data = bytearray(_png_bytes(Image.fromarray(_noise(32, 32))))
    idat = data.index(b"IDAT")
    data[idat + 20 : idat + 60] = bytes(40)  # header intact, compressed body garbage
    _fails(bytes(data), r"<bytes>: (corrupt|truncated)")


def test_bytes_errors_use_label() -> None:
    _fails(b"", r"^<bytes>: empty data")
    _fails(b"garbage", r"^shard-3/0007\.jpg: not an image", name="shard-3/0007.jpg")
    with pytest.raises(TypeError, match="int"):
        load_image(42)  # type: ignore[arg-type]


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width×height, with a tiny bogus body: decoding it would fail."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")


def test_pixel_limit_checked_before_decoding() -> None:
    small = Image.fromarray(_noise(20, 20))
    _fails(small, r"too many pixels: 20x20 = 400 > limit 399", max_pixels=399)
    assert load_image(small, max_pixels=400).size == (20, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning must not leak
        # between PIL's limit and twice it: PIL would only warn; we refuse from the header
        _fails(_png_header_only(10_000, 10_000), r"too many pixels: 10000x10000")
        assert DEFAULT_MAX_PIXELS < 10_000 * 10_000
        # beyond twice PIL's limit PIL raises DecompressionBombError; it becomes ImageError
        _fails(_png_header_only(50_000, 50_000), "too many pixels")
    with pytest.raises(ValueError, match="max_pixels"):
        load_image(small, max_pixels=0)


# --------------------------------------------------------------------------- preprocess


def test_preprocess_shape_dtype_and_values() -> None:
    grey = Image.new("RGB", (50, 30), (128, 128, 128))
    batch = preprocess([grey, Image.fromarray(_noise(40, 70))], 24)
    assert batch.shape == (2, 3, 24, 24) and batch.dtype == torch.float32 and batch.is_contiguous()
    expected = (128 / 255 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    assert torch.allclose(batch[0].mean(dim=(1, 2)), expected, atol=1e-6)
    assert torch.allclose(batch[0], expected.view(3, 1, 1).expand(3, 24, 24), atol=1e-6)
    assert preprocess([], 8).shape == (0, 3, 8, 8)


def test_preprocess_rejects_non_rgb() -> None:
    with pytest.raises(ImageError, match=r"images\[1\]: mode 'L'"):
        preprocess([Image.new("RGB", (4, 4)), Image.new("L", (4, 4))], 8)
    with pytest.raises(TypeError, match=r"images\[0\]"):
        preprocess([np.zeros((4, 4, 3))], 8)  # type: ignore[list-item]


def test_preprocess_matches_transformers_blip_processor() -> None:
    blip = pytest.importorskip("transformers.models.blip.image_processing_pil_blip")
    images = [Image.fromarray(_noise(97, 131, seed=3)), Image.fromarray(_noise(384, 384, seed=4))]
    size = 64
    processor = blip.BlipImageProcessorPil(size={"height": size, "width": size})
    theirs = processor(images, return_tensors="pt")["pixel_values"]
    ours = preprocess(images, size)
    assert theirs.shape == ours.shape
    # Both resize with PIL bicubic; only float rounding in rescale/normalise may differ.
    assert (ours - theirs).abs().max().item() < 1e-5


# --------------------------------------------------------------------------- train transform


def test_train_transform_deterministic_with_seed() -> None:
    image = Image.fromarray(_noise(60, 80))
    first = train_transform(image, 32, min_scale=0.2, rng=random.Random(7))
    again = train_transform(image, 32, min_scale=0.2, rng=random.Random(7))
    other = train_transform(image, 32, min_scale=0.2, rng=random.Random(8))
    assert first.shape == (3, 32, 32) and first.dtype == torch.float32
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_train_transform_flip_flag() -> None:
    half = np.zeros((32, 32, 3), dtype=np.uint8)
    half[:, :16] = (255, 0, 0)  # red left, blue right
    half[:, 16:] = (0, 0, 255)
    image = Image.fromarray(half)

    def red_on_left(tensor: torch.Tensor) -> bool:
        red = tensor[0]  # normalised red channel
        return bool(red[:, :8].mean() > red[:, -8:].mean())

    def run(seed: int, hflip: bool) -> bool:
        return red_on_left(train_transform(image, 32, min_scale=1.0, rng=random.Random(seed), hflip=hflip))

    assert all(run(seed, hflip=False) for seed in range(24))
    flipped = [run(seed, hflip=True) for seed in range(24)]
    assert 0 < flipped.count(False) < 24


def test_random_resized_crop_box_bounds() -> None:
    rng = random.Random(0)
    for _ in range(200):
        left, top, w, h = _random_resized_crop_box(100, 60, 0.2, rng)
        assert left >= 0 and top >= 0 and left + w <= 100 and top + h <= 60
        assert 0.2 * 6000 * 0.97 <= w * h <= 6000
        assert 3 / 4 * 0.9 <= w / h <= 4 / 3 * 1.1
    # a full-scale crop of a square cannot change aspect: whole image
    assert _random_resized_crop_box(50, 50, 1.0, random.Random(1)) == (0, 0, 50, 50)
    # extreme panorama falls back to a central crop with ratio 4/3
    assert _random_resized_crop_box(1000, 10, 1.0, random.Random(2)) == (493, 0, 13, 10)


def test_train_transform_validates() -> None:
    with pytest.raises(ValueError, match="min_scale"):
        train_transform(Image.new("RGB", (8, 8)), 8, min_scale=0.0, rng=random.Random(0))
    with pytest.raises(ImageError, match="mode 'RGBA'"):
        train_transform(Image.new("RGBA", (8, 8)), 8, min_scale=0.5, rng=random.Random(0))


def test_corrupt_exif_loads_quietly(recwarn: pytest.WarningsRecorder) -> None:
    """A corrupt EXIF block loses only the orientation: the image loads and no warning reaches
    the user's terminal."""
    buf = io.BytesIO()
    exif = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00\xff\xff\xff\xff"
    Image.new("RGB", (8, 6), (200, 10, 10)).save(buf, "JPEG", exif=exif)
    im = load_image(buf.getvalue())
    assert im.size == (8, 6) and im.mode == "RGB"
    assert not [w for w in recwarn if "EXIF" in str(w.message)]


def test_a_float_image_of_nan_only_loads_black_and_quietly(recwarn: pytest.WarningsRecorder) -> None:
    """NaN pixels are black; a float TIFF holding nothing else must not print numpy's
    'All-NaN slice' warning on the user's terminal."""
    buf = io.BytesIO()
    Image.fromarray(np.full((4, 5), np.nan, dtype=np.float32)).save(buf, "TIFF")
    im = load_image(buf.getvalue())
    assert im.size == (5, 4) and not np.asarray(im).any()
    assert not [str(w.message) for w in recwarn]
    partly = np.array([[np.nan, 0.5], [1.0, 0.0]], dtype=np.float32)  # finite values still set the scale
    assert np.asarray(load_image(Image.fromarray(partly)))[..., 0].tolist() == [[0, 128], [255, 0]]


def test_eps_without_ghostscript_is_unsupported_not_corrupt() -> None:
    """PIL decodes EPS by running Ghostscript: without it the file is not damaged, only unsupported."""
    from PIL import EpsImagePlugin

    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\n%%EOF\n"
    if EpsImagePlugin.has_ghostscript():
        assert load_image(eps, name="x.eps").size == (10, 10)
    else:
        _fails(eps, r"x\.eps: unsupported image \(EPS needs Ghostscript", name="x.eps")
