"""`python -m teacher`: fine-tune ResNet50 on the manifest's split with the write-up's recipe."""

from __future__ import annotations

from guitar_distill.common.config import Teacher, replace_field, resolve_project_path, training_config
from guitar_distill.common.errors import ToolkitError, run_cli
from guitar_distill.common.layout import TEACHER_MODEL
from guitar_distill.common.quiet import quiet_start


def main(argv=None):
    def weights_flag(parser):
        parser.add_argument(
            "--weights",
            help='"imagenet", "none", a local no-top ResNet50 weights file, or a '
            "teacher .keras file to start from (models/teacher/keras_fp16/model.keras)",
        )

    args, cfg = training_config(
        "Fine-tune the ResNet50 teacher with the write-up's recipe (resumable).", "teacher", argv, weights_flag
    )
    quiet_start()  # parse first: --help and argument errors need no TensorFlow
    from guitar_distill.common.augment import training_phases
    from guitar_distill.common.cache import load_split
    from guitar_distill.common.progress import console
    from guitar_distill.common.recipe import compile_recipe
    from guitar_distill.common.stage import open_training_run
    from guitar_distill.teacher.fixres import at_resolution

    if args.weights:
        cfg = replace_field(cfg, "teacher.weights", args.weights)
    run = open_training_run(args.artifacts, args.fresh, cfg, "teacher", keys=("data", "teacher"), recipe="teacher")
    tcfg = run.recipe
    phases = training_phases(tcfg)
    if phases:  # crops of every phase's side from photos at the last, largest side, where it is validated and kept
        run.splits = {s: load_split(run.info, s, phases.last) for s in run.splits}
    model, started_from = teacher_to_train(tcfg, len(run.classes), None if phases else run.info.image_size)
    compile_recipe(model, tcfg)
    console.print(
        f"teacher: ResNet50 ({tcfg.head} head) from {tcfg.weights}, {model.count_params():,} parameters, "
        f"{tcfg.optimizer} {tcfg.schedule} lr {tcfg.learning_rate}, "
        f"{len(run.splits['train'][0])} training photos at {sides(phases) if phases else run.info.image_size}px, "
        f"{tcfg.augmentation} augmentation, "
        f"backend {run.runtime['backend']}"
    )
    rows = run.fit(model)
    if phases:
        model = at_resolution(model, phases.last)
    run.finish(
        model,
        rows,
        TEACHER_MODEL,
        f"ResNet50 teacher ({cfg.name} preset)",
        extra={"weights": tcfg.weights, **({"started_from": started_from} if started_from else {})},
    )


def teacher_to_train(tcfg: Teacher, num_classes: int, side: int | None):
    """(the ResNet50 to train, where it started from): from scratch, ImageNet or a weights file, or a saved
    teacher of this project (a resumed run then restores its own weights over these, from backup/)."""
    from guitar_distill.teacher.model import build_teacher
    from guitar_distill.teacher.warm_start import is_teacher_file, start_from_teacher

    warm = is_teacher_file(tcfg.weights)
    weights = None if warm else tcfg.weights
    model = build_teacher(
        num_classes, side, weights, zero_init_residual=tcfg.zero_init_residual and not warm, head=tcfg.head
    )
    if not warm:
        return model, {}
    try:
        return model, start_from_teacher(model, resolve_project_path(tcfg.weights))
    except (FileNotFoundError, ValueError) as e:
        raise ToolkitError(str(e)) from None


def sides(phases) -> str:
    return " -> ".join(f"{c.size} (from epoch {e})" for e, c in zip(phases.starts, phases.crops))


if __name__ == "__main__":
    run_cli(main)
