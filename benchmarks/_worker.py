"""One latency measurement in a fresh process, so cold start and peak memory are the model's own.

    python -m benchmarks._worker '{"path": ..., "threads": 1, "runs": 200, ...}'  -> JSON on stdout
"""
from __future__ import annotations

import json
import resource
import sys
import time

import numpy as np


def measure(spec: dict) -> dict:
    from common.runtimes import open_classifier

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    classifier = open_classifier(spec["path"], spec["threads"])
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
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"times_ms": [round(s * 1000, 4) for s in times], "load_ms": load_s * 1000, "first_inference_ms": first_s * 1000,
            "peak_rss_mib": peak_kib / 1024, "rss_before_load_mib": rss_before / 1024,
            "batch": batch, "batch_images_per_s": batch_ips, "input_size": classifier.size}


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))))
