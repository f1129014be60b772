"""`python -m distill`: distil the teacher in artifacts/teacher into the NiN student (nin_from_resnet50)."""
from __future__ import annotations

import numpy as np

from common.artifacts import read_json
from common.config import training_config
from common.models import load_stage_model
from common.progress import console
from common.stage import finish_training, prepare_run_dir
from common.training import configure_runtime, fit_recipe, predict_probabilities, recipe_optimizer
from dataset.cache import load_split
from dataset.manifest import load_data_info
from distill.distiller import Distiller
from student.model import build_nin_student


def main(argv=None):
    args, cfg = training_config("Distil the ResNet50 teacher into the NiN student (resumable).", "student", argv)
    scfg, dcfg = cfg["student"], cfg["distill"]
    out = prepare_run_dir(args.artifacts, "distill", cfg, args.fresh, keys=("data", "student", "distill"))
    info = load_data_info(args.artifacts)
    runtime = configure_runtime(scfg)
    teacher = load_stage_model(args.artifacts, "teacher", "make teacher  (python -m teacher)")
    splits = {s: load_split(info, s) for s in ("train", "val", "test") if info.split_rows(s)}
    student = build_nin_student(len(info.classes), info.image_size, tuple(scfg["widths"]), float(scfg["dropout"]))
    distiller = Distiller(student, teacher, float(dcfg["temperature"]), float(dcfg["hard_weight"]),
                          float(dcfg["soft_weight"]), name="nin_from_resnet50")
    distiller.compile(optimizer=recipe_optimizer(scfg), metrics=["accuracy"])
    distiller.build((None, info.image_size, info.image_size, 3))
    console.print(f"distilling ResNet50 ({teacher.count_params():,} parameters) into NiN {scfg['widths']} "
                  f"({student.count_params():,}), T={dcfg['temperature']}, hard {dcfg['hard_weight']}, "
                  f"soft {dcfg['soft_weight']}, backend {runtime['backend']}")
    rows = fit_recipe(distiller, splits["train"], splits["val"], scfg, out, weights_of=student)

    teacher_probs = {s: predict_probabilities(teacher, x) for s, (x, _) in splits.items()}
    baseline_path = args.artifacts / "student" / "metrics.json"
    baseline = read_json(baseline_path) if baseline_path.exists() else {}

    def comparisons(probs):
        extra = {f"{s}_agreement_with_teacher": float(np.mean(probs[s].argmax(1) == teacher_probs[s].argmax(1)))
                 for s in probs}
        extra.update({f"teacher_{s}_accuracy": float(np.mean(teacher_probs[s].argmax(1) == y))
                      for s, (_, y) in splits.items()})
        extra.update({f"no_kd_{k}": v for k, v in baseline.items() if k.endswith("_accuracy")})
        extra["temperature"], extra["hard_weight"], extra["soft_weight"] = (
            dcfg["temperature"], dcfg["hard_weight"], dcfg["soft_weight"])
        return extra

    metrics = finish_training(student, rows, splits, out, cfg, "nin_from_resnet50",
                              f"NiN student distilled from ResNet50 ({cfg['name']})", runtime,
                              extra=comparisons, classes=info.classes)
    split = "test" if "test_accuracy" in metrics else "val"
    line = (f"{split}: student {metrics[f'{split}_accuracy']:.3f}, teacher {metrics[f'teacher_{split}_accuracy']:.3f}, "
            f"agreement {metrics[f'{split}_agreement_with_teacher']:.3f}")
    if f"no_kd_{split}_accuracy" in metrics:
        line += f", no-KD baseline {metrics[f'no_kd_{split}_accuracy']:.3f}"
    console.print(line)


if __name__ == "__main__":
    main()
