"""FixRes for the teacher (batch-norm statistics re-estimated at a test side, flip averaging) and the
learning-rate range test's reading."""

import keras
import numpy as np
import pytest

from guitar_distill.teacher.diagnose import lr_summary
from guitar_distill.teacher.fixres import at_resolution, predict_flip_averaged, reestimate_batch_norm


def test_reestimated_statistics_are_the_mean_over_batches():
    inputs = keras.Input((4, 4, 2))
    model = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.99)(inputs))
    rng = np.random.default_rng(0)
    images = np.concatenate([rng.normal(k, 1 + k, (8, 4, 4, 2)) for k in range(3)]).astype(np.float32)
    assert reestimate_batch_norm(model, images, batch_size=8) == 3
    layer = model.layers[-1]
    batches = images.reshape(3, -1, 2)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_mean), batches.mean(1).mean(0), rtol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_variance), batches.var(1).mean(0), rtol=1e-4)
    assert layer.momentum == 0.99  # restored
    with pytest.raises(ValueError, match="at least one batch"):
        reestimate_batch_norm(model, images[:4], batch_size=8)


def test_flip_averaging_is_the_mean_over_the_mirror():
    inputs = keras.Input((4, 4, 1))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs)))
    x = np.random.default_rng(1).random((3, 4, 4, 1)).astype(np.float32)
    expected = (model.predict_on_batch(x) + model.predict_on_batch(x[:, :, ::-1])) / 2
    np.testing.assert_allclose(predict_flip_averaged(model, x, batch_size=2), expected, rtol=1e-6)


@pytest.mark.slow  # builds ResNet50s
def test_an_average_pooling_teacher_tests_at_another_side_with_its_weights():
    from guitar_distill.teacher.model import build_teacher

    model = build_teacher(3, 32, head="avg")
    bigger = at_resolution(model, 48)
    assert bigger.input_shape == (None, 48, 48, 3)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), bigger.get_weights()))
    with pytest.raises(ValueError, match="Flatten head"):
        at_resolution(build_teacher(3, 32, head="flatten"), 48)


def test_the_range_test_reads_where_the_flat_loss_starts_to_rise():
    rates = np.geomspace(1e-4, 1, 50)
    losses = np.where(rates < 0.02, 1.0, 1.0 + 30 * (rates - 0.02))
    summary = lr_summary([{"learning_rate": float(r), "loss": float(v)} for r, v in zip(rates, losses)], smoothing=0)
    assert 0.02 < summary["rises_lr"] < 0.03 and summary["rises_lr"] < summary["diverged_lr"] < 0.05
