"""`guitar-distill audit` (make audit): photos of the split whose label looks wrong, by confident learning.

Every photo of the training and validation splits gets out-of-fold probabilities: k NiN students
trained from labels alone, each on k-1 folds (folds keep duplicate groups together, stratified,
seeded) and asked about the fold it never saw; a model's answers on its own training photos say
nothing about their labels. cleanlab's `find_label_issues` then picks the photos whose given label
the probabilities contradict, and `get_label_quality_scores` ranks them. The photos the data stage
excluded (label conflicts: the same photo under two labels) are scored by the k models together.

    artifacts/audit/label_issues.csv   path, split, given, suggested, score (lowest first)
    artifacts/audit/gallery.png        the top suspects, each photo with both labels
    artifacts/audit/audit.json         counts, settings, the conflict groups flagged
    artifacts/audit/folds/             each fold's probabilities (a rerun skips finished folds)

`--plant 0.05` flips that share of labels (seeded) before anything is trained and measures the
audit's precision and recall on them (artifacts/audit/planted-0.05/). The audit never changes the
data: list the photos you confirm, one manifest path a line, in a file, and run the data stage
with `--exclude FILE`; it then marks them excluded and keeps every other photo's split.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from guitar_distill.common.artifacts import atomic_path, stage_dir, write_json, write_text
from guitar_distill.common.config import Audit, Student, resolve_config, stage_parser
from guitar_distill.common.errors import ToolkitError, run_cli
from guitar_distill.common.progress import console
from guitar_distill.student.architectures import student_name


def fold_assignment(labels: np.ndarray, groups: list[str], folds: int, seed: int) -> np.ndarray:
    """The fold of every photo: stratified by label, a duplicate group never split across folds."""
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    assignment = np.empty(len(labels), dtype=np.int64)
    for k, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
        assignment[held_out] = k
    return assignment


def fold_recipe(scfg: Student, acfg: Audit, photos: int) -> Student:
    """The student recipe for one fold: the audit's epochs over that many photos, in float32 (small photos)."""
    return replace(
        scfg,
        max_epochs=acfg.epochs,
        steps_per_epoch=max(photos // scfg.batch_size, 1),
        warmup_epochs=min(scfg.warmup_epochs, 1.0),
        mixed_precision=False,
    )


def train_fold(images, labels, held_out, extra, num_classes: int, scfg: Student, acfg: Audit, seed: int):
    """(probabilities on the held-out photos, on `extra`) of the student trained on the rest, from labels.

    No validation split and no best snapshot: an epoch chosen by the held-out labels would be chosen by
    the very labels under suspicion."""
    import keras

    from guitar_distill.common.augment import AugmentedBatches, training_augmentation
    from guitar_distill.common.feed import fit_input
    from guitar_distill.common.recipe import compile_recipe
    from guitar_distill.common.runtimes import predict_all
    from guitar_distill.student.architectures import build_student

    train = ~held_out
    cfg = fold_recipe(scfg, acfg, int(train.sum()))
    keras.utils.set_random_seed(seed)
    model = build_student(cfg, num_classes, images.shape[1])
    compile_recipe(model, cfg)
    feed = AugmentedBatches(
        images[train], labels[train], batch_size=cfg.batch_size, seed=seed, augment=training_augmentation(cfg)
    )
    model.fit(fit_input(feed), steps_per_epoch=cfg.steps_per_epoch, epochs=cfg.max_epochs, shuffle=False, verbose=2)
    return predict_all(model, images[held_out]), (
        predict_all(model, extra) if len(extra) else np.zeros((0, num_classes), np.float32)
    )


def out_of_fold(images, labels, groups, extra, num_classes, scfg, acfg, seed, folder: Path):
    """Out-of-fold probabilities of every photo, and the folds' mean on `extra`; finished folds are kept."""
    folds = fold_assignment(labels, groups, acfg.folds, seed)
    probs = np.zeros((len(labels), num_classes), np.float32)
    extra_probs = np.zeros((len(extra), num_classes), np.float32)
    for k in range(acfg.folds):
        path = folder / f"fold{k}.npz"
        key = np.asarray(folds == k)
        if path.exists() and np.array_equal(np.load(path)["held_out"], key):
            saved = np.load(path)
            held, ext = saved["probs"], saved["extra"]
        else:
            console.print(
                f"fold {k + 1} of {acfg.folds}: {int((~key).sum())} photos to train on, {int(key.sum())} held out"
            )
            held, ext = train_fold(images, labels, key, extra, num_classes, scfg, acfg, seed + k)
            with atomic_path(path) as tmp:
                np.savez(tmp, held_out=key, probs=held, extra=ext)
        probs[key] = held
        extra_probs += ext / acfg.folds
    return probs, extra_probs


def label_issues(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the label issues, lowest quality first; every photo's label quality score)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    ranked = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")
    return np.asarray(ranked, dtype=np.int64), get_label_quality_scores(labels, probs)


def below_class_thresholds(labels: np.ndarray, probs: np.ndarray, given: np.ndarray, given_probs: np.ndarray):
    """Photos (given, given_probs) whose p(given label) is under that class's confident-learning threshold
    (the mean p(class) over the photos labelled with it): how photos outside the audit are flagged."""
    thresholds = np.array([probs[labels == c, c].mean() if np.any(labels == c) else 1.0 for c in range(probs.shape[1])])
    return given_probs[np.arange(len(given)), given] < thresholds[given]


def write_issues(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=["path", "split", "given", "suggested", "score", "p_given", "p_suggested"], lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def gallery(rows: list[dict], source: Path, path: Path, title: str) -> Path:
    """The suspects as a grid: each photo with its given and suggested labels."""
    from guitar_distill.common.plots import pyplot
    from guitar_distill.edge.images import load_for_model

    plt = pyplot()
    cols = 6
    lines = max(-(-len(rows) // cols), 1)
    fig, axes = plt.subplots(lines, cols, figsize=(2.4 * cols, 2.9 * lines), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, row in zip(axes.flat, rows):
        ax.imshow(load_for_model(source / row["path"], 160))
        ax.set_title(f"given {row['given']}\nsuggested {row['suggested']} ({row['score']:.2f})", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / (2.9 * lines)))  # room for the title above the first row
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
    return path


def parse_args(argv=None):
    parser = stage_parser(
        "Find photos of the split whose label looks wrong (k-fold NiN students + cleanlab).", default_preset="cpu"
    )
    parser.add_argument(
        "--plant",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="flip this share of labels first and measure the audit on them (e.g. 0.05)",
    )
    return parser.parse_args(argv)


def audit_photos(info, size: int):
    """(rows, images) of the train and val splits, and (rows, images) of the excluded photos that decode."""
    from guitar_distill.common.cache import load_split
    from guitar_distill.edge.images import ImageRejected, load_for_model

    rows = [r for s in ("train", "val") for r in info.split_rows(s)]
    if not rows:
        raise ToolkitError(f"{info.root}: no training or validation photos to audit")
    images = np.concatenate([np.asarray(load_split(info, s, size)[0]) for s in ("train", "val") if info.split_rows(s)])
    extra_rows, extra_images = [], []
    for r in (r for r in info.rows if r.split == "excluded"):
        try:
            extra_images.append(load_for_model(info.source / r.path, size))
            extra_rows.append(r)
        except ImageRejected as e:
            console.print(f"skipped {r.path}: {e.reason}")
    extra = np.stack(extra_images) if extra_images else np.zeros((0, size, size, 3), np.uint8)
    return rows, images, extra_rows, extra


def issue_table(rows, labels, probs, ranked, scores, classes) -> list[dict]:
    return [
        {
            "path": rows[i].path,
            "split": rows[i].split,
            "given": classes[labels[i]],
            "suggested": classes[int(np.argmax(probs[i]))],
            "score": round(float(scores[i]), 4),
            "p_given": round(float(probs[i, labels[i]]), 4),
            "p_suggested": round(float(probs[i].max()), 4),
        }
        for i in ranked
    ]


def excluded_record(extra_rows, labels, probs, extra_probs, classes) -> dict:
    """How many of the excluded label-conflict photos the audit flags under their class's threshold."""
    given = np.array([classes.index(r.label) for r in extra_rows])
    flagged = below_class_thresholds(labels, probs, given, extra_probs)
    return {
        "photos": len(extra_rows),
        "flagged": int(flagged.sum()),
        "groups": len({r.group for r in extra_rows}),
        "groups_flagged": len({r.group for r, f in zip(extra_rows, flagged) if f}),
    }


def planted_record(planted: np.ndarray, ranked: np.ndarray, scores: np.ndarray, share: float) -> dict:
    """The audit measured on labels flipped on purpose: precision and recall of its flags."""
    found = np.zeros(len(planted), bool)
    found[ranked] = True
    hits = int(np.sum(found & planted))
    top_n = np.argsort(scores, kind="stable")[: int(planted.sum())]
    return {
        "share": share,
        "flipped": int(planted.sum()),
        "flagged": len(ranked),
        "precision": hits / max(len(ranked), 1),
        "recall": hits / max(int(planted.sum()), 1),
        "precision_at_flipped_count": float(np.mean(planted[top_n])),
    }


def print_summary(record: dict, out: Path) -> None:
    console.print(
        f"audit done in {record['seconds']:.0f} s: {record['issues']} label issues among {record['photos']} photos "
        f"(out-of-fold top-1 {record['out_of_fold_accuracy']:.3f})"
    )
    if "excluded" in record:
        e = record["excluded"]
        console.print(
            f"  excluded label conflicts: {e['flagged']} of {e['photos']} photos flagged, "
            f"{e['groups_flagged']} of {e['groups']} groups"
        )
    if "planted" in record:
        p = record["planted"]
        console.print(
            f"  planted: {p['flipped']} flipped; flagged {p['flagged']}: precision {p['precision']:.3f}, "
            f"recall {p['recall']:.3f}"
        )
    console.print(f"files: {out}/label_issues.csv, gallery.png, audit.json")


def main(argv=None):
    args = parse_args(argv)
    cfg = resolve_config(args)
    from guitar_distill.common.quiet import quiet_start

    quiet_start()
    from guitar_distill.common.devices import configure_runtime
    from guitar_distill.common.manifest import load_data_info
    from guitar_distill.edge.check import flip_labels

    acfg, scfg = cfg.audit, cfg.student
    start, info = time.perf_counter(), load_data_info(args.artifacts)
    size, seed = acfg.image_size, acfg.seed
    configure_runtime(replace(scfg, seed=seed, mixed_precision=False))
    rows, images, extra_rows, extra = audit_photos(info, size)
    labels = np.array([info.classes.index(r.label) for r in rows])
    planted = None
    if args.plant:
        labels, planted = flip_labels(labels, len(info.classes), args.plant, seed)
    out = stage_dir(args.artifacts, "audit") / (f"planted-{args.plant:g}" if args.plant else "")
    console.print(
        f"audit: {len(rows)} photos ({size} px), {acfg.folds} folds of {student_name(scfg)}, "
        f"{acfg.epochs} epochs each" + (f", {int(planted.sum())} labels flipped on purpose" if args.plant else "")
    )
    groups = [r.group for r in rows]
    probs, extra_probs = out_of_fold(images, labels, groups, extra, len(info.classes), scfg, acfg, seed, out / "folds")
    ranked, scores = label_issues(labels, probs)
    issue_rows = issue_table(rows, labels, probs, ranked, scores, info.classes)
    write_issues(out / "label_issues.csv", issue_rows)
    top = issue_rows[: acfg.gallery]
    if top:
        gallery(top, info.source, out / "gallery.png", f"top {len(top)} of {len(issue_rows)} suspects ({cfg.name})")
    record = {
        "preset": cfg.name,
        "photos": len(rows),
        "image_size": size,
        "folds": acfg.folds,
        "epochs": acfg.epochs,
        "widths": list(scfg.widths),
        "seed": seed,
        "out_of_fold_accuracy": float(np.mean(probs.argmax(1) == labels)),
        "issues": len(issue_rows),
        **({"excluded": excluded_record(extra_rows, labels, probs, extra_probs, info.classes)} if extra_rows else {}),
        **({"planted": planted_record(planted, ranked, scores, args.plant)} if planted is not None else {}),
    }
    record["seconds"] = round(time.perf_counter() - start, 1)
    write_json(out / "audit.json", record)
    print_summary(record, out)


if __name__ == "__main__":
    run_cli(main)
