"""`python -m benchmarks.cache_build`: decode-cache build rate (photos/s) on this machine.

Decodes the manifest's training split from scratch into a temporary folder, at each size and
worker count asked for, so the figure never comes from an up-to-date cache.
"""
from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from pathlib import Path

from common.artifacts import cpu_name, write_json, write_text
from common.config import PROJECT_ROOT, resolve_config, stage_parser
from common.progress import console
from dataset.cache import build_split_cache
from dataset.manifest import load_data_info


def main(argv=None):
    parser = stage_parser("Decode-cache build rate on this machine.")
    parser.add_argument("--sizes", nargs="+", type=int, default=[224])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--split", default="train")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "reports")
    args = parser.parse_args(argv)
    resolve_config(args)
    info = load_data_info(args.artifacts)
    count = len(info.split_rows(args.split))
    rows = []
    for size in args.sizes:
        for workers in args.workers:
            with tempfile.TemporaryDirectory() as tmp:
                scratch = dataclasses.replace(info, root=Path(tmp))
                t0 = time.perf_counter()
                path = build_split_cache(scratch, args.split, size, workers=workers)
                seconds = time.perf_counter() - t0
                rows.append({"size": size, "workers": workers, "photos": count, "seconds": seconds,
                             "photos_per_s": count / seconds, "mib": path.stat().st_size / 2**20})
    command = "python -m " + " ".join(["benchmarks.cache_build", *(argv or sys.argv[1:])])
    write_json(args.out / "cache_build.json", {"command": command, "cpu": cpu_name(), "rows": rows})
    lines = ["# Decode-cache build rate\n", f"Command: `{command}`  \nCPU: {cpu_name()}\n",
             "| size px | threads | photos | seconds | photos/s | MiB |", "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['size']} | {r['workers']} | {r['photos']} | {r['seconds']:.1f} | {r['photos_per_s']:.0f} | "
              f"{r['mib']:.0f} |" for r in rows]
    write_text(args.out / "cache_build.md", "\n".join(lines) + "\n")
    console.print("\n".join(lines[2:]))
    console.print(f"written: {args.out / 'cache_build.md'}")


if __name__ == "__main__":
    main()
