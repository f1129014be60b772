"""Presets are data: one TOML file per preset under `presets/`, one table per stage, loaded once into the
frozen dataclasses below.

The dataclasses are the schema: every field, its type and its default (the write-up's recipe) is stated
here once. A preset states only what differs, `base = "other"` inherits another preset, and every stage
CLI takes `--set stage.field=value` to override single fields; a field that does not exist or a value of
the wrong type is an error here, before any work. The resolved config is written next to each stage's
outputs (`as_dict`) and read back with `preset_from_dict`.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from guitar_distill.common.errors import ToolkitError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # guitar_distill/
# A source checkout works in its own folder (artifacts/, models/, reports/ beside pyproject.toml); an
# installed copy works in the folder it is run from.
_CHECKOUT = PACKAGE_ROOT.parent
PROJECT_ROOT = _CHECKOUT if (_CHECKOUT / "pyproject.toml").exists() else Path.cwd()
MODELS_DIR = PROJECT_ROOT / "models"  # the release: git-tracked, read by later runs and the demo
PRESET_DIR = PACKAGE_ROOT / "presets"  # package data: found without the source tree
DEFAULT_ARTIFACTS = Path(os.environ.get("GUITAR_ARTIFACTS", PROJECT_ROOT / "artifacts"))


def _one_of(where: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ToolkitError(f"{where} = {value!r}: use one of {', '.join(repr(a) for a in allowed)}")


@dataclass(frozen=True)
class Split:
    """How photos are split, by duplicate group within each class: `fractions` of each class for val and
    test (the rest trains), or `counts` a class for train, val and test. A preset's split table replaces
    its base's whole."""

    fractions: dict[str, float] | None = None
    counts: dict[str, int] | None = None

    def __post_init__(self):
        if (self.fractions is None) == (self.counts is None):
            raise ToolkitError("[data.split] takes either `fractions` or `counts`, not both or neither")


@dataclass(frozen=True)
class Data:
    source: str = "../shared/guitars"  # a folder of class sub-folders; relative paths are the project's
    classes: tuple[str, ...] = ()  # empty: every visible sub-folder, sorted
    image_size: int = 224
    seed: int = 1337
    near_hash_distance: int = 6  # phash bits, candidate near-duplicates
    near_thumb_diff: float = 1.5  # mean |diff| of 16x16 colour thumbnails (0..255) to confirm one
    exclude_label_conflicts: bool = True
    split: Split = field(default_factory=lambda: Split(fractions={"val": 0.15, "test": 0.15}))


@dataclass(frozen=True)
class Phase:
    """Progressive resizing: from `from_epoch` on, crops of `image_size` px (`crop_scale`: the table's)."""

    from_epoch: int
    image_size: int
    crop_scale: tuple[float, float] | None = None


def _check_phases(phases: tuple[Phase, ...], augmentation: str) -> None:
    starts = [p.from_epoch for p in phases]
    if starts[0] != 0 or starts != sorted(set(starts)):
        raise ToolkitError(f"phases start at from_epoch = 0 and grow from one phase to the next, not {starts}")
    if phases[-1].image_size < max(p.image_size for p in phases):
        raise ToolkitError(
            "phases: the last phase's image_size must be the largest (crops come from photos at that size, "
            "where the model is validated and kept)"
        )
    if augmentation != "crop_flip":
        raise ToolkitError(f'phases crop and resize: they need augmentation = "crop_flip", not {augmentation!r}')


@dataclass(frozen=True)
class Recipe:
    """How a model trains: the fields the teacher and the student share, defaults the write-up's."""

    batch_size: int = 32
    learning_rate: float = 0.01
    momentum: float = 0.9
    nesterov: bool = True
    decay: float = 1e-6  # legacy Keras decay: lr / (1 + decay * iterations)
    steps_per_epoch: int = 1000  # the write-up's "step"
    max_epochs: int = 100
    patience: int = 20
    max_minutes: float = 0.0  # wall-clock cap (0: none): the run ends at the last epoch that fits, keeping its best
    mixed_precision: bool | str = False  # false, "float16" or "bfloat16" (float32 where the CPU lacks it)
    seed: int = 1337
    optimizer: str = "sgd"  # "sgd" or "adamw"
    schedule: str = "inverse_time"  # "inverse_time" (the legacy decay above) or "cosine" (warmup, then to 0)
    warmup_epochs: float = 0.0
    weight_decay: float = 0.0  # decoupled; BN parameters and biases are spared
    label_smoothing: float = 0.0
    augmentation: str = "seed"  # "seed" (the write-up's affine set) or "crop_flip" (random-resized crop + flip)
    crop_scale: tuple[float, float] = (0.35, 1.0)  # crop_flip: the share of the photo a crop keeps
    ema_momentum: float = 0.0  # an exponential moving average of the weights (e.g. 0.999), validated and kept
    mix: str = "none"  # "mixup" or "cutmix" of each batch with itself reordered, from mix_from_epoch on
    mix_alpha: float = 0.2  # the mixing share is drawn from Beta(mix_alpha, mix_alpha)
    mix_from_epoch: int = 0
    # Corruptions added to training crops (common/corruptions.py), e.g. ("gaussian_noise", "salt_and_pepper"),
    # to this share of crops, at severities drawn from corrupt_severity (both ends included).
    corrupt: tuple[str, ...] = ()
    corrupt_probability: float = 0.5
    corrupt_severity: tuple[int, int] = (1, 3)
    # Progressive resizing (crop_flip, a model taking any size), the last phase the largest; empty: data.image_size.
    phases: tuple[Phase, ...] = ()

    def __post_init__(self):
        _one_of("optimizer", self.optimizer, ("sgd", "adamw"))
        _one_of("schedule", self.schedule, ("inverse_time", "cosine"))
        _one_of("augmentation", self.augmentation, ("seed", "crop_flip"))
        _one_of("mix", self.mix, ("none", "mixup", "cutmix"))
        if isinstance(self.mixed_precision, str):
            _one_of("mixed_precision", self.mixed_precision, ("float16", "bfloat16", "float32"))
        if self.phases:
            _check_phases(self.phases, self.augmentation)


@dataclass(frozen=True)
class Teacher(Recipe):
    weights: str = "none"  # "imagenet", "none" (from scratch), or a weights or .keras file to start from
    zero_init_residual: bool = False  # last BN gamma of each residual block starts at 0 (from scratch)
    head: str = "flatten"  # "flatten" (the write-up's) or "avg" (global average pooling: any resolution)

    def __post_init__(self):
        super().__post_init__()
        _one_of("head", self.head, ("flatten", "avg"))
        if self.phases and self.head != "avg":
            raise ToolkitError('teacher.phases train at several sides: they need head = "avg"')


@dataclass(frozen=True)
class Student(Recipe):
    # "nin", "mobilenet_v3_small" (keras.applications, from scratch) or "package.module:function", a builder
    # called as function(num_classes, input_size) (student/architectures.py); "given:NAME" records a model
    # given to gd.distill from Python
    architecture: str = "nin"
    widths: tuple[int, ...] = (32, 64, 128)  # nin: the three blocks' widths
    alpha: float = 1.0  # mobilenet_v3_small: the width multiplier
    dropout: float = 0.25

    def __post_init__(self):
        if self.phases:
            raise ToolkitError("student.phases: the student trains and ships at data.image_size")
        super().__post_init__()
        if ":" not in self.architecture:
            _one_of("architecture", self.architecture, ("nin", "mobilenet_v3_small"))


@dataclass(frozen=True)
class Distill:
    temperature: float = 4.0
    hard_weight: float = 0.5
    soft_weight: float = 0.5
    teacher_logits: str = "online"  # "online" (teacher beside the student) or "offline" (stored once)
    teacher: str = ""  # a teacher model file (.keras/.tflite/.onnx); empty: artifacts/teacher/model.keras
    teacher_size: int = 0  # offline: the side the teacher sees each crop at (0: the file's own, else the data's)
    # Offline: epochs of the augmented stream whose outputs are stored (0: all); later epochs replay those
    # batches in a new order.
    stored_epochs: int = 0
    # With student.corrupt, the crop whose teacher output is the target of a corrupted one: "clean" (offline only:
    # answer a noisy photo as the teacher answers the clean one) or "corrupted" (the crop the student sees).
    teacher_sees: str = "clean"

    def __post_init__(self):
        _one_of("teacher_logits", self.teacher_logits, ("online", "offline"))
        _one_of("teacher_sees", self.teacher_sees, ("clean", "corrupted"))


@dataclass(frozen=True)
class Export:
    calibration_per_class: int = 20
    parity_min_agreement: float = 0.999
    parity_max_prob_diff: float = 1e-3  # fp32 files: the same arithmetic, reordered
    quantised_min_agreement: float = 0.85  # a quantised file agreeing less often with Keras is broken, not rounded
    bundle_min_agreement: float = 0.98  # the bundle's int8 file: the most accurate of those agreeing this often
    onnx_opset: int = 17
    qat_epochs: int = 1
    qat_steps_per_epoch: int = 100
    qat_learning_rate: float = 1e-4
    golden_images: int = 11  # the bundle's self-test photos: one a class at most, at the input side
    label_check_flip_share: float = 0.05  # edge/check.py: this share of validation labels flipped to set its threshold
    label_check_precision: float = 0.5  # the precision of its flags that the threshold is chosen for


@dataclass(frozen=True)
class Bench:
    runs: int = 200
    warmup: int = 20
    max_seconds: float = 20.0
    rounds: int = 3  # each file measured this many times in rotation; rows give the median
    batch: int = 32
    robustness_limit: int = 0  # 0: the whole test split


@dataclass(frozen=True)
class Audit:
    """`guitar-distill audit`: out-of-fold NiN students from labels, then cleanlab."""

    folds: int = 4
    epochs: int = 8  # of the student recipe, per fold
    image_size: int = 48  # small photos: a fold trains in about a minute on 2 cores
    seed: int = 1337
    gallery: int = 30  # suspects shown in gallery.png


@dataclass(frozen=True)
class Preset:
    name: str
    data: Data = field(default_factory=Data)
    teacher: Teacher = field(default_factory=Teacher)
    student: Student = field(default_factory=Student)
    distill: Distill = field(default_factory=Distill)
    export: Export = field(default_factory=Export)
    bench: Bench = field(default_factory=Bench)
    audit: Audit = field(default_factory=Audit)


def _describe(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _convert(value, hint, where: str):
    """`value` from TOML, JSON or --set as the type `hint` says; a value of another type is an error."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ToolkitError(f"{where}: expected a table, got {value!r}")
        return _from_table(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option, where)
            except ToolkitError:
                pass
        raise ToolkitError(f"{where}: expected {' or '.join(_describe(a) for a in args)}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or (Ellipsis not in args and len(value) != len(args)):
            raise ToolkitError(f"{where}: expected a list like {_describe(hint)}, got {value!r}")
        items = args[:1] * len(value) if Ellipsis in args else args
        return tuple(_convert(v, h, f"{where}[{i}]") for i, (v, h) in enumerate(zip(value, items)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ToolkitError(f"{where}: expected a table, got {value!r}")
        return {str(k): _convert(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise ToolkitError(f"{where}: expected {_describe(hint)}, got {value!r}")


def _from_table(cls, table: dict, where: str):
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(table) - set(hints))
    if unknown:
        raise ToolkitError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(hints))})")
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in table and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ToolkitError(f"{where}: missing field {missing[0]!r}")
    try:
        return cls(**{k: _convert(v, hints[k], f"{where}.{k}" if where else k) for k, v in table.items()})
    except ToolkitError as e:
        raise ToolkitError(f"{where}: {e}" if where and not str(e).startswith(where) else str(e)) from None


def preset_from_dict(table: dict, where: str = "config") -> Preset:
    """A resolved config (a preset's tables, or a config.json a stage wrote) as a typed Preset."""
    table = {k: v for k, v in table.items() if k != "extended"}  # the run's record, not its config
    return _from_table(Preset, table, where)


def read_config(path: Path) -> Preset:
    """A config.json a stage wrote; fields added since then read as their defaults (off)."""
    import json

    try:
        return preset_from_dict(json.loads(Path(path).read_text()), str(path))
    except (OSError, ValueError) as e:
        raise ToolkitError(f"{path}: cannot read the run's config ({e})") from None


def as_dict(config) -> dict:
    """A config (or one of its tables) as JSON-shaped data: tuples as lists, unset optional fields left out."""

    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if v is not None}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(config))


def resolve_project_path(path) -> Path:
    """A path from a preset: relative ones are the project's (models/..., ../shared/guitars)."""
    path = Path(path)
    return path if path.is_absolute() else PROJECT_ROOT / path


def project_relative(path) -> str:
    """A path as records and reports show it: relative to the project where it lies inside it, so that
    a record reads the same on every machine."""
    full = Path(path).resolve()
    return str(full.relative_to(PROJECT_ROOT)) if full.is_relative_to(PROJECT_ROOT) else str(path)


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def preset_tables(name_or_path: str, _seen: tuple[Path, ...] = ()) -> dict:
    """A preset file's tables merged over its `base` chain's: every field it or a base states."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = PRESET_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise ToolkitError(f"preset {name_or_path!r} not found ({path}); known presets: {', '.join(preset_names())}")
    if path.resolve() in _seen:
        raise ToolkitError(f"preset {path}: `base` chain loops back to itself")
    with open(path, "rb") as f:
        tables = tomllib.load(f)
    name, base = tables.get("name", path.stem), tables.pop("base", None)
    if base:
        tables = _merge(preset_tables(base, (*_seen, path.resolve())), tables)
    tables["name"] = name
    return tables


def load_preset(name_or_path: str) -> Preset:
    """A preset by name (presets/NAME.toml) or path, typed; defaults fill every field it does not state."""
    tables = preset_tables(name_or_path)
    return preset_from_dict(tables, f"preset {tables['name']!r}")


# Tables a preset replaces whole instead of merging field by field: a split is given either by
# counts or by fractions, never by a mix of the base's and the child's.
REPLACED_TABLES = ("split",)


def _merge(base: dict, changes: dict) -> dict:
    out = dict(base)
    for key, value in changes.items():
        merge = isinstance(value, dict) and isinstance(out.get(key), dict) and key not in REPLACED_TABLES
        out[key] = _merge(out[key], value) if merge else value
    return out


def _field_hint(key: str):
    """The type of a dotted field (`teacher.max_epochs`), or an error naming the unknown part."""
    hint = Preset
    for part in key.split("."):
        hints = typing.get_type_hints(hint) if dataclasses.is_dataclass(hint) else {}
        if part not in hints:
            known = ", ".join(sorted(hints)) or "none: it is not a table"
            raise ToolkitError(f"--set {key}: unknown field {part!r} (known: {known})")
        hint = hints[part]
    return hint


def _parse_value(raw: str, hint):
    """--set text as the field's type: text fields take it as typed ("none" stays "none")."""
    lowered = raw.lower()
    if hint is str:
        return raw
    if lowered in ("true", "false"):
        return lowered == "true"
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and str in typing.get_args(hint):
        return raw  # false, or a precision's name
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def with_fields(table, where: str, **changes):
    """A copy of a config table with `changes`, each checked against its field's type (`where` names the table
    in errors)."""
    hints = typing.get_type_hints(type(table))
    unknown = sorted(set(changes) - set(hints))
    if unknown:
        raise ToolkitError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(hints))})")
    return dataclasses.replace(table, **{k: _convert(v, hints[k], f"{where}.{k}") for k, v in changes.items()})


def replace_field(config, key: str, value):
    """A copy of a frozen config with one dotted field (`student.max_epochs`) set."""
    head, _, rest = key.partition(".")
    return dataclasses.replace(config, **{head: replace_field(getattr(config, head), rest, value) if rest else value})


def apply_overrides(config: Preset, overrides: list[str]) -> Preset:
    """`stage.field=value` pairs: the field must exist and the value have its type."""
    for item in overrides:
        key, sep, raw = (s.strip() for s in item.partition("="))
        if not sep:
            raise ToolkitError(f"--set expects stage.field=value, got {item!r}")
        hint = _field_hint(key)
        try:
            config = replace_field(config, key, _convert(_parse_value(raw, hint), hint, key))
        except ToolkitError as e:
            raise ToolkitError(f"--set {key}={raw}: {e}") from None
    return config


def command_name() -> str:
    """How this process was started, for usage lines: `guitar-distill teacher`, `python -m teacher`."""
    if sys.argv[0].startswith("guitar-distill"):
        return sys.argv[0]  # guitar_distill/cli.py sets it
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return f"python -m {spec.name.removesuffix('.__main__')}" if spec and spec.name else Path(sys.argv[0]).name


def stage_parser(description: str, default_preset: str = "full") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=command_name(), description=description)
    parser.add_argument(
        "--preset",
        default=os.environ.get("PRESET", default_preset),
        help=f"preset name ({', '.join(preset_names())}) or path to a .toml file",
    )
    parser.add_argument(
        "--artifacts",
        type=Path,
        default=DEFAULT_ARTIFACTS,
        help="root folder of all stage artifacts (default: %(default)s)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="STAGE.FIELD=VALUE",
        help="override one preset field, e.g. --set teacher.max_epochs=3 (repeatable)",
    )
    return parser


def resolve_config(args: argparse.Namespace) -> Preset:
    return apply_overrides(load_preset(args.preset), args.overrides)


def training_config(description: str, stage: str, argv=None, extra_args=None):
    """Parse a training stage's CLI: the common flags plus --fresh and --max-epochs; returns (args, cfg).

    An epoch is `steps_per_epoch` mini-batches: what the write-up calls a "step".
    """
    parser = stage_parser(description)
    parser.add_argument("--fresh", action="store_true", help="discard an earlier or interrupted run and start over")
    parser.add_argument(
        "--max-epochs", type=int, help='cap on epochs (of steps_per_epoch mini-batches each; the write-up\'s "steps")'
    )
    if extra_args:
        extra_args(parser)
    args = parser.parse_args(argv)
    cfg = resolve_config(args)
    if args.max_epochs is not None:
        if args.max_epochs < 1:
            raise ToolkitError(f"--max-epochs must be at least 1 (got {args.max_epochs})")
        cfg = replace_field(cfg, f"{stage}.max_epochs", args.max_epochs)
    return args, cfg
