"""Benchmark harness logic on known numbers and on the smoke models (no timings asserted)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_stage, smoke_models

from guitar_distill.benchmarks.accuracy import classification_metrics, expected_calibration_error
from guitar_distill.benchmarks.latency import flag_int8, latency_table, median_of_rounds, speedups, summarize
from guitar_distill.benchmarks.models import find_model_files
from guitar_distill.benchmarks.report import side_by_side, side_by_side_table
from guitar_distill.common.corruptions import CORRUPTIONS


def test_percentiles_on_known_samples():
    s = summarize(list(range(1, 101)))  # 1..100 ms
    assert s["runs"] == 100 and s["p50_ms"] == pytest.approx(50.5) and s["p90_ms"] == pytest.approx(90.1)
    assert s["p99_ms"] == pytest.approx(99.01) and s["mean_ms"] == pytest.approx(50.5)
    assert s["images_per_s"] == pytest.approx(1000 / 50.5)
    with pytest.raises(ValueError):
        summarize([])


def test_rounds_give_medians_and_the_speedup_pairs_rounds():
    stats = median_of_rounds(
        [{"times_ms": [1.0, 2.0, 3.0]}, {"times_ms": [10.0, 10.0, 10.0]}, {"times_ms": [4.0, 4.0, 4.0]}]
    )
    assert stats["p50_ms_rounds"] == [2.0, 10.0, 4.0] and stats["p50_ms"] == 4.0 and stats["runs"] == 9
    # A slow moment in round two hits both models: paired per round, the ratio stays 20x; the
    # medians of each model's rounds alone would say 40 / 1.5 = 26.7x.
    rows = [
        {"model": "teacher", "fmt": "tflite_fp16", "threads": 1, "p50_ms": 40.0, "p50_ms_rounds": [40.0, 80.0, 30.0]},
        {"model": "teacher", "fmt": "tflite_fp32", "threads": 1, "p50_ms": 40.0, "p50_ms_rounds": [40.0, 80.0, 30.0]},
        {"model": "student", "fmt": "tflite_int8", "threads": 1, "p50_ms": 1.5, "p50_ms_rounds": [2.0, 4.0, 1.5]},
        {"model": "student", "fmt": "tflite_int8", "threads": 2, "p50_ms": 1.0, "p50_ms_rounds": [1.0]},
    ]
    [found] = speedups(rows)  # no teacher at 2 threads: no pair there
    assert found["teacher"] == "tflite_fp32" and found["threads"] == 1
    assert found["ratio_rounds"] == [20.0, 20.0, 20.0] and found["ratio"] == 20.0
    assert speedups(rows[:1] + rows[2:3])[0]["teacher"] == "tflite_fp16"  # the released teacher alone


def test_int8_flag_and_tables():
    base = {
        "runtime": "litert-xnnpack",
        "p90_ms": 1,
        "p99_ms": 1,
        "mean_ms": 1,
        "images_per_s": 1,
        "cold_start_ms": 1,
        "peak_rss_mib": 40,
        "bare_rss_mib": 10,
        "size_mb": 1,
        "parameters": 10,
        "macs": 1e6,
        "roof": "fp32",
        "roofline_pct": 1,
        "batch_images_per_s": None,
    }
    rows = [
        dict(base, model="student", fmt="tflite_fp32", threads=1, p50_ms=2.0),
        dict(base, model="student", fmt="tflite_int8", threads=1, p50_ms=3.0),
        dict(base, model="student", fmt="tflite_dynamic_int8", threads=1, p50_ms=1.0),
    ]
    flag_int8(rows)
    assert [r["int8_not_faster"] for r in rows] == [False, True, False]
    table = latency_table(rows)
    assert table.count("\n") == 5 and "int8 not faster than fp32" in table
    assert "| 40 | 30 | 1.00 |" in table  # peak, and its increase over the bare interpreter
    latency = {"results": [dict(r, threads=t) for r in rows for t in (1, 2)]}
    accuracy = {"results": {"student/tflite_int8": {"top1": 0.5, "agreement_with_teacher": 0.75}}}
    merged = side_by_side(latency, accuracy)
    assert len(merged) == 3 and merged[1]["top1"] == 0.5 and "p50_ms_2" in merged[1]
    assert "| student | tflite_int8 | litert-xnnpack | 0.500 | 0.750 |" in side_by_side_table(merged, [1, 2])


def test_classification_metrics_and_ece():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])
    labels = np.array([0, 1, 1, 2])
    m = classification_metrics(probs, labels, ["a", "b", "c"])
    assert m["top1"] == 0.75 and m["top3"] == 1.0
    assert m["confusion"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert m["per_class"]["a"]["precision"] == 0.5 and m["per_class"]["b"]["recall"] == 0.5
    perfect = np.eye(3)[[0, 1, 2]]
    assert expected_calibration_error(perfect, np.array([0, 1, 2])) == 0.0
    assert expected_calibration_error(
        np.full((2, 2), 0.5) + [[0.4, -0.4], [0.4, -0.4]], np.array([1, 1])
    ) == pytest.approx(0.9)


def test_missing_models_are_reported_not_fatal(tmp_path):
    found, missing = find_model_files(tmp_path)
    assert found == [] and any("teacher/keras" in m for m in missing)


@smoke_models
def test_benchmarks_on_smoke_models(exported, tmp_path):
    smoke_artifacts = exported
    common = ("--preset", "smoke", "--artifacts", str(smoke_artifacts))
    run_stage(
        "benchmarks.latency",
        *common,
        "--models",
        "student",
        "--formats",
        "keras",
        "tflite_fp32",
        "tflite_int8",
        "onnx_fp32",
        "--threads",
        "1",
        "--runs",
        "5",
    )
    latency = json.loads((smoke_artifacts / "bench" / "latency.json").read_text())
    assert {r["fmt"] for r in latency["results"]} == {"keras", "tflite_fp32", "tflite_int8", "onnx_fp32"}
    rows = {r["fmt"]: r for r in latency["results"]}
    from guitar_distill.common.models import count_macs, load_model_file

    student = load_model_file(smoke_artifacts / "distill" / "model.keras")
    for r in rows.values():
        # the network's own counts, the same in every format; percentiles in order
        assert r["parameters"] == student.count_params() and r["macs"] == count_macs(student)
        assert r["runs"] >= 5 and 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] and r["roofline_pct"] > 0
        assert r["bare_rss_mib"] < r["runtime_rss_mib"] <= r["peak_rss_mib"]
    # Each worker imports only its runtime: TensorFlow alone is hundreds of MiB over Python, LiteRT and
    # onnxruntime a few tens, whatever the machine.
    over = {f: r["peak_rss_mib"] - r["bare_rss_mib"] for f, r in rows.items()}
    assert over["tflite_int8"] * 3 < over["keras"] and over["onnx_fp32"] * 3 < over["keras"]
    assert [rows[f]["roof"] for f in ("keras", "tflite_fp32", "tflite_int8", "onnx_fp32")] == [
        "fp32",
        "litert-fp32",
        "litert-int8",
        "onnxruntime-fp32",
    ]
    roofs = latency["hardware"]["roofs_gops"]
    assert set(roofs) == {"fp32", "litert-fp32", "litert-int8", "onnxruntime-fp32", "onnxruntime-int8"}
    assert all(v["1"] > 0 for v in roofs.values())
    run_stage("benchmarks.accuracy", *common, "--models", "student")
    run_stage("benchmarks.report", *common, "--reports", str(tmp_path / "reports"))
    report = (tmp_path / "reports" / "README.md").read_text()
    assert "| student | tflite_int8 |" in report and "int8 fully-connected (LiteRT XNNPACK)" in report
    assert (tmp_path / "reports" / "figures" / "accuracy_vs_latency.png").stat().st_size > 1000
    assert (smoke_artifacts / "bench" / "confusion" / "student_keras.png").exists()


@smoke_models
def test_robustness_sweeps_every_corruption_for_this_runs_models_and_one_given(exported, tmp_path):
    """The sweep on a few test photos: the run's models and a model file given by name (a student trained
    another way), on the same photos and corruptions."""
    other = tmp_path / "other.tflite"
    shutil.copy(exported / "export" / "student" / "tflite_int8" / "model.tflite", other)
    common = ("--preset", "smoke", "--artifacts", str(exported), "--limit", "3")
    run_stage("benchmarks.robustness", *common, "--model", f"other={other}")
    record = json.loads((exported / "bench" / "robustness.json").read_text())
    results = record["results"]
    assert set(results) == {"teacher/keras", "student/keras", "student/tflite_int8", "other"}
    assert results["other"] == results["student/tflite_int8"]  # the same file, the same photos and seeds
    assert set(results["other"]) == {"clean", *CORRUPTIONS} and record["settings"]["images"] == 3
    with pytest.raises(AssertionError, match="expected NAME=FILE"):
        run_stage("benchmarks.robustness", *common, "--model", "other=nope.tflite")


@pytest.mark.slow
def test_student_size_benchmark_runs_and_applies_the_rule(tmp_path):
    run_stage(
        "benchmarks.student_size",
        "--preset",
        "smoke",
        "--size",
        "32",
        "--candidates",
        "8,8,8",
        "4,8,16",
        "mobilenet_v3_small:0.25",
        "--repeats",
        "1",
        "--out",
        str(tmp_path),
    )
    result = json.loads((tmp_path / "student_size.json").read_text())
    teacher, *students = result["results"]
    assert teacher["model"] == "resnet50_teacher" and len(students) == 3
    for s in students:
        assert s["param_ratio"] == pytest.approx(teacher["parameters"] / s["parameters"])
        assert s["qualifies"] == (s["param_ratio"] >= 30 and s["latency_ratio"] >= 30)
        assert s["size_mb"] < teacher["size_mb"]
    assert students[0]["parameters"] != students[1]["parameters"]
    table = (tmp_path / "student_size.md").read_text()
    assert "| nin_student | [4, 8, 16] |" in table and "| mobilenet_v3_small_student | alpha 0.25 |" in table


def train_rate(photo_source, out, *flags):
    """The training-rate benchmark on the smoke preset, one timed batch."""
    run_stage(
        "benchmarks.train_rate",
        "--preset",
        "smoke",
        "--batches",
        "1",
        "--source",
        str(photo_source),
        *flags,
        "--out",
        str(out),
    )


def test_train_rate_benchmark(photo_source, tmp_path):
    train_rate(photo_source, tmp_path, "--batch-norm", "keras", "--strided-pointwise", "keras")
    result = json.loads((tmp_path / "train_rate_smoke.json").read_text())
    assert result["settings"]["image_size"] == 32 and set(result["results"]) == {"teacher", "student"}
    assert (result["settings"]["batch_norm"], result["settings"]["strided_pointwise"]) == ("keras", "keras")
    teacher, student = result["results"]["teacher"], result["results"]["student"]
    # the smoke preset's networks and recipe, known answers: ResNet50 with a Flatten head over its 1x1 map and
    # the NiN (8, 16, 32), both for the 3 classes of photo_source; batches of 8, epochs of 2 batches
    assert (teacher["parameters"], student["parameters"]) == (23_593_859, 20_315)
    assert all((r["batch_size"], r["steps_per_epoch"]) == (8, 2) for r in (teacher, student))
    assert all(r["train_step_images_per_s"] > 0 and r["fit_images_per_s"] > 0 for r in (teacher, student))
    assert "| teacher |" in (tmp_path / "train_rate_smoke.md").read_text()


def test_train_rate_profile_names_where_the_step_goes(photo_source, tmp_path):
    train_rate(photo_source, tmp_path, "--models", "student", "--profile", "2")
    profile = json.loads((tmp_path / "train_rate_smoke.json").read_text())["results"]["student"]["profile"]
    assert profile["steps"] == 2 and profile["step_wall_ms"] > 0 and profile["op_ms_per_step"] > 0
    kinds = profile["kinds"]
    # the NiN's convolutions and batch norms run both ways; the optimiser updates its variables
    assert all(kinds[k]["forward+update_ms"] > 0 and kinds[k]["backward_ms"] > 0 for k in ("convolution", "batch norm"))
    assert kinds["optimizer and variables"]["forward+update_ms"] > 0
    assert sum(k["share"] for k in kinds.values()) == pytest.approx(1)
    ms = [o["ms_per_step"] for o in profile["ops"]]
    assert ms == sorted(ms, reverse=True) and sum(ms) == pytest.approx(profile["op_ms_per_step"])
    assert any("FusedBatchNormGrad" in o["op"] and o["phase"] == "backward" for o in profile["ops"])
    assert list(Path(profile["trace"]).rglob("*.xplane.pb"))
    assert "## Step profile: student (2 traced steps)" in (tmp_path / "train_rate_smoke.md").read_text()


def test_op_kinds():
    from guitar_distill.benchmarks.step_profile import op_kind

    assert op_kind("_MklNativeConv2DBackpropFilter") == "convolution"
    assert op_kind("FusedBatchNormGradV3") == "batch norm"
    assert op_kind("ResourceApplyKerasMomentum") == "optimizer and variables"
    assert op_kind("ReluGrad") == "element-wise and other"


def test_cache_build_benchmark_decodes_from_scratch(photo_source, tmp_path):
    from guitar_distill.benchmarks.cache_build import main as cache_build
    from guitar_distill.dataset.__main__ import main as data_main

    artifacts = tmp_path / "art"
    data_main(["--preset", "smoke", "--source", str(photo_source), "--artifacts", str(artifacts)])
    cache_build(
        [
            "--preset",
            "smoke",
            "--artifacts",
            str(artifacts),
            "--sizes",
            "32",
            "--workers",
            "1",
            "2",
            "--out",
            str(tmp_path),
        ]
    )
    rows = json.loads((tmp_path / "cache_build.json").read_text())["results"]
    assert [(r["size"], r["workers"], r["photos"]) for r in rows] == [(32, 1, 18), (32, 2, 18)]
    assert all(r["photos_per_s"] > 0 for r in rows)
