"""The listing checker (edge/check.py): its threshold, a planted wrong label, bad folders and files."""

from __future__ import annotations

import csv
import json
import shutil

import keras
import numpy as np
import pytest
from conftest import real_photos, slow_fixture

from guitar_distill.edge import check
from guitar_distill.edge.images import load_for_model

SIZE = 32
CLASSES = ["ES", "FlyingV", "SG"]


def test_flipped_labels_move_the_stated_share_to_other_classes():
    labels = np.repeat(np.arange(4), 50)
    noisy, flipped = check.flip_labels(labels, 4, 0.05, seed=1)
    assert (
        flipped.sum() == 10
        and np.all(noisy[flipped] != labels[flipped])
        and np.all(noisy[~flipped] == labels[~flipped])
    )
    assert np.array_equal(check.flip_labels(labels, 4, 0.05, seed=1)[0], noisy)


def test_the_threshold_reaches_the_stated_precision_with_the_most_recall():
    # A model sure of the true class (0.85) except on 20 of 200 photos it gets wrong (0.3 on the true one):
    # a flipped label then scores 0.017 (or 0.233 where the model was wrong), a kept one 0.85 or 0.3.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 200)
    probs = np.full((200, 4), 0.05 / 3)
    probs[np.arange(200), labels] = 0.85
    wrong = np.zeros(200, bool)
    wrong[:20] = True
    probs[wrong] = 0.7 / 3
    probs[wrong, labels[wrong]] = 0.3
    result = check.choose_threshold(probs, labels, share=0.05, precision=0.9, seed=3)
    noisy, flipped = check.flip_labels(labels, 4, 0.05, seed=3)
    scores = probs[np.arange(200), noisy]
    precision, recall, _ = check.flag_quality(scores, flipped, result["threshold"])
    assert result["met"] and precision >= 0.9 and result["precision"] == pytest.approx(precision, abs=1e-4)
    # flagging under 0.3 catches every flip and no kept label; under 0.85 it would take the 0.3s too
    assert 0.05 < result["threshold"] <= 0.3 + 1e-6 and result["recall"] == pytest.approx(recall, abs=1e-4)
    assert result["flipped"] == 10 and result["photos"] == 200


@slow_fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    """A TFLite classifier that has learnt 6 photos of each of 3 classes, with labels.txt and model.json."""
    from guitar_distill.export.convert import export_saved_model, tflite_from_saved_model

    photos = {c: real_photos(c, 6) for c in CLASSES}
    x = np.stack([load_for_model(p, SIZE) for c in CLASSES for p in photos[c]]).astype(np.float32)
    y = np.repeat(np.arange(3), 6)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Rescaling(1 / 255.0),
            keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile(keras.optimizers.Adam(0.003), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=100, batch_size=18, verbose=0)
    assert model.evaluate(x, y, verbose=0)[1] == 1.0  # it knows every training photo
    root = tmp_path_factory.mktemp("bundle")
    saved = export_saved_model(model, root / "saved")
    (root / "model.tflite").write_bytes(tflite_from_saved_model(saved, "fp32"))
    (root / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    (root / "model.json").write_text(
        json.dumps(
            {
                "label_check": {
                    "threshold": 0.5,
                    "precision": 0.8,
                    "recall": 0.6,
                    "target_precision": 0.5,
                    "met": True,
                    "flipped_share": 0.05,
                }
            }
        )
    )
    return root, photos


def listing(tmp_path, photos, planted: bool = True):
    """Every photo under its class; with `planted`, one FlyingV photo filed as an ES."""
    for c in CLASSES:
        (tmp_path / "listings" / c).mkdir(parents=True)
        for p in photos[c]:
            shutil.copy(p, tmp_path / "listings" / c / p.name)
    if planted:
        shutil.move(
            tmp_path / "listings" / "FlyingV" / photos["FlyingV"][0].name, tmp_path / "listings" / "ES" / "planted.jpg"
        )
    return tmp_path / "listings"


def test_a_planted_wrong_label_is_flagged_first(tmp_path, tiny_bundle, capsys):
    root, photos = tiny_bundle
    folder = listing(tmp_path, photos)
    out = tmp_path / "suspects.csv"
    assert check.main([str(folder), "--model", str(root / "model.tflite"), "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 18 and list(rows[0]) == list(check.COLUMNS)
    assert rows[0]["path"].endswith("planted.jpg") and rows[0]["claimed"] == "ES" and rows[0]["predicted"] == "FlyingV"
    assert rows[0]["flagged"] == "True" and sum(r["flagged"] == "True" for r in rows) == 1
    printed = capsys.readouterr().out
    assert "checked 18 photos (0 not checked), flagged 1" in printed and "precision 0.80 and recall 0.60" in printed


def test_a_folder_that_is_not_a_class_is_an_error_naming_it(tmp_path, tiny_bundle, capsys):
    root, photos = tiny_bundle
    folder = listing(tmp_path, photos, planted=False)
    (folder / "Stratocastr").mkdir()
    assert check.main([str(folder), "--model", str(root / "model.tflite"), "--out", str(tmp_path)]) == 1
    assert "sub-folder(s) Stratocastr are not classes of this model" in capsys.readouterr().err
    assert not (tmp_path / "suspects.csv").exists()
    with pytest.raises(SystemExit) as usage:  # --out names a folder, as everywhere
        check.main([str(folder), "--model", str(root / "model.tflite"), "--out", str(tmp_path / "mine.csv")])
    assert usage.value.code == 2 and "a folder (suspects.csv is written in it)" in capsys.readouterr().err


def test_an_unreadable_photo_is_reported_and_the_rest_checked(tmp_path, tiny_bundle, capsys):
    root, photos = tiny_bundle
    folder = listing(tmp_path, photos, planted=False)
    (folder / "SG" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "suspects.csv"
    assert (
        check.main([str(folder), "--model", str(root / "model.tflite"), "--out", str(tmp_path), "--threshold", "0.2"])
        == 1
    )
    captured = capsys.readouterr()
    assert "broken.jpg: error: corrupt" in captured.err
    assert "checked 18 photos (1 not checked), flagged 0" in captured.out and "was not measured" in captured.out
    assert len(list(csv.DictReader(out.open()))) == 18


def test_empty_class_folders_are_errors_as_in_predict(tmp_path, tiny_bundle, capsys):
    """An empty class folder is reported and the rest checked (exit 1); a listing without a photo is an error."""
    root, photos = tiny_bundle
    folder = listing(tmp_path, photos, planted=False)
    for photo in (folder / "SG").iterdir():
        photo.unlink()
    out = tmp_path / "suspects.csv"
    assert check.main([str(folder), "--model", str(root / "model.tflite"), "--out", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "SG: error: no photos in this class folder" in captured.err and "(1 not checked)" in captured.out
    assert {r["claimed"] for r in csv.DictReader(out.open())} == set(CLASSES) - {"SG"}
    for sub in folder.iterdir():
        shutil.rmtree(sub)
        sub.mkdir()
    assert check.main([str(folder), "--model", str(root / "model.tflite"), "--out", str(tmp_path)]) == 1
    assert "no photos in its class sub-folders" in capsys.readouterr().err
