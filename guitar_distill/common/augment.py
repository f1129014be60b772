"""Training augmentations and a seeded batch feeder over the decode cache.

Two augmentations, chosen by a preset's `augmentation` field: the write-up's ImageDataGenerator
set from Keras preprocessing layers ("seed"), and random-resized crop plus horizontal flip
("crop_flip", the small-data recipe of fast.ai's Imagewoof runs and of FFCV's ResNet50). Both are
numpy/Pillow or Keras ops, never TF ops, so they run under TensorFlow and JAX alike; on TensorFlow,
`common.training.fit_input` hands the feed's batches to model.fit through tf.data.
"""
from __future__ import annotations

import keras
import numpy as np
from PIL import Image


def seed_augmentation() -> list[keras.layers.Layer]:
    """rotation 45 deg, width/height shift 0.2, zoom 0.2, horizontal and vertical flip, fill 'nearest'."""
    return [
        keras.layers.RandomRotation(45 / 360, fill_mode="nearest"),
        keras.layers.RandomTranslation(0.2, 0.2, fill_mode="nearest"),
        keras.layers.RandomZoom((-0.2, 0.2), (-0.2, 0.2), fill_mode="nearest"),
        keras.layers.RandomFlip("horizontal_and_vertical"),
    ]


def augment_batch(layers: list[keras.layers.Layer], images: np.ndarray, seed: int) -> np.ndarray:
    """Apply `layers` to a uint8 or float batch with an explicit seed: the same seed gives the same batch."""
    x = keras.ops.convert_to_tensor(np.asarray(images, dtype=np.float32))
    for k, layer in enumerate(layers):
        transform = layer.get_random_transformation(x, training=True, seed=int(seed + 7919 * k) % (2**31 - 1))
        x = layer.transform_images(x, transform, training=True)
    return np.clip(keras.ops.convert_to_numpy(x), 0.0, 255.0)


class SeedAugmentation:
    """The write-up's affine set as a seeded batch function."""

    def __init__(self):
        self.layers = seed_augmentation()

    def __call__(self, images: np.ndarray, seed: int) -> np.ndarray:
        return augment_batch(self.layers, images, seed)

    def describe(self) -> dict:
        return {"name": "seed", "layers": [layer.get_config() for layer in self.layers]}


class CropFlip:
    """Random-resized crop (torchvision's sampling: area share in `scale`, aspect ratio log-uniform
    in `ratio`, 10 tries, else the whole photo) resized back to the photo's size, then a horizontal
    flip with probability 1/2. Guitars are not upside down, so there is no vertical flip."""

    def __init__(self, scale=(0.35, 1.0), ratio=(3 / 4, 4 / 3)):
        self.scale, self.ratio = (float(scale[0]), float(scale[1])), (float(ratio[0]), float(ratio[1]))
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
        out = np.empty(images.shape, dtype=np.float32)
        h, w = images.shape[1:3]
        for k, image in enumerate(np.asarray(images, dtype=np.uint8)):
            crop = Image.fromarray(image).resize((w, h), Image.BILINEAR, box=self.box(rng, h, w))
            out[k] = np.asarray(crop, dtype=np.float32)[:, ::-1] if rng.random() < 0.5 else crop
        return out

    def describe(self) -> dict:
        return {"name": "crop_flip", "scale": list(self.scale), "ratio": list(self.ratio)}


def training_augmentation(cfg: dict):
    """The augmentation a stage's table asks for: `augmentation` "seed" (the write-up's) or "crop_flip"
    with `crop_scale`."""
    name = cfg["augmentation"]
    if name == "seed":
        return SeedAugmentation()
    if name == "crop_flip":
        return CropFlip(tuple(cfg["crop_scale"]))
    raise ValueError(f"augmentation {name!r}: use \"seed\" (the write-up's affine set) or \"crop_flip\"")


class AugmentedBatches(keras.utils.PyDataset):
    """An endless, seeded stream of (augmented images float32 0..255, int labels) batches.

    Batch `i` of a fit that starts at epoch `e` is global batch `e * steps_per_epoch + i`, and
    everything about a global batch (which photos, which augmentation) is a pure function of
    it and the seed. So a resumed run sees exactly the batches an uninterrupted run would.

    With `period`, the stream repeats: only its first `period` batches exist (a teacher's stored
    logits cover just those), and each later cycle replays them in a new seeded order.
    """

    def __init__(self, images, labels, batch_size: int, seed: int, augment=True,
                 start_batch: int = 0, batch_targets=None, period: int | None = None, **kwargs):
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
            x = self.augment(x, seed=self.seed * 1_000_003 + g)
        if self.batch_targets is None:
            return x.astype(np.float32), self.labels[idx]
        if g >= len(self.batch_targets):
            raise IndexError(f"batch {g} is past the {len(self.batch_targets)} batches of stored targets")
        return x.astype(np.float32), (self.labels[idx], np.asarray(self.batch_targets[g]))
