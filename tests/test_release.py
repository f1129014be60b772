"""The release stays true to its records and its code: the model card is made from the records (known figures
land where they belong), and the bundle is made from guitar_distill/edge; the
committed card is exactly what the committed records render to."""

import re
import sys
from pathlib import Path

import numpy as np

from guitar_distill.common.artifacts import read_json
from guitar_distill.common.config import MODELS_DIR, PROJECT_ROOT, preset_from_dict
from guitar_distill.export.model_card import (
    augmentation_text,
    baseline_recipe,
    confused_pairs,
    load_records,
    render_model_card,
    teacher_sides,
)

MODELS = MODELS_DIR


def test_confused_pairs_are_the_largest_off_diagonal_cells():
    confusion = np.array([[5, 3, 0], [1, 7, 4], [0, 4, 2]])
    assert confused_pairs(confusion, ["a", "b", "c"], top=3) == [
        ("b", "c", 4, 4 / 12),
        ("c", "b", 4, 4 / 6),
        ("a", "b", 3, 3 / 8),
    ]


def test_the_card_names_the_sides_a_teacher_trained_at_and_the_one_it_tests_at():
    from guitar_distill.common.config import load_preset

    assert teacher_sides(load_preset("cpu"), {}) == "64 px"
    fixed = {"fixres": {"image_size": 176, "batch_norm": "reestimated"}}
    assert teacher_sides(load_preset("grow"), fixed) == (
        "112 -> 128 -> 144 -> 160 px, tested at 176 px (batch-norm statistics re-estimated there, chosen on validation)"
    )


def test_the_card_says_when_the_student_mixed_photos_and_its_baseline_did_not():
    from guitar_distill.common.config import apply_overrides, load_preset

    plain = load_preset("patient")
    mixed = apply_overrides(plain, ["student.mix=mixup", "student.mix_alpha=0.2"])
    assert augmentation_text(plain.student) == "crop_flip augmentation"
    assert augmentation_text(mixed.student) == "crop_flip augmentation and MixUp at alpha 0.2"
    assert baseline_recipe(plain, mixed.student) == "same recipe without MixUp"
    assert baseline_recipe(mixed, plain.student) == "same recipe but crop_flip augmentation and MixUp at alpha 0.2"
    assert baseline_recipe(mixed, mixed.student) == "same recipe"


def test_committed_card_is_what_the_release_records_render_to():
    card = (MODELS / "MODEL_CARD.md").read_text()
    assert card == render_model_card(load_records(MODELS)), (
        "models/MODEL_CARD.md drifted: python -m guitar_distill.export.model_card"
    )
    assert (MODELS / "student" / "guitar-student" / "MODEL_CARD.md").read_text() == card


def test_card_figures_equal_the_training_records():
    card = (MODELS / "MODEL_CARD.md").read_text()
    student = read_json(MODELS / "training" / "student" / "metrics.json")
    baseline = read_json(MODELS / "training" / "baseline" / "metrics.json")
    keras_row = re.search(r"^\| student \| keras \| ([0-9.]+) \|", card, flags=re.M)
    assert keras_row and float(keras_row.group(1)) == round(student["test_accuracy"], 3)
    assert f"| baseline (no distillation) | keras | {baseline['test_accuracy']:.3f} |" in card
    bundle = read_json(MODELS / "student" / "guitar-student" / "model.json")
    assert f"{bundle['network']['parameters']:,} parameters" in card
    for label in (MODELS / "student" / "guitar-student" / "labels.txt").read_text().split():
        assert re.search(rf"^\| {label} \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| \d+ \|$", card, flags=re.M), label


def test_released_bundle_matches_the_code_that_makes_it():
    import guitar_distill.edge as edge

    code = Path(edge.__file__).parent
    bundle = MODELS / "student" / "guitar-student"
    for copy, source in (
        ("predict.py", "predict.py"),
        ("images.py", "images.py"),
        ("check.py", "check.py"),
        ("index.html", "web/index.html"),
        ("app.js", "web/app.js"),
        ("serve.py", "web/serve.py"),
    ):
        assert (bundle / copy).read_bytes() == (code / source).read_bytes(), (
            f"{bundle / copy} differs from {code / source}: make release rebuilds the bundle from the code"
        )


def synthetic_records():
    classes = ["a", "b", "c"]
    per_class = {c: {"precision": 0.5, "recall": 0.25, "f1": 1 / 3, "support": 4} for c in classes}
    metrics = {
        "test_accuracy": 0.4,
        "epochs_run": 3,
        "train_seconds": 120.0,
        "environment": {"processor": "Test CPU", "cpu_count": 2, "simd": ["avx2"], "versions": {"keras": "3"}},
    }
    config = preset_from_dict(
        {
            "name": "test",
            "data": {"image_size": 80},
            "student": {"widths": [8, 16, 32], "optimizer": "adamw", "schedule": "cosine"},
            "teacher": {"schedule": "cosine", "learning_rate": 0.003, "head": "avg"},
        }
    )
    confusion = [[3, 1, 0], [0, 1, 3], [0, 0, 4]]
    return {
        "labels": classes,
        "bundle": {
            "network": {"parameters": 1234, "macs": 65_000_000},
            "format": "tflite_int8",
            "validation": {"agreement": 0.99},
        },
        "training": {n: {"metrics": metrics, "config": config} for n in ("teacher", "baseline", "student")},
        "accuracy": {
            "split": "test",
            "images": 12,
            "results": {
                "student/keras": {"top1": 0.5, "top3": 1.0, "ece": 0.1, "per_class": per_class, "confusion": confusion},
                "student/tflite_int8": {
                    "top1": 0.5833,
                    "top3": 1.0,
                    "ece": 0.12,
                    "per_class": per_class,
                    "confusion": confusion,
                },
            },
        },
        "data_summary": None,
        "robustness": None,
        "latency": None,
    }


def test_known_figures_land_where_they_belong():
    card = render_model_card(synthetic_records())
    assert "| student | keras | 0.500 | 1.000 | 0.100 |" in card
    assert "| baseline (no distillation) | keras | 0.400 | - | - |" in card
    assert "- b -> c: 3 photos (75% of b)" in card.splitlines()  # the largest off-diagonal cell first
    assert "Test top-1 0.583 for the int8 file against 0.500 for the float32 Keras student (+8.3 points)" in card
    assert "| a | 0.500 | 0.250 | 0.333 | 4 |" in card
    # Pi 4 estimate: 65 M multiply-adds at 569 M per 87 ms on 4 threads
    assert "| fp32, 4 threads | 9.9 |" in card and "| fp32, 1 thread | 19.9-29.8 |" in card
    assert "Test CPU, 2 cores (avx2)" in card


def test_an_ensemble_teacher_is_described_by_its_members_each_with_its_own_run():
    records = synthetic_records()
    resnet = {"model": "resnet50_teacher", "epochs_run": 150, "train_seconds": 36000.0, "image_size": 160}
    nin = {"model": "nin_student_no_kd", "epochs_run": 200, "image_size": 112}
    members = [{**resnet, "val_accuracy": 0.8}, {**nin, "val_accuracy": 0.874}, {**nin, "val_accuracy": 0.89}]
    config = records["training"]["teacher"]["config"]
    teacher = {"metrics": {"val_accuracy": 0.91, "members": members}, "config": config}
    card = render_model_card({**records, "training": {**records["training"], "teacher": teacher}})
    assert (
        "- Teacher: the mean of 3 networks' probabilities (validation top-1 0.910; the members' 0.800, 0.874, 0.890): "
        "ResNet50 (avg head)" in card
    )
    assert "150 epochs at 80 px; 36,000 s of training; NiN trained from labels alone, 200 epochs at 112 px; " in card
    assert "distilled from the averaged probabilities of 3 networks (ResNet50, NiN trained from labels alone," in card
    # two label-trained networks and no ResNet50: no teacher run's config in the release, and none needed
    students = {"metrics": {"val_accuracy": 0.9, "members": members[1:], "flip_averaged": True}, "config": None}
    card = render_model_card({**records, "training": {**records["training"], "teacher": students}})
    assert "ResNet50" not in card
    assert "- Teacher: the mean of 2 networks' probabilities, each on the photo and its mirror image (" in card


def test_a_copy_of_the_released_bundle_works_where_it_ships(tmp_path, edge_python):
    """Copied out of the checkout, run with only ai-edge-litert, numpy and pillow: the self-test, a prediction
    and a listing check pass, each from the bundle's own files, and nothing is written outside the copy."""
    import json
    import shutil
    import subprocess

    from conftest import real_photos

    bundle = shutil.copytree(
        MODELS / "student" / "guitar-student",
        tmp_path / "guitar-student",
        ignore=shutil.ignore_patterns(".fastest.json"),
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    listing = work / "listing"
    for label in ("SG", "Telecaster"):
        (listing / label).mkdir(parents=True)
        for photo in real_photos(label, 2):
            shutil.copy(photo, listing / label / photo.name)
    checkout_before = sorted(p.name for p in PROJECT_ROOT.iterdir())

    def run(script, *args):
        return subprocess.run(
            [str(edge_python), str(bundle / script), *args], capture_output=True, text=True, cwd=work, timeout=300
        )

    selftest = run("predict.py", "--selftest")
    assert selftest.returncode == 0 and "11 passed, 0 failed" in selftest.stdout, selftest.stdout + selftest.stderr
    answer = run("predict.py", str(listing / "SG"), "--json")
    assert answer.returncode == 0, answer.stderr
    results = json.loads(answer.stdout)
    assert len(results) == 2 and {Path(r["model"]).parent for r in results} == {bundle}
    assert "XNNPACK" not in answer.stderr
    check = run("check.py", str(listing), "--out", str(work))
    assert check.returncode == 0 and "checked 4 photos (0 not checked)" in check.stdout, check.stdout + check.stderr
    assert sorted(p.name for p in work.iterdir()) == ["listing", "suspects.csv"]
    assert sorted(p.name for p in PROJECT_ROOT.iterdir()) == checkout_before
    # the project's own Python, with guitar_distill importable, still runs the copy's own files and model
    (bundle / ".fastest.json").unlink()
    mine = subprocess.run(
        [sys.executable, str(bundle / "check.py"), str(listing), "--out", str(tmp_path / "mine")],
        capture_output=True,
        text=True,
        cwd=work,
        timeout=300,
    )
    assert mine.returncode == 0, mine.stderr
    assert (bundle / ".fastest.json").exists()  # the copy's two files were timed, not the checkout's
