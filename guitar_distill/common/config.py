"""Presets are data: one TOML file per preset under `presets/`, one table per stage.

Every stage CLI takes `--preset NAME` (or a path to a .toml file) and `--set stage.field=value`
to override single fields; the resolved config is written next to the stage's outputs.
"""

from __future__ import annotations

import argparse
import ast
import copy
import os
import sys
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


def load_preset(name_or_path: str, _seen: tuple[Path, ...] = ()) -> dict:
    """A preset file; `base = "other"` inherits every field of that preset and states only changes."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = PRESET_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise ToolkitError(f"preset {name_or_path!r} not found ({path}); known presets: {', '.join(preset_names())}")
    if path.resolve() in _seen:
        raise ToolkitError(f"preset {path}: `base` chain loops back to itself")
    with open(path, "rb") as f:
        cfg = tomllib.load(f)
    name, base = cfg.get("name", path.stem), cfg.pop("base", None)
    if base:
        cfg = _merge(load_preset(base, (*_seen, path.resolve())), cfg)
    cfg["name"] = name
    return cfg


# Tables a preset replaces whole instead of merging field by field: a split is given either by
# counts or by fractions, never by a mix of the base's and the child's.
REPLACED_TABLES = ("split",)


def _merge(base: dict, changes: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        merge = isinstance(value, dict) and isinstance(out.get(key), dict) and key not in REPLACED_TABLES
        out[key] = _merge(out[key], value) if merge else value
    return out


def _parse_value(text: str):
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


# Fields whose presets use more than one type (false, or the name of a precision).
ALTERNATIVE_TYPES = {"mixed_precision": (bool, str)}


def typed_value(key: str, raw: str, current):
    """`raw` parsed, checked against the type of the preset's value, before any work starts."""
    value = _parse_value(raw)
    allowed = ALTERNATIVE_TYPES.get(key.rsplit(".", 1)[-1])
    if current is None or (allowed and isinstance(value, allowed)):
        return value
    if isinstance(current, bool) or isinstance(value, bool):
        if isinstance(current, bool) and isinstance(value, bool):
            return value
    elif isinstance(current, float) and isinstance(value, (int, float)):
        return float(value)
    elif isinstance(current, str):
        return raw  # a text field takes the text as typed ("none" stays "none")
    elif isinstance(value, type(current)):
        return value
    kind = " or ".join(t.__name__ for t in allowed) if allowed else type(current).__name__
    raise ToolkitError(f"--set {key}={raw}: expected {kind} like the preset's value {current!r}")


def apply_overrides(cfg: dict, overrides: list[str]) -> dict:
    """`stage.field=value` pairs; the field must exist in the preset and the value have its type."""
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ToolkitError(f"--set expects stage.field=value, got {item!r}")
        *parents, leaf = key.strip().split(".")
        node = cfg
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ToolkitError(f"--set {key}: no table {part!r} in preset {cfg.get('name')!r}")
            node = node[part]
        if leaf not in node:
            known = ", ".join(sorted(node))
            raise ToolkitError(f"--set {key}: unknown field {leaf!r} (known: {known})")
        node[leaf] = typed_value(key.strip(), raw.strip(), node[leaf])
    return cfg


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


def resolve_config(args: argparse.Namespace) -> dict:
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
        cfg[stage]["max_epochs"] = args.max_epochs
    return args, cfg
