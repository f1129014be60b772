"""`python -m benchmarks.robustness`: accuracy against corruption severity, teacher vs student vs int8 student.

The write-up's informal experiments (a scribble turned a Jazzmaster into a FlyingV) made
systematic: every corruption of the data stage at severities 1-5 on the test split, applied to
the photos at the model's input size, each photo with its own seed.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from guitar_distill.benchmarks.models import find_model_files
from guitar_distill.benchmarks.record import write_record
from guitar_distill.common.artifacts import stage_dir
from guitar_distill.common.cache import images_by_side
from guitar_distill.common.config import resolve_config, stage_parser
from guitar_distill.common.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from guitar_distill.common.errors import ToolkitError, run_cli
from guitar_distill.common.layout import evaluation_split, no_exported_files
from guitar_distill.common.manifest import load_data_info
from guitar_distill.common.markdown import markdown_table
from guitar_distill.common.plots import pyplot, save_figure
from guitar_distill.common.progress import console, progress_bar
from guitar_distill.common.quiet import quiet_start
from guitar_distill.common.runtimes import open_classifier, predict_all
from guitar_distill.dataset.split import balanced_subset

MODELS = (("teacher", "keras"), ("student", "keras"), ("student", "tflite_int8"))


def corrupted(images: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    return np.stack([corrupt(name, np.asarray(img), severity, seed + i) for i, img in enumerate(images)])


def robustness_table(results: dict) -> str:
    names = list(CORRUPTIONS)
    rows = []
    for key, r in results.items():
        means = [np.mean([r[n][str(s)] for s in SEVERITIES]) for n in names]
        rows.append([key, f"{r['clean']:.3f}", *(f"{m:.3f}" for m in means), f"{np.mean(means):.3f}"])
    return (
        markdown_table(["model", "clean", *names, "mean corrupted"], rows)
        + "(accuracy; each corruption averaged over severities 1-5)\n"
    )


def plot_robustness(results: dict, path, split: str = "test") -> None:
    plt = pyplot()
    names = list(CORRUPTIONS)
    fig, axes = plt.subplots(2, (len(names) + 1) // 2, figsize=(13, 6.5), sharey=True)
    for ax, name in zip(axes.flat, names):
        for key, r in results.items():
            ax.plot([0, *SEVERITIES], [r["clean"], *(r[name][str(s)] for s in SEVERITIES)], marker="o", label=key)
        ax.set_title(name)
        ax.set_xlabel("severity")
        ax.grid(alpha=0.3)
    axes.flat[0].set_ylabel("top-1 accuracy")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(f"robustness: accuracy against corruption severity ({split} split)")
    fig.tight_layout()
    save_figure(fig, path)


def parse_args(argv=None):
    parser = stage_parser("Accuracy against corruption severity for teacher, student and int8 student.")
    parser.add_argument(
        "--limit",
        type=int,
        help="about N test photos, the same number from each class (default: the preset's; 0 = all)",
    )
    parser.add_argument("--split", choices=("val", "test"), help="the photos (default: test, else val)")
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="also this model file (.keras, .tflite, .onnx) under NAME, e.g. released=models/student/tflite_int8/"
        "model.tflite: a student trained another way, on the same photos and corruptions (repeatable)",
    )
    return parser.parse_args(argv)


def models_to_test(artifacts: Path, extra: list[str], preset: str) -> dict:
    """{row name: classifier}: this run's teacher, student and int8 student, and each NAME=FILE given."""
    files, _ = find_model_files(artifacts)
    chosen = {f"{f.model}/{f.fmt}": f.path for f in files if (f.model, f.fmt) in MODELS}
    for model, fmt in MODELS:
        if f"{model}/{fmt}" not in chosen:
            console.print(f"skipped: {model}/{fmt} not found")
    for item in extra:
        name, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            raise ToolkitError(f"--model {item}: expected NAME=FILE with an existing model file")
        chosen[name] = Path(path)
    if not chosen:
        raise ToolkitError(no_exported_files(artifacts, preset))
    return {name: open_classifier(path) for name, path in chosen.items()}


def sweep(classifiers: dict, images_at, labels, seed: int, split: str) -> dict:
    """Every model's top-1 on the clean photos and under every corruption at every severity, each model on the
    photos at its own side (`images_at`, common.cache.images_by_side), corrupted with the same seeds."""

    def top1(classifier, images) -> float:
        return float(np.mean(predict_all(classifier, images).argmax(1) == labels))

    sides = {c.size for c in classifiers.values()}
    results = {k: {"clean": top1(c, images_at(c.size))} for k, c in classifiers.items()}
    with progress_bar(len(CORRUPTIONS) * len(SEVERITIES), f"robustness on {len(labels)} {split} photos") as advance:
        for name in CORRUPTIONS:
            for severity in SEVERITIES:
                batches = {side: corrupted(images_at(side), name, severity, seed * 1000 + severity) for side in sides}
                for key, classifier in classifiers.items():
                    acc = top1(classifier, batches[classifier.size])
                    results[key].setdefault(name, {})[str(severity)] = acc
                advance()
    return results


def main(argv=None):
    args = parse_args(argv)
    quiet_start()  # after parsing: --help and argument errors need no TensorFlow
    cfg = resolve_config(args)
    limit = args.limit if args.limit is not None else cfg.bench.robustness_limit
    start = time.perf_counter()
    info = load_data_info(args.artifacts)
    split = args.split or evaluation_split(info)
    labels, keep = info.labels(split), None
    if limit:  # a seeded, class-balanced sample: the split's own order is by class
        keep = balanced_subset(labels, max(1, limit // len(info.classes)), seed=cfg.data.seed)
        labels = labels[keep]
    classifiers = models_to_test(args.artifacts, args.model, cfg.name)
    seed = cfg.data.seed
    results = sweep(classifiers, images_by_side(info, split, keep), labels, seed, split)
    out = stage_dir(args.artifacts, "bench")
    stem = "robustness" if split == evaluation_split(info) else f"robustness_{split}"
    table = robustness_table(results)
    write_record(
        out,
        stem,
        "benchmarks.robustness",
        argv,
        title=f"Robustness on the {split} split ({len(labels)} photos)",
        settings={"split": split, "images": int(len(labels)), "severities": list(SEVERITIES), "seed": seed},
        results=results,
        table=table,
        started=start,
        extra={"split": split, "images": int(len(labels)), "models": args.model},
    )
    plot_robustness(results, out / f"{stem}.png", split)
    console.print(table)
    console.print(f"robustness done in {time.perf_counter() - start:.0f} s: {out / stem}.md, {out / stem}.png")


if __name__ == "__main__":
    run_cli(main)
