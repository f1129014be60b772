"""The parity gate: every exported file run in its own runtime against the Keras model."""
from __future__ import annotations

import numpy as np

from common.runtimes import open_classifier, predict_all


class ParityError(SystemExit):
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
        one_by_one = np.concatenate([classifier.predict(sample[i:i + 1]) for i in range(len(sample))])
        result["batch_max_diff"] = float(np.abs(one_by_one - classifier.predict(sample)).max())
    return result


def gate(name: str, path, result: dict, min_agreement: float, is_fp32: bool) -> None:
    """fp32 files must match Keras; quantised files only report their change."""
    if not is_fp32:
        return
    problems = []
    if result["agreement"] < min_agreement:
        problems.append(f"argmax agreement {result['agreement']:.4f} < {min_agreement}")
    if result.get("batch_max_diff", 0.0) > 1e-3:
        problems.append(f"batch 1 vs batch 8 differ by {result['batch_max_diff']:.2e}")
    if problems:
        raise ParityError(f"parity gate failed for {name} ({path}): " + "; ".join(problems)
                          + f"; max probability difference {result['max_prob_diff']:.4f} "
                          f"on {result['images']} validation photos")


def parity_table(results: dict) -> str:
    lines = ["| model | format | top-1 | Keras top-1 | change | agreement | max prob diff |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for (model, fmt), r in results.items():
        lines.append(f"| {model} | {fmt} | {r['accuracy']:.4f} | {r['keras_accuracy']:.4f} | "
                     f"{r['accuracy_change']:+.4f} | {r['agreement']:.4f} | {r['max_prob_diff']:.4f} |")
    return "\n".join(lines) + "\n"
