"""Network-in-Network (Lin et al. 2013) sized for edge devices: mlpconv blocks, no dense layers."""

from __future__ import annotations

import keras as keras3

from guitar_distill.common.layers import FusedBatchNormalization

LAST_FEATURES = "last_features"  # output of the last mlpconv block before the classifier (Grad-CAM)


def build_nin_student(
    num_classes: int, input_size: int = 224, widths=(32, 64, 128), dropout: float = 0.25, keras=keras3
):
    """Raw RGB 0..255 in, class probabilities out.

    `keras` is the Keras module to build with: Keras 3 by default, or tf_keras (Keras 2), which
    tensorflow-model-optimization needs for quantisation-aware training. Both get the same layers,
    names and weight order, so weights copy across with `set_weights(get_weights())`. Keras 3 gets
    the fused batch-norm kernel for training (common/layers.py: the NiN's step about 1.5x faster).
    """
    L = keras.layers
    Norm = FusedBatchNormalization if keras is keras3 else L.BatchNormalization

    def conv_bn_relu(x, filters, kernel, stride, name):
        x = L.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = Norm(name=f"{name}_bn")(x)
        return L.ReLU(name=f"{name}_relu")(x)

    def mlpconv(x, filters, kernel, stride, name):
        x = conv_bn_relu(x, filters, kernel, stride, f"{name}_a")
        x = conv_bn_relu(x, filters, 1, 1, f"{name}_b")
        return conv_bn_relu(x, filters, 1, 1, f"{name}_c")

    inputs = L.Input((input_size, input_size, 3), name="image")
    x = L.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")(inputs)
    for i, width in enumerate(widths, start=1):
        # The first block strides by 2 (then pools): a 224 px photo is 56 px by the second block.
        x = mlpconv(x, width, 5 if i == 1 else 3, 2 if i == 1 else 1, f"mlpconv{i}")
        x = L.MaxPooling2D(3, strides=2, padding="same", name=f"pool{i}")(x)
        x = L.Dropout(dropout, name=f"dropout{i}")(x)
    # Classifier block: mlpconv whose last 1x1 convolution gives one map per class.
    x = conv_bn_relu(x, widths[-1], 3, 1, "classifier_a")
    x = conv_bn_relu(x, widths[-1], 1, 1, "classifier_b")
    x = L.Activation("linear", name=LAST_FEATURES)(x)
    x = L.Conv2D(num_classes, 1, name="class_maps")(x)
    x = L.GlobalAveragePooling2D(name="logits")(x)
    outputs = L.Softmax(name="probs", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="nin_student")


def build_mobilenet_v3_small(num_classes: int, input_size: int = 224, dropout: float = 0.2, alpha: float = 1.0):
    """Keras' MobileNetV3-Small (Howard et al. 2019) from scratch: raw RGB 0..255 in (its own rescaling),
    class probabilities out. `alpha` scales every layer's width.

    Its batch norms' moving averages move at the NiN's rate (momentum 0.99, Keras' default) instead of
    keras.applications' 0.999, which needs thousands of steps to forget its initial statistics: a student
    trained for a few hundred steps otherwise validates on statistics it never had (and answers one class).
    """
    model = keras3.applications.MobileNetV3Small(
        input_shape=(input_size, input_size, 3),
        alpha=alpha,
        weights=None,
        classes=num_classes,
        dropout_rate=dropout,
        include_preprocessing=True,
        classifier_activation="softmax",
        name="mobilenet_v3_small_student",
    )
    for layer in model.layers:
        if isinstance(layer, keras3.layers.BatchNormalization):
            layer.momentum = 0.99
    return model
