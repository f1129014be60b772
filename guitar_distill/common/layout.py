"""Where every artifact lives and what every model format is: the one place for both.

    artifacts/<stage>/                       one folder a stage
    artifacts/<stage>/model.keras            a trained model (MODEL_STAGES says which stage holds which)
    artifacts/export/<model>/<format>/model.<extension>   an exported file (FORMATS)

"student" everywhere means the distilled student; the no-distillation NiN is the "baseline".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

# The ResNet50 teacher's model name: its stage's record, and an ensemble's member that later teacher runs start from.
TEACHER_MODEL = "resnet50_teacher"
MODEL_STAGES = {"teacher": "teacher", "student": "distill"}  # exported model -> the stage that trained it
STAGE_COMMANDS = {
    "data": "make data  (python -m guitar_distill.dataset)",
    "teacher": "make teacher  (python -m teacher)",
    "baseline": "make baseline  (python -m guitar_distill.student)",
    "distill": "make distill  (python -m guitar_distill.distill)",
    "export": "make export  (python -m guitar_distill.export)",
}


def no_exported_files(artifacts: Path, preset: str) -> str:
    """Why a benchmark found nothing to measure, and the ways to get files, with what each costs."""
    demo = Path(artifacts).name != "demo" and (Path(artifacts) / "demo" / "export").is_dir()
    return (
        f"no exported model files under {artifacts}/export. "
        + (
            f"`make demo` wrote its files under {artifacts}/demo: use --preset demo --artifacts {artifacts}/demo. "
            if demo
            else ""
        )
        + f"`make demo` (about 20 minutes on 2 CPU cores) exports a student distilled from the released teacher "
        f"into artifacts/demo; `make export PRESET={preset}` first trains whatever that preset still lacks "
        f"(the full preset's 224 px ResNet50 wants a GPU: docs/gpu.md)"
    )


@dataclass(frozen=True)
class Format:
    name: str
    extension: str
    runtime: str  # keras | onnxruntime | litert-xnnpack
    input_dtype: str  # what the file's input tensor takes (pixels 0..255 either way)
    quantised: bool  # parity-gated on agreement with Keras; unquantised files on near-equal probabilities
    student_only: bool = False  # quantisation-aware training needs the distillation targets

    @property
    def tflite_precision(self) -> str | None:
        """The TFLite converter's precision for a post-training TFLite format."""
        return self.name.removeprefix("tflite_") if self.extension == "tflite" and not self.student_only else None


FORMATS = {
    f.name: f
    for f in (
        Format("keras", "keras", "keras", "float32", quantised=False),
        Format("onnx_fp32", "onnx", "onnxruntime", "float32", quantised=False),
        Format("onnx_int8", "onnx", "onnxruntime", "float32", quantised=True),
        Format("tflite_fp32", "tflite", "litert-xnnpack", "float32", quantised=False),
        Format("tflite_fp16", "tflite", "litert-xnnpack", "float32", quantised=True),
        Format("tflite_dynamic_int8", "tflite", "litert-xnnpack", "float32", quantised=True),
        Format("tflite_int8", "tflite", "litert-xnnpack", "uint8", quantised=True),
        Format("tflite_qat_int8", "tflite", "litert-xnnpack", "uint8", quantised=True, student_only=True),
    )
}
TFLITE_PRECISIONS = tuple(f.tflite_precision for f in FORMATS.values() if f.tflite_precision)


def formats_of(model: str) -> list[Format]:
    """The formats a model comes in, in table order."""
    return [f for f in FORMATS.values() if model == "student" or not f.student_only]


def model_path(artifacts: Path, model: str, fmt: str) -> Path:
    """Where `model` ("teacher" or "student") lives in format `fmt`."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    if model not in MODEL_STAGES:
        raise ValueError(f"unknown model {model!r} (one of {', '.join(MODEL_STAGES)})")
    if fmt == "keras":
        return Path(artifacts) / MODEL_STAGES[model] / "model.keras"
    return Path(artifacts) / "export" / model / fmt / f"model.{FORMATS[fmt].extension}"


def imported_teacher(artifacts: Path) -> Path | None:
    """The Keras teacher file that `export.release --import-teacher` rebuilt this run's teacher files
    from (the release's, for the demo and a stretch's students), or None when nothing was imported."""
    meta = model_path(artifacts, "teacher", "tflite_fp16").with_name("model.json")
    if not meta.exists():
        return None
    source = json.loads(meta.read_text()).get("source_run", {}).get("imported_from")
    return Path(source) if source else None


def evaluation_split(info) -> str:
    """Where accuracy is reported: the test split when the data has one, else validation."""
    return "test" if info.split_rows("test") else "val"
