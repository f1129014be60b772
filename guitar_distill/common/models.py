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

    Students end in a Softmax layer (or Activation("softmax")), so this is a view sharing every weight.
    The teacher ends in Dense(softmax), as the write-up built it; its view ends in a linear copy of it.
    """
    last = model.layers[-1]
    softmax_activation = isinstance(last, keras.layers.Activation) and last.get_config()["activation"] == "softmax"
    if isinstance(last, keras.layers.Softmax) or softmax_activation:
        return keras.Model(model.inputs, last.input, name=f"{model.name}_logits")
    if isinstance(last, keras.layers.Dense) and last.get_config()["activation"] == "softmax":
        linear = keras.layers.Dense.from_config({**last.get_config(), "activation": "linear", "name": "logits"})
        outputs = linear(last.input)
        linear.set_weights(last.get_weights())
        return keras.Model(model.inputs, outputs, name=f"{model.name}_logits")
    raise ValueError(f"{model.name}: last layer {last.name} is not a softmax")


def check_classifier(model, where: str, num_classes: int | None = None, input_size: int | None = None):
    """`model` if it keeps the toolkit's contract: one RGB image input (any side, or `input_size`), class
    probabilities out of a final softmax (for `num_classes`); otherwise an error saying what is wrong."""
    from guitar_distill.common.errors import ToolkitError

    if not isinstance(model, keras.Model):
        raise ToolkitError(f"{where}: expected a Keras model, got {type(model).__name__}")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        counts = f"{len(model.inputs)} and {len(model.outputs)}"
        raise ToolkitError(f"{where}: a classifier takes one input and gives one output, not {counts}")
    shape, out = tuple(model.inputs[0].shape), tuple(model.outputs[0].shape)
    side_ok = input_size is None or shape[1] in (None, input_size)
    if len(shape) != 4 or shape[-1] != 3 or shape[1] != shape[2] or not side_ok:
        wanted = f"(None, {input_size}, {input_size}, 3)" if input_size else "(None, side, side, 3)"
        raise ToolkitError(f"{where}: input shape {shape}, expected RGB images {wanted}")
    if len(out) != 2 or (num_classes and out[-1] != num_classes):
        raise ToolkitError(f"{where}: output shape {out}, expected (None, {num_classes or 'classes'}) probabilities")
    try:
        logits_model(model)
    except ValueError:
        raise ToolkitError(
            f"{where}: the last layer ({model.layers[-1].name}) is not a softmax; the toolkit distils, exports and "
            f"scores class probabilities, so end the model in keras.layers.Softmax or activation='softmax'"
        ) from None
    return model


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

    "float16" halves a released teacher's file (its weights are what later runs start from). A layer holding a
    weight past float16's range (a first batch norm's variance over raw pixels can be) stays float32 rather than
    hold an infinity; with `strict`, such a weight is an error naming it.
    """
    if all(layer.dtype_policy.name == dtype for layer in model.layers):
        return model
    too_big = float16_overflows(model) if dtype == "float16" else {}
    if too_big and strict:  # e.g. activations that grow past float16 too: the whole model has to stay float32
        name, big = next(iter(too_big.items()))
        raise ValueError(
            f"{name}: values up to {big:.3g} do not fit float16 (at most {np.finfo(np.float16).max:.0f}); "
            f"keep this model in float32"
        )
    config = model.get_config()
    retype_layers(config, dtype, keep=set(too_big))
    copy = model.__class__.from_config(config)
    copy.set_weights([np.asarray(w, dtype=np.float32) for w in model.get_weights()])
    return copy


def float16_overflows(model: keras.Model) -> dict[str, float]:
    """{layer name: its largest magnitude} of the layers, nested ones too, holding a weight past float16's range."""
    limit, found = float(np.finfo(np.float16).max), {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.update(float16_overflows(layer))
            continue
        big = max(
            (float(np.abs(keras.ops.convert_to_numpy(w)).max()) for w in layer.weights if np.prod(w.shape)), default=0.0
        )
        if big > limit:
            found[layer.name] = big
    return found


def retype_layers(config: dict, dtype: str, keep: set[str] = frozenset()) -> None:
    """Every layer of a functional model's config in `dtype` but those named in `keep`, through the models nested
    in it (an ensemble's)."""
    for layer in config["layers"]:
        if "layers" in layer["config"]:
            retype_layers(layer["config"], dtype, keep)
        elif layer["config"]["name"] not in keep:
            layer["config"]["dtype"] = dtype


def save_model(model: keras.Model, path: Path) -> Path:
    """model.keras written atomically: a stopped save never leaves half a file."""
    with atomic_path(path) as tmp:
        model.save(tmp)
    return Path(path)


def fixed_side(model: keras.Model, size: int) -> keras.Model:
    """A model that takes photos of any side as a copy taking `size` x `size` (the same weights): converters
    and the cost count need one side. A model with a side already is returned as it is."""
    if model.input_shape[1] is not None:
        return model
    copy = keras.models.clone_model(model, input_tensors=keras.Input((size, size, model.input_shape[-1])))
    copy.set_weights(model.get_weights())
    return copy


def count_macs(model) -> int:
    """Multiply-adds of one forward pass: convolutions and dense layers (what dominates a CNN), through the
    networks nested in it (an ensemble's members)."""
    macs = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            macs += count_macs(layer)
        elif isinstance(layer, keras.layers.Conv2D):
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
