"""Test a teacher at another resolution (FixRes): rebuild it at that size, re-estimate its batch-norm
statistics on training photos seen there, and average its answers over a horizontal flip.

A network trained on random-resized crops sees objects larger than a centred test photo shows them;
testing at a higher resolution matches the sizes again, once each batch norm's running statistics
are recomputed at that resolution (Touvron et al. 2019).
"""

from __future__ import annotations

import keras
import numpy as np

from guitar_distill.teacher.model import build_teacher


def at_resolution(model: keras.Model, size: int) -> keras.Model:
    """The same average-pooling-head teacher, weights and all, taking `size` x `size` photos."""
    if any(isinstance(layer, keras.layers.Flatten) for layer in model.layers):
        raise ValueError(
            f"{model.name}: a Flatten head is tied to its input size; only an avg head tests at another resolution"
        )
    rebuilt = build_teacher(model.output_shape[-1], size, head="avg")
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def reestimate_batch_norm(model: keras.Model, images: np.ndarray, batch_size: int = 64) -> int:
    """Replace every batch norm's running mean and variance by their average over `images`' batches.

    Each batch runs in training mode with the layer's momentum set to k / (k + 1) for batch k, which makes
    the running value the exact mean over batches; nothing else changes (no gradients). Returns the batches.
    """
    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [layer.momentum for layer in layers]
    batches = 0
    try:
        for start in range(0, len(images) - batch_size + 1, batch_size):
            for layer in layers:
                layer.momentum = batches / (batches + 1)
            model(np.asarray(images[start : start + batch_size], dtype=np.float32), training=True)
            batches += 1
    finally:
        for layer, momentum in zip(layers, saved):
            layer.momentum = momentum
    if not batches:
        raise ValueError(f"{len(images)} photos: at least one batch of {batch_size} is needed to re-estimate")
    return batches


def predict_flip_averaged(model: keras.Model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The mean of the probabilities for each photo and its mirror image."""
    out = []
    for start in range(0, len(images), batch_size):
        x = np.asarray(images[start : start + batch_size], dtype=np.float32)
        out.append((model.predict_on_batch(x) + model.predict_on_batch(x[:, :, ::-1])) / 2)
    return np.concatenate(out)
