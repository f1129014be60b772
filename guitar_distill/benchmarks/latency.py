"""`python -m benchmarks.latency`: teacher and student, every format and runtime, side by side.

Each measurement runs in a fresh process that imports only its runtime (cold start and peak memory
are the model's own): warm-up, then timed batch-1 runs for percentiles, then a batch-throughput pass.
Every file is measured `bench.rounds` times in rotation and a row gives the median of its rounds:
one round's ratios swing by a fifth on a shared 2-core machine, and rotating keeps a slow moment
from landing on one model only. The headline speed-up, student int8 against teacher fp32, is the
median of the ratios within each round.
"% of roof" compares a file's batch-1 rate with a large matrix product of its own precision and
runtime (benchmarks/peaks.py): int8 files against an int8 roof, the rest against numpy's fp32 GEMM.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.table import Table

from guitar_distill.benchmarks.hardware import hardware_header
from guitar_distill.benchmarks.models import find_model_files
from guitar_distill.benchmarks.peaks import roof_for
from guitar_distill.benchmarks.record import write_record
from guitar_distill.common.artifacts import stage_dir
from guitar_distill.common.config import Bench, as_dict, resolve_config, stage_parser
from guitar_distill.common.errors import ToolkitError, run_cli
from guitar_distill.common.layout import no_exported_files
from guitar_distill.common.markdown import markdown_table
from guitar_distill.common.progress import console, progress_bar
from guitar_distill.common.quiet import quiet_start
from guitar_distill.common.runtimes import all_threads


def summarize(times_ms) -> dict:
    t = np.asarray(times_ms, dtype=np.float64)
    if not len(t):
        raise ValueError("no timed runs")
    p50, p90, p99 = np.percentile(t, [50, 90, 99])
    return {
        "runs": int(len(t)),
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "mean_ms": float(t.mean()),
        "images_per_s": float(1000.0 / t.mean()),
    }


def model_costs(files) -> dict:
    """Parameters and multiply-adds of each model (its files are one network): from the Keras model,
    else from the cost export wrote into model.json (a runtime file alone cannot say it)."""
    from guitar_distill.common.models import load_model_file, network_cost

    costs = {}
    for f in sorted(files, key=lambda f: f.fmt != "keras"):
        meta = f.path.with_name("model.json")
        if f.model in costs:
            continue
        if f.fmt == "keras":
            costs[f.model] = network_cost(load_model_file(f.path))
        elif meta.exists() and (network := json.loads(meta.read_text()).get("network")):
            costs[f.model] = network
    return costs


def run_worker(path: Path, threads: int, cfg: Bench, batch: int) -> dict:
    spec = {
        "path": str(path),
        "threads": threads,
        "runs": cfg.runs,
        "warmup": cfg.warmup,
        "max_seconds": cfg.max_seconds,
        "batch": batch,
    }
    out = subprocess.run(
        [sys.executable, "-m", "guitar_distill.benchmarks._worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    if out.returncode != 0:
        raise RuntimeError(f"{path} ({threads} threads) failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_in_rounds(jobs: list[tuple[Path, int, int]], cfg: Bench, rounds: int, advance) -> list[list[dict]]:
    """Each (path, threads, batch) job measured `rounds` times in rotation; batch throughput in round one."""
    measured = [[] for _ in jobs]
    for r in range(rounds):
        for i, (path, threads, batch) in enumerate(jobs):
            measured[i].append(run_worker(path, threads, cfg, batch if r == 0 else 0))
            advance()
    return measured


def median_of_rounds(raw_rounds: list[dict]) -> dict:
    """Percentiles per round, then the median of each over the rounds; every round's p50 kept."""
    per_round = [summarize(raw["times_ms"]) for raw in raw_rounds]
    stats = {k: float(np.median([s[k] for s in per_round])) for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms")}
    return {
        **stats,
        "runs": sum(s["runs"] for s in per_round),
        "images_per_s": 1000.0 / stats["mean_ms"],
        "p50_ms_rounds": [s["p50_ms"] for s in per_round],
    }


def speedups(rows: list[dict]) -> list[dict]:
    """Student int8 TFLite (the bundle's format) against the teacher's fp32 TFLite (else its float16
    file, the released one) at each thread count: the median of the per-round ratios."""
    found = []
    for threads in sorted({r["threads"] for r in rows}):
        at = {(r["model"], r["fmt"]): r for r in rows if r["threads"] == threads}
        student = at.get(("student", "tflite_int8"))
        teacher = at.get(("teacher", "tflite_fp32")) or at.get(("teacher", "tflite_fp16"))
        if student and teacher:
            ratios = [t / s for t, s in zip(teacher["p50_ms_rounds"], student["p50_ms_rounds"])]
            found.append(
                {
                    "threads": threads,
                    "teacher": teacher["fmt"],
                    "student": student["fmt"],
                    "teacher_p50_ms": teacher["p50_ms"],
                    "student_p50_ms": student["p50_ms"],
                    "ratio": float(np.median(ratios)),
                    "ratio_rounds": ratios,
                }
            )
    return found


def speedup_lines(found: list[dict]) -> str:
    return "".join(
        f"Student {s['student']} against teacher {s['teacher']}, {s['threads']} thread(s): "
        f"**{s['ratio']:.1f}x** faster (median of the rounds' ratios "
        f"{', '.join(f'{r:.1f}' for r in s['ratio_rounds'])}).\n\n"
        for s in found
    )


def flag_int8(rows: list[dict]) -> None:
    """Mark int8 files that are not faster than fp32 of the same model, runtime family and threads."""
    fp32 = {(r["model"], r["fmt"].split("_")[0], r["threads"]): r["p50_ms"] for r in rows if r["fmt"].endswith("fp32")}
    for r in rows:
        ref = fp32.get((r["model"], r["fmt"].split("_")[0], r["threads"]))
        r["int8_not_faster"] = bool("int8" in r["fmt"] and ref is not None and r["p50_ms"] >= ref)


def latency_table(rows: list[dict]) -> str:
    header = [
        "model",
        "format",
        "runtime",
        "threads",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "mean ms",
        "images/s",
        "batch images/s",
        "cold start ms",
        "peak MiB",
        "over python MiB",
        "size MB",
        "params",
        "MMACs",
        "roof",
        "% of roof",
        "note",
    ]
    table = [
        [
            r["model"],
            r["fmt"],
            r["runtime"],
            r["threads"],
            f"{r['p50_ms']:.2f}",
            f"{r['p90_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['mean_ms']:.2f}",
            f"{r['images_per_s']:.1f}",
            f"{r['batch_images_per_s']:.1f}" if r.get("batch_images_per_s") else "-",
            f"{r['cold_start_ms']:.0f}",
            f"{r['peak_rss_mib']:.0f}",
            f"{r['peak_rss_mib'] - r['bare_rss_mib']:.0f}",
            f"{r['size_mb']:.2f}",
            f"{r['parameters']:,}",
            f"{r['macs'] / 1e6:.0f}",
            r["roof"],
            f"{r['roofline_pct']:.1f}",
            "int8 not faster than fp32" if r["int8_not_faster"] else "",
        ]
        for r in rows
    ]
    return markdown_table(header, table, "lll" + "r" * 13 + "lrl")


def parse_args(argv=None):
    parser = stage_parser("Latency of teacher and student in every format and runtime.")
    parser.add_argument("--models", nargs="+", help="teacher, student (default: both)")
    parser.add_argument("--formats", nargs="+", help="keras onnx_fp32 onnx_int8 tflite_fp32 ... (default: all)")
    parser.add_argument("--runtimes", nargs="+", help="keras onnxruntime litert-xnnpack (default: all)")
    parser.add_argument("--threads", nargs="+", type=int, help="thread counts (default: 1 and all cores)")
    parser.add_argument("--runs", type=int, help="timed runs per measurement (default: the preset's)")
    parser.add_argument("--rounds", type=int, help="measurements of each file, in rotation (default: the preset's)")
    parser.add_argument("--out", type=Path, help="folder for latency.json and latency.md (default: ARTIFACTS/bench)")
    return parser.parse_args(argv)


def latency_row(f, threads: int, raw_rounds: list[dict], cost: dict, hw: dict) -> dict:
    """One file at one thread count: the median of its rounds, and the first round's cold start, memory and
    batch throughput (a fresh process)."""
    raw = raw_rounds[0]
    stats = median_of_rounds(raw_rounds)
    roof = roof_for(f.fmt, f.runtime)
    achieved = 2 * cost["macs"] / (stats["p50_ms"] / 1000) / 1e9
    return {
        "model": f.model,
        "fmt": f.fmt,
        "runtime": f.runtime,
        "threads": threads,
        "file": str(f.path),
        **stats,
        "cold_start_ms": raw["load_ms"] + raw["first_inference_ms"],
        **{k: raw[k] for k in ("load_ms", "first_inference_ms", "peak_rss_mib", "bare_rss_mib", "runtime_rss_mib")},
        **{k: raw[k] for k in ("batch", "batch_images_per_s", "input_size")},
        "size_mb": f.path.stat().st_size / 1e6,
        **cost,
        "achieved_gops": achieved,
        "roof": roof,
        "roofline_pct": 100 * achieved / hw["roofs_gops"][roof][str(threads)],
    }


CONSOLE_COLUMNS = ("model", "format", "runtime", "threads", "p50 ms", "p99 ms", "img/s", "peak MiB", "size MB")


def print_rows(rows: list[dict], cpu: str) -> None:
    table = Table(title=f"latency, batch 1 ({cpu})")
    for col in (*CONSOLE_COLUMNS, "% roof", "note"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["model"],
            r["fmt"],
            r["runtime"],
            str(r["threads"]),
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['images_per_s']:.1f}",
            f"{r['peak_rss_mib']:.0f}",
            f"{r['size_mb']:.2f}",
            f"{r['roofline_pct']:.1f}",
            "int8 not faster" if r["int8_not_faster"] else "",
        )
    console.print(table)


def main(argv=None):
    args = parse_args(argv)
    quiet_start()  # after parsing: --help and argument errors need no TensorFlow
    cfg = resolve_config(args)
    bcfg = replace(cfg.bench, **{k: v for k, v in (("runs", args.runs), ("rounds", args.rounds)) if v})
    threads = sorted(set(args.threads or [1, all_threads()]))
    files, missing = find_model_files(args.artifacts, args.models, args.formats)
    files = [f for f in files if not args.runtimes or f.runtime in args.runtimes]
    for line in missing:
        console.print(f"skipped: {line}")
    if not files:
        raise ToolkitError(no_exported_files(args.artifacts, cfg.name))
    start, hw, costs = time.perf_counter(), hardware_header(threads), model_costs(files)
    rounds = bcfg.rounds
    jobs = [(f, t) for f in files for t in threads]
    with progress_bar(len(jobs) * rounds, f"latency, {rounds} rounds") as advance:
        measured = measure_in_rounds(
            [(f.path, t, bcfg.batch if t == threads[-1] else 0) for f, t in jobs], bcfg, rounds, advance
        )
    no_cost = {"parameters": 0, "macs": 0}
    rows = [latency_row(f, t, raw, costs.get(f.model, no_cost), hw) for (f, t), raw in zip(jobs, measured)]
    flag_int8(rows)
    found = speedups(rows)
    out = args.out or stage_dir(args.artifacts, "bench")
    result = write_record(
        out,
        "latency",
        "benchmarks.latency",
        argv,
        title="Latency",
        hardware=hw,
        settings={**as_dict(bcfg), "threads": threads},
        results=rows,
        table=speedup_lines(found) + latency_table(rows),
        started=start,
        extra={"missing": missing, "speedups": found},
    )
    print_rows(rows, hw["cpu"])
    console.print(speedup_lines(found).replace("**", "").strip())
    console.print(
        f"latency done in {result['seconds']:.0f} s: {Path(out) / 'latency.json'}, {Path(out) / 'latency.md'}"
    )


if __name__ == "__main__":
    run_cli(main)
