"""Check a folder of labelled photos for labels that look wrong. Needs only ai-edge-litert, numpy and pillow.

    python check.py listings/ [--out suspects.csv] [--threshold P]

`listings/` holds one sub-folder per claimed label, named as in labels.txt. The model runs on
every photo; a photo is flagged when the probability it gives the claimed label (its
"self-confidence", as in confident learning) is under the threshold. The threshold in model.json
was chosen on the validation split with a known share of labels flipped to other classes, for a
stated precision of the flags; the checker prints the precision and recall it gave there.
suspects.csv lists every photo, most suspicious first.

In the project the same file runs as `python -m guitar_distill.edge.check DIR`.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import numpy as np

if __package__:  # the project's module, guitar_distill.edge.check
    from guitar_distill.edge.images import ImageRejected, load_for_model
    from guitar_distill.edge.predict import ModelError, TFLiteClassifier, expand_inputs, open_model, read_model_json
else:  # a bundle's script: its own predict.py and images.py, whatever else is installed
    from images import ImageRejected, load_for_model
    from predict import ModelError, TFLiteClassifier, expand_inputs, open_model, read_model_json

COLUMNS = ("path", "claimed", "predicted", "p_claimed", "p_predicted", "flagged")


def flip_labels(labels: np.ndarray, num_classes: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels with `share` of them moved to another class, uniformly; which were moved), seeded."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    flipped = np.zeros(len(labels), dtype=bool)
    flipped[rng.choice(len(labels), size=int(round(share * len(labels))), replace=False)] = True
    noisy = labels.copy()
    shift = rng.integers(1, num_classes, size=int(flipped.sum()))
    noisy[flipped] = (labels[flipped] + shift) % num_classes
    return noisy, flipped


def flag_quality(scores: np.ndarray, wrong: np.ndarray, threshold: float) -> tuple[float, float, int]:
    """(precision, recall, flags) of flagging the photos whose score is under `threshold`."""
    flags = scores < threshold
    hits = int(np.sum(flags & wrong))
    return (hits / int(flags.sum()) if flags.any() else float("nan"), hits / max(int(wrong.sum()), 1), int(flags.sum()))


def choose_threshold(
    probs: np.ndarray, labels: np.ndarray, share: float = 0.05, precision: float = 0.5, seed: int = 0
) -> dict:
    """The flagging threshold on p(claimed label) for a stated precision, from labels flipped on purpose.

    Of the thresholds whose flags reach `precision` on the flipped photos, the one with the most
    recall; if none does, the most precise one (and "met": false says so); if none flags a photo, 0.
    """
    probs = np.asarray(probs, dtype=np.float64)
    noisy, flipped = flip_labels(labels, probs.shape[1], share, seed)
    scores = probs[np.arange(len(noisy)), noisy]
    candidates = np.unique(scores)[1:]  # flag below each observed score (the lowest would flag nothing)
    rows = [(t, *flag_quality(scores, flipped, t)) for t in candidates]
    rows = [r for r in rows if r[3] >= 1]
    met = [r for r in rows if r[1] >= precision]
    # No threshold flags anything (too few photos, or one score for all): 0 flags nothing, and says so.
    best = max(met, key=lambda r: (r[2], r[0])) if met else max(rows, key=lambda r: (r[1], r[2]), default=(0, 0, 0, 0))
    threshold, got_precision, recall, flags = best
    return {
        "threshold": round(float(threshold), 6),
        "precision": round(float(got_precision), 4),
        "recall": round(float(recall), 4),
        "target_precision": precision,
        "met": bool(met),
        "flipped_share": share,
        "photos": int(len(labels)),
        "flipped": int(flipped.sum()),
        "seed": seed,
        "score": "probability of the claimed label",
    }


def claimed_photos(folder: Path, labels: list[str]) -> list[tuple[Path, str]]:
    """(photo, claimed label) for every photo under folder/<label>/; a sub-folder not in labels is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"{folder}: no such folder")
    subs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [p.name for p in subs if p.name not in labels]
    if unknown:
        raise ModelError(
            f"{folder}: sub-folder(s) {', '.join(unknown)} are not classes of this model "
            f"(labels.txt: {', '.join(labels)})"
        )
    if not subs:
        raise ModelError(f"{folder}: no class sub-folders (one per claimed label, named as in labels.txt)")
    photos = [(photo, sub.name) for sub in subs for photo in expand_inputs([str(sub)])]
    if not photos:
        raise ModelError(f"{folder}: no photos in its class sub-folders ({', '.join(p.name for p in subs)})")
    return photos


def empty_classes(folder: Path) -> list[Path]:
    """Class sub-folders without a photo: reported as errors, as predict.py reports an empty folder."""
    return [
        sub
        for sub in sorted(Path(folder).iterdir())
        if sub.is_dir() and not sub.name.startswith(".") and not expand_inputs([str(sub)])
    ]


def check(classifier: TFLiteClassifier, labels: list[str], photos: list[tuple[Path, str]], threshold: float):
    """(rows most suspicious first, [(path, error)] for unreadable files)."""
    rows, errors = [], []
    for path, claimed in photos:
        try:
            probs = classifier.predict(load_for_model(path, classifier.size)[None])[0]
        except ImageRejected as e:
            errors.append((path, e.reason + (f" ({e.detail})" if e.detail else "")))
            continue
        top = int(np.argmax(probs))
        p_claimed = float(probs[labels.index(claimed)])
        rows.append(
            {
                "path": str(path),
                "claimed": claimed,
                "predicted": labels[top],
                "p_claimed": round(p_claimed, 4),
                "p_predicted": round(float(probs[top]), 4),
                "flagged": p_claimed < threshold,
            }
        )
    rows.sort(key=lambda r: (r["p_claimed"], r["path"]))
    return rows, errors


def write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    tmp.write_text(buf.getvalue())
    tmp.replace(path)  # a stopped run never leaves half a csv


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Find photos whose claimed label looks wrong.")
    parser.add_argument("folder", type=Path, help="one sub-folder per claimed label, named as in labels.txt")
    parser.add_argument(
        "--out", type=Path, default=Path("."), help="folder for suspects.csv (default: the current folder)"
    )
    parser.add_argument("--threshold", type=float, help="flag below this p(claimed) (default: model.json's)")
    parser.add_argument("--model", type=Path, help="a .tflite file (default: the faster of the bundle's two)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.out.suffix == ".csv":
        parser.error(f"--out {args.out}: a folder (suspects.csv is written in it), not a file")
    try:
        args.model, meta, classifier, labels = open_model(args.model, args.threads)
        # The calibration is the int8 file's; the float32 file answers the same to within rounding.
        calibration = meta.get("label_check") or read_model_json(args.model.with_name("model.tflite")).get(
            "label_check"
        )
        if args.threshold is None and not calibration:
            raise ModelError(f"{args.model.parent}/model.json has no label_check threshold: pass --threshold")
        threshold = args.threshold if args.threshold is not None else calibration["threshold"]
        photos = claimed_photos(args.folder, labels)
    except (ModelError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    rows, errors = check(classifier, labels, photos, threshold)
    errors += [(sub, "no photos in this class folder") for sub in empty_classes(args.folder)]
    for path, why in errors:
        print(f"{path}: error: {why}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "suspects.csv", rows)
    flagged = sum(r["flagged"] for r in rows)
    print(
        f"checked {len(rows)} photos ({len(errors)} not checked), flagged {flagged} with p(claimed) < {threshold:.4g}"
    )
    if calibration and args.threshold is None:
        print(
            f"on validation with {calibration['flipped_share']:.0%} of labels flipped, this threshold gave "
            f"precision {calibration['precision']:.2f} and recall {calibration['recall']:.2f} "
            f"(target precision {calibration['target_precision']:.2f}{'' if calibration['met'] else ', not reached'})"
        )
    elif calibration:
        print(
            f"(model.json's threshold {calibration['threshold']:.4g} gave precision {calibration['precision']:.2f}, "
            f"recall {calibration['recall']:.2f} on validation; --threshold {threshold:.4g} was not measured)"
        )
    print(f"suspects, most suspicious first: {args.out / 'suspects.csv'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
