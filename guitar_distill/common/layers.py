"""Custom layers that saved models contain: registered here, below every stage, so that loading a
.keras file needs no stage package."""
from __future__ import annotations

import keras

IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="guitar_distill")
class CaffePreprocess(keras.layers.Layer):
    """keras.applications.resnet50.preprocess_input as a layer: RGB 0..255 -> BGR minus ImageNet mean.

    Built from slices and a concat (not a reverse op) so that it converts and quantises everywhere.
    """

    def call(self, inputs):
        x = keras.ops.cast(inputs, self.compute_dtype)
        bgr = keras.ops.concatenate([x[..., 2:3], x[..., 1:2], x[..., 0:1]], axis=-1)
        return bgr - keras.ops.convert_to_tensor(IMAGENET_BGR_MEAN, dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape
