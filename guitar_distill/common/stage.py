"""What every training stage does around its fit: the run folder, the summary."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from guitar_distill.common.artifacts import read_json, stage_dir, write_json, write_labels
from guitar_distill.common.config import Preset, Recipe, as_dict, read_config
from guitar_distill.common.errors import ToolkitError
from guitar_distill.common.manifest import DataInfo, load_data_info

# A longer budget may continue a run: these fields of the stage's own table may grow on resume.
EXTENDABLE = ("max_epochs", "patience")
# A wall-clock cap says when this invocation stops, not what the run is: it may differ on resume.
RUN_LIMITS = ("max_minutes",)


def table_changes(old: Preset, cfg: Preset, table: str) -> list[str]:
    """The fields of `table` whose values differ between two configs, sorted."""
    theirs, ours = as_dict(getattr(old, table)), as_dict(getattr(cfg, table))
    return sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))


def check_upstream(artifacts: Path, cfg: Preset, needs: dict[str, tuple[str, ...]]) -> None:
    """The config.json of each stage this one reads: its `needs[stage]` tables must equal this run's.

    A stage made with another preset (data built with --preset demo, a teacher run with --preset
    full on it) fails here, before any work, with the fields that differ and the two ways out.
    A missing upstream folder is left to the stage's own check, which names the command to run.
    """
    for stage, tables in needs.items():
        path = Path(artifacts) / stage / "config.json"
        if not path.exists():
            continue
        upstream = read_config(path)
        for table in tables:
            fields = table_changes(upstream, cfg, table)
            if fields:
                raise ToolkitError(
                    f"{path.parent} was made with preset {upstream.name!r}, whose [{table}] differs from this "
                    f"run's (preset {cfg.name!r}) in: {', '.join(fields)}. Run with --preset "
                    f"{upstream.name} (the same --set overrides), or remake {stage} with this preset, "
                    f"or use another --artifacts root"
                )


def prepare_run_dir(artifacts: Path, stage: str, cfg: Preset, fresh: bool, keys: tuple[str, ...], grows: str) -> Path:
    """The stage folder; refuses to resume a run whose config differs in the `keys` tables.

    The one allowed difference is a larger `max_epochs` (and `patience`) in the `grows` table, the one the
    stage trains from: the run goes on from where it stopped, its schedule now spanning the new length,
    and config.json's "extended" list records each such change so reports can say so.
    """
    check_upstream(artifacts, cfg, {"data": ("data",)})
    out = Path(artifacts) / stage
    if fresh and out.exists():
        shutil.rmtree(out)
    out = stage_dir(artifacts, stage)
    saved = out / "config.json"
    extended = []
    if saved.exists():
        extended = read_json(saved).get("extended", [])
        grown = grown_fields(read_config(saved), cfg, keys, grows, saved)
        if grown:
            extended.append(extension(out, stage, grown, getattr(cfg, grows).max_epochs))
    write_json(saved, {**as_dict(cfg), "extended": extended})
    return out


def grown_fields(old: Preset, cfg: Preset, keys: tuple[str, ...], grows: str, saved: Path) -> dict:
    """{field: (before, now)} of the `grows` table's EXTENDABLE fields that grew; any other change is an error
    naming the fields."""
    free = EXTENDABLE + RUN_LIMITS
    changed = [f"{t}.{f}" for t in keys for f in table_changes(old, cfg, t) if not (t == grows and f in free)]
    before, now = getattr(old, grows), getattr(cfg, grows)
    grown = {f: (getattr(before, f), getattr(now, f)) for f in EXTENDABLE if getattr(before, f) != getattr(now, f)}
    changed += [f"{grows}.{f} ({a} -> {b}: it may only grow)" for f, (a, b) in grown.items() if b < a]
    if changed:
        raise ToolkitError(
            f"{saved.parent} holds a run made with another config ({saved}): {', '.join(changed)} changed; "
            f"rerun with --fresh to start over, or use another --artifacts root"
        )
    return grown


def extension(out: Path, stage: str, grown: dict, max_epochs: int) -> dict:
    """The "extended" record of a longer budget, and the line that says so; a finished run cannot grow."""
    if (out / "metrics.json").exists() and not (out / "backup").exists():
        raise ToolkitError(
            f"{out} holds a finished run whose resume state was removed, so it cannot be extended "
            f"to {max_epochs} epochs; rerun with --fresh to train the longer run"
        )
    meta = out / "backup" / "training_metadata.json"
    done = read_json(meta)["epoch"] if meta.exists() else None
    print(
        f"{stage}: extending the run in {out}: "
        + ", ".join(f"{f} {a} -> {b}" for f, (a, b) in grown.items())
        + " (the schedule now spans the new length from where the run stopped)"
    )
    return {"after_epoch": done, **{f: {"from": a, "to": b} for f, (a, b) in grown.items()}}


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
        plot_curves(rows, self.out / "curves.png", title)
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
