"""`python -m benchmarks.train_rate`: training images/s of a preset's recipe on this machine.

A few mini-batches of real photos through the recipe (augmenting feeder, optimiser step, the
preset's precision policy) for the teacher and the student, after one warm-up batch that pays for
graph building: each step alone, then the same batches through `model.fit` as training feeds it
(`--fit-feed pydataset` measures Keras's own PyDataset path instead, for comparison). Then what an
epoch (the write-up's "step") and 36 of them (where the write-up stopped) cost at the fit rate.
`--profile N` traces N more steps with TensorFlow's profiler and tables where their time went
(op kinds, the backward pass apart, and the costliest op types; the trace stays for TensorBoard).
Writes ARTIFACTS/bench/train_rate_<preset>.{md,json}.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from guitar_distill.benchmarks.record import write_record
from guitar_distill.benchmarks.step_profile import op_profile, traced_steps
from guitar_distill.common.config import Preset, Recipe, resolve_config, stage_parser
from guitar_distill.common.errors import ToolkitError, run_cli
from guitar_distill.common.markdown import markdown_table
from guitar_distill.common.progress import console, progress_bar
from guitar_distill.common.quiet import quiet_start
from guitar_distill.dataset.scan import find_classes, list_files, resolve_source
from guitar_distill.edge.images import load_for_model

WRITEUP_EPOCHS = 36  # where the write-up stopped (its "steps" are epochs)


def timed_batches(model, feed, batches: int, advance) -> dict:
    x, y = feed[0]
    model.train_on_batch(x, y)  # warm-up: tracing and compilation
    advance()
    data_s = step_s = 0.0
    for i in range(1, batches + 1):
        t0 = time.perf_counter()
        x, y = feed[i]
        t1 = time.perf_counter()
        model.train_on_batch(x, y)
        t2 = time.perf_counter()
        data_s, step_s = data_s + t1 - t0, step_s + t2 - t1
        advance()
    images = batches * feed.batch_size
    return {
        "batches": batches,
        "batch_size": feed.batch_size,
        "train_step_images_per_s": images / step_s,
        "with_augmentation_images_per_s": images / (step_s + data_s),
        "augmentation_s_per_batch": data_s / batches,
    }


def timed_fit(model, feed, batches: int, keras_feed: bool) -> float:
    """Images/s through model.fit: the training stages' input (fit_input), or the PyDataset as Keras takes it."""
    from guitar_distill.common.feed import fit_input

    data = feed if keras_feed else fit_input(feed)
    model.fit(data, steps_per_epoch=1, epochs=1, verbose=0)  # warm-up: fit builds its own train function
    t = time.perf_counter()
    model.fit(data, steps_per_epoch=batches, epochs=1, verbose=0)
    return batches * feed.batch_size / (time.perf_counter() - t)


def profile_tables(name: str, p: dict, top: int = 15) -> str:
    """Markdown: a model's traced step by op kind, then its costliest op types."""
    kinds = markdown_table(
        ["kind", "forward and update ms", "backward ms", "share of op time"],
        [
            [k, f"{v['forward+update_ms']:.1f}", f"{v['backward_ms']:.1f}", f"{v['share']:.1%}"]
            for k, v in p["kinds"].items()
        ],
        "lrrr",
    )
    ops = markdown_table(
        ["op type", "phase", "kind", "ms per step", "calls per step", "share"],
        [
            [o["op"], o["phase"], o["kind"], f"{o['ms_per_step']:.1f}", f"{o['calls_per_step']:g}", f"{o['share']:.1%}"]
            for o in p["ops"][:top]
        ],
        "llllrr",
    )
    return (
        f"\n## Step profile: {name} ({p['steps']} traced steps)\n\nStep wall time {p['step_wall_ms']:.0f} ms; "
        f"TensorFlow ops {p['op_ms_per_step']:.0f} ms a step (two ops can run at once on two cores). "
        f"Trace: `{p['trace']}` (TensorBoard's profile plugin opens it).\n\n{kinds}\n{ops}"
    )


def parse_args(argv=None):
    parser = stage_parser(
        "Training images/s of the recipe on this machine, teacher and student.", default_preset="seed"
    )
    parser.add_argument("--batches", type=int, default=3, help="timed mini-batches per model (default: %(default)s)")
    parser.add_argument("--source", type=Path, help="photo folder (default: the preset's)")
    parser.add_argument(
        "--fit-feed",
        choices=("stages", "pydataset"),
        default="stages",
        help="model.fit input: what the training stages feed, or the PyDataset itself (default: %(default)s)",
    )
    parser.add_argument("--models", nargs="+", choices=("teacher", "student"), default=["teacher", "student"])
    parser.add_argument(
        "--jit-compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="Keras' jit_compile (XLA): auto is Keras' default, off on CPU-only TensorFlow (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-norm",
        choices=("fused", "keras"),
        default="fused",
        help="the builders' fused-kernel batch norm, or Keras' own layer for comparison (default: %(default)s)",
    )
    parser.add_argument(
        "--strided-pointwise",
        choices=("subsampled", "keras"),
        default="subsampled",
        help="the teacher builder's strided 1x1 convolutions that subsample first, or Keras' own "
        "Conv2D for comparison (default: %(default)s)",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="STEPS",
        help="trace this many more steps per model with TensorFlow's profiler (default: none)",
    )
    parser.add_argument("--out", type=Path, help="folder for the record (default: ARTIFACTS/bench)")
    args = parser.parse_args(argv)
    if args.profile < 0:
        parser.error("--profile: a number of steps, 0 for none")
    return args


def sample_photos(cfg: Preset, source_flag) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """96 photos spread over every class, at the preset's side: (images, labels, classes)."""
    size = cfg.data.image_size
    source = resolve_source(cfg.data.source, source_flag)
    classes = find_classes(source, list(cfg.data.classes) or None)
    every = list_files(source, classes)
    files = every[:: max(1, len(every) // 96)][:96]
    images = np.stack([load_for_model(source / rel, size) for rel, _ in files])
    return images, np.array([classes.index(label) for _, label in files]), classes


def rate_model(args, name: str, mcfg: Recipe, build, images, labels, advance, stem: str) -> dict:
    """One model's rates: bare steps, steps with augmentation, model.fit; then, if asked, a profile."""
    from guitar_distill.common.augment import AugmentedBatches, training_augmentation
    from guitar_distill.common.devices import configure_runtime
    from guitar_distill.common.layers import with_training_layers
    from guitar_distill.common.recipe import recipe_loss, recipe_optimizer

    runtime = configure_runtime(mcfg)  # the preset's precision policy (bfloat16 on the cpu preset)
    model = build()  # the builders' layers are the fast training layers already
    if args.batch_norm == "keras" or args.strided_pointwise == "keras":
        model = with_training_layers(
            model,
            fused_batch_norm=args.batch_norm == "fused",
            subsampled_pointwise=args.strided_pointwise == "subsampled",
        )
    jit = {"auto": "auto", "on": True, "off": False}[args.jit_compile]
    model.compile(optimizer=recipe_optimizer(mcfg), loss=recipe_loss(mcfg), jit_compile=jit)
    feed = AugmentedBatches(images, labels, mcfg.batch_size, mcfg.seed, augment=training_augmentation(mcfg))
    r = timed_batches(model, feed, args.batches, advance)
    r["fit_images_per_s"] = timed_fit(model, feed, args.batches, args.fit_feed == "pydataset")
    advance()
    r["hours_per_epoch"] = mcfg.steps_per_epoch * r["batch_size"] / r["fit_images_per_s"] / 3600
    r[f"hours_for_{WRITEUP_EPOCHS}_epochs"] = r["hours_per_epoch"] * WRITEUP_EPOCHS
    r["parameters"] = model.count_params()
    r["dtype_policy"], r["steps_per_epoch"] = runtime["dtype_policy"], mcfg.steps_per_epoch
    r["devices"] = runtime["devices"]
    if args.profile:
        trace = args.out / f"{stem}_trace" / name
        wall = traced_steps(model, feed, args.profile, trace)
        r["profile"] = {**op_profile(trace, args.profile, wall), "trace": str(trace)}
        advance(args.profile + 1)
    return r


def rate_table(results: dict) -> str:
    header = [
        "model",
        "parameters",
        "batch",
        "precision",
        "devices",
        "train step images/s",
        "with augmentation images/s",
        "model.fit images/s",
        "hours per epoch (batches)",
        f"hours for {WRITEUP_EPOCHS} epochs",
    ]
    rows = [
        [
            name,
            f"{r['parameters']:,}",
            r["batch_size"],
            r["dtype_policy"],
            ", ".join(r["devices"]),
            f"{r['train_step_images_per_s']:.2f}",
            f"{r['with_augmentation_images_per_s']:.2f}",
            f"{r['fit_images_per_s']:.2f}",
            f"{r['hours_per_epoch']:.2f} ({r['steps_per_epoch']})",
            f"{r[f'hours_for_{WRITEUP_EPOCHS}_epochs']:.1f}",
        ]
        for name, r in results.items()
    ]
    return markdown_table(header, rows, "lrrllrrrrr")


def main(argv=None):
    args = parse_args(argv)
    quiet_start()  # after parsing: --help and argument errors need no TensorFlow
    import keras

    from guitar_distill.student.model import build_nin_student
    from guitar_distill.teacher.model import build_teacher

    if args.profile and keras.backend.backend() != "tensorflow":
        raise ToolkitError(f"--profile reads TensorFlow's profiler; the backend is {keras.backend.backend()}")
    args.out = args.out or args.artifacts / "bench"
    start, cfg = time.perf_counter(), resolve_config(args)
    size = cfg.data.image_size
    images, labels, classes = sample_photos(cfg, args.source)
    tcfg, scfg = cfg.teacher, cfg.student
    models = {
        "teacher": (tcfg, lambda: build_teacher(len(classes), size, None, head=tcfg.head)),
        "student": (scfg, lambda: build_nin_student(len(classes), size, scfg.widths, scfg.dropout)),
    }
    stem = f"train_rate_{cfg.name}"
    steps = len(args.models) * (args.batches + 2 + (args.profile + 1 if args.profile else 0))
    with progress_bar(steps, f"training rate at {size}px") as advance:
        results = {
            name: rate_model(args, name, mcfg, build, images, labels, advance, stem)
            for name, (mcfg, build) in models.items()
            if name in args.models
        }
    settings = {
        "preset": cfg.name,
        "image_size": size,
        "timed_batches": args.batches,
        "photos": len(images),
        "backend": keras.backend.backend(),
        **{k: getattr(args, k) for k in ("fit_feed", "jit_compile", "batch_norm", "strided_pointwise")},
        **{f"{name}_steps_per_epoch": r["steps_per_epoch"] for name, r in results.items()},
    }
    title = f"Training rate, {cfg.name} recipe at {size} px ({keras.backend.backend()} backend)"
    notes = "".join(profile_tables(name, r["profile"]) for name, r in results.items() if "profile" in r)
    table = rate_table(results)
    write_record(
        args.out,
        stem,
        "benchmarks.train_rate",
        argv,
        title=title,
        settings=settings,
        results=results,
        table=table,
        started=start,
        notes=notes,
    )
    console.print(table)
    console.print(f"written: {args.out / stem}.md, {args.out / stem}.json")


if __name__ == "__main__":
    run_cli(main)
