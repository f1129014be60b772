"""FixRes for the teacher (batch-norm statistics re-estimated at a test side, flip averaging) and the
learning-rate range test's reading."""

import json

import keras
import numpy as np
import pytest

from guitar_distill.teacher.diagnose import best_side, lr_summary
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


def test_the_best_side_is_the_best_single_pass_validation_and_a_tie_keeps_the_simpler():
    rows = [
        {"size": 160, "as_is": 0.70, "reestimated": 0.71, "as_is_flip": 0.99, "reestimated_flip": 0.99},
        {"size": 176, "as_is": 0.69, "reestimated": 0.72, "as_is_flip": 0.99, "reestimated_flip": 0.99},
    ]
    assert best_side(rows) == (176, "reestimated")  # flip averaging is two passes: not what a student's target is
    rows[0]["as_is"] = 0.72
    assert best_side(rows) == (160, "as_is")


@pytest.mark.slow  # builds ResNet50s and runs four stages
def test_a_teacher_saved_at_its_best_side_is_imported_and_scored_there(tmp_path, photo_source):
    """diagnose --save-best writes the teacher at the side and statistics its validation row chose; the TFLite
    import takes distill.teacher_size, and the accuracy benchmark feeds that file photos at its own side."""
    from conftest import run_stage

    from guitar_distill.common.models import save_model
    from guitar_distill.common.runtimes import open_classifier
    from guitar_distill.teacher.model import build_teacher

    common = ("--preset", "smoke", "--artifacts", str(tmp_path))
    run_stage("dataset", *common, "--source", str(photo_source))
    classes = (tmp_path / "data" / "labels.txt").read_text().split()
    source = save_model(build_teacher(len(classes), 32, head="avg"), tmp_path / "trained" / "model.keras")
    fixed = tmp_path / "fixed"
    diagnose = ("--teacher", str(source), "--sizes", "32", "40", "--skip", "fit", "--lr-steps", "0")
    run_stage("teacher.diagnose", *common, *diagnose, "--bn-photos", "16", "--save-best", str(fixed))
    rows = json.loads((tmp_path / "diagnose" / "diagnosis.json").read_text())["resolution"]
    side, stats = best_side(rows)
    metrics = json.loads((fixed / "metrics.json").read_text())
    assert metrics["fixres"]["image_size"] == side and metrics["fixres"]["batch_norm"] == stats
    val_photos = sum(c["val"] for c in json.loads((tmp_path / "data" / "summary.json").read_text())["counts"].values())
    chosen = next(r[stats] for r in rows if r["size"] == side)
    assert abs(metrics["val_accuracy"] - chosen) <= 1 / val_photos + 1e-9  # one photo: a random net's near ties
    assert keras.saving.load_model(fixed / "model.keras").input_shape == (None, side, side, 3)
    assert (fixed / "labels.txt").read_text().split() == classes

    imported = ("--import-teacher", "--teacher-file", str(fixed / "model.keras"), "--set", "distill.teacher_size=40")
    run_stage("export.release", *common, *imported)
    assert open_classifier(tmp_path / "export" / "teacher" / "tflite_fp32" / "model.tflite").size == 40
    run_stage("benchmarks.accuracy", *common, "--models", "teacher")  # 40 px files, 32 px data: no shape error
    scored = json.loads((tmp_path / "bench" / "accuracy.json").read_text())["results"]
    assert set(scored) == {"teacher/tflite_fp32", "teacher/tflite_fp16"}
