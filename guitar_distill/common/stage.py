"""What every training stage does around its fit: the run folder, the summary."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from guitar_distill.common.artifacts import read_json, stage_dir, write_json, write_labels
from guitar_distill.common.errors import ToolkitError
from guitar_distill.common.manifest import DataInfo, load_data_info

# A longer budget may continue a run: these fields of the stage's own table may grow on resume.
EXTENDABLE = ("max_epochs", "patience")
# A wall-clock cap says when this invocation stops, not what the run is: it may differ on resume.
RUN_LIMITS = ("max_minutes",)
# Fields added after runs had started: a run whose config.json lacks one had it at this value (off).
ADDED_FIELDS = {
    "ema_momentum": 0.0,
    "phases": [],
    "mix": "none",
    "mix_alpha": 0.2,
    "mix_from_epoch": 0,
    "corrupt": [],
    "corrupt_probability": 0.5,
    "corrupt_severity": [1, 3],
    "teacher_size": 0,
}


def check_upstream(artifacts: Path, cfg: dict, needs: dict[str, tuple[str, ...]]) -> dict[str, dict]:
    """The config.json of each stage this one reads; its `needs[stage]` tables must equal this run's.

    A stage made with another preset (data built with --preset demo, a teacher run with --preset
    full on it) fails here, before any work, with the fields that differ and the two ways out.
    A missing upstream folder is left to the stage's own check, which names the command to run.
    """
    configs = {}
    for stage, tables in needs.items():
        path = Path(artifacts) / stage / "config.json"
        if not path.exists():
            continue
        upstream = configs[stage] = read_json(path)
        for table in tables:
            theirs, ours = upstream.get(table, {}), cfg.get(table, {})
            if theirs != ours:
                fields = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
                raise ToolkitError(
                    f"{path.parent} was made with preset {upstream.get('name')!r}, whose [{table}] differs from this "
                    f"run's (preset {cfg.get('name')!r}) in: {', '.join(fields)}. Run with --preset "
                    f"{upstream.get('name')} (the same --set overrides), or remake {stage} with this preset, "
                    f"or use another --artifacts root"
                )
    return configs


def prepare_run_dir(artifacts: Path, stage: str, cfg: dict, fresh: bool, keys: tuple[str, ...], grows: str) -> Path:
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
    if saved.exists():
        old = read_json(saved)
        grown = grown_fields(old, cfg, keys, grows, saved)
        cfg["extended"] = list(old.get("extended", []))
        if grown:
            cfg["extended"].append(extension(out, stage, grown, cfg[grows]["max_epochs"]))
    write_json(saved, cfg)
    return out


def grown_fields(old: dict, cfg: dict, keys: tuple[str, ...], grows: str, saved: Path) -> dict:
    """{field: (before, now)} of the `grows` table's EXTENDABLE fields that grew; any other change is an error
    naming the fields."""
    for table in keys:  # a run from before a field existed had it off
        for field, value in ADDED_FIELDS.items():
            if field in cfg.get(table, {}):
                old.setdefault(table, {}).setdefault(field, value)
    free = EXTENDABLE + RUN_LIMITS
    changed = [
        f"{table}.{field}"
        for table in keys
        for field in sorted(set(old.get(table, {})) | set(cfg.get(table, {})))
        if old.get(table, {}).get(field) != cfg.get(table, {}).get(field) and not (table == grows and field in free)
    ]
    grown = {f: (old[grows].get(f), cfg[grows].get(f)) for f in EXTENDABLE if old[grows].get(f) != cfg[grows].get(f)}
    changed += [f"{grows}.{f} ({a} -> {b}: it may only grow)" for f, (a, b) in grown.items() if a is None or b < a]
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
    cfg: dict
    recipe: dict  # the table fit reads: cfg["teacher"] or cfg["student"]
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
        """`finish_training`, then the stage's wall time."""
        from guitar_distill.common.progress import console

        metrics = finish_training(
            model, rows, self.splits, self.out, self.cfg, name, title, self.runtime, extra=extra, classes=self.classes
        )
        console.print(f"{self.folder} wall time {time.perf_counter() - self.started:.0f} s")
        return metrics


def open_training_run(args, cfg: dict, folder: str, keys: tuple[str, ...], recipe: str) -> TrainingRun:
    """The run folder (`prepare_run_dir`, resumable), the runtime for `cfg[recipe]` and the decoded splits."""
    from guitar_distill.common.cache import load_splits
    from guitar_distill.common.devices import configure_runtime

    started = time.perf_counter()
    out = prepare_run_dir(args.artifacts, folder, cfg, args.fresh, keys, grows=recipe)
    info = load_data_info(args.artifacts)
    runtime = configure_runtime(cfg[recipe])
    return TrainingRun(folder, out, cfg, cfg[recipe], info, load_splits(info), runtime, started)


def finish_training(
    model,
    rows: list[dict],
    splits: dict,
    out: Path,
    cfg: dict,
    name: str,
    title: str,
    runtime: dict,
    extra: dict | None = None,
    classes: list[str] | None = None,
) -> dict:
    """Load the best snapshot, write model.keras, labels, curves and metrics; print the summary."""
    import statistics
    import time

    from guitar_distill.common.artifacts import environment_info
    from guitar_distill.common.history import best_epoch
    from guitar_distill.common.models import save_model
    from guitar_distill.common.plots import plot_curves
    from guitar_distill.common.progress import console
    from guitar_distill.common.runtimes import accuracy, predict_all

    model.load_weights(out / "best.weights.h5")
    # A finished run invoked again keeps its model file byte for byte: later stages key caches
    # (the stored teacher logits) on its sha256.
    if (
        not (out / "model.keras").exists()
        or (out / "model.keras").stat().st_mtime < (out / "best.weights.h5").stat().st_mtime
    ):
        save_model(model, out / "model.keras")
    if classes:
        write_labels(out, classes)
    plot_curves(rows, out / "curves.png", title)
    probs = {s: predict_all(model, x) for s, (x, _) in splits.items()}
    results = {s: accuracy(probs[s], y) for s, (_, y) in splits.items()}
    best = best_epoch(rows)
    metrics = {
        "model": name,
        "preset": cfg["name"],
        "parameters": model.count_params(),
        "best_epoch": best["epoch"],
        "epochs_run": len(rows),
        **{f"{s}_accuracy": v for s, v in results.items()},
        **(extra(probs) if callable(extra) else extra or {}),
        "train_images_per_s": statistics.median(r["train_images_per_s"] for r in rows),
        "train_seconds": sum(r["seconds"] for r in rows),
        **runtime,
        "environment": environment_info(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **({"extended": cfg["extended"]} if cfg.get("extended") else {}),
    }
    write_json(out / "metrics.json", metrics)
    # The run is complete: its resume state (weights and optimiser, 360 MB for the teacher) goes.
    shutil.rmtree(out / "backup", ignore_errors=True)
    console.print(
        f"{name} done: best epoch {best['epoch']} of {len(rows)}; "
        + ", ".join(f"{s} accuracy {v:.3f}" for s, v in results.items())
        + f"; {metrics['train_images_per_s']:.1f} training images/s"
    )
    console.print(f"files: {out}/model.keras, best.weights.h5, history.csv, curves.png, metrics.json")
    return metrics
