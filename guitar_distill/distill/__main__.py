"""`python -m guitar_distill.distill`: distil the teacher (a ResNet50, or an ensemble) into the student.

Offline (the cpu and demo presets): the teacher's logits for every training batch are computed once
and cached (distill/teacher_logits.py); the student trains from them without the teacher in memory.
Online (the write-up's presets): the teacher runs beside the student on each batch.
"""

from __future__ import annotations

from guitar_distill.common.config import training_config
from guitar_distill.common.errors import run_cli
from guitar_distill.common.quiet import quiet_start


def main(argv=None):
    args, cfg = training_config("Distil the teacher into the student (resumable).", "student", argv)
    quiet_start()  # parse first: --help and argument errors need no TensorFlow
    from guitar_distill.common.artifacts import read_json
    from guitar_distill.common.config import project_relative
    from guitar_distill.common.stage import open_training_run
    from guitar_distill.distill.run import distil
    from guitar_distill.distill.teacher_logits import teacher_file
    from guitar_distill.student.architectures import build_student, student_name

    run = open_training_run(
        args.artifacts, args.fresh, cfg, "distill", keys=("data", "student", "distill"), recipe="student"
    )
    student = build_student(cfg.student, len(run.classes), run.info.image_size)
    baseline_path = args.artifacts / "baseline" / "metrics.json"
    baseline = read_json(baseline_path) if baseline_path.exists() else {}
    teacher = teacher_file(args.artifacts, cfg.distill)
    title = f"{student_name(cfg.student)} student distilled from {project_relative(teacher)} ({cfg.name})"
    distil(run, student, teacher, "nin_student_distilled", title, baseline)


if __name__ == "__main__":
    run_cli(main)
