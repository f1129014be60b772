"""`python -m guitar_distill.teacher.diagnose`: how well a teacher fits, where it tests best, which rates it takes.

Three measurements of a saved teacher (default: the release in models/), before hours go into training it:

    fit          top-1 on its own training photos, un-augmented, beside validation: underfitting shows here
    resolution   validation top-1 at each --sizes, batch-norm statistics as they are and re-estimated on
                 --bn-photos training photos at that size, with and without flip averaging (teacher/fixres.py)
    lr range     --lr-steps steps of the preset's teacher recipe from the teacher's weights, the rate growing
                 geometrically from --lr-min to --lr-max; the loss of each step (Smith 2017)

Writes diagnosis.json and diagnosis.md (and lr_range.png) in <artifacts>/diagnose/. With --save-best DIR, the
teacher at its best validation side and statistics (one pass, no flip: what stored outputs and a deployed teacher
compute) is written to DIR as a teacher stage's folder (model.keras, labels.txt, metrics.json and the source run's
records), for `distill.teacher_size` and the release.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from guitar_distill.common.artifacts import environment_info, write_json, write_text
from guitar_distill.common.config import Preset, resolve_config, resolve_project_path, stage_parser
from guitar_distill.common.errors import ToolkitError, run_cli
from guitar_distill.common.markdown import markdown_table
from guitar_distill.common.quiet import quiet_start

RELEASED_TEACHER = "models/teacher/keras_fp16/model.keras"


def parse_args(argv=None):
    parser = stage_parser(
        "Diagnose a teacher: training fit, test resolution with batch-norm re-estimation, learning-rate range.",
        default_preset="stretch",
    )
    parser.add_argument("--teacher", default=RELEASED_TEACHER, help="teacher .keras file (default: %(default)s)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[112, 128, 144, 160], help="test resolutions")
    parser.add_argument("--bn-photos", type=int, default=1024, help="training photos to re-estimate batch norm on")
    parser.add_argument("--lr-steps", type=int, default=100, help="steps of the range test (0: skip it)")
    parser.add_argument("--lr-min", type=float, default=1e-4)
    parser.add_argument("--lr-max", type=float, default=1.0)
    parser.add_argument("--skip", nargs="*", default=[], choices=["fit", "resolution"], help="parts to leave out")
    parser.add_argument("--render", action="store_true", help="rewrite diagnosis.md from diagnosis.json, no model run")
    parser.add_argument(
        "--save-best",
        type=Path,
        metavar="DIR",
        help="write the teacher at its best validation side (of --sizes) to DIR as a teacher stage's folder",
    )
    return parser.parse_args(argv)


def fit_part(model, info, splits) -> dict:
    from guitar_distill.common.runtimes import accuracy, predict_all

    return {split: accuracy(predict_all(model, x), y) for split, (x, y) in splits.items() if split != "test"}


def resolution_part(model, info, sizes: list[int], bn_photos: int, seed: int) -> list[dict]:
    """Validation top-1 at each size: statistics as trained and re-estimated, each plain and flip-averaged."""
    from guitar_distill.common.cache import load_split
    from guitar_distill.common.progress import console
    from guitar_distill.common.runtimes import accuracy, predict_all
    from guitar_distill.teacher.fixres import at_resolution, predict_flip_averaged

    rows = []
    for size in sizes:
        val_x, val_y = load_split(info, "val", size)
        train_x, _ = load_split(info, "train", size)
        sized = at_resolution(model, size)
        row = {
            "size": size,
            "as_is": accuracy(predict_all(sized, val_x), val_y),
            "as_is_flip": accuracy(predict_flip_averaged(sized, val_x), val_y),
        }
        reestimate_on_training_photos(sized, train_x, bn_photos, seed)
        row["reestimated"] = accuracy(predict_all(sized, val_x), val_y)
        row["reestimated_flip"] = accuracy(predict_flip_averaged(sized, val_x), val_y)
        console.print(f"resolution {size}px: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "size"))
        rows.append(row)
    return rows


def reestimate_on_training_photos(model, train_x, bn_photos: int, seed: int) -> None:
    """Batch-norm statistics re-estimated on a seeded `bn_photos` of the training photos: the same photos for a
    measurement and a save, in batches of 64 (fewer when there are fewer photos)."""
    from guitar_distill.teacher.fixres import reestimate_batch_norm

    pick = np.sort(np.random.default_rng(seed).permutation(len(train_x))[:bn_photos])
    reestimate_batch_norm(model, train_x[pick], batch_size=min(64, len(pick)))


def best_side(rows: list[dict]) -> tuple[int, str]:
    """(side, "as_is" or "reestimated") with the best single-pass validation top-1; a tie keeps the smaller side
    and the statistics as trained."""
    *_, size, stats = max(
        (r[s], -r["size"], s == "as_is", r["size"], s) for r in rows for s in ("as_is", "reestimated")
    )
    return size, stats


def save_best_side(model, info, rows: list[dict], bn_photos: int, seed: int, source: Path, dest: Path):
    """The teacher at `best_side(rows)` as a teacher stage's folder in `dest`: model.keras, labels.txt, the source
    run's config, history and curves, and metrics.json with every split scored at that side."""
    from guitar_distill.common.artifacts import copy_run_records, read_json, write_labels
    from guitar_distill.common.cache import load_split
    from guitar_distill.common.models import save_model
    from guitar_distill.common.runtimes import split_accuracies, split_probabilities
    from guitar_distill.teacher.fixres import at_resolution

    if dest.resolve() == source.parent.resolve():
        raise ToolkitError(f"--save-best {dest}: that is the source teacher's own folder; name another")
    size, stats = best_side(rows)
    sized = at_resolution(model, size)
    if stats == "reestimated":
        train_x, _ = load_split(info, "train", size)
        reestimate_on_training_photos(sized, train_x, bn_photos, seed)
    dest.mkdir(parents=True, exist_ok=True)
    save_model(sized, dest / "model.keras")
    write_labels(dest, info.classes)
    copy_run_records(source.parent, dest)
    before = read_json(source.with_name("metrics.json")) if source.with_name("metrics.json").exists() else {}
    scored = split_accuracies(split_probabilities(sized, info, size), info)
    fixres = {
        "source": str(source),
        "image_size": size,
        "batch_norm": stats,
        "bn_photos": min(bn_photos, len(train_x)) if stats == "reestimated" else 0,
    }
    write_json(dest / "metrics.json", {**before, **scored, "fixres": fixres})
    return {**fixres, **scored, "folder": str(dest)}


class StepLoss:
    """Keras callback factory: the loss of each one-step epoch, with the rate it trained at."""

    @staticmethod
    def make(rows: list):
        import keras

        class Record(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
                rows.append({"step": epoch + 1, "learning_rate": lr, "loss": float(logs["loss"])})

        return Record()


def lr_range_part(cfg: Preset, info, splits, teacher: Path, steps: int, lr_min: float, lr_max: float) -> dict:
    """Train `steps` single-step epochs from the teacher's weights, the rate growing geometrically."""
    import keras

    from guitar_distill.common.augment import AugmentedBatches, training_augmentation
    from guitar_distill.common.devices import configure_runtime
    from guitar_distill.common.recipe import recipe_loss, recipe_optimizer
    from guitar_distill.teacher.model import build_teacher
    from guitar_distill.teacher.warm_start import start_from_teacher

    tcfg = cfg.teacher
    configure_runtime(tcfg)
    model = build_teacher(len(info.classes), info.image_size, head=tcfg.head)
    start_from_teacher(model, teacher)
    growth = (lr_max / lr_min) ** (1 / max(steps - 1, 1))
    rate = keras.optimizers.schedules.ExponentialDecay(lr_min, decay_steps=1, decay_rate=growth)
    model.compile(optimizer=recipe_optimizer(replace(tcfg, ema_momentum=0.0), rate), loss=recipe_loss(tcfg))
    feed = AugmentedBatches(
        *splits["train"], batch_size=tcfg.batch_size, seed=tcfg.seed, augment=training_augmentation(tcfg)
    )
    rows: list[dict] = []
    started = time.perf_counter()
    model.fit(feed, steps_per_epoch=1, epochs=steps, callbacks=[StepLoss.make(rows)], verbose=0)
    seconds = time.perf_counter() - started
    for row in rows:  # the optimizer's rate after the step; the step itself used the one before
        row["learning_rate"] /= growth
    return {"rows": rows, "seconds": seconds, **lr_summary(rows)}


def lr_summary(rows: list[dict], smoothing: float = 0.9) -> dict:
    """The rate at the smoothed loss's minimum, and the rates past it where the loss first rises by 10 % and
    by 50 %: from trained weights the loss is flat at low rates, and the highest rate still on the flat is
    the one a schedule can start from."""
    smooth, avg = [], 0.0
    for k, row in enumerate(rows):
        avg = smoothing * avg + (1 - smoothing) * row["loss"]
        smooth.append(avg / (1 - smoothing ** (k + 1)))
    for row, value in zip(rows, smooth):
        row["smoothed_loss"] = value
    low = int(np.argmin(smooth))

    def first_above(factor):
        past = [r["learning_rate"] for r, v in zip(rows[low:], smooth[low:]) if v > factor * smooth[low]]
        return past[0] if past else None

    return {"min_loss_lr": rows[low]["learning_rate"], "rises_lr": first_above(1.1), "diverged_lr": first_above(1.5)}


def rate(value) -> str:
    return "never" if value is None else f"{value:.3g}"


def render(report: dict) -> str:
    lines = [
        f"# Teacher diagnosis: {report['teacher']}",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}",
        "",
    ]
    if "fit" in report:
        lines += [
            "## Fit (un-augmented, at the trained size)",
            "",
            markdown_table(["split", "top-1"], [[s, f"{v:.3f}"] for s, v in report["fit"].items()]),
        ]
    if report.get("resolution"):
        header = ["test px", "as is", "as is + flip", "re-estimated", "re-estimated + flip"]
        rows = [
            [r["size"], *(f"{r[k]:.3f}" for k in ("as_is", "as_is_flip", "reestimated", "reestimated_flip"))]
            for r in report["resolution"]
        ]
        lines += ["## Validation top-1 by test resolution", "", markdown_table(header, rows)]
    if report.get("saved"):
        saved = report["saved"]
        scores = ", ".join(
            f"{k.removesuffix('_accuracy')} {v:.3f}" for k, v in saved.items() if k.endswith("_accuracy")
        )
        lines += [
            "",
            f"Saved: the teacher at {saved['image_size']} px, batch-norm statistics "
            f"{saved['batch_norm'].replace('_', ' ')} (the best single-pass validation top-1 above), "
            f"in `{saved['folder']}`: {scores}.",
        ]
    if report.get("lr_range"):
        lr = report["lr_range"]
        picks = lr["rows"][:: max(1, len(lr["rows"]) // 12)]
        lines += [
            "## Learning-rate range test",
            "",
            f"{len(lr['rows'])} steps in {lr['seconds']:.0f} s (compilation included). The smoothed loss is "
            f"lowest at lr {rate(lr['min_loss_lr'])}, 10 % above that from lr {rate(lr['rises_lr'])} and "
            f"50 % above from lr {rate(lr['diverged_lr'])}.",
            "",
            markdown_table(
                ["step", "lr", "loss", "smoothed"],
                [
                    [r["step"], f"{r['learning_rate']:.3g}", f"{r['loss']:.3f}", f"{r['smoothed_loss']:.3f}"]
                    for r in picks
                ],
            ),
        ]
    return "\n".join(lines)


def plot_lr_range(lr: dict, path: Path) -> None:
    from guitar_distill.common.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["learning_rate"] for r in lr["rows"]], [r["smoothed_loss"] for r in lr["rows"]])
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss (smoothed)", title="learning-rate range test")
    save_figure(fig, path)


def rerender(out: Path) -> None:
    """diagnosis.md and lr_range.png again from diagnosis.json (the summary recomputed from the recorded steps)."""
    from guitar_distill.common.artifacts import read_json

    report = read_json(out / "diagnosis.json")
    if report.get("lr_range"):
        report["lr_range"].update(lr_summary(report["lr_range"]["rows"]))
        plot_lr_range(report["lr_range"], out / "lr_range.png")
    write_json(out / "diagnosis.json", report)
    write_text(out / "diagnosis.md", render(report))
    print(f"files: {out}/diagnosis.md, diagnosis.json")


def main(argv=None):
    import sys

    args = parse_args(argv)
    out = args.artifacts / "diagnose"
    if args.render:
        return rerender(out)
    cfg = resolve_config(args)
    quiet_start()
    from guitar_distill.common.cache import load_splits
    from guitar_distill.common.manifest import load_data_info
    from guitar_distill.common.models import float32_copy, load_model_file
    from guitar_distill.common.progress import console

    teacher = resolve_project_path(args.teacher)
    if not teacher.is_file():
        raise ToolkitError(f"teacher file not found: {teacher}")
    info = load_data_info(args.artifacts)
    splits = load_splits(info)
    env = environment_info()
    report = {
        "teacher": str(args.teacher),
        "command": "python -m guitar_distill.teacher.diagnose " + " ".join(sys.argv[1:]),
        "machine": f"{env['processor']}, flags {' '.join(env['simd'])}",
        "environment": env,
    }
    model = float32_copy(load_model_file(teacher))
    if "fit" not in args.skip:
        report["fit"] = fit_part(model, info, splits)
        console.print("fit: " + ", ".join(f"{s} {v:.3f}" for s, v in report["fit"].items()))
    if "resolution" not in args.skip:
        report["resolution"] = resolution_part(model, info, args.sizes, args.bn_photos, cfg.teacher.seed)
    if args.save_best:
        if not report.get("resolution"):
            raise ToolkitError("--save-best picks a side from the resolution part: do not --skip resolution")
        report["saved"] = save_best_side(
            model, info, report["resolution"], args.bn_photos, cfg.teacher.seed, teacher, args.save_best
        )
        console.print(
            f"saved the teacher at {report['saved']['image_size']}px ({report['saved']['batch_norm']} batch-norm "
            f"statistics): validation top-1 {report['saved']['val_accuracy']:.3f}, {args.save_best}/model.keras"
        )
    if args.lr_steps:
        report["lr_range"] = lr_range_part(cfg, info, splits, teacher, args.lr_steps, args.lr_min, args.lr_max)
        plot_lr_range(report["lr_range"], out / "lr_range.png")
    write_json(out / "diagnosis.json", report)
    write_text(out / "diagnosis.md", render(report))
    console.print(f"files: {out}/diagnosis.md, diagnosis.json" + (", lr_range.png" if args.lr_steps else ""))


if __name__ == "__main__":
    run_cli(main)
