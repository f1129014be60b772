"""What the benchmarks ran on: CPU, SIMD flags, OS, runtime versions, and measured peak GFLOP/s."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from common.artifacts import cpu_name, environment_info

SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile",
              "amx_int8", "neon", "asimd", "asimddp")

PEAK_SCRIPT = """
import time, numpy as np
n = 1024
a = np.random.default_rng(0).random((n, n), dtype=np.float32); b = a.T.copy()
a @ b
best = 0.0
for _ in range(7):
    t = time.perf_counter(); a @ b; dt = time.perf_counter() - t
    best = max(best, 2 * n**3 / dt / 1e9)
print(best)
"""


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            present = set(line.split(":", 1)[1].split())
            return [f for f in SIMD_FLAGS if f in present]
    return []


def peak_gflops(threads: int) -> float:
    """Best float32 GEMM rate numpy's BLAS reaches with `threads` threads: the roofline's compute roof."""
    env = {**os.environ, **{v: str(threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def hardware_header(threads: list[int]) -> dict:
    env = environment_info()
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "simd": cpu_flags(), "os": platform.platform(),
            "python": env["python"], "versions": env["versions"],
            "peak_gflops_fp32": {str(t): round(peak_gflops(t), 1) for t in threads}}


def header_markdown(hw: dict) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in hw["versions"].items())
    peaks = ", ".join(f"{t} thread{'s' if t != '1' else ''}: {g} GFLOP/s" for t, g in hw["peak_gflops_fp32"].items())
    return (f"- CPU: {hw['cpu']}, {hw['cores']} cores; SIMD: {' '.join(hw['simd']) or 'unknown'}\n"
            f"- OS: {hw['os']}; Python {hw['python']}\n- Runtimes: {versions}\n"
            f"- Measured fp32 GEMM peak (numpy): {peaks}\n")


if __name__ == "__main__":
    print(json.dumps(hardware_header([1, os.cpu_count() or 1]), indent=2))
