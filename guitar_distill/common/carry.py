"""A long run carried to another machine through git: its weights in float16, its history and its place.

BackupAndRestore keeps all a run needs to resume exactly (backup/: weights, optimiser slots, the
schedule's position; 360 MB for the teacher), but only on the machine that ran it. `save_carry` keeps
what git can hold: the weights of the last completed epoch in float16 (47 MB for the teacher), the
history and the config. `restore_carry` seeds a run folder with them elsewhere; the same training
command then goes on with the same schedule and the same stream of batches from that epoch. What is
not carried: the optimiser's momentum, which restarts from zero, and the average of the weights, which
restarts from the carried weights (for an averaged run, those are the average: the backup is written
with it swapped in).

A finished run is carried too: its best weights unrounded (a NiN's: 2.4 MB) and its metrics. The same training command
then finishes it again (model.keras, scores) without training, so a chain of runs longer than one
machine's stay (`make patient`: four runs of over an hour) goes on where it stopped. `save-tree` and
`restore-tree` carry every run under a folder at the same relative paths.

    python -m guitar_distill.common.carry save artifacts/grow/teacher runs/grow-teacher
    python -m guitar_distill.common.carry restore runs/grow-teacher artifacts/grow/teacher
    python -m guitar_distill.common.carry save-tree artifacts/patient runs/patient

(runs/, not models/: a release replaces models/ whole.)
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import h5py
import numpy as np

from guitar_distill.common.artifacts import atomic_path, read_json, write_json
from guitar_distill.common.errors import ToolkitError, run_cli
from guitar_distill.common.history import read_history

WEIGHTS = "carried.weights.h5"
BEST = "best.weights.h5"  # a finished run's, as the training stage names and reads it
RECORD = "carry.json"
RUN_FILES = ("history.csv", "config.json")
METRICS = "metrics.json"


def save_carry(run_dir: Path, dest: Path) -> dict:
    """`dest/`: a run in progress as its last completed epoch's float16 weights, or a finished run as its best
    weights unrounded (its scores come back the same) and its metrics; the history, config and carry.json."""
    run_dir, dest = Path(run_dir), Path(dest)
    backup = run_dir / "backup"
    if (backup / "latest.weights.h5").exists():
        epoch, files = int(read_json(backup / "training_metadata.json")["epoch"]), RUN_FILES
        copy_weights(backup / "latest.weights.h5", dest / WEIGHTS, float16=True)
    elif is_finished(run_dir):
        epoch, files = len(read_history(run_dir / "history.csv")), (*RUN_FILES, METRICS)
        copy_weights(run_dir / BEST, dest / BEST, float16=False)
    else:
        raise ToolkitError(f"{run_dir}: neither a run in progress (backup/) nor a finished run ({METRICS}, {BEST})")
    for name in files:
        with atomic_path(dest / name) as tmp:
            shutil.copy(run_dir / name, tmp)
    finished = METRICS in files
    # what an earlier carry of this run left that this kind of carry does not hold (its float16 weights, once
    # the run has finished): restore would skip it, git would keep it
    for name in (WEIGHTS,) if finished else (BEST, METRICS):
        (dest / name).unlink(missing_ok=True)
    record = {"epoch": epoch, "finished": finished, "from": str(run_dir)}
    write_json(dest / RECORD, record)
    return record


def copy_weights(source: Path, dest: Path, float16: bool) -> None:
    """The layers' weights of a Keras weights file, without the optimiser's (momentum and averages: 2x the
    weights, and rebuilt on the way)."""
    with h5py.File(source, "r") as src, atomic_path(dest) as tmp:
        with h5py.File(tmp, "w") as out:
            for name in src:
                if name != "optimizer":
                    copy_group(src[name], out.create_group(name), float16)


def is_finished(run_dir: Path) -> bool:
    """Its metrics and best weights, and no completed epoch to resume (a run removes backup/ when it ends)."""
    run_dir = Path(run_dir)
    left = (run_dir / "backup" / "training_metadata.json").exists()
    return (run_dir / METRICS).exists() and (run_dir / BEST).exists() and not left


def copy_group(src: h5py.Group, out: h5py.Group, float16: bool) -> None:
    for key, value in src.attrs.items():
        out.attrs[key] = value
    for name, item in src.items():
        if isinstance(item, h5py.Group):
            copy_group(item, out.create_group(name), float16)
        else:
            data = item[()]
            is_float = float16 and isinstance(data, np.ndarray) and data.dtype == np.float32
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
    if (run_dir / "backup").exists() or (run_dir / METRICS).exists():
        raise ToolkitError(f"{run_dir} holds a run of its own; carry it into an empty folder")
    record = read_json(carry / RECORD)
    files = (BEST, METRICS) if record.get("finished") else (WEIGHTS,)
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in (*files, *RUN_FILES, RECORD):
        shutil.copy(carry / name, run_dir / name)
    return record


def carried_runs(root: Path, carries: bool) -> list[Path]:
    """The run folders under `root` (relative paths): carries, or runs in progress or finished; symbolic links
    (a run's data/) are not followed."""
    root = Path(root)
    found = []
    for folder, dirs, _ in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if d != "backup"]
        is_run = (here / "config.json").exists() and (here / "history.csv").exists()
        if is_carry(here) if carries else is_run and ((here / "backup").exists() or is_finished(here)):
            found.append(here.relative_to(root))
    return sorted(found)


def save_tree(root: Path, dest: Path) -> list[tuple[Path, dict]]:
    """Every run under `root` carried to the same relative path under `dest`."""
    return [(rel, save_carry(Path(root) / rel, Path(dest) / rel)) for rel in carried_runs(root, carries=False)]


def restore_tree(carries: Path, root: Path) -> list[tuple[Path, dict | None]]:
    """Every carry under `carries` seeded at its relative path under `root`; a folder that already holds a run
    (its own backup is exact) is left as it is (None)."""
    done = []
    for rel in carried_runs(carries, carries=True):
        target = Path(root) / rel
        has_run = (target / "history.csv").exists()
        done.append((rel, None if has_run else restore_carry(Path(carries) / rel, target)))
    return done


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
    for what, source, dest, text in (
        ("save", "run", "dest", "a run in progress (float16 weights) or finished (its best weights, metrics) -> DEST"),
        ("restore", "carry", "run", "a carry -> an empty run folder; then the same training command"),
        ("save-tree", "root", "dest", "every run under ROOT -> the same paths under DEST"),
        ("restore-tree", "carries", "root", "every carry under CARRIES -> the same paths under ROOT, where empty"),
    ):
        command = sub.add_parser(what, help=text)
        command.add_argument(source, type=Path)
        command.add_argument(dest, type=Path)
    args = parser.parse_args(argv)
    if args.what == "save":
        print_carried(args.run, save_carry(args.run, args.dest), f"into {args.dest}")
    elif args.what == "restore":
        print_carried(args.run, restore_carry(args.carry, args.run), "seeded: run the same training command")
    elif args.what == "save-tree":
        carried = save_tree(args.root, args.dest)
        for rel, record in carried:
            print_carried(args.root / rel, record, f"into {args.dest / rel}")
        print(f"{len(carried)} runs carried into {args.dest}")
    else:
        seeded = restore_tree(args.carries, args.root)
        for rel, record in seeded:
            if record:
                print_carried(args.root / rel, record, "seeded")
            else:
                print(f"{args.root / rel}: holds a run of its own, left as it is")
        print(
            f"{sum(r is not None for _, r in seeded)} of {len(seeded)} runs seeded from {args.carries}: the same "
            "training commands go on from there"
        )


def print_carried(run: Path, record: dict, where: str) -> None:
    state = "finished" if record.get("finished") else "in progress"
    print(f"{run} ({state}, epoch {record['epoch']}) {where}")


if __name__ == "__main__":
    run_cli(main)
