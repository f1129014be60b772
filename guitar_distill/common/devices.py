"""Where and in what precision a stage trains: the dtype policy, the seed and data parallelism."""

from __future__ import annotations

from pathlib import Path

import keras

from guitar_distill.common.config import Recipe
from guitar_distill.common.errors import ToolkitError


def cpu_has_bfloat16() -> bool:
    """AVX512-BF16 or AMX: the CPU multiplies bfloat16 natively (elsewhere it is emulated and slow)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def precision_policy(setting, accelerators: bool) -> tuple[str, str]:
    """The Keras dtype policy for a preset's `mixed_precision` (false, true/"float16", "bfloat16"),
    and why: bfloat16 falls back to float32 on a CPU without native bfloat16 arithmetic."""
    if setting in (False, None, "", "false", "float32"):
        return "float32", "as the preset asks"
    if setting in (True, "float16"):
        return "mixed_float16", "as the preset asks"
    if setting == "bfloat16":
        if accelerators or cpu_has_bfloat16():
            return "mixed_bfloat16", "native bfloat16 on this machine"
        return "float32", "bfloat16 asked for, but this CPU has no AVX512-BF16/AMX: float32 instead"
    raise ToolkitError(f'mixed_precision {setting!r}: use false, "float16" or "bfloat16"')


def configure_runtime(recipe: Recipe) -> dict:
    """Precision policy and data parallelism; call before building the model."""
    backend = keras.backend.backend()
    keras.utils.set_random_seed(recipe.seed)
    devices = keras.distribution.list_devices() if backend == "jax" else []
    accelerators = any("cpu" not in str(d).lower() for d in devices)
    if backend == "tensorflow":
        import tensorflow as tf

        accelerators = bool(tf.config.list_physical_devices("GPU"))
    policy, why = precision_policy(recipe.mixed_precision, accelerators)
    keras.mixed_precision.set_global_policy(policy)
    if policy != "float32" or recipe.mixed_precision:
        print(f"precision: {policy} ({why})")
    info = {
        "backend": backend,
        "mixed_precision": policy != "float32",
        "dtype_policy": policy,
        "devices": [str(d) for d in devices] or ["cpu"],
    }
    if len(devices) > 1:
        if recipe.batch_size % len(devices):
            raise ToolkitError(f"batch_size {recipe.batch_size} is not divisible by the {len(devices)} devices")
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    return info
