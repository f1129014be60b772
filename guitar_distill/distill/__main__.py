"""`python -m guitar_distill.distill`: distil the ResNet50 teacher into the NiN student (nin_from_resnet50).

Offline (the cpu and demo presets): the teacher's logits for every training batch are computed once
and cached (distill/teacher_logits.py); the student trains from them without the teacher in memory.
Online (the write-up's presets): the teacher runs beside the student on each batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from guitar_distill.common.config import training_config
from guitar_distill.common.errors import ToolkitError, run_cli
from guitar_distill.common.quiet import quiet_start

# A teacher less than this far above the no-KD baseline on validation has little to teach (Yuan et al. 2020: then
# distillation gives at most what label smoothing gives).
MIN_TEACHER_LEAD = 0.03


def teacher_against_baseline(teacher_val: float, baseline: dict) -> tuple[str, bool]:
    """The line that puts the teacher's validation top-1 beside the no-KD baseline's, and whether it warns."""
    if "val_accuracy" not in baseline:
        return f"teacher val {teacher_val:.3f}; no baseline run yet to compare (make baseline)", False
    lead = teacher_val - baseline["val_accuracy"]
    line = f"teacher val {teacher_val:.3f} against the no-KD baseline's {baseline['val_accuracy']:.3f} ({lead:+.3f})"
    if lead >= MIN_TEACHER_LEAD:
        return line, False
    return (
        f"WARNING: {line}: a teacher less than {MIN_TEACHER_LEAD:.2f} above the student trained from labels alone "
        f"has little to teach, and distillation cannot be expected to pay; train a better teacher first "
        f"(reports/teacher_recipe.md)",
        True,
    )


@dataclass
class TeacherOutputs:
    """What the student learns from: the teacher's log-probabilities per split, and for offline runs the
    stored stream of the training crops (and its replay period)."""

    splits: dict
    stored: object = None  # teacher_logits.TeacherLogits, offline only
    period: int | None = None
    stored_epochs: int | None = None
    teacher: object = None  # the Keras teacher, online only
    source: str = ""


def teacher_outputs(mode: str, info, splits: dict, teacher_path, scfg: dict, dcfg: dict) -> TeacherOutputs:
    from guitar_distill.common.models import load_model_file
    from guitar_distill.common.runtimes import predict_all
    from guitar_distill.distill.teacher_logits import log_probabilities, stored_stream

    if mode == "online":
        teacher = load_model_file(teacher_path)
        logits = {s: log_probabilities(predict_all(teacher, x)) for s, (x, _) in splits.items()}
        return TeacherOutputs(logits, teacher=teacher, source=f"{teacher.count_params():,} parameters, online")
    stored, period = stored_stream(info, splits, teacher_path, scfg, dcfg)
    stored_epochs = period // int(scfg["steps_per_epoch"]) if period else int(scfg["max_epochs"])
    replayed = f"; {stored_epochs} epochs of the stream, replayed" if period else ""
    return TeacherOutputs(
        stored.splits, stored, period, stored_epochs, source=f"stored logits ({stored.folder}{replayed})"
    )


def comparisons(
    outputs: TeacherOutputs, splits: dict, baseline: dict, dcfg: dict, teacher_path
) -> Callable[[dict], dict]:
    """The distillation's extra metrics, from the student's probabilities on each split."""
    teacher_top1 = {s: np.argmax(v, axis=1) for s, v in outputs.splits.items()}

    def extra(probs):
        out = {f"{s}_agreement_with_teacher": float(np.mean(probs[s].argmax(1) == teacher_top1[s])) for s in probs}
        out.update({f"teacher_{s}_accuracy": float(np.mean(teacher_top1[s] == y)) for s, (_, y) in splits.items()})
        out.update({f"no_kd_{k}": v for k, v in baseline.items() if k.endswith("_accuracy")})
        out.update(
            temperature=dcfg["temperature"],
            hard_weight=dcfg["hard_weight"],
            soft_weight=dcfg["soft_weight"],
            teacher_logits=dcfg["teacher_logits"],
            teacher_file=str(teacher_path),
            stored_epochs=outputs.stored_epochs,
        )
        return out

    return extra


def summary_line(metrics: dict) -> str:
    split = "test" if "test_accuracy" in metrics else "val"
    line = (
        f"{split}: student {metrics[f'{split}_accuracy']:.3f}, teacher {metrics[f'teacher_{split}_accuracy']:.3f}, "
        f"agreement {metrics[f'{split}_agreement_with_teacher']:.3f}"
    )
    if f"no_kd_{split}_accuracy" in metrics:
        line += f", no-KD baseline {metrics[f'no_kd_{split}_accuracy']:.3f}"
    return line


def main(argv=None):
    args, cfg = training_config("Distil the ResNet50 teacher into the NiN student (resumable).", "student", argv)
    quiet_start()  # parse first: --help and argument errors need no TensorFlow
    from guitar_distill.common.artifacts import read_json
    from guitar_distill.common.progress import console
    from guitar_distill.common.stage import open_training_run
    from guitar_distill.distill.distiller import compiled_distiller
    from guitar_distill.distill.teacher_logits import teacher_file
    from guitar_distill.student.model import build_nin_student

    scfg, dcfg = cfg["student"], cfg["distill"]
    mode = dcfg["teacher_logits"]
    if mode not in ("online", "offline"):
        raise ToolkitError(f'distill.teacher_logits = {mode!r}: use "online" or "offline"')
    run = open_training_run(args, cfg, "distill", keys=("data", "student", "distill"), recipe="student")
    info, splits = run.info, run.splits
    student = build_nin_student(len(info.classes), info.image_size, tuple(scfg["widths"]), float(scfg["dropout"]))
    teacher_path = teacher_file(args.artifacts, dcfg)
    outputs = teacher_outputs(mode, info, splits, teacher_path, scfg, dcfg)
    baseline_path = args.artifacts / "baseline" / "metrics.json"
    baseline = read_json(baseline_path) if baseline_path.exists() else {}
    teacher_val = float(np.mean(np.argmax(outputs.splits["val"], axis=1) == splits["val"][1]))
    console.print(teacher_against_baseline(teacher_val, baseline)[0])
    distiller = compiled_distiller(student, outputs.teacher, dcfg, scfg, info.image_size)
    console.print(
        f"distilling ResNet50 ({teacher_path}; {outputs.source}) into NiN {scfg['widths']} "
        f"({student.count_params():,} parameters), T={dcfg['temperature']}, hard {dcfg['hard_weight']}, "
        f"soft {dcfg['soft_weight']}, backend {run.runtime['backend']}"
    )
    val = splits["val"] if outputs.stored is None else (splits["val"][0], (splits["val"][1], outputs.splits["val"]))
    stream = outputs.stored.stream if outputs.stored is not None else None
    rows = run.fit(distiller, val, weights_of=student, batch_targets=stream, stream_period=outputs.period)
    title = f"NiN student distilled from ResNet50 ({cfg['name']})"
    extra = comparisons(outputs, splits, baseline, dcfg, teacher_path)
    metrics = run.finish(student, rows, "nin_from_resnet50", title, extra=extra)
    console.print(summary_line(metrics))


if __name__ == "__main__":
    run_cli(main)
