"""Corruptions: img uint8 HxWx3, severity 1..5, seed -> uint8 HxWx3. The robustness benchmark measures
models under them; training may add some of them to its crops (common/augment.py: TrainingCorruption).

Pure numpy, except JPEG, blur and rotation, which need a codec, a filter and a resampler (Pillow).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

SEVERITIES = (1, 2, 3, 4, 5)


def _check(img: np.ndarray, severity: int) -> None:
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected uint8 HxWx3, got {img.dtype} {img.shape}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity}")


def gaussian_noise(img, severity, seed):
    _check(img, severity)
    sigma = (0.04, 0.08, 0.12, 0.18, 0.26)[severity - 1] * 255
    noise = np.random.default_rng(seed).normal(0.0, sigma, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def salt_and_pepper(img, severity, seed):
    _check(img, severity)
    amount = (0.01, 0.03, 0.06, 0.10, 0.17)[severity - 1]
    rng = np.random.default_rng(seed)
    out = img.copy()
    hit = rng.random(img.shape[:2]) < amount
    salt = rng.random(img.shape[:2]) < 0.5
    out[hit & salt] = 255
    out[hit & ~salt] = 0
    return out


def doodle(img, severity, seed):
    """Painted strokes, like the write-up's scribble that turned a Jazzmaster into a FlyingV."""
    _check(img, severity)
    rng = np.random.default_rng(seed)
    h, w = img.shape[:2]
    strokes = (1, 2, 4, 6, 9)[severity - 1]
    radius = max(1.0, min(h, w) / 60)
    yy, xx = np.mgrid[0:h, 0:w]
    out = img.copy()
    for _ in range(strokes):
        colour = rng.integers(0, 256, 3, dtype=np.uint8)
        points = np.cumsum(rng.normal(0, min(h, w) / 6, size=(5, 2)), axis=0) + rng.uniform((0, 0), (h, w))
        mask = np.zeros((h, w), dtype=bool)
        for (y0, x0), (y1, x1) in zip(points[:-1], points[1:]):
            steps = int(max(abs(y1 - y0), abs(x1 - x0)) / radius) + 2
            for t in np.linspace(0.0, 1.0, steps):
                cy, cx = y0 + t * (y1 - y0), x0 + t * (x1 - x0)
                y_lo, y_hi = int(max(cy - radius - 1, 0)), int(min(cy + radius + 2, h))
                x_lo, x_hi = int(max(cx - radius - 1, 0)), int(min(cx + radius + 2, w))
                if y_lo >= y_hi or x_lo >= x_hi:
                    continue
                sub = (yy[y_lo:y_hi, x_lo:x_hi] - cy) ** 2 + (xx[y_lo:y_hi, x_lo:x_hi] - cx) ** 2 <= radius**2
                mask[y_lo:y_hi, x_lo:x_hi] |= sub
        out[mask] = colour
    return out


def occlusion(img, severity, seed):
    _check(img, severity)
    rng = np.random.default_rng(seed)
    h, w = img.shape[:2]
    side = (0.15, 0.25, 0.35, 0.45, 0.55)[severity - 1]
    bh, bw = max(1, int(h * side)), max(1, int(w * side))
    y, x = rng.integers(0, h - bh + 1), rng.integers(0, w - bw + 1)
    out = img.copy()
    out[y : y + bh, x : x + bw] = rng.integers(0, 256, 3, dtype=np.uint8)
    return out


def jpeg(img, severity, seed):
    _check(img, severity)
    quality = (60, 35, 20, 10, 5)[severity - 1]
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    with Image.open(io.BytesIO(buf.getvalue())) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.uint8)


def blur(img, severity, seed):
    _check(img, severity)
    radius = (0.5, 1.0, 1.5, 2.5, 3.5)[severity - 1] * min(img.shape[:2]) / 112  # in pixels of a 112 px photo
    return np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius)), dtype=np.uint8)


def rotation(img, severity, seed):
    _check(img, severity)
    angle = (10, 20, 30, 45, 60)[severity - 1] * (1 if np.random.default_rng(seed).random() < 0.5 else -1)
    return np.asarray(Image.fromarray(img).rotate(angle, resample=Image.BILINEAR, fillcolor=(255, 255, 255)))


CORRUPTIONS = {
    "gaussian_noise": gaussian_noise,
    "salt_and_pepper": salt_and_pepper,
    "doodle": doodle,
    "occlusion": occlusion,
    "jpeg": jpeg,
    "blur": blur,
    "rotation": rotation,
}


def corrupt(name: str, img: np.ndarray, severity: int, seed: int) -> np.ndarray:
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose from {sorted(CORRUPTIONS)}")
    return CORRUPTIONS[name](img, severity, seed)
