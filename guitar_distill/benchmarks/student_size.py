"""`python -m benchmarks.student_size`: choose the student by measurement.

For each candidate student and for the teacher: parameters, multiply-adds, and TFLite latency at
1 thread (student full-integer int8, teacher fp32), all in one run so the ratios compare. A candidate
is NiN widths (`32,64,192`, or `nin:32,64,192`) or another architecture with its size
(`mobilenet_v3_small:0.5`, the width multiplier). It qualifies with >= 30x fewer parameters than the
teacher and int8 latency <= 1/30 of the teacher's fp32 latency. Size and speed do not depend on the weights.

With --distill, each candidate is also distilled with the same budget (the preset's student recipe,
`--epochs` epochs) from the teacher outputs the distill stage stores (the same `distill.stored_epochs`,
replayed), through the distill stage's own code, and its validation and test top-1 (Keras, and the int8
file calibrated on training photos) join the table, with an accuracy-versus-latency plot. The student
is chosen on validation accuracy among qualifying candidates.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from guitar_distill.benchmarks.latency import measure_in_rounds, median_of_rounds
from guitar_distill.benchmarks.record import write_record
from guitar_distill.common.artifacts import write_bytes
from guitar_distill.common.config import Bench, Preset, Student, resolve_config, stage_parser
from guitar_distill.common.errors import ToolkitError, run_cli
from guitar_distill.common.markdown import markdown_table
from guitar_distill.common.progress import console, progress_bar
from guitar_distill.common.quiet import quiet_start
from guitar_distill.export.convert import export_saved_model, tflite_from_saved_model

CANDIDATES = ("16,32,64", "24,48,96", "32,64,128", "48,96,192")
MIN_RATIO = 30.0


def candidate_student(spec: str, base: Student) -> Student:
    """The student table of one candidate: NiN widths, or an architecture and its width multiplier."""
    architecture, _, size = spec.rpartition(":")
    architecture = architecture or "nin"
    try:
        if architecture == "nin":
            return replace(base, architecture="nin", widths=tuple(int(w) for w in size.split(",")))
        if architecture == "mobilenet_v3_small":
            return replace(base, architecture=architecture, alpha=float(size))
    except ValueError:
        pass
    raise ToolkitError(f"--candidates {spec}: use NiN widths (32,64,192) or mobilenet_v3_small:ALPHA")


def describe(scfg: Student) -> str:
    return f"[{', '.join(map(str, scfg.widths))}]" if scfg.architecture == "nin" else f"alpha {scfg.alpha:g}"


def slug(scfg: Student) -> str:
    return (
        f"nin-{'-'.join(map(str, scfg.widths))}"
        if scfg.architecture == "nin"
        else f"{scfg.architecture}-{scfg.alpha:g}"
    )


def convert(model, precision: str, calibration: np.ndarray, workdir: Path) -> Path:
    saved = export_saved_model(model, workdir / "saved_model")
    return write_bytes(
        workdir / f"{model.name}_{precision}.tflite", tflite_from_saved_model(saved, precision, calibration)
    )


def interleaved_latency(paths: list[Path], cfg: Bench, repeats: int, advance) -> list[dict]:
    """1-thread p50 of each file, measured `repeats` times in rotation; the median of the rounds."""
    measured = measure_in_rounds([(path, 1, 0) for path in paths], cfg, repeats, advance)
    return [{**median_of_rounds(rounds), "size_mb": path.stat().st_size / 1e6} for rounds, path in zip(measured, paths)]


def size_table(rows: list[dict]) -> str:
    accuracy_keys = ("val_top1", "val_top1_int8", "test_top1_int8") if any("val_top1" in r for r in rows) else ()
    header = ["model", "size", "parameters", "MMACs", "format", "p50 ms (1 thread, median of rounds)", "size MB"]
    header += ["params ratio", "latency ratio", "qualifies"]
    header += [("val top-1 (Keras)", "val top-1 (int8)", "test top-1 (int8)")[i] for i in range(len(accuracy_keys))]
    table = []
    for r in rows:
        ratios = ["1x", "1x", "-"]
        if "param_ratio" in r:
            ratios = [f"{r['param_ratio']:.1f}x", f"{r['latency_ratio']:.1f}x", "yes" if r["qualifies"] else "no"]
        cost = [
            f"{r['parameters']:,}",
            f"{r['macs'] / 1e6:.0f}",
            r["format"],
            f"{r['p50_ms']:.2f}",
            f"{r['size_mb']:.2f}",
        ]
        accuracy = [f"{r[k]:.3f}" if k in r else "-" for k in accuracy_keys]
        table.append([r["model"], r.get("size", "-"), *cost, *ratios, *accuracy])
    return markdown_table(header, table, "llrrlrrrrl" + "r" * len(accuracy_keys))


def distil_candidates(artifacts: Path, cfg: Preset, scfgs: list[Student], epochs: int) -> tuple[list, dict]:
    """Each candidate distilled with the same budget by the distill stage's code, in
    artifacts/bench/student_size/CANDIDATE (resumable); returns (students at their best epoch, splits)."""
    from guitar_distill.common.stage import open_training_run
    from guitar_distill.distill.run import distil
    from guitar_distill.distill.teacher_logits import teacher_file
    from guitar_distill.student.architectures import build_student, student_name

    students, keys = [], ("data", "student", "distill")
    for scfg in scfgs:
        candidate = replace(cfg, student=replace(scfg, max_epochs=epochs, patience=epochs))
        folder = f"bench/student_size/{slug(scfg)}"
        run = open_training_run(artifacts, False, candidate, folder, keys=keys, recipe="student")  # same seed each
        student = build_student(candidate.student, len(run.classes), run.info.image_size)
        title = f"{student_name(scfg)} {describe(scfg)}, {epochs} epochs distilled ({cfg.name})"
        distil(run, student, teacher_file(artifacts, cfg.distill), f"student_size_{slug(scfg)}", title)
        students.append(student)
    return students, run.splits


def top1(model_or_path, images, labels) -> float:
    from guitar_distill.common.runtimes import open_classifier, predict_all

    probs = predict_all(open_classifier(model_or_path) if isinstance(model_or_path, Path) else model_or_path, images)
    return float(np.mean(probs.argmax(1) == labels))


def plot_pareto(rows: list[dict], path: Path) -> Path:
    """Validation top-1 of each distilled int8 candidate against its 1-thread latency."""
    from guitar_distill.common.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for model in dict.fromkeys(r["model"] for r in rows if "val_top1_int8" in r):
        cands = sorted((r for r in rows if r["model"] == model and "val_top1_int8" in r), key=lambda r: r["p50_ms"])
        ax.plot([r["p50_ms"] for r in cands], [r["val_top1_int8"] for r in cands], marker="o", label=model)
        for r in cands:
            offset = (4, -12 if r["qualifies"] else 6)
            ax.annotate(
                r["size"], (r["p50_ms"], r["val_top1_int8"]), textcoords="offset points", xytext=offset, fontsize=8
            )
    limit = rows[0]["p50_ms"] / MIN_RATIO
    ax.axvline(limit, color="grey", linestyle="--", label=f"1/{MIN_RATIO:.0f} of the teacher's latency")
    ax.set_xlabel("int8 TFLite p50 latency, 1 thread (ms)")
    ax.set_ylabel("validation top-1 (int8)")
    ax.set_title("Student size: accuracy vs latency, same distillation budget")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def parse_args(argv=None):
    parser = stage_parser("Parameters, multiply-adds and 1-thread TFLite latency of student candidates vs the teacher.")
    parser.add_argument(
        "--candidates",
        nargs="+",
        default=list(CANDIDATES),
        help="NiN widths (32,64,192) or mobilenet_v3_small:ALPHA, each",
    )
    parser.add_argument("--size", type=int, help="input size (default: the data stage's with --distill, else 224)")
    parser.add_argument(
        "--distill",
        action="store_true",
        help="also distil every candidate from the stored teacher outputs and measure its accuracy",
    )
    parser.add_argument("--epochs", type=int, help="distillation epochs per candidate (default: the preset's)")
    parser.add_argument("--classes", type=int, default=11)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of measurement (default: %(default)s)")
    parser.add_argument("--out", type=Path, help="folder for the record and figures (default: ARTIFACTS/bench)")
    return parser.parse_args(argv)


def candidates(args, cfg: Preset, scfgs: list[Student]) -> tuple[list, dict | None, np.ndarray, int]:
    """(students, splits with --distill, calibration photos, input side): distilled, or freshly built."""
    from guitar_distill.dataset.split import balanced_subset
    from guitar_distill.student.architectures import build_student

    if args.distill:
        students, splits = distil_candidates(args.artifacts, cfg, scfgs, args.epochs or cfg.student.max_epochs)
        train_x, train_y = splits["train"]
        calibration = np.asarray(train_x[balanced_subset(train_y, cfg.export.calibration_per_class, cfg.data.seed)])
        return students, splits, calibration, students[0].input_shape[1]
    size = args.size or 224
    students = [build_student(scfg, args.classes, size) for scfg in scfgs]
    # Random pixels calibrate the int8 ranges well enough for timing; accuracy is not measured here.
    return students, None, np.random.default_rng(0).integers(0, 256, (8, size, size, 3)).astype(np.uint8), size


def measure(models: list, rows: list[dict], calibration, bcfg: Bench, repeats: int, splits, epochs) -> None:
    """Cost and latency of every model into its row, and with `splits` each student's top-1."""
    from guitar_distill.common.models import network_cost

    with tempfile.TemporaryDirectory() as tmp:
        console.print(f"converting the teacher (fp32) and {len(models) - 1} students (int8)")
        paths = [
            convert(m, "fp32" if i == 0 else "int8", calibration, Path(tmp) / str(i)) for i, m in enumerate(models)
        ]
        with progress_bar(len(paths) * repeats, "1-thread latency") as advance:
            timings = interleaved_latency(paths, bcfg, repeats, advance)
        for row, model, timing, path in zip(rows, models, timings, paths):
            row.update(**network_cost(model), **timing)
            if splits and row is not rows[0]:
                (val_x, val_y), (test_x, test_y) = splits["val"], splits["test"]
                row.update(
                    val_top1=top1(model, val_x, val_y),
                    val_top1_int8=top1(path, val_x, val_y),
                    test_top1_int8=top1(path, test_x, test_y),
                    distill_epochs=epochs,
                )


def choose(rows: list[dict], by_accuracy: bool) -> dict | None:
    """Ratios against the teacher (the first row), and the best qualifying candidate."""
    ref = rows[0]
    for row in rows[1:]:
        row["param_ratio"] = ref["parameters"] / row["parameters"]
        row["latency_ratio"] = ref["p50_ms"] / row["p50_ms"]
        row["qualifies"] = row["param_ratio"] >= MIN_RATIO and row["latency_ratio"] >= MIN_RATIO
    qualifying = [r for r in rows[1:] if r["qualifies"]]
    by = "val_top1_int8" if by_accuracy else "macs"  # without accuracy: the most capacity inside the limits
    return max(qualifying, key=lambda r: r[by]) if qualifying else None


def main(argv=None):
    args = parse_args(argv)
    quiet_start()  # after parsing: --help and argument errors need no TensorFlow
    args.out = args.out or args.artifacts / "bench"
    cfg = resolve_config(args)
    from guitar_distill.student.architectures import student_name
    from guitar_distill.teacher.model import build_teacher

    start = time.perf_counter()
    scfgs = [candidate_student(spec, cfg.student) for spec in args.candidates]
    students, splits, calibration, size = candidates(args, cfg, scfgs)
    classes = students[0].output_shape[-1]
    rows = [{"model": "resnet50_teacher", "format": "tflite_fp32"}] + [
        {"model": f"{s.architecture}_student", "size": describe(s), "format": "tflite_int8"} for s in scfgs
    ]
    epochs = (args.epochs or cfg.student.max_epochs) if args.distill else None
    measure([build_teacher(classes, size), *students], rows, calibration, cfg.bench, args.repeats, splits, epochs)
    choice = choose(rows, args.distill)
    if args.distill:
        plot_pareto(rows, args.out / "figures" / "student_size_pareto.png")
    reason = "best validation top-1 (int8)" if args.distill else "largest qualifying candidate: most capacity"
    verdict = (
        f"Choice ({reason} inside both 30x limits): {student_name(scfgs[rows.index(choice) - 1])} {choice['size']}.\n"
        if choice
        else "No candidate meets both 30x limits.\n"
    )
    if args.distill:
        verdict += "\n![accuracy vs latency](figures/student_size_pareto.png)\n"
    write_record(
        args.out,
        "student_size",
        "benchmarks.student_size",
        argv,
        title=f"Student size at {size} px",
        table=size_table(rows),
        notes=verdict,
        started=start,
        results=rows,
        settings={"input_size": size, "candidates": args.candidates, "repeats": args.repeats, "runs": cfg.bench.runs},
        extra={"choice": choice and f"{choice['model']} {choice['size']}", "distill_epochs": epochs},
    )
    console.print(size_table(rows))
    console.print(verdict + f"written: {args.out / 'student_size.md'}, {args.out / 'student_size.json'}")


if __name__ == "__main__":
    run_cli(main)
