"""A Keras classifier as ONNX and TFLite files, each described (model.json, labels.txt) and measured against
the Keras model in its own runtime. The export stage and `gd.export` both convert through here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from guitar_distill.common.artifacts import write_bytes
from guitar_distill.common.config import Export
from guitar_distill.common.layout import FORMATS
from guitar_distill.common.progress import console
from guitar_distill.export.describe import describe_model_file

# Every format a trained model converts to; quantisation-aware training (tflite_qat_int8) is the export stage's.
POST_TRAINING = tuple(f.name for f in FORMATS.values() if f.extension != "keras" and not f.student_only)


def convert_model(
    model, name: str, formats, path_of: Callable[[str], Path], calibration: np.ndarray, opset: int, saved: Path
) -> dict[str, Path]:
    """`model` in each post-training format of `formats`, at `path_of(format)`; {format: path}. An int8 ONNX
    file is quantised from the float32 one, made beside it when it was not asked for."""
    from guitar_distill.export.convert import export_onnx, export_saved_model, onnx_int8, tflite_from_saved_model

    unknown = [f for f in formats if f not in POST_TRAINING]
    if unknown:
        from guitar_distill.common.errors import ToolkitError

        raise ToolkitError(f"formats {unknown}: unknown; choose from {', '.join(POST_TRAINING)}")
    console.print(f"[{name}] {', '.join(formats)} ({len(calibration)} calibration photos)")
    model(np.asarray(calibration[:1], np.float32))  # Keras' ONNX export needs a model that has been called
    paths = {}
    if {"onnx_fp32", "onnx_int8"} & set(formats):
        fp32 = export_onnx(model, path_of("onnx_fp32"), opset)
        if "onnx_int8" in formats:
            paths["onnx_int8"] = onnx_int8(fp32, path_of("onnx_int8"), calibration)
        if "onnx_fp32" in formats:
            paths["onnx_fp32"] = fp32
    tflite = [f for f in formats if f.startswith("tflite_")]
    if tflite:
        saved_model = export_saved_model(model, saved)
        for fmt in tflite:
            precision = fmt.removeprefix("tflite_")
            paths[fmt] = write_bytes(path_of(fmt), tflite_from_saved_model(saved_model, precision, calibration))
    return {f: paths[f] for f in formats}


def describe_and_measure(
    name: str, model, paths: dict[str, Path], source: dict, classes: list[str], val_x, val_y
) -> dict:
    """model.json and labels.txt beside every file, and each file against the Keras model on validation."""
    from guitar_distill.common.models import network_cost
    from guitar_distill.common.runtimes import predict_all
    from guitar_distill.export.parity import measure

    keras_probs, network, size = predict_all(model, val_x), network_cost(model), int(model.input_shape[1])
    results = {}
    for fmt, path in paths.items():
        describe_model_file(path, fmt, size, classes, network, source, input_dtype=FORMATS[fmt].input_dtype)
        results[fmt] = {
            **measure(path, val_x, val_y, keras_probs),
            "file": str(path.relative_to(path.parents[2])),
            "bytes": path.stat().st_size,
        }
        console.print(
            f"[{name}] {fmt}: agreement {results[fmt]['agreement']:.4f}, "
            f"accuracy change {results[fmt]['accuracy_change']:+.4f}"
        )
    return results


def gate_all(results: dict, files: dict, ecfg: Export) -> None:
    """Quantised files must agree with Keras often enough; float32 files must give nearly its probabilities.
    `results` and `files` are keyed (model name, format)."""
    from guitar_distill.export.parity import gate

    for (name, fmt), r in results.items():
        if FORMATS[fmt].quantised:
            gate(f"{name}/{fmt}", files[(name, fmt)], r, ecfg.quantised_min_agreement)
        else:
            gate(f"{name}/{fmt}", files[(name, fmt)], r, ecfg.parity_min_agreement, ecfg.parity_max_prob_diff)
