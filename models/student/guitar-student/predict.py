"""Classify photos with the bundle's TFLite model. Needs only ai-edge-litert, numpy and pillow.

    python predict.py photo.jpg more_photos/ --top-k 3 [--json]
    python predict.py --selftest          # golden photos checked on this device

The bundle holds the model twice: int8 (`model.tflite`) and float32 (`model_fp32.tflite`). Which
is faster depends on the processor: int8 wins where the CPU has int8 dot products (VNNI/AMX on x86,
`sdot` on ARMv8.2+), and can lose where it has not (AVX2-only x86, a Raspberry Pi 4's Cortex-A72).
So on first use predict.py times both, keeps the faster, says which and why, and caches the choice
in `.fastest.json` beside them, redone when the CPU, the thread count or the files change.
`--model FILE` forces one.

In the project the same file runs as `guitar-distill predict --model BUNDLE/model.tflite`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

if __package__:  # the project's module, guitar_distill.edge.predict
    from guitar_distill.edge.images import ImageRejected, load_for_model
else:  # a bundle's script: its own images.py, whatever else is installed
    from images import ImageRejected, load_for_model

HERE = Path(__file__).resolve().parent
# In a bundle the models sit beside this file; in the project (guitar_distill/edge/), the released student's.
DEFAULT_MODEL = next(
    (
        p
        for p in (HERE / "model.tflite", HERE.parents[1] / "models" / "student" / "guitar-student" / "model.tflite")
        if p.exists()
    ),
    HERE / "model.tflite",
)
CANDIDATES = ("model.tflite", "model_fp32.tflite")  # int8 (uint8 in), float32: the same student
CHOICE_FILE = ".fastest.json"
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


class ModelError(RuntimeError):
    pass


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # older installs
        from tflite_runtime.interpreter import Interpreter
    return Interpreter


@contextlib.contextmanager
def native_stderr_silenced():
    """File descriptor 2 to /dev/null while native code logs there; Python's own errors still raise."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


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
            with native_stderr_silenced():  # LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate" on every run
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
    """model.json for model.tflite, model_fp32.json for model_fp32.tflite."""
    model_path = Path(model_path)
    meta = model_path.with_name("model.json" if model_path.name == "model.tflite" else f"{model_path.stem}.json")
    return json.loads(meta.read_text()) if meta.exists() else {}


def cpu_signature() -> str:
    """What decides which file is faster: the processor and its features."""
    name, flags = platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key = line.split(":", 1)[0].strip()
            if key in ("model name", "Model", "CPU part") and name == platform.machine():
                name += " " + line.split(":", 1)[1].strip()
            elif key in ("flags", "Features") and not flags:
                flags = line.split(":", 1)[1].strip()
    except OSError:
        name += " " + platform.processor()
    return name + " | " + hashlib.sha256(flags.encode()).hexdigest()[:16]


def latencies_ms(classifier: TFLiteClassifier, runs: int, warmup: int) -> list[float]:
    """Batch-1 milliseconds of the model alone (no photo decoding), after `warmup` untimed runs."""
    x = np.random.default_rng(0).integers(0, 256, (1, classifier.size, classifier.size, 3)).astype(np.uint8)
    for _ in range(warmup):
        classifier.predict(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        classifier.predict(x)
        times.append((time.perf_counter() - start) * 1000)
    return times


def time_model(classifier: TFLiteClassifier, runs: int = 30) -> float:
    """Median batch-1 milliseconds, after 5 warm-up runs: enough to tell two files apart."""
    return float(np.median(latencies_ms(classifier, runs, warmup=5)))


def choose_model(folder: Path, threads: int | None, rounds: int = 3) -> tuple[Path, str]:
    """The faster of the bundle's files on this machine, and a line saying why.

    Timed in `rounds` alternating rounds (a busy moment then hits both files), cached in
    `.fastest.json`; the cache holds while the CPU, the threads and the files' sha256 are the same.
    """
    folder = Path(folder)
    files = [folder / name for name in CANDIDATES if (folder / name).is_file()]
    if len(files) < 2:
        return (files[0] if files else folder / CANDIDATES[0]), ""
    key = {
        "cpu": cpu_signature(),
        "threads": threads,
        "files": {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files},
    }
    cache = folder / CHOICE_FILE
    try:
        saved = json.loads(cache.read_text())
        if {k: saved.get(k) for k in key} == key:
            return folder / saved["choice"], why(saved, cached=True)
    except (OSError, ValueError, KeyError):
        pass
    classifiers = {f.name: TFLiteClassifier(f, threads, read_model_json(f).get("sha256")) for f in files}
    rounds_ms = {name: [] for name in classifiers}
    for _ in range(rounds):
        for name, classifier in classifiers.items():
            rounds_ms[name].append(time_model(classifier))
    ms = {name: float(np.median(v)) for name, v in rounds_ms.items()}
    record = {**key, "ms": ms, "choice": min(ms, key=ms.get)}
    try:  # a read-only bundle still works: it just times again next time
        tmp = cache.with_name(cache.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, cache)
    except OSError:
        pass
    return folder / record["choice"], why(record, cached=False)


def why(record: dict, cached: bool) -> str:
    ms = record["ms"]
    other = next(name for name in ms if name != record["choice"])
    when = f"timed on first use, cached in {CHOICE_FILE}" if not cached else f"as timed before ({CHOICE_FILE})"
    return (
        f"using {record['choice']}: {ms[record['choice']]:.2f} ms a photo against {ms[other]:.2f} ms for {other} "
        f"on this CPU, {record['threads'] or 'default'} thread(s) ({when}; --model FILE forces one)"
    )


def expand_inputs(items: list[str]) -> list[Path]:
    paths = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            paths.extend(
                sorted(
                    f
                    for f in p.rglob("*")
                    if f.is_file()
                    and f.suffix.lower() in PHOTO_SUFFIXES
                    and not any(part.startswith(".") for part in f.relative_to(p).parts)
                )
            )
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


def golden_answers(model_path: Path) -> Path:
    """golden/expected.json holds model.tflite's answers; golden/expected_<stem>.json another file's."""
    model_path = Path(model_path)
    name = "expected.json" if model_path.name == "model.tflite" else f"expected_{model_path.stem}.json"
    return model_path.parent / "golden" / name


def selftest(classifier: TFLiteClassifier, labels: list[str], golden_dir: Path) -> int:
    answers = golden_answers(classifier.path)
    if not answers.exists():
        print(
            f"error: no golden/expected.json beside {classifier.path}: the self-test checks the files of a "
            f"bundle built by the project's export",
            file=sys.stderr,
        )
        return 1
    expected = json.loads(answers.read_text())
    missing = [item["file"] for item in expected if not (golden_dir / item["file"]).exists()]
    if missing:
        print(
            f"error: golden photos missing in {golden_dir}: {', '.join(missing)} (the bundle carries them: copy "
            f"its whole folder)",
            file=sys.stderr,
        )
        return 1
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
    times = latencies_ms(classifier, runs, warmup=10)
    p50, p90 = np.percentile(times, [50, 90])
    print(
        f"{classifier.path.name} on {platform.machine()}, {threads or 'default'} thread(s), {runs} runs: "
        f"p50 {p50:.3f} ms, p90 {p90:.3f} ms, mean {np.mean(times):.3f} ms"
    )
    return 0


def open_model(model: Path | None, threads: int | None, labels_path: Path | None = None):
    """(path, model.json, classifier, labels) of `model`, or of the bundle's faster file (saying why)."""
    if model is None:
        model, reason = choose_model(DEFAULT_MODEL.parent, threads)
        if reason:
            print(reason, file=sys.stderr)
    meta = read_model_json(model)
    labels = (labels_path or model.with_name("labels.txt")).read_text().split()
    return model, meta, TFLiteClassifier(model, threads, meta.get("sha256")), labels


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Classify photos with a TFLite model.")
    parser.add_argument("inputs", nargs="*", help="photo files or folders")
    parser.add_argument(
        "--model",
        type=Path,
        help=f"a .tflite file (default: the faster of {' and '.join(CANDIDATES)} "
        f"in {DEFAULT_MODEL.parent}, timed on first use)",
    )
    parser.add_argument("--labels", type=Path, help="labels.txt (default: next to the model)")
    parser.add_argument(
        "--top-k", type=int, default=3, help="classes to show per photo, 1 to all (default: %(default)s)"
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--selftest", action="store_true", help="check the golden photos next to the model")
    parser.add_argument(
        "--benchmark",
        action="store_true",
        help="time --runs batch-1 inferences (after 10 warm-up runs) and print p50/p90/mean in ms",
    )
    parser.add_argument("--runs", type=int, default=100, help="timed runs of --benchmark (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error(f"--top-k must be at least 1 (got {args.top_k})")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1 (got {args.threads})")
    try:
        args.model, meta, classifier, labels = open_model(args.model, args.threads, args.labels)
    except (ModelError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.selftest:
        return selftest(classifier, labels, args.model.parent / "golden")
    if args.benchmark:
        if args.runs < 1:
            parser.error(f"--runs must be at least 1 (got {args.runs})")
        return benchmark(classifier, args.runs, args.threads)
    if not args.inputs:
        parser.error("give photo files or folders, or --selftest")
    if args.top_k > len(labels):
        parser.error(f"--top-k {args.top_k}: the model knows only {len(labels)} classes")
    results = [{**r, "model": str(args.model)} for r in classify_inputs(classifier, labels, args.inputs, args.top_k)]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if "error" in r:
                print(f"{r['file']}: error: {r['error']}", file=sys.stderr)
            else:
                print(f"{r['file']}: " + ", ".join(f"{label} {p:.1%}" for label, p in r["top"]))
    return 1 if any("error" in r for r in results) else 0


def classify_inputs(classifier: TFLiteClassifier, labels: list[str], inputs: list[str], top_k: int) -> list[dict]:
    """`classify` over files and folders, in the order given; a missing path or a folder without photos is an
    error result like an unreadable photo, and the rest are still answered."""
    results = []
    for item in inputs:
        path = Path(item)
        if not path.exists():
            results.append({"file": item, "error": "no such file or folder"})
        elif path.is_dir() and not expand_inputs([item]):
            results.append({"file": item, "error": f"no photos in this folder ({', '.join(sorted(PHOTO_SUFFIXES))})"})
        else:
            results.extend(classify(classifier, labels, expand_inputs([item]), top_k))
    return results


if __name__ == "__main__":
    sys.exit(main())
