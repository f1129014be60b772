"""Run a model file in its own runtime: onnxruntime, ai-edge-litert, or Keras. Same call for all."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from guitar_distill.edge.predict import TFLiteClassifier


class OnnxClassifier:
    def __init__(self, path, num_threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0]
        self.size = int(self.input.shape[1])

    def predict(self, images: np.ndarray) -> np.ndarray:
        dtype = np.uint8 if self.input.type == "tensor(uint8)" else np.float32
        return self.session.run(None, {self.input.name: np.asarray(images).astype(dtype)})[0].astype(np.float32)


class KerasClassifier:
    def __init__(self, path, num_threads: int | None = None):
        import keras

        if num_threads and keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            try:
                tf.config.threading.set_intra_op_parallelism_threads(num_threads)
                tf.config.threading.set_inter_op_parallelism_threads(1)
            except RuntimeError:
                pass  # this process has run TensorFlow already: its thread pools are fixed (all cores by default)
        from guitar_distill.common.models import float32_copy, load_model_file

        self.path = Path(path)
        self.model = load_model_file(path)
        if any(layer.dtype_policy.name == "float16" for layer in self.model.layers):
            self.model = float32_copy(self.model)  # float16 weights (the released teacher): float32 arithmetic
        side = self.model.input_shape[1]
        self.size = int(side) if side else None  # None: a model that takes any side

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_on_batch(np.asarray(images, dtype=np.float32)), dtype=np.float32)


def all_threads() -> int:
    """The cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def open_classifier(path, num_threads: int | None = None):
    suffix = Path(path).suffix
    if suffix == ".onnx":
        return OnnxClassifier(path, num_threads)
    if suffix == ".tflite":
        return TFLiteClassifier(path, num_threads)
    if suffix == ".keras":
        return KerasClassifier(path, num_threads)
    raise ValueError(f"{path}: unknown model format {suffix!r}")


def predict_all(model, images, batch_size: int = 64) -> np.ndarray:
    """Probabilities for every image, in batches: a Keras model or any classifier opened above."""
    if hasattr(model, "predict_on_batch"):  # a Keras model: float pixels in, probabilities out

        def predict(batch):
            return model.predict_on_batch(np.asarray(batch, dtype=np.float32))
    else:
        predict = model.predict
    out = [
        np.asarray(predict(np.asarray(images[i : i + batch_size])), dtype=np.float32)
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy; NaN for an empty split."""
    return float(np.mean(np.argmax(probs, axis=1) == labels)) if len(labels) else float("nan")


def split_probabilities(model, info, side: int | None = None, predict=predict_all) -> dict[str, np.ndarray]:
    """{split: probabilities} on every split of the data stage with photos, decoded at `side` (None: the data's),
    answered by `predict(model, images)`."""
    from guitar_distill.common.cache import load_split
    from guitar_distill.common.manifest import SPLITS

    return {s: predict(model, load_split(info, s, side)[0]) for s in SPLITS if info.split_rows(s)}


def split_accuracies(probs: dict[str, np.ndarray], info) -> dict[str, float]:
    """{"<split>_accuracy": top-1} of split_probabilities' answers."""
    return {f"{s}_accuracy": accuracy(p, info.labels(s)) for s, p in probs.items()}
