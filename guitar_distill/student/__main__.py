"""`python -m student`: the NiN trained from labels alone, the no-distillation baseline (artifacts/baseline/)."""
from __future__ import annotations

import time

from guitar_distill.common.config import training_config
from guitar_distill.common.quiet import quiet_start
from guitar_distill.common.errors import run_cli


def main(argv=None):
    args, cfg = training_config("Train the NiN student from labels alone: the baseline distillation must beat.", "student", argv)
    quiet_start()  # parse first: --help and argument errors need no TensorFlow
    from guitar_distill.common.progress import console
    from guitar_distill.common.stage import finish_training, prepare_run_dir
    from guitar_distill.common.training import configure_runtime, fit_recipe, recipe_loss, recipe_optimizer
    from guitar_distill.dataset.cache import load_splits
    from guitar_distill.dataset.manifest import load_data_info
    from guitar_distill.student.model import build_nin_student

    start = time.perf_counter()
    scfg = cfg["student"]
    out = prepare_run_dir(args.artifacts, "baseline", cfg, args.fresh, keys=("data", "student"))
    info = load_data_info(args.artifacts)
    runtime = configure_runtime(scfg)
    splits = load_splits(info)
    model = build_nin_student(len(info.classes), info.image_size, tuple(scfg["widths"]), float(scfg["dropout"]))
    model.compile(optimizer=recipe_optimizer(scfg), loss=recipe_loss(scfg), metrics=["accuracy"])
    console.print(f"student baseline (no distillation): NiN {scfg['widths']}, {model.count_params():,} parameters, "
                  f"{len(splits['train'][0])} training photos, backend {runtime['backend']}")
    rows = fit_recipe(model, splits["train"], splits["val"], scfg, out)
    finish_training(model, rows, splits, out, cfg, "nin_student_no_kd", f"NiN student, labels only ({cfg['name']})",
                    runtime, classes=info.classes)
    console.print(f"baseline wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    run_cli(main)
