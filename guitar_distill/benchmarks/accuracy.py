"""`python -m benchmarks.accuracy`: every model and format on the manifest's test split."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from guitar_distill.benchmarks.models import find_model_files
from guitar_distill.benchmarks.record import write_record
from guitar_distill.common.artifacts import stage_dir
from guitar_distill.common.cache import images_by_side
from guitar_distill.common.config import resolve_config, stage_parser
from guitar_distill.common.errors import run_cli
from guitar_distill.common.layout import evaluation_split
from guitar_distill.common.manifest import load_data_info
from guitar_distill.common.markdown import markdown_table
from guitar_distill.common.plots import pyplot, save_figure
from guitar_distill.common.progress import console, progress_bar
from guitar_distill.common.quiet import quiet_start
from guitar_distill.common.runtimes import open_classifier, predict_all


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            ece += sel.mean() * abs(np.mean(pred[sel] == labels[sel]) - conf[sel].mean())
    return float(ece)


def classification_metrics(probs: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    pred = probs.argmax(1)
    k = min(3, probs.shape[1])
    top3 = np.argsort(-probs, axis=1)[:, :k]
    confusion = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(confusion, (labels, pred), 1)
    per_class = {}
    for i, c in enumerate(classes):
        tp = confusion[i, i]
        precision = tp / confusion[:, i].sum() if confusion[:, i].sum() else 0.0
        recall = tp / confusion[i].sum() if confusion[i].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[c] = {
            "precision": float(precision),
            "recall": float(recall),
            "f1": float(f1),
            "support": int(confusion[i].sum()),
        }
    return {
        "top1": float(np.mean(pred == labels)),
        "top3": float(np.mean((top3 == labels[:, None]).any(1))),
        "ece": expected_calibration_error(probs, labels),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def plot_confusion(confusion, classes: list[str], title: str, path: Path) -> None:
    plt = pyplot()

    confusion = np.asarray(confusion)
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    for (i, j), v in np.ndenumerate(confusion):
        if v:
            ax.text(
                j,
                i,
                str(v),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if v > confusion.max() / 2 else "black",
            )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)


def plot_gallery(paths, labels, preds, probs, classes, title: str, path: Path, limit: int = 24) -> None:
    plt = pyplot()
    from guitar_distill.edge.images import load_rgb

    wrong = np.flatnonzero(preds != labels)[:limit]
    cols = 6
    rows = max(1, int(np.ceil(len(wrong) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong):
        ax.imshow(load_rgb(paths[i]).resize((128, 128)))
        ax.set_title(f"true {classes[labels[i]]}\npred {classes[preds[i]]} {probs[i].max():.0%}", fontsize=8)
    fig.suptitle(
        f"{title}: {len(np.flatnonzero(preds != labels))} misclassified" + (" (none)" if not len(wrong) else "")
    )
    fig.tight_layout()
    save_figure(fig, path, dpi=80)


def score_files(files, images_at, labels, classes: list[str], advance=lambda: None) -> tuple[dict, dict, str | None]:
    """(metrics, probabilities, the agreement reference) of each file on the photos `images_at(its side)`
    (common.cache.images_by_side), keyed model/format. Agreement is with the first teacher file (its Keras
    model where there is one)."""
    results, probs, reference = {}, {}, None
    for f in files:
        key = f"{f.model}/{f.fmt}"
        classifier = open_classifier(f.path)
        probs[key] = predict_all(classifier, images_at(classifier.size))
        if f.model == "teacher" and reference is None:
            reference = key
        results[key] = {
            **classification_metrics(probs[key], labels, classes),
            "agreement_with_teacher": (
                float(np.mean(probs[key].argmax(1) == probs[reference].argmax(1))) if reference else None
            ),
        }
        advance()
    return results, probs, reference


def accuracy_table(results: dict) -> str:
    def agreement(m):
        return f"{m['agreement_with_teacher']:.4f}" if m["agreement_with_teacher"] is not None else "-"

    rows = [
        [*key.split("/"), f"{m['top1']:.4f}", f"{m['top3']:.4f}", f"{m['ece']:.4f}", agreement(m)]
        for key, m in results.items()
    ]
    return markdown_table(["model", "format", "top-1", "top-3", "ECE", "agreement with teacher"], rows, "llrrrr")


def plot_results(results: dict, probs: dict, info, split: str, paths: list[Path], labels, out: Path) -> None:
    """A confusion matrix for every file, and the misclassified photos of the Keras and int8 files."""
    for key, m in results.items():
        model, fmt = key.split("/")
        plot_confusion(m["confusion"], info.classes, f"{key} on {split}", out / "confusion" / f"{model}_{fmt}.png")
        if fmt in ("keras", "tflite_int8"):
            gallery = out / "misclassified" / f"{model}_{fmt}.png"
            plot_gallery(paths, labels, probs[key].argmax(1), probs[key], info.classes, key, gallery)


def main(argv=None):
    parser = stage_parser("Accuracy of every model and format on the test split.")
    parser.add_argument("--models", nargs="+")
    parser.add_argument("--formats", nargs="+")
    args = parser.parse_args(argv)
    quiet_start()  # after parsing: --help and argument errors need no TensorFlow
    resolve_config(args)
    start = time.perf_counter()
    info = load_data_info(args.artifacts)
    split = evaluation_split(info)
    labels = info.labels(split)
    files, missing = find_model_files(args.artifacts, args.models, args.formats)
    for line in missing:
        console.print(f"skipped: {line}")
    out = stage_dir(args.artifacts, "bench")
    with progress_bar(len(files), f"accuracy on {len(labels)} {split} photos") as advance:
        results, probs, reference = score_files(files, images_by_side(info, split), labels, info.classes, advance)
    plot_results(results, probs, info, split, [info.source / r.path for r in info.split_rows(split)], labels, out)
    table = accuracy_table(results)
    write_record(
        out,
        "accuracy",
        "benchmarks.accuracy",
        argv,
        title=f"Accuracy on the {split} split ({len(labels)} photos)",
        settings={
            "split": split,
            "images": int(len(labels)),
            "models": args.models or "all",
            "formats": args.formats or "all",
            "agreement_reference": reference,
        },
        results=results,
        table=table,
        started=start,
        extra={"split": split, "images": int(len(labels)), "classes": info.classes, "missing": missing},
    )
    console.print(table)
    console.print(
        f"accuracy done in {time.perf_counter() - start:.0f} s: {out / 'accuracy.json'}, "
        f"{out / 'accuracy.md'}, confusion matrices in {out / 'confusion'}, galleries in {out / 'misclassified'}"
    )


if __name__ == "__main__":
    run_cli(main)
