"""Find the photos of a class-folder tree and validate each one by decoding it."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

from guitar_distill.common.config import resolve_project_path
from guitar_distill.common.errors import ToolkitError
from guitar_distill.edge.images import ImageRejected, load_rgb

THUMB_SIZE = 16


@dataclass(frozen=True)
class Photo:
    relpath: str  # relative to the source folder, '/'-separated
    label: str
    sha1: str
    phash: int  # 64-bit perceptual hash: finds near-duplicate candidates
    thumb: bytes  # 16x16 RGB thumbnail: confirms them (phash ignores colour)
    width: int
    height: int


@dataclass(frozen=True)
class Rejection:
    relpath: str
    label: str
    reason: str
    detail: str


def resolve_source(cfg_source: str, cli_source: Path | None) -> Path:
    """The photo folder: the command line's, else the preset's (relative to the project root)."""
    if cli_source:
        return Path(cli_source).resolve()
    return resolve_project_path(cfg_source).resolve()


def _visible(name: str) -> bool:
    return not name.startswith(".") and not name.startswith("__")


def find_classes(source: Path, classes: list[str] | None = None) -> list[str]:
    source = Path(source)
    if not source.is_dir():
        raise ToolkitError(f"source folder not found: {source}")
    found = sorted(d.name for d in source.iterdir() if d.is_dir() and _visible(d.name))
    if classes:
        missing = [c for c in classes if c not in found]
        if missing:
            raise ToolkitError(f"{source}: class folders missing for {missing}; found {found}")
        return list(classes)
    if len(found) < 2:
        raise ToolkitError(f"{source}: need at least two class sub-folders, found {found}")
    return found


def list_files(source: Path, classes: list[str]) -> list[tuple[str, str]]:
    """(relative path, class) for every visible file below each class folder, sorted."""
    items = []
    for label in classes:
        root = Path(source) / label
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if _visible(d))
            for name in sorted(filenames):
                if _visible(name):
                    rel = Path(dirpath, name).relative_to(source).as_posix()
                    items.append((rel, label))
    return items


def inspect_file(source: Path, relpath: str, label: str) -> Photo | Rejection:
    path = Path(source) / relpath
    try:
        img = load_rgb(path)
    except ImageRejected as e:
        return Rejection(relpath, label, e.reason, e.detail)
    sha1 = hashlib.sha1(path.read_bytes()).hexdigest()
    phash = int(str(imagehash.phash(img, hash_size=8)), 16)
    thumb = np.asarray(img.resize((THUMB_SIZE, THUMB_SIZE), Image.BILINEAR), dtype=np.uint8).tobytes()
    return Photo(relpath, label, sha1, phash, thumb, img.width, img.height)


def _inspect_star(args):
    return inspect_file(*args)


def scan(source: Path, classes: list[str], progress=None, workers: int | None = None):
    """Validate every file; returns (photos, rejections), both in path order."""
    files = list_files(source, classes)
    workers = workers or os.cpu_count() or 1
    results = []
    jobs = [(str(source), rel, label) for rel, label in files]
    if workers == 1 or len(jobs) < 64:
        for job in jobs:
            results.append(_inspect_star(job))
            if progress:
                progress()
    else:
        with ProcessPoolExecutor(workers) as pool:
            for result in pool.map(_inspect_star, jobs, chunksize=32):
                results.append(result)
                if progress:
                    progress()
    photos = [r for r in results if isinstance(r, Photo)]
    rejections = [r for r in results if isinstance(r, Rejection)]
    return photos, rejections


def source_title(source: Path) -> str:
    """What the photos are, as the data says it: the first heading of the folder's SOURCE.md or README.md,
    else the folder's name."""
    for name in ("SOURCE.md", "README.md"):
        path = Path(source) / name
        if path.is_file():
            heading = next((line[2:].strip() for line in path.read_text().splitlines() if line.startswith("# ")), "")
            if heading:
                return heading
    return Path(source).name.replace("_", " ").replace("-", " ").strip().capitalize()
