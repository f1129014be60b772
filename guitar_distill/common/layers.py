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


PROB_FLOOR = 1e-30  # float32 softmax can round a class to 0; log(0) would poison the KL term


@keras.saving.register_keras_serializable(package="guitar_distill")
class LogProbability(keras.layers.Layer):
    """log p, floored at PROB_FLOOR: an ensemble's mean probability as logits (softmax(log p) = p)."""

    def call(self, inputs):
        return keras.ops.log(keras.ops.maximum(keras.ops.cast(inputs, "float32"), PROB_FLOOR))

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="guitar_distill")
class HorizontalFlip(keras.layers.Layer):
    """The mirror image (width reversed), in every mode: a teacher's answers averaged over a photo and its
    mirror (test-time flip averaging) are part of the file, so stored outputs and exports get them too."""

    def call(self, inputs):
        return keras.ops.flip(inputs, axis=2)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="guitar_distill")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """BatchNormalization whose training step runs TensorFlow's fused kernel (FusedBatchNormV3).

    Keras 3 normalises a training batch with separate moments and element-wise ops, with float32
    casts around them under bfloat16: several passes over every activation, forward and backward.
    tf.keras used the fused kernel, one pass, which oneDNN runs natively in bfloat16; ResNet50's
    training step is mostly these passes on a CPU (reports/cpu_recipe.md, commit 1cc7e6d). The same
    weights, statistics and config as the Keras layer; inference, other backends, masks,
    synchronised or renormalised batch norm and non-NHWC inputs take Keras' own path.
    """

    def call(self, inputs, training=None, mask=None):
        if (
            not (training and self.trainable)
            or mask is not None
            or self.synchronized
            or self.renorm
            or keras.backend.backend() != "tensorflow"
            or len(inputs.shape) != 4
            or self.axis not in (-1, 3)
        ):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf  # only on the TensorFlow backend: the GPU kit's JAX machine has none

        channels = inputs.shape[-1]
        gamma = keras.ops.cast(self.gamma, "float32") if self.scale else tf.ones([channels])
        beta = keras.ops.cast(self.beta, "float32") if self.center else tf.zeros([channels])
        outputs, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=inputs,
            scale=gamma,
            offset=beta,
            mean=tf.zeros([0]),
            variance=tf.zeros([0]),
            epsilon=self.epsilon,
            data_format="NHWC",
            is_training=True,
        )
        # The kernel returns the batch variance with Bessel's correction; Keras tracks the biased one.
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:3]), "float32")
        variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return keras.ops.cast(outputs, self.compute_dtype)


@keras.saving.register_keras_serializable(package="guitar_distill")
class SubsampledPointwiseConv2D(keras.layers.Conv2D):
    """A strided 1x1 convolution whose training step keeps every s-th pixel, then convolves at stride 1.

    The output is the same: a 1x1 kernel at stride s reads only those pixels. oneDNN's bfloat16
    kernels run the strided form slowly on an odd map (ResNet50's stage-5 entry at 112 px reads 7x7)
    and the stride-1 form fast (reports/cpu_recipe.md has the timings). The subsampling is a 1x1 average
    pool, which oneDNN runs and differentiates cheaply (a strided slice's gradient, in Eigen, does not).
    Inference and other backends take Conv2D's own path, so exported files keep the strided convolution.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.kernel_size != (1, 1):
            raise ValueError(f"{self.name}: kernel {self.kernel_size}; only a 1x1 convolution can subsample first")

    def call(self, inputs, training=None):
        if not training or self.strides == (1, 1) or keras.backend.backend() != "tensorflow":
            return super().call(inputs)
        kept = keras.ops.average_pool(
            inputs, pool_size=1, strides=self.strides, padding="valid", data_format=self.data_format
        )
        outputs = keras.ops.conv(kept, self.kernel, strides=1, padding="valid", data_format=self.data_format)
        if self.use_bias:
            channels_last = self.data_format == "channels_last"
            outputs = outputs + keras.ops.reshape(self.bias, (1, 1, 1, -1) if channels_last else (1, -1, 1, 1))
        return outputs if self.activation is None else self.activation(outputs)


def is_strided_pointwise(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, keras.layers.Conv2D) and layer.kernel_size == (1, 1) and layer.strides != (1, 1)


def with_training_layers(
    model: keras.Model, fused_batch_norm: bool = True, subsampled_pointwise: bool = True
) -> keras.Model:
    """The same functional network and weights with every batch norm the fused layer (or Keras' own)
    and every strided 1x1 convolution the subsampling one (or Keras' own)."""

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, keras.layers.BatchNormalization):
            return (FusedBatchNormalization if fused_batch_norm else keras.layers.BatchNormalization).from_config(
                config
            )
        if is_strided_pointwise(layer):
            return (SubsampledPointwiseConv2D if subsampled_pointwise else keras.layers.Conv2D).from_config(config)
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy
