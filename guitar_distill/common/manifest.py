"""The manifest: the split, decided once by the data stage and read by every later stage."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from guitar_distill.common.artifacts import read_json, require, write_text
from guitar_distill.common.errors import ToolkitError

FIELDS = ("path", "sha1", "class", "split", "group")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Row:
    path: str
    sha1: str
    label: str
    split: str
    group: str


def manifest_path(artifacts: Path) -> Path:
    return Path(artifacts) / "data" / "manifest.csv"


def write_manifest(path: Path, rows: list[Row]) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(FIELDS)
    for r in sorted(rows, key=lambda r: r.path):
        writer.writerow((r.path, r.sha1, r.label, r.split, r.group))
    return write_text(path, buf.getvalue())


def read_manifest(path: Path) -> list[Row]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != FIELDS:
            raise ToolkitError(f"{path}: not a manifest (columns {reader.fieldnames}, expected {list(FIELDS)})")
        return [Row(r["path"], r["sha1"], r["class"], r["split"], r["group"]) for r in reader]


@dataclass(frozen=True)
class DataInfo:
    """What later stages need to know about the data stage's output."""

    root: Path  # artifacts/data
    source: Path
    classes: list[str]
    image_size: int
    rows: list[Row]

    def split_rows(self, split: str) -> list[Row]:
        return [r for r in self.rows if r.split == split]

    def labels(self, split: str):
        import numpy as np

        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[r.label] for r in self.split_rows(split)], dtype=np.int32)


def load_data_info(artifacts: Path) -> DataInfo:
    root = Path(artifacts) / "data"
    summary = read_json(
        require(root / "summary.json", "data stage summary", "make data  (python -m guitar_distill.dataset)")
    )
    rows = read_manifest(manifest_path(artifacts))
    return DataInfo(root, Path(summary["source"]), summary["classes"], int(summary["image_size"]), rows)
