"""How model.fit reads the augmented stream: feed threads for JAX, a tf.data pipeline for TensorFlow."""

from __future__ import annotations

import os

import keras
import numpy as np

from guitar_distill.common.augment import AugmentedBatches


def feed_workers() -> dict:
    """PyDataset threads for a backend that reads the feed itself (JAX), from GUITAR_FEED_WORKERS.

    A fast accelerator waits on the augmentation (Pillow, which releases the GIL) unless several
    batches are made at once; the batches stay in order and each is a pure function of its index.
    """
    workers = int(os.environ.get("GUITAR_FEED_WORKERS", "1"))
    if workers <= 1 or keras.backend.backend() == "tensorflow":
        return {}
    return {"workers": workers, "use_multiprocessing": False, "max_queue_size": 2 * workers}


def fit_input(feed: AugmentedBatches, length: int | None = None):
    """What model.fit reads: on TensorFlow, a tf.data pipeline over the feed's batches; else the feed.

    Keras hands a PyDataset to TensorFlow through `Dataset.from_generator`, and on 2 CPU cores that
    halved the NiN's training rate or worse (about 62 against 125-160 images/s with the same batches;
    reports/cpu_recipe.md). Mapping batch indices through `tf.numpy_function` reads the very same
    batches, in order (global batch `start_batch + i` is still `feed[i]`), without that cost. With `length`,
    the pipeline ends after that many batches (the fit's), so that its prefetch never reads past a stream of
    stored targets.
    """
    if keras.backend.backend() != "tensorflow":
        return feed
    import tensorflow as tf

    b = feed.batch_size
    # Progressive resizing changes the side between phases: each new side retraces the step once.
    image_shape = (None, None, feed.images.shape[3]) if hasattr(feed.augment, "for_batch") else feed.images.shape[1:]
    labels = ((b, feed.mixing.num_classes), np.float32) if feed.mixing else ((b,), feed.labels.dtype)
    specs = [((b, *image_shape), np.float32), labels]
    if feed.batch_targets is not None:
        specs.append(((b, *feed.batch_targets.shape[2:]), np.asarray(feed.batch_targets[0]).dtype))

    def load(i):
        x, y = feed[int(i)]
        arrays = [x, *(y if isinstance(y, tuple) else (y,))]
        return [np.asarray(a, dtype=dtype) for a, (_, dtype) in zip(arrays, specs)]

    def shaped(*arrays):
        x, *y = (tf.ensure_shape(a, shape) for a, (shape, _) in zip(arrays, specs))
        return (x, y[0]) if len(y) == 1 else (x, tuple(y))

    indices = tf.data.Dataset.range(length or 2**62)  # else endless, like the feed; fit's steps_per_epoch cuts it
    batches = indices.map(
        lambda i: tf.numpy_function(load, [i], [tf.as_dtype(d) for _, d in specs]),
        num_parallel_calls=1,
        deterministic=True,
    )
    return batches.map(shaped).prefetch(2)
