"""An ensemble teacher: the mean of its members' probabilities, one classifier file like any teacher."""

import json

import keras
import numpy as np
import pytest

from guitar_distill.common.models import load_model_file, logits_model, retyped_copy, save_model
from guitar_distill.student.model import build_nin_student
from guitar_distill.teacher.ensemble import build_ensemble


def test_an_ensemble_answers_the_mean_of_its_members_each_at_its_own_side(tmp_path):
    small, large = build_nin_student(3, 32, (8, 16, 32), 0.25), build_nin_student(3, 48, (8, 16, 32), 0.25)
    ensemble = build_ensemble([small, large])
    assert ensemble.input_shape == (None, 48, 48, 3)
    x = np.random.default_rng(0).integers(0, 256, (4, 48, 48, 3)).astype(np.float32)
    resized = keras.ops.convert_to_numpy(keras.layers.Resizing(32, 32)(x))
    mean = (small.predict_on_batch(resized) + large.predict_on_batch(x)) / 2
    np.testing.assert_allclose(ensemble.predict_on_batch(x), mean, atol=1e-6)
    # its logits are the mean's logarithm, so stored outputs and online distillation see the mean
    np.testing.assert_allclose(logits_model(ensemble).predict_on_batch(x), np.log(mean), atol=1e-5)
    loaded = load_model_file(save_model(ensemble, tmp_path / "ensemble.keras"))
    np.testing.assert_allclose(loaded.predict_on_batch(x), mean, atol=1e-6)
    half = retyped_copy(loaded, "float16")  # the release's form: every member's weights in float16
    assert {w.dtype for w in half.weights} == {"float16"}
    np.testing.assert_allclose(half.predict_on_batch(x), mean, atol=5e-3)
    # released and benchmarked as TFLite, rebuilt from the float16 file as --import-teacher does: every op, the
    # resizing included, has a TFLite kernel, and the members run in inference mode
    from guitar_distill.common.models import float32_copy
    from guitar_distill.common.runtimes import open_classifier
    from guitar_distill.export.convert import export_saved_model, tflite_from_saved_model

    saved = export_saved_model(float32_copy(half), tmp_path / "sm")
    (tmp_path / "ensemble.tflite").write_bytes(tflite_from_saved_model(saved, "fp32"))
    np.testing.assert_allclose(open_classifier(tmp_path / "ensemble.tflite").predict(x), mean, atol=5e-3)
    with pytest.raises(ValueError, match="two members"):
        build_ensemble([small])
    with pytest.raises(ValueError, match="different numbers of classes"):
        build_ensemble([small, build_nin_student(4, 32, (8, 16, 32), 0.25)])


def test_a_flip_averaged_teacher_answers_the_mean_over_each_photo_and_its_mirror_in_every_format(tmp_path):
    from guitar_distill.common.runtimes import open_classifier
    from guitar_distill.export.convert import export_saved_model, tflite_from_saved_model

    member = build_nin_student(3, 32, (8, 16, 32), 0.25)
    x = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3)).astype(np.float32)
    expected = (member.predict_on_batch(x) + member.predict_on_batch(x[:, :, ::-1])) / 2
    assert np.abs(member.predict_on_batch(x) - expected).max() > 1e-4  # the mirror answers differently
    flipped = load_model_file(save_model(build_ensemble([member], flip=True), tmp_path / "flip.keras"))
    np.testing.assert_allclose(flipped.predict_on_batch(x), expected, atol=1e-6)
    saved = export_saved_model(flipped, tmp_path / "sm")
    (tmp_path / "flip.tflite").write_bytes(tflite_from_saved_model(saved, "fp32"))
    np.testing.assert_allclose(open_classifier(tmp_path / "flip.tflite").predict(x), expected, atol=1e-5)


@pytest.mark.slow  # a data stage and the command in a subprocess
def test_the_ensemble_command_writes_a_teacher_folder_scored_on_every_split(tmp_path, photo_source):
    from conftest import run_stage

    common = ("--preset", "smoke", "--artifacts", str(tmp_path))
    run_stage("dataset", *common, "--source", str(photo_source))
    classes = (tmp_path / "data" / "labels.txt").read_text().split()
    members = [
        save_model(build_nin_student(len(classes), side, (8, 16, 32), 0.25), tmp_path / f"m{side}" / "model.keras")
        for side in (32, 40)
    ]
    # the second stands for a teacher run: its run and its records go with the ensemble (the release's teacher)
    (members[1].parent / "metrics.json").write_text(json.dumps({"model": "resnet50_teacher", "epochs_run": 3}))
    (members[1].parent / "history.csv").write_text("epoch,accuracy\n0,0.5\n")
    out = tmp_path / "ensemble"
    run_stage("teacher.ensemble", *common, "--members", *map(str, members), "--out", str(out), "--flip")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["image_size"] == 40 and [m["image_size"] for m in metrics["members"]] == [32, 40]
    assert metrics["flip_averaged"] is True
    assert "model" not in metrics["members"][0] and metrics["members"][1]["epochs_run"] == 3
    assert (out / "history.csv").read_text() == (members[1].parent / "history.csv").read_text()
    assert {"train_accuracy", "val_accuracy", "test_accuracy"} <= set(metrics)
    assert set(metrics["members_at_own_sides"]) == {"train_accuracy", "val_accuracy", "test_accuracy"}
    assert load_model_file(out / "model.keras").input_shape == (None, 40, 40, 3)
    assert (out / "labels.txt").read_text().split() == classes
    with pytest.raises(AssertionError, match="ensemble member not found"):
        run_stage(
            "teacher.ensemble",
            *common,
            "--members",
            str(members[0]),
            str(tmp_path / "nothing.keras"),
            "--out",
            str(out),
        )


def test_an_ensemble_releases_as_one_float16_teacher_file_imported_at_its_own_side(tmp_path):
    from guitar_distill.common.errors import ToolkitError
    from guitar_distill.export.release import release_teacher, released_teacher

    members = [build_nin_student(3, 32, (8, 16, 32), 0.25) for _ in range(2)]
    source = save_model(build_ensemble(members), tmp_path / "ensemble" / "model.keras")
    rows = [{"file": f"m{k}/model.keras", "image_size": 32, "val_accuracy": 0.5} for k in (0, 1)]
    released = release_teacher(source, {"val_accuracy": 0.6, "members": rows}, ["a", "b", "c"], tmp_path / "fp16")
    record = json.loads(released.with_name("model.json").read_text())
    assert record["weights_dtype"] == "float16" and record["source_run"]["members"] == rows
    assert record["network"]["parameters"] == sum(m.count_params() for m in members)
    assert released_teacher(released, 3, 32).input_shape == (None, 32, 32, 3)
    with pytest.raises(ToolkitError, match="an ensemble taking 32px photos, not 48px.*teacher_size=32"):
        released_teacher(released, 3, 48)
