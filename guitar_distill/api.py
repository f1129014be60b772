"""The toolkit from Python, on your own photos and Keras models, through the stages' own code and checks.

    import guitar_distill as gd

    data = gd.ImageFolder("photos/", image_size=96)          # class sub-folders: checked, de-duplicated, split
    student = gd.distill(teacher, student, data, epochs=20)    # any Keras classifiers; stored or online outputs
    files = gd.export(student, "out/", formats=["tflite_int8", "onnx_fp32"], calibration=data)  # parity-gated
    table = gd.benchmark(files, data=data, threads=[1, 2])     # accuracy and latency, side by side
    gd.bundle(files, "my-bundle/", labels=data.classes, title="Bird feeder visitors")

A teacher or a student is a Keras model or a `.keras` file that takes RGB pixels 0..255 and returns class
probabilities from a final softmax (`common/models.check_classifier` says what is wrong otherwise).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path

import numpy as np

from guitar_distill.common.config import Data, Distill, Export, Split, load_preset, with_fields
from guitar_distill.common.errors import ToolkitError

# The student recipe `gd.distill` trains with: the CPU presets' (AdamW, cosine, crops and flips), whose
# every field `recipe=` may change.
RECIPE_PRESET = "stretch"


class ImageFolder:
    """Photos in class sub-folders, through the data stage: every photo decoded and checked, near-duplicates
    kept in one split, a seeded stratified split, each split decoded at `image_size` into a cache.

    Its records and every run made from it go to `workdir` (default: ./guitar-distill-runs/FOLDER-SIZE).
    `title` names the task in bundles and cards (default: the first heading of the folder's SOURCE.md or
    README.md, else the folder's name).
    """

    def __init__(
        self,
        folder,
        image_size: int = 224,
        *,
        val: float = 0.15,
        test: float = 0.15,
        seed: int = 1337,
        classes=None,
        title: str | None = None,
        workdir=None,
    ):
        from guitar_distill.common.manifest import load_data_info
        from guitar_distill.dataset.prepare import prepare_data
        from guitar_distill.dataset.scan import source_title

        source = Path(folder).resolve()
        if not source.is_dir():
            raise ToolkitError(f"{folder}: no such folder (expected one sub-folder of photos per class)")
        self.workdir = Path(workdir) if workdir else Path.cwd() / "guitar-distill-runs" / f"{source.name}-{image_size}"
        split = Split(fractions={"val": float(val), "test": float(test)})
        data = Data(
            source=str(source), classes=tuple(classes or ()), image_size=int(image_size), seed=int(seed), split=split
        )
        self.config = dataclasses.replace(load_preset(RECIPE_PRESET), name="api", data=data)
        self.summary = prepare_data(source, self.config, self.workdir)
        self.info = load_data_info(self.workdir)
        self.title = title or source_title(source)

    @property
    def classes(self) -> list[str]:
        return self.info.classes

    @property
    def image_size(self) -> int:
        return self.info.image_size

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 images N x size x size x 3, int labels) of "train", "val" or "test"."""
        from guitar_distill.common.cache import load_split

        return load_split(self.info, name)

    def __repr__(self) -> str:
        counts = {s: len(self.info.split_rows(s)) for s in ("train", "val", "test")}
        return f"ImageFolder({self.info.source}, {self.image_size} px, {len(self.classes)} classes, {counts})"


def keras_model(model, role: str, num_classes: int | None = None, input_size: int | None = None):
    """A Keras model, or a `.keras` file loaded, checked against the classifier contract."""
    from guitar_distill.common.models import check_classifier, load_model_file

    if isinstance(model, (str, Path)):
        if not Path(model).is_file():
            raise ToolkitError(f"{role}: {model}: no such file")
        model = load_model_file(Path(model))
    return check_classifier(model, role, num_classes, input_size)


def model_file(model, folder: Path) -> Path:
    """A model's file: the path given, or the Keras model saved once under a digest of its weights. Stored
    teacher outputs are keyed on the file's sha256, and a .keras file saved again differs byte for byte: the
    same weights must find the same file, or every call would recompute the outputs."""
    import hashlib

    from guitar_distill.common.models import save_model

    if isinstance(model, (str, Path)):
        return Path(model).resolve()
    digest = hashlib.sha256()
    for weights in model.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    path = folder / f"{model.name}-{digest.hexdigest()[:12]}.keras"
    return path if path.exists() else save_model(model, path)


def distill(
    teacher,
    student,
    data: ImageFolder,
    epochs: int = 20,
    *,
    outputs: str = "stored",
    temperature: float = 4.0,
    hard_weight: float = 0.5,
    soft_weight: float = 0.5,
    stored_epochs: int = 4,
    teacher_sees: str = "clean",
    recipe: dict | None = None,
    fresh: bool = False,
):
    """Train `student` from `teacher` on `data`; returns the student at its best validation epoch.

    outputs "stored": the teacher answers the training stream's crops once (for `stored_epochs` epochs,
    replayed after that) and the student trains from its stored log-probabilities; "online": the teacher
    runs beside the student on every batch. `recipe` changes fields of the student recipe
    (common/config.Student, e.g. {"learning_rate": 0.001}); with its `corrupt`, `teacher_sees` says whether the
    target of a corrupted crop is the teacher's answer to the "clean" crop (stored outputs only) or the
    "corrupted" one. The run resumes where it stopped; its files
    (history.csv, metrics.json, curves.png, model.keras) are in data.workdir/distill-STUDENT.
    """
    from guitar_distill.common.stage import open_training_run
    from guitar_distill.distill.run import distil

    if outputs not in ("stored", "online"):
        raise ToolkitError(f'outputs={outputs!r}: use "stored" or "online"')
    n = len(data.classes)
    teacher_model = keras_model(teacher, "teacher", n)
    student = keras_model(student, "student", n, data.image_size)
    side = teacher_model.input_shape[1]
    if outputs == "online" and side not in (None, data.image_size):
        raise ToolkitError(
            f"teacher takes {side} px photos and the data is at {data.image_size} px: online outputs need one "
            f'side; use outputs="stored" (the teacher then sees each crop at its own side)'
        )
    folder = f"distill-{student.name}"
    teacher_path = model_file(teacher, data.workdir / "teachers")  # outside the run folder, which --fresh removes
    scfg = student_recipe(data, student.name, epochs, recipe)
    dcfg = Distill(
        temperature=float(temperature),
        hard_weight=float(hard_weight),
        soft_weight=float(soft_weight),
        teacher_logits="offline" if outputs == "stored" else "online",
        teacher=str(teacher_path),
        teacher_size=side if side not in (None, data.image_size) else 0,
        stored_epochs=min(int(stored_epochs), int(epochs)),
        teacher_sees=teacher_sees,
    )
    cfg = dataclasses.replace(data.config, student=scfg, distill=dcfg)
    keys = ("data", "student", "distill")
    run = open_training_run(data.workdir, fresh, cfg, folder, keys=keys, recipe="student")
    title = f"{student.name} distilled ({data.title})"
    distil(run, student, teacher_path, f"{student.name}_distilled", title, teacher_model=teacher_model)
    return student


def student_recipe(data: ImageFolder, name: str, epochs: int, recipe: dict | None):
    """The CPU presets' student recipe for `epochs` passes over the data's training photos, with `recipe`'s
    changes (each checked against its field's type)."""
    base = data.config.student
    steps = max(1, math.ceil(len(data.info.split_rows("train")) / base.batch_size))
    fixed = {
        "architecture": f"given:{name}",
        "max_epochs": int(epochs),
        "patience": int(epochs),
        "steps_per_epoch": steps,
    }
    return with_fields(base, "recipe", **{**fixed, **(recipe or {})})


class Exported(dict):
    """{format: path} of one model's exported files, with the model's name, its classes and, when data was
    given, each file's agreement with the Keras model on validation (`parity`)."""

    def __init__(self, files: dict, name: str, classes: list[str], parity: dict, data=None):
        super().__init__(files)
        self.name, self.classes, self.parity, self.data = name, classes, parity, data


def calibration_images(calibration, per_class: int, seed: int) -> np.ndarray:
    """Photos that set the int8 ranges: a balanced subset of an ImageFolder's training split, or images given."""
    from guitar_distill.dataset.split import balanced_subset

    if isinstance(calibration, ImageFolder):
        x, y = calibration.split("train")
        return np.asarray(x[balanced_subset(y, per_class, seed)])
    images = np.asarray(calibration)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ToolkitError(f"calibration: expected an ImageFolder or images N x H x W x 3, got shape {images.shape}")
    return images


def export(
    model, out, formats=("tflite_int8", "onnx_fp32"), calibration=None, *, classes=None, name=None, min_agreement=0.85
):
    """`model` (Keras, or a .keras file of any origin) as each of `formats`, in out/FORMAT/ with model.json
    and labels.txt. With an ImageFolder as `calibration`, int8 ranges come from its training photos and every
    file must agree with the Keras model on its validation photos (the export stage's gate: float32 files on
    99.9 % of them, quantised files on `min_agreement`); with images, they only calibrate. Returns Exported
    {format: path}."""
    from guitar_distill.common.models import fixed_side, float32_copy
    from guitar_distill.export.files import convert_model, describe_and_measure, gate_all

    ecfg = Export(quantised_min_agreement=float(min_agreement))
    model = float32_copy(keras_model(model, "model"))
    data = calibration if isinstance(calibration, ImageFolder) else None
    classes = list(classes or (data.classes if data else [f"class_{i}" for i in range(model.output_shape[-1])]))
    if len(classes) != model.output_shape[-1]:
        raise ToolkitError(f"classes: {len(classes)} names for a model with {model.output_shape[-1]} outputs")
    if calibration is None:
        raise ToolkitError("calibration: give an ImageFolder (or images) to set int8 ranges and check the files")
    name, out = name or model.name, Path(out)
    images = calibration_images(calibration, ecfg.calibration_per_class, 1337)
    model = fixed_side(model, images.shape[1])  # a model of any side is exported at the data's
    paths = convert_model(
        model, name, list(formats), lambda fmt: out / fmt / FILE_NAMES[fmt], images, ecfg.onnx_opset, out / ".saved"
    )
    shutil.rmtree(out / ".saved", ignore_errors=True)
    val_x, val_y = data.split("val") if data else (images, np.zeros(len(images), int))
    parity = describe_and_measure(name, model, paths, {"exported_by": "gd.export"}, classes, val_x, val_y)
    if data:
        gate_all({(name, f): r for f, r in parity.items()}, {(name, f): p for f, p in paths.items()}, ecfg)
    return Exported(paths, name, classes, parity if data else {}, data)


FILE_NAMES = {"onnx_fp32": "model.onnx", "onnx_int8": "model.onnx"} | {
    f"tflite_{p}": "model.tflite" for p in ("fp32", "fp16", "dynamic_int8", "int8")
}


class BenchmarkTable(list):
    """One row a file: accuracy on the data's split beside latency at each thread count (the median of
    `rounds` rotations, each file in a fresh process), with the machine it ran on."""

    def __init__(self, rows: list[dict], hardware: dict, threads: list[int], split: str | None):
        super().__init__(rows)
        self.hardware, self.threads, self.split = hardware, threads, split

    def markdown(self) -> str:
        from guitar_distill.common.markdown import markdown_table

        header = ["model", "format", f"{self.split} top-1" if self.split else "top-1", "MB"]
        header += [f"p50 ms, {t} thread{'s' if t > 1 else ''}" for t in self.threads]
        rows = [
            [r["model"], r["format"], f"{r['top1']:.3f}" if "top1" in r else "-", f"{r['size_mb']:.2f}"]
            + [f"{r['p50_ms'][t]:.2f}" for t in self.threads]
            for r in self
        ]
        return f"{self.hardware['cpu']}\n\n" + markdown_table(header, rows)

    def _repr_markdown_(self) -> str:  # notebooks show the table
        return self.markdown()


def model_files(files) -> list:
    """benchmarks.models.ModelFile for each file of one Exported, a list of them, or a {name: path} dict."""
    from guitar_distill.benchmarks.models import ModelFile
    from guitar_distill.common.layout import FORMATS

    groups = files if isinstance(files, (list, tuple)) else [files]
    found = []
    for group in groups:
        name = getattr(group, "name", "model")
        for fmt, path in group.items():
            if fmt not in FORMATS:
                raise ToolkitError(f"{path}: format {fmt!r} unknown; choose from {', '.join(FORMATS)}")
            found.append(ModelFile(name, fmt, Path(path)))
    return found


def benchmark(files, data: ImageFolder | None = None, threads=(1, 2), *, split="test", runs=100, rounds=2):
    """Accuracy (on `data`'s `split`) and batch-1 latency of every file, side by side: a BenchmarkTable."""
    from guitar_distill.benchmarks.accuracy import score_files
    from guitar_distill.benchmarks.hardware import hardware_header
    from guitar_distill.benchmarks.latency import measure_in_rounds, median_of_rounds
    from guitar_distill.common.cache import images_by_side
    from guitar_distill.common.config import Bench
    from guitar_distill.common.progress import progress_bar

    found, threads = model_files(files), sorted(set(int(t) for t in threads))
    scores = {}
    if data is not None:
        y = data.info.labels(split)
        if not len(y):
            raise ToolkitError(f"{data}: the {split} split is empty; pass split='val'")
        scores = score_files(found, images_by_side(data.info, split), y, data.classes)[0]
    jobs = [(f.path, t, 0) for f in found for t in threads]
    with progress_bar(len(jobs) * rounds, f"latency, {rounds} rounds") as advance:
        measured = measure_in_rounds(jobs, Bench(runs=runs, warmup=10, max_seconds=10.0), rounds, advance)
    rows = []
    for i, f in enumerate(found):
        timed = {t: median_of_rounds(measured[i * len(threads) + k])["p50_ms"] for k, t in enumerate(threads)}
        row = {"model": f.model, "format": f.fmt, "file": str(f.path), "size_mb": f.path.stat().st_size / 1e6}
        score = scores.get(f"{f.model}/{f.fmt}", {})
        rows.append({**row, **{k: score[k] for k in ("top1", "top3") if k in score}, "p50_ms": timed})
    return BenchmarkTable(rows, hardware_header(threads), threads, split if data is not None else None)


def bundle(files, dest, *, labels=None, title: str | None = None, data: ImageFolder | None = None) -> Path:
    """An edge bundle at `dest`: the int8 TFLite file (and the float32 one, where exported), predict.py,
    check.py, golden photos for its self-test, a web page when an ONNX file was exported, a README and a
    model card, all in the words of `title` and `labels` (by default the data's). Returns `dest`."""
    from guitar_distill.common.artifacts import read_json
    from guitar_distill.export.bundle import BundleText, edge_bundle
    from guitar_distill.export.model_card import bundle_card

    data = data or getattr(files, "data", None)
    if "tflite_int8" not in files:
        raise ToolkitError(f"bundle: it ships an int8 TFLite file; export with 'tflite_int8' (have {', '.join(files)})")
    if data is None:
        raise ToolkitError("bundle: give data=ImageFolder: its validation photos set the label check and the self-test")
    labels = list(labels or data.classes)
    if labels != list(data.classes):
        raise ToolkitError(f"labels {labels} differ from the data's classes {data.classes}")
    int8, fp32 = Path(files["tflite_int8"]), files.get("tflite_fp32")
    meta = {**read_json(int8.with_name("model.json")), "validation": files.parity.get("tflite_int8", {})}
    network = meta["network"]
    text = BundleText(
        title=title or data.title,
        about=f"{files.name} ({network['parameters']:,} parameters, {network['macs'] / 1e6:.0f} million multiply-adds "
        f"a photo), quantised to int8 (uint8 input); it tells {len(labels)} classes apart: {', '.join(labels)}.",
    )
    onnx = files.get("onnx_int8") or files.get("onnx_fp32")
    fp32_json = read_json(Path(fp32).with_name("model.json")) if fp32 else None
    return edge_bundle(
        Path(dest),
        int8,
        meta,
        data.info,
        data.split("val"),
        Export(),
        data.config.data.seed,
        text,
        card=lambda final: bundle_card(text, final, data.summary),
        onnx_file=onnx,
        fp32_file=fp32,
        fp32_json=fp32_json,
    )
