"""`python -m benchmarks.student_size`: choose the student's width by measurement.

For each candidate NiN width and for the teacher: parameters, multiply-adds, and TFLite latency
at 1 thread (student full-integer int8, teacher fp32), all in one run so the ratios compare.
A candidate qualifies with >= 30x fewer parameters than the teacher and int8 latency <= 1/30 of
the teacher's fp32 latency. Size and speed do not depend on the weights.

With --distill, each candidate is also distilled with the same budget (the preset's student recipe,
`--epochs` epochs) from the teacher logits that `python -m guitar_distill.distill` stores (the same
`distill.stored_epochs`, replayed), and its validation and
test top-1 (Keras, and the int8 file calibrated on training photos) join the table, with an
accuracy-versus-latency plot. The width is chosen on validation accuracy among qualifying candidates.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from guitar_distill.benchmarks.latency import measure_in_rounds, median_of_rounds
from guitar_distill.benchmarks.record import write_record
from guitar_distill.common.artifacts import write_bytes
from guitar_distill.common.config import resolve_config, stage_parser
from guitar_distill.common.errors import run_cli
from guitar_distill.common.markdown import markdown_table
from guitar_distill.common.progress import console, progress_bar
from guitar_distill.common.quiet import quiet_start
from guitar_distill.export.convert import export_saved_model, tflite_from_saved_model

CANDIDATES = ("16,32,64", "24,48,96", "32,64,128", "48,96,192")
MIN_RATIO = 30.0


def convert(model, precision: str, calibration: np.ndarray, workdir: Path) -> Path:
    saved = export_saved_model(model, workdir / "saved_model")
    return write_bytes(
        workdir / f"{model.name}_{precision}.tflite", tflite_from_saved_model(saved, precision, calibration)
    )


def interleaved_latency(paths: list[Path], cfg: dict, repeats: int, advance) -> list[dict]:
    """1-thread p50 of each file, measured `repeats` times in rotation; the median of the rounds."""
    measured = measure_in_rounds([(path, 1, 0) for path in paths], cfg, repeats, advance)
    return [{**median_of_rounds(rounds), "size_mb": path.stat().st_size / 1e6} for rounds, path in zip(measured, paths)]


def size_table(rows: list[dict]) -> str:
    accuracy = any("val_top1" in r for r in rows)
    accuracy_keys = ("val_top1", "val_top1_int8", "test_top1_int8") if accuracy else ()
    header = [
        "model",
        "widths",
        "parameters",
        "MMACs",
        "format",
        "p50 ms (1 thread, median of rounds)",
        "size MB",
        "params ratio",
        "latency ratio",
        "qualifies",
        *(("val top-1 (Keras)", "val top-1 (int8)", "test top-1 (int8)") if accuracy else ()),
    ]
    table = []
    for r in rows:
        ratios = (
            [f"{r['param_ratio']:.1f}x", f"{r['latency_ratio']:.1f}x", "yes" if r["qualifies"] else "no"]
            if "param_ratio" in r
            else ["1x", "1x", "-"]
        )
        table.append(
            [
                r["model"],
                r.get("widths", "-"),
                f"{r['parameters']:,}",
                f"{r['macs'] / 1e6:.0f}",
                r["format"],
                f"{r['p50_ms']:.2f}",
                f"{r['size_mb']:.2f}",
                *ratios,
                *(f"{r[k]:.3f}" if k in r else "-" for k in accuracy_keys),
            ]
        )
    return markdown_table(header, table, "llrrlrrrrl" + "r" * len(accuracy_keys))


def distil_candidates(artifacts: Path, cfg: dict, widths: list[tuple], epochs: int, out: Path) -> tuple[list, dict]:
    """Distil each width with the same budget from the stored teacher logits; returns (students, splits)."""
    from guitar_distill.common.cache import load_splits
    from guitar_distill.common.devices import configure_runtime
    from guitar_distill.common.manifest import load_data_info
    from guitar_distill.common.training import fit_recipe
    from guitar_distill.distill.distiller import compiled_distiller
    from guitar_distill.distill.teacher_logits import stored_stream, teacher_file
    from guitar_distill.student.model import build_nin_student

    scfg = dict(cfg["student"], max_epochs=epochs, patience=epochs)
    dcfg = cfg["distill"]
    info = load_data_info(artifacts)
    splits = load_splits(info)
    stored, period = stored_stream(info, splits, teacher_file(artifacts, dcfg), scfg, dcfg)
    students = []
    for w in widths:
        configure_runtime(scfg)  # same seed for every candidate
        student = build_nin_student(len(info.classes), info.image_size, w, float(scfg["dropout"]))
        distiller = compiled_distiller(student, None, dcfg, scfg, info.image_size)
        run_dir = out / "student_size" / "-".join(map(str, w))
        console.print(f"distilling NiN {list(w)} for {epochs} epochs into {run_dir}")
        fit_recipe(
            distiller,
            splits["train"],
            (splits["val"][0], (splits["val"][1], stored.splits["val"])),
            scfg,
            run_dir,
            weights_of=student,
            batch_targets=stored.stream,
            stream_period=period,
        )
        student.load_weights(run_dir / "best.weights.h5")
        students.append(student)
    return students, splits


def top1(model_or_path, images, labels) -> float:
    from guitar_distill.common.runtimes import open_classifier, predict_all

    probs = predict_all(open_classifier(model_or_path) if isinstance(model_or_path, Path) else model_or_path, images)
    return float(np.mean(probs.argmax(1) == labels))


def plot_pareto(rows: list[dict], path: Path) -> Path:
    """Validation top-1 of each distilled int8 candidate against its 1-thread latency."""
    from guitar_distill.common.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    cands = [r for r in rows if "val_top1_int8" in r]
    ax.plot([r["p50_ms"] for r in cands], [r["val_top1_int8"] for r in cands], marker="o")
    for r in cands:
        ax.annotate(
            str(r["widths"]),
            (r["p50_ms"], r["val_top1_int8"]),
            textcoords="offset points",
            xytext=(4, -12 if r["qualifies"] else 6),
            fontsize=8,
        )
    limit = rows[0]["p50_ms"] / MIN_RATIO
    ax.axvline(limit, color="grey", linestyle="--", label=f"1/{MIN_RATIO:.0f} of the teacher's latency")
    ax.set_xlabel("int8 TFLite p50 latency, 1 thread (ms)")
    ax.set_ylabel("validation top-1 (int8)")
    ax.set_title("NiN width: accuracy vs latency, same distillation budget")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def main(argv=None):
    parser = stage_parser("Parameters, multiply-adds and 1-thread TFLite latency of student candidates vs the teacher.")
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), help="comma-separated NiN widths")
    parser.add_argument("--size", type=int, help="input size (default: the data stage's with --distill, else 224)")
    parser.add_argument(
        "--distill",
        action="store_true",
        help="also distil every candidate from the stored teacher logits and measure its accuracy",
    )
    parser.add_argument("--epochs", type=int, help="distillation epochs per candidate (default: the preset's)")
    parser.add_argument("--classes", type=int, default=11)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of measurement (default: %(default)s)")
    parser.add_argument("--out", type=Path, help="folder for the record and figures (default: ARTIFACTS/bench)")
    args = parser.parse_args(argv)
    quiet_start()  # after parsing: --help and argument errors need no TensorFlow
    args.out = args.out or args.artifacts / "bench"
    cfg = resolve_config(args)
    from guitar_distill.common.models import network_cost
    from guitar_distill.student.model import build_nin_student
    from guitar_distill.teacher.model import build_teacher

    start = time.perf_counter()
    bcfg = cfg["bench"]
    widths = [tuple(int(w) for w in spec.split(",")) for spec in args.candidates]
    if args.distill:
        epochs = args.epochs or int(cfg["student"]["max_epochs"])
        students, splits = distil_candidates(args.artifacts, cfg, widths, epochs, args.artifacts / "bench")
        args.size, args.classes = students[0].input_shape[1], students[0].output_shape[-1]
        from guitar_distill.dataset.split import balanced_subset

        train_x, train_y = splits["train"]
        calibration = np.asarray(
            train_x[balanced_subset(train_y, int(cfg["export"]["calibration_per_class"]), int(cfg["data"]["seed"]))]
        )
    else:
        args.size = args.size or 224
        students = [build_nin_student(args.classes, args.size, w) for w in widths]
        # Random pixels calibrate the int8 ranges well enough for timing; accuracy is not measured here.
        calibration = np.random.default_rng(0).integers(0, 256, (8, args.size, args.size, 3)).astype(np.uint8)
    models = [build_teacher(args.classes, args.size)] + students
    rows = [{"model": "resnet50_teacher", "format": "tflite_fp32"}] + [
        {"model": "nin_student", "widths": list(w), "format": "tflite_int8"} for w in widths
    ]
    with tempfile.TemporaryDirectory() as tmp:
        console.print(f"converting the teacher (fp32) and {len(widths)} students (int8) at {args.size} px")
        paths = [
            convert(m, "fp32" if i == 0 else "int8", calibration, Path(tmp) / str(i)) for i, m in enumerate(models)
        ]
        with progress_bar(len(paths) * args.repeats, "1-thread latency") as advance:
            timings = interleaved_latency(paths, bcfg, args.repeats, advance)
        for row, model, timing, path in zip(rows, models, timings, paths):
            row.update(**network_cost(model), **timing)
            if args.distill and row["model"] == "nin_student":
                (val_x, val_y), (test_x, test_y) = splits["val"], splits["test"]
                row.update(
                    val_top1=top1(model, val_x, val_y),
                    val_top1_int8=top1(path, val_x, val_y),
                    test_top1_int8=top1(path, test_x, test_y),
                    distill_epochs=epochs,
                )
    ref = rows[0]
    for row in rows[1:]:
        row["param_ratio"] = ref["parameters"] / row["parameters"]
        row["latency_ratio"] = ref["p50_ms"] / row["p50_ms"]
        row["qualifies"] = row["param_ratio"] >= MIN_RATIO and row["latency_ratio"] >= MIN_RATIO
    qualifying = [r for r in rows[1:] if r["qualifies"]]
    by = "val_top1_int8" if args.distill else "macs"  # without accuracy: the most capacity inside the limits
    choice = max(qualifying, key=lambda r: r[by]) if qualifying else None
    if args.distill:
        plot_pareto(rows, args.out / "figures" / "student_size_pareto.png")
    reason = (
        "best validation top-1 (int8) inside both 30x limits"
        if args.distill
        else "largest qualifying candidate: most capacity inside both 30x limits"
    )
    verdict = f"Choice ({reason}): widths {choice['widths']}.\n" if choice else "No candidate meets both 30x limits.\n"
    if args.distill:
        verdict += "\n![accuracy vs latency](figures/student_size_pareto.png)\n"
    write_record(
        args.out,
        "student_size",
        "benchmarks.student_size",
        argv,
        title=f"Student size at {args.size} px",
        table=size_table(rows),
        notes=verdict,
        started=start,
        results=rows,
        settings={
            "input_size": args.size,
            "candidates": [list(w) for w in widths],
            "repeats": args.repeats,
            "runs": int(bcfg["runs"]),
            "threads": 1,
            "distill_epochs": epochs if args.distill else None,
        },
        extra={"choice": choice and choice["widths"]},
    )
    console.print(size_table(rows))
    console.print(
        verdict + f"written: {args.out / 'student_size.md'}, {args.out / 'student_size.json'} "
        f"({time.perf_counter() - start:.0f} s)"
    )


if __name__ == "__main__":
    run_cli(main)
