"""`python -m guitar_distill.gpukit.receive OUT --artifacts artifacts/gpu`: a GPU run's $OUT into the usual artifacts.

Checks every piece's sha256 and the joined tar's, unpacks it, and rebuilds each stage's Keras model
in float32 (`artifacts/<stage>/model.keras`) beside its history, metrics and config, so that
`python -m guitar_distill.export`, the benchmarks and the report run here as after a local run. The data stage's
folder is the one `make gpu-kit` was built from (the same --artifacts root).
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import time
from pathlib import Path

from guitar_distill.common.artifacts import read_json, write_json
from guitar_distill.common.config import stage_parser
from guitar_distill.common.errors import ToolkitError, run_cli
from guitar_distill.common.progress import console


class ReceiveError(ToolkitError):
    """A $OUT folder that is incomplete, altered or not a GPU run's."""


def joined_results(out: Path) -> bytes:
    """The results tar, from its pieces, each and the whole checked against results.json."""
    path = Path(out) / "results.json"
    if not path.is_file():
        raise ReceiveError(f"{path}: missing; is {out} the $OUT of python3 -m guitar_distill.gpukit.run?")
    pieces = read_json(path)["pieces"]
    whole = next((p for p in pieces if p.get("whole")), None)
    parts = []
    for piece in (p for p in pieces if not p.get("whole")):
        file = Path(out) / piece["name"]
        if not file.is_file():
            raise ReceiveError(f"{file}: missing (results.json lists {len(pieces) - 1} pieces)")
        data = file.read_bytes()
        if hashlib.sha256(data).hexdigest() != piece["sha256"]:
            raise ReceiveError(f"{file}: sha256 differs from results.json's (truncated or altered in transit)")
        parts.append(data)
    data = b"".join(parts)
    if whole is None or hashlib.sha256(data).hexdigest() != whole["sha256"]:
        raise ReceiveError(
            f"{out}: the joined pieces differ from the tar the run wrote (a piece missing or out of order)"
        )
    return data


def unpack(data: bytes, dest: Path) -> Path:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")  # refuses absolute paths, .. and links out of dest
    return Path(dest) / "results"


def main(argv=None):
    parser = stage_parser("A GPU run's $OUT folder into the usual artifacts: pieces checked, Keras models rebuilt.")
    parser.add_argument("out", type=Path, help="the $OUT folder that came back (results.json, results.tar.NN)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    data = joined_results(args.out)
    from guitar_distill.common.quiet import quiet_start

    quiet_start()
    from guitar_distill.common.models import float32_copy, load_model_file, save_model

    results = read_json(args.out / "results.json")
    staging = args.artifacts / "gpu_received"
    shutil.rmtree(staging, ignore_errors=True)
    root = unpack(data, staging)
    received = []
    for stage_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        dest = args.artifacts / stage_dir.name
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for f in stage_dir.iterdir():
            if f.name != "model_fp16.keras":
                shutil.copy(f, dest / f.name)
        model = float32_copy(load_model_file(stage_dir / "model_fp16.keras"))
        model.save_weights(dest / "best.weights.h5")  # with metrics.json: a finished run, not trained again
        save_model(model, dest / "model.keras")
        received.append(stage_dir.name)
    shutil.rmtree(staging)
    write_json(args.artifacts / "gpu_run.json", results)
    console.print(
        f"received {', '.join(received) or 'nothing'} from {args.out} "
        f"(run of {results['total_seconds']:.0f} s on {', '.join(results['devices'])}) "
        f"in {time.perf_counter() - start:.0f} s"
    )
    for stage, m in results["stages"].items():
        console.print(
            f"  {stage}: best epoch {m['best_epoch']} of {m['epochs_run']}, val {m['val_accuracy']:.3f}"
            + (f", test {m['test_accuracy']:.3f}" if m.get("test_accuracy") is not None else "")
            + f", {m['train_images_per_s']:.0f} training images/s"
        )
    preset = results["kit"]["preset"]
    console.print(
        f"files: {args.artifacts}/<stage>/model.keras, {args.artifacts}/gpu_run.json; next: "
        f"make bench PRESET={preset} ARTIFACTS={args.artifacts}, then python -m benchmarks.report "
        f"--preset {preset} --artifacts {args.artifacts} --reports reports/gpu"
    )


if __name__ == "__main__":
    run_cli(main)
