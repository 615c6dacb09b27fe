import io

import numpy as np
import pytest
from PIL import Image

from emotion.core.errors import MediaError
from emotion.media import images
from emotion.media.images import center_square, crop_square, load_image, square_around


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


@pytest.fixture
def rgb(rng):
    return rng.integers(0, 256, size=(40, 60, 3), dtype=np.uint8)


def test_rgb_round_trip(tmp_path, rgb):
    out = load_image(_save(Image.fromarray(rgb), tmp_path / "a.png"))
    np.testing.assert_array_equal(out, rgb)


def test_bytes_are_accepted(rgb):
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    np.testing.assert_array_equal(load_image(buf.getvalue()), rgb)


def test_grayscale_becomes_three_equal_channels(tmp_path, rgb):
    out = load_image(_save(Image.fromarray(rgb[:, :, 0]), tmp_path / "g.png"))
    assert out.shape == (40, 60, 3)
    np.testing.assert_array_equal(out[:, :, 0], rgb[:, :, 0])
    np.testing.assert_array_equal(out[:, :, 2], rgb[:, :, 0])


def test_palette_and_transparency(tmp_path, rgb):
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    assert load_image(_save(pal, tmp_path / "p.png")).shape == (40, 60, 3)
    rgba = np.zeros((10, 10, 4), np.uint8)  # fully transparent black
    out = load_image(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "t.png"))
    assert (out == 255).all()  # transparent pixels become white, not black


def test_cmyk_jpeg(tmp_path, rgb):
    out = load_image(_save(Image.fromarray(rgb).convert("CMYK"), tmp_path / "c.jpg",
                           quality=95))
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb).mean() < 40


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    ramp = (np.arange(64, dtype=np.uint16)[None].repeat(8, 0) * 1000)  # 0 .. 63000
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    out = load_image(path)[:, :, 0]
    assert out[0, -1] > 250 and out[0, 0] == 0
    assert np.all(np.diff(out[0].astype(int)) >= 0) and len(np.unique(out)) > 50


def test_exif_rotation_is_applied(tmp_path, rgb):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = _save(Image.fromarray(rgb), tmp_path / "r.jpg", exif=exif, quality=95)
    out = load_image(path)
    assert out.shape == (60, 40, 3)


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    path = _save(Image.new("L", (100, 100)), tmp_path / "bomb.png")
    with pytest.raises(MediaError, match="pixel limit"):
        load_image(path)


def test_real_bomb_header(tmp_path):
    # A tiny PNG that claims 30000 x 30000 pixels.
    path = _save(Image.new("1", (30000, 30000)), tmp_path / "big.png", optimize=True)
    assert path.stat().st_size < 1_000_000
    with pytest.raises(MediaError, match="limit|bomb"):
        load_image(path)


@pytest.mark.parametrize("content, match", [
    (b"", "empty"),
    (b"this is not an image at all", "not an image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, "not an image|corrupt"),
])
def test_unusable_files(tmp_path, content, match):
    path = tmp_path / "x.png"
    path.write_bytes(content)
    with pytest.raises(MediaError, match=match):
        load_image(path)


def test_truncated_jpeg(tmp_path, rgb):
    path = _save(Image.fromarray(np.tile(rgb, (8, 8, 1))), tmp_path / "full.jpg")
    data = path.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="corrupt or truncated"):
        load_image(tmp_path / "cut.jpg")


def test_missing_file(tmp_path):
    with pytest.raises(MediaError, match="no such file"):
        load_image(tmp_path / "nope.jpg")


def test_square_boxes_and_crops(rgb):
    assert center_square(60, 40) == (10.0, 0.0, 50.0, 40.0)
    assert square_around((10, 10, 20, 30), 0.0) == (5.0, 10.0, 25.0, 30.0)
    crop = crop_square(rgb, center_square(60, 40), 20)
    assert crop.shape == (20, 20, 3)
    # A box reaching outside the image is filled, not shrunk or shifted.
    edge = crop_square(rgb, (-10, -10, 30, 30), 40)
    np.testing.assert_array_equal(edge[10:, 10:], rgb[:30, :30])
