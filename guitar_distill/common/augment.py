"""The write-up's ImageDataGenerator augmentation from Keras preprocessing layers, and a seeded
batch feeder over the decode cache. No tf.data and no TF ops: it runs under TensorFlow and JAX.
"""
from __future__ import annotations

import keras
import numpy as np


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


class AugmentedBatches(keras.utils.PyDataset):
    """An endless, seeded stream of (augmented images float32 0..255, int labels) batches.

    Batch `i` of a fit that starts at epoch `e` is global batch `e * steps_per_epoch + i`, and
    everything about a global batch (which photos, which augmentation) is a pure function of
    it and the seed. So a resumed run sees exactly the batches an uninterrupted run would.

    With `period`, the stream repeats: only its first `period` batches exist (a teacher's stored
    logits cover just those), and each later cycle replays them in a new seeded order.
    """

    def __init__(self, images, labels, batch_size: int, seed: int, augment: bool = True,
                 start_batch: int = 0, batch_targets=None, period: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if len(images) == 0:
            raise ValueError("no images to train on")
        self.images, self.labels = images, np.asarray(labels)
        self.batch_size, self.seed, self.start_batch = int(batch_size), int(seed), int(start_batch)
        self.layers = seed_augmentation() if augment else []
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
        if self._perm_cache is None or self._perm_cache[0] != data_pass:
            perm = np.random.default_rng([self.seed, data_pass]).permutation(len(self.images))
            self._perm_cache = (data_pass, perm)
        return self._perm_cache[1]

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
        if self._cycle_cache is None or self._cycle_cache[0] != cycle:
            self._cycle_cache = (cycle, np.random.default_rng([self.seed, self.period, cycle]).permutation(self.period))
        return int(self._cycle_cache[1][k])

    def __getitem__(self, i):
        g = self.stream_batch(self.start_batch + int(i))
        idx = self.indices(g)
        order = np.argsort(idx)  # memory maps read faster in file order
        x = np.empty((len(idx), *self.images.shape[1:]), dtype=np.uint8)
        x[order] = self.images[idx[order]]
        if self.layers:
            x = augment_batch(self.layers, x, seed=self.seed * 1_000_003 + g)
        if self.batch_targets is None:
            return x.astype(np.float32), self.labels[idx]
        if g >= len(self.batch_targets):
            raise IndexError(f"batch {g} is past the {len(self.batch_targets)} batches of stored targets")
        return x.astype(np.float32), (self.labels[idx], np.asarray(self.batch_targets[g]))
