"""Decode a photo the same way everywhere: data stage, benchmarks, export parity and the edge predictor.

Only Pillow and numpy, so the file travels in the edge bundle unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "MPO")
MIN_SIDE = 32
MAX_PIXELS = 40_000_000  # 8000 x 5000; anything larger is treated as a decompression bomb


class ImageRejected(ValueError):
    """A file that cannot be used as a photo; `reason` is a short machine-readable key."""

    def __init__(self, path, reason: str, detail: str = ""):
        self.path, self.reason, self.detail = str(path), reason, detail
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))


def load_rgb(path, min_side: int = MIN_SIDE, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open, validate and return an 8-bit RGB image with EXIF orientation applied."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ImageRejected(path, "unreadable", e.strerror or str(e)) from e
    if size == 0:
        raise ImageRejected(path, "empty file")
    try:
        # Header only: size and format are checked before any pixel is decoded.
        with Image.open(path) as probe:
            fmt, (w, h), frames = probe.format, probe.size, getattr(probe, "n_frames", 1)
    except UnidentifiedImageError as e:
        raise ImageRejected(path, "not an image") from e
    except Image.DecompressionBombError as e:
        raise ImageRejected(path, "too many pixels", str(e)) from e
    except OSError as e:
        raise ImageRejected(path, "corrupt", str(e)) from e
    if fmt not in ACCEPTED_FORMATS:
        raise ImageRejected(path, "unsupported format", str(fmt))
    if w * h > max_pixels:
        raise ImageRejected(path, "too many pixels", f"{w}x{h} > {max_pixels} pixels")
    if min(w, h) < min_side:
        raise ImageRejected(path, "too small", f"{w}x{h}, need at least {min_side} px a side")
    # MPO is how many cameras store a JPEG with a preview frame; its first frame is the photo.
    if frames > 1 and fmt != "MPO":
        raise ImageRejected(path, "animated", f"{frames} frames")
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            return to_rgb(img)
    except Image.DecompressionBombError as e:
        raise ImageRejected(path, "too many pixels", str(e)) from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageRejected(path, "truncated or corrupt", str(e)) from e


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: 16-bit scaled down, alpha composited on white."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        scale = 257.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 1.0
        img = Image.fromarray(np.clip(arr / scale + 0.5, 0, 255).astype(np.uint8), "L")
    elif mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        arr = arr * 255.0 if arr.max(initial=0) <= 1.0 else arr
        img = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info or img.mode in ("LA", "PA", "La", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img.getchannel("A"))
        return background
    return img.convert("RGB") if img.mode != "RGB" else img


def resize_for_model(img: Image.Image, size: int) -> np.ndarray:
    """Squash to size x size (as Keras' flow_from_directory did) and return uint8 HxWx3."""
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR, reducing_gap=None)
    return np.asarray(img, dtype=np.uint8)


def load_for_model(path, size: int) -> np.ndarray:
    return resize_for_model(load_rgb(path), size)
