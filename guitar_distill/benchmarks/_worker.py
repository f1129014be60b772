"""One latency measurement in a fresh process that imports only the runtime it measures.

    python -m benchmarks._worker '{"path": ..., "threads": 1, "runs": 200, ...}'  -> JSON on stdout

Memory comes from /proc/self/status: VmHWM is the peak resident set of this process image alone
(getrusage's ru_maxrss survives exec on Linux, so a worker started from a parent holding TensorFlow
would report the parent's gigabyte). Three readings: the bare interpreter, after importing the
runtime, and the peak after loading the model and running it.
"""

import json
import sys
import time


def rss_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process, in MiB; NaN where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def import_runtime(path: str):
    """Import only what this model file's runtime needs; return the project's classifier for it."""
    if path.endswith(".tflite"):
        from guitar_distill.edge.predict import TFLiteClassifier  # numpy, pillow, ai-edge-litert

        return TFLiteClassifier
    if path.endswith(".onnx"):
        import onnxruntime  # noqa: F401  (imported here so its memory counts as the runtime's)

        from guitar_distill.common.runtimes import OnnxClassifier

        return OnnxClassifier
    import keras  # noqa: F401

    from guitar_distill.common.runtimes import KerasClassifier

    return KerasClassifier


def measure(spec: dict) -> dict:
    bare = rss_mib("VmRSS")
    classifier_class = import_runtime(spec["path"])
    import numpy as np

    runtime_rss = rss_mib("VmRSS")
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    classifier = classifier_class(spec["path"], spec["threads"])
    load_s = time.perf_counter() - t0
    x = rng.integers(0, 256, (1, classifier.size, classifier.size, 3), dtype=np.uint8)
    t1 = time.perf_counter()
    classifier.predict(x)
    first_s = time.perf_counter() - t1
    for _ in range(spec["warmup"]):
        classifier.predict(x)
    times = []
    deadline = time.perf_counter() + spec["max_seconds"]
    while len(times) < spec["runs"] and (len(times) < 10 or time.perf_counter() < deadline):
        t = time.perf_counter()
        classifier.predict(x)
        times.append(time.perf_counter() - t)
    peak_batch1 = rss_mib("VmHWM")
    batch = spec.get("batch") or 0
    batch_ips = None
    if batch > 1:
        xb = rng.integers(0, 256, (batch, classifier.size, classifier.size, 3), dtype=np.uint8)
        classifier.predict(xb)
        reps, t = 0, time.perf_counter()
        while reps < 3 or (time.perf_counter() - t < spec["max_seconds"] / 4 and reps < 50):
            classifier.predict(xb)
            reps += 1
        batch_ips = batch * reps / (time.perf_counter() - t)
    return {
        "times_ms": [round(s * 1000, 4) for s in times],
        "load_ms": load_s * 1000,
        "first_inference_ms": first_s * 1000,
        "bare_rss_mib": bare,
        "runtime_rss_mib": runtime_rss,
        "peak_rss_mib": peak_batch1,
        "batch": batch,
        "batch_images_per_s": batch_ips,
        "input_size": classifier.size,
    }


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))))
