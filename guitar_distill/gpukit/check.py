"""`guitar-distill gpu-check` (make gpu-check): the whole kit on the smoke preset, as the GPU machine runs it.

    1. the smoke preset's data stage, and its kit (wheels for the GPU's Python and this one's)
    2. a fresh venv with only what the GPU machine has that the stages import (GPU_PACKAGES, jax
       for the CPU) and then the kit's wheels; `import tensorflow` must fail there
    3. the runner in that venv, --allow-cpu, into a temporary $OUT
    4. the device's limits: what the kit and this checkout carry, what $OUT would bring back
    5. `python -m guitar_distill.gpukit.receive` here: pieces checked and Keras models rebuilt

The venv is kept (--work/venv) and reused while GPU_PACKAGES stay the same.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from guitar_distill.common.artifacts import read_json, write_json, write_text
from guitar_distill.common.config import PROJECT_ROOT, stage_parser
from guitar_distill.common.errors import ToolkitError, run_cli
from guitar_distill.common.progress import console
from guitar_distill.gpukit.limits import CARRY_BYTES, folder_bytes, out_problems

# On the GPU machine already (KINDS.md) and imported by the stages; the versions are this venv's.
GPU_PACKAGES = (
    "jax",
    "jaxlib",
    "numpy",
    "pillow",
    "h5py",
    "rich",
    "matplotlib",
    "absl-py",
    "ml-dtypes",
    "packaging",
    "typing-extensions",
)


def tracked_bytes(root: Path) -> int:
    """What a device call carries of this checkout: its git-tracked and untracked-not-ignored files."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if listed.returncode:
        return 0
    return sum((root / p).stat().st_size for p in listed.stdout.split("\0") if p and (root / p).is_file())


def run(cmd: list[str], log: Path, env: dict | None = None, cwd: Path = PROJECT_ROOT) -> None:
    console.print("$ " + " ".join(str(c) for c in cmd))
    with open(log, "a") as f:
        result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT)
    if result.returncode:
        tail = log.read_text()[-4000:]
        raise ToolkitError(f"{' '.join(str(c) for c in cmd)} failed ({result.returncode}); its output ({log}):\n{tail}")


def gpu_like_venv(venv: Path, log: Path) -> Path:
    pins = [f"{p}=={importlib.metadata.version(p)}" for p in GPU_PACKAGES]
    python = venv / "bin" / "python"
    stamp = venv / "packages.txt"
    if not (python.exists() and stamp.exists() and stamp.read_text().split() == pins):
        shutil.rmtree(venv, ignore_errors=True)
        run([sys.executable, "-m", "venv", venv], log)
        run([python, "-m", "pip", "install", "-q", *pins], log)
        write_text(stamp, "\n".join(pins) + "\n")
    return python


def fresh_work_folder(work: Path) -> Path:
    for name in ("artifacts", "kit", "out", "gpu-artifacts", "site", "log.txt"):
        path = work / name
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    return work


def run_like_the_gpu_machine(work: Path, minutes: float, log: Path) -> dict:
    """The kit's runner in a venv with only the GPU machine's packages (TensorFlow must not import there)."""
    python = gpu_like_venv(work / "venv", log)
    blocked = subprocess.run([python, "-c", "import tensorflow"], capture_output=True)
    if blocked.returncode == 0:
        raise ToolkitError(f"{python}: tensorflow imports in the GPU-like venv; it must not")
    gpu_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    runner = ["--kit", work / "kit", "--out", work / "out", "--artifacts", work / "gpu-artifacts"]
    runner += ["--site", work / "site", "--allow-cpu", "--minutes", minutes]
    run([python, "-m", "guitar_distill.gpukit.run", *runner], log, env=gpu_env)
    return read_json(work / "out" / "results.json")


def print_result(record: dict, work: Path) -> None:
    kit_bytes, tree_bytes = record["kit_bytes"], record["checkout_bytes"]
    console.print(
        f"gpu-check passed in {record['seconds']:.0f} s: runner {record['runner_seconds']:.0f} s on "
        f"{', '.join(record['devices'])} with tensorflow unimportable; {len(record['out_files'])} files "
        f"({record['out_bytes'] / 2**20:.1f} MiB) come back; kit {kit_bytes / 2**20:.1f} MiB"
    )
    if kit_bytes + tree_bytes > CARRY_BYTES:
        console.print(
            f"note: this checkout's own files are {tree_bytes / 2**20:.1f} MiB (models/ mostly): "
            f"with the kit {(kit_bytes + tree_bytes) / 2**20:.1f} MiB, over the {CARRY_BYTES // 2**20} MiB a "
            f"device call carries; docs/gpu.md says how to leave models/ behind for the call"
        )
    console.print(f"files: {work}/check.json, log.txt, out/, kit/")


def main(argv=None):
    parser = stage_parser(
        "Prove the GPU kit here: the smoke preset in a venv with only the GPU machine's packages.",
        default_preset="smoke",
    )
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: ARTIFACTS/gpu-check)")
    parser.add_argument("--minutes", type=float, default=6.0, help="the runner's budget (default: %(default)s)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    work = fresh_work_folder((args.work or args.artifacts / "gpu-check").resolve())
    log, here = work / "log.txt", [sys.executable, "-m"]
    common = [
        "--preset",
        args.preset,
        "--artifacts",
        work / "artifacts",
        *sum((["--set", s] for s in args.overrides), []),
    ]
    run([*here, "guitar_distill.dataset", *common, "--no-cache"], log)
    run([*here, "guitar_distill.gpukit.build", *common, "--kit", work / "kit"], log)
    kit_bytes, tree_bytes = folder_bytes(work / "kit"), tracked_bytes(PROJECT_ROOT)
    results = run_like_the_gpu_machine(work, args.minutes, log)
    problems = out_problems(work / "out")
    if kit_bytes > CARRY_BYTES:
        problems.append(f"the kit is {kit_bytes / 2**20:.1f} MiB, over the {CARRY_BYTES // 2**20} MiB a call carries")
    run([*here, "guitar_distill.gpukit.receive", work / "out", *common], log)
    if problems:
        raise ToolkitError("gpu-check failed:\n  " + "\n  ".join(problems))
    record = {
        "preset": args.preset,
        "kit_bytes": kit_bytes,
        "checkout_bytes": tree_bytes,
        "carry_bytes": kit_bytes + tree_bytes,
        "carry_limit_bytes": CARRY_BYTES,
        "out_files": sorted(p.name for p in (work / "out").iterdir()),
        "out_bytes": folder_bytes(work / "out"),
        "runner_seconds": results["total_seconds"],
        "wall_seconds": results["wall_seconds"],
        "stages": results["stages"],
        "devices": results["devices"],
        "seconds": round(time.perf_counter() - start, 1),
    }
    write_json(work / "check.json", record)
    print_result(record, work)


if __name__ == "__main__":
    run_cli(main)
