"""Where a training step's time goes, from TensorFlow's own profiler.

`traced_steps` runs a few `train_on_batch` steps under `tf.profiler.experimental` and `op_profile`
reads the trace back (TensorFlow's XSpace protobuf, no TensorBoard needed): the time of every
TensorFlow op the executor ran, summed by op type and by kind, the backward pass (ops under
`gradient_tape/`) apart from the rest (forward, loss and the optimiser's update). On a
2-core CPU two ops can run at once, so the ops' sum can exceed the steps' wall time.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

# Op type -> kind, first match wins; oneDNN's kernels keep TensorFlow's op names (_MklNativeConv2D...).
OP_KINDS = (
    ("convolution", ("Conv",)),
    ("batch norm", ("FusedBatchNorm",)),
    ("cast", ("Cast",)),
    ("matmul", ("MatMul",)),
    ("pooling", ("Pool",)),
    ("optimizer and variables", ("ResourceApply", "VariableOp", "ReadVariable")),
)


def op_kind(op_type: str) -> str:
    return next((kind for kind, marks in OP_KINDS if any(m in op_type for m in marks)), "element-wise and other")


def traced_steps(model, feed, steps: int, logdir: Path) -> float:
    """Run `steps` training steps under the profiler (after one untraced warm-up); their wall seconds."""
    import tensorflow as tf

    x, y = feed[0]
    model.train_on_batch(x, y)
    batches = [feed[i] for i in range(1, steps + 1)]  # augment before tracing: the step alone
    tf.profiler.experimental.start(str(logdir))
    t = time.perf_counter()
    for x, y in batches:
        model.train_on_batch(x, y)
    wall = time.perf_counter() - t
    tf.profiler.experimental.stop()
    return wall


def op_profile(logdir: Path, steps: int, wall_s: float) -> dict:
    """Per-step op time by kind and by op type (top first) from the newest trace under logdir."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    traces = sorted(Path(logdir).rglob("*.xplane.pb"), key=lambda p: p.stat().st_mtime)
    if not traces:
        raise FileNotFoundError(f"{logdir}: the profiler wrote no *.xplane.pb trace")
    space = xplane_pb2.XSpace()
    space.ParseFromString(traces[-1].read_bytes())
    by_type: dict[tuple[str, str], list] = defaultdict(lambda: [0.0, 0])
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the executor's threads; Eigen's shards are inside their op
                continue
            for event in line.events:
                meta = plane.event_metadata[event.metadata_id]
                if not meta.display_name or ":" not in meta.name:  # op events are "scope/name:Type"
                    continue
                phase = "backward" if meta.name.startswith("gradient_tape/") else "forward+update"
                cell = by_type[(meta.display_name, phase)]
                cell[0] += event.duration_ps / 1e9  # ms
                cell[1] += 1
    total = sum(ms for ms, _ in by_type.values())
    if not total:
        raise ValueError(f"{traces[-1]}: the trace holds no TensorFlow op events")
    kinds: dict[str, dict] = defaultdict(lambda: {"forward+update_ms": 0.0, "backward_ms": 0.0})
    for (op_type, phase), (ms, _) in by_type.items():
        kinds[op_kind(op_type)][f"{phase}_ms"] += ms / steps
    ops = [
        {
            "op": op_type,
            "phase": phase,
            "kind": op_kind(op_type),
            "ms_per_step": ms / steps,
            "calls_per_step": calls / steps,
            "share": ms / total,
        }
        for (op_type, phase), (ms, calls) in by_type.items()
    ]
    return {
        "steps": steps,
        "step_wall_ms": wall_s * 1000 / steps,
        "op_ms_per_step": total / steps,
        "kinds": {
            k: {**v, "share": (v["forward+update_ms"] + v["backward_ms"]) * steps / total}
            for k, v in sorted(kinds.items(), key=lambda kv: -sum(kv[1].values()))
        },
        "ops": sorted(ops, key=lambda o: -o["ms_per_step"]),
    }
