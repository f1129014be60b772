"""Classify guitar photos with the student's TFLite model. Needs only ai-edge-litert, numpy and pillow.

    python predict.py photo.jpg more_photos/ --top-k 3 [--json]
    python predict.py --selftest          # golden photos checked on this device

In the project the same file runs as `python -m edge.predict --model artifacts/edge/guitar-student/model.tflite`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

try:  # inside the project
    from edge.images import ImageRejected, load_for_model
except ImportError:  # in the bundle, next to images.py
    from images import ImageRejected, load_for_model

HERE = Path(__file__).resolve().parent
# In a bundle the model sits beside this file; in the project, the released student in models/.
DEFAULT_MODEL = next((p for p in (HERE / "model.tflite", HERE.parent / "models" / "student" / "guitar-student" /
                                  "model.tflite") if p.exists()), HERE / "model.tflite")
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


class ModelError(RuntimeError):
    pass


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # older installs
        from tflite_runtime.interpreter import Interpreter
    return Interpreter


class TFLiteClassifier:
    """A .tflite classifier: uint8 or float input 0..255, probabilities out; any batch size."""

    def __init__(self, model_path, num_threads: int | None = None, expected_sha256: str | None = None):
        self.path = Path(model_path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: model file not found")
        data = self.path.read_bytes()
        if expected_sha256 and hashlib.sha256(data).hexdigest() != expected_sha256:
            raise ModelError(f"{self.path}: sha256 does not match model.json (file changed or corrupt)")
        try:
            self.interpreter = _interpreter_class()(model_content=data, num_threads=num_threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"{self.path}: not a valid TFLite model ({e})") from e
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.size = int(self.input["shape"][1])
        self._batch = int(self.input["shape"][0])

    def _quantize(self, x: np.ndarray) -> np.ndarray:
        dtype = self.input["dtype"]
        if dtype == np.float32:
            return x.astype(np.float32)
        scale, zero = self.input["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x.astype(np.float32) / scale + zero), info.min, info.max).astype(dtype)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """images: N x size x size x 3, values 0..255 -> N x classes probabilities (float32)."""
        n = len(images)
        if n != self._batch:
            self.interpreter.resize_tensor_input(self.input["index"], [n, self.size, self.size, 3])
            self.interpreter.allocate_tensors()
            self._batch = n
        self.interpreter.set_tensor(self.input["index"], self._quantize(np.asarray(images)))
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self.output["index"])
        if self.output["dtype"] != np.float32:
            scale, zero = self.output["quantization"]
            out = (out.astype(np.float32) - zero) * scale
        return out.astype(np.float32)


def read_model_json(model_path: Path) -> dict:
    meta = Path(model_path).with_name("model.json")
    return json.loads(meta.read_text()) if meta.exists() else {}


def expand_inputs(items: list[str]) -> list[Path]:
    paths = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            paths.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in PHOTO_SUFFIXES
                                and not any(part.startswith(".") for part in f.relative_to(p).parts)))
        else:
            paths.append(p)
    return paths


def classify(classifier: TFLiteClassifier, labels: list[str], paths: list[Path], top_k: int):
    """One result per path: {"file", "top": [[label, p], ...]} or {"file", "error"}."""
    results = []
    for path in paths:
        try:
            x = load_for_model(path, classifier.size)[None]
        except ImageRejected as e:
            results.append({"file": str(path), "error": e.reason + (f" ({e.detail})" if e.detail else "")})
            continue
        probs = classifier.predict(x)[0]
        order = np.argsort(-probs, kind="stable")[:top_k]  # ties (int8 outputs) go to the first class on every CPU
        results.append({"file": str(path), "top": [[labels[i], round(float(probs[i]), 4)] for i in order]})
    return results


def selftest(classifier: TFLiteClassifier, labels: list[str], golden_dir: Path) -> int:
    if not (golden_dir / "expected.json").exists():
        print(f"error: no golden photos in {golden_dir} (the copy in the project's models/ leaves photos out; "
              f"the bundle that `python -m export` builds has them)", file=sys.stderr)
        return 2
    expected = json.loads((golden_dir / "expected.json").read_text())
    missing = [item["file"] for item in expected if not (golden_dir / item["file"]).exists()]
    if missing:
        print(f"error: golden photos missing in {golden_dir}: {', '.join(missing)} (the copy in the project's "
              f"models/ keeps only expected.json; `make pi-check` puts the photos back from ../shared)", file=sys.stderr)
        return 2
    failures = 0
    for item in expected:
        result = classify(classifier, labels, [golden_dir / item["file"]], len(item["top"]))[0]
        got = [label for label, _ in result.get("top", [])]
        want = [label for label, _ in item["top"]]
        top1_prob = result["top"][0][1] if "top" in result else -1.0
        ok = got[:1] == want[:1] and abs(top1_prob - item["top"][0][1]) <= 0.02
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {item['file']}: expected {item['top'][0]}, got {result.get('top', result)}")
    print(f"selftest: {len(expected) - failures} passed, {failures} failed")
    return 1 if failures else 0


def benchmark(classifier: TFLiteClassifier, runs: int, threads: int | None) -> int:
    """Batch-1 latency of the model alone (no photo decoding) on this device."""
    import platform
    import time

    x = np.random.default_rng(0).integers(0, 256, (1, classifier.size, classifier.size, 3)).astype(np.uint8)
    for _ in range(10):
        classifier.predict(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        classifier.predict(x)
        times.append((time.perf_counter() - start) * 1000)
    p50, p90 = np.percentile(times, [50, 90])
    print(f"{classifier.path.name} on {platform.machine()}, {threads or 'default'} thread(s), {runs} runs: "
          f"p50 {p50:.3f} ms, p90 {p90:.3f} ms, mean {np.mean(times):.3f} ms")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Classify guitar photos with a TFLite model.")
    parser.add_argument("inputs", nargs="*", help="photo files or folders")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="default: %(default)s")
    parser.add_argument("--labels", type=Path, help="labels.txt (default: next to the model)")
    parser.add_argument("--top-k", type=int, default=3, help="classes to show per photo, 1 to all (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--selftest", action="store_true", help="check the golden photos next to the model")
    parser.add_argument("--benchmark", type=int, metavar="RUNS",
                        help="time RUNS batch-1 inferences (after 10 warm-up runs) and print p50/p90/mean in ms")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error(f"--top-k must be at least 1 (got {args.top_k})")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1 (got {args.threads})")
    meta = read_model_json(args.model)
    labels_path = args.labels or args.model.with_name("labels.txt")
    try:
        classifier = TFLiteClassifier(args.model, args.threads, meta.get("sha256"))
        labels = labels_path.read_text().split()
    except (ModelError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.selftest:
        return selftest(classifier, labels, args.model.parent / "golden")
    if args.benchmark is not None:
        if args.benchmark < 1:
            parser.error(f"--benchmark must be at least 1 (got {args.benchmark})")
        return benchmark(classifier, args.benchmark, args.threads)
    if not args.inputs:
        parser.error("give photo files or folders, or --selftest")
    if args.top_k > len(labels):
        parser.error(f"--top-k {args.top_k}: the model knows only {len(labels)} classes")
    paths = expand_inputs(args.inputs)
    missing = [item for item in args.inputs if not Path(item).exists()]
    for item in missing:
        print(f"error: {item}: no such file or folder", file=sys.stderr)
    empty = [item for item in args.inputs if Path(item).is_dir() and not expand_inputs([item])]
    for item in empty:
        print(f"error: {item}: no photos in this folder ({', '.join(sorted(PHOTO_SUFFIXES))})", file=sys.stderr)
    if missing or empty:
        return 2
    results = classify(classifier, labels, paths, args.top_k)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if "error" in r:
                print(f"{r['file']}: error: {r['error']}", file=sys.stderr)
            else:
                print(f"{r['file']}: " + ", ".join(f"{label} {p:.1%}" for label, p in r["top"]))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
