"""Artifact layout and writes that never leave a half-written file behind."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import tempfile
from pathlib import Path

from guitar_distill.common.errors import ToolkitError


def stage_dir(artifacts: Path, stage: str) -> Path:
    path = Path(artifacts) / stage
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str | None = None):
    """Yield a temporary path in the same folder; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the real suffix: Keras and h5py pick the format from the file name.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix or "".join(path.suffixes))
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():  # mkstemp makes it 0600; give it the mode a plain open() would
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_labels(folder: Path, classes: list[str]) -> Path:
    """labels.txt beside a model: one class a line, in the order of its outputs."""
    return write_text(Path(folder) / "labels.txt", "\n".join(classes) + "\n")


# How a model was trained, kept beside its model.keras wherever the model goes (a FixRes copy, an ensemble).
RUN_RECORDS = ("config.json", "history.csv", "curves.png")


def copy_run_records(source: Path, dest: Path) -> None:
    """The training run's records that folder `source` holds, into folder `dest`."""
    import shutil

    for name in RUN_RECORDS:
        if (Path(source) / name).exists():
            shutil.copy(Path(source) / name, Path(dest) / name)


def write_json(path: Path, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: Path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _json_default(obj):
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def require(path: Path, what: str, hint: str) -> Path:
    """Fail with a message that names the missing input and the command that makes it."""
    path = Path(path)
    if not path.exists():
        raise ToolkitError(f"{what} not found: {path}\n  make it first with: {hint}")
    return path


def environment_info() -> dict:
    """Versions and hardware, recorded in every metrics.json."""
    import importlib.metadata as md

    versions = {}
    for dist in ("keras", "tensorflow", "jax", "tf-keras", "onnx", "onnxruntime", "ai-edge-litert", "numpy", "pillow"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[dist] = md.version(dist)
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": cpu_name(),
        "simd": cpu_flags(),
        "cpu_count": os.cpu_count(),
        "versions": versions,
    }


SIMD_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "neon",
    "asimd",
    "asimddp",
)


def cpu_flags() -> list[str]:
    """The SIMD features that decide how fast a model runs here (/proc/cpuinfo), in a fixed order."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            present = set(line.split(":", 1)[1].split())
            return [f for f in SIMD_FLAGS if f in present]
    return []


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
