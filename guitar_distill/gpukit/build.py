"""`python -m guitar_distill.gpukit.build` (make gpu-kit): everything a GPU machine without TensorFlow or Keras needs.

The kit folder (git-ignored, carried to the machine with `carry`):

    kit.json                 preset, --set overrides, photo count, wheels, sizes
    data/                    the data stage's manifest, summary, labels and config, its photos renamed
    photos/<class>/<name>.webp   every train/val/test photo squashed to the preset's size, WebP
    wheels/                  keras and the small pure-Python packages the GPU machine lacks

The photos are what `edge.images.load_for_model` makes of the originals at the preset's size, so
the runner's decode is the identity resize of a lossy copy. The split is the one made here.
"""

from __future__ import annotations

import importlib.metadata
import io
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from guitar_distill.common.artifacts import read_json, write_bytes, write_json, write_labels
from guitar_distill.common.config import resolve_config, stage_parser
from guitar_distill.common.errors import ToolkitError, run_cli
from guitar_distill.common.manifest import SPLITS, Row, load_data_info, write_manifest
from guitar_distill.common.progress import console, progress_bar
from guitar_distill.common.resume import check_upstream
from guitar_distill.gpukit.limits import CARRY_BYTES, folder_bytes

# What the GPU machine lacks (its package list: /work/.library/device/KINDS.md): keras, and two of
# keras' own requirements. Everything else the stages import there (numpy, pillow, h5py, rich,
# ml-dtypes, absl-py, packaging, matplotlib, jax) is on it.
WHEELS = ("keras", "namex", "optree")
GPU_PYTHON = "3.12"
MANYLINUX = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
WEBP_QUALITY = 80  # about 4.5 KB a photo at 224 px: the full split in about 37 MB


def webp_bytes(path: Path, size: int) -> bytes:
    from PIL import Image

    from guitar_distill.edge.images import load_for_model

    buf = io.BytesIO()
    Image.fromarray(load_for_model(path, size)).save(buf, "WEBP", quality=WEBP_QUALITY, method=4)
    return buf.getvalue()


def kit_path(row: Row) -> str:
    return str(Path(row.path).with_suffix(".webp"))


def write_photos(info, kit: Path, size: int, workers: int = 4) -> list[Row]:
    """Every photo of the split, re-encoded into kit/photos; returns the manifest rows that name them."""
    rows = [r for r in info.rows if r.split in SPLITS]
    names = {}
    for r in rows:  # a.jpg and a.png of one class would both become a.webp
        if names.setdefault(kit_path(r), r.path) != r.path:
            raise ToolkitError(f"{r.path} and {names[kit_path(r)]} would both become {kit_path(r)} in the kit")

    def encode(row: Row) -> None:
        write_bytes(kit / "photos" / kit_path(row), webp_bytes(info.source / row.path, size))

    with progress_bar(len(rows), f"photos to {size} px WebP") as advance, ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(encode, rows):
            advance()
    return [Row(kit_path(r), r.sha1, r.label, r.split, r.group) for r in rows]


def download_wheels(dest: Path, python_versions: tuple[str, ...]) -> list[str]:
    """The pinned WHEELS (this venv's versions) for each Python: pip download, binary only, no deps."""
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in WHEELS]
    dest.mkdir(parents=True, exist_ok=True)
    for version in python_versions:
        platform = [a for p in MANYLINUX for a in ("--platform", p)]
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            str(dest),
            "--python-version",
            version,
            "--implementation",
            "cp",
            *platform,
            *pins,
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode:
            raise ToolkitError(
                f"pip download of {', '.join(pins)} for Python {version} failed:\n{result.stderr[-2000:]}"
            )
    return pins


def parse_args(argv=None):
    parser = stage_parser("Build the GPU kit: the split's photos as WebP, the manifest, the wheels, in one folder.")
    parser.add_argument("--kit", type=Path, default=Path("gpu-kit"), help="kit folder to write (default: %(default)s)")
    parser.add_argument(
        "--no-wheels",
        action="store_true",
        help="no wheels (a machine that has keras already, as the test suite's; needs no network)",
    )
    parser.add_argument(
        "--python",
        action="append",
        dest="pythons",
        metavar="X.Y",
        help=f"a Python the wheels are for (repeatable; default: {GPU_PYTHON}, and this one's)",
    )
    return parser.parse_args(argv)


def write_data(info, kit: Path) -> list:
    """The split's photos as WebP and the data stage's records, its source now the kit's photos."""
    rows = write_photos(info, kit, info.image_size)
    write_manifest(kit / "data" / "manifest.csv", rows)
    summary = read_json(info.root / "summary.json")
    write_json(kit / "data" / "summary.json", {**summary, "source": "photos"})  # the runner makes it absolute
    write_json(kit / "data" / "config.json", read_json(info.root / "config.json"))
    write_labels(kit / "data", info.classes)
    return rows


def main(argv=None):
    args = parse_args(argv)
    cfg = resolve_config(args)
    start = time.perf_counter()
    check_upstream(args.artifacts, cfg, {"data": ("data",)})
    info = load_data_info(args.artifacts)
    if info.image_size != cfg.data.image_size:
        raise ToolkitError(
            f"{args.artifacts}/data is at {info.image_size} px, preset {cfg.name} at {cfg.data.image_size}"
        )
    kit = args.kit
    shutil.rmtree(kit, ignore_errors=True)
    rows = write_data(info, kit)
    pythons = tuple(dict.fromkeys(args.pythons or (GPU_PYTHON, f"{sys.version_info.major}.{sys.version_info.minor}")))
    pins = [] if args.no_wheels else download_wheels(kit / "wheels", pythons)
    photo_bytes, wheel_bytes = folder_bytes(kit / "photos"), folder_bytes(kit / "wheels") if pins else 0
    manifest = {
        "preset": cfg.name,
        "overrides": args.overrides,
        "image_size": info.image_size,
        "classes": info.classes,
        "photos": len(rows),
        "photo_bytes": photo_bytes,
        "webp_quality": WEBP_QUALITY,
        "wheels": pins,
        "wheel_pythons": list(pythons) if pins else [],
        "wheel_bytes": wheel_bytes,
        "built": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json(kit / "kit.json", manifest)
    total = folder_bytes(kit)
    if total > CARRY_BYTES:
        raise ToolkitError(f"{kit}: {total / 2**20:.1f} MiB, over the {CARRY_BYTES // 2**20} MiB a device call carries")
    console.print(
        f"kit: {len(rows)} photos at {info.image_size} px ({photo_bytes / 2**20:.1f} MiB), "
        f"wheels {', '.join(pins) or 'none'} ({wheel_bytes / 2**20:.1f} MiB); {total / 2**20:.1f} MiB in all, "
        f"in {time.perf_counter() - start:.0f} s"
    )
    console.print(
        f"files: {kit}/ (kit.json, data/, photos/, wheels/); on the GPU machine: "
        f"python3 -m guitar_distill.gpukit.run --kit {kit} --out $OUT"
    )


if __name__ == "__main__":
    run_cli(main)
