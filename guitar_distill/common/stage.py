"""What every training stage does around its fit: the run (its folder, data and runtime), the summary."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from guitar_distill.common.artifacts import read_json, write_json, write_labels
from guitar_distill.common.config import Preset, Recipe
from guitar_distill.common.manifest import DataInfo, load_data_info
from guitar_distill.common.resume import prepare_run_dir


@dataclass
class TrainingRun:
    """One training stage's run: its folder, the recipe table, the data, the runtime and the clock.

    Every training stage is this skeleton: `open_training_run`, build and compile a model, `fit`,
    `finish`. What differs between the teacher, the baseline and distillation is the model.
    """

    folder: str
    out: Path
    cfg: Preset
    recipe: Recipe  # the table fit reads: cfg.teacher or cfg.student
    info: DataInfo
    splits: dict  # {split: (images, labels)}
    runtime: dict
    started: float  # time.perf_counter() when the run was opened

    @property
    def classes(self) -> list[str]:
        return self.info.classes

    def fit(self, model, val: tuple | None = None, **kwargs) -> list[dict]:
        """`common.training.fit_recipe` on this run's train split and (by default) its val split."""
        from guitar_distill.common.training import fit_recipe

        return fit_recipe(
            model, self.splits["train"], self.splits["val"] if val is None else val, self.recipe, self.out, **kwargs
        )

    def finish(self, model, rows: list[dict], name: str, title: str, extra=None) -> dict:
        """The best snapshot saved as model.keras with its labels and curves, scored on every split into
        metrics.json; the resume state removed; the summary printed."""
        from guitar_distill.common.plots import plot_curves
        from guitar_distill.common.progress import console
        from guitar_distill.common.runtimes import predict_all

        save_best(model, self.out)
        write_labels(self.out, self.classes)
        plot_curves(rows, self.out / "curves.png", title, self.recipe.phases)
        probs = {s: predict_all(model, x) for s, (x, _) in self.splits.items()}
        metrics = self.metrics(model, rows, name, probs, extra(probs) if callable(extra) else extra or {})
        write_json(self.out / "metrics.json", metrics)
        # The run is complete: its resume state (weights and optimiser, 360 MB for the teacher) goes.
        shutil.rmtree(self.out / "backup", ignore_errors=True)
        scores = ", ".join(f"{s} accuracy {metrics[f'{s}_accuracy']:.3f}" for s in self.splits)
        console.print(
            f"{name} done: best epoch {metrics['best_epoch']} of {len(rows)}; {scores}; "
            f"{metrics['train_images_per_s']:.1f} training images/s; {self.folder} wall time "
            f"{time.perf_counter() - self.started:.0f} s"
        )
        console.print(f"files: {self.out}/model.keras, best.weights.h5, history.csv, curves.png, metrics.json")
        return metrics

    def metrics(self, model, rows: list[dict], name: str, probs: dict, extra: dict) -> dict:
        import statistics

        from guitar_distill.common.artifacts import environment_info
        from guitar_distill.common.history import best_epoch
        from guitar_distill.common.runtimes import accuracy

        extended = read_json(self.out / "config.json").get("extended")
        return {
            "model": name,
            "preset": self.cfg.name,
            "parameters": model.count_params(),
            "best_epoch": best_epoch(rows)["epoch"],
            "epochs_run": len(rows),
            **{f"{s}_accuracy": accuracy(probs[s], y) for s, (_, y) in self.splits.items()},
            **extra,
            "train_images_per_s": statistics.median(r["train_images_per_s"] for r in rows),
            "train_seconds": sum(r["seconds"] for r in rows),
            **self.runtime,
            "environment": environment_info(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **({"extended": extended} if extended else {}),
        }


def save_best(model, out: Path) -> None:
    """The best snapshot into `model` and out/model.keras. A finished run invoked again keeps its model file
    byte for byte: later stages key caches (the stored teacher outputs) on its sha256."""
    from guitar_distill.common.models import save_model

    model.load_weights(out / "best.weights.h5")
    saved = out / "model.keras"
    if not saved.exists() or saved.stat().st_mtime < (out / "best.weights.h5").stat().st_mtime:
        save_model(model, saved)


def open_training_run(
    artifacts: Path, fresh: bool, cfg: Preset, folder: str, keys: tuple[str, ...], recipe: str
) -> TrainingRun:
    """The run folder (`prepare_run_dir`, resumable, the `recipe` table may grow), its runtime and the
    decoded splits."""
    from guitar_distill.common.cache import load_splits
    from guitar_distill.common.devices import configure_runtime

    started = time.perf_counter()
    out = prepare_run_dir(artifacts, folder, cfg, fresh, keys, grows=recipe)
    info = load_data_info(artifacts)
    table = getattr(cfg, recipe)
    return TrainingRun(folder, out, cfg, table, info, load_splits(info), configure_runtime(table), started)
