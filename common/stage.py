"""What every training stage does around its fit: the run folder, the summary."""
from __future__ import annotations

import shutil
from pathlib import Path

from common.artifacts import read_json, stage_dir, write_json


def prepare_run_dir(artifacts: Path, stage: str, cfg: dict, fresh: bool, keys: tuple[str, ...]) -> Path:
    """The stage folder; refuses to resume a run whose config differs in the `keys` sections."""
    out = Path(artifacts) / stage
    if fresh and out.exists():
        shutil.rmtree(out)
    out = stage_dir(artifacts, stage)
    saved = out / "config.json"
    if saved.exists() and any(read_json(saved).get(k) != cfg.get(k) for k in keys):
        raise SystemExit(f"{out} holds a run made with another config ({saved}); "
                         f"rerun with --fresh to start over, or use another --artifacts root")
    write_json(saved, cfg)
    return out


def finish_training(model, rows: list[dict], splits: dict, out: Path, cfg: dict, name: str, title: str,
                    runtime: dict, extra: dict | None = None, classes: list[str] | None = None) -> dict:
    """Load the best snapshot, write model.keras, labels, curves and metrics; print the summary."""
    import statistics
    import time

    from common.artifacts import environment_info, write_text
    from common.progress import console
    from common.training import accuracy, best_epoch, plot_curves, predict_probabilities, save_model

    model.load_weights(out / "best.weights.h5")
    # A finished run invoked again keeps its model file byte for byte: later stages key caches
    # (the stored teacher logits) on its sha256.
    if not (out / "model.keras").exists() or (out / "model.keras").stat().st_mtime < (out / "best.weights.h5").stat().st_mtime:
        save_model(model, out / "model.keras")
    if classes:
        write_text(out / "labels.txt", "\n".join(classes) + "\n")
    plot_curves(rows, out / "curves.png", title)
    probs = {s: predict_probabilities(model, x) for s, (x, _) in splits.items()}
    results = {s: accuracy(probs[s], y) for s, (_, y) in splits.items()}
    best = best_epoch(rows)
    metrics = {
        "model": name, "preset": cfg["name"], "parameters": model.count_params(),
        "best_step": best["epoch"], "steps_run": len(rows),
        **{f"{s}_accuracy": v for s, v in results.items()},
        **(extra(probs) if callable(extra) else extra or {}),
        "train_images_per_s": statistics.median(r["train_images_per_s"] for r in rows),
        "train_seconds": sum(r["seconds"] for r in rows),
        **runtime, "environment": environment_info(), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json(out / "metrics.json", metrics)
    console.print(f"{name} done: best step {best['epoch']} of {len(rows)}; "
                  + ", ".join(f"{s} accuracy {v:.3f}" for s, v in results.items())
                  + f"; {metrics['train_images_per_s']:.1f} training images/s")
    console.print(f"files: {out}/model.keras, best.weights.h5, history.csv, curves.png, metrics.json")
    return metrics
