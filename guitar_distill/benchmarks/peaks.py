"""Compute roofs for the latency table: the best rate a large matrix product reaches here.

Each file is compared with a large matrix product run by its own runtime in its own precision
(LiteRT's XNNPACK fully-connected, ONNX Runtime's MatMul / MatMulInteger): int8 kernels reach
several times the float32 rate, and a runtime's own GEMM can beat numpy's BLAS, so any other roof
reads above 100 %. Keras files are compared with numpy's float32 GEMM.
Each roof is measured in a fresh process with the thread count pinned.

    python -m benchmarks.peaks fp32 1 | litert-fp32 2 | litert-int8 1 | onnxruntime-fp32 1 | ...   -> GOP/s
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from guitar_distill.common.config import PROJECT_ROOT

# (M, K, N) of the matrix products: large enough that the kernel, not the call, sets the rate, and
# shaped like a convolution's im2col GEMM (many rows, few hundred channels); the roof is the best.
SHAPES = ((512, 1024, 1024), (2048, 512, 512), (1024, 576, 192))
ROOFS = ("fp32", "litert-fp32", "litert-int8", "onnxruntime-fp32", "onnxruntime-int8")


def best_rate(run, ops: float, repeats: int = 7) -> float:
    run()
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        best = max(best, ops / (time.perf_counter() - t) / 1e9)
    return best


def numpy_fp32(threads: int) -> float:
    rates = []
    for M, K, N in SHAPES:
        a = np.random.default_rng(0).random((M, K), dtype=np.float32)
        b = np.random.default_rng(1).random((K, N), dtype=np.float32)
        rates.append(best_rate(lambda a=a, b=b: a @ b, 2.0 * M * K * N))
    return max(rates)


def dense_tflite(path: Path, int8: bool, M: int, K: int, N: int) -> Path:
    """A Dense(K -> N) on a batch of M as TFLite: float32, or fully int8-quantised by the converter."""
    import tensorflow as tf

    inputs = tf.keras.Input((K,), batch_size=M)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(N, use_bias=False)(inputs))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        rng = np.random.default_rng(0)
        converter.representative_dataset = lambda: ([rng.standard_normal((M, K), dtype=np.float32)] for _ in range(4))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())
    return path


def litert(threads: int, int8: bool) -> float:
    from guitar_distill.edge.predict import _interpreter_class

    rates = []
    with tempfile.TemporaryDirectory() as tmp:
        build = "; ".join(
            f"f(Path({str(Path(tmp) / f'{i}.tflite')!r}), {int8}, {M}, {K}, {N})" for i, (M, K, N) in enumerate(SHAPES)
        )
        subprocess.run(
            [
                sys.executable,
                "-c",
                f"from guitar_distill.benchmarks.peaks import dense_tflite as f; from pathlib import Path; {build}",
            ],
            check=True,
            capture_output=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
            cwd=PROJECT_ROOT,
        )
        for i, (M, K, N) in enumerate(SHAPES):
            interpreter = _interpreter_class()(model_path=str(Path(tmp) / f"{i}.tflite"), num_threads=threads)
            interpreter.allocate_tensors()
            inp = interpreter.get_input_details()[0]
            rng = np.random.default_rng(0)
            x = (
                rng.integers(-128, 128, (M, K), dtype=np.int8)
                if int8
                else rng.standard_normal((M, K), dtype=np.float32)
            )
            interpreter.set_tensor(inp["index"], x)
            rates.append(best_rate(interpreter.invoke, 2.0 * M * K * N))
    return max(rates)


def onnxruntime(threads: int, int8: bool) -> float:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rates = []
    for M, K, N in SHAPES:
        rng = np.random.default_rng(1)
        if int8:
            node, x_type, y_type = "MatMulInteger", TensorProto.UINT8, TensorProto.INT32
            weights = rng.integers(-128, 128, (K, N), dtype=np.int8)
            x = rng.integers(0, 256, (M, K), dtype=np.uint8)
        else:
            node, x_type, y_type = "MatMul", TensorProto.FLOAT, TensorProto.FLOAT
            weights, x = rng.standard_normal((K, N), dtype=np.float32), rng.standard_normal((M, K), dtype=np.float32)
        graph = helper.make_graph(
            [helper.make_node(node, ["x", "w"], ["y"])],
            "matmul",
            [helper.make_tensor_value_info("x", x_type, [M, K])],
            [helper.make_tensor_value_info("y", y_type, [M, N])],
            initializer=[numpy_helper.from_array(weights, "w")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        rates.append(best_rate(lambda session=session, x=x: session.run(None, {"x": x}), 2.0 * M * K * N))
    return max(rates)


def measure_roof(roof: str, threads: int) -> float:
    """The roof in a fresh process whose BLAS and runtime use `threads` threads."""
    if roof not in ROOFS:
        raise ValueError(f"unknown roof {roof!r} (one of {', '.join(ROOFS)})")
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        **{v: str(threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
    }
    out = subprocess.run(
        [sys.executable, "-m", "guitar_distill.benchmarks.peaks", roof, str(threads)],
        env=env,
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
    )
    if out.returncode != 0:
        raise RuntimeError(f"measuring the {roof} roof failed:\n{out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def roof_for(fmt: str, runtime: str) -> str:
    """Which roof a file is measured against: its own runtime's matrix product in its precision
    (fp16 TFLite files compute in float32 on x86); Keras files against numpy's fp32 GEMM."""
    if runtime not in ("litert-xnnpack", "onnxruntime"):
        return "fp32"
    return f"{'litert' if runtime == 'litert-xnnpack' else 'onnxruntime'}-{'int8' if 'int8' in fmt else 'fp32'}"


if __name__ == "__main__":
    name, n_threads = sys.argv[1], int(sys.argv[2])
    if name == "fp32":
        print(numpy_fp32(n_threads))
    else:
        runtime, precision = name.split("-")
        print({"litert": litert, "onnxruntime": onnxruntime}[runtime](n_threads, precision == "int8"))
