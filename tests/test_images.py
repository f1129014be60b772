"""Photo decoding: every rejection reason, EXIF orientation and colour modes."""

import numpy as np
import pytest
from conftest import real_photos
from PIL import Image

from guitar_distill.edge.images import ImageRejected, load_for_model, load_rgb


def _rejected(path, **kwargs) -> str:
    with pytest.raises(ImageRejected) as info:
        load_rgb(path, **kwargs)
    assert str(path) in str(info.value)
    return info.value.reason


@pytest.mark.slow
def test_rejections_name_file_and_reason(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a photo")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(real_photos("ES", 1)[0].read_bytes()[:3000])
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (20, 40), "red").save(tiny)
    big = tmp_path / "big.png"
    Image.new("L", (3000, 3000)).save(big)
    animated = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (64, 64), c) for c in ("red", "green", "blue")]
    frames[0].save(animated, save_all=True, append_images=frames[1:])
    missing = tmp_path / "missing.jpg"
    assert _rejected(empty) == "empty file"
    assert _rejected(text) == "not an image"
    assert _rejected(truncated) == "truncated or corrupt"
    assert _rejected(tiny) == "too small"
    assert _rejected(big, max_pixels=1_000_000) == "too many pixels"
    assert _rejected(animated) == "animated"
    assert _rejected(missing) == "unreadable"


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, :40] = 255  # left half white
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif.tobytes(), quality=95)
    out = load_rgb(path)
    assert out.size == (40, 80)
    top = np.asarray(out)[:40].mean()
    assert top > 200  # the white half is on top after rotation


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["L", "1", "P", "CMYK", "I;16", "I", "F", "LA", "RGBA"])
def test_colour_modes_become_rgb(tmp_path, mode):
    base = Image.open(real_photos("SG", 1)[0]).convert("RGB").resize((64, 64))
    if mode == "I;16":
        img = Image.fromarray((np.asarray(base.convert("L"), np.uint16) * 257).astype("<u2"))
    elif mode == "F":
        img = Image.fromarray(np.asarray(base.convert("L"), np.float32) / 255.0)
    else:
        img = base.convert(mode)
    path = tmp_path / f"img.{'tiff' if mode in ('I;16', 'I', 'F', 'CMYK') else 'png'}"
    img.save(path)
    out = load_rgb(path)
    assert out.mode == "RGB" and out.size == (64, 64)
    if mode in ("I;16", "I", "F", "L"):
        grey = np.asarray(base.convert("L"), np.int16)
        assert np.abs(np.asarray(out, np.int16)[..., 0] - grey).max() <= 1


def test_alpha_is_composited_on_white(tmp_path):
    img = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    img.paste((0, 0, 255, 255), (0, 0, 32, 64))
    path = tmp_path / "alpha.png"
    img.save(path)
    arr = np.asarray(load_rgb(path))
    assert tuple(arr[10, 10]) == (0, 0, 255)
    assert tuple(arr[10, 50]) == (255, 255, 255)
    palette = tmp_path / "palette.png"
    img.convert("P").save(palette, transparency=0)
    assert np.asarray(load_rgb(palette)).dtype == np.uint8


@pytest.mark.slow
def test_load_for_model_shape_and_dtype():
    arr = load_for_model(real_photos("FlyingV", 1)[0], 48)
    assert arr.shape == (48, 48, 3) and arr.dtype == np.uint8
