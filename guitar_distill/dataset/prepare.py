"""The data stage as a function: scan, validate, de-duplicate and split a folder of class sub-folders,
then decode each split into the cache. `python -m guitar_distill.dataset` and `gd.ImageFolder` call it."""

from __future__ import annotations

import collections
import time
from pathlib import Path

from guitar_distill.common.artifacts import stage_dir, write_json, write_labels
from guitar_distill.common.cache import build_split_cache, cache_is_current
from guitar_distill.common.config import Data, Preset, as_dict
from guitar_distill.common.errors import ToolkitError
from guitar_distill.common.manifest import SPLITS, Row, load_data_info, manifest_path, write_manifest
from guitar_distill.common.progress import progress_bar
from guitar_distill.dataset.dedup import find_duplicates
from guitar_distill.dataset.scan import find_classes, list_files, scan
from guitar_distill.dataset.split import split_groups

COLUMNS = (*SPLITS, "unused", "excluded")


def prepare_data(source: Path, cfg: Preset, artifacts: Path, exclude: set[str] = frozenset(), cache=True) -> dict:
    """artifacts/data: manifest.csv, labels.txt, summary.json, config.json, metrics.json and (with `cache`)
    the decoded splits. Returns the summary with its metrics."""
    start = time.perf_counter()
    out = stage_dir(artifacts, "data")
    classes, rows, rejections, stats, conflicts = build_manifest(source, cfg.data, exclude=exclude)
    write_manifest(manifest_path(artifacts), rows)
    write_labels(out, classes)
    counts = {c: dict.fromkeys(COLUMNS, 0) for c in classes}
    for r in rows:
        counts[r.label][r.split] += 1
    summary = {
        "preset": cfg.name,
        "source": str(source),
        "classes": classes,
        "image_size": cfg.data.image_size,
        "seed": cfg.data.seed,
        "counts": counts,
        **stats,
        "rejected_by_reason": dict(collections.Counter(r.reason for r in rejections)),
        "rejections": [{"path": r.relpath, "reason": r.reason, "detail": r.detail} for r in rejections],
        "label_conflicts": conflicts,
    }
    write_json(out / "summary.json", summary)
    write_json(out / "config.json", as_dict(cfg))
    metrics = {**stats, **(decode_splits(artifacts) if cache else {"cache_bytes": 0, "cache_seconds": 0.0})}
    metrics["seconds"] = round(time.perf_counter() - start, 2)
    write_json(out / "metrics.json", metrics)
    return {**summary, "metrics": metrics}


def decode_splits(artifacts: Path) -> dict:
    """Each split decoded at the data's side into the cache (skipped where it is current)."""
    info = load_data_info(artifacts)
    started, cache_bytes, decoded = time.perf_counter(), 0, 0
    for split in SPLITS:
        if info.split_rows(split):
            built = not cache_is_current(info, split, info.image_size)
            cache_bytes += build_split_cache(info, split, info.image_size).stat().st_size
            decoded += len(info.split_rows(split)) if built else 0
    seconds = time.perf_counter() - started
    return {"cache_bytes": cache_bytes, "cache_seconds": round(seconds, 2), "cache_decoded": decoded}


def build_manifest(source: Path, data: Data, progress=True, exclude: set[str] = frozenset()):
    """(classes, manifest rows, rejections, stats, label-conflict groups) of the photos under `source`."""
    classes = find_classes(source, list(data.classes) or None)
    total = len(list_files(source, classes))
    with progress_bar(total, "validating photos") as advance:
        photos, rejections = scan(source, classes, progress=advance)
    dups = find_duplicates(photos, data.near_hash_distance, data.near_thumb_diff)
    groups = dups.groups()
    # Stable group names: numbered by the sorted path of each group's first member.
    ordered = sorted(groups.values(), key=lambda members: photos[members[0]].relpath)
    group_name = {i: f"g{n:05d}" for n, members in enumerate(ordered) for i in members}
    excluded = set()
    if data.exclude_label_conflicts:
        excluded = {i for g in dups.conflicting_groups for i in groups[g]}
    by_class = groups_by_class(ordered, photos, classes, excluded)
    assignment = split_groups(by_class, as_dict(data.split), data.seed)
    # Listed photos leave after the split is made: every other photo keeps its split.
    unknown = sorted(exclude - {p.relpath for p in photos})
    if unknown:
        raise ToolkitError(
            f"{len(unknown)} path(s) in the exclusion list are not photos of {source}: {', '.join(unknown[:5])}"
        )
    rows = [
        Row(p.relpath, p.sha1, p.label, split_of(i, p, assignment, excluded, exclude), group_name[i])
        for i, p in enumerate(photos)
    ]
    check_no_straddling(rows)
    return (
        classes,
        rows,
        rejections,
        duplicate_stats(total, photos, rejections, dups, groups, exclude),
        [sorted(photos[i].relpath for i in groups[g]) for g in sorted(dups.conflicting_groups)],
    )


def groups_by_class(ordered: list[list[int]], photos, classes: list[str], excluded: set[int]) -> dict:
    """The duplicate groups of each class; a conflicting group kept by choice is filed under its majority label."""
    by_class: dict[str, list[list[int]]] = {c: [] for c in classes}
    for members in ordered:
        if members[0] not in excluded:
            majority = collections.Counter(photos[i].label for i in members).most_common(1)[0][0]
            by_class[majority].append(members)
    return by_class


def split_of(i: int, photo, assignment: dict, excluded: set[int], exclude: set[str]) -> str:
    return "excluded" if i in excluded or photo.relpath in exclude else assignment.get(i, "unused")


def duplicate_stats(total: int, photos, rejections, dups, groups: dict, exclude: set[str]) -> dict:
    return {
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


def check_no_straddling(rows: list[Row]) -> None:
    splits_of: dict[str, set[str]] = collections.defaultdict(set)
    for r in rows:
        if r.split in SPLITS:
            splits_of[r.group].add(r.split)
    bad = [g for g, s in splits_of.items() if len(s) > 1]
    if bad:
        raise AssertionError(f"duplicate groups straddle splits: {bad[:5]}")
