"""Keras 3 model -> SavedModel -> TFLite (fp32, fp16, dynamic-range int8, full int8) and ONNX (fp32, int8).

Keras 3 models do not go through `TFLiteConverter.from_keras_model`; the SavedModel written by
`model.export` does. ONNX comes from Keras' own exporter (tf2onnx underneath).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from guitar_distill.common.artifacts import atomic_path
from guitar_distill.common.layout import TFLITE_PRECISIONS


def export_saved_model(model, directory: Path) -> Path:
    """`model`'s inference pass as a SavedModel whose default signature the TFLite converter reads.

    Called with training=False explicitly: `model.export` leaves it unset, and the members of an ensemble
    teacher behind a Resizing layer were then traced in training mode (dropout, batch statistics), which
    TFLite cannot convert (keras.io's ExportArchive example sets it the same way)."""
    import keras

    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = keras.InputSpec(shape=model.input_shape, dtype=model.inputs[0].dtype)
    archive.add_endpoint("serve", lambda x: model(x, training=False), input_signature=[spec])
    archive.write_out(str(tmp), verbose=False)
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(tmp, directory)
    return directory


def _representative(images: np.ndarray):
    def gen():
        for img in images:
            yield [np.asarray(img, dtype=np.float32)[None]]

    return gen


def tflite_from_saved_model(saved_model: Path, precision: str, calibration: np.ndarray | None = None) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "dynamic_int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision == "int8":
        if calibration is None or not len(calibration):
            raise ValueError("full-integer int8 needs representative images")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8  # camera pixels go straight in
        converter.inference_output_type = tf.uint8
    elif precision != "fp32":
        raise ValueError(f"unknown TFLite precision {precision!r}; choose from {TFLITE_PRECISIONS}")
    return converter.convert()


def export_onnx(model, path: Path, opset: int) -> Path:
    import onnx

    with atomic_path(path) as tmp:
        model.export(str(tmp), format="onnx", opset_version=opset, verbose=False)
        onnx.checker.check_model(str(tmp))
    return Path(path)


class _Calibration:
    """onnxruntime's CalibrationDataReader over a uint8 image array."""

    def __init__(self, input_name: str, images: np.ndarray):
        self.items = iter([{input_name: np.asarray(img, dtype=np.float32)[None]} for img in images])

    def get_next(self):
        return next(self.items, None)

    def rewind(self):  # pragma: no cover - not used by MinMax calibration
        pass


def onnx_int8(fp32_path: Path, path: Path, calibration: np.ndarray) -> Path:
    """Static QDQ quantisation (uint8 activations, int8 per-channel weights) calibrated on real photos."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    input_name = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    with atomic_path(path.with_name("prepared.onnx")) as prepared, atomic_path(path) as tmp:
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(tmp),
            _Calibration(input_name, calibration),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
        )
        onnx.checker.check_model(str(tmp))
    path.with_name("prepared.onnx").unlink(missing_ok=True)
    return Path(path)
