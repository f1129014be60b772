"""`python -m benchmarks.report`: reports/README.md, the side-by-side table and its plots."""

from __future__ import annotations

import shutil
from pathlib import Path

from guitar_distill.benchmarks.hardware import header_markdown
from guitar_distill.benchmarks.robustness import robustness_table
from guitar_distill.common.artifacts import read_json, require, write_text
from guitar_distill.common.config import MODELS_DIR, PROJECT_ROOT, resolve_config, stage_parser
from guitar_distill.common.errors import run_cli
from guitar_distill.common.layout import imported_teacher
from guitar_distill.common.markdown import markdown_table
from guitar_distill.common.plots import pyplot, save_figure
from guitar_distill.common.progress import console


def side_by_side(latency: dict, accuracy: dict) -> list[dict]:
    rows = {}
    for r in latency["results"]:
        row = rows.setdefault(
            (r["model"], r["fmt"]),
            {
                "model": r["model"],
                "fmt": r["fmt"],
                "runtime": r["runtime"],
                "size_mb": r["size_mb"],
                "parameters": r["parameters"],
            },
        )
        row[f"p50_ms_{r['threads']}"] = r["p50_ms"]
    for key, m in accuracy["results"].items():
        model, fmt = key.split("/")
        if (model, fmt) in rows:
            rows[(model, fmt)].update(top1=m["top1"], agreement=m["agreement_with_teacher"])
    return list(rows.values())


def side_by_side_table(rows: list[dict], threads: list[int]) -> str:
    header = [
        "model",
        "format",
        "runtime",
        "top-1",
        "agreement with teacher",
        "size MB",
        "parameters",
        *(f"p50 ms, {t} thread{'s' if t > 1 else ''}" for t in threads),
    ]
    table = [
        [
            r["model"],
            r["fmt"],
            r["runtime"],
            f"{r['top1']:.3f}" if "top1" in r else "-",
            f"{r['agreement']:.3f}" if r.get("agreement") is not None else "-",
            f"{r['size_mb']:.2f}",
            f"{r['parameters']:,}",
            *(f"{r.get(f'p50_ms_{t}', float('nan')):.2f}" for t in threads),
        ]
        for r in rows
    ]
    return markdown_table(header, table, "lll" + "r" * (len(header) - 3))


def plot_accuracy_vs_latency(rows: list[dict], threads: int, path: Path) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(8, 5))
    for model, marker in (("teacher", "s"), ("student", "o")):
        pts = [r for r in rows if r["model"] == model and "top1" in r and f"p50_ms_{threads}" in r]
        ax.scatter([r[f"p50_ms_{threads}"] for r in pts], [r["top1"] for r in pts], marker=marker, s=60, label=model)
        # Formats of one model sit close together: stagger the labels along the latency axis.
        for k, r in enumerate(sorted(pts, key=lambda r: r[f"p50_ms_{threads}"])):
            ax.annotate(
                r["fmt"],
                (r[f"p50_ms_{threads}"], r["top1"]),
                fontsize=7,
                textcoords="offset points",
                xytext=(6, 14 - 9 * (k % 4)),
                arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "grey"},
            )
    ax.set_xscale("log")
    ax.set_xlabel(f"p50 latency, batch 1, {threads} thread(s) [ms, log scale]")
    ax.set_ylabel("top-1 accuracy (test split)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    ax.set_title("accuracy vs latency: teacher and student in every format")
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def provenance(artifacts: Path) -> list[str]:
    """What this run trained, and what it took from the released models (the demo's teacher)."""
    trained = [
        f"`{stage}`" for stage in ("teacher", "baseline", "distill") if (artifacts / stage / "metrics.json").exists()
    ]
    lines = [f"Trained in this run: {', '.join(trained) or 'nothing'}."]
    imported = imported_teacher(artifacts)
    if imported and not (artifacts / "teacher" / "metrics.json").exists():
        what = " (the release's float16 Keras weights)" if imported.parts[:1] == ("models",) else ""
        lines.append(
            f"The teacher was **not** trained in this run: its files were rebuilt from `{imported}`{what} "
            "by `python -m guitar_distill.export.release --import-teacher`; the student was distilled from it here "
            "through stored logits."
        )
    released = MODELS_DIR / "training"
    if not (artifacts / "baseline" / "metrics.json").exists() and (released / "baseline" / "metrics.json").exists():
        base, kd = (read_json(released / name / "metrics.json") for name in ("baseline", "student"))
        lines.append(
            f"No no-distillation baseline was trained here; what distillation buys is measured in the "
            f"released run (`models/training/`, {kd['epochs_run']} epochs each): baseline "
            f"{base['test_accuracy']:.3f}, distilled {kd['test_accuracy']:.3f} test top-1."
        )
    return [" ".join(lines) + "\n"]


STAGE_BENCHMARKS = {
    "student_size": "student size",
    "train_rate_*": "training rate",
    "cache_build": "decode-cache build rate",
    "partitions": "XNNPACK partitions of the TFLite files",
}


def publish_stage_benchmarks(bench: Path, reports: Path) -> list[tuple[str, str]]:
    """Copy the stage benchmarks' records (and their figures) from the bench folder into reports/.

    Links also go to records already in reports/ from an earlier run, so a report made without
    rerunning the slow ones still lists them.
    """
    for pattern in STAGE_BENCHMARKS:
        for record in bench.glob(f"{pattern}.json"):
            for suffix in (".json", ".md"):
                shutil.copy(record.with_suffix(suffix), reports / record.with_suffix(suffix).name)
    for figure in (bench / "figures").glob("*.png"):
        shutil.copy(figure, reports / "figures" / figure.name)
    return [
        (
            md.name,
            f"{title}" + (f", {md.stem[len(pattern) - 1 :].replace('_', ' ')} preset" if pattern.endswith("*") else ""),
        )
        for pattern, title in STAGE_BENCHMARKS.items()
        for md in sorted(reports.glob(f"{pattern}.md"))
    ]


FIGURES = (
    ("confusion", ("teacher_keras.png", "student_keras.png", "student_tflite_int8.png")),
    ("misclassified", ("student_tflite_int8.png",)),
)


def copy_figures(artifacts: Path, bench: Path, figures: Path) -> list[str]:
    """The confusion matrices, misclassified grids and training curves copied into reports/figures."""
    sources = {f"{sub}_{name}": bench / sub / name for sub, names in FIGURES for name in names}
    sources.update({f"curves_{stage}.png": artifacts / stage / "curves.png" for stage in ("teacher", "distill")})
    copied = [name for name, path in sources.items() if path.exists()]
    for name in copied:
        shutil.copy(sources[name], figures / name)
    return copied


def robustness_section(bench: Path, figures: Path) -> list[str]:
    if not (bench / "robustness.json").exists():
        return []
    shutil.copy(bench / "robustness.png", figures / "robustness.png")
    rob = read_json(bench / "robustness.json")
    return [
        f"## Robustness ({rob['settings']['images']} {rob['settings']['split']} photos)\n",
        robustness_table(rob["results"]),
        f"Command: `{rob['command']}`\n",
        "![robustness](figures/robustness.png)\n",
    ]


def gradcam_section(bench: Path, figures: Path) -> list[str]:
    grids = sorted((bench / "gradcam").glob("grid_00*.png"))
    for grid in grids:
        shutil.copy(grid, figures / f"gradcam_{grid.name}")
    agreement = sorted((bench / "gradcam").glob("agreement*.json"))
    if not agreement:
        return []
    cam = read_json(agreement[-1])
    o = cam["results"]["overall"]
    after = [(k[: -len("_correlation")], v) for k, v in o.items() if k.endswith("_correlation") and k != "correlation"]
    per_class = [
        [c, f"{v['correlation']:.3f}", f"{v['iou_top20']:.3f}"] for c, v in cam["results"]["per_class"].items()
    ]
    return [
        f"## Where they look: Grad-CAM, teacher vs student ({len(cam['results']['photos'])} photos)\n",
        f"Command: `{cam['command']}`\n",
        f"Mean agreement of the two maps: correlation {o['correlation']:.3f}, IoU of the top-20 % "
        f"region {o['iou_top20']:.3f}.",
        *(f"After {name}: correlation {v:.3f}." for name, v in after),
        "",
        markdown_table(["class", "correlation", "IoU top-20 %"], per_class).rstrip("\n"),
        "",
        *(f"![grad-cam](figures/gradcam_{g.name})" for g in grids),
        "",
    ]


def main(argv=None):
    parser = stage_parser("Write reports/README.md from the latency and accuracy benchmarks.")
    parser.add_argument("--reports", type=Path, default=PROJECT_ROOT / "reports")
    args = parser.parse_args(argv)
    cfg = resolve_config(args)
    bench, reports = args.artifacts / "bench", args.reports
    latency = read_json(require(bench / "latency.json", "latency results", "python -m benchmarks.latency"))
    accuracy = read_json(require(bench / "accuracy.json", "accuracy results", "python -m benchmarks.accuracy"))
    figures = reports / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    rows, threads = side_by_side(latency, accuracy), latency["settings"]["threads"]
    plot_accuracy_vs_latency(rows, threads[0], figures / "accuracy_vs_latency.png")
    copied = copy_figures(args.artifacts, bench, figures)
    text = [
        f"# guitar-distill: side-by-side report ({cfg.name} preset)\n",
        *provenance(args.artifacts),
        f"Hardware:\n\n{header_markdown(latency['hardware'])}",
        f"Accuracy on the {accuracy['settings']['split']} split ({accuracy['settings']['images']} photos); "
        "latency at batch 1.\n",
        "## Teacher and student, every format\n",
        side_by_side_table(rows, threads),
        "![accuracy vs latency](figures/accuracy_vs_latency.png)\n",
        "## Commands\n",
        f"- `{latency['command']}` ({latency['seconds']:.0f} s)",
        f"- `{accuracy['command']}`",
        f"- `python -m benchmarks.report --preset {cfg.name}`\n",
        *robustness_section(bench, figures),
        *gradcam_section(bench, figures),
    ]
    published = publish_stage_benchmarks(bench, reports)
    if published:
        text += ["## Stage benchmarks\n"] + [f"- [{title}]({name})" for name, title in published] + [""]
    parity = args.artifacts / "export" / "parity.md"
    if parity.exists():
        text += ["## Export parity (validation split)\n", parity.read_text()]
    text += ["## Figures\n"] + [f"![{name}](figures/{name})" for name in copied]
    write_text(reports / "README.md", "\n".join(text) + "\n")
    write_text(reports / "latency.md", (bench / "latency.md").read_text())
    write_text(reports / "accuracy.md", (bench / "accuracy.md").read_text())
    console.print(side_by_side_table(rows, threads))
    console.print(f"report: {reports / 'README.md'} with {len(copied) + 1} figures in {figures}")


if __name__ == "__main__":
    run_cli(main)
