"""The parity gate: every exported file run in its own runtime against the Keras model."""

from __future__ import annotations

import numpy as np

from guitar_distill.common.errors import ToolkitError
from guitar_distill.common.markdown import markdown_table
from guitar_distill.common.runtimes import open_classifier, predict_all


class ParityError(ToolkitError):
    pass


def measure(path, images: np.ndarray, labels: np.ndarray, keras_probs: np.ndarray) -> dict:
    classifier = open_classifier(path)
    probs = predict_all(classifier, images)
    result = {
        "accuracy": float(np.mean(probs.argmax(1) == labels)),
        "keras_accuracy": float(np.mean(keras_probs.argmax(1) == labels)),
        "agreement": float(np.mean(probs.argmax(1) == keras_probs.argmax(1))),
        "max_prob_diff": float(np.abs(probs - keras_probs).max()),
        "images": int(len(images)),
    }
    result["accuracy_change"] = result["accuracy"] - result["keras_accuracy"]
    if str(path).endswith(".onnx"):
        # Dynamic batch: one image at a time must give what a batch of eight gives.
        sample = np.asarray(images[:8])
        one_by_one = np.concatenate([classifier.predict(sample[i : i + 1]) for i in range(len(sample))])
        result["batch_max_diff"] = float(np.abs(one_by_one - classifier.predict(sample)).max())
    return result


def gate(name: str, path, result: dict, min_agreement: float, max_prob_diff: float | None = None) -> None:
    """Raise ParityError unless the file agrees with Keras often enough (and, for fp32 files, closely).

    fp32 files get the strict floor and a probability tolerance (the same arithmetic, reordered);
    quantised files a looser agreement floor (export.quantised_min_agreement) and no tolerance.
    ONNX files must also give batch 1 what they give batch 8.
    """
    problems = []
    if result["agreement"] < min_agreement:
        problems.append(f"argmax agreement {result['agreement']:.4f} < {min_agreement}")
    if max_prob_diff is not None and result["max_prob_diff"] > max_prob_diff:
        problems.append(f"max probability difference {result['max_prob_diff']:.2e} > {max_prob_diff}")
    if result.get("batch_max_diff", 0.0) > 1e-3:
        problems.append(f"batch 1 vs batch 8 differ by {result['batch_max_diff']:.2e}")
    if problems:
        raise ParityError(
            f"parity gate failed for {name} ({path}): "
            + "; ".join(problems)
            + f" (on {result['images']} validation photos)"
        )


def parity_table(results: dict) -> str:
    return markdown_table(
        ["model", "format", "top-1", "Keras top-1", "change", "agreement", "max prob diff"],
        [
            [
                model,
                fmt,
                f"{r['accuracy']:.4f}",
                f"{r['keras_accuracy']:.4f}",
                f"{r['accuracy_change']:+.4f}",
                f"{r['agreement']:.4f}",
                f"{r['max_prob_diff']:.4f}",
            ]
            for (model, fmt), r in results.items()
        ],
        "llrrrrr",
    )
