"""Quiet start-up: TensorFlow's start-up lines are noise to a user, and one looks like a failure.

TensorFlow writes some lines from C++ before its logging is configured ("All log messages before
absl::InitializeLog() ...", oneDNN and CUDA-stub notices), which TF_CPP_MIN_LOG_LEVEL does not
reach, and later a `failed call to cuInit ... CUDA error` on every machine without a GPU.
`quiet_start()` sets TF_CPP_MIN_LOG_LEVEL=3 unless the user chose a level, and imports Keras (and
its TensorFlow backend) with the process's stderr captured, passing on every line that is not one
of the known notices. GUITAR_VERBOSE=1 shows everything.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

STARTUP_NOTICES = (
    "All log messages before absl::InitializeLog",
    "port.cc:",
    "cudart_stub.cc:",
    "cpu_feature_guard.cc:",
    "To enable the following instructions",
    "cuda_platform.cc:",
    "cuda_executor.cc:",
    "gpu_device.cc:",
)


@contextlib.contextmanager
def filtered_native_stderr(notices=STARTUP_NOTICES):
    """Capture file descriptor 2 (C++ writes there directly), then replay all but the notices."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not any(n in line for n in notices):
                    sys.stderr.write(line)


def quiet_start() -> None:
    """Import Keras and its backend without the start-up notices (once per process)."""
    if os.environ.get("GUITAR_VERBOSE") or "keras" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with filtered_native_stderr():
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.list_physical_devices()  # where the cuInit line is written
