"""A long run carried to another machine through git: its weights in float16, its history and its place.

BackupAndRestore keeps all a run needs to resume exactly (backup/: weights, optimiser slots, the
schedule's position; 360 MB for the teacher), but only on the machine that ran it. `save_carry` keeps
what git can hold: the weights of the last completed epoch in float16 (47 MB for the teacher), the
history and the config. `restore_carry` seeds a run folder with them elsewhere; the same training
command then goes on with the same schedule and the same stream of batches from that epoch. What is
not carried: the optimiser's momentum, which restarts from zero, and the average of the weights, which
restarts from the carried weights (for an averaged run, those are the average: the backup is written
with it swapped in).

    python -m guitar_distill.common.carry save artifacts/grow/teacher runs/grow-teacher
    python -m guitar_distill.common.carry restore runs/grow-teacher artifacts/grow/teacher

(runs/, not models/: a release replaces models/ whole.)
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import h5py
import numpy as np

from guitar_distill.common.artifacts import atomic_path, read_json, write_json
from guitar_distill.common.errors import ToolkitError, run_cli

WEIGHTS = "carried.weights.h5"
RECORD = "carry.json"
RUN_FILES = ("history.csv", "config.json")


def save_carry(run_dir: Path, dest: Path) -> dict:
    """`dest/`: the run's last completed epoch as float16 weights, its history and config, and carry.json."""
    run_dir, dest = Path(run_dir), Path(dest)
    backup = run_dir / "backup"
    if not (backup / "latest.weights.h5").exists():
        raise ToolkitError(f"{backup}: no backup of a run in progress to carry (a finished run has its model.keras)")
    epoch = int(read_json(backup / "training_metadata.json")["epoch"])
    dest.mkdir(parents=True, exist_ok=True)
    with h5py.File(backup / "latest.weights.h5", "r") as src, atomic_path(dest / WEIGHTS) as tmp:
        with h5py.File(tmp, "w") as out:
            for name in src:
                if name != "optimizer":  # momentum and averages: 2x the weights, and rebuilt on the way
                    copy_as_float16(src[name], out.create_group(name))
    for name in RUN_FILES:
        shutil.copy(run_dir / name, dest / name)
    record = {"epoch": epoch, "from": str(run_dir)}
    write_json(dest / RECORD, record)
    return record


def copy_as_float16(src: h5py.Group, out: h5py.Group) -> None:
    for key, value in src.attrs.items():
        out.attrs[key] = value
    for name, item in src.items():
        if isinstance(item, h5py.Group):
            copy_as_float16(item, out.create_group(name))
        else:
            data = item[()]
            is_float = isinstance(data, np.ndarray) and data.dtype == np.float32
            # a value past float16's range stays float32: the first batch norm's variance over raw pixels can pass
            # 65,504 and would load as inf
            fits = is_float and (not data.size or np.abs(data).max() <= np.finfo(np.float16).max)
            out.create_dataset(name, data=data.astype(np.float16) if fits else data)


def is_carry(path: Path) -> bool:
    return (Path(path) / RECORD).is_file()


def restore_carry(carry: Path, run_dir: Path) -> dict:
    """Seed `run_dir` from a carry; refuses a folder that has a run of its own (its backup is exact)."""
    carry, run_dir = Path(carry), Path(run_dir)
    if not (carry / RECORD).exists():
        raise ToolkitError(f"{carry}: no {RECORD}: not a carried run (python -m guitar_distill.common.carry save)")
    if (run_dir / "backup").exists() or (run_dir / "metrics.json").exists():
        raise ToolkitError(f"{run_dir} holds a run of its own; carry it into an empty folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in (WEIGHTS, *RUN_FILES, RECORD):
        shutil.copy(carry / name, run_dir / name)
    return read_json(carry / RECORD)


def carried_epoch(run_dir: Path) -> int:
    """The epochs a carry seeded `run_dir` with (0: none); only a folder without a backup of its own."""
    record = Path(run_dir) / RECORD
    if (Path(run_dir) / "backup" / "training_metadata.json").exists() or not record.exists():
        return 0
    return int(read_json(record)["epoch"])


def resume_carried(model, run_dir: Path, steps_done: int) -> None:
    """The carried weights into a compiled model; the optimiser's step count (the schedule's position) set and
    its averages, if any, started from the weights."""
    model.load_weights(Path(run_dir) / WEIGHTS)
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    optimizer.iterations.assign(steps_done)
    for average, variable in zip(getattr(optimizer, "_model_variables_moving_average", []), model.trainable_variables):
        average.assign(variable)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Carry a training run to another machine through git.")
    sub = parser.add_subparsers(dest="what", required=True)
    save = sub.add_parser("save", help="a run in progress -> DEST (float16 weights, history, config)")
    save.add_argument("run", type=Path)
    save.add_argument("dest", type=Path)
    restore = sub.add_parser("restore", help="a carry -> an empty run folder; then the same training command")
    restore.add_argument("carry", type=Path)
    restore.add_argument("run", type=Path)
    args = parser.parse_args(argv)
    if args.what == "save":
        record = save_carry(args.run, args.dest)
        print(f"carried {args.run} at epoch {record['epoch']} into {args.dest}")
    else:
        record = restore_carry(args.carry, args.run)
        print(f"{args.run} seeded at epoch {record['epoch']}: run the same training command to go on from there")


if __name__ == "__main__":
    run_cli(main)
