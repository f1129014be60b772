"""Helpers over built models: logits views, loading saved stage models."""
from __future__ import annotations

from pathlib import Path

import keras

from common.artifacts import require


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
    import teacher.model  # noqa: F401  registers the teacher's preprocessing layer

    return keras.saving.load_model(path, compile=False)


def load_stage_model(artifacts: Path, stage: str, hint: str) -> keras.Model:
    return load_model_file(require(Path(artifacts) / stage / "model.keras", f"{stage} model", hint))
