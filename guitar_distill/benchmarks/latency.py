"""`python -m benchmarks.latency`: teacher and student, every format and runtime, side by side.

Each measurement runs in a fresh process that imports only its runtime (cold start and peak memory
are the model's own): warm-up, then timed batch-1 runs for percentiles, then a batch-throughput pass.
"% of roof" compares a file's batch-1 rate with a large matrix product of its own precision and
runtime (benchmarks/peaks.py): int8 files against an int8 roof, the rest against numpy's fp32 GEMM.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from rich.table import Table

from guitar_distill.benchmarks.hardware import hardware_header
from guitar_distill.benchmarks.models import count_macs, find_model_files
from guitar_distill.benchmarks.peaks import roof_for
from guitar_distill.benchmarks.record import write_record
from guitar_distill.common.artifacts import stage_dir
from guitar_distill.common.config import resolve_config, stage_parser
from guitar_distill.common.progress import console, progress_bar
from guitar_distill.common.quiet import quiet_start
from guitar_distill.common.runtimes import all_threads


def summarize(times_ms) -> dict:
    t = np.asarray(times_ms, dtype=np.float64)
    if not len(t):
        raise ValueError("no timed runs")
    p50, p90, p99 = np.percentile(t, [50, 90, 99])
    return {"runs": int(len(t)), "p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99),
            "mean_ms": float(t.mean()), "images_per_s": float(1000.0 / t.mean())}


def model_costs(files) -> dict:
    """Parameters and multiply-adds from each Keras model (the exported files are the same network)."""
    from guitar_distill.common.models import load_model_file

    costs = {}
    for f in files:
        if f.fmt == "keras":
            model = load_model_file(f.path)
            costs[f.model] = {"parameters": int(model.count_params()), "macs": count_macs(model)}
    return costs


def run_worker(path: Path, threads: int, cfg: dict, batch: int) -> dict:
    spec = {"path": str(path), "threads": threads, "runs": int(cfg["runs"]), "warmup": int(cfg["warmup"]),
            "max_seconds": float(cfg["max_seconds"]), "batch": batch}
    out = subprocess.run([sys.executable, "-m", "guitar_distill.benchmarks._worker", json.dumps(spec)], capture_output=True,
                         text=True, env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if out.returncode != 0:
        raise RuntimeError(f"{path} ({threads} threads) failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def flag_int8(rows: list[dict]) -> None:
    """Mark int8 files that are not faster than fp32 of the same model, runtime family and threads."""
    fp32 = {(r["model"], r["fmt"].split("_")[0], r["threads"]): r["p50_ms"] for r in rows if r["fmt"].endswith("fp32")}
    for r in rows:
        ref = fp32.get((r["model"], r["fmt"].split("_")[0], r["threads"]))
        r["int8_not_faster"] = bool("int8" in r["fmt"] and ref is not None and r["p50_ms"] >= ref)


def latency_table(rows: list[dict]) -> str:
    lines = ["| model | format | runtime | threads | p50 ms | p90 ms | p99 ms | mean ms | images/s | batch images/s "
             "| cold start ms | peak MiB | over python MiB | size MB | params | MMACs | roof | % of roof | note |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|"]
    for r in rows:
        batch = f"{r['batch_images_per_s']:.1f}" if r.get("batch_images_per_s") else "-"
        note = "int8 not faster than fp32" if r["int8_not_faster"] else ""
        lines.append(f"| {r['model']} | {r['fmt']} | {r['runtime']} | {r['threads']} | {r['p50_ms']:.2f} | "
                     f"{r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['mean_ms']:.2f} | {r['images_per_s']:.1f} | {batch} | "
                     f"{r['cold_start_ms']:.0f} | {r['peak_rss_mib']:.0f} | {r['peak_rss_mib'] - r['bare_rss_mib']:.0f} | "
                     f"{r['size_mb']:.2f} | {r['parameters']:,} | {r['macs'] / 1e6:.0f} | {r['roof']} | "
                     f"{r['roofline_pct']:.1f} | {note} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = stage_parser("Latency of teacher and student in every format and runtime.")
    parser.add_argument("--models", nargs="+", help="teacher, student (default: both)")
    parser.add_argument("--formats", nargs="+", help="keras onnx_fp32 onnx_int8 tflite_fp32 ... (default: all)")
    parser.add_argument("--runtimes", nargs="+", help="keras onnxruntime litert-xnnpack (default: all)")
    parser.add_argument("--threads", nargs="+", type=int, help="thread counts (default: 1 and all cores)")
    parser.add_argument("--runs", type=int, help="timed runs per measurement (default: the preset's)")
    parser.add_argument("--out", type=Path, help="folder for latency.json and latency.md (default: ARTIFACTS/bench)")
    args = parser.parse_args(argv)
    quiet_start()  # after parsing: --help and argument errors need no TensorFlow
    cfg = resolve_config(args)
    bcfg = dict(cfg["bench"], **({"runs": args.runs} if args.runs else {}))
    threads = sorted(set(args.threads or [1, all_threads()]))
    files, missing = find_model_files(args.artifacts, args.models, args.formats)
    files = [f for f in files if not args.runtimes or f.runtime in args.runtimes]
    for line in missing:
        console.print(f"skipped: {line}")
    if not files:
        raise SystemExit(f"no model files under {args.artifacts}: run `make export` first")
    start = time.perf_counter()
    hw = hardware_header(threads)
    costs = model_costs(files)
    rows = []
    with progress_bar(len(files) * len(threads), "latency") as advance:
        for f in files:
            for t in threads:
                raw = run_worker(f.path, t, bcfg, int(bcfg["batch"]) if t == threads[-1] else 0)
                stats = summarize(raw["times_ms"])
                cost = costs.get(f.model, {"parameters": 0, "macs": 0})
                roof = roof_for(f.fmt, f.runtime)
                achieved = 2 * cost["macs"] / (stats["p50_ms"] / 1000) / 1e9
                rows.append({"model": f.model, "fmt": f.fmt, "runtime": f.runtime, "threads": t, "file": str(f.path),
                             **stats, "cold_start_ms": raw["load_ms"] + raw["first_inference_ms"],
                             "load_ms": raw["load_ms"], "first_inference_ms": raw["first_inference_ms"],
                             "peak_rss_mib": raw["peak_rss_mib"], "bare_rss_mib": raw["bare_rss_mib"],
                             "runtime_rss_mib": raw["runtime_rss_mib"], "batch": raw["batch"],
                             "batch_images_per_s": raw["batch_images_per_s"], "input_size": raw["input_size"],
                             "size_mb": f.path.stat().st_size / 1e6, **cost,
                             "achieved_gops": achieved, "roof": roof,
                             "roofline_pct": 100 * achieved / hw["roofs_gops"][roof][str(t)]})
                advance()
    flag_int8(rows)
    out = args.out or stage_dir(args.artifacts, "bench")
    result = write_record(out, "latency", "benchmarks.latency", argv, title="Latency", hardware=hw,
                          settings={**bcfg, "threads": threads}, results=rows, table=latency_table(rows),
                          started=start, extra={"missing": missing})
    table = Table(title=f"latency, batch 1 ({hw['cpu']})")
    for col in ("model", "format", "runtime", "threads", "p50 ms", "p99 ms", "img/s", "peak MiB", "size MB", "% roof",
                "note"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["model"], r["fmt"], r["runtime"], str(r["threads"]), f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
                      f"{r['images_per_s']:.1f}", f"{r['peak_rss_mib']:.0f}", f"{r['size_mb']:.2f}",
                      f"{r['roofline_pct']:.1f}",
                      "int8 not faster" if r["int8_not_faster"] else "")
    console.print(table)
    console.print(f"latency done in {result['seconds']:.0f} s: {Path(out) / 'latency.json'}, {Path(out) / 'latency.md'}")


if __name__ == "__main__":
    main()
