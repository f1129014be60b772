"""A teacher run starts from a saved teacher: Flatten -> average-pooling heads, and the TFLite unfold."""

import json

import keras
import numpy as np
import pytest
from conftest import smoke_models, split_images

from guitar_distill.common.augment import CropFlip, training_augmentation
from guitar_distill.common.layout import model_path
from guitar_distill.common.models import float32_copy, load_model_file, retyped_copy, save_model
from guitar_distill.teacher.model import build_teacher
from guitar_distill.teacher.warm_start import start_from_teacher


def randomised_teacher(size, head="flatten", classes=3, seed=0):
    """A teacher whose batch norms hold non-trivial statistics, so copying them is visible."""
    keras.utils.set_random_seed(seed)
    model = build_teacher(classes, size, None, head=head)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights(
                [rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n), rng.normal(0, 0.1, n), rng.uniform(0.5, 2.0, n)]
            )
    return model


@pytest.fixture(scope="module")
def saved_flatten_teacher(tmp_path_factory):
    model = randomised_teacher(32)
    path = tmp_path_factory.mktemp("teacher") / "model.keras"
    save_model(retyped_copy(model, "float16"), path)
    return model, path


@pytest.mark.slow  # builds ResNet50s
def test_flatten_teacher_starts_an_average_pooling_run_at_another_size(saved_flatten_teacher):
    source, path = saved_flatten_teacher
    target = build_teacher(3, 64, None, head="avg")
    info = start_from_teacher(target, path)
    assert info["source_head"] == "flatten" and info["source_image_size"] == 32
    for name in ("conv1_conv", "conv3_block2_2_bn", "conv5_block3_3_conv"):
        for a, b in zip(target.get_layer(name).get_weights(), source.get_layer(name).get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)  # float16 in the file
    flat_kernel = source.get_layer("predictions").get_weights()[0]  # (1 * 1 * 2048, 3) at 32 px
    np.testing.assert_allclose(
        target.get_layer("predictions").get_weights()[0], flat_kernel.reshape(-1, 2048, 3).sum(0), rtol=1e-3, atol=1e-3
    )


@pytest.mark.slow  # builds ResNet50s
def test_same_head_same_size_answers_as_the_source(saved_flatten_teacher):
    source, path = saved_flatten_teacher
    target = build_teacher(3, 32, None, head="flatten")
    start_from_teacher(target, path)
    x = np.random.default_rng(1).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(target.predict(x, verbose=0), source.predict(x, verbose=0), atol=2e-2)


@pytest.mark.slow  # builds ResNet50s
def test_an_ensemble_teacher_file_starts_a_run_from_its_resnet_member(tmp_path):
    from guitar_distill.common.models import count_macs
    from guitar_distill.student.model import build_nin_student
    from guitar_distill.teacher.ensemble import build_ensemble

    resnet, nin = randomised_teacher(32, head="avg"), build_nin_student(3, 32, (8, 16, 32), 0.25)
    ensemble = build_ensemble([resnet, nin])
    assert count_macs(ensemble) == count_macs(resnet) + count_macs(nin) > count_macs(resnet)  # the members' cost
    path = save_model(retyped_copy(ensemble, "float16"), tmp_path / "model.keras")
    target = build_teacher(3, 32, None, head="avg")
    info = start_from_teacher(target, path)
    assert info["source_image_size"] == 32 and info["source_head"] == "avg"
    x = np.random.default_rng(2).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(target.predict(x, verbose=0), resnet.predict(x, verbose=0), atol=2e-2)


@pytest.mark.slow  # builds ResNet50s
def test_a_run_carried_through_git_starts_a_teacher_run(tmp_path):
    from guitar_distill.common import carry
    from guitar_distill.common.config import as_dict, load_preset, replace_field

    run = tmp_path / "run"
    (run / "backup").mkdir(parents=True)
    source = randomised_teacher(48, head="avg")
    source.save_weights(run / "backup" / "latest.weights.h5")
    (run / "backup" / "training_metadata.json").write_text('{"epoch": 7, "batch": 0}')
    (run / "history.csv").write_text("epoch\n")
    config = replace_field(replace_field(load_preset("smoke"), "teacher.head", "avg"), "data.image_size", 48)
    (run / "config.json").write_text(json.dumps(as_dict(config)))
    carry.save_carry(run, tmp_path / "git")
    target = build_teacher(3, 32, None, head="avg")
    info = start_from_teacher(target, tmp_path / "git")
    assert info["source_image_size"] == 48 and info["source_head"] == "avg"
    for a, b in zip(target.get_weights(), source.get_weights(), strict=True):  # every layer's, float16 in the carry
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="do not fit a 5-class ResNet50"):
        start_from_teacher(build_teacher(5, 32, None, head="avg"), tmp_path / "git")
    # --import-teacher takes it too (the latency benchmark's ResNet50 reference): at its last side, or another
    from guitar_distill.export.release import released_teacher

    x = np.random.default_rng(3).uniform(0, 255, (2, 48, 48, 3)).astype(np.float32)
    imported = released_teacher(tmp_path / "git", 3, 0)
    assert imported.input_shape == (None, 48, 48, 3)
    np.testing.assert_allclose(imported.predict(x, verbose=0), source.predict(x, verbose=0), atol=2e-2)
    assert released_teacher(tmp_path / "git", 3, 32).input_shape == (None, 32, 32, 3)


@pytest.mark.slow  # builds ResNet50s
def test_mismatched_teachers_are_refused_with_the_reason(saved_flatten_teacher, tmp_path):
    _, path = saved_flatten_teacher
    with pytest.raises(ValueError, match="teacher.head"):
        start_from_teacher(build_teacher(3, 64, None, head="flatten"), path)
    with pytest.raises(ValueError, match="3 classes; this run has 5"):
        start_from_teacher(build_teacher(5, 32, None, head="avg"), path)
    with pytest.raises(FileNotFoundError, match="nope.keras"):
        start_from_teacher(build_teacher(3, 32, None), tmp_path / "nope.keras")


@smoke_models
def test_unfolded_tflite_teacher_answers_as_the_file_and_trains_like_it(exported):
    from guitar_distill.common.runtimes import open_classifier
    from guitar_distill.export.unfold import unfolded_teacher

    tflite = model_path(exported, "teacher", "tflite_fp32")
    images, _ = split_images(exported, "train")
    model = unfolded_teacher(tflite, np.asarray(images))
    x = np.asarray(images, dtype=np.float32)
    expected = open_classifier(tflite).predict(x)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-4)
    keras_teacher = load_model_file(model_path(exported, "teacher", "keras"))
    np.testing.assert_allclose(float32_copy(keras_teacher).predict(x, verbose=0), expected, atol=1e-4)
    # The batch norms' training-mode statistics are those of these photos: training-mode answers
    # stay those of the file (a fresh BN, gamma 1 and beta 0, would not).
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x, training=True)), expected, atol=2e-2)
    # Two smoke steps leave activations growing through the blocks past float16's range (means of
    # 1e6 and more): their identity batch norms cannot be float16, and the release format says so
    # instead of writing infinities (a trained teacher's fit: see the randomised teacher above).
    with pytest.raises(ValueError, match="do not fit float16"):
        retyped_copy(model, "float16", strict=True)


def test_crop_flip_is_seeded_and_a_whole_photo_crop_is_the_photo_or_its_mirror():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 24, 24, 3), dtype=np.uint8)
    whole = CropFlip(scale=(1.0, 1.0), ratio=(1.0, 1.0))(images, seed=5)
    mirrored = [np.array_equal(out, img[:, ::-1]) for out, img in zip(whole, images)]
    same = [np.array_equal(out, img) for out, img in zip(whole, images)]
    assert all(m or s for m, s in zip(mirrored, same)) and 3 <= sum(mirrored) <= 13
    crop = CropFlip()
    np.testing.assert_array_equal(crop(images, seed=9), crop(images, seed=9))
    assert not np.array_equal(crop(images, seed=9), crop(images, seed=10))
    for _ in range(200):
        x0, y0, x1, y1 = crop.box(rng, 60, 80)
        assert 0 <= x0 < x1 <= 80 and 0 <= y0 < y1 <= 60
        assert 0.35 * 4800 * 0.999 <= (x1 - x0) * (y1 - y0) <= 4800 * 1.001


def test_augmentation_names_are_checked():
    from guitar_distill.common.config import apply_overrides, load_preset
    from guitar_distill.common.errors import ToolkitError

    cfg = load_preset("smoke")
    flips = apply_overrides(cfg, ["student.augmentation=crop_flip", "student.crop_scale=[0.5, 1.0]"]).student
    assert isinstance(training_augmentation(flips), CropFlip) and training_augmentation(flips).scale == (0.5, 1.0)
    with pytest.raises(ToolkitError, match="augmentation = 'rotate': use one of 'seed', 'crop_flip'"):
        apply_overrides(cfg, ["student.augmentation=rotate"])
    with pytest.raises(ValueError, match="crop scale"):
        CropFlip(scale=(0.0, 1.0))
