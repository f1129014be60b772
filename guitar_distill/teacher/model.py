"""ResNet50 + Flatten + Dense softmax, as the write-up built it, with ImageNet preprocessing inside."""

from __future__ import annotations

from pathlib import Path

import keras

from guitar_distill.common.layers import CaffePreprocess, with_training_layers
from guitar_distill.common.layout import TEACHER_MODEL

HEADS = ("flatten", "avg")


def build_teacher(
    num_classes: int,
    input_size: int = 224,
    weights: str | None = None,
    zero_init_residual: bool = False,
    head: str = "flatten",
) -> keras.Model:
    """`weights`: "imagenet" (Keras download), None/"none" (from scratch) or a local weights file
    for the no-top ResNet50 (e.g. resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5).

    `zero_init_residual` (from scratch only) starts the last BN gamma of every residual block at
    zero, so each block begins as the identity (Goyal et al. 2017): deep nets from scratch train
    sooner with it.

    `head`: "flatten" (the write-up's Flatten + Dense, tied to one input size) or "avg" (global
    average pooling + Dense: the same weights test and fine-tune at any resolution).
    """
    if head not in HEADS:
        raise ValueError(f"teacher head {head!r}: use one of {', '.join(HEADS)}")
    if weights in ("none", "None", ""):
        weights = None
    if weights not in (None, "imagenet"):
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"ResNet50 weights file not found: {path}")
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = CaffePreprocess(name="preprocess")(inputs)
    try:
        base = keras.applications.ResNet50(include_top=False, weights=weights, input_tensor=x)
    except (ValueError, OSError) as e:
        if weights in (None, "imagenet"):
            raise
        raise ValueError(f"{weights}: not no-top ResNet50 weights for a {input_size}px input ({e})") from e
    if zero_init_residual and weights is None:
        for layer in base.layers:
            if layer.name.endswith("_3_bn"):  # convN_blockM_3_bn: the block's last BN before the add
                layer.gamma.assign(keras.ops.zeros_like(layer.gamma))
    if head == "flatten":
        x = keras.layers.Flatten(name="flatten")(base.output)
    else:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(base.output)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
    # Keras 3's batch norm trains in several element-wise passes, the fused kernel in one; oneDNN's strided
    # 1x1 convolutions are slow at odd map sizes, a subsample and a stride-1 one are not (common/layers.py).
    return with_training_layers(keras.Model(inputs, outputs, name=TEACHER_MODEL))


LAST_CONV_LAYER = "conv5_block3_out"
