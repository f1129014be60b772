"""`python3 -m guitar_distill.gpukit.run --kit KIT --out $OUT`: the write-up's run on a lent GPU machine, one command.

    1. install the kit's wheels into --site (no index, no network)
    2. check that JAX sees a GPU (--allow-cpu: the proof run here, `make gpu-check`)
    3. the data stage's output from the kit, and the decode cache
    4. python -m teacher, then distill, then student (the no-KD baseline), under KERAS_BACKEND=jax,
       each capped in wall-clock time (`max_minutes`) so that the whole fits --minutes
    5. into OUT: results.tar in pieces under 16 MiB (weights as float16 Keras files, histories,
       metrics, configs) and results.json (each piece's sha256, every stage's wall time, images/s)

It runs the project's own stages; nothing here trains. Only the standard library is imported
before the wheels are installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from guitar_distill.common.artifacts import read_json, sha256_file, write_json
from guitar_distill.common.errors import ToolkitError, run_cli
from guitar_distill.gpukit.limits import PIECE_BYTES, out_problems

STAGES = ("teacher", "distill", "baseline")  # trained in this order; distill reads the teacher
STAGE_MODULES = {
    "teacher": "guitar_distill.teacher",
    "distill": "guitar_distill.distill",
    "baseline": "guitar_distill.student",
}
STAGE_TABLES = {"teacher": "teacher", "distill": "student", "baseline": "student"}
SHARES = {"teacher": 0.7, "distill": 0.5, "baseline": 1.0}  # of the training time left when each starts
STAGE_OVERHEAD_S = 60  # start-up, compilation and the final evaluation, outside a stage's fit budget
PACK_S = 60  # the three models to float16 in one process, and the tar


def install_wheels(kit: Path, pins: list[str], site: Path) -> Path | None:
    """pip install the pinned wheels into `site`; pip picks each one's file for this Python."""
    if not pins:
        return None
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-index",
        "--no-deps",
        "--no-compile",
        "--no-cache-dir",
        "--upgrade",
        "--target",
        str(site),
        "--find-links",
        str(kit / "wheels"),
        *pins,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode:
        raise ToolkitError(f"installing the kit's wheels ({', '.join(pins)}) failed:\n{result.stderr[-2000:]}")
    return site


def stage_env(site: Path | None) -> dict:
    path = [str(p) for p in (site, Path.cwd()) if p] + [
        p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p
    ]
    return {
        "GUITAR_FEED_WORKERS": str(min(8, os.cpu_count() or 1)),
        **os.environ,
        "KERAS_BACKEND": "jax",
        "PYTHONPATH": os.pathsep.join(path),
        "KERAS_VERBOSE": "2",
        "PYTHONUNBUFFERED": "1",
    }


def devices(env: dict) -> list[str]:
    code = "import jax, json; print(json.dumps([f'{d.platform}:{d.device_kind}' for d in jax.devices()]))"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if result.returncode:
        raise ToolkitError(f"JAX did not start:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def unpack_data(kit: Path, artifacts: Path) -> None:
    """artifacts/data as the data stage left it here, its source now the kit's photos."""
    data = artifacts / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name in ("manifest.csv", "labels.txt", "config.json"):
        shutil.copy(kit / "data" / name, data / name)
    summary = read_json(kit / "data" / "summary.json")
    write_json(data / "summary.json", {**summary, "source": str((kit / "photos").resolve())})


def decode(artifacts: Path, env: dict) -> None:
    code = (
        "import sys; from pathlib import Path; from guitar_distill.common.cache import load_splits; "
        "from guitar_distill.common.manifest import load_data_info; "
        "print({s: len(x) for s, (x, _) in load_splits(load_data_info(Path(sys.argv[1]))).items()})"
    )
    subprocess.run([sys.executable, "-c", code, str(artifacts)], env=env, check=True)


def train(stage: str, kit_manifest: dict, artifacts: Path, minutes: float, precision: str, env: dict) -> None:
    table = STAGE_TABLES[stage]
    sets = [*kit_manifest["overrides"], f"{table}.max_minutes={minutes:.2f}"]
    if stage == "teacher" and precision:
        sets.append(f"teacher.mixed_precision={precision}")
    cmd = [
        sys.executable,
        "-m",
        STAGE_MODULES[stage],
        "--preset",
        kit_manifest["preset"],
        "--artifacts",
        str(artifacts),
    ]
    for item in sets:
        cmd += ["--set", item]
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, env=env, check=True)


def pack(artifacts: Path, out: Path, env: dict) -> list[dict]:
    """Each stage's model as float16 Keras weights, plus its records, in one tar cut into pieces."""
    staging = artifacts / "pack"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    # One process converts every model: each fresh process pays JAX's and Keras' start-up again.
    code = (
        "import sys; from pathlib import Path; from guitar_distill.common.models import load_model_file, "
        "retyped_copy, save_model\nfor src, dst in zip(sys.argv[1::2], sys.argv[2::2]):\n"
        "    save_model(retyped_copy(load_model_file(Path(src)), 'float16'), Path(dst))"
    )
    pairs = []
    for stage in STAGES:
        src, dst = artifacts / stage, staging / stage
        if not (src / "model.keras").exists():
            continue
        dst.mkdir(parents=True)
        pairs += [str(src / "model.keras"), str(dst / "model_fp16.keras")]
        for name in ("history.csv", "metrics.json", "config.json", "labels.txt", "curves.png"):
            if (src / name).exists():
                shutil.copy(src / name, dst / name)
    if pairs:
        subprocess.run([sys.executable, "-c", code, *pairs], env=env, check=True)
    tar_path = artifacts / "results.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(staging, arcname="results")
    pieces = []
    with open(tar_path, "rb") as f:
        for k, block in enumerate(iter(lambda: f.read(PIECE_BYTES), b"")):
            piece = out / f"results.tar.{k:02d}"
            piece.write_bytes(block)
            pieces.append({"name": piece.name, "bytes": len(block), "sha256": hashlib.sha256(block).hexdigest()})
    return pieces + [
        {"name": "results.tar", "bytes": tar_path.stat().st_size, "sha256": sha256_file(tar_path), "whole": True}
    ]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m guitar_distill.gpukit.run", description=__doc__.splitlines()[0])
    parser.add_argument("--kit", type=Path, required=True, help="the folder make gpu-kit wrote")
    parser.add_argument(
        "--out", type=Path, default=Path(os.environ.get("OUT", "gpu-out")), help="where results go (default: $OUT)"
    )
    parser.add_argument("--artifacts", type=Path, default=Path("/tmp/gpu-artifacts"), help="working artifacts root")
    parser.add_argument("--site", type=Path, default=Path("/tmp/gpukit-site"), help="where the wheels are installed")
    parser.add_argument(
        "--minutes", type=float, default=8.5, help="wall-clock budget of the whole run (default: %(default)s)"
    )
    parser.add_argument(
        "--precision",
        default="bfloat16",
        choices=("bfloat16", "float16", ""),
        help="the teacher's mixed precision (default: %(default)s)",
    )
    parser.add_argument("--allow-cpu", action="store_true", help="run without a GPU (the proof run: make gpu-check)")
    return parser.parse_args(argv)


class Clock:
    """Each step's wall time, printed as it ends and kept for results.json."""

    def __init__(self):
        self.start, self.wall = time.perf_counter(), {}

    def __call__(self, name, fn, *args):
        t0 = time.perf_counter()
        value = fn(*args)
        self.wall[name] = round(time.perf_counter() - t0, 1)
        print(f"[{name}] {self.wall[name]:.0f} s", flush=True)
        return value

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def train_stages(args, kit_manifest: dict, env: dict, timed: Clock) -> list[str]:
    """Each stage with its share of the time left; returns notes on the stages that failed."""
    notes = []
    for stage in STAGES:
        overhead = PACK_S + STAGE_OVERHEAD_S * (len(STAGES) - STAGES.index(stage))
        minutes = max((args.minutes * 60.0 - timed.elapsed() - overhead) * SHARES[stage], 30.0) / 60.0
        try:
            timed(stage, train, stage, kit_manifest, args.artifacts, minutes, args.precision, env)
        except subprocess.CalledProcessError as e:
            notes.append(f"{stage} failed with exit code {e.returncode}")
            print(notes[-1], flush=True)
            if stage == "teacher":
                break  # the students need it
    return notes


STAGE_FIELDS = (
    "best_epoch",
    "epochs_run",
    "train_accuracy",
    "val_accuracy",
    "test_accuracy",
    "train_images_per_s",
    "train_seconds",
    "dtype_policy",
)


def main(argv=None):
    args = parse_args(argv)
    timed = Clock()
    kit_manifest = read_json(args.kit / "kit.json")
    args.out.mkdir(parents=True, exist_ok=True)
    site = timed("install", install_wheels, args.kit, kit_manifest["wheels"], args.site)
    env = stage_env(site)
    found = timed("devices", devices, env)
    if not any(not d.startswith("cpu") for d in found) and not args.allow_cpu:
        raise ToolkitError(f"no GPU: JAX sees {found} (--allow-cpu runs anyway)")
    print(f"devices: {', '.join(found)}", flush=True)
    timed("data", unpack_data, args.kit, args.artifacts)
    timed("decode", decode, args.artifacts, env)
    notes = train_stages(args, kit_manifest, env, timed)
    pieces = timed("pack", pack, args.artifacts, args.out, env)
    done = [s for s in STAGES if (args.artifacts / s / "metrics.json").exists()]
    metrics = {s: read_json(args.artifacts / s / "metrics.json") for s in done}
    results = {
        "kit": kit_manifest,
        "devices": found,
        "minutes": args.minutes,
        "precision": args.precision,
        "wall_seconds": timed.wall,
        "total_seconds": round(timed.elapsed(), 1),
        "notes": notes,
        "pieces": pieces,
        "stages": {s: {k: m.get(k) for k in STAGE_FIELDS} for s, m in metrics.items()},
    }
    write_json(args.out / "results.json", results)
    problems = out_problems(args.out)
    if problems:
        raise ToolkitError("what is under OUT would not all come back:\n  " + "\n  ".join(problems))
    summary = ", ".join(f"{s} val {m.get('val_accuracy', float('nan')):.3f}" for s, m in metrics.items())
    print(
        f"gpu run done in {results['total_seconds']:.0f} s: {summary or 'nothing trained'}; "
        f"{len(pieces) - 1} piece(s) and results.json in {args.out}",
        flush=True,
    )
    if notes:
        raise ToolkitError("; ".join(notes))


if __name__ == "__main__":
    run_cli(main)
