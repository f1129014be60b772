"""Start a teacher run from a released (or any saved) Keras teacher: the CPU budget adds up across runs.

The source may have been trained at another resolution or with the write-up's Flatten head: every
convolution and batch norm is resolution-free and copies as it is; a Flatten head over an HxW map
becomes the average-pooling head whose dense kernel is the sum of the H*W position kernels, which
gives the same logits wherever the features are equal across positions, and is a fine start
elsewhere. A Flatten target needs a Flatten source of the same size.
"""

from __future__ import annotations

from pathlib import Path

import keras

from guitar_distill.common.config import project_relative
from guitar_distill.common.layout import TEACHER_MODEL


def is_teacher_file(weights) -> bool:
    """A saved teacher of this project: a .keras file, or a run carried through git (common/carry.py)."""
    from guitar_distill.common.carry import is_carry
    from guitar_distill.common.config import resolve_project_path

    return bool(weights) and (Path(str(weights)).suffix == ".keras" or is_carry(resolve_project_path(str(weights))))


def resnet_member(model: keras.Model) -> keras.Model:
    """The ResNet50 teacher inside an ensemble teacher file (teacher/ensemble.py names it member_K_resnet50_teacher);
    any other model as it is."""
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return next((m for m in nested if m.name.endswith(TEACHER_MODEL)), model)


def carried_resnet(carry: Path, num_classes: int) -> keras.Model:
    """The ResNet50 of a run carried through git, at its carried epoch's weights (its run's head)."""
    from guitar_distill.common.carry import WEIGHTS
    from guitar_distill.common.config import read_config
    from guitar_distill.teacher.model import build_teacher

    cfg = read_config(carry / "config.json")
    side = cfg.teacher.phases[-1].image_size if cfg.teacher.phases else cfg.data.image_size  # where it trained last
    model = build_teacher(num_classes, side, head=cfg.teacher.head)
    try:
        model.load_weights(carry / WEIGHTS)
    except ValueError as e:
        raise ValueError(f"{carry}: its weights do not fit a {num_classes}-class ResNet50 teacher ({e})") from None
    return model


def start_from_teacher(model: keras.Model, path: Path) -> dict:
    """Copy `path`'s weights (a ResNet50 teacher's, an ensemble's ResNet50 member's, or a carried ResNet50
    run's) into `model` (a build_teacher network); returns what was converted."""
    from guitar_distill.common.carry import is_carry
    from guitar_distill.common.models import float32_copy, load_model_file

    path = Path(path)
    if is_carry(path):
        source = carried_resnet(path, int(model.output_shape[-1]))
    elif path.is_file():
        source = resnet_member(float32_copy(load_model_file(path)))
    else:
        raise FileNotFoundError(f"teacher file not found: {path}")
    names = {layer.name for layer in source.layers}
    missing = [
        layer.name
        for layer in model.layers
        if layer.weights and layer.name not in names and layer.name != "predictions"
    ]
    if missing:
        nested = [layer.name for layer in source.layers if isinstance(layer, keras.Model)]
        lacks = f"an ensemble of {', '.join(nested)}" if nested else f"no layers {', '.join(missing[:3])} ..."
        raise ValueError(
            f"{path}: not a ResNet50 teacher of this project ({lacks}); start from a ResNet50 teacher file or a "
            f"run carried through git (runs/grow-teacher)"
        )
    for layer in model.layers:
        if layer.weights and layer.name != "predictions":
            layer.set_weights(source.get_layer(layer.name).get_weights())
    kernel, bias = source.get_layer("predictions").get_weights()
    target = model.get_layer("predictions").kernel.shape
    head_from = "flatten" if any(isinstance(layer, keras.layers.Flatten) for layer in source.layers) else "avg"
    head_to = "flatten" if any(isinstance(layer, keras.layers.Flatten) for layer in model.layers) else "avg"
    if kernel.shape[1] != target[1]:
        raise ValueError(f"{path} has {kernel.shape[1]} classes; this run has {target[1]}")
    if head_from == "flatten" and head_to == "avg":
        channels = target[0]
        kernel = kernel.reshape(-1, channels, kernel.shape[1]).sum(axis=0)  # Flatten order: (h, w, channel)
    elif kernel.shape != tuple(target):
        raise ValueError(
            f"{path}: its {head_from} head takes {kernel.shape[0]} features, this {head_to} head "
            f'{target[0]}: a Flatten head is tied to its input size (use teacher.head = "avg")'
        )
    model.get_layer("predictions").set_weights([kernel, bias])
    return {"from": project_relative(path), "source_image_size": int(source.input_shape[1]), "source_head": head_from}
