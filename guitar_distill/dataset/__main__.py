"""`python -m guitar_distill.dataset`: scan, validate, de-duplicate and split a folder of class sub-folders."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from guitar_distill.common.config import Preset, resolve_config, stage_parser
from guitar_distill.common.errors import ToolkitError, run_cli
from guitar_distill.common.manifest import manifest_path
from guitar_distill.common.progress import console
from guitar_distill.dataset.prepare import COLUMNS, prepare_data
from guitar_distill.dataset.scan import resolve_source


def read_exclusions(path: Path) -> set[str]:
    """Manifest paths, one a line (# comments): photos a person confirmed mislabelled (guitar-distill audit)."""
    if not Path(path).is_file():
        raise ToolkitError(f"--exclude {path}: no such file")
    lines = (line.split("#", 1)[0].strip() for line in Path(path).read_text().splitlines())
    return {line for line in lines if line}


def parse_args(argv=None):
    parser = stage_parser("Scan, validate, de-duplicate and split a folder of class sub-folders.")
    parser.add_argument("--source", type=Path, help="folder with one sub-folder per class (default: the preset's)")
    parser.add_argument(
        "--download",
        type=Path,
        metavar="DIR",
        help="first download the public source set (Apache-2.0) into DIR and use it as source",
    )
    parser.add_argument("--no-cache", action="store_true", help="write the manifest only, do not decode")
    parser.add_argument(
        "--exclude",
        type=Path,
        metavar="FILE",
        help="photos to exclude, one manifest path a line (the ones confirmed from guitar-distill audit)",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = resolve_config(args)
    if args.download:
        from guitar_distill.dataset.download import download

        counts = download(args.download)
        console.print(f"downloaded {sum(counts.values())} files into {args.download}")
        args.source = args.download
    source = resolve_source(cfg.data.source, args.source)
    exclude = read_exclusions(args.exclude) if args.exclude else set()
    summary = prepare_data(source, cfg, args.artifacts, exclude, cache=not args.no_cache)
    out = args.artifacts / "data"
    print_summary(summary, cfg, out)
    console.print(
        f"manifest: {manifest_path(args.artifacts)}; summary: {out / 'summary.json'}; "
        f"took {summary['metrics']['seconds']:.1f} s"
    )


def print_summary(summary: dict, cfg: Preset, out: Path) -> None:
    """The split table, the rejections, the duplicates and the cache, as the stage prints them."""
    counts, classes, m = summary["counts"], summary["classes"], summary["metrics"]
    table = Table(title=f"data: preset {cfg.name}, {summary['source']}")
    for col in ("class", *COLUMNS):
        table.add_column(col, justify="left" if col == "class" else "right")
    for c in classes:
        table.add_row(c, *(str(counts[c][s]) for s in COLUMNS))
    table.add_row("total", *(str(sum(counts[c][s] for c in classes)) for s in COLUMNS))
    console.print(table)
    console.print(
        f"files {m['files']}, valid {m['valid']}, rejected {m['rejected']} {summary['rejected_by_reason'] or ''}"
    )
    for r in summary["rejections"]:
        console.print(f"  rejected {r['path']}: {r['reason']}" + (f" ({r['detail']})" if r["detail"] else ""))
    console.print(
        f"duplicates: {m['exact_duplicate_pairs']} byte-identical pairs "
        f"({m['exact_duplicate_pairs_across_classes']} across classes), "
        f"{m['near_duplicate_pairs']} near-identical pairs, {m['duplicate_groups']} groups; "
        f"label conflicts: {m['label_conflict_groups']} groups, {m['label_conflict_photos']} photos "
        f"({'excluded' if cfg.data.exclude_label_conflicts else 'kept'})"
    )
    if m["cache_bytes"]:
        decoded, seconds = m["cache_decoded"], m["cache_seconds"]
        built = f"{decoded} photos decoded in {seconds:.1f} s" if decoded else "up to date, nothing decoded"
        console.print(f"cache: {m['cache_bytes'] / 2**20:.1f} MiB in {out / 'cache'}; {built}")


if __name__ == "__main__":
    run_cli(main)
