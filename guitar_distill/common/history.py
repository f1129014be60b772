"""A run's history.csv: one row an epoch, rewritten atomically; the best epoch read from it."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from guitar_distill.common.artifacts import write_text

MONITOR_BEST = "val_accuracy"
MONITOR_STOP = "val_loss"  # what the write-up's EarlyStopping watched


def read_history(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    with open(path, newline="") as f:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()} for row in csv.DictReader(f)]


def write_history(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def best_epoch(rows: list[dict]) -> dict | None:
    """The row with the highest validation accuracy; the earliest one on ties."""
    return max(rows, key=lambda r: (r[MONITOR_BEST], -r["epoch"])) if rows else None
