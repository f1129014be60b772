"""Distillation around a training run: the teacher's outputs (stored or online), the distiller, the fit and the
record. The distill stage, the student-size benchmark and `gd.distill` all distil through `distil`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from guitar_distill.common.config import Distill, Student
from guitar_distill.common.errors import ToolkitError
from guitar_distill.common.progress import console

# A teacher less than this far above the no-KD baseline on validation has little to teach (Yuan et al. 2020: then
# distillation gives at most what label smoothing gives).
MIN_TEACHER_LEAD = 0.03


def teacher_against_baseline(teacher_val: float, baseline: dict | None) -> tuple[str, bool]:
    """The line that puts the teacher's validation top-1 beside the no-KD baseline's, and whether it warns.
    `baseline` None: a run with no baseline stage (gd.distill); {}: the stage's baseline not yet run."""
    if baseline is None:
        return f"teacher val {teacher_val:.3f}", False
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


def teacher_outputs(
    info, splits: dict, teacher_path, scfg: Student, dcfg: Distill, teacher_model=None
) -> TeacherOutputs:
    """The teacher's outputs the student learns from; online, `teacher_model` (already loaded) or the file's."""
    from guitar_distill.common.models import load_model_file
    from guitar_distill.common.runtimes import predict_all
    from guitar_distill.distill.teacher_logits import log_probabilities, stored_stream

    if dcfg.teacher_logits == "online":
        if scfg.corrupt and dcfg.teacher_sees == "clean":
            raise ToolkitError(
                "student.corrupt with distill.teacher_sees = 'clean' needs stored teacher outputs "
                "(distill.teacher_logits = 'offline'): online, the teacher sees the crop the student sees; "
                "or set distill.teacher_sees = 'corrupted'"
            )
        teacher = teacher_model if teacher_model is not None else load_model_file(teacher_path)
        logits = {s: log_probabilities(predict_all(teacher, x)) for s, (x, _) in splits.items()}
        return TeacherOutputs(logits, teacher=teacher, source=f"{teacher.count_params():,} parameters, online")
    stored, period = stored_stream(info, splits, teacher_path, scfg, dcfg)
    stored_epochs = period // scfg.steps_per_epoch if period else scfg.max_epochs
    replayed = f"; {stored_epochs} epochs of the stream, replayed" if period else ""
    return TeacherOutputs(
        stored.splits, stored, period, stored_epochs, source=f"stored logits ({stored.folder}{replayed})"
    )


def comparisons(
    outputs: TeacherOutputs, splits: dict, baseline: dict, dcfg: Distill, teacher_path
) -> Callable[[dict], dict]:
    """The distillation's extra metrics, from the student's probabilities on each split."""
    teacher_top1 = {s: np.argmax(v, axis=1) for s, v in outputs.splits.items()}

    def extra(probs):
        out = {f"{s}_agreement_with_teacher": float(np.mean(probs[s].argmax(1) == teacher_top1[s])) for s in probs}
        out.update({f"teacher_{s}_accuracy": float(np.mean(teacher_top1[s] == y)) for s, (_, y) in splits.items()})
        out.update({f"no_kd_{k}": v for k, v in baseline.items() if k.endswith("_accuracy")})
        out.update(
            temperature=dcfg.temperature,
            hard_weight=dcfg.hard_weight,
            soft_weight=dcfg.soft_weight,
            teacher_logits=dcfg.teacher_logits,
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


def distil(run, student, teacher_path, name: str, title: str, baseline: dict | None = None, teacher_model=None) -> dict:
    """Distil the teacher at `teacher_path` (online: `teacher_model`, when it is already loaded) into `student`
    on `run` (common/stage.TrainingRun) with the run's `distill` table; returns the run's metrics, the student
    holding its best weights."""
    from guitar_distill.distill.distiller import compiled_distiller

    dcfg, scfg, splits = run.cfg.distill, run.recipe, run.splits
    outputs = teacher_outputs(run.info, splits, teacher_path, scfg, dcfg, teacher_model)
    teacher_val = float(np.mean(np.argmax(outputs.splits["val"], axis=1) == splits["val"][1]))
    console.print(teacher_against_baseline(teacher_val, baseline)[0])
    distiller = compiled_distiller(student, outputs.teacher, dcfg, scfg, run.info.image_size)
    console.print(
        f"distilling {teacher_path} ({outputs.source}) into {student.name} ({student.count_params():,} parameters), "
        f"T={dcfg.temperature}, hard {dcfg.hard_weight}, soft {dcfg.soft_weight}, backend {run.runtime['backend']}"
    )
    val = splits["val"] if outputs.stored is None else (splits["val"][0], (splits["val"][1], outputs.splits["val"]))
    stream = outputs.stored.stream if outputs.stored is not None else None
    rows = run.fit(distiller, val, weights_of=student, batch_targets=stream, stream_period=outputs.period)
    extra = comparisons(outputs, splits, baseline or {}, dcfg, teacher_path)
    metrics = run.finish(student, rows, name, title, extra=extra)
    console.print(summary_line(metrics))
    return metrics
