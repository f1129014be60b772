"""`guitar-distill baseline` (make baseline): the NiN trained from labels alone, the no-KD baseline."""

from __future__ import annotations

from guitar_distill.common.config import training_config
from guitar_distill.common.errors import run_cli
from guitar_distill.common.quiet import quiet_start


def main(argv=None):
    args, cfg = training_config(
        "Train the NiN student from labels alone: the baseline distillation must beat.", "student", argv
    )
    quiet_start()  # parse first: --help and argument errors need no TensorFlow
    from guitar_distill.common.progress import console
    from guitar_distill.common.recipe import compile_recipe
    from guitar_distill.common.stage import open_training_run
    from guitar_distill.student.architectures import build_student, student_name

    run = open_training_run(args.artifacts, args.fresh, cfg, "baseline", keys=("data", "student"), recipe="student")
    scfg = run.recipe
    model = compile_recipe(build_student(scfg, len(run.classes), run.info.image_size), scfg)
    console.print(
        f"student baseline (no distillation): {student_name(scfg)}, {model.count_params():,} parameters, "
        f"{len(run.splits['train'][0])} training photos, backend {run.runtime['backend']}"
    )
    rows = run.fit(model)
    run.finish(model, rows, "nin_student_no_kd", f"{student_name(scfg)} student, labels only ({cfg.name})")


if __name__ == "__main__":
    run_cli(main)
