"""The GPU kit: built, run on the smoke preset with TensorFlow unimportable (JAX, two host devices), and received
back."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
from conftest import run_stage, split_images

from guitar_distill.gpukit.limits import BACK_FILE_BYTES, out_problems
from guitar_distill.gpukit.receive import ReceiveError, joined_results

# On PYTHONPATH, this makes `import tensorflow` fail in every process the runner starts, as on the
# GPU machine, which has JAX but no TensorFlow.
BLOCK_TENSORFLOW = """
import sys

class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError(f"{name} is blocked: the GPU machine has no TensorFlow")
        return None

sys.meta_path.insert(0, NoTensorFlow())
"""


def test_the_runner_trains_every_stage_without_tensorflow_and_what_comes_back_rebuilds(tmp_path, photo_source):
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_TENSORFLOW)
    common = ("--preset", "smoke", "--artifacts", str(tmp_path / "artifacts"))
    run_stage("dataset", *common, "--source", str(photo_source), "--no-cache")
    run_stage("gpukit.build", *common, "--kit", str(tmp_path / "kit"), "--no-wheels")
    kit = json.loads((tmp_path / "kit" / "kit.json").read_text())
    assert kit["photos"] == 30 and len(list((tmp_path / "kit" / "photos").rglob("*.webp"))) == 30

    check = subprocess.run(
        [sys.executable, "-c", "import tensorflow"], env={"PYTHONPATH": str(blocker)}, capture_output=True, text=True
    )
    assert check.returncode != 0 and "blocked" in check.stderr

    # Two host devices: every stage trains data-parallel (keras.distribution), as on a multi-GPU machine. XLA's
    # default ends a run whose devices meet an all-reduce over a minute apart, and the run's own timeout dumps
    # every thread's stack: a deadlock fails in minutes, showing where it waits.
    xla_flags = "--xla_force_host_platform_device_count=2"
    out, gpu_artifacts = tmp_path / "out", tmp_path / "gpu-artifacts"
    run_stage(
        "gpukit.run",
        "--kit",
        str(tmp_path / "kit"),
        "--out",
        str(out),
        "--artifacts",
        str(gpu_artifacts),
        "--allow-cpu",
        "--minutes",
        "4",
        env={"PYTHONPATH": str(blocker), "XLA_FLAGS": xla_flags},
        timeout=600,
    )
    assert out_problems(out) == []
    results = json.loads((out / "results.json").read_text())
    assert set(results["stages"]) == {"teacher", "distill", "baseline"}
    assert results["notes"] == [] and len(results["devices"]) == 2 and results["devices"][0].startswith("cpu")
    metrics = {s: json.loads((gpu_artifacts / s / "metrics.json").read_text()) for s in ("teacher", "distill")}
    assert all(m["backend"] == "jax" and len(m["devices"]) == 2 for m in metrics.values())
    assert "val_agreement_with_teacher" in metrics["distill"]
    # Known answer: each JAX-trained float32 file, loaded here under TensorFlow, scores what the run recorded.
    from guitar_distill.common.models import load_model_file
    from guitar_distill.common.runtimes import accuracy, predict_all

    x, y = split_images(gpu_artifacts, "val")
    for stage, record in results["stages"].items():
        probs = predict_all(load_model_file(gpu_artifacts / stage / "model.keras"), x)
        assert record["val_accuracy"] == pytest.approx(accuracy(probs, y)), stage

    run_stage("gpukit.receive", str(out), *common)
    for stage in ("teacher", "distill", "baseline"):
        assert (tmp_path / "artifacts" / stage / "model.keras").stat().st_size > 0
        assert (tmp_path / "artifacts" / stage / "history.csv").exists()
    # export reads the received models as after a local run
    run_stage("export", *common, "--models", "student")


def test_a_piece_altered_in_transit_is_refused_naming_it(tmp_path):
    pieces = [b"a" * 10, b"b" * 5]
    for k, data in enumerate(pieces):
        (tmp_path / f"results.tar.{k:02d}").write_bytes(data)
    listing = [
        {"name": f"results.tar.{k:02d}", "bytes": len(d), "sha256": hashlib.sha256(d).hexdigest()}
        for k, d in enumerate(pieces)
    ]
    listing.append(
        {"name": "results.tar", "bytes": 15, "sha256": hashlib.sha256(b"".join(pieces)).hexdigest(), "whole": True}
    )
    (tmp_path / "results.json").write_text(json.dumps({"pieces": listing}))
    assert joined_results(tmp_path) == b"a" * 10 + b"b" * 5
    (tmp_path / "results.tar.01").write_bytes(b"c" * 5)
    with pytest.raises(ReceiveError, match=r"results\.tar\.01: sha256 differs"):
        joined_results(tmp_path)
    (tmp_path / "results.tar.01").unlink()
    with pytest.raises(ReceiveError, match=r"results\.tar\.01: missing"):
        joined_results(tmp_path)


def test_out_limits_name_each_file_that_would_not_come_back(tmp_path):
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "a" / "b" / "c" / "deep.json").write_text("{}")
    (tmp_path / "big.bin").write_bytes(b"\0" * BACK_FILE_BYTES)
    (tmp_path / "odd name.txt").write_text("x")
    problems = out_problems(tmp_path)
    assert any("deep.json" in p and "folders down" in p for p in problems)
    assert any("big.bin" in p and "under 16 MiB" in p for p in problems)
    assert any("odd name.txt" in p for p in problems)
    for k in range(9):
        (tmp_path / f"f{k}").write_text("x")
    assert any("at most 8 come back" in p for p in out_problems(tmp_path))
