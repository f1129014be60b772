"""Which model files exist."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from guitar_distill.common.layout import FORMATS, MODEL_STAGES, formats_of, model_path


@dataclass(frozen=True)
class ModelFile:
    model: str  # teacher | student
    fmt: str  # a name in common.layout.FORMATS
    path: Path

    @property
    def runtime(self) -> str:
        return FORMATS[self.fmt].runtime


def find_model_files(artifacts: Path, models=None, formats=None) -> tuple[list[ModelFile], list[str]]:
    """Every model file present, in the format table's order, plus a line for each expected one missing."""
    found, missing = [], []
    for model in MODEL_STAGES:
        if models and model not in models:
            continue
        for fmt in formats_of(model):
            if formats and fmt.name not in formats:
                continue
            path = model_path(artifacts, model, fmt.name)
            if path.exists():
                found.append(ModelFile(model, fmt.name, path))
            else:
                missing.append(f"{model}/{fmt.name}: {path} not found")
    return found, missing
