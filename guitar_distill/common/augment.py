"""Training augmentations and a seeded batch feeder over the decode cache.

Two augmentations, chosen by a preset's `augmentation` field: the write-up's ImageDataGenerator
set ("seed"), and random-resized crop plus horizontal flip ("crop_flip", the small-data recipe of
fast.ai's Imagewoof runs and of FFCV's ResNet50), the latter with a side and crop range by epoch
(`phases`). After them, optionally, corruptions (`corrupt`) and MixUp or CutMix (`mix`). All are numpy
and Pillow only, never backend ops:
the feed runs in threads beside the training step, and backend ops there compete with the step for
its devices (under JAX with two devices, they deadlocked its all-reduce). On TensorFlow,
`common.feed.fit_input` hands the feed's batches to model.fit through tf.data.
"""

from __future__ import annotations

import keras
import numpy as np
from PIL import Image

from guitar_distill.common.config import Phase, Recipe
from guitar_distill.common.corruptions import CORRUPTIONS


def affine_sample(images: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """Bilinear resampling of a (N, H, W, C) batch, each image through its own 2x3 matrix.

    `matrices[k]` maps an output pixel's (row, col, 1) to where it reads in image k; reads past the edge
    take the nearest edge pixel (ImageDataGenerator's fill mode "nearest"). Pure numpy: a feed thread never
    runs device ops, which under JAX share the devices of the training step's all-reduce and deadlocked it.
    """
    n, h, w = images.shape[:3]
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    grid = np.stack([rows, cols, np.ones_like(rows)])  # (3, H, W)
    src = np.einsum("nij,jhw->nihw", matrices.astype(np.float32), grid)  # (N, 2, H, W)
    r = np.clip(src[:, 0], 0, h - 1)
    c = np.clip(src[:, 1], 0, w - 1)
    r0, c0 = np.floor(r).astype(np.int64), np.floor(c).astype(np.int64)
    r1, c1 = np.minimum(r0 + 1, h - 1), np.minimum(c0 + 1, w - 1)
    fr, fc = (r - r0)[..., None], (c - c0)[..., None]
    k = np.arange(n)[:, None, None]
    x = np.asarray(images, dtype=np.float32)
    top = x[k, r0, c0] * (1 - fc) + x[k, r0, c1] * fc
    bottom = x[k, r1, c0] * (1 - fc) + x[k, r1, c1] * fc
    return top * (1 - fr) + bottom * fr


class SeedAugmentation:
    """The write-up's ImageDataGenerator set: rotation 45 degrees, width and height shift 0.2, zoom 0.2
    (each axis on its own), horizontal and vertical flip, fill mode "nearest".

    As ImageDataGenerator did, the rotation, shift and zoom are composed into one affine map about the
    image's centre and sampled once, bilinearly; the flips follow.
    """

    rotation, shift, zoom = 45.0, 0.2, 0.2

    def matrices(self, rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
        theta = np.deg2rad(rng.uniform(-self.rotation, self.rotation, n))
        tr, tc = rng.uniform(-self.shift, self.shift, (2, n)) * np.array([[h], [w]])
        zr, zc = rng.uniform(1 - self.zoom, 1 + self.zoom, (2, n))
        cos, sin = np.cos(theta), np.sin(theta)
        # output (row, col) about the centre -> input: rotate, zoom, then shift (ImageDataGenerator's order)
        a = np.stack([np.stack([cos * zr, -sin * zc], -1), np.stack([sin * zr, cos * zc], -1)], 1)  # (n, 2, 2)
        centre = np.array([(h - 1) / 2, (w - 1) / 2])
        offset = centre - a @ centre + np.stack([tr, tc], -1)
        return np.concatenate([a, offset[..., None]], -1)

    def __call__(self, images: np.ndarray, seed: int) -> np.ndarray:
        rng = np.random.default_rng([int(seed) % (2**63)])
        n, h, w = images.shape[:3]
        out = affine_sample(images, self.matrices(rng, n, h, w))
        flip_h, flip_v = rng.random((2, n)) < 0.5
        out[flip_h] = out[flip_h, :, ::-1]
        out[flip_v] = out[flip_v, ::-1]
        return out

    def describe(self) -> dict:
        return {
            "name": "seed",
            "rotation_degrees": self.rotation,
            "shift": self.shift,
            "zoom": self.zoom,
            "flips": "horizontal_and_vertical",
            "fill_mode": "nearest",
        }


class CropFlip:
    """Random-resized crop (torchvision's sampling: area share in `scale`, aspect ratio log-uniform
    in `ratio`, 10 tries, else the whole photo) resized back to the photo's size, then a horizontal
    flip with probability 1/2. Guitars are not upside down, so there is no vertical flip."""

    def __init__(self, scale=(0.35, 1.0), ratio=(3 / 4, 4 / 3), size: int | None = None):
        self.scale, self.ratio = (float(scale[0]), float(scale[1])), (float(ratio[0]), float(ratio[1]))
        self.size = int(size) if size else None  # the crops' side; None: the photos' own
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"crop scale {scale}: want 0 < low <= high <= 1")

    def box(self, rng: np.random.Generator, height: int, width: int) -> tuple[float, float, float, float]:
        area = height * width
        log_ratio = np.log(self.ratio)
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = np.exp(rng.uniform(*log_ratio))
            w, h = np.sqrt(target * aspect), np.sqrt(target / aspect)
            if w <= width and h <= height:
                x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
                return x0, y0, x0 + w, y0 + h
        return 0.0, 0.0, float(width), float(height)

    def __call__(self, images: np.ndarray, seed: int) -> np.ndarray:
        rng = np.random.default_rng([int(seed) % (2**63)])
        h, w = images.shape[1:3]
        out_h, out_w = (self.size, self.size) if self.size else (h, w)
        out = np.empty((len(images), out_h, out_w, images.shape[3]), dtype=np.float32)
        for k, image in enumerate(np.asarray(images, dtype=np.uint8)):
            crop = Image.fromarray(image).resize((out_w, out_h), Image.BILINEAR, box=self.box(rng, h, w))
            out[k] = np.asarray(crop, dtype=np.float32)[:, ::-1] if rng.random() < 0.5 else crop
        return out

    def describe(self) -> dict:
        return {
            "name": "crop_flip",
            "scale": list(self.scale),
            "ratio": list(self.ratio),
            **({"size": self.size} if self.size else {}),
        }


class Phases:
    """Progressive resizing: from each phase's `from_epoch` on, crops of `image_size` px with its `crop_scale`.

    Training from small crops first and larger ones later (fast.ai's DAWNBench runs, FFCV's ResNet50)
    spends the early epochs cheaply; the photos come from a cache at the largest size and each crop
    is resized to its phase's side. The first phase starts at epoch 0 and the last is the largest (checked
    where the config is loaded); a phase's `crop_scale` may be left out (the recipe's).
    """

    def __init__(self, phases: tuple[Phase, ...], steps_per_epoch: int, crop_scale=(0.35, 1.0)):
        self.starts, self.steps = [p.from_epoch for p in phases], int(steps_per_epoch)
        self.crops = [CropFlip(p.crop_scale or crop_scale, size=p.image_size) for p in phases]

    @property
    def last(self) -> int:
        return self.crops[-1].size

    def at_epoch(self, epoch: int) -> CropFlip:
        return self.crops[int(np.searchsorted(self.starts, epoch, side="right")) - 1]

    def for_batch(self, global_batch: int) -> CropFlip:
        return self.at_epoch(global_batch // self.steps)

    def describe(self) -> dict:
        return {
            "name": "phases",
            "phases": [{"from_epoch": e, **c.describe()} for e, c in zip(self.starts, self.crops)],
        }


class TrainingCorruption:
    """With probability `probability`, one of `names` (common/corruptions.py) at a severity drawn from
    `severities`, applied to each crop: a student trained to answer a noisy photo as it would the clean one.

    In distillation, the target for a corrupted crop is the teacher's answer for the clean crop (stored outputs),
    or with `distill.teacher_sees = "corrupted"` for the corrupted one (distill/teacher_logits.py).
    """

    def __init__(self, names: list[str], probability: float, severities=(1, 3)):
        unknown = sorted(set(names) - set(CORRUPTIONS))
        if unknown:
            raise ValueError(f"corrupt {unknown}: unknown; choose from {sorted(CORRUPTIONS)}")
        low, high = int(severities[0]), int(severities[1])
        if not (0 <= probability <= 1 and 1 <= low <= high <= 5):
            raise ValueError(
                f"corrupt_probability {probability} (0..1), corrupt_severity {severities} (1..5, low first)"
            )
        self.names, self.probability, self.severities = list(names), float(probability), (low, high)

    def __call__(self, images: np.ndarray, seed: int) -> np.ndarray:
        rng = np.random.default_rng([int(seed) % (2**63), 11])
        out = np.array(images, dtype=np.float32)
        for k in np.flatnonzero(rng.random(len(out)) < self.probability):
            name = self.names[rng.integers(len(self.names))]
            severity = int(rng.integers(self.severities[0], self.severities[1] + 1))
            crop = np.clip(np.rint(out[k]), 0, 255).astype(np.uint8)
            out[k] = CORRUPTIONS[name](crop, severity, int(rng.integers(2**31)))
        return out

    def describe(self) -> dict:
        return {"names": self.names, "probability": self.probability, "severities": list(self.severities)}


def training_corruption(recipe: Recipe) -> TrainingCorruption | None:
    """A recipe's `corrupt` list with `corrupt_probability` and `corrupt_severity`, or None."""
    if not recipe.corrupt:
        return None
    return TrainingCorruption(list(recipe.corrupt), recipe.corrupt_probability, recipe.corrupt_severity)


class BatchMixing:
    """MixUp (Zhang et al. 2018) or CutMix (Yun et al. 2019) from global batch `from_batch` on.

    Each batch is mixed with itself in a seeded random order, in a share `lam` drawn from Beta(alpha, alpha):
    MixUp blends whole photos, CutMix pastes a box of the other photo covering 1 - lam of the area (lam then
    recomputed from the box as it was clipped). Targets are class-probability rows mixed in the same
    shares; before `from_batch` they are the one-hot labels, so the loss and the metrics never change kind.
    """

    def __init__(self, kind: str, alpha: float, num_classes: int, from_batch: int = 0):
        if kind not in ("mixup", "cutmix"):
            raise ValueError(f'mixing {kind!r}: use "mixup" or "cutmix" (or "none" for no mixing)')
        if alpha <= 0:
            raise ValueError(f"mix_alpha {alpha}: must be above 0")
        self.kind, self.alpha, self.num_classes, self.from_batch = kind, float(alpha), int(num_classes), int(from_batch)

    def __call__(self, x: np.ndarray, labels: np.ndarray, seed: int, global_batch: int):
        targets = np.eye(self.num_classes, dtype=np.float32)[labels]
        if global_batch < self.from_batch:
            return x, targets
        rng = np.random.default_rng([int(seed) % (2**63), 7])
        lam, order = rng.beta(self.alpha, self.alpha), rng.permutation(len(x))
        if self.kind == "mixup":
            x = lam * x + (1 - lam) * x[order]
        else:
            x, lam = self.paste_box(x, order, lam, rng)
        return x.astype(np.float32), (lam * targets + (1 - lam) * targets[order]).astype(np.float32)

    @staticmethod
    def paste_box(x: np.ndarray, order: np.ndarray, lam: float, rng: np.random.Generator):
        h, w = x.shape[1:3]
        cut_h, cut_w = int(h * np.sqrt(1 - lam)), int(w * np.sqrt(1 - lam))
        cy, cx = rng.integers(h), rng.integers(w)
        top, bottom = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, h)
        left, right = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, w)
        x = np.array(x, dtype=np.float32)
        x[:, top:bottom, left:right] = x[order, top:bottom, left:right]
        return x, 1 - (bottom - top) * (right - left) / (h * w)

    def describe(self) -> dict:
        return {"kind": self.kind, "alpha": self.alpha, "from_batch": self.from_batch}


def training_mixing(recipe: Recipe, num_classes: int) -> BatchMixing | None:
    """A recipe's `mix` ("none", "mixup", "cutmix") from epoch `mix_from_epoch`, or None."""
    if recipe.mix == "none":
        return None
    return BatchMixing(recipe.mix, recipe.mix_alpha, num_classes, recipe.mix_from_epoch * recipe.steps_per_epoch)


def training_phases(recipe: Recipe) -> Phases | None:
    """A recipe's progressive-resizing phases, or None when it trains at one size."""
    return Phases(recipe.phases, recipe.steps_per_epoch, recipe.crop_scale) if recipe.phases else None


def training_augmentation(recipe: Recipe):
    """The augmentation a recipe asks for: `augmentation` "seed" (the write-up's) or "crop_flip" with
    `crop_scale`, or with `phases` the crops of each phase (Phases)."""
    return training_phases(recipe) or (
        SeedAugmentation() if recipe.augmentation == "seed" else CropFlip(recipe.crop_scale)
    )


class AugmentedBatches(keras.utils.PyDataset):
    """An endless, seeded stream of (augmented images float32 0..255, int labels) batches.

    Batch `i` of a fit that starts at epoch `e` is global batch `e * steps_per_epoch + i`, and
    everything about a global batch (which photos, which augmentation) is a pure function of
    it and the seed. So a resumed run sees exactly the batches an uninterrupted run would.

    With `period`, the stream repeats: only its first `period` batches exist (a teacher's stored
    logits cover just those), and each later cycle replays them in a new seeded order.
    """

    def __init__(
        self,
        images,
        labels,
        batch_size: int,
        seed: int,
        augment=True,
        start_batch: int = 0,
        batch_targets=None,
        period: int | None = None,
        mixing: BatchMixing | None = None,
        corruption: TrainingCorruption | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if len(images) == 0:
            raise ValueError("no images to train on")
        self.images, self.labels = images, np.asarray(labels)
        self.batch_size, self.seed, self.start_batch = int(batch_size), int(seed), int(start_batch)
        # True: the write-up's set; False: none; or any seeded batch function (training_augmentation).
        self.augment = SeedAugmentation() if augment is True else (augment or None)
        # Optional per-batch extra targets (a teacher's stored logits): batch g yields (x, (y, targets[g])).
        self.batch_targets = batch_targets
        self._perm_cache: tuple[int, np.ndarray] | None = None
        if period is not None and int(period) < 1:
            raise ValueError(f"period {period}: at least one batch")
        self.period = int(period) if period else None
        self._cycle_cache: tuple[int, np.ndarray] | None = None
        # Then labels are class-probability rows (BatchMixing); stored targets must be the teacher's answers to
        # the mixed photos (distill/teacher_logits.py stores them from this same stream).
        self.mixing = mixing
        self.corruption = corruption  # after the augmentation, before any mixing

    @property
    def num_batches(self):
        return None  # endless; model.fit(steps_per_epoch=...) cuts it into "steps"

    def __len__(self):
        raise TypeError("AugmentedBatches is endless; pass steps_per_epoch to fit()")

    def _permutation(self, data_pass: int) -> np.ndarray:
        cached = self._perm_cache  # one read: feed worker threads may replace it meanwhile
        if cached is None or cached[0] != data_pass:
            cached = (data_pass, np.random.default_rng([self.seed, data_pass]).permutation(len(self.images)))
            self._perm_cache = cached
        return cached[1]

    def indices(self, global_batch: int) -> np.ndarray:
        n = len(self.images)
        positions = np.arange(global_batch * self.batch_size, (global_batch + 1) * self.batch_size)
        out = np.empty(self.batch_size, dtype=np.int64)
        for data_pass in np.unique(positions // n):
            sel = positions // n == data_pass
            out[sel] = self._permutation(int(data_pass))[positions[sel] % n]
        return out

    def stream_batch(self, global_batch: int) -> int:
        """Which batch of the stream global batch `global_batch` is: itself, or a replay within `period`."""
        if not self.period:
            return global_batch
        cycle, k = divmod(global_batch, self.period)
        if cycle == 0:
            return k
        cached = self._cycle_cache
        if cached is None or cached[0] != cycle:
            cached = (cycle, np.random.default_rng([self.seed, self.period, cycle]).permutation(self.period))
            self._cycle_cache = cached
        return int(cached[1][k])

    def __getitem__(self, i):
        g = self.stream_batch(self.start_batch + int(i))
        idx = self.indices(g)
        order = np.argsort(idx)  # memory maps read faster in file order
        x = np.empty((len(idx), *self.images.shape[1:]), dtype=np.uint8)
        x[order] = self.images[idx[order]]
        if self.augment:
            augment = self.augment.for_batch(g) if hasattr(self.augment, "for_batch") else self.augment
            x = augment(x, seed=self.seed * 1_000_003 + g)
        if self.corruption is not None:
            x = self.corruption(x, seed=self.seed * 1_000_037 + g)
        if self.mixing is not None:
            x, y = self.mixing(np.asarray(x, dtype=np.float32), self.labels[idx], self.seed * 1_000_033 + g, g)
        else:
            x, y = x.astype(np.float32), self.labels[idx]
        if self.batch_targets is None:
            return x, y
        if g >= len(self.batch_targets):
            raise IndexError(f"batch {g} is past the {len(self.batch_targets)} batches of stored targets")
        return x, (y, np.asarray(self.batch_targets[g]))
