"""Which model files exist, and what each one costs: parameters and multiply-adds."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

KERAS_MODELS = {"teacher": "teacher", "student": "distill"}
FORMAT_ORDER = ("keras", "onnx_fp32", "onnx_int8", "tflite_fp32", "tflite_fp16", "tflite_dynamic_int8",
                "tflite_int8", "tflite_qat_int8")


@dataclass(frozen=True)
class ModelFile:
    model: str  # teacher | student
    fmt: str  # keras | onnx_fp32 | tflite_int8 | ...
    path: Path

    @property
    def runtime(self) -> str:
        return {"keras": "keras", "onnx": "onnxruntime"}.get(self.fmt.split("_")[0], "litert-xnnpack")


def find_model_files(artifacts: Path, models=None, formats=None) -> tuple[list[ModelFile], list[str]]:
    """Every model file present, in a stable order, plus a line for each expected one that is missing."""
    found, missing = [], []
    for model, stage in KERAS_MODELS.items():
        if models and model not in models:
            continue
        for fmt in FORMAT_ORDER:
            if formats and fmt not in formats:
                continue
            if fmt == "keras":
                path = Path(artifacts) / stage / "model.keras"
            else:
                ext = "onnx" if fmt.startswith("onnx") else "tflite"
                path = Path(artifacts) / "export" / model / fmt / f"model.{ext}"
            if path.exists():
                found.append(ModelFile(model, fmt, path))
            elif not (model == "teacher" and fmt == "tflite_qat_int8"):
                missing.append(f"{model}/{fmt}: {path} not found")
    return found, missing


def count_macs(model) -> int:
    """Multiply-adds of one forward pass: convolutions and dense layers (what dominates a CNN)."""
    import keras

    macs = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            c_in = layer.input.shape[-1]
            macs += h * w * kh * kw * (c_in // layer.groups) * c_out
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            _, h, w, c_out = layer.output.shape
            macs += h * w * layer.kernel_size[0] * layer.kernel_size[1] * c_out
        elif isinstance(layer, keras.layers.Dense):
            macs += int(np.prod(layer.input.shape[1:])) * layer.units
    return int(macs)


def all_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
