"""`python -m guitar_distill.export.release`: the released models under models/, and the way back.

    python -m guitar_distill.export.release --preset cpu     # artifacts -> models/ (after make cpu)
    python -m guitar_distill.export.release --check          # every released file: sha256, and top-1 on the test split
    python -m guitar_distill.export.release --import-teacher # models/ teacher -> TFLite files in artifacts/export

models/ holds the distilled student in full (Keras, int8 TFLite, ONNX, the edge bundle) and the
teacher as float16 Keras weights (`teacher/keras_fp16/model.keras`, about 48 MB for ResNet50): the
form a later training stretch starts from (`--weights models/teacher/keras_fp16/model.keras`, at
the same or, with the average-pooling head, another resolution). A TFLite file would fold the batch
norms away and could not be trained further, and both would not fit the 60 MB; the teacher's
TFLite files are rebuilt from the weights when needed (--import-teacher). Each file keeps the
artifacts' layout `<model>/<format>/model.<ext>` with model.json and labels.txt beside it.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from guitar_distill.common.artifacts import read_json, sha256_file, write_json, write_text
from guitar_distill.common.config import MODELS_DIR, PROJECT_ROOT, project_relative, resolve_config, stage_parser
from guitar_distill.common.errors import ToolkitError, run_cli
from guitar_distill.common.layout import MODEL_STAGES, evaluation_split, model_path
from guitar_distill.common.progress import console
from guitar_distill.common.quiet import quiet_start
from guitar_distill.export.describe import describe_model_file
from guitar_distill.export.model_card import RECORDS, write_model_card
from guitar_distill.export.web import RUNTIME_FILES

MAX_MB = 60.0
# The float32 TFLite student ships inside the bundle (model_fp32.tflite), not a second time here.
RELEASED = {"student": ("keras", "tflite_int8", "tflite_qat_int8", "onnx_fp32", "onnx_int8")}
TEACHER = Path("teacher") / "keras_fp16" / "model.keras"  # float16 weights: what later stretches start from
IMPORTED_TEACHER = ("tflite_fp32", "tflite_fp16")  # rebuilt from them for the benchmarks and the demo
TRAINING_RECORDS = {**MODEL_STAGES, "baseline": "baseline"}  # released record -> the stage that trained it


def copy_model_files(artifacts: Path, tmp: Path) -> list[str]:
    """Each released format's file with its model.json and labels.txt; returns the files' release paths."""
    files = []
    for model, formats in RELEASED.items():
        for fmt in formats:
            src = model_path(artifacts, model, fmt)
            if not src.exists():
                raise ToolkitError(f"{src} not found: run `make cpu` (or the export stage) first")
            (tmp / model / fmt).mkdir(parents=True)
            for extra in (src.name, "model.json", "labels.txt"):
                if (src.parent / extra).exists():
                    shutil.copy(src.parent / extra, tmp / model / fmt / extra)
            files.append(f"{model}/{fmt}/{src.name}")
    return files


def copy_teacher(artifacts: Path, dest: Path, tmp: Path) -> None:
    """This run's teacher as float16 Keras weights, or (a run that trained students only) the released one."""
    if (artifacts / "teacher" / "model.keras").exists():
        classes = (artifacts / "data" / "labels.txt").read_text().split()
        metrics = read_json(artifacts / "teacher" / "metrics.json")
        release_teacher(artifacts / "teacher" / "model.keras", metrics, classes, tmp / TEACHER.parent)
    elif (dest / TEACHER).exists():
        shutil.copytree((dest / TEACHER).parent, tmp / TEACHER.parent)
        if (dest / "training" / "teacher").is_dir():
            shutil.copytree(dest / "training" / "teacher", tmp / "training" / "teacher")
    else:
        raise ToolkitError(
            f"no teacher: neither {artifacts / 'teacher' / 'model.keras'} nor {dest / TEACHER} exists "
            f"(run make teacher)"
        )


def copy_records(artifacts: Path, tmp: Path) -> None:
    """How each model was trained (config, history, metrics, curves) and the benchmark records the model card
    is made from."""
    for record, stage in TRAINING_RECORDS.items():
        if (artifacts / stage / "metrics.json").exists():
            (tmp / "training" / record).mkdir(parents=True, exist_ok=True)
            for name in ("config.json", "history.csv", "metrics.json", "curves.png"):
                if (artifacts / stage / name).exists():
                    shutil.copy(artifacts / stage / name, tmp / "training" / record / name)
    sources = {"data_summary": artifacts / "data" / "summary.json"}
    sources.update({r: artifacts / "bench" / f"{r}.json" for r in RECORDS[1:]})
    for name, src in sources.items():
        if src.exists():
            (tmp / "records").mkdir(exist_ok=True)
            record = read_json(src)
            if name == "data_summary":  # the photo folder as presets name it (../shared/guitars): the same everywhere
                record["source"] = os.path.relpath(record["source"], PROJECT_ROOT)
            write_json(tmp / "records" / f"{name}.json", record)


def copy_bundle(artifacts: Path, tmp: Path) -> Path:
    """The edge bundle with its golden photos, without the web page's runtime and ONNX copy (16 MB: over the
    release's budget; `guitar-distill web` puts them back)."""

    def left_out(folder, names):
        return [n for n in names if n in (*RUNTIME_FILES, "model.onnx")]

    return shutil.copytree(artifacts / "edge" / "guitar-student", tmp / "student" / "guitar-student", ignore=left_out)


def release(artifacts: Path, dest: Path, preset: str) -> dict:
    """Copy the released files from `artifacts` into `dest` (replaced whole) and write RELEASE.json."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    files = copy_model_files(artifacts, tmp)
    copy_teacher(artifacts, dest, tmp)
    copy_records(artifacts, tmp)
    bundle = copy_bundle(artifacts, tmp)
    write_model_card(tmp)
    # No .tar.gz: it would hold every bundle file a second time (`tar czf` makes one from the folder).
    files += [TEACHER.as_posix(), *(f"student/guitar-student/{p.name}" for p in sorted(bundle.glob("model*.tflite")))]
    total_mb = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file()) / 1e6
    if total_mb > MAX_MB:
        shutil.rmtree(tmp)
        raise ToolkitError(f"the release would be {total_mb:.1f} MB, over the {MAX_MB:.0f} MB limit for models/")
    manifest = {
        "preset": preset,
        "made": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "total_mb": round(total_mb, 2),
        "files": {rel: {"bytes": (tmp / rel).stat().st_size, "sha256": sha256_file(tmp / rel)} for rel in files},
        "labels": (artifacts / "data" / "labels.txt").read_text().split(),
    }
    write_json(tmp / "RELEASE.json", manifest)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return manifest


# What a released teacher's model.json keeps of its run's metrics, besides the accuracies (an ensemble's: its members).
TEACHER_RUN = ("best_epoch", "epochs_run", "preset", "started_from", "members")


def release_teacher(source: Path, metrics: dict, classes: list[str], folder: Path, note: str | None = None) -> Path:
    """A Keras teacher file as float16 Keras weights in `folder`, with its model.json and labels.txt."""
    from guitar_distill.common.models import float32_copy, load_model_file, network_cost, retyped_copy, save_model
    from guitar_distill.teacher.warm_start import resnet_member

    model = float32_copy(load_model_file(source))
    folder.mkdir(parents=True, exist_ok=True)
    path = save_model(retyped_copy(model, "float16"), folder / "model.keras")
    source_run = {
        "stage": "teacher",
        **{k: v for k, v in metrics.items() if k.endswith("accuracy") or k in TEACHER_RUN},
    }
    head = "flatten" if any(layer.name == "flatten" for layer in resnet_member(model).layers) else "avg"
    describe_model_file(
        path,
        "keras_fp16",
        int(model.input_shape[1]),
        classes,
        network_cost(model),
        source_run,
        head=head,
        weights_dtype="float16",
        **({"note": note} if note else {}),
        train_from=f"--weights models/{TEACHER.as_posix()}",
    )
    return path


def check(dest: Path, artifacts: Path) -> list[dict]:
    """sha256 of every released file, and top-1 of each on the test split when the data stage has run."""
    import numpy as np

    from guitar_distill.common.runtimes import open_classifier, predict_all

    manifest = read_json(dest / "RELEASE.json")
    bad = [rel for rel, meta in manifest["files"].items() if sha256_file(dest / rel) != meta["sha256"]]
    if bad:
        raise ToolkitError(f"sha256 mismatch in {dest}: {', '.join(bad)}")
    results = []
    summary = artifacts / "data" / "summary.json"
    if not summary.exists():
        console.print(
            f"sha256 of {len(manifest['files'])} files: ok. For accuracy, make the data stage first: "
            f"python -m guitar_distill.dataset --preset {manifest['preset']}"
        )
        return results
    from guitar_distill.common.cache import images_by_side
    from guitar_distill.common.manifest import load_data_info

    info = load_data_info(artifacts)
    split = evaluation_split(info)
    images_at, labels = images_by_side(info, split), info.labels(split)
    for rel in manifest["files"]:
        model = open_classifier(dest / rel)
        top1 = float(np.mean(predict_all(model, images_at(model.size), 64).argmax(1) == labels))
        results.append({"file": rel, "split": split, "photos": len(labels), "top1": top1})
        console.print(f"{rel}: top-1 {top1:.4f} on {len(labels)} {split} photos")
    return results


def released_teacher(source: Path, classes: int, image_size: int):
    """A Keras teacher file (the released float16 one), or a ResNet50 run carried through git, as a float32 Keras
    network taking `image_size` px photos: as it is (also for `image_size` 0: its own side, where it was released
    to test best, or a carried run's last), or rebuilt at that size when its head is average pooling (which takes
    any)."""
    import keras

    from guitar_distill.common.carry import is_carry
    from guitar_distill.common.models import float32_copy, load_model_file
    from guitar_distill.teacher.model import build_teacher
    from guitar_distill.teacher.warm_start import carried_resnet, start_from_teacher

    model = carried_resnet(source, classes) if is_carry(source) else float32_copy(load_model_file(source))
    if not image_size or int(model.input_shape[1]) == image_size:
        return model
    if any(isinstance(layer, keras.Model) for layer in model.layers):
        raise ToolkitError(
            f"{source} is an ensemble taking {model.input_shape[1]}px photos, not {image_size}px: import it at its "
            f"side (--set distill.teacher_size={model.input_shape[1]})"
        )
    if not any(isinstance(layer, keras.layers.GlobalAveragePooling2D) for layer in model.layers):
        raise ToolkitError(
            f"{source} takes {model.input_shape[1]}px photos and its Flatten head cannot take the "
            f"data stage's {image_size}px (remake the data stage at {model.input_shape[1]}px)"
        )
    resized = build_teacher(classes, image_size, None, head="avg")
    start_from_teacher(resized, source)
    return resized


def import_teacher(source: Path, artifacts: Path, side: int = 0) -> list[Path]:
    """A Keras teacher file (the released float16 one by default) as TFLite fp32 and fp16 files where
    the benchmarks and the stored logits look for them, at `side` px (a preset's `distill.teacher_size`; 0: the
    file's own side, the one it tests best at)."""
    from guitar_distill.common.manifest import load_data_info
    from guitar_distill.common.models import network_cost
    from guitar_distill.export.convert import export_saved_model, tflite_from_saved_model

    info = load_data_info(artifacts)
    beside = source.with_name("model.json")
    meta = read_json(beside) if beside.exists() else {"source_run": {"stage": "teacher", "file": str(source)}}
    model = released_teacher(source, len(info.classes), side)
    side = int(model.input_shape[1])
    saved = export_saved_model(model, artifacts / "export" / "saved_model" / "imported_teacher")
    shown = project_relative(source)
    outs = []
    for fmt in IMPORTED_TEACHER:
        out = model_path(artifacts, "teacher", fmt)
        shutil.rmtree(out.parent, ignore_errors=True)
        out.parent.mkdir(parents=True)
        out.write_bytes(tflite_from_saved_model(saved, fmt.removeprefix("tflite_")))
        kept = {k: meta[k] for k in ("head", "note") if k in meta}
        source_run = {**meta.get("source_run", {}), "imported_from": shown}
        describe_model_file(out, fmt, side, info.classes, network_cost(model), source_run, **kept)
        write_text(
            out.with_name("IMPORTED.txt"),
            f"rebuilt from {shown} by python -m guitar_distill.export.release --import-teacher\n",
        )
        console.print(f"teacher {fmt}: {out}")
        outs.append(out)
    shutil.rmtree(saved, ignore_errors=True)
    return outs


def main(argv=None):
    parser = stage_parser(
        "Release trained models into models/, check them, or import the released teacher.", default_preset="cpu"
    )
    parser.add_argument("--dest", type=Path, default=MODELS_DIR, help="default: %(default)s")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--check", action="store_true", help="verify sha256 and measure top-1 of the released files")
    what.add_argument(
        "--import-teacher",
        action="store_true",
        help="rebuild the released teacher's TFLite fp32 and fp16 files in ARTIFACTS/export/teacher/ "
        "(at the preset's distill.teacher_size when it has one)",
    )
    parser.add_argument(
        "--teacher-file",
        type=Path,
        help=f"with --import-teacher: another Keras teacher, or a carried ResNet50 run such as runs/grow-teacher "
        f"(default: DEST/{TEACHER.as_posix()})",
    )
    args = parser.parse_args(argv)
    cfg = resolve_config(args)
    quiet_start()  # after parsing: --help and argument errors need no TensorFlow
    if args.check:
        check(args.dest, args.artifacts)
    elif args.import_teacher:
        outs = import_teacher(args.teacher_file or args.dest / TEACHER, args.artifacts, cfg.distill.teacher_size)
        console.print("released teacher rebuilt: " + ", ".join(str(p) for p in outs))
    else:
        manifest = release(args.artifacts, args.dest, cfg.name)
        console.print(
            f"released {len(manifest['files'])} model files, {manifest['total_mb']:.1f} MB in all: "
            f"{args.dest} (RELEASE.json lists them with sha256)"
        )


if __name__ == "__main__":
    run_cli(main)
