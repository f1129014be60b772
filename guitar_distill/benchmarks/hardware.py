"""What the benchmarks ran on: CPU, SIMD flags, OS, runtime versions, and the measured compute roofs."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from guitar_distill.benchmarks.peaks import ROOFS, measure_roof
from guitar_distill.common.artifacts import cpu_flags, cpu_name, environment_info

ROOF_NAMES = {
    "fp32": "fp32 GEMM (numpy)",
    "litert-fp32": "fp32 fully-connected (LiteRT XNNPACK)",
    "litert-int8": "int8 fully-connected (LiteRT XNNPACK)",
    "onnxruntime-fp32": "fp32 MatMul (ONNX Runtime)",
    "onnxruntime-int8": "int8 MatMulInteger (ONNX Runtime)",
}


def accelerators() -> list[str]:
    """GPUs the kernel driver lists (NVIDIA's /proc entries, then render nodes); empty on a CPU-only machine."""
    gpus = sorted(p.name for p in Path("/proc/driver/nvidia/gpus").glob("*"))
    return [f"nvidia {g}" for g in gpus] or sorted(p.name for p in Path("/dev/dri").glob("renderD*"))


def hardware_header(threads: list[int] | None = None) -> dict:
    """The machine, and with `threads` the compute roofs (GOP/s) measured at each thread count."""
    env = environment_info()
    hw = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "simd": cpu_flags(),
        "accelerators": accelerators(),
        "os": platform.platform(),
        "python": env["python"],
        "versions": env["versions"],
    }
    if threads:
        hw["roofs_gops"] = {roof: {str(t): round(measure_roof(roof, t), 1) for t in threads} for roof in ROOFS}
    return hw


def header_markdown(hw: dict) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in hw["versions"].items())
    text = (
        f"- CPU: {hw['cpu']}, {hw['cores']} cores; SIMD: {' '.join(hw['simd']) or 'unknown'}\n"
        f"- Accelerators: {', '.join(hw.get('accelerators', [])) or 'none (CPU only)'}\n"
        f"- OS: {hw['os']}; Python {hw['python']}\n- Runtimes: {versions}\n"
    )
    for roof, by_threads in hw.get("roofs_gops", {}).items():
        rates = ", ".join(f"{t} thread{'s' if t != '1' else ''}: {g}" for t, g in by_threads.items())
        text += f"- Measured roof, {ROOF_NAMES[roof]}: {rates} GOP/s\n"
    return text


if __name__ == "__main__":
    print(json.dumps(hardware_header([1, os.cpu_count() or 1]), indent=2))
