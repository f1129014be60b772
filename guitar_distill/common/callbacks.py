"""The Keras callbacks of a training run: history, curves, best snapshot, early stopping, reseeding, wall clock,
averaged weights; each keeps its state across a resume."""

from __future__ import annotations

import json
import time
from pathlib import Path

import keras
import numpy as np

from guitar_distill.common.artifacts import atomic_path
from guitar_distill.common.history import MONITOR_BEST, MONITOR_STOP, best_epoch, write_history


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


class CurvesWriter(keras.callbacks.Callback):
    """curves.png redrawn after every step from the history so far, so that a run of hours can be watched; the
    stage's finish draws the final one."""

    def __init__(self, path: Path, rows: list[dict], max_epochs: int, phases=()):
        super().__init__()
        self.path, self.rows, self.max_epochs, self.phases = Path(path), rows, max_epochs, phases

    def on_epoch_end(self, epoch, logs=None):
        from guitar_distill.common.plots import plot_curves

        title = f"{self.path.parent.name}: epoch {epoch + 1} of at most {self.max_epochs}"
        plot_curves(self.rows, self.path, title, self.phases)


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
