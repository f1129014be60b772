"""Helpers over built models: logits views, loading saved stage models."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from guitar_distill.common.artifacts import atomic_path, require
from guitar_distill.common.layers import (
    FusedBatchNormalization,  # noqa: F401  registered for loading
)


def logits_model(model: keras.Model) -> keras.Model:
    """The same network ending before its softmax.

    Students end in a Softmax layer, so this is a view sharing every weight. The teacher ends in
    Dense(softmax), as the write-up built it; its view ends in a linear copy of that Dense.
    """
    last = model.layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return keras.Model(model.inputs, last.input, name=f"{model.name}_logits")
    if isinstance(last, keras.layers.Dense) and last.get_config()["activation"] == "softmax":
        linear = keras.layers.Dense.from_config({**last.get_config(), "activation": "linear", "name": "logits"})
        outputs = linear(last.input)
        linear.set_weights(last.get_weights())
        return keras.Model(model.inputs, outputs, name=f"{model.name}_logits")
    raise ValueError(f"{model.name}: last layer {last.name} is not a softmax")


def load_model_file(path: Path) -> keras.Model:
    return keras.saving.load_model(path, compile=False)


def load_stage_model(artifacts: Path, stage: str, hint: str) -> keras.Model:
    return load_model_file(require(Path(artifacts) / stage / "model.keras", f"{stage} model", hint))


def float32_copy(model: keras.Model) -> keras.Model:
    """The same network and weights with every layer computing in float32.

    A model trained under a mixed policy (bfloat16 on the cpu preset) keeps that policy in its
    saved config; ONNX has no mixed bfloat16/float16 arithmetic and TFLite's converters want
    float32 graphs to quantise from, so export works from this copy. A released float16 teacher
    (retyped_copy) trains and exports from it too.
    """
    return retyped_copy(model, "float32")


def retyped_copy(model: keras.Model, dtype: str, strict: bool = False) -> keras.Model:
    """The same network with every layer's variables and arithmetic in `dtype` ("float32" or "float16").

    "float16" halves a released teacher's file (its weights are what later runs start from); with
    `strict`, a weight past float16's range is an error naming it rather than an infinity.
    """
    if all(layer.dtype_policy.name == dtype for layer in model.layers):
        return model
    if dtype == "float16" and strict:  # an infinite weight would load as NaN answers: refuse, naming it
        limit = float(np.finfo(np.float16).max)
        for layer in model.layers:
            for w in layer.weights:
                values = np.abs(keras.ops.convert_to_numpy(w))
                big = float(values.max()) if values.size else 0.0
                if big > limit:
                    raise ValueError(
                        f"{layer.name} {w.name}: values up to {big:.3g} do not fit float16 "
                        f"(at most {limit:.0f}); keep this model in float32"
                    )
    config = model.get_config()
    for layer in config["layers"]:
        layer["config"]["dtype"] = dtype
    copy = model.__class__.from_config(config)
    copy.set_weights([np.asarray(w, dtype=np.float32) for w in model.get_weights()])
    return copy


def save_model(model: keras.Model, path: Path) -> Path:
    """model.keras written atomically: a stopped save never leaves half a file."""
    with atomic_path(path) as tmp:
        model.save(tmp)
    return Path(path)


def count_macs(model) -> int:
    """Multiply-adds of one forward pass: convolutions and dense layers (what dominates a CNN)."""
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


def network_cost(model: keras.Model) -> dict:
    """What one forward pass costs, written into every exported file's model.json: the exported
    files are this network, and a runtime file alone (the released teacher) cannot say it."""
    return {"parameters": int(model.count_params()), "macs": count_macs(model)}
