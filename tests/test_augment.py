"""Augmentation and the batch feeder, under TensorFlow here and under JAX in a subprocess."""

import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from conftest import photo_stack, slow_fixture

from guitar_distill.common.augment import AugmentedBatches
from guitar_distill.common.config import Phase, apply_overrides, load_preset
from guitar_distill.common.errors import ToolkitError

FEEDER_CHECK = """
import numpy as np, keras, sys
sys.path.insert(0, "tests")
from conftest import photo_stack
from guitar_distill.common.augment import AugmentedBatches
images = photo_stack(["ES"], 6, 48)
feed = AugmentedBatches(images, np.arange(6), batch_size=4, seed=3)
x, y = feed[0]
assert x.shape == (4, 48, 48, 3) and x.dtype == np.float32, x.shape
assert 0 <= x.min() and x.max() <= 255
assert np.array_equal(feed[0][0], x)
print(keras.backend.backend(), float(x.mean()))
"""


@slow_fixture(scope="module")
def images():
    return photo_stack(["ES"], 6, 48)


def test_batches_are_seeded_pure_functions_of_the_index(images):
    feed = AugmentedBatches(images, np.arange(6), batch_size=4, seed=3)
    x0, y0 = feed[0]
    assert x0.shape == (4, 48, 48, 3) and x0.dtype == np.float32 and y0.shape == (4,)
    assert 0.0 <= x0.min() and x0.max() <= 255.0
    again = AugmentedBatches(images, np.arange(6), batch_size=4, seed=3)
    assert np.array_equal(again[0][0], x0)
    assert not np.array_equal(feed[1][0][:2], x0[:2])
    resumed = AugmentedBatches(images, np.arange(6), batch_size=4, seed=3, start_batch=5)
    assert np.array_equal(resumed[0][0], feed[5][0])
    other_seed = AugmentedBatches(images, np.arange(6), batch_size=4, seed=4)
    assert not np.array_equal(other_seed[0][0], x0)


def test_every_photo_is_seen_once_per_pass(images):
    feed = AugmentedBatches(images, np.arange(6), batch_size=4, seed=0, augment=False)
    seen = np.concatenate([feed[i][1] for i in range(3)])  # 12 = two passes of 6
    assert sorted(seen[:6]) == list(range(6)) and sorted(seen[6:]) == list(range(6))
    x, y = feed[0]
    assert np.array_equal(x, images[y].astype(np.float32))  # no augmentation: the photos themselves


def test_augmentation_changes_geometry_not_range(images):
    feed = AugmentedBatches(images, np.arange(6), batch_size=6, seed=1)
    x, y = feed[0]
    assert not np.array_equal(x, images[y].astype(np.float32))
    assert abs(x.mean() - images.mean()) < 40  # 'nearest' fill: no black borders dragging the mean


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_feeder_runs_under_backend(backend):
    pytest.importorskip(backend)
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", FEEDER_CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[0] == backend


NO_DEVICE_CHECK = """
import numpy as np, sys
sys.path.insert(0, "tests")
from conftest import photo_stack
from guitar_distill.common.augment import AugmentedBatches, CropFlip, SeedAugmentation
images = photo_stack(["ES"], 6, 48)
for augment in (SeedAugmentation(), CropFlip()):
    AugmentedBatches(images, np.arange(6), batch_size=4, seed=3, augment=augment)[0]
print("fed without a device")
import keras
keras.ops.convert_to_tensor(np.zeros(3))  # the guard works: a backend op fails here
"""


@pytest.mark.slow
def test_the_feed_runs_no_backend_op():
    """Feed threads that run JAX ops share the training step's devices: with two, they deadlocked its all-reduce.
    With JAX given no usable platform, any backend op fails; the feed must not need one."""
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "no_device_for_the_feed"}
    result = subprocess.run(
        [sys.executable, "-c", NO_DEVICE_CHECK], env=env, capture_output=True, text=True, timeout=300
    )
    assert "fed without a device" in result.stdout, result.stderr[-3000:]
    assert result.returncode != 0 and "no_device_for_the_feed" in result.stderr  # and the guard was real


def test_seed_augmentation_is_the_write_ups_affine_set():
    """An identity map returns the photo; a 90-degree turn with no zoom or shift turns it; edges repeat."""
    from guitar_distill.common.augment import SeedAugmentation, affine_sample

    image = np.arange(5 * 5 * 3, dtype=np.uint8).reshape(1, 5, 5, 3)
    identity = np.array([[[1.0, 0, 0], [0, 1.0, 0]]])
    assert np.array_equal(affine_sample(image, identity), image.astype(np.float32))
    turn = np.array([[[0, 1.0, 0], [-1.0, 0, 4]]])  # output (r, c) reads input (c, 4 - r)
    assert np.array_equal(affine_sample(image, turn)[0], np.rot90(image[0], 1).astype(np.float32))
    shifted = np.array([[[1.0, 0, -2], [0, 1.0, 0]]])  # rows above the top take the top row
    assert np.array_equal(affine_sample(image, shifted)[0, :3], np.repeat(image[0, :1], 3, 0).astype(np.float32))
    rng = np.random.default_rng(0)
    m = SeedAugmentation().matrices(rng, 2000, 64, 64)
    scales = np.sqrt(np.abs(np.linalg.det(m[:, :, :2])))  # rotation keeps area: sqrt(zoom_r * zoom_c)
    assert 0.8 <= scales.min() and scales.max() <= 1.2 and np.abs(m[:, :, 2]).max() < 64
    angles = np.degrees(np.arctan2(m[:, 1, 0], m[:, 0, 0]))
    assert -45 <= angles.min() < -40 and 40 < angles.max() <= 45


def test_a_period_replays_the_stored_batches_in_a_new_order(images):
    full = AugmentedBatches(images, np.arange(6), batch_size=2, seed=3, batch_targets=np.arange(4)[:, None])
    replay = AugmentedBatches(images, np.arange(6), batch_size=2, seed=3, batch_targets=np.arange(4)[:, None], period=4)
    first = [replay[g] for g in range(4)]
    for g in range(4):  # the first cycle is the stream itself
        assert np.array_equal(first[g][0], full[g][0])
    cycles = [[int(replay[c * 4 + k][1][1][0]) for k in range(4)] for c in (1, 2)]
    assert all(sorted(c) == [0, 1, 2, 3] for c in cycles)  # every stored batch once per cycle ...
    assert cycles[0] != cycles[1]  # ... in a new seeded order each cycle
    k = cycles[0].index(2)  # a replayed batch is the stored one: same photos, same augmentation, same targets
    assert np.array_equal(replay[4 + k][0], first[2][0]) and np.array_equal(replay[4 + k][1][0], first[2][1][0])
    resumed = AugmentedBatches(
        images, np.arange(6), batch_size=2, seed=3, batch_targets=np.arange(4)[:, None], period=4, start_batch=6
    )
    assert np.array_equal(resumed[0][0], replay[6][0])  # a resumed run replays the same order
    with pytest.raises(IndexError):
        full[4]  # without a period the stored targets end
    with pytest.raises(ValueError):
        AugmentedBatches(images, np.arange(6), batch_size=2, seed=3, period=0)


def test_phases_crop_each_epoch_at_its_phase_side(images):
    from guitar_distill.common.augment import Phases, training_augmentation

    cfg = apply_overrides(
        load_preset("stretch"),
        [
            "teacher.steps_per_epoch=2",
            "teacher.phases=[{'from_epoch': 0, 'image_size': 24, 'crop_scale': [0.5, 1.0]},"
            " {'from_epoch': 2, 'image_size': 48}]",
        ],
    ).teacher
    phases = training_augmentation(cfg)
    assert isinstance(phases, Phases) and phases.last == 48
    feed = AugmentedBatches(images, np.arange(6), batch_size=2, seed=3, augment=phases)
    assert [feed[g][0].shape[1] for g in range(6)] == [24, 24, 24, 24, 48, 48]  # 2 batches an epoch
    assert phases.at_epoch(1).scale == (0.5, 1.0) and phases.at_epoch(2).scale == (0.35, 1.0)
    resumed = AugmentedBatches(images, np.arange(6), batch_size=2, seed=3, augment=phases, start_batch=3)
    assert np.array_equal(resumed[1][0], feed[4][0])
    for bad, why in (
        ([Phase(1, 24)], "from_epoch = 0"),
        ([Phase(0, 48), Phase(2, 24)], "largest"),
        ([Phase(0, 24), Phase(0, 48)], "grow"),
    ):
        with pytest.raises(ToolkitError, match=why):
            replace(cfg, phases=tuple(bad))
    with pytest.raises(ToolkitError, match="crop_flip"):
        replace(cfg, augmentation="seed")


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_mixing_blends_photos_and_targets_in_the_same_share(kind):
    """Photos of one flat grey each (photo k is 40 k + 10): a mixed photo's pixels tell its shares exactly."""
    from guitar_distill.common.augment import BatchMixing

    flat = np.repeat(np.arange(6, dtype=np.uint8)[:, None, None, None] * 40 + 10, 32, 1).repeat(32, 2).repeat(3, 3)
    mixing = BatchMixing(kind, alpha=1.0, num_classes=6, from_batch=1)
    feed = AugmentedBatches(flat, np.arange(6), batch_size=6, seed=3, augment=False, mixing=mixing)
    x0, t0 = feed[0]  # before from_batch: the photos and their one-hot rows
    assert np.array_equal(t0, np.eye(6, dtype=np.float32)[t0.argmax(1)])
    assert np.array_equal(x0, flat[t0.argmax(1)].astype(np.float32))
    x, t = feed[1]
    assert t.shape == (6, 6) and np.allclose(t.sum(1), 1) and (t > 0).sum(1).max() <= 2
    for k in range(6):
        photos = np.flatnonzero(t[k])
        greys = (40 * photos + 10).astype(np.float32)
        if kind == "mixup":  # every pixel the targets' blend of the two greys
            assert np.allclose(x[k], t[k, photos] @ greys, atol=1e-3)
        else:  # each pixel one photo's grey, as many pixels of each as its share of the target
            shares = [np.mean(x[k, ..., 0] == grey) for grey in greys]
            assert np.allclose(shares, t[k, photos], atol=1e-6)
    assert np.array_equal(feed[1][0], x)  # seeded
    # stored teacher outputs (answers to these mixed photos) come beside the mixed rows, batch for batch
    stored = np.random.default_rng(0).normal(size=(2, 6, 6))
    with_targets = AugmentedBatches(
        flat, np.arange(6), batch_size=6, seed=3, augment=False, mixing=mixing, batch_targets=stored
    )
    x1, (rows, targets) = with_targets[1]
    assert np.array_equal(x1, x) and np.array_equal(rows, t) and np.array_equal(targets, stored[1])


def test_training_corruption_damages_its_share_of_crops_seeded(images):
    from guitar_distill.common.augment import TrainingCorruption, training_corruption

    clean = AugmentedBatches(images, np.arange(6), batch_size=6, seed=3, augment=False)[0][0]
    every = TrainingCorruption(["salt_and_pepper"], probability=1.0, severities=(5, 5))
    noisy = AugmentedBatches(images, np.arange(6), batch_size=6, seed=3, augment=False, corruption=every)[0][0]
    hit = np.any(noisy != clean, axis=-1).mean(axis=(1, 2))  # share of pixels changed, per crop
    assert np.all((hit > 0.08) & (hit < 0.2))  # severity 5 turns 17 % of pixels to black or white
    never = TrainingCorruption(["salt_and_pepper"], probability=0.0)
    assert np.array_equal(
        AugmentedBatches(images, np.arange(6), batch_size=6, seed=3, augment=False, corruption=never)[0][0], clean
    )
    student = load_preset("full").student
    some = training_corruption(replace(student, corrupt=("gaussian_noise", "blur"), corrupt_probability=0.5))
    batch = images[:6].astype(np.float32)
    first, again = some(batch, seed=9), some(batch, seed=9)
    assert np.array_equal(first, again) and 0 < np.any(first != batch, axis=(1, 2, 3)).sum() < 6
    assert training_corruption(student) is None
    with pytest.raises(ValueError, match="fog"):
        TrainingCorruption(["fog"], 0.5)
    with pytest.raises(ValueError, match="corrupt_severity"):
        TrainingCorruption(["blur"], 0.5, (3, 1))
