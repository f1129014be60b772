"""Offline distillation: the teacher's logits for every batch of the student's training stream, once.

The augmented stream is a pure function of (seed, global batch index), so the teacher's answer to
batch g can be computed ahead of time and stored. Students then train from the stored logits
without the teacher in memory, and every extra student (another width, another temperature) costs
only its own training. The cache lives beside the decode cache and is rebuilt when the teacher
file, the training split, the image size, the batch size, the seed or the augmentation change. A stream
whose crops the teacher answers corrupted (`distill.teacher_sees = "corrupted"`) or mixed (`student.mix`) is kept
beside the plain one.

Logits are stored as log-probabilities: softmax is shift-invariant, so log p = z - logsumexp(z)
gives the same soft targets softmax(z / T) as the raw logits z at every temperature, and any
runtime that returns probabilities (Keras, LiteRT, ONNX Runtime) can serve as the teacher.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from guitar_distill.common.artifacts import atomic_path, read_json, require, sha256_file, write_json
from guitar_distill.common.augment import AugmentedBatches
from guitar_distill.common.cache import cache_paths
from guitar_distill.common.config import Distill, Student, resolve_project_path
from guitar_distill.common.layers import PROB_FLOOR
from guitar_distill.common.layout import STAGE_COMMANDS, model_path
from guitar_distill.common.progress import console, progress_bar


@dataclass
class TeacherLogits:
    stream: np.ndarray  # (batches, batch_size, classes), memory-mapped: global batch g -> logits
    splits: dict[str, np.ndarray]  # split -> (photos, classes), unaugmented photos
    folder: Path


def teacher_file(artifacts: Path, dcfg: Distill) -> Path:
    """The preset's teacher file (Keras, TFLite or ONNX), or the teacher stage's model.keras.

    In `distill.teacher`, "{artifacts}" stands for this run's artifacts root: the cpu and demo
    presets read the TFLite teacher that `python -m guitar_distill.export.release --import-teacher` rebuilds there
    (XNNPACK computes the stored logits about four times faster than Keras on a CPU).
    """
    if dcfg.teacher:
        named = dcfg.teacher
        path = (
            Path(named.replace("{artifacts}", str(artifacts)))
            if "{artifacts}" in named
            else resolve_project_path(named)
        )
        return require(
            path,
            "teacher model file (distill.teacher)",
            "python -m guitar_distill.export.release --import-teacher (a TFLite teacher from the release, or from "
            "--teacher-file FILE), or point --set distill.teacher=PATH at a teacher file",
        )
    return require(model_path(artifacts, "teacher", "keras"), "teacher model", STAGE_COMMANDS["teacher"])


def log_probabilities(probs: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(np.asarray(probs, dtype=np.float32), PROB_FLOOR))


def stream_key(
    info,
    teacher_path: Path,
    batch_size: int,
    seed: int,
    splits: tuple[str, ...],
    augment,
    size: int,
    corruption=None,
    mixing=None,
) -> dict:
    """Everything the stored logits depend on; a change in any of them invalidates the cache."""
    augmentation = json.dumps(augment.describe(), sort_keys=True, default=str)
    return {
        **({"corruption": corruption.describe()} if corruption is not None else {}),
        **({"mixing": mixing.describe()} if mixing is not None else {}),
        "teacher_sha256": sha256_file(teacher_path),
        "teacher": str(teacher_path),
        "image_size": info.image_size,
        **({"teacher_size": size} if size != info.image_size else {}),
        "batch_size": int(batch_size),
        "seed": int(seed),
        "augmentation": hashlib.sha256(augmentation.encode()).hexdigest()[:16],
        "splits": {s: read_json(cache_paths(info, s, size)[1])["key"] for s in ("train", *splits)},
    }


def cached_teacher_logits(
    info,
    train: tuple,
    teacher_path: Path,
    batch_size: int,
    seed: int,
    num_batches: int,
    splits: dict[str, np.ndarray],
    augment,
    size: int | None = None,
    corruption=None,
    mixing=None,
) -> TeacherLogits:
    """The teacher's log-probabilities for stream batches [0, num_batches) and for each split in `splits`.

    `augment` is the students' augmentation (common.augment.training_augmentation): the teacher sees
    exactly the crops the student will see, at `size` when `train` and `splits` hold the photos at that side
    (a crop's box scales with the photo: the same seed cuts the same part of it at any side).

    With `corruption` (common.augment.TrainingCorruption), the teacher answers the crops corrupted as the
    student's are (the same seeds), and the stream is stored in a folder of its own.

    With `mixing` (common.augment.BatchMixing), the teacher answers the mixed photos the student trains on
    (function matching, Beyer et al. 2022: the same mixed crop for both).

    Computes only what the cache lacks: a longer run extends the stored stream instead of redoing it.
    """
    from guitar_distill.common.runtimes import all_threads, open_classifier, predict_all

    folder = stream_folder(info, corruption, mixing)
    size = size or info.image_size
    key = stream_key(info, Path(teacher_path), batch_size, seed, tuple(splits), augment, size, corruption, mixing)
    have = batches_stored(folder, key)
    if have < num_batches or not all((folder / f"{s}.npy").exists() for s in splits):
        if have == 0 and folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        teacher = open_classifier(teacher_path, all_threads())  # LiteRT defaults to one thread
        console.print(
            f"teacher logits: {teacher_path} on batches {have}..{num_batches - 1} "
            f"of the training stream (batch {batch_size}, seed {seed})"
        )
        feed = AugmentedBatches(
            *train, batch_size=batch_size, seed=seed, augment=augment, corruption=corruption, mixing=mixing
        )
        extend_stream(folder / "stream.npy", teacher, feed, have, num_batches, len(info.classes))
        for split, images in splits.items():
            with atomic_path(folder / f"{split}.npy") as tmp:
                np.save(tmp, log_probabilities(predict_all(teacher, images, batch_size)))
        write_json(folder / "key.json", {**key, "batches": max(have, num_batches)})
    stream = np.load(folder / "stream.npy", mmap_mode="r")
    return TeacherLogits(stream, {s: np.load(folder / f"{s}.npy") for s in splits}, folder)


def stream_folder(info, corruption=None, mixing=None) -> Path:
    """Where a stream is stored: one folder for the plain crops, one per corruption the teacher answers and per
    mixing, so that students of each kind keep their own."""
    name = "teacher_logits"
    for kind, part in (("corrupted", corruption), ("mixed", mixing)):
        if part is not None:
            described = json.dumps(part.describe(), sort_keys=True)
            name += f"_{kind}_{hashlib.sha256(described.encode()).hexdigest()[:8]}"
    return info.root / "cache" / name


def batches_stored(folder: Path, key: dict) -> int:
    """How many stream batches the store holds for this teacher and stream (0 when it holds another's).
    The teacher is known by its sha256; the path it was read from (relative or not) is only a note."""
    if not (folder / "key.json").exists() or not (folder / "stream.npy").exists():
        return 0
    saved = read_json(folder / "key.json")
    if {k: v for k, v in saved.items() if k not in ("batches", "teacher")} == {
        k: v for k, v in key.items() if k != "teacher"
    }:
        return int(saved["batches"])
    console.print(f"teacher logits in {folder} were made for another teacher or stream: rebuilding")
    return 0


def extend_stream(path: Path, teacher, feed, have: int, num_batches: int, num_classes: int) -> None:
    """The stored stream grown from `have` to `num_batches` batches, written atomically."""
    old = np.load(path, mmap_mode="r") if have else None
    with atomic_path(path) as tmp:
        shape = (max(have, num_batches), feed.batch_size, num_classes)
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        if have:
            out[:have] = old[:have]
        with progress_bar(num_batches - have, "teacher logits for the training stream") as advance:
            for g in range(have, num_batches):
                out[g] = log_probabilities(teacher.predict(feed[g][0]))
                advance()
        out.flush()
        del out, old


def stored_stream(
    info, splits: dict, teacher_path: Path, scfg: Student, dcfg: Distill
) -> tuple[TeacherLogits, int | None]:
    """The stored logits a student run of `scfg.max_epochs` epochs trains from, and the replay period.

    The teacher answers each crop cut from the photos decoded at `distill.teacher_size`, or at the teacher file's
    own side (the side it was released to test best at), while the student trains on the same crops at the
    data's side.

    With `student.corrupt`, the target of a corrupted crop is the teacher's answer to the clean crop, or with
    `distill.teacher_sees = "corrupted"` to the corrupted one.

    With `student.mix`, the teacher answers the mixed photos themselves.

    Logits for every epoch of the stream, or for the first `distill.stored_epochs`, replayed after
    that (period = their batch count, else None): the teacher's inference is most of an offline
    run's cost on a CPU.
    """
    from guitar_distill.common.augment import training_augmentation, training_corruption, training_mixing
    from guitar_distill.common.cache import load_split
    from guitar_distill.common.runtimes import open_classifier

    size = dcfg.teacher_size or open_classifier(teacher_path).size or info.image_size
    if size != info.image_size:  # the students' crops, seen by the teacher at its own side (FKD)
        splits = {s: load_split(info, s, size) for s in splits}
    epochs = scfg.max_epochs
    stored_epochs = min(dcfg.stored_epochs or epochs, epochs)
    batches = stored_epochs * scfg.steps_per_epoch
    stored = cached_teacher_logits(
        info,
        splits["train"],
        teacher_path,
        scfg.batch_size,
        scfg.seed,
        batches,
        {s: x for s, (x, _) in splits.items()},
        training_augmentation(scfg),
        size,
        training_corruption(scfg) if dcfg.teacher_sees == "corrupted" else None,
        training_mixing(scfg, len(info.classes)),
    )
    return stored, (batches if stored_epochs < epochs else None)


def stored_split_probabilities(info, split: str) -> np.ndarray | None:
    """The teacher's probabilities on an unaugmented split from the store, or None when there is none."""
    path = info.root / "cache" / "teacher_logits" / f"{split}.npy"
    if not path.exists():
        return None
    logits = np.load(path)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True)
