"""Student builder parity across Keras 3 and tf_keras, the distillation loss, smoke distillation."""

import json
from dataclasses import replace

import keras
import numpy as np
import pytest
import tf_keras
from conftest import photo_stack, smoke_models, split_images

from guitar_distill.distill.distiller import distillation_loss
from guitar_distill.student.model import build_nin_student


def test_builder_is_identical_on_both_kerases():
    k3 = build_nin_student(5, 64, (8, 16, 32), dropout=0.3)
    k2 = build_nin_student(5, 64, (8, 16, 32), dropout=0.3, keras=tf_keras)
    assert [layer.name for layer in k3.layers] == [layer.name for layer in k2.layers]
    assert k3.count_params() == k2.count_params()
    weights = [
        w + np.random.default_rng(i).normal(0, 0.05, w.shape).astype(w.dtype) for i, w in enumerate(k3.get_weights())
    ]
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
    pt, log_pt, log_ps = (
        np.exp(log_softmax(t / temperature)),
        log_softmax(t / temperature),
        log_softmax(s / temperature),
    )
    kl = (pt * (log_pt - log_ps)).sum(axis=1).mean()
    return hard_weight * hard + soft_weight * temperature**2 * kl, hard, kl


@pytest.mark.parametrize(
    "temperature,hard_weight,soft_weight", [(1.0, 1.0, 0.0), (4.0, 0.0, 1.0), (4.0, 0.5, 0.5), (10.0, 0.1, 0.9)]
)
def test_distillation_loss_matches_numpy(temperature, hard_weight, soft_weight):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 16)
    s, t = rng.normal(0, 3, (16, 7)).astype(np.float32), rng.normal(0, 3, (16, 7)).astype(np.float32)
    expected, hard, kl = numpy_reference(
        labels, s.astype(np.float64), t.astype(np.float64), temperature, hard_weight, soft_weight
    )
    got = float(distillation_loss(labels, s, t, temperature, hard_weight, soft_weight))
    assert got == pytest.approx(expected, rel=1e-5)
    if hard_weight == 0.0:
        assert got == pytest.approx(temperature**2 * kl, rel=1e-5)  # the T^2 factor
    if soft_weight == 0.0:
        assert got == pytest.approx(hard, rel=1e-5)


def test_the_hard_term_takes_mixed_label_rows():
    """Rows for mixed photos: one-hot rows give the index loss; a half-half row, the mean of both classes' CE."""
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 5, 8)
    s, t = rng.normal(0, 2, (8, 5)).astype(np.float32), rng.normal(0, 2, (8, 5)).astype(np.float32)
    one_hot = np.eye(5, dtype=np.float32)[labels]
    by_index = float(distillation_loss(labels, s, t, 2.0, 0.7, 0.3))
    assert float(distillation_loss(one_hot, s, t, 2.0, 0.7, 0.3)) == pytest.approx(by_index, rel=1e-6)
    other = (labels + 1) % 5
    half = (one_hot + np.eye(5, dtype=np.float32)[other]) / 2
    both = (
        float(distillation_loss(labels, s, t, 1.0, 1.0, 0.0)) + float(distillation_loss(other, s, t, 1.0, 1.0, 0.0))
    ) / 2
    assert float(distillation_loss(half, s, t, 1.0, 1.0, 0.0)) == pytest.approx(both, rel=1e-6)


def test_loss_is_zero_kl_when_student_copies_teacher():
    t = np.random.default_rng(1).normal(0, 2, (4, 5)).astype(np.float32)
    labels = np.zeros(4, int)
    assert float(distillation_loss(labels, t, t, 3.0, 0.0, 1.0)) == pytest.approx(0.0, abs=1e-6)


@smoke_models
def test_smoke_distillation_on_real_photos(smoke_artifacts):
    metrics = json.loads((smoke_artifacts / "distill" / "metrics.json").read_text())
    assert metrics["model"] == "nin_student_distilled" and metrics["epochs_run"] == 2
    # Known answers: every figure recomputed from the saved models on the saved test split.
    from guitar_distill.common.models import load_model_file
    from guitar_distill.common.runtimes import predict_all

    x, y = split_images(smoke_artifacts, "test")
    student = predict_all(load_model_file(smoke_artifacts / "distill" / "model.keras"), x).argmax(1)
    teacher = predict_all(load_model_file(smoke_artifacts / "teacher" / "model.keras"), x).argmax(1)
    assert metrics["test_accuracy"] == pytest.approx(np.mean(student == y))
    assert metrics["teacher_test_accuracy"] == pytest.approx(np.mean(teacher == y))
    assert metrics["test_agreement_with_teacher"] == pytest.approx(np.mean(student == teacher))
    baseline = json.loads((smoke_artifacts / "baseline" / "metrics.json").read_text())
    assert metrics["no_kd_test_accuracy"] == baseline["test_accuracy"]
    for name in ("model.keras", "best.weights.h5", "history.csv", "curves.png", "config.json", "labels.txt"):
        assert (smoke_artifacts / "distill" / name).exists()


def test_online_and_offline_distillation_give_the_same_loss():
    """The stored log-probabilities of a teacher stand in for its logits: same loss on the same batch."""
    from guitar_distill.distill.distiller import Distiller
    from guitar_distill.distill.teacher_logits import log_probabilities

    keras.utils.set_random_seed(3)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, strides=2)(keras.layers.Rescaling(1 / 255)(inputs))
    teacher = keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(keras.layers.Flatten()(x)))
    student = build_nin_student(5, 16, (4, 8, 8))
    images = np.random.default_rng(0).uniform(0, 255, (6, 16, 16, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 4, 0])
    online = Distiller(student, teacher, 4.0, 0.3, 0.7)
    offline = Distiller(student, None, 4.0, 0.3, 0.7)
    stored = log_probabilities(teacher.predict(images, verbose=0))
    y_pred = online(images)
    loss_online = float(online.compute_loss(images, labels, y_pred))
    loss_offline = float(offline.compute_loss(images, (labels, stored), offline(images)))
    assert loss_online == pytest.approx(loss_offline, rel=1e-5)
    # and the soft term is really there: a confident other teacher gives another loss
    confident = (10 * np.eye(5)[[4, 3, 2, 1, 0, 4]]).astype(np.float32)
    assert float(offline.compute_loss(images, (labels, confident), y_pred)) > loss_offline + 0.5
    with pytest.raises(ValueError, match="offline distillation needs targets"):
        offline.compute_loss(images, labels, y_pred)


@smoke_models
def test_offline_distillation_stores_the_teachers_answers_for_the_stream(smoke_artifacts, tmp_path):
    import shutil

    from conftest import run_stage

    from guitar_distill.common.augment import AugmentedBatches
    from guitar_distill.common.runtimes import open_classifier
    from guitar_distill.distill.teacher_logits import log_probabilities

    artifacts = tmp_path / "artifacts"
    shutil.copytree(smoke_artifacts, artifacts, ignore=shutil.ignore_patterns("distill", "export", "edge"))
    common = ("--preset", "smoke", "--artifacts", str(artifacts), "--set", "distill.teacher_logits=offline")
    first = run_stage("distill", *common).stdout
    assert "teacher logits: " in first and "batches 0..3" in first  # 2 epochs x 2 batches
    metrics = json.loads((artifacts / "distill" / "metrics.json").read_text())
    assert metrics["teacher_logits"] == "offline" and metrics["epochs_run"] == 2

    folder = artifacts / "data" / "cache" / "teacher_logits"
    stream = np.load(folder / "stream.npy")
    feed = AugmentedBatches(*split_images(artifacts, "train"), batch_size=8, seed=1337)
    teacher = open_classifier(artifacts / "teacher" / "model.keras")
    for g in (0, 3):
        np.testing.assert_allclose(stream[g], log_probabilities(teacher.predict(feed[g][0])), atol=1e-4)

    # A rerun reuses the stored logits; a longer run only adds the missing batches.
    again = run_stage("distill", *common, "--fresh", "--max-epochs", "3").stdout
    assert "batches 4..5" in again and "batches 0.." not in again
    # Another teacher file invalidates them.
    other = run_stage(
        "distill", *common, "--fresh", "--set", f"distill.teacher={artifacts / 'baseline' / 'model.keras'}"
    )
    assert "made for another teacher or stream: rebuilding" in other.stdout


@smoke_models
def test_the_teacher_can_answer_the_corrupted_crops_the_student_sees(smoke_artifacts, tmp_path):
    """distill.teacher_sees = "corrupted": the stored target of a corrupted crop is the teacher's answer to that
    very crop (the student's corruption seeds), kept beside the clean stream; online, "clean" is refused."""
    import shutil

    from conftest import run_stage

    from guitar_distill.common.augment import AugmentedBatches, TrainingCorruption
    from guitar_distill.common.runtimes import open_classifier
    from guitar_distill.distill.teacher_logits import log_probabilities

    artifacts = tmp_path / "artifacts"
    shutil.copytree(smoke_artifacts, artifacts, ignore=shutil.ignore_patterns("distill", "export", "edge"))
    corrupt = ("--set", 'student.corrupt=["salt_and_pepper"]', "--set", "student.corrupt_probability=1")
    teacher_path = artifacts / "baseline" / "model.keras"  # the smoke teacher answers every crop alike
    common = ("--preset", "smoke", "--artifacts", str(artifacts), *corrupt, "--set", "distill.teacher_logits=offline")
    run_stage("distill", *common, "--set", "distill.teacher_sees=corrupted", "--set", f"distill.teacher={teacher_path}")
    (folder,) = (artifacts / "data" / "cache").glob("teacher_logits_corrupted_*")
    every = TrainingCorruption(["salt_and_pepper"], 1.0, (1, 3))
    noisy = AugmentedBatches(*split_images(artifacts, "train"), batch_size=8, seed=1337, corruption=every)
    clean = AugmentedBatches(*split_images(artifacts, "train"), batch_size=8, seed=1337)
    teacher = open_classifier(teacher_path)
    stream = np.load(folder / "stream.npy")
    np.testing.assert_allclose(stream[1], log_probabilities(teacher.predict(noisy[1][0])), atol=1e-4)
    assert np.abs(stream[1] - log_probabilities(teacher.predict(clean[1][0]))).max() > 1e-3


@smoke_models
def test_the_stored_teacher_answers_the_mixed_photos_the_student_trains_on(smoke_artifacts, tmp_path):
    """student.mix with stored outputs (function matching): the stream holds the teacher's answers to the very
    mixed photos, in a folder of its own, and the student trains on them with mixed label rows."""
    import json
    import shutil

    from conftest import run_stage

    from guitar_distill.common.augment import AugmentedBatches, BatchMixing
    from guitar_distill.common.runtimes import open_classifier
    from guitar_distill.distill.teacher_logits import log_probabilities

    artifacts = tmp_path / "artifacts"
    shutil.copytree(smoke_artifacts, artifacts, ignore=shutil.ignore_patterns("distill", "export", "edge"))
    teacher_path = artifacts / "baseline" / "model.keras"  # the smoke teacher answers every photo alike
    mix = ("--set", "student.mix=mixup", "--set", "student.mix_alpha=1.0", "--set", "distill.teacher_logits=offline")
    run_stage(
        "distill", "--preset", "smoke", "--artifacts", str(artifacts), *mix, "--set", f"distill.teacher={teacher_path}"
    )
    (folder,) = (artifacts / "data" / "cache").glob("teacher_logits_mixed_*")
    images, labels = split_images(artifacts, "train")
    classes = len(json.loads((artifacts / "data" / "summary.json").read_text())["classes"])
    mixed = AugmentedBatches(images, labels, batch_size=8, seed=1337, mixing=BatchMixing("mixup", 1.0, classes))
    plain = AugmentedBatches(images, labels, batch_size=8, seed=1337)
    teacher, stream = open_classifier(teacher_path), np.load(folder / "stream.npy")
    np.testing.assert_allclose(stream[1], log_probabilities(teacher.predict(mixed[1][0])), atol=1e-4)
    assert np.abs(stream[1] - log_probabilities(teacher.predict(plain[1][0]))).max() > 1e-3
    assert json.loads((artifacts / "distill" / "metrics.json").read_text())["epochs_run"] == 2


def test_online_distillation_refuses_clean_targets_for_corrupted_crops():
    """Online, the teacher sees the student's (corrupted) crop: a clean target cannot be had, so it is refused."""
    from guitar_distill.common.config import Distill, Student
    from guitar_distill.common.errors import ToolkitError
    from guitar_distill.distill.run import teacher_outputs

    noisy = Student(corrupt=("gaussian_noise",))
    with pytest.raises(ToolkitError, match="needs stored teacher outputs"):
        teacher_outputs(None, {}, "never-read.keras", noisy, Distill(teacher_logits="online"))


def test_distillation_warns_when_the_teacher_is_not_clearly_above_the_baseline():
    from guitar_distill.distill.run import teacher_against_baseline

    line, warns = teacher_against_baseline(0.641, {"val_accuracy": 0.692})
    assert warns and line.startswith("WARNING: teacher val 0.641 against the no-KD baseline's 0.692 (-0.051)")
    line, warns = teacher_against_baseline(0.80, {"val_accuracy": 0.70})
    assert not warns and line == "teacher val 0.800 against the no-KD baseline's 0.700 (+0.100)"
    assert teacher_against_baseline(0.72, {"val_accuracy": 0.70})[1]  # 2 points: not enough
    assert teacher_against_baseline(0.7, {}) == (
        "teacher val 0.700; no baseline run yet to compare (make baseline)",
        False,
    )
    assert teacher_against_baseline(0.7, None) == ("teacher val 0.700", False)  # gd.distill: no baseline stage


@smoke_models
def test_the_teacher_answers_the_students_crops_at_its_own_side(smoke_artifacts, tmp_path):
    """distill.teacher_size: the stored outputs are the teacher's for the very crops the student sees, cut
    from the photos decoded at the teacher's side (a crop's box scales with the photo)."""
    import keras
    from PIL import Image

    from guitar_distill.common.augment import AugmentedBatches, training_augmentation
    from guitar_distill.common.cache import load_split, load_splits
    from guitar_distill.common.config import apply_overrides, load_preset
    from guitar_distill.common.manifest import load_data_info
    from guitar_distill.distill.teacher_logits import log_probabilities, stored_stream

    inputs = keras.Input((None, None, 3))  # any side, like the average-pooling teacher
    x = keras.layers.Conv2D(4, 3, activation="relu")(keras.layers.Rescaling(1 / 255)(inputs))
    teacher = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x)))
    teacher.save(tmp_path / "teacher.keras")
    cfg = apply_overrides(load_preset("smoke"), ["student.augmentation=crop_flip", "distill.teacher_size=48"])
    scfg, dcfg = cfg.student, replace(cfg.distill, stored_epochs=1)
    info = load_data_info(smoke_artifacts)
    stored, period = stored_stream(info, load_splits(info), tmp_path / "teacher.keras", scfg, dcfg)
    assert period == 2 and stored.stream.shape == (2, 8, 3)  # one epoch of two batches, replayed
    seed, augment = scfg.seed, training_augmentation(scfg)
    at_48 = AugmentedBatches(*load_split(info, "train", 48), batch_size=8, seed=seed, augment=augment)
    at_32 = AugmentedBatches(*load_split(info, "train", 32), batch_size=8, seed=seed, augment=augment)
    np.testing.assert_allclose(stored.stream[1], log_probabilities(teacher.predict_on_batch(at_48[1][0])), atol=1e-5)
    val_48 = load_split(info, "val", 48)[0].astype(np.float32)
    np.testing.assert_allclose(stored.splits["val"], log_probabilities(teacher.predict_on_batch(val_48)), atol=1e-5)
    # distill.teacher_size 0: a teacher file that takes one side (a released one, at its best) is fed that side
    fixed = keras.models.clone_model(teacher, input_tensors=keras.Input((48, 48, 3)))
    fixed.set_weights(teacher.get_weights())
    fixed.save(tmp_path / "fixed.keras")
    own, _ = stored_stream(info, load_splits(info), tmp_path / "fixed.keras", scfg, replace(dcfg, teacher_size=0))
    np.testing.assert_allclose(own.stream[1], stored.stream[1], atol=1e-5)

    def shrunk(batch):
        return np.stack(
            [np.asarray(Image.fromarray(np.uint8(im)).resize((32, 32), Image.BILINEAR), float) for im in batch]
        )

    same = np.abs(shrunk(at_48[1][0]) - at_32[1][0]).mean()  # the same crops at two sides
    other = np.abs(shrunk(at_48[1][0]) - at_32[0][0]).mean()  # other photos and crops
    assert same < 0.4 * other, (same, other)


@pytest.mark.slow
def test_a_killed_distillation_resumes_to_the_uninterrupted_history(tmp_path, monkeypatch):
    """Offline distillation (stored teacher outputs, replayed with a period) killed mid-epoch and resumed: the
    same history as a run never stopped, as for the teacher and the baseline (tests/test_teacher.py)."""

    from guitar_distill.common.augment import AugmentedBatches
    from guitar_distill.common.config import load_preset
    from guitar_distill.common.training import fit_recipe
    from guitar_distill.distill.distiller import compiled_distiller

    images = photo_stack(["ES", "SG"], 6, 32)
    labels = np.repeat([0, 1], 6)
    scfg = replace(load_preset("full").student, steps_per_epoch=3, batch_size=4, max_epochs=4, seed=5)
    dcfg = load_preset("full").distill
    stored = np.log(np.random.default_rng(0).dirichlet(np.ones(2), (6, 4))).astype(np.float32)  # 2 epochs of targets
    val = (images[::3], (labels[::3], np.log(np.full((4, 2), 0.5, np.float32))))

    def run(folder, seed=0):
        keras.utils.set_random_seed(seed)
        student = build_nin_student(2, 32, (4, 8, 8))
        distiller = compiled_distiller(student, None, dcfg, scfg, 32)
        return fit_recipe(
            distiller,
            (images, labels),
            val,
            scfg,
            tmp_path / folder,
            weights_of=student,
            batch_targets=stored,
            stream_period=6,
        )

    straight = run("straight")
    real_getitem = AugmentedBatches.__getitem__

    def killed(self, i):
        if self.start_batch + i == 7:  # in the middle of epoch 3, a replayed one
            raise KeyboardInterrupt("simulated kill")
        return real_getitem(self, i)

    monkeypatch.setattr(AugmentedBatches, "__getitem__", killed)
    with pytest.raises(BaseException, match="simulated kill"):
        run("resumed")
    monkeypatch.setattr(AugmentedBatches, "__getitem__", real_getitem)
    resumed = run("resumed", seed=99)
    assert [r["epoch"] for r in resumed] == [1, 2, 3, 4]
    for a, b in zip(straight, resumed):
        for key in ("loss", "val_loss", "val_accuracy"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), (a, b)
