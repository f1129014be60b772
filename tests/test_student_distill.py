"""Student builder parity across Keras 3 and tf_keras, the distillation loss, smoke distillation."""
import json

import keras
import numpy as np
import pytest
import tf_keras

from distill.distiller import distillation_loss
from student.model import build_nin_student


def test_builder_is_identical_on_both_kerases():
    k3 = build_nin_student(5, 64, (8, 16, 32), dropout=0.3)
    k2 = build_nin_student(5, 64, (8, 16, 32), dropout=0.3, keras=tf_keras)
    assert [layer.name for layer in k3.layers] == [layer.name for layer in k2.layers]
    assert k3.count_params() == k2.count_params()
    weights = [w + np.random.default_rng(i).normal(0, 0.05, w.shape).astype(w.dtype)
               for i, w in enumerate(k3.get_weights())]
    k3.set_weights(weights)
    k2.set_weights(k3.get_weights())
    x = np.random.default_rng(0).uniform(0, 255, (3, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(k3.predict(x, verbose=0), k2.predict(x, verbose=0), atol=1e-5)


def test_student_shape_and_no_dense_layers():
    model = build_nin_student(11, 224, (32, 64, 128))
    assert model.output_shape == (None, 11)
    assert not any(isinstance(layer, keras.layers.Dense) for layer in model.layers)
    probs = model.predict(np.full((1, 224, 224, 3), 128, np.uint8), verbose=0)
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)


def numpy_reference(labels, s, t, temperature, hard_weight, soft_weight):
    def log_softmax(z):
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    hard = -log_softmax(s)[np.arange(len(labels)), labels].mean()
    pt, log_pt, log_ps = np.exp(log_softmax(t / temperature)), log_softmax(t / temperature), log_softmax(s / temperature)
    kl = (pt * (log_pt - log_ps)).sum(axis=1).mean()
    return hard_weight * hard + soft_weight * temperature**2 * kl, hard, kl


@pytest.mark.parametrize("temperature,hard_weight,soft_weight",
                         [(1.0, 1.0, 0.0), (4.0, 0.0, 1.0), (4.0, 0.5, 0.5), (10.0, 0.1, 0.9)])
def test_distillation_loss_matches_numpy(temperature, hard_weight, soft_weight):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 16)
    s, t = rng.normal(0, 3, (16, 7)).astype(np.float32), rng.normal(0, 3, (16, 7)).astype(np.float32)
    expected, hard, kl = numpy_reference(labels, s.astype(np.float64), t.astype(np.float64),
                                         temperature, hard_weight, soft_weight)
    got = float(distillation_loss(labels, s, t, temperature, hard_weight, soft_weight))
    assert got == pytest.approx(expected, rel=1e-5)
    if hard_weight == 0.0:
        assert got == pytest.approx(temperature**2 * kl, rel=1e-5)  # the T^2 factor
    if soft_weight == 0.0:
        assert got == pytest.approx(hard, rel=1e-5)


def test_loss_is_zero_kl_when_student_copies_teacher():
    t = np.random.default_rng(1).normal(0, 2, (4, 5)).astype(np.float32)
    labels = np.zeros(4, int)
    assert float(distillation_loss(labels, t, t, 3.0, 0.0, 1.0)) == pytest.approx(0.0, abs=1e-6)


def test_smoke_distillation_on_real_photos(smoke_artifacts):
    metrics = json.loads((smoke_artifacts / "distill" / "metrics.json").read_text())
    assert metrics["model"] == "nin_from_resnet50" and metrics["steps_run"] == 2
    for key in ("test_accuracy", "teacher_test_accuracy", "test_agreement_with_teacher", "no_kd_test_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0
    for name in ("model.keras", "best.weights.h5", "history.csv", "curves.png", "config.json", "labels.txt"):
        assert (smoke_artifacts / "distill" / name).exists()
