"""`python -m guitar_distill.teacher.ensemble`: one teacher from several classifiers, the mean of their probabilities.

An averaged ensemble teaches better than any of its members (Stanton et al. 2021; MEAL V2, Shen et al. 2020),
and models of different families, a ResNet50 and label-trained NiNs, err on different photos. The ensemble is
an ordinary classifier file: stored outputs, export, benchmarks and the release take it as they take one
network. It takes photos at the largest member's side; a member trained at a smaller side sees them resized,
bilinearly without antialiasing: TFLite has no antialiased resize (TensorFlow's ScaleAndTranslate), and the
teacher is released and benchmarked as TFLite. The record's `members_at_own_sides` scores what that costs.

    python -m guitar_distill.teacher.ensemble --preset patient --artifacts artifacts/patient \\
        --members artifacts/patient/fixres/model.keras artifacts/patient/baseline/model.keras --out DIR

writes DIR as a teacher stage's folder (model.keras, labels.txt, metrics.json with every member's run and top-1
on each split, the ensemble's, and the ensemble's with each member on photos decoded at its own side), with the
ResNet50 member's run records (config, history, curves) when it has one: the release's teacher is then this file,
and later teacher runs start from its ResNet50 member (`--weights`).

With --flip each member also answers the mirror image (test-time flip averaging), inside the file: stored outputs,
exports and benchmarks then see the averaged answers (and pay two passes).
"""

from __future__ import annotations

import sys
from pathlib import Path

import keras

from guitar_distill.common.artifacts import copy_run_records, read_json, write_json, write_labels
from guitar_distill.common.config import project_relative, resolve_config, resolve_project_path, stage_parser
from guitar_distill.common.errors import ToolkitError, run_cli
from guitar_distill.common.layers import HorizontalFlip, LogProbability
from guitar_distill.common.layout import TEACHER_MODEL
from guitar_distill.common.quiet import quiet_start


def build_ensemble(members: list[keras.Model], flip: bool = False, name: str = "ensemble_teacher") -> keras.Model:
    """The mean of `members`' probabilities as one classifier taking the largest member's side; a member taking
    a smaller side sees the photo resized to it. With `flip`, each member answers the photo and its mirror image
    (test-time flip averaging, inside the file). It ends in a softmax of the mean's logarithm (the mean itself),
    so that its logits are the log-probabilities, as for any teacher."""
    sides = [m.input_shape[1] for m in members]
    if len(members) * (2 if flip else 1) < 2:
        raise ValueError(f"an ensemble needs two members or more (or one, flip-averaged), not {len(members)}")
    if len({m.output_shape[-1] for m in members}) != 1:
        raise ValueError(f"the members answer different numbers of classes: {[m.output_shape[-1] for m in members]}")
    side = max((s for s in sides if s), default=None)
    inputs = keras.Input((side, side, 3), name="image")
    views = [inputs, HorizontalFlip(name="mirror")(inputs)] if flip else [inputs]
    answers = []
    for k, (member, own) in enumerate(zip(members, sides)):
        member.name = f"member_{k}_{member.name}"
        resize = (
            keras.layers.Resizing(own, own, interpolation="bilinear", name=f"to_{own}px_{k}")
            if own and own != side
            else (lambda x: x)
        )
        answers += [member(resize(x)) for x in views]
    mean = keras.layers.Average(name="mean_probability")(answers)
    log_mean = LogProbability(name="log_mean", dtype="float32")(mean)
    return keras.Model(inputs, keras.layers.Softmax(name="probabilities", dtype="float32")(log_mean), name=name)


def parse_args(argv=None):
    parser = stage_parser("One teacher from several classifiers: the mean of their probabilities.", "stretch")
    parser.add_argument("--members", nargs="+", type=Path, required=True, help="two or more classifier .keras files")
    parser.add_argument("--out", type=Path, required=True, help="the ensemble's folder (a teacher stage's layout)")
    parser.add_argument(
        "--flip", action="store_true", help="each member also answers the mirror image (test-time flip averaging)"
    )
    return parser.parse_args(argv)


def shown(scores: dict) -> str:
    return ", ".join(f"{k.removesuffix('_accuracy')} {v:.3f}" for k, v in scores.items() if k.endswith("_accuracy"))


# What an ensemble's record keeps of each member's run (from the member folder's metrics.json): the release's
# model card describes the teacher from them.
MEMBER_RUN = ("model", "preset", "epochs_run", "best_epoch", "train_seconds", "started_from", "fixres")


def member_run(path: Path) -> dict:
    beside = path.with_name("metrics.json")
    metrics = read_json(beside) if beside.exists() else {}
    return {k: metrics[k] for k in MEMBER_RUN if k in metrics}


def load_members(paths: list[Path], info, flip: bool) -> tuple[list, list[dict], list[dict]]:
    """(members as float32 Keras models, their records, their probabilities per split at their own sides, each
    flip-averaged with `flip`)."""
    from guitar_distill.common.models import check_classifier, float32_copy, load_model_file
    from guitar_distill.common.progress import console
    from guitar_distill.common.runtimes import predict_all, split_accuracies, split_probabilities
    from guitar_distill.teacher.fixres import predict_flip_averaged

    members, rows, answers = [], [], []
    for path in (resolve_project_path(str(p)) for p in paths):
        if not path.is_file():
            raise ToolkitError(f"ensemble member not found: {path}")
        member = check_classifier(float32_copy(load_model_file(path)), str(path), len(info.classes))
        predict = predict_flip_averaged if flip else predict_all
        answers.append(split_probabilities(member, info, member.input_shape[1], predict))
        scored = split_accuracies(answers[-1], info)
        rows.append({"file": project_relative(path), "image_size": member.input_shape[1], **member_run(path), **scored})
        console.print(f"member {path}: {shown(rows[-1])}")
        members.append(member)
    return members, rows, answers


def main(argv=None):
    args = parse_args(argv)
    cfg = resolve_config(args)
    quiet_start()  # after parsing: --help and argument errors need no TensorFlow
    from guitar_distill.common.manifest import load_data_info
    from guitar_distill.common.models import save_model
    from guitar_distill.common.progress import console
    from guitar_distill.common.runtimes import split_accuracies, split_probabilities

    info = load_data_info(args.artifacts)
    members, rows, answers = load_members(args.members, info, args.flip)
    try:
        ensemble = build_ensemble(members, flip=args.flip)
    except ValueError as e:
        raise ToolkitError(f"--members: {e}") from None
    side = ensemble.input_shape[1] or info.image_size
    scored = split_accuracies(split_probabilities(ensemble, info, side), info)
    # The same mean with every member on photos decoded at its own side: what resizing inside the ensemble costs.
    own_sides = split_accuracies({s: sum(a[s] for a in answers) / len(answers) for s in answers[0]}, info)
    args.out.mkdir(parents=True, exist_ok=True)
    save_model(ensemble, args.out / "model.keras")
    write_labels(args.out, info.classes)
    resnet = next((row for row in rows if row.get("model") == TEACHER_MODEL), None)
    if resnet:  # how the ResNet50 member was trained goes with it, as a FixRes copy's does
        copy_run_records(resolve_project_path(resnet["file"]).parent, args.out)
    metrics = {
        "model": ensemble.name,
        "preset": cfg.name,
        "parameters": ensemble.count_params(),
        "image_size": side,
        "flip_averaged": args.flip,
        **scored,
        "members": rows,
        "members_at_own_sides": own_sides,
        "command": "python -m guitar_distill.teacher.ensemble " + " ".join(sys.argv[1:]),
    }
    write_json(args.out / "metrics.json", metrics)
    flipped = ", flip-averaged" if args.flip else ""
    console.print(
        f"ensemble of {len(members)} at {side}px{flipped}: {shown(scored)}; "
        f"members at their own sides: {shown(own_sides)}"
    )
    console.print(f"files: {args.out}/model.keras, labels.txt, metrics.json")


if __name__ == "__main__":
    run_cli(main)
