"""`python -m benchmarks.student_size`: choose the student's width by measurement.

For each candidate NiN width and for the teacher: parameters, multiply-adds, and TFLite latency
at 1 thread (student full-integer int8, teacher fp32), all in one run so the ratios compare.
A candidate qualifies with >= 30x fewer parameters than the teacher and int8 latency <= 1/30 of
the teacher's fp32 latency. Weights are untrained: size and speed do not depend on them.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.latency import run_worker, summarize
from benchmarks.models import count_macs
from common.artifacts import write_json, write_text
from common.config import PROJECT_ROOT, resolve_config, stage_parser
from common.progress import console, progress_bar
from export.convert import export_saved_model, tflite_from_saved_model, write_tflite

CANDIDATES = ("16,32,64", "24,48,96", "32,64,128", "48,96,192")
MIN_RATIO = 30.0


def convert(model, precision: str, calibration: np.ndarray, workdir: Path) -> Path:
    saved = export_saved_model(model, workdir / "saved_model")
    return write_tflite(workdir / f"{model.name}_{precision}.tflite",
                        tflite_from_saved_model(saved, precision, calibration))


def interleaved_latency(paths: list[Path], cfg: dict, repeats: int, advance) -> list[dict]:
    """1-thread p50 of each file, measured `repeats` times in rotation; the median p50 of the rounds.

    One round's ratios swing by a fifth on a shared 2-core machine; rotating and taking the
    median keeps a slow moment from landing on one model only.
    """
    rounds = [[] for _ in paths]
    for _ in range(repeats):
        for i, path in enumerate(paths):
            rounds[i].append(summarize(run_worker(path, 1, cfg, 0)["times_ms"]))
            advance()
    return [{"p50_ms": float(np.median([r["p50_ms"] for r in rs])), "p50_ms_rounds": [r["p50_ms"] for r in rs],
             "p99_ms": float(np.median([r["p99_ms"] for r in rs])), "size_mb": path.stat().st_size / 1e6}
            for rs, path in zip(rounds, paths)]


def size_table(rows: list[dict]) -> str:
    lines = ["| model | widths | parameters | MMACs | format | p50 ms (1 thread, median of rounds) | size MB | params ratio | "
             "latency ratio | qualifies |", "|---|---|---:|---:|---|---:|---:|---:|---:|---|"]
    for r in rows:
        ratios = (f"{r['param_ratio']:.1f}x | {r['latency_ratio']:.1f}x | {'yes' if r['qualifies'] else 'no'}"
                  if "param_ratio" in r else "1x | 1x | -")
        lines.append(f"| {r['model']} | {r.get('widths', '-')} | {r['parameters']:,} | {r['macs'] / 1e6:.0f} | "
                     f"{r['format']} | {r['p50_ms']:.2f} | {r['size_mb']:.2f} | {ratios} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = stage_parser("Parameters, multiply-adds and 1-thread TFLite latency of student candidates vs the teacher.")
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), help="comma-separated NiN widths")
    parser.add_argument("--size", type=int, default=224, help="input size (default: %(default)s)")
    parser.add_argument("--classes", type=int, default=11)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of measurement (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "reports")
    args = parser.parse_args(argv)
    cfg = resolve_config(args)
    from student.model import build_nin_student
    from teacher.model import build_teacher

    start = time.perf_counter()
    bcfg = cfg["bench"]
    # Random pixels calibrate the int8 ranges well enough for timing; accuracy is not measured here.
    calibration = np.random.default_rng(0).integers(0, 256, (8, args.size, args.size, 3)).astype(np.uint8)
    widths = [tuple(int(w) for w in spec.split(",")) for spec in args.candidates]
    models = [build_teacher(args.classes, args.size)] + [build_nin_student(args.classes, args.size, w) for w in widths]
    rows = [{"model": "resnet50_teacher", "format": "tflite_fp32"}] + [
        {"model": "nin_student", "widths": list(w), "format": "tflite_int8"} for w in widths]
    with tempfile.TemporaryDirectory() as tmp:
        console.print(f"converting the teacher (fp32) and {len(widths)} students (int8) at {args.size} px")
        paths = [convert(m, "fp32" if i == 0 else "int8", calibration, Path(tmp) / str(i)) for i, m in enumerate(models)]
        with progress_bar(len(paths) * args.repeats, "1-thread latency") as advance:
            timings = interleaved_latency(paths, bcfg, args.repeats, advance)
    for row, model, timing in zip(rows, models, timings):
        row.update(parameters=model.count_params(), macs=count_macs(model), **timing)
    ref = rows[0]
    for row in rows[1:]:
        row["param_ratio"] = ref["parameters"] / row["parameters"]
        row["latency_ratio"] = ref["p50_ms"] / row["p50_ms"]
        row["qualifies"] = row["param_ratio"] >= MIN_RATIO and row["latency_ratio"] >= MIN_RATIO
    qualifying = [r for r in rows[1:] if r["qualifies"]]
    choice = max(qualifying, key=lambda r: r["macs"]) if qualifying else None
    command = "python -m " + " ".join(["benchmarks.student_size", *(argv or sys.argv[1:])])
    from benchmarks.hardware import hardware_header, header_markdown
    hw = hardware_header([1])
    write_json(args.out / "student_size.json", {"command": command, "hardware": hw, "input_size": args.size,
                                                "rows": rows, "choice": choice and choice["widths"],
                                                "seconds": time.perf_counter() - start})
    verdict = (f"Largest qualifying candidate (most capacity inside both 30x limits): widths {choice['widths']}.\n"
               if choice else "No candidate meets both 30x limits.\n")
    write_text(args.out / "student_size.md", f"# Student size at {args.size} px\n\n{header_markdown(hw)}\n"
               f"Command: `{command}`\n\n{size_table(rows)}\n{verdict}")
    console.print(size_table(rows))
    console.print(verdict + f"written: {args.out / 'student_size.md'}, {args.out / 'student_size.json'} "
                  f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
