"""The recipe's training loop, shared by teacher, student baseline and distillation.

One `model.fit` with Keras callbacks: a "step" is one Keras epoch of `steps_per_epoch` batches,
validation after each, early stopping on validation loss, the best snapshot by validation
accuracy, and BackupAndRestore so that the same command resumes an interrupted run.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from pathlib import Path

import keras
import numpy as np

from guitar_distill.common.artifacts import atomic_path, write_text
from guitar_distill.common.augment import (
    AugmentedBatches,
    training_augmentation,
    training_corruption,
    training_mixing,
)
from guitar_distill.common.config import command_name
from guitar_distill.common.errors import ToolkitError

MONITOR_BEST = "val_accuracy"
MONITOR_STOP = "val_loss"  # what the write-up's EarlyStopping watched


def recipe_optimizer(cfg: dict) -> keras.optimizers.Optimizer:
    """The preset's optimiser and learning-rate schedule.

    optimizer "sgd" (momentum, Nesterov) or "adamw"; schedule "inverse_time" (the write-up's legacy
    Keras `decay`: lr / (1 + decay * iterations)) or "cosine" (linear warmup over `warmup_epochs`,
    then cosine to zero at `max_epochs`). Weight decay is decoupled and spares BN and biases.
    A non-zero `ema_momentum` keeps an exponential moving average of the weights in the optimiser
    (Keras' `use_ema`); fit_recipe validates and keeps the average (AveragedWeights).
    """
    lr = float(cfg["learning_rate"])
    schedule_name = cfg["schedule"]
    if schedule_name == "inverse_time":
        schedule = keras.optimizers.schedules.InverseTimeDecay(
            initial_learning_rate=lr, decay_steps=1, decay_rate=float(cfg["decay"])
        )
    elif schedule_name == "cosine":
        steps = int(cfg["steps_per_epoch"])
        warmup = int(round(float(cfg["warmup_epochs"]) * steps))
        total = int(cfg["max_epochs"]) * steps
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup else lr,
            decay_steps=max(total - warmup, 1),
            warmup_target=lr if warmup else None,
            warmup_steps=warmup,
        )
    else:
        raise ToolkitError(f"unknown schedule {schedule_name!r} (inverse_time or cosine)")
    weight_decay = float(cfg["weight_decay"]) or None
    ema = float(cfg.get("ema_momentum", 0.0))
    averaging = {"use_ema": True, "ema_momentum": ema} if ema else {}
    name = cfg["optimizer"]
    if name == "sgd":
        opt = keras.optimizers.SGD(
            learning_rate=schedule,
            momentum=float(cfg["momentum"]),
            nesterov=bool(cfg["nesterov"]),
            weight_decay=weight_decay,
            **averaging,
        )
    elif name == "adamw":
        opt = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay or 0.0, **averaging)
    else:
        raise ToolkitError(f"unknown optimizer {name!r} (sgd or adamw)")
    if weight_decay:
        opt.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return opt


def recipe_loss(cfg: dict) -> keras.losses.Loss:
    """Sparse cross-entropy on probabilities, with the preset's label smoothing; on class-probability targets
    when the recipe mixes photos (`mix`: their targets are mixed rows, and so are validation's one-hot rows)."""
    smoothing = float(cfg["label_smoothing"])
    if cfg.get("mix", "none") != "none":
        return keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)
    if not smoothing:
        return keras.losses.SparseCategoricalCrossentropy()
    return SmoothedSparseCrossentropy(smoothing)


def compile_recipe(model: keras.Model, cfg: dict) -> keras.Model:
    """Compile `model` with the recipe's optimiser and loss, tracking top-1 accuracy."""
    model.compile(optimizer=recipe_optimizer(cfg), loss=recipe_loss(cfg), metrics=["accuracy"])
    return model


@keras.saving.register_keras_serializable(package="guitar_distill")
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Keras' label smoothing (CategoricalCrossentropy) for integer labels."""

    def __init__(self, label_smoothing: float, name: str = "smoothed_sparse_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        one_hot = keras.ops.one_hot(keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32"), y_pred.shape[-1])
        return keras.losses.categorical_crossentropy(one_hot, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def cpu_has_bfloat16() -> bool:
    """AVX512-BF16 or AMX: the CPU multiplies bfloat16 natively (elsewhere it is emulated and slow)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def precision_policy(setting, accelerators: bool) -> tuple[str, str]:
    """The Keras dtype policy for a preset's `mixed_precision` (false, true/"float16", "bfloat16"),
    and why: bfloat16 falls back to float32 on a CPU without native bfloat16 arithmetic."""
    if setting in (False, None, "", "false", "float32"):
        return "float32", "as the preset asks"
    if setting in (True, "float16"):
        return "mixed_float16", "as the preset asks"
    if setting == "bfloat16":
        if accelerators or cpu_has_bfloat16():
            return "mixed_bfloat16", "native bfloat16 on this machine"
        return "float32", "bfloat16 asked for, but this CPU has no AVX512-BF16/AMX: float32 instead"
    raise ToolkitError(f'mixed_precision {setting!r}: use false, "float16" or "bfloat16"')


def configure_runtime(cfg: dict) -> dict:
    """Precision policy and data parallelism; call before building the model."""
    backend = keras.backend.backend()
    keras.utils.set_random_seed(int(cfg["seed"]))
    devices = keras.distribution.list_devices() if backend == "jax" else []
    accelerators = any("cpu" not in str(d).lower() for d in devices)
    if backend == "tensorflow":
        import tensorflow as tf

        accelerators = bool(tf.config.list_physical_devices("GPU"))
    policy, why = precision_policy(cfg.get("mixed_precision"), accelerators)
    keras.mixed_precision.set_global_policy(policy)
    if policy != "float32" or cfg.get("mixed_precision"):
        print(f"precision: {policy} ({why})")
    info = {
        "backend": backend,
        "mixed_precision": policy != "float32",
        "dtype_policy": policy,
        "devices": [str(d) for d in devices] or ["cpu"],
    }
    if len(devices) > 1:
        if int(cfg["batch_size"]) % len(devices):
            raise ToolkitError(f"batch_size {cfg['batch_size']} is not divisible by the {len(devices)} devices")
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    return info


def read_history(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    with open(path, newline="") as f:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()} for row in csv.DictReader(f)]


def write_history(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def best_epoch(rows: list[dict]) -> dict | None:
    """The row with the highest validation accuracy; the earliest one on ties."""
    return max(rows, key=lambda r: (r[MONITOR_BEST], -r["epoch"])) if rows else None


class HistoryWriter(keras.callbacks.Callback):
    """history.csv rewritten atomically after every step, with throughput; keeps earlier rows on resume."""

    def __init__(self, path: Path, rows: list[dict], images_per_step: int):
        super().__init__()
        self.path, self.rows, self.images_per_step = Path(path), rows, images_per_step

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_test_begin(self, logs=None):
        self._train_seconds = time.perf_counter() - self._start

    def on_epoch_end(self, epoch, logs=None):
        train_seconds = getattr(self, "_train_seconds", time.perf_counter() - self._start)
        row = {
            "epoch": epoch + 1,
            **{k: float(v) for k, v in (logs or {}).items()},
            "train_images_per_s": self.images_per_step / max(train_seconds, 1e-9),
            "seconds": time.perf_counter() - self._start,
        }
        self.rows.append(row)
        write_history(self.path, self.rows)


class BestSnapshot(keras.callbacks.Callback):
    """Save the weights of the best epoch (validation accuracy), atomically; resumes its best value."""

    def __init__(self, path: Path, rows: list[dict], weights_of=None):
        super().__init__()
        self.path = Path(path)
        best = best_epoch(rows)
        self.best = best[MONITOR_BEST] if best else -np.inf
        self.weights_of = weights_of  # e.g. the student inside a Distiller

    def on_epoch_end(self, epoch, logs=None):
        value = float((logs or {}).get(MONITOR_BEST, -np.inf))
        if value > self.best:
            self.best = value
            with atomic_path(self.path) as tmp:
                (self.weights_of or self.model).save_weights(tmp)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras' EarlyStopping on a loss whose patience counter survives a restart (rebuilt from history.csv)."""

    def __init__(self, rows: list[dict], **kwargs):
        super().__init__(mode="min", **kwargs)
        self._rows = rows

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._rows:
            self.best, self.wait = early_stopping_state(self._rows, self.monitor, self.min_delta)


def early_stopping_state(rows: list[dict], monitor: str = MONITOR_STOP, min_delta: float = 0.0) -> tuple[float, int]:
    """(best value, epochs since it improved) of a lower-is-better metric, replayed over the history."""
    best, wait = None, 0
    for row in rows:
        if best is None or row[monitor] < best - abs(min_delta):
            best, wait = row[monitor], 0
        else:
            wait += 1
    return best, wait


class ReseedEachStep(keras.callbacks.Callback):
    """Seed dropout's random state from (seed, step) at the start of every step.

    Keras' weight files do not hold SeedGenerator state, so without this a resumed run would draw
    other dropout masks than the uninterrupted run it continues.
    """

    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed

    def on_epoch_begin(self, epoch, logs=None):
        states = [v for v in self.model.variables if v.path.endswith("seed_generator_state")]
        for k, var in enumerate(states):
            value = np.random.default_rng([self.seed, epoch, k]).integers(0, 2**31 - 1)
            var.assign(np.array([value, 0], dtype=keras.backend.standardize_dtype(var.dtype)))


class WallClockBudget(keras.callbacks.Callback):
    """Stop after the epoch past which another one would overrun `minutes` of this invocation.

    For a machine lent for a fixed time (the GPU kit): the run ends there, with its best epoch, as
    if early stopping had ended it. The next epoch is assumed to take as long as the slowest so far
    (the first includes compilation).
    """

    def __init__(self, minutes: float):
        super().__init__()
        self.seconds = float(minutes) * 60.0
        self.stopped_at = None

    def on_train_begin(self, logs=None):
        self._start, self._slowest = time.perf_counter(), 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        self._slowest = max(self._slowest, now - self._epoch_start)
        if now - self._start + self._slowest > self.seconds:
            self.model.stop_training = True
            self.stopped_at = epoch + 1
            print(
                f"wall-clock budget: stopping after epoch {epoch + 1}, {now - self._start:.0f} s of "
                f"{self.seconds:.0f} s used (an epoch takes up to {self._slowest:.0f} s)"
            )


class AveragedWeights(keras.callbacks.SwapEMAWeights):
    """Keras' SwapEMAWeights with `swap_on_epoch`: validation, the best snapshot and the backup all see the
    moving average at an epoch's end, and training goes on from the raw weights at the next epoch's start.

    The backup is written at an epoch's end, so it holds the average in the model and the raw weights in
    the optimiser's slots: a resumed run starts in that state (`resumed`) and swaps back before training.
    Batch-norm statistics are not averaged (Keras averages trainable variables only); they follow the raw
    weights, which is why a teacher's final test re-estimates them (teacher/fixres.py).
    """

    def __init__(self, resumed: bool):
        super().__init__(swap_on_epoch=True)
        self.resumed = resumed

    def on_train_begin(self, logs=None):
        self._ema_weights_in_model = self.resumed


def completed_epochs(backup_dir: Path) -> int:
    meta = Path(backup_dir) / "training_metadata.json"
    if meta.exists():
        return int(json.loads(meta.read_text())["epoch"])
    return 0


def feed_workers() -> dict:
    """PyDataset threads for a backend that reads the feed itself (JAX), from GUITAR_FEED_WORKERS.

    A fast accelerator waits on the augmentation (Pillow, which releases the GIL) unless several
    batches are made at once; the batches stay in order and each is a pure function of its index.
    """
    workers = int(os.environ.get("GUITAR_FEED_WORKERS", "1"))
    if workers <= 1 or keras.backend.backend() == "tensorflow":
        return {}
    return {"workers": workers, "use_multiprocessing": False, "max_queue_size": 2 * workers}


def fit_input(feed: AugmentedBatches):
    """What model.fit reads: on TensorFlow, a tf.data pipeline over the feed's batches; else the feed.

    Keras hands a PyDataset to TensorFlow through `Dataset.from_generator`, and on 2 CPU cores that
    halved the NiN's training rate or worse (about 62 against 125-160 images/s with the same batches;
    reports/cpu_recipe.md). Mapping batch indices through `tf.numpy_function` reads the very same
    batches, in order (global batch `start_batch + i` is still `feed[i]`), without that cost.
    """
    if keras.backend.backend() != "tensorflow":
        return feed
    import tensorflow as tf

    b = feed.batch_size
    # Progressive resizing changes the side between phases: each new side retraces the step once.
    image_shape = (None, None, feed.images.shape[3]) if hasattr(feed.augment, "for_batch") else feed.images.shape[1:]
    labels = ((b, feed.mixing.num_classes), np.float32) if feed.mixing else ((b,), feed.labels.dtype)
    specs = [((b, *image_shape), np.float32), labels]
    if feed.batch_targets is not None:
        specs.append(((b, *feed.batch_targets.shape[2:]), np.asarray(feed.batch_targets[0]).dtype))

    def load(i):
        x, y = feed[int(i)]
        arrays = [x, *(y if isinstance(y, tuple) else (y,))]
        return [np.asarray(a, dtype=dtype) for a, (_, dtype) in zip(arrays, specs)]

    def shaped(*arrays):
        x, *y = (tf.ensure_shape(a, shape) for a, (shape, _) in zip(arrays, specs))
        return (x, y[0]) if len(y) == 1 else (x, tuple(y))

    indices = tf.data.Dataset.range(2**62)  # endless, like the feed; fit's steps_per_epoch cuts it
    batches = indices.map(
        lambda i: tf.numpy_function(load, [i], [tf.as_dtype(d) for _, d in specs]),
        num_parallel_calls=1,
        deterministic=True,
    )
    return batches.map(shaped).prefetch(2)


def fit_recipe(
    model: keras.Model,
    train: tuple,
    val: tuple,
    cfg: dict,
    out_dir: Path,
    weights_of: keras.Model | None = None,
    batch_targets=None,
    stream_period: int | None = None,
) -> list[dict]:
    """Train with the recipe; returns the full history (resumed rows included).

    `train` and `val` are (uint8 images, labels); val's labels may be a tuple (labels, extra).
    `batch_targets[g]` is added to global training batch g's targets (offline distillation);
    with `stream_period` the stream replays its first that many batches (AugmentedBatches).
    `weights_of` is the model whose weights are the product (defaults to `model`).
    Writes history.csv, best.weights.h5 and backup/ in out_dir.
    """
    out_dir = Path(out_dir)
    backup_dir = out_dir / "backup"
    done = completed_epochs(backup_dir)
    # A finished run has no backup/ (its resume state is removed at the end): nothing left to train.
    finished = not done and (out_dir / "metrics.json").exists() and (out_dir / "best.weights.h5").exists()
    if finished:
        done = len(read_history(out_dir / "history.csv"))
    rows = [r for r in read_history(out_dir / "history.csv") if r["epoch"] <= done]
    steps = int(cfg["steps_per_epoch"])
    mixing = training_mixing(cfg, int(model.output_shape[-1])) if cfg.get("mix", "none") != "none" else None
    feed = AugmentedBatches(
        *train,
        batch_size=int(cfg["batch_size"]),
        seed=int(cfg["seed"]),
        start_batch=done * steps,
        batch_targets=batch_targets,
        period=stream_period,
        augment=training_augmentation(cfg),
        mixing=mixing,
        corruption=training_corruption(cfg),
        **feed_workers(),
    )
    val_x, val_y = np.asarray(val[0], dtype=np.float32), val[1]
    if mixing:  # the loss takes class-probability rows, validation's too
        val_y = np.eye(mixing.num_classes, dtype=np.float32)[val_y]
    if done:
        print(f"resuming from {backup_dir}: {done} of at most {cfg['max_epochs']} epochs done")
    callbacks = [
        ReseedEachStep(int(cfg["seed"])),
        HistoryWriter(out_dir / "history.csv", rows, steps * int(cfg["batch_size"])),
        *([AveragedWeights(resumed=done > 0)] if float(cfg.get("ema_momentum", 0.0)) else []),
        BestSnapshot(out_dir / "best.weights.h5", rows, weights_of=weights_of),
        ResumableEarlyStopping(rows, monitor=MONITOR_STOP, patience=int(cfg["patience"]), verbose=1),
        # Last, so a step counts as done only once history and best snapshot are written.
        keras.callbacks.BackupAndRestore(str(backup_dir), double_checkpoint=True, delete_checkpoint=False),
    ]
    if float(cfg["max_minutes"]) > 0:
        callbacks.insert(-1, WallClockBudget(float(cfg["max_minutes"])))
    if not finished and done < int(cfg["max_epochs"]) and not _stopped_early(rows, cfg):
        try:
            model.fit(
                fit_input(feed),
                steps_per_epoch=steps,
                epochs=int(cfg["max_epochs"]),
                initial_epoch=done,
                validation_data=(val_x, val_y),
                batch_size=int(cfg["batch_size"]),
                callbacks=callbacks,
                shuffle=False,
                verbose=int(os.environ.get("KERAS_VERBOSE", 1 if sys.stdout.isatty() else 2)),
            )
        except KeyboardInterrupt:
            kept = completed_epochs(backup_dir)
            raise ToolkitError(
                f"\ninterrupted: {kept} complete epoch(s) saved in {backup_dir} (history.csv and "
                f"best.weights.h5 beside it); the epoch in progress is lost. Resume with:\n"
                f"  {command_name()} {' '.join(sys.argv[1:])}".rstrip()
            ) from None
    return rows


def _stopped_early(rows: list[dict], cfg: dict) -> bool:
    """Whether the recorded history already triggered early stopping (a finished run re-invoked)."""
    return early_stopping_state(rows)[1] >= int(cfg["patience"])
