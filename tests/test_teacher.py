"""The teacher builder and the shared recipe loop (early stopping, best snapshot, resume)."""

from dataclasses import replace

import keras
import numpy as np
import pytest
from conftest import photo_stack, slow_fixture

from guitar_distill.common.callbacks import BestSnapshot, ResumableEarlyStopping
from guitar_distill.common.config import load_preset
from guitar_distill.common.errors import ToolkitError
from guitar_distill.common.history import best_epoch, read_history
from guitar_distill.common.recipe import recipe_optimizer
from guitar_distill.common.training import fit_recipe
from guitar_distill.teacher.model import LAST_CONV_LAYER, build_teacher

SIZE = 32


@slow_fixture(scope="module")
def photos():
    x = photo_stack(["ES", "SG"], 8, SIZE)
    return x.astype(np.float32), np.repeat([0, 1], 8)


# ResNet50 takes seconds to build: tests that only read a model share one per module.
@pytest.fixture(scope="module")
def bare_resnet():
    return keras.applications.ResNet50(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))


@pytest.fixture(scope="module")
def plain_teacher():
    return build_teacher(3, SIZE)


def test_builder_shape_and_parameters(plain_teacher, bare_resnet):
    assert plain_teacher.output_shape == (None, 3)
    assert plain_teacher.count_params() == bare_resnet.count_params() + 2048 * 3 + 3
    assert all(layer.trainable for layer in plain_teacher.layers)


def test_local_weights_and_preprocessing_inside(tmp_path, photos, bare_resnet):
    source = bare_resnet
    path = tmp_path / "resnet50_notop.weights.h5"
    source.save_weights(path)
    teacher = build_teacher(3, SIZE, weights=str(path))
    features = keras.Model(teacher.inputs, teacher.get_layer(LAST_CONV_LAYER).output)
    raw = photos[0][:4]
    manual = source.predict(keras.applications.resnet50.preprocess_input(raw.copy()), verbose=0)
    np.testing.assert_allclose(features.predict(raw, verbose=0), manual, rtol=1e-4, atol=1e-4)
    uint8 = teacher.predict(raw.astype(np.uint8), verbose=0)
    np.testing.assert_allclose(uint8, teacher.predict(raw, verbose=0), atol=1e-6)


def test_bad_weights_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        build_teacher(3, SIZE, weights=str(tmp_path / "nope.h5"))
    garbage = tmp_path / "garbage.weights.h5"
    garbage.write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="garbage.weights.h5"):
        build_teacher(3, SIZE, weights=str(garbage))


def test_training_on_real_photos_lowers_the_loss(photos):
    keras.utils.set_random_seed(0)
    model = build_teacher(2, SIZE)
    # The recipe's optimiser at a tenth of its rate: from scratch on one batch, 0.01 oscillates.
    cfg = replace(load_preset("full").teacher, learning_rate=0.001)
    model.compile(optimizer=recipe_optimizer(cfg), loss="sparse_categorical_crossentropy")
    x, y = photos
    losses = [float(model.train_on_batch(x, y)) for _ in range(12)]
    assert np.mean(losses[-3:]) < losses[0] / 2, losses


def test_early_stopping_and_best_snapshot_on_scripted_history(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.stop_training = False
    history = [(0.50, 1.0), (0.70, 0.8), (0.70, 0.9), (0.65, 0.85), (0.80, 0.95), (0.90, 0.99)]
    stop = ResumableEarlyStopping([], monitor="val_loss", patience=3)
    best = BestSnapshot(tmp_path / "best.weights.h5", [])
    for cb in (stop, best):
        cb.set_model(model)
        cb.on_train_begin()
    stopped_at = None
    for epoch, (acc, loss) in enumerate(history):
        for cb in (stop, best):
            cb.on_epoch_end(epoch, {"val_accuracy": acc, "val_loss": loss})
        if model.stop_training:
            stopped_at = epoch + 1
            break
    assert stopped_at == 5  # best val_loss at step 2, three steps without improvement
    assert best.best == 0.80 and (tmp_path / "best.weights.h5").exists()
    rows = [{"epoch": i + 1, "val_accuracy": a, "val_loss": v} for i, (a, v) in enumerate(history[:4])]
    assert best_epoch(rows)["epoch"] == 2  # ties go to the earlier step
    resumed = ResumableEarlyStopping(rows, monitor="val_loss", patience=3)
    resumed.set_model(model)
    resumed.on_train_begin()
    assert resumed.wait == 2 and resumed.best == 0.8


def _student(seed=0, cfg=None):
    from guitar_distill.student.model import build_nin_student

    keras.utils.set_random_seed(seed)
    model = build_nin_student(2, SIZE, (8, 8, 8), dropout=0.5)
    model.compile(optimizer=recipe_optimizer(cfg or CFG), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_the_curves_are_redrawn_each_step_with_a_line_at_every_change_of_side(tmp_path):
    from guitar_distill.common.callbacks import CurvesWriter
    from guitar_distill.common.plots import phase_marks

    phases = load_preset("grow").teacher.phases
    assert phase_marks(phases) == [(40.5, "128 px"), (80.5, "144 px"), (110.5, "160 px")]
    rows = []
    writer = CurvesWriter(tmp_path / "curves.png", rows, max_epochs=150, phases=phases)
    for epoch in range(2):
        rows.append({"epoch": epoch + 1, "accuracy": 0.5, "loss": 1.0, "val_accuracy": 0.4, "val_loss": 1.2})
        writer.on_epoch_end(epoch)
        assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# The default student recipe, made small.
CFG = replace(load_preset("full").student, learning_rate=0.01, steps_per_epoch=3, batch_size=4, max_epochs=4, seed=11)


@pytest.mark.parametrize("ema_momentum", [0.0, 0.9], ids=["plain", "averaged"])
def test_resume_after_a_kill_mid_run_matches_an_uninterrupted_run(tmp_path, photos, monkeypatch, ema_momentum):
    """With an average of the weights (ema_momentum), the backup holds both weight sets and the resumed run
    still reproduces the uninterrupted history, validation (of the average) included."""
    cfg = replace(CFG, ema_momentum=ema_momentum)
    train = (photos[0].astype(np.uint8), photos[1])
    val = (photos[0][::2].astype(np.uint8), photos[1][::2])
    straight = fit_recipe(_student(cfg=cfg), train, val, cfg, tmp_path / "straight")

    from guitar_distill.common.augment import AugmentedBatches

    real_getitem = AugmentedBatches.__getitem__

    def killed(self, i):
        if self.start_batch + i == 7:  # in the middle of step 3
            raise KeyboardInterrupt("simulated kill")
        return real_getitem(self, i)

    monkeypatch.setattr(AugmentedBatches, "__getitem__", killed)
    with pytest.raises(BaseException, match="simulated kill"):  # TF wraps it in its own error
        fit_recipe(_student(cfg=cfg), train, val, cfg, tmp_path / "resumed")
    assert len(read_history(tmp_path / "resumed" / "history.csv")) == 2
    monkeypatch.setattr(AugmentedBatches, "__getitem__", real_getitem)
    # A fresh process would build a fresh model with other initial weights: the backup wins.
    resumed = fit_recipe(_student(seed=99, cfg=cfg), train, val, cfg, tmp_path / "resumed")
    assert [r["epoch"] for r in resumed] == [1, 2, 3, 4]
    for a, b in zip(straight, resumed):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), (a, b)


def test_the_wall_clock_budget_stops_before_the_epoch_that_would_overrun_it(monkeypatch):
    from guitar_distill.common import callbacks

    now = iter(
        [
            0.0,  # train begins
            0.0,
            100.0,  # epoch 1 (compilation): 100 s; 100 + 100 <= 300: go on
            100.0,
            160.0,  # epoch 2: 60 s; 160 + 100 (the slowest) <= 300: go on
            160.0,
            220.0,
        ]
    )  # epoch 3: 220 + 100 > 300: stop here, not in epoch 4
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: next(now))
    budget = callbacks.WallClockBudget(minutes=5)
    budget.set_model(keras.Sequential())
    budget.model.stop_training = False
    budget.on_train_begin()
    for epoch in range(3):
        budget.on_epoch_begin(epoch)
        budget.on_epoch_end(epoch)
        assert budget.model.stop_training == (epoch == 2)
    assert budget.stopped_at == 3


def test_ctrl_c_says_what_was_saved_and_how_to_resume(tmp_path, photos, monkeypatch):
    train = (photos[0].astype(np.uint8), photos[1])
    model = _student()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(model, "fit", interrupted)
    monkeypatch.setattr("sys.argv", ["guitar-distill teacher", "--preset", "cpu"])  # as the installed CLI runs it
    with pytest.raises(
        ToolkitError,
        match=r"interrupted: 0 complete epoch\(s\) saved in .*backup.*\n"
        r"  guitar-distill teacher --preset cpu",
    ):
        fit_recipe(model, train, train, CFG, tmp_path / "run")


def test_a_finished_run_without_its_backup_is_not_trained_again(tmp_path, photos, monkeypatch):
    import shutil

    train = (photos[0].astype(np.uint8), photos[1])
    first = fit_recipe(_student(), train, train, CFG, tmp_path)
    (tmp_path / "metrics.json").write_text("{}")  # what finish_training writes before removing backup/
    shutil.rmtree(tmp_path / "backup")
    model = _student()
    monkeypatch.setattr(model, "fit", lambda *a, **k: pytest.fail("a finished run was trained again"))
    assert fit_recipe(model, train, train, CFG, tmp_path) == first


def test_mixed_precision_keeps_probabilities_in_float32(photos):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_teacher(2, SIZE)
        assert model.get_layer("conv1_conv").compute_dtype == "float16"
        probs = model.predict(photos[0][:2], verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert probs.dtype == np.float32 and np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-3)


def test_zero_init_residual_starts_every_block_as_the_identity(plain_teacher):
    model = build_teacher(3, SIZE, None, zero_init_residual=True)
    last_bn = [layer for layer in model.layers if layer.name.endswith("_3_bn")]
    assert len(last_bn) == 16  # 3 + 4 + 6 + 3 bottleneck blocks
    assert all(float(np.abs(layer.gamma.numpy()).max()) == 0.0 for layer in last_bn)
    others = [layer for layer in model.layers if layer.name.endswith("_bn") and not layer.name.endswith("_3_bn")]
    assert all(float(np.min(layer.gamma.numpy())) == 1.0 for layer in others)
    assert (
        float(np.min([layer.gamma.numpy().min() for layer in plain_teacher.layers if layer.name.endswith("_3_bn")]))
        == 1.0
    )


def test_float32_copy_of_a_bfloat16_model_gives_the_same_answers():
    from guitar_distill.common.models import float32_copy

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_teacher(3, 32, None)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    copy = float32_copy(model)
    assert {layer.dtype_policy.name for layer in copy.layers} == {"float32"}
    assert "mixed_bfloat16" in {layer.dtype_policy.name for layer in model.layers}
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(copy.predict(x, verbose=0), model.predict(x, verbose=0), atol=0.05)
    assert float32_copy(copy) is copy


def test_fused_batch_norm_trains_and_infers_as_keras_batch_norm(monkeypatch):
    import tensorflow as tf

    from guitar_distill.common.layers import FusedBatchNormalization

    fused_calls, fused = [], tf.raw_ops.FusedBatchNormV3
    monkeypatch.setattr(tf.raw_ops, "FusedBatchNormV3", lambda **kw: fused_calls.append(1) or fused(**kw))

    x = np.random.default_rng(0).normal(2.0, 3.0, (4, 5, 5, 6)).astype(np.float32)
    layers = []
    for cls in (keras.layers.BatchNormalization, FusedBatchNormalization):
        layer = cls(momentum=0.5, name="bn")
        layer.build(x.shape)
        layer.gamma.assign(np.linspace(0.5, 1.5, 6)), layer.beta.assign(np.linspace(-1, 1, 6))
        layers.append(layer)
    results = []
    for layer in layers:
        with tf.GradientTape() as tape:
            inputs = tf.constant(x)
            tape.watch(inputs)
            y = layer(inputs, training=True)
            loss = tf.reduce_sum(y * tf.range(6, dtype=tf.float32))
        grads = tape.gradient(loss, [inputs, layer.gamma, layer.beta])
        results.append([y, *grads, layer.moving_mean, layer.moving_variance, layer(inputs, training=False)])
    assert fused_calls == [1]  # the fused kernel trained; inference took Keras' own path
    for keras_value, fused_value in zip(*results):
        np.testing.assert_allclose(np.asarray(fused_value), np.asarray(keras_value), rtol=1e-4, atol=1e-4)


def test_subsampled_pointwise_conv_trains_and_infers_as_a_strided_conv(monkeypatch):
    import tensorflow as tf

    from guitar_distill.common.layers import SubsampledPointwiseConv2D

    pools, pool = [], keras.ops.average_pool
    monkeypatch.setattr(keras.ops, "average_pool", lambda *a, **kw: pools.append(1) or pool(*a, **kw))
    for size in (7, 8):  # odd maps are where oneDNN's strided kernels were slow; even ones must agree too
        x = tf.constant(np.random.default_rng(size).normal(0, 1, (2, size, size, 5)).astype(np.float32))
        layers = [
            cls(4, 1, strides=2, activation="relu", name="pw")
            for cls in (keras.layers.Conv2D, SubsampledPointwiseConv2D)
        ]
        for layer in layers:
            layer.build(x.shape)
        layers[1].set_weights(layers[0].get_weights())
        results = []
        for layer in layers:
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
                loss = tf.reduce_sum(y * tf.range(4, dtype=tf.float32))
            results.append([y, *tape.gradient(loss, [x, *layer.trainable_weights]), layer(x, training=False)])
        assert results[0][0].shape == (2, (size + 1) // 2, (size + 1) // 2, 4)
        for stock, subsampled in zip(*results):
            np.testing.assert_allclose(np.asarray(subsampled), np.asarray(stock), rtol=1e-5, atol=1e-5)
    assert pools == [1, 1]  # only the training calls subsampled; inference took Conv2D's strided path
    with pytest.raises(ValueError, match="only a 1x1 convolution"):
        SubsampledPointwiseConv2D(4, 3, strides=2)


def test_the_teacher_trains_with_its_fast_layers_and_saves_as_it_loads(tmp_path, plain_teacher):
    from guitar_distill.common.layers import FusedBatchNormalization, SubsampledPointwiseConv2D, with_training_layers
    from guitar_distill.common.models import load_model_file, save_model

    norms = [layer for layer in plain_teacher.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 53 and all(type(layer) is FusedBatchNormalization for layer in norms)
    # ResNet50's strided 1x1 convolutions: the first block of stages 3-5, its shortcut and its first conv.
    pointwise = sorted(layer.name for layer in plain_teacher.layers if type(layer) is SubsampledPointwiseConv2D)
    assert pointwise == [f"conv{n}_block1_{k}_conv" for n in (3, 4, 5) for k in (0, 1)]
    x = np.random.default_rng(1).integers(0, 256, (2, SIZE, SIZE, 3)).astype(np.float32)
    loaded = load_model_file(save_model(plain_teacher, tmp_path / "model.keras"))
    assert sum(type(layer) is SubsampledPointwiseConv2D for layer in loaded.layers) == 6
    np.testing.assert_allclose(loaded.predict_on_batch(x), plain_teacher.predict_on_batch(x), atol=1e-6)
    # What benchmarks.train_rate --batch-norm keras --strided-pointwise keras times.
    stock = with_training_layers(plain_teacher, fused_batch_norm=False, subsampled_pointwise=False)
    assert not any(type(layer) in (FusedBatchNormalization, SubsampledPointwiseConv2D) for layer in stock.layers)
    np.testing.assert_allclose(stock.predict_on_batch(x), plain_teacher.predict_on_batch(x), atol=1e-6)


def test_the_best_snapshot_of_an_averaged_run_is_the_average(tmp_path, photos):
    """A momentum near 1 keeps the average at the first step's weights; the raw weights (the same run without
    the average: averaging never changes the steps) move on."""
    train = (photos[0].astype(np.uint8), photos[1])
    val = (photos[0][::2].astype(np.uint8), photos[1][::2])
    start = _student().get_weights()
    plain = _student()
    fit_recipe(plain, train, val, CFG, tmp_path / "plain")
    cfg = replace(CFG, ema_momentum=0.999999)
    averaged = _student(cfg=cfg)
    fit_recipe(averaged, train, val, cfg, tmp_path / "averaged")
    best = _student(seed=5)
    best.load_weights(tmp_path / "averaged" / "best.weights.h5")
    for k, weight in enumerate(plain.weights):
        if "kernel" in weight.path:
            moved = np.abs(plain.get_weights()[k] - start[k]).mean()
            kept = np.abs(best.get_weights()[k] - start[k]).mean()
            assert moved > 0 and kept < 0.3 * moved, (weight.path, kept, moved)


@pytest.mark.slow
def test_a_teacher_grows_its_side_by_phase_and_is_kept_at_the_last(tmp_path, photo_source):
    """Progressive resizing, the averaged weights and CutMix from the second epoch through the teacher stage:
    the history spans both phases, and the saved teacher takes the last phase's side."""
    import json

    from conftest import run_stage

    common = ("--preset", "smoke", "--artifacts", str(tmp_path))
    run_stage("dataset", *common, "--source", str(photo_source))
    phases = '[{"from_epoch": 0, "image_size": 24}, {"from_epoch": 1, "image_size": 32}]'
    out = run_stage(
        "teacher",
        *common,
        "--set",
        "teacher.head=avg",
        "--set",
        "teacher.augmentation=crop_flip",
        "--set",
        f"teacher.phases={phases}",
        "--set",
        "teacher.ema_momentum=0.9",
        "--set",
        "teacher.mix=cutmix",
        "--set",
        "teacher.mix_from_epoch=1",
    ).stdout
    assert "24 (from epoch 0) -> 32 (from epoch 1)" in out
    model = keras.saving.load_model(tmp_path / "teacher" / "model.keras", compile=False)
    assert model.input_shape == (None, 32, 32, 3)
    metrics = json.loads((tmp_path / "teacher" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and set(metrics) >= {"train_accuracy", "val_accuracy"}


def test_a_float16_copy_keeps_in_float32_a_layer_that_float16_cannot_hold():
    from guitar_distill.common.models import retyped_copy

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.BatchNormalization(name="first_bn")(inputs)  # over raw pixels: a variance of tens of thousands
    x = keras.layers.Conv2D(4, 3, name="conv")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    gamma, beta, mean, _ = model.get_layer("first_bn").get_weights()
    model.get_layer("first_bn").set_weights([gamma, beta, mean + 120.0, np.full(3, 87059.6, np.float32)])
    half = retyped_copy(model, "float16")
    assert half.get_layer("first_bn").dtype_policy.name == "float32" and half.get_layer("conv").dtype == "float16"
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    answers = keras.ops.convert_to_numpy(half(x)).astype(np.float32)
    assert np.isfinite(answers).all()
    np.testing.assert_allclose(answers, keras.ops.convert_to_numpy(model(x)), atol=2e-2)
    with pytest.raises(ValueError, match="first_bn: values up to 8.71e\\+04 do not fit float16"):
        retyped_copy(model, "float16", strict=True)


def test_a_carry_keeps_in_float32_what_float16_cannot_hold(tmp_path):
    import h5py

    from guitar_distill.common import carry

    (tmp_path / "run" / "backup").mkdir(parents=True)
    (tmp_path / "run" / "backup" / "training_metadata.json").write_text('{"epoch": 3, "batch": 0}')
    variance = np.array([87059.6, 2.5], np.float32)  # a first batch norm's variance over raw pixels
    with h5py.File(tmp_path / "run" / "backup" / "latest.weights.h5", "w") as f:
        f.create_dataset("layers/bn/vars/3", data=variance)
        f.create_dataset("layers/conv/vars/0", data=np.full(4, 0.1, np.float32))
        f.create_dataset("optimizer/vars/0", data=np.zeros(4, np.float32))
    for name in carry.RUN_FILES:
        (tmp_path / "run" / name).write_text("")
    carry.save_carry(tmp_path / "run", tmp_path / "git")
    with h5py.File(tmp_path / "git" / carry.WEIGHTS, "r") as f:
        np.testing.assert_array_equal(f["layers/bn/vars/3"][()], variance)
        assert f["layers/conv/vars/0"].dtype == np.float16 and "optimizer" not in f


def test_a_run_carried_to_another_folder_goes_on_from_its_epoch(tmp_path, photos, monkeypatch):
    """common/carry.py: a run stopped after two epochs, carried (float16 weights, history, config) and restored
    elsewhere, trains epochs 3 and 4 of the same schedule from the carried weights."""
    from guitar_distill.common import carry

    cfg = replace(CFG, ema_momentum=0.9)
    train = (photos[0].astype(np.uint8), photos[1])
    val = (photos[0][::2].astype(np.uint8), photos[1][::2])
    first = _student(cfg=cfg)
    fit_recipe(first, train, val, replace(cfg, max_epochs=2), tmp_path / "here")
    (tmp_path / "here" / "config.json").write_text("{}")  # the stage writes it; here any file travels
    record = carry.save_carry(tmp_path / "here", tmp_path / "git")
    assert record["epoch"] == 2 and (tmp_path / "git" / carry.WEIGHTS).stat().st_size > 0
    carry.restore_carry(tmp_path / "git", tmp_path / "there")
    with pytest.raises(ToolkitError, match="holds a run of its own"):
        carry.restore_carry(tmp_path / "git", tmp_path / "here")

    seen = {}
    original = carry.resume_carried

    def spy(model, run_dir, steps_done):
        original(model, run_dir, steps_done)
        seen["weights"] = [w.copy() for w in model.get_weights()]
        seen["iterations"] = int(model.optimizer.iterations)

    monkeypatch.setattr(carry, "resume_carried", spy)
    rows = fit_recipe(_student(seed=99, cfg=cfg), train, val, cfg, tmp_path / "there")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4] and seen["iterations"] == 2 * CFG.steps_per_epoch
    # the carried weights are the run's (float16-rounded), not the fresh model's
    for carried, trained in zip(seen["weights"], first.get_weights()):
        np.testing.assert_allclose(carried, trained, rtol=2e-3, atol=1e-4)


def test_a_chain_of_runs_carried_as_a_tree_goes_on_where_it_stopped(tmp_path, photos):
    """common/carry.py save-tree/restore-tree: a finished run comes back finished (its best weights as they were,
    its metrics; nothing left to train), a run in progress at its epoch in float16; a folder with a run of its own
    is left as it is."""
    import shutil

    import h5py

    from guitar_distill.common import carry
    from guitar_distill.common.resume import epochs_done

    train = (photos[0].astype(np.uint8), photos[1])
    val = (photos[0][::2].astype(np.uint8), photos[1][::2])
    here = tmp_path / "here"
    fit_recipe(_student(), train, val, replace(CFG, max_epochs=2), here / "a" / "baseline")
    # what finish() leaves: metrics, and the resume state removed
    (here / "a" / "baseline" / "metrics.json").write_text('{"val_accuracy": 0.5}')
    shutil.rmtree(here / "a" / "baseline" / "backup")
    (here / "a" / "baseline" / "backup").mkdir()  # emptied, not removed (a stop in between): still finished
    (here / "a" / "data").symlink_to(here)  # a run's data link is not walked into
    fit_recipe(_student(), train, val, replace(CFG, max_epochs=1), here / "b")  # its backup as a stop leaves it
    for run in ("a/baseline", "b"):
        (here / run / "config.json").write_text("{}")

    carry.save_carry(here / "b", tmp_path / "git" / "a" / "baseline")  # as an earlier stop left it: in progress
    saved = carry.save_tree(here, tmp_path / "git")
    assert not (tmp_path / "git" / "a" / "baseline" / carry.WEIGHTS).exists()
    assert [(str(rel), r["epoch"], r["finished"]) for rel, r in saved] == [("a/baseline", 2, True), ("b", 1, False)]
    with h5py.File(tmp_path / "git" / "b" / carry.WEIGHTS, "r") as f:
        assert {f[n].dtype for n in _datasets(f)} == {np.dtype(np.float16)}

    there = tmp_path / "there"
    (there / "b").mkdir(parents=True)
    (there / "b" / "history.csv").write_text("epoch\n1\n2\n")  # a run of its own, further along
    seeded = carry.restore_tree(tmp_path / "git", there)
    assert [(str(rel), r is not None) for rel, r in seeded] == [("a/baseline", True), ("b", False)]
    assert (there / "a" / "baseline" / "metrics.json").read_text() == '{"val_accuracy": 0.5}'
    assert epochs_done(_student(seed=5), there / "a" / "baseline", CFG.steps_per_epoch) == (2, True)
    trained, restored = _student(), _student(seed=5)
    trained.load_weights(here / "a" / "baseline" / carry.BEST)
    restored.load_weights(there / "a" / "baseline" / carry.BEST)
    for a, b in zip(restored.get_weights(), trained.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ToolkitError, match="neither a run in progress"):
        carry.save_carry(there / "b", tmp_path / "elsewhere")


def _datasets(group) -> list[str]:
    names = []
    group.visititems(lambda name, item: names.append(name) if hasattr(item, "dtype") else None)
    return names
