"""Matplotlib without a display, and figures written atomically."""

from __future__ import annotations

from pathlib import Path

from guitar_distill.common.artifacts import atomic_path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int = 100) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    pyplot().close(fig)
    return Path(path)


def phase_marks(phases) -> list[tuple[float, str]]:
    """Where a progressive-resizing run changes its side, as (x between the two epochs, the new side's label);
    a phase's `from_epoch` counts completed epochs, the curves' epochs count from 1."""
    return [(p.from_epoch + 0.5, f"{p.image_size} px") for p in phases if p.from_epoch > 0]


def plot_curves(rows: list[dict], path: Path, title: str, phases=()) -> Path:
    """Accuracy and loss per step, train and validation, like the write-up's figure; with `phases`
    (common.config.Phase), a line where the training side changes."""
    plt = pyplot()

    epochs = [r["epoch"] for r in rows]
    marker = "o" if len(rows) <= 40 else None  # dots on a long run hide its curve
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("accuracy", "loss")):
        ax.plot(epochs, [r[metric] for r in rows], marker=marker, label=f"train {metric}")
        ax.plot(epochs, [r[f"val_{metric}"] for r in rows], marker=marker, label=f"validation {metric}")
        ax.set_xlabel('epoch (the write-up\'s "step": steps_per_epoch mini-batches)')
        ax.set_title(metric)
        if metric == "loss":  # a from-scratch first epoch can sit orders of magnitude above the rest
            ax.set_yscale("log")
        for x, label in phase_marks(phases):
            ax.axvline(x, color="grey", linestyle="--", linewidth=1)
            ax.annotate(
                label,
                (x, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(3, -12),
                textcoords="offset points",
                fontsize=8,
                color="grey",
            )
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
