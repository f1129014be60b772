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


def plot_curves(rows: list[dict], path: Path, title: str) -> Path:
    """Accuracy and loss per step, train and validation, like the write-up's figure."""
    plt = pyplot()

    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("accuracy", "loss")):
        ax.plot(epochs, [r[metric] for r in rows], marker="o", label=f"train {metric}")
        ax.plot(epochs, [r[f"val_{metric}"] for r in rows], marker="o", label=f"validation {metric}")
        ax.set_xlabel('epoch (the write-up\'s "step": steps_per_epoch mini-batches)')
        ax.set_title(metric)
        if metric == "loss":  # a from-scratch first epoch can sit orders of magnitude above the rest
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
