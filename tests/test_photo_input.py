"""load_photo: every photo a user may hand to `discolib animate` is read right side up in [0, 1], or refused in one line.

All photos are made here, small (the 30000x30000 one is a 45-byte PNG header claiming that size).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from discolib.errors import InputError
from discolib.io.images import MIN_PHOTO_SIDE, ImageInputError, load_photo


def _refused(path: Path, *words: str, setting: str = "photo") -> str:
    with pytest.raises(ImageInputError) as info:
        load_photo(path, setting=setting)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{setting}: ")
    assert str(path) in message
    for word in words:
        assert word in message, message
    assert isinstance(info.value, InputError)
    return message


def _png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk (8-bit RGB) claiming ``width`` x ``height``, then an empty IEND: no pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is text, not a picture\n" * 10)
    _refused(path, "not an image")


def test_missing_file(tmp_path: Path) -> None:
    _refused(tmp_path / "nowhere.jpg")


def test_one_pixel_and_too_small(tmp_path: Path) -> None:
    tiny = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (200, 10, 10)).save(tiny)
    _refused(tiny, "1x1", f"at least {MIN_PHOTO_SIDE}x{MIN_PHOTO_SIDE}", setting="--photo")
    thin = tmp_path / "thin.png"
    Image.new("RGB", (400, MIN_PHOTO_SIDE - 1)).save(thin)
    _refused(thin, f"400x{MIN_PHOTO_SIDE - 1}")
    ok = tmp_path / "ok.png"
    Image.new("RGB", (MIN_PHOTO_SIDE, MIN_PHOTO_SIDE), (0, 255, 0)).save(ok)
    assert load_photo(ok).shape == (1, 3, MIN_PHOTO_SIDE, MIN_PHOTO_SIDE)


def test_huge_header_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header(30000, 30000))
    assert path.stat().st_size < 100
    assert 30000 * 30000 > Image.MAX_IMAGE_PIXELS
    _refused(path, "claims more pixels", "MAX_IMAGE_PIXELS")


def test_corrupt_png(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    bad = tmp_path / "cut.png"
    bad.write_bytes(good.read_bytes()[:300])  # a real header, then the data stops
    _refused(bad, "cannot decode")


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    path = tmp_path / "print.jpg"
    # Full magenta + yellow ink, no cyan, no black: red.
    Image.new("CMYK", (32, 24), (0, 255, 255, 0)).save(path, quality=95)
    with Image.open(path) as img:
        assert img.mode == "CMYK"
    photo = load_photo(path)
    assert photo.shape == (1, 3, 24, 32) and photo.dtype == torch.float32
    mean = photo.mean(dim=(0, 2, 3))
    assert mean[0] > 0.9 and mean[1] < 0.1 and mean[2] < 0.1, mean


def test_sixteen_bit_png_keeps_its_precision(tmp_path: Path) -> None:
    values = np.array([[0, 255, 1000, 30000], [40000, 65535, 256, 12345]], dtype=np.uint16)
    grid = np.kron(values, np.ones((8, 8), dtype=np.uint16))  # 16 x 32
    path = tmp_path / "depthy.png"
    Image.fromarray(grid).save(path)
    with Image.open(path) as img:
        assert img.mode.startswith("I")  # Pillow's 16-bit greyscale
    photo = load_photo(path)
    assert photo.shape == (1, 3, 16, 32)
    expected = torch.from_numpy(grid.astype(np.float32) / 65535.0)
    for channel in range(3):
        torch.testing.assert_close(photo[0, channel], expected, rtol=0, atol=1e-6)
    # 30000 and 40000 are distinct fractions below 1, not both clipped to 255 -> 1.0.
    assert 0.45 < photo[0, 0, 0, 24].item() < 0.46 and 0.6 < photo[0, 0, 8, 0].item() < 0.62


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # Stored landscape, 40 wide x 24 high, red block in the stored top-left corner; orientation 6 says "rotate
    # 90 degrees clockwise to display", so the photo is 24 wide x 40 high with the block top-right.
    stored = np.zeros((24, 40, 3), dtype=np.uint8)
    stored[:8, :8] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())
    photo = load_photo(path)
    assert photo.shape == (1, 3, 40, 24)
    red = photo[0, 0] - photo[0, 1]
    assert red[:8, -8:].mean() > 0.8  # top-right
    assert red[:8, :8].mean() < 0.1 and red[-8:, :8].mean() < 0.1 and red[-8:, -8:].mean() < 0.1


def test_alpha_is_composited_over_white(tmp_path: Path) -> None:
    rgba = np.zeros((16, 48, 4), dtype=np.uint8)
    rgba[:, :16] = (0, 0, 255, 255)  # opaque blue
    rgba[:, 16:32] = (0, 0, 0, 0)  # fully transparent black: white
    rgba[:, 32:] = (0, 0, 0, 128)  # half-transparent black: mid grey
    path = tmp_path / "cutout.png"
    Image.fromarray(rgba).save(path)
    photo = load_photo(path)[0]
    torch.testing.assert_close(photo[:, 0, 0], torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(photo[:, 0, 20], torch.tensor([1.0, 1.0, 1.0]))
    torch.testing.assert_close(photo[:, 0, 40], torch.full((3,), 1.0 - 128 / 255), rtol=0, atol=1e-6)


def test_palette_with_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (20, 20), 0)
    img.putpalette([10, 200, 30] + [0, 0, 0] * 255)
    img.putpixel((0, 0), 1)
    path = tmp_path / "palette.png"
    img.save(path, transparency=1)
    photo = load_photo(path)[0]
    torch.testing.assert_close(photo[:, 5, 5], torch.tensor([10, 200, 30]) / 255.0)
    torch.testing.assert_close(photo[:, 0, 0], torch.ones(3))  # the transparent index shows white


def test_max_side(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(path)
    assert load_photo(path).shape == (1, 3, 200, 300)
    small = load_photo(path, max_side=64)
    # 300 -> 64, 200 -> 64 * 200 / 300 = 42.7 -> 43 -> 40 (a multiple of 8)
    assert small.shape == (1, 3, 40, 64)
    assert 0.0 <= small.min() and small.max() <= 1.0
    assert load_photo(path, max_side=1000).shape == (1, 3, 200, 296)  # fits; only rounded to multiples of 8
    even = tmp_path / "even.png"
    Image.new("RGB", (64, 48), (1, 2, 3)).save(even)
    torch.testing.assert_close(load_photo(even, max_side=64), load_photo(even))
    with pytest.raises(ImageInputError, match="max_side"):
        load_photo(path, max_side=4)


def test_max_side_on_a_sixteen_bit_photo(tmp_path: Path) -> None:
    grid = np.full((64, 64), 30000, dtype=np.uint16)
    path = tmp_path / "flat16.png"
    Image.fromarray(grid).save(path)
    photo = load_photo(path, max_side=32)
    assert photo.shape == (1, 3, 32, 32)
    torch.testing.assert_close(photo, torch.full_like(photo, 30000 / 65535), rtol=0, atol=1e-5)


def test_a_thin_photo_keeps_its_aspect_ratio_or_is_refused(tmp_path: Path) -> None:
    thin = tmp_path / "thin.png"
    Image.new("RGB", (3000, 20), (9, 9, 9)).save(thin)
    with pytest.raises(ImageInputError) as info:
        load_photo(thin, max_side=1024)  # 20 * 1024 / 3000 = 6.8 pixels high
    message = str(info.value)
    assert "\n" not in message and str(thin) in message and "1024" in message and "6.8" in message
    assert load_photo(thin).shape == (1, 3, 20, 3000)  # no max_side: as it is
    slim = tmp_path / "slim.png"
    Image.new("RGB", (48, 1200), (9, 9, 9)).save(slim)
    assert load_photo(slim, max_side=600).shape == (1, 3, 600, 24)  # 48 / 2 = 24: the ratio kept exactly
    assert load_photo(slim, max_side=400).shape == (1, 3, 400, 16)  # 16: the least, never 8


def _old_path(path: Path, size: tuple[int, int]) -> np.ndarray:
    """How load_photo resized an 8-bit photo before: float32 at full resolution (over white), 8 bits, Lanczos."""
    img = Image.open(path)
    rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
    arr = rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])
    rgb = Image.fromarray((arr * 255.0 + 0.5).astype(np.uint8))
    return np.asarray(rgb.resize(size, Image.Resampling.LANCZOS), dtype=np.float32) / 255.0


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_shrinking_in_pillow_matches_the_float_path(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(5)
    v, u = np.mgrid[0:300, 0:420]
    base = np.stack([u * 0.6, v * 0.8, (u + v) * 0.3], -1) + rng.normal(0, 6, (300, 420, 3))
    if mode == "RGBA":
        base = np.concatenate([base, (u * 0.6)[..., None]], -1)
    path = tmp_path / f"p-{mode}.png"
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), mode).save(path)
    new = load_photo(path, max_side=128)[0].permute(1, 2, 0).numpy()
    old = _old_path(path, (128, 88))  # 300 * 128 / 420 = 91.4 -> 88
    assert new.shape == old.shape
    assert np.abs(new - old).mean() < 1.5 / 255 and np.abs(new - old).max() < 12 / 255


def test_a_large_photo_is_shrunk_without_a_full_size_float_copy(tmp_path: Path, monkeypatch) -> None:
    import tracemalloc


    path = tmp_path / "big.png"
    Image.new("RGB", (3000, 2000), (200, 100, 50)).save(path)
    full_float = 3000 * 2000 * 3 * 4
    tracemalloc.start()
    try:
        photo = load_photo(path, max_side=512)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert photo.shape == (1, 3, 336, 512)
    assert peak < full_float / 8, peak  # numpy's arrays are traced; a full-size float32 copy alone is 72 MB
