"""model.json: what a model file is, written beside every exported and released model the same way."""

from __future__ import annotations

from pathlib import Path

from guitar_distill.common.artifacts import sha256_file, write_json, write_labels


def model_json(
    path: Path, fmt: str, size: int, classes: list[str], network: dict, source: dict, input_dtype="float32", **extra
) -> dict:
    """The description of the model file at `path`: its input (RGB 0..255, a batch of any size for ONNX and
    Keras, of one for TFLite), its output, its classes, its cost and the run it came from."""
    return {
        "file": path.name,
        "format": fmt,
        "input": {
            "shape": [None if fmt.startswith(("onnx", "keras")) else 1, size, size, 3],
            "dtype": input_dtype,
            "range": [0, 255],
            "layout": "NHWC, RGB",
        },
        "output": {"shape": [None, len(classes)], "meaning": "class probabilities in labels.txt order"},
        "classes": classes,
        "preprocessing": "inside the graph: feed RGB pixels 0..255 resized (squashed) to the input size; "
        "no mean subtraction or scaling by the caller",
        "network": network,
        "source_run": source,
        **extra,
        "sha256": sha256_file(path),
    }


def describe_model_file(
    path: Path, fmt: str, size: int, classes: list[str], network: dict, source: dict, **extra
) -> dict:
    """model.json and labels.txt beside `path`; returns the description."""
    meta = model_json(path, fmt, size, classes, network, source, **extra)
    write_json(path.with_name("model.json"), meta)
    write_labels(path.parent, classes)
    return meta
