"""The data stage on real photos: rejections, duplicates, splits, manifest, cache, download."""

import json
import shutil
import zipfile

import numpy as np
from PIL import Image

from guitar_distill.common.cache import build_split_cache, cache_paths, load_split
from guitar_distill.common.manifest import load_data_info, read_manifest
from guitar_distill.dataset.__main__ import main as data_main
from guitar_distill.dataset.download import extract_images
from guitar_distill.edge.images import load_for_model


def run_data(source, artifacts, *extra):
    data_main(["--preset", "smoke", "--source", str(source), "--artifacts", str(artifacts), *extra])
    return json.loads((artifacts / "data" / "summary.json").read_text())


def test_bad_files_hidden_folders_and_duplicates(photo_source, tmp_path):
    es = photo_source / "ES"
    (es / "zero.jpg").write_bytes(b"")
    (es / "readme.jpg").write_text("not a photo")
    (es / "cut.jpg").write_bytes(next(es.glob("0*.jpg")).read_bytes()[:2000])
    (photo_source / ".ipynb_checkpoints").mkdir()
    shutil.copy(next(es.glob("0*.jpg")), photo_source / ".ipynb_checkpoints" / "x.jpg")
    (es / ".DS_Store").write_bytes(b"junk")
    # A near-duplicate: a real photo resized and re-compressed, in the same class.
    original = sorted(photo_source.glob("Telecaster/*.jpg"))[0]
    with Image.open(original) as im:
        im.resize((250, 250)).save(photo_source / "Telecaster" / "resized_copy.jpg", quality=70)
    # A byte-identical copy filed under another class: a label conflict.
    conflict = sorted(photo_source.glob("FlyingV/*.jpg"))[0]
    shutil.copy(conflict, es / "mislabelled.jpg")

    artifacts = tmp_path / "art"
    summary = run_data(photo_source, artifacts, "--no-cache")
    assert summary["classes"] == ["ES", "FlyingV", "Telecaster"]
    assert summary["rejected_by_reason"] == {"empty file": 1, "not an image": 1, "truncated or corrupt": 1}
    assert {r["path"] for r in summary["rejections"]} == {"ES/zero.jpg", "ES/readme.jpg", "ES/cut.jpg"}
    assert summary["exact_duplicate_pairs"] == 1 and summary["exact_duplicate_pairs_across_classes"] == 1
    assert summary["near_duplicate_pairs"] >= 1
    assert summary["label_conflicts"] == [["ES/mislabelled.jpg", f"FlyingV/{conflict.name}"]]

    rows = {r.path: r for r in read_manifest(artifacts / "data" / "manifest.csv")}
    assert rows["ES/mislabelled.jpg"].split == "excluded"
    assert rows[f"FlyingV/{conflict.name}"].split == "excluded"
    near = rows["Telecaster/resized_copy.jpg"]
    assert rows[f"Telecaster/{original.name}"].group == near.group
    assert rows[f"Telecaster/{original.name}"].split == near.split
    splits_of_group = {}
    for r in rows.values():
        if r.split in ("train", "val", "test"):
            splits_of_group.setdefault(r.group, set()).add(r.split)
    assert all(len(s) == 1 for s in splits_of_group.values())
    counts = summary["counts"]["FlyingV"]
    assert (counts["train"], counts["val"], counts["test"]) == (5, 2, 2)  # held-out splits fill first


def test_manifest_is_deterministic_and_seeded(photo_source, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    run_data(photo_source, a, "--no-cache")
    run_data(photo_source, b, "--no-cache")
    run_data(photo_source, c, "--no-cache", "--set", "data.seed=7")
    manifest = lambda root: (root / "data" / "manifest.csv").read_bytes()  # noqa: E731
    assert manifest(a) == manifest(b)
    assert manifest(a) != manifest(c)


def test_full_fractions_split(photo_source, tmp_path):
    artifacts = tmp_path / "art"
    summary = run_data(
        photo_source, artifacts, "--no-cache", "--set", "data.split={'fractions': {'val': 0.2, 'test': 0.2}}"
    )
    for counts in summary["counts"].values():
        assert (counts["train"], counts["val"], counts["test"], counts["unused"]) == (6, 2, 2, 0)


def test_cache_is_built_once_and_rebuilt_on_change(photo_source, tmp_path):
    artifacts = tmp_path / "art"
    run_data(photo_source, artifacts)
    info = load_data_info(artifacts)
    images, labels = load_split(info, "train")
    assert images.shape == (18, 32, 32, 3) and images.dtype == np.uint8 and isinstance(images, np.memmap)
    assert sorted(set(labels.tolist())) == [0, 1, 2]
    path, key = cache_paths(info, "train", 32)
    stamp = path.stat().st_mtime_ns
    build_split_cache(info, "train", 32)
    assert path.stat().st_mtime_ns == stamp  # up to date: not rebuilt
    build_split_cache(info, "train", 40)  # another size: its own cache
    assert cache_paths(info, "train", 40)[0].exists()
    before = images[0].copy()
    old_first_path = next(r for r in info.rows if r.split == "train").path
    run_data(photo_source, artifacts, "--set", "data.seed=99")  # a new split rebuilds the cache
    info = load_data_info(artifacts)
    assert json.loads(key.read_text())["count"] == 18
    assert path.stat().st_mtime_ns != stamp
    rebuilt, _ = load_split(info, "train")
    first = next(r for r in info.rows if r.split == "train")
    assert np.array_equal(rebuilt[0], load_for_model(info.source / first.path, 32))
    old_first = load_for_model(info.source / old_first_path, 32)
    assert np.array_equal(before, old_first) and not np.array_equal(rebuilt[0], before)  # the new split's photo


def test_download_extracts_and_renames(tmp_path, photo_source):
    archive = tmp_path / "repo.zip"
    photo = next(photo_source.glob("ES/*.jpg"))
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(photo, "repo-main/Model Training/images/gibson_ES/a.jpg")
        zf.write(photo, "repo-main/Model Training/images/fender_telecaster/b.jpg")
        zf.writestr("repo-main/README.md", "readme")
    counts = extract_images(archive, tmp_path / "out")
    assert counts == {"ES": 1, "Telecaster": 1}
    assert (tmp_path / "out" / "ES" / "a.jpg").read_bytes() == photo.read_bytes()
