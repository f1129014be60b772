"""`python -m benchmarks.cache_build`: decode-cache build rate (photos/s) on this machine.

Decodes the manifest's training split from scratch into a temporary folder, at each size and
worker count asked for, so the figure never comes from an up-to-date cache.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

from guitar_distill.benchmarks.record import write_record
from guitar_distill.common.cache import build_split_cache
from guitar_distill.common.config import resolve_config, stage_parser
from guitar_distill.common.errors import run_cli
from guitar_distill.common.manifest import load_data_info
from guitar_distill.common.markdown import markdown_table
from guitar_distill.common.progress import console


def main(argv=None):
    parser = stage_parser("Decode-cache build rate on this machine.")
    parser.add_argument("--sizes", nargs="+", type=int, default=[224])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--split", default="train")
    parser.add_argument("--out", type=Path, help="folder for the record (default: ARTIFACTS/bench)")
    args = parser.parse_args(argv)
    args.out = args.out or args.artifacts / "bench"
    resolve_config(args)
    start = time.perf_counter()
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
                rows.append(
                    {
                        "size": size,
                        "workers": workers,
                        "photos": count,
                        "seconds": seconds,
                        "photos_per_s": count / seconds,
                        "mib": path.stat().st_size / 2**20,
                    }
                )
    table = markdown_table(
        ["size px", "threads", "photos", "seconds", "photos/s", "MiB"],
        [
            [r["size"], r["workers"], r["photos"], f"{r['seconds']:.1f}", f"{r['photos_per_s']:.0f}", f"{r['mib']:.0f}"]
            for r in rows
        ],
        "rrrrrr",
    )
    write_record(
        args.out,
        "cache_build",
        "benchmarks.cache_build",
        argv,
        title="Decode-cache build rate",
        settings={"split": args.split, "sizes": args.sizes, "workers": args.workers},
        results=rows,
        table=table,
        started=start,
    )
    console.print(table)
    console.print(f"written: {args.out / 'cache_build.md'}, {args.out / 'cache_build.json'}")


if __name__ == "__main__":
    run_cli(main)
