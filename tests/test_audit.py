"""The data audit: cleanlab on out-of-fold probabilities, the smoke run, and the exclusion list."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import run_stage, smoke_models

from guitar_distill.dataset.audit import below_class_thresholds, fold_assignment, label_issues


def test_planted_wrong_labels_are_the_issues_found():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    probs = rng.dirichlet([1, 1, 1], size=120) * 0.3
    probs[np.arange(120), labels] += 0.7  # a model that is right about every photo, with some doubt
    planted = [5, 17, 50, 66, 90, 100]  # 5 %: photos filed under the next class
    labels = labels.copy()
    labels[planted] = (labels[planted] + 1) % 3
    ranked, scores = label_issues(labels, probs)
    assert len(ranked) >= 1 and set(ranked) <= set(planted)  # only planted photos are flagged
    assert set(np.argsort(scores)[:6]) == set(planted)  # and the six lowest scores are the planted ones


def test_folds_keep_duplicate_groups_together_and_cover_every_class():
    labels = np.repeat(np.arange(3), 20)
    groups = [f"g{i // 2}" for i in range(60)]  # pairs of near-duplicates
    folds = fold_assignment(labels, groups, 4, seed=1)
    assert set(folds) == {0, 1, 2, 3}
    assert all(folds[i] == folds[i + 1] for i in range(0, 60, 2))
    assert all(len(set(labels[folds == k])) == 3 for k in range(4))


def test_photos_outside_the_audit_are_flagged_under_their_class_threshold():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.4, 0.6]])  # thresholds: 0.8 and 0.7
    given = np.array([0, 1])
    flagged = below_class_thresholds(labels, probs, given, np.array([[0.85, 0.15], [0.5, 0.5]]))
    assert flagged.tolist() == [False, True]


@smoke_models
def test_the_smoke_audit_writes_its_csv_gallery_and_record(smoke_artifacts):
    run_stage("dataset.audit", "--preset", "smoke", "--artifacts", str(smoke_artifacts))
    out = smoke_artifacts / "audit"
    reader = csv.DictReader((out / "label_issues.csv").open())
    rows = list(reader)
    record = json.loads((out / "audit.json").read_text())
    assert record["photos"] == 24 and record["issues"] == len(rows)
    # the header is written whether or not the two-epoch smoke students find an issue
    assert reader.fieldnames == ["path", "split", "given", "suggested", "score", "p_given", "p_suggested"]
    assert (out / "gallery.png").exists() == bool(rows)
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores)


def test_the_exclusion_list_drops_the_listed_photos_and_keeps_every_other_split(tmp_path, photo_source):
    common = ("--preset", "smoke", "--source", str(photo_source), "--no-cache")
    run_stage("dataset", *common, "--artifacts", str(tmp_path / "before"))
    before = {r["path"]: r["split"] for r in csv.DictReader((tmp_path / "before" / "data" / "manifest.csv").open())}
    listed = sorted(p for p, s in before.items() if s == "train")[0]
    (tmp_path / "confirmed.txt").write_text(f"# confirmed mislabelled\n{listed}\n")
    run_stage("dataset", *common, "--artifacts", str(tmp_path / "after"), "--exclude", str(tmp_path / "confirmed.txt"))
    after = {r["path"]: r["split"] for r in csv.DictReader((tmp_path / "after" / "data" / "manifest.csv").open())}
    assert after[listed] == "excluded"
    assert {p: s for p, s in after.items() if p != listed} == {p: s for p, s in before.items() if p != listed}
    (tmp_path / "wrong.txt").write_text("ES/not-a-photo.jpg\n")
    with pytest.raises(AssertionError, match="not photos of"):
        run_stage("dataset", *common, "--artifacts", str(tmp_path / "bad"), "--exclude", str(tmp_path / "wrong.txt"))
