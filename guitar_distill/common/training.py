"""The recipe's training loop, shared by teacher, student baseline and distillation.

One `model.fit` with Keras callbacks: a "step" is one Keras epoch of `steps_per_epoch` batches,
validation after each, early stopping on validation loss, the best snapshot by validation
accuracy, and BackupAndRestore so that the same command resumes an interrupted run. The parts:
common/recipe.py (optimiser, schedule, loss), devices.py (precision, data parallelism), feed.py (what
fit reads), callbacks.py and history.py.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import keras
import numpy as np

from guitar_distill.common.augment import (
    AugmentedBatches,
    training_augmentation,
    training_corruption,
    training_mixing,
)
from guitar_distill.common.callbacks import (
    AveragedWeights,
    BestSnapshot,
    CurvesWriter,
    HistoryWriter,
    ReseedEachStep,
    ResumableEarlyStopping,
    WallClockBudget,
    completed_epochs,
    early_stopping_state,
)
from guitar_distill.common.config import Recipe, command_name
from guitar_distill.common.errors import ToolkitError
from guitar_distill.common.feed import feed_workers, fit_input
from guitar_distill.common.history import MONITOR_STOP, read_history
from guitar_distill.common.resume import epochs_done


def fit_recipe(
    model: keras.Model,
    train: tuple,
    val: tuple,
    recipe: Recipe,
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
    done, finished = epochs_done(model, out_dir, recipe.steps_per_epoch)
    rows = [r for r in read_history(out_dir / "history.csv") if r["epoch"] <= done]
    if finished or done >= recipe.max_epochs or early_stopping_state(rows)[1] >= recipe.patience:
        return rows
    classes = int((weights_of or model).output_shape[-1])  # a distiller's own output has no static shape
    mixing = training_mixing(recipe, classes) if recipe.mix != "none" else None
    feed = AugmentedBatches(
        *train,
        batch_size=recipe.batch_size,
        seed=recipe.seed,
        start_batch=done * recipe.steps_per_epoch,
        batch_targets=batch_targets,
        period=stream_period,
        augment=training_augmentation(recipe),
        mixing=mixing,
        corruption=training_corruption(recipe),
        **feed_workers(),
    )
    val_x, val_y = np.asarray(val[0], dtype=np.float32), val[1]
    if mixing:  # the loss takes class-probability rows, validation's too (distillation's beside its teacher outputs)
        one_hot = np.eye(mixing.num_classes, dtype=np.float32)
        val_y = (one_hot[val_y[0]], *val_y[1:]) if isinstance(val_y, tuple) else one_hot[val_y]
    if done:
        print(f"resuming from {out_dir / 'backup'}: {done} of at most {recipe.max_epochs} epochs done")
    try:
        model.fit(
            fit_input(feed, (recipe.max_epochs - done) * recipe.steps_per_epoch),
            steps_per_epoch=recipe.steps_per_epoch,
            epochs=recipe.max_epochs,
            initial_epoch=done,
            validation_data=(val_x, val_y),
            batch_size=recipe.batch_size,
            callbacks=run_callbacks(recipe, out_dir, rows, done, weights_of),
            shuffle=False,
            verbose=int(os.environ.get("KERAS_VERBOSE", 1 if sys.stdout.isatty() else 2)),
        )
    except KeyboardInterrupt:
        raise ToolkitError(
            f"\ninterrupted: {completed_epochs(out_dir / 'backup')} complete epoch(s) saved in {out_dir / 'backup'} "
            f"(history.csv and best.weights.h5 beside it); the epoch in progress is lost. Resume with:\n"
            f"  {command_name()} {' '.join(sys.argv[1:])}".rstrip()
        ) from None
    return rows


def run_callbacks(recipe: Recipe, out_dir: Path, rows: list[dict], done: int, weights_of) -> list:
    """History and its curves, the averaged weights, the best snapshot, early stopping, the wall clock, then the
    backup."""
    callbacks = [
        ReseedEachStep(recipe.seed),
        HistoryWriter(out_dir / "history.csv", rows, recipe.steps_per_epoch * recipe.batch_size),
        CurvesWriter(out_dir / "curves.png", rows, recipe.max_epochs, recipe.phases),
        *([AveragedWeights(resumed=done > 0)] if recipe.ema_momentum else []),
        BestSnapshot(out_dir / "best.weights.h5", rows, weights_of=weights_of),
        ResumableEarlyStopping(rows, monitor=MONITOR_STOP, patience=recipe.patience, verbose=1),
    ]
    if recipe.max_minutes > 0:
        callbacks.append(WallClockBudget(recipe.max_minutes))
    # Last, so a step counts as done only once history and best snapshot are written.
    callbacks.append(
        keras.callbacks.BackupAndRestore(str(out_dir / "backup"), double_checkpoint=True, delete_checkpoint=False)
    )
    return callbacks
