"""`python -m guitar_distill.export`: teacher and student to ONNX and TFLite, each file checked against Keras."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from guitar_distill.common.artifacts import (
    read_json,
    require,
    stage_dir,
    write_bytes,
    write_json,
    write_text,
)
from guitar_distill.common.config import Preset, as_dict, read_config, resolve_config, stage_parser
from guitar_distill.common.errors import run_cli
from guitar_distill.common.layout import MODEL_STAGES, STAGE_COMMANDS, model_path
from guitar_distill.common.quiet import quiet_start
from guitar_distill.common.resume import check_upstream
from guitar_distill.export.files import POST_TRAINING, convert_model, describe_and_measure, gate_all


def web_format(results: dict, min_agreement: float) -> str:
    """The web page's ONNX file: int8 (several times faster in the browser's wasm) when it agrees with the Keras
    student on at least `min_agreement` of validation, else float32."""
    int8 = results.get(("student", "onnx_int8"), {})
    return "onnx_int8" if int8.get("agreement", 0.0) >= min_agreement else "onnx_fp32"


def bundle_choice(candidates: dict[str, dict], min_agreement: float) -> str:
    """The int8 file the edge bundle ships: of those agreeing with the Keras model on at least
    `min_agreement` of validation photos, the most accurate (post-training int8 on a tie); if none
    agrees that often, the one that agrees most, with a warning."""
    from guitar_distill.common.progress import console

    agreeing = {f: r for f, r in candidates.items() if r["agreement"] >= min_agreement}
    if agreeing:
        return max(agreeing, key=lambda f: (agreeing[f]["accuracy"], f == "tflite_int8"))
    fmt = max(candidates, key=lambda f: candidates[f]["agreement"])
    console.print(
        f"warning: no int8 student agrees with its Keras model on {min_agreement:.0%} of validation "
        f"photos; the bundle ships {fmt} ({candidates[fmt]['agreement']:.1%}), the closest"
    )
    return fmt


def distill_config(artifacts: Path) -> Preset:
    """The config the distilled student was trained with (artifacts/distill/config.json)."""
    return read_config(
        require(Path(artifacts) / "distill" / "config.json", "the distill run's config", STAGE_COMMANDS["distill"])
    )


def student_qat(model, artifacts: Path, cfg: Preset, info, train_x) -> Path:
    """The quantisation-aware int8 student, trained against the teacher's soft targets: the distill
    stage's stored answers when it ran offline, else its teacher file's, in that file's runtime."""
    from guitar_distill.common.progress import console
    from guitar_distill.common.runtimes import open_classifier, predict_all
    from guitar_distill.distill.teacher_logits import stored_split_probabilities, teacher_file
    from guitar_distill.export.qat import qat_tflite

    console.print("[student] quantisation-aware training against the teacher's soft targets")
    soft = stored_split_probabilities(info, "train")
    if soft is None or len(soft) != len(train_x):
        soft = predict_all(open_classifier(teacher_file(artifacts, cfg.distill)), train_x, 64)
    # The QAT twin follows the distill run's own student table, whatever the current preset says.
    return write_bytes(
        model_path(artifacts, "student", "tflite_qat_int8"),
        qat_tflite(
            model,
            distill_config(artifacts).student,
            np.asarray(train_x),
            soft,
            cfg.export,
            cfg.data.seed,
        ),
    )


def student_bundle(results: dict, files: dict, artifacts: Path, cfg: Preset, info, val) -> Path:
    """The edge bundle: the int8 file bundle_choice picks, the float32 one, the label check's threshold."""
    from guitar_distill.common.progress import console
    from guitar_distill.export.bundle import edge_bundle, stage_text
    from guitar_distill.student.architectures import student_name

    ecfg = cfg.export
    candidates = {f: results[("student", f)] for f in ("tflite_qat_int8", "tflite_int8") if ("student", f) in results}
    best_fmt = bundle_choice(candidates, ecfg.bundle_min_agreement)
    chosen, fp32 = files[("student", best_fmt)], files[("student", "tflite_fp32")]
    meta = {**read_json(chosen.with_name("model.json")), "validation": results[("student", best_fmt)]}
    text = stage_text(info.source, student_name(distill_config(artifacts).student))
    bundle = edge_bundle(
        stage_dir(artifacts, "edge") / "guitar-student",
        chosen,
        meta,
        info,
        val,
        ecfg,
        cfg.data.seed,
        text,
        onnx_file=files[("student", web_format(results, ecfg.bundle_min_agreement))],
        fp32_file=fp32,
        fp32_json={**read_json(fp32.with_name("model.json")), "validation": results[("student", "tflite_fp32")]},
    )
    check = read_json(bundle / "model.json")["label_check"]
    console.print(
        f"edge bundle ({best_fmt}): {bundle} and {bundle}.tar.gz; its label check flags p(claimed) < "
        f"{check['threshold']:.3g}: precision {check['precision']:.2f}, recall {check['recall']:.2f} "
        f"on validation with {check['flipped']} of {check['photos']} labels flipped"
    )
    return bundle


def main(argv=None):
    parser = stage_parser("Export teacher and student to ONNX and TFLite (fp32, fp16, int8) with a parity gate.")
    parser.add_argument("--models", nargs="+", default=list(MODEL_STAGES), choices=list(MODEL_STAGES))
    args = parser.parse_args(argv)
    cfg = resolve_config(args)
    quiet_start()  # after parsing: --help and argument errors need no TensorFlow
    from guitar_distill.common.cache import load_split
    from guitar_distill.common.manifest import load_data_info
    from guitar_distill.common.models import float32_copy, load_stage_model
    from guitar_distill.common.progress import console
    from guitar_distill.dataset.split import balanced_subset
    from guitar_distill.export.parity import parity_table

    ecfg = cfg.export
    start = time.perf_counter()
    check_upstream(args.artifacts, cfg, {"data": ("data",)})  # the data table must match what the models saw
    out = stage_dir(args.artifacts, "export")
    write_json(out / "config.json", as_dict(cfg))
    info = load_data_info(args.artifacts)
    train_x, train_y = load_split(info, "train")
    val_x, val_y = load_split(info, "val")
    calibration = np.asarray(train_x[balanced_subset(train_y, ecfg.calibration_per_class, cfg.data.seed)])
    results, files = {}, {}
    for name in args.models:
        stage = MODEL_STAGES[name]
        model = float32_copy(load_stage_model(args.artifacts, stage, STAGE_COMMANDS[stage]))
        metrics = read_json(args.artifacts / stage / "metrics.json")
        kept = {k: v for k, v in metrics.items() if k.endswith("accuracy") or k == "best_epoch"}
        source = {"stage": stage, "preset": cfg.name, **kept}
        saved = args.artifacts / "export" / "saved_model" / name
        paths = convert_model(
            model,
            name,
            POST_TRAINING,
            lambda fmt, name=name: model_path(args.artifacts, name, fmt),
            calibration,
            ecfg.onnx_opset,
            saved,
        )
        if name == "student":
            # The QAT twin is built with tf_keras by the NiN's own builder; other students get post-training int8.
            if distill_config(args.artifacts).student.architecture == "nin":
                paths["tflite_qat_int8"] = student_qat(model, args.artifacts, cfg, info, train_x)
        measured = describe_and_measure(name, model, paths, source, info.classes, val_x, val_y)
        results.update({(name, fmt): r for fmt, r in measured.items()})
        files.update({(name, fmt): path for fmt, path in paths.items()})
    write_json(out / "parity.json", {f"{m}/{f}": r for (m, f), r in results.items()})
    write_text(out / "parity.md", parity_table(results))
    gate_all(results, files, ecfg)
    if "student" in args.models:
        student_bundle(results, files, args.artifacts, cfg, info, (val_x, val_y))
    shutil.rmtree(out / "saved_model", ignore_errors=True)
    console.print(parity_table(results))
    console.print(
        f"export done in {time.perf_counter() - start:.0f} s: {out}/<model>/<format>/, "
        f"parity in {out / 'parity.json'} and {out / 'parity.md'}"
    )


if __name__ == "__main__":
    run_cli(main)
