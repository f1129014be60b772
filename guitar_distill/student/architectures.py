"""The student a preset names in `student.architecture`: "nin" (student/model.py), "mobilenet_v3_small"
(keras.applications, from scratch), or "package.module:function" for a builder of the user's own,
called as `function(num_classes, input_size)`. Every one takes RGB 0..255 and returns probabilities."""

from __future__ import annotations

import importlib

from guitar_distill.common.config import Student
from guitar_distill.common.errors import ToolkitError

NAMES = {"nin": "NiN", "mobilenet_v3_small": "MobileNetV3-Small"}


def student_name(scfg: Student) -> str:
    """How reports and titles name the architecture: "NiN", "MobileNetV3-Small", or the builder's name."""
    return NAMES.get(scfg.architecture) or scfg.architecture.rpartition(":")[2]


def build_student(scfg: Student, num_classes: int, input_size: int):
    """The preset's student, checked against the classifier contract."""
    from guitar_distill.common.models import check_classifier
    from guitar_distill.student.model import build_mobilenet_v3_small, build_nin_student

    if scfg.architecture == "nin":
        model = build_nin_student(num_classes, input_size, scfg.widths, scfg.dropout)
    elif scfg.architecture == "mobilenet_v3_small":
        model = build_mobilenet_v3_small(num_classes, input_size, scfg.dropout, scfg.alpha)
    elif scfg.architecture.startswith("given:"):
        raise ToolkitError(f"student.architecture = {scfg.architecture!r}: a model given from Python, not built here")
    else:
        model = user_builder(scfg.architecture)(num_classes, input_size)
    return check_classifier(model, f"student.architecture = {scfg.architecture!r}", num_classes, input_size)


def user_builder(spec: str):
    """`package.module:function` imported, or an error naming what is missing."""
    module_name, _, function = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ToolkitError(f"student.architecture = {spec!r}: cannot import {module_name!r} ({e})") from None
    builder = getattr(module, function, None)
    if not callable(builder):
        raise ToolkitError(f"student.architecture = {spec!r}: {module_name} has no function {function!r}")
    return builder
