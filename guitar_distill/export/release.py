"""`python -m export.release`: the released models under models/, and the way back.

    python -m export.release --preset cpu     # artifacts -> models/ (after make cpu)
    python -m export.release --check          # every released file: sha256, and top-1 on the test split
    python -m export.release --import-teacher # models/ teacher -> artifacts/export (the demo's teacher)

models/ holds the distilled student in full (Keras, int8 TFLite, ONNX, the edge bundle) and the
teacher as a float16 TFLite file: about 47 MB for ResNet50, where its Keras weights would add as
much again. Both keep the artifacts' layout `<model>/<format>/model.<ext>` with model.json and
labels.txt beside each file, so every runtime and benchmark reads them like an export.
"""
from __future__ import annotations

import shutil
import tarfile
import time
from pathlib import Path

from guitar_distill.common.artifacts import read_json, sha256_file, write_json, write_text
from guitar_distill.common.config import PROJECT_ROOT, resolve_config, stage_parser
from guitar_distill.common.layout import MODEL_STAGES, evaluation_split, model_path
from guitar_distill.common.progress import console
from guitar_distill.common.quiet import quiet_start
from guitar_distill.export.web import RUNTIME_FILES

MODELS_DIR = PROJECT_ROOT / "models"
MAX_MB = 60.0
RELEASED = {"student": ("keras", "tflite_fp32", "tflite_int8", "tflite_qat_int8", "onnx_fp32"),
            "teacher": ("tflite_fp16",)}
TRAINING_RECORDS = {**MODEL_STAGES, "baseline": "baseline"}  # released record -> the stage that trained it


def release(artifacts: Path, dest: Path, preset: str) -> dict:
    """Copy the released files from `artifacts` into `dest` (replaced whole) and write RELEASE.json."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    files = {}
    for model, formats in RELEASED.items():
        for fmt in formats:
            src = model_path(artifacts, model, fmt)
            src_dir, name = src.parent, src.name
            if not (src_dir / name).exists():
                raise SystemExit(f"{src_dir / name} not found: run `make cpu` (or the export stage) first")
            (tmp / model / fmt).mkdir(parents=True)
            for extra in (name, "model.json", "labels.txt"):
                if (src_dir / extra).exists():
                    shutil.copy(src_dir / extra, tmp / model / fmt / extra)
            files[f"{model}/{fmt}/{name}"] = None
    for record, stage in TRAINING_RECORDS.items():  # how each was trained: config, history, metrics
        for name in ("config.json", "history.csv", "metrics.json", "curves.png"):
            if (artifacts / stage / name).exists():
                (tmp / "training" / record).mkdir(parents=True, exist_ok=True)
                shutil.copy(artifacts / stage / name, tmp / "training" / record / name)
    # The edge bundle without its golden photos (photos of the data set stay out of git; their
    # expected.json stays, so `make pi-check` can put them back from ../shared) and without the web
    # page's runtime and ONNX copy (16 MB: over the release's budget; `python -m export.web` puts them back).
    bundle = tmp / "student" / "guitar-student"

    def left_out(folder, names):
        if Path(folder).name == "golden":
            return [n for n in names if n != "expected.json"]
        return [n for n in names if n in (*RUNTIME_FILES, "model.onnx")]

    shutil.copytree(artifacts / "edge" / "guitar-student", bundle, ignore=left_out)
    with tarfile.open(bundle.with_name("guitar-student.tar.gz"), "w:gz") as tar:
        tar.add(bundle, arcname=bundle.name)
    files.update({"student/guitar-student/model.tflite": None, "student/guitar-student.tar.gz": None})
    files = {rel: {"bytes": (tmp / rel).stat().st_size, "sha256": sha256_file(tmp / rel)} for rel in files}
    total_mb = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file()) / 1e6
    if total_mb > MAX_MB:
        shutil.rmtree(tmp)
        raise SystemExit(f"the release would be {total_mb:.1f} MB, over the {MAX_MB:.0f} MB limit for models/")
    manifest = {"preset": preset, "made": time.strftime("%Y-%m-%dT%H:%M:%S"), "total_mb": round(total_mb, 2),
                "files": files, "labels": (artifacts / "data" / "labels.txt").read_text().split()}
    write_json(tmp / "RELEASE.json", manifest)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return manifest


def check(dest: Path, artifacts: Path) -> list[dict]:
    """sha256 of every released file, and top-1 of each on the test split when the data stage has run."""
    import numpy as np

    from guitar_distill.common.runtimes import open_classifier, predict_all

    manifest = read_json(dest / "RELEASE.json")
    bad = [rel for rel, meta in manifest["files"].items() if sha256_file(dest / rel) != meta["sha256"]]
    if bad:
        raise SystemExit(f"sha256 mismatch in {dest}: {', '.join(bad)}")
    results = []
    summary = artifacts / "data" / "summary.json"
    if not summary.exists():
        console.print(f"sha256 of {len(manifest['files'])} files: ok. For accuracy, make the data stage first: "
                      f"python -m dataset --preset {manifest['preset']}")
        return results
    from guitar_distill.dataset.cache import load_split
    from guitar_distill.dataset.manifest import load_data_info

    info = load_data_info(artifacts)
    split = evaluation_split(info)
    images, labels = load_split(info, split)
    for rel in manifest["files"]:
        if rel.endswith(".tar.gz"):
            continue
        model = open_classifier(dest / rel)
        if model.size != info.image_size:
            raise SystemExit(f"{dest / rel} takes {model.size}px photos; the data stage made {info.image_size}px "
                             f"(run python -m dataset --preset {manifest['preset']})")
        top1 = float(np.mean(predict_all(model, images, 64).argmax(1) == labels))
        results.append({"file": rel, "split": split, "photos": len(labels), "top1": top1})
        console.print(f"{rel}: top-1 {top1:.4f} on {len(labels)} {split} photos")
    return results


def import_teacher(dest: Path, artifacts: Path) -> Path:
    """Place the released teacher where the benchmarks look for an exported teacher."""
    out = model_path(artifacts, "teacher", "tflite_fp16").parent
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(dest / "teacher" / "tflite_fp16", out)
    meta = read_json(out / "model.json")
    meta["source_run"] = {**meta.get("source_run", {}), "imported_from": str(dest / "teacher" / "tflite_fp16")}
    write_json(out / "model.json", meta)
    write_text(out / "IMPORTED.txt", f"copied from {dest} by python -m export.release --import-teacher\n")
    return out


def main(argv=None):
    parser = stage_parser("Release trained models into models/, check them, or import the released teacher.",
                          default_preset="cpu")
    parser.add_argument("--dest", type=Path, default=MODELS_DIR, help="default: %(default)s")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--check", action="store_true", help="verify sha256 and measure top-1 of the released files")
    what.add_argument("--import-teacher", action="store_true",
                      help="copy the released teacher into ARTIFACTS/export/teacher/tflite_fp16")
    args = parser.parse_args(argv)
    quiet_start()  # after parsing: --help and argument errors need no TensorFlow
    if args.check:
        check(args.dest, args.artifacts)
    elif args.import_teacher:
        out = import_teacher(args.dest, args.artifacts)
        console.print(f"released teacher imported: {out}/model.tflite")
    else:
        manifest = release(args.artifacts, args.dest, resolve_config(args)["name"])
        console.print(f"released {len(manifest['files'])} model files, {manifest['total_mb']:.1f} MB in all: "
                      f"{args.dest} (RELEASE.json lists them with sha256)")


if __name__ == "__main__":
    main()
