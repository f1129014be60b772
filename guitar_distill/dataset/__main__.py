"""`python -m guitar_distill.dataset`: scan, validate, de-duplicate and split a folder of class sub-folders."""

from __future__ import annotations

import collections
import time
from pathlib import Path

from rich.table import Table

from guitar_distill.common.artifacts import stage_dir, write_json, write_labels
from guitar_distill.common.cache import build_split_cache, cache_is_current
from guitar_distill.common.config import resolve_config, stage_parser
from guitar_distill.common.errors import ToolkitError, run_cli
from guitar_distill.common.manifest import SPLITS, Row, load_data_info, manifest_path, write_manifest
from guitar_distill.common.progress import console, progress_bar
from guitar_distill.dataset.dedup import find_duplicates
from guitar_distill.dataset.scan import find_classes, list_files, resolve_source, scan
from guitar_distill.dataset.split import split_groups


def read_exclusions(path: Path) -> set[str]:
    """Manifest paths, one a line (# comments): photos a person confirmed mislabelled (guitar-distill audit)."""
    if not Path(path).is_file():
        raise ToolkitError(f"--exclude {path}: no such file")
    lines = (line.split("#", 1)[0].strip() for line in Path(path).read_text().splitlines())
    return {line for line in lines if line}


def build_manifest(source: Path, cfg: dict, progress=True, exclude: set[str] = frozenset()):
    data = cfg["data"]
    classes = find_classes(source, data.get("classes") or None)
    total = len(list_files(source, classes))
    with progress_bar(total, "validating photos") as advance:
        photos, rejections = scan(source, classes, progress=advance)
    dups = find_duplicates(photos, int(data["near_hash_distance"]), float(data["near_thumb_diff"]))
    groups = dups.groups()
    # Stable group names: numbered by the sorted path of each group's first member.
    ordered = sorted(groups.values(), key=lambda members: photos[members[0]].relpath)
    group_name = {}
    for n, members in enumerate(ordered):
        for i in members:
            group_name[i] = f"g{n:05d}"
    excluded = set()
    if data["exclude_label_conflicts"]:
        excluded = {i for g in dups.conflicting_groups for i in groups[g]}
    groups_by_class: dict[str, list[list[int]]] = {c: [] for c in classes}
    for members in ordered:
        if members[0] not in excluded:
            labels = {photos[i].label for i in members}
            if len(labels) == 1:
                groups_by_class[photos[members[0]].label].append(members)
            # conflicting groups kept by choice are filed under their majority label
            else:
                majority = collections.Counter(photos[i].label for i in members).most_common(1)[0][0]
                groups_by_class[majority].append(members)
    assignment = split_groups(groups_by_class, dict(data["split"]), int(data["seed"]))
    # Listed photos leave after the split is made: every other photo keeps its split.
    unknown = sorted(exclude - {p.relpath for p in photos})
    if unknown:
        raise ToolkitError(
            f"{len(unknown)} path(s) in the exclusion list are not photos of {source}: {', '.join(unknown[:5])}"
        )
    rows = []
    for i, p in enumerate(photos):
        split = "excluded" if i in excluded or p.relpath in exclude else assignment.get(i, "unused")
        rows.append(Row(p.relpath, p.sha1, p.label, split, group_name[i]))
    stats = {
        "files": total,
        "valid": len(photos),
        "rejected": len(rejections),
        "exact_duplicate_pairs": dups.exact_pairs,
        "exact_duplicate_pairs_across_classes": dups.exact_cross_class_pairs,
        "near_duplicate_pairs": dups.near_pairs,
        "duplicate_groups": sum(1 for m in groups.values() if len(m) > 1),
        "label_conflict_groups": len(dups.conflicting_groups),
        "label_conflict_photos": sum(len(groups[g]) for g in dups.conflicting_groups),
        "excluded_by_list": len(exclude),
    }
    conflicts = [sorted(photos[i].relpath for i in groups[g]) for g in sorted(dups.conflicting_groups)]
    return classes, rows, rejections, stats, conflicts


def check_no_straddling(rows: list[Row]) -> None:
    splits_of: dict[str, set[str]] = collections.defaultdict(set)
    for r in rows:
        if r.split in SPLITS:
            splits_of[r.group].add(r.split)
    bad = [g for g, s in splits_of.items() if len(s) > 1]
    if bad:
        raise AssertionError(f"duplicate groups straddle splits: {bad[:5]}")


def main(argv=None):
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
    args = parser.parse_args(argv)
    cfg = resolve_config(args)
    start = time.perf_counter()
    if args.download:
        from guitar_distill.dataset.download import download

        counts = download(args.download)
        console.print(f"downloaded {sum(counts.values())} files into {args.download}")
        args.source = args.download
    source = resolve_source(cfg["data"]["source"], args.source)
    out = stage_dir(args.artifacts, "data")
    exclude = read_exclusions(args.exclude) if args.exclude else set()
    classes, rows, rejections, stats, conflicts = build_manifest(source, cfg, exclude=exclude)
    check_no_straddling(rows)
    write_manifest(manifest_path(args.artifacts), rows)
    write_labels(out, classes)
    counts = {c: {s: 0 for s in (*SPLITS, "unused", "excluded")} for c in classes}
    for r in rows:
        counts[r.label][r.split] += 1
    rejected_by_reason = collections.Counter(r.reason for r in rejections)
    summary = {
        "preset": cfg["name"],
        "source": str(source),
        "classes": classes,
        "image_size": int(cfg["data"]["image_size"]),
        "seed": int(cfg["data"]["seed"]),
        "counts": counts,
        **stats,
        "rejected_by_reason": dict(rejected_by_reason),
        "rejections": [{"path": r.relpath, "reason": r.reason, "detail": r.detail} for r in rejections],
        "label_conflicts": conflicts,
    }
    write_json(out / "summary.json", summary)
    write_json(out / "config.json", cfg)

    cache_bytes, cache_seconds, cached = 0, 0.0, 0
    if not args.no_cache:
        info = load_data_info(args.artifacts)
        t0 = time.perf_counter()
        for split in SPLITS:
            if info.split_rows(split):
                built = not cache_is_current(info, split, info.image_size)
                path = build_split_cache(info, split, info.image_size)
                cache_bytes += path.stat().st_size
                cached += len(info.split_rows(split)) if built else 0
        cache_seconds = time.perf_counter() - t0
    metrics = {
        **stats,
        "cache_bytes": cache_bytes,
        "cache_seconds": round(cache_seconds, 2),
        "seconds": round(time.perf_counter() - start, 2),
    }
    write_json(out / "metrics.json", metrics)

    table = Table(title=f"data: preset {cfg['name']}, {source}")
    for col in ("class", *SPLITS, "unused", "excluded"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for c in classes:
        table.add_row(c, *(str(counts[c][s]) for s in (*SPLITS, "unused", "excluded")))
    table.add_row("total", *(str(sum(counts[c][s] for c in classes)) for s in (*SPLITS, "unused", "excluded")))
    console.print(table)
    console.print(
        f"files {stats['files']}, valid {stats['valid']}, rejected {stats['rejected']} {dict(rejected_by_reason) or ''}"
    )
    for r in rejections:
        console.print(f"  rejected {r.relpath}: {r.reason}" + (f" ({r.detail})" if r.detail else ""))
    console.print(
        f"duplicates: {stats['exact_duplicate_pairs']} byte-identical pairs "
        f"({stats['exact_duplicate_pairs_across_classes']} across classes), "
        f"{stats['near_duplicate_pairs']} near-identical pairs, {stats['duplicate_groups']} groups; "
        f"label conflicts: {stats['label_conflict_groups']} groups, {stats['label_conflict_photos']} photos "
        f"({'excluded' if cfg['data']['exclude_label_conflicts'] else 'kept'})"
    )
    if cache_bytes:
        built = (
            f"{cached} photos decoded in {cache_seconds:.1f} s ({cached / max(cache_seconds, 1e-9):.0f} photos/s)"
            if cached
            else "up to date, nothing decoded"
        )
        console.print(f"cache: {cache_bytes / 2**20:.1f} MiB in {out / 'cache'}; {built}")
    console.print(
        f"manifest: {manifest_path(args.artifacts)}; summary: {out / 'summary.json'}; took {metrics['seconds']:.1f} s"
    )


if __name__ == "__main__":
    run_cli(main)
