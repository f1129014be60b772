"""What the device tool carries and brings back (/work/.library/device/README.md, "Limits")."""

from __future__ import annotations

import re
from pathlib import Path

CARRY_BYTES = 64 * 2**20  # the working tree that travels, carried paths included
BACK_FILES = 8  # files from $OUT
BACK_FILE_BYTES = 16 * 2**20  # each under this
BACK_BYTES = 64 * 2**20  # together
BACK_DEPTH = 2  # $OUT/a/b/file comes back, $OUT/a/b/c/file does not
PIECE_BYTES = 15 * 2**20  # what the runner cuts its results into: under the per-file limit
NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def out_problems(out: Path) -> list[str]:
    """Why what lies under `out` would not all come back; empty when it would."""
    out = Path(out)
    files = [p for p in sorted(out.rglob("*")) if p.is_file() or p.is_symlink()]
    problems = []
    if len(files) > BACK_FILES:
        problems.append(f"{len(files)} files under {out}, at most {BACK_FILES} come back")
    total = 0
    for p in files:
        rel = p.relative_to(out)
        if p.is_symlink():
            problems.append(f"{rel}: a link, links do not come back")
            continue
        size = p.stat().st_size
        total += size
        if size >= BACK_FILE_BYTES:
            problems.append(f"{rel}: {size / 2**20:.1f} MiB, each file must be under {BACK_FILE_BYTES // 2**20} MiB")
        if len(rel.parts) - 1 > BACK_DEPTH:
            problems.append(f"{rel}: more than {BACK_DEPTH} folders down")
        bad = [part for part in rel.parts if not NAME.match(part)]
        if bad:
            problems.append(f"{rel}: names may hold only letters, digits, '.', '_' and '-' ({bad[0]!r})")
    if total > BACK_BYTES:
        problems.append(f"{total / 2**20:.1f} MiB under {out}, at most {BACK_BYTES // 2**20} MiB come back")
    return problems
