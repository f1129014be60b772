"""Quantisation-aware training of the student with tensorflow-model-optimization.

tfmot needs Keras 2 (tf_keras): the shared builder makes the identical network there, the
Keras 3 weights are copied in, and the quantised copy is fine-tuned against the teacher's
soft targets before conversion to a full-integer TFLite model.
"""

from __future__ import annotations

import numpy as np

from guitar_distill.common.config import Export, Student


def qat_tflite(
    student, student_cfg: Student, images: np.ndarray, teacher_probs: np.ndarray, cfg: Export, seed: int
) -> bytes:
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    from guitar_distill.student.model import build_nin_student

    twin = build_nin_student(
        student.output_shape[-1],
        student.input_shape[1],
        student_cfg.widths,
        student_cfg.dropout,
        keras=tf_keras,
    )
    twin.set_weights(student.get_weights())
    quantize = tfmot.quantization.keras

    def annotate(layer):
        # Rescaling has no quantised kernel; it stays float and the input quantiser follows it.
        if isinstance(layer, tf_keras.layers.Rescaling):
            return layer
        return quantize.quantize_annotate_layer(layer)

    # Wrapping the twin's own layers keeps their weights; quantize_apply copies them over.
    qat = quantize.quantize_apply(tf_keras.models.clone_model(twin, clone_function=annotate))
    qat.compile(
        optimizer=tf_keras.optimizers.SGD(cfg.qat_learning_rate, momentum=0.9),
        loss=tf_keras.losses.KLDivergence(),
    )
    rng = np.random.default_rng(seed)
    steps, batch = cfg.qat_steps_per_epoch, student_cfg.batch_size

    def batches():
        while True:
            idx = rng.integers(0, len(images), batch)
            yield np.asarray(images[idx], dtype=np.float32), teacher_probs[idx]

    qat.fit(batches(), steps_per_epoch=steps, epochs=cfg.qat_epochs, verbose=2)
    converter = tf.lite.TFLiteConverter.from_keras_model(qat)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    # The float Rescaling at the input has no fake-quant range of its own: a few real photos
    # give it one, so the model takes uint8 pixels like the post-training int8 model.
    converter.representative_dataset = lambda: ([np.asarray(img, np.float32)[None]] for img in images[:64])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    return converter.convert()
