"""`python -m guitar_distill.teacher.diagnose`: how well a teacher fits, where it tests best, which rates it takes.

Three measurements of a saved teacher (default: the release in models/), before hours go into training it:

    fit          top-1 on its own training photos, un-augmented, beside validation: underfitting shows here
    resolution   validation top-1 at each --sizes, batch-norm statistics as they are and re-estimated on
                 --bn-photos training photos at that size, with and without flip averaging (teacher/fixres.py)
    lr range     --lr-steps steps of the preset's teacher recipe from the teacher's weights, the rate growing
                 geometrically from --lr-min to --lr-max; the loss of each step (Smith 2017)

Writes diagnosis.json and diagnosis.md (and lr_range.png) in <artifacts>/diagnose/.
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
    return parser.parse_args(argv)


def fit_part(model, info, splits) -> dict:
    from guitar_distill.common.runtimes import accuracy, predict_all

    return {split: accuracy(predict_all(model, x), y) for split, (x, y) in splits.items() if split != "test"}


def resolution_part(model, info, sizes: list[int], bn_photos: int, seed: int) -> list[dict]:
    """Validation top-1 at each size: statistics as trained and re-estimated, each plain and flip-averaged."""
    from guitar_distill.common.cache import load_split
    from guitar_distill.common.progress import console
    from guitar_distill.common.runtimes import accuracy, predict_all
    from guitar_distill.teacher.fixres import at_resolution, predict_flip_averaged, reestimate_batch_norm

    rows = []
    for size in sizes:
        val_x, val_y = load_split(info, "val", size)
        train_x, _ = load_split(info, "train", size)
        pick = np.sort(np.random.default_rng(seed).permutation(len(train_x))[:bn_photos])
        sized = at_resolution(model, size)
        row = {
            "size": size,
            "as_is": accuracy(predict_all(sized, val_x), val_y),
            "as_is_flip": accuracy(predict_flip_averaged(sized, val_x), val_y),
        }
        reestimate_batch_norm(sized, train_x[pick])
        row["reestimated"] = accuracy(predict_all(sized, val_x), val_y)
        row["reestimated_flip"] = accuracy(predict_flip_averaged(sized, val_x), val_y)
        console.print(f"resolution {size}px: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "size"))
        rows.append(row)
    return rows


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
    if args.lr_steps:
        report["lr_range"] = lr_range_part(cfg, info, splits, teacher, args.lr_steps, args.lr_min, args.lr_max)
        plot_lr_range(report["lr_range"], out / "lr_range.png")
    write_json(out / "diagnosis.json", report)
    write_text(out / "diagnosis.md", render(report))
    console.print(f"files: {out}/diagnosis.md, diagnosis.json" + (", lr_range.png" if args.lr_steps else ""))


if __name__ == "__main__":
    run_cli(main)
