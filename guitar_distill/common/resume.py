"""Resuming a run, in one place: which config changes a run may take (a longer budget, a new wall-clock
cap), which inputs it must share with the stages before it, and how many epochs it has done (its backup,
a finished run's history, or a run carried from another machine)."""

from __future__ import annotations

import shutil
from pathlib import Path

from guitar_distill.common.artifacts import read_json, stage_dir, write_json
from guitar_distill.common.config import Preset, as_dict, read_config
from guitar_distill.common.errors import ToolkitError

# A longer budget may continue a run: these fields of the stage's own table may grow on resume.
EXTENDABLE = ("max_epochs", "patience")
# A wall-clock cap says when this invocation stops, and the weights a run started from say how its first
# epoch began (a resumed run restores its own), not what the run is: they may differ on resume.
RUN_LIMITS = ("max_minutes", "weights")


def table_changes(old: Preset, cfg: Preset, table: str) -> list[str]:
    """The fields of `table` whose values differ between two configs, sorted."""
    theirs, ours = as_dict(getattr(old, table)), as_dict(getattr(cfg, table))
    return sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))


def check_upstream(artifacts: Path, cfg: Preset, needs: dict[str, tuple[str, ...]]) -> None:
    """The config.json of each stage this one reads: its `needs[stage]` tables must equal this run's.

    A stage made with another preset (data built with --preset demo, a teacher run with --preset
    full on it) fails here, before any work, with the fields that differ and the two ways out.
    A missing upstream folder is left to the stage's own check, which names the command to run.
    """
    for stage, tables in needs.items():
        path = Path(artifacts) / stage / "config.json"
        if not path.exists():
            continue
        upstream = read_config(path)
        for table in tables:
            fields = table_changes(upstream, cfg, table)
            if fields:
                raise ToolkitError(
                    f"{path.parent} was made with preset {upstream.name!r}, whose [{table}] differs from this "
                    f"run's (preset {cfg.name!r}) in: {', '.join(fields)}. Run with --preset "
                    f"{upstream.name} (the same --set overrides), or remake {stage} with this preset, "
                    f"or use another --artifacts root"
                )


def prepare_run_dir(artifacts: Path, stage: str, cfg: Preset, fresh: bool, keys: tuple[str, ...], grows: str) -> Path:
    """The stage folder; refuses to resume a run whose config differs in the `keys` tables.

    The one allowed difference is a larger `max_epochs` (and `patience`) in the `grows` table, the one the
    stage trains from: the run goes on from where it stopped, its schedule now spanning the new length,
    and config.json's "extended" list records each such change so reports can say so.
    """
    check_upstream(artifacts, cfg, {"data": ("data",)})
    out = Path(artifacts) / stage
    if fresh and out.exists():
        shutil.rmtree(out)
    out = stage_dir(artifacts, stage)
    saved = out / "config.json"
    extended = []
    if saved.exists():
        extended = read_json(saved).get("extended", [])
        grown = grown_fields(read_config(saved), cfg, keys, grows, saved)
        if grown:
            extended.append(extension(out, stage, grown, getattr(cfg, grows).max_epochs))
    write_json(saved, {**as_dict(cfg), "extended": extended})
    return out


def grown_fields(old: Preset, cfg: Preset, keys: tuple[str, ...], grows: str, saved: Path) -> dict:
    """{field: (before, now)} of the `grows` table's EXTENDABLE fields that grew; any other change is an error
    naming the fields."""
    free = EXTENDABLE + RUN_LIMITS
    changed = [f"{t}.{f}" for t in keys for f in table_changes(old, cfg, t) if not (t == grows and f in free)]
    before, now = getattr(old, grows), getattr(cfg, grows)
    grown = {f: (getattr(before, f), getattr(now, f)) for f in EXTENDABLE if getattr(before, f) != getattr(now, f)}
    changed += [f"{grows}.{f} ({a} -> {b}: it may only grow)" for f, (a, b) in grown.items() if b < a]
    if changed:
        raise ToolkitError(
            f"{saved.parent} holds a run made with another config ({saved}): {', '.join(changed)} changed; "
            f"rerun with --fresh to start over, or use another --artifacts root"
        )
    return grown


def extension(out: Path, stage: str, grown: dict, max_epochs: int) -> dict:
    """The "extended" record of a longer budget, and the line that says so; a finished run cannot grow."""
    if (out / "metrics.json").exists() and not (out / "backup").exists():
        raise ToolkitError(
            f"{out} holds a finished run whose resume state was removed, so it cannot be extended "
            f"to {max_epochs} epochs; rerun with --fresh to train the longer run"
        )
    meta = out / "backup" / "training_metadata.json"
    done = read_json(meta)["epoch"] if meta.exists() else None
    print(
        f"{stage}: extending the run in {out}: "
        + ", ".join(f"{f} {a} -> {b}" for f, (a, b) in grown.items())
        + " (the schedule now spans the new length from where the run stopped)"
    )
    return {"after_epoch": done, **{f: {"from": a, "to": b} for f, (a, b) in grown.items()}}


def epochs_done(model, out_dir: Path, steps: int) -> tuple[int, bool]:
    """(epochs already trained, whether the run is finished): from the backup, a finished run's history, or a
    run carried here from another machine (whose weights and schedule position then go into `model`)."""
    from guitar_distill.common.callbacks import completed_epochs
    from guitar_distill.common.carry import carried_epoch, is_finished, resume_carried
    from guitar_distill.common.history import read_history

    if is_finished(out_dir):
        return len(read_history(out_dir / "history.csv")), True
    done = completed_epochs(out_dir / "backup")
    carried = carried_epoch(out_dir)
    if carried:
        resume_carried(model, out_dir, carried * steps)
        return carried, False
    return done, False
