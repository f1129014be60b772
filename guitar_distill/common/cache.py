"""Decode each split once into a memory-mapped uint8 array, rebuilt when manifest or size change."""

from __future__ import annotations

import functools
import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from guitar_distill.common.artifacts import atomic_path, read_json, write_json
from guitar_distill.common.manifest import SPLITS, DataInfo
from guitar_distill.common.progress import progress_bar
from guitar_distill.edge.images import load_for_model


def _cache_key(info: DataInfo, split: str, size: int) -> str:
    digest = hashlib.sha256()
    digest.update(f"{size}|{info.source}|".encode())
    for r in info.split_rows(split):
        digest.update(f"{r.path}|{r.sha1}|".encode())
    return digest.hexdigest()


def cache_paths(info: DataInfo, split: str, size: int) -> tuple[Path, Path]:
    base = info.root / "cache" / f"{split}-{size}px"
    return base.with_suffix(".npy"), base.with_suffix(".json")


def cache_is_current(info: DataInfo, split: str, size: int) -> bool:
    array_path, key_path = cache_paths(info, split, size)
    return array_path.exists() and key_path.exists() and read_json(key_path).get("key") == _cache_key(info, split, size)


def build_split_cache(info: DataInfo, split: str, size: int, workers: int = 4) -> Path:
    """Decode and resize every photo of `split`; returns the .npy path. Skips work when up to date."""
    array_path, key_path = cache_paths(info, split, size)
    if cache_is_current(info, split, size):
        return array_path
    key = _cache_key(info, split, size)
    rows = info.split_rows(split)
    paths = [info.source / r.path for r in rows]
    with atomic_path(array_path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(rows), size, size, 3))
        # Pillow releases the GIL while decoding and resizing, so threads scale here.
        with progress_bar(len(rows), f"decoding {split} at {size}px") as advance, ThreadPoolExecutor(workers) as pool:
            for i, pixels in enumerate(pool.map(load_for_model, paths, [size] * len(paths))):
                out[i] = pixels
                advance()
        out.flush()
        del out  # close the map before the rename
    write_json(key_path, {"key": key, "split": split, "size": size, "count": len(rows)})
    return array_path


def load_split(info: DataInfo, split: str, size: int | None = None):
    """(images uint8 NxHxWx3 memory-mapped, labels int32 N) of one split, building the cache if needed."""
    size = size or info.image_size
    path = build_split_cache(info, split, size)
    images = np.load(path, mmap_mode="r")
    return images, info.labels(split)


def images_by_side(info: DataInfo, split: str, rows: np.ndarray | None = None):
    """side -> `split`'s images (only `rows`, if given) decoded at that side (None: the data's), each side
    loaded once: every model file is fed photos at its own input side (a teacher tests best at a larger one)."""

    @functools.cache
    def at(side: int | None) -> np.ndarray:
        images = load_split(info, split, side)[0]
        return images if rows is None else np.asarray(images[rows])

    return at


def load_splits(info: DataInfo) -> dict[str, tuple]:
    """{split: (images, labels)} for every split the manifest has photos in (a seed split has no test)."""
    return {s: load_split(info, s) for s in SPLITS if info.split_rows(s)}
