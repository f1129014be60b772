"""One benchmark record: the command, the hardware, the settings used and the results, as JSON plus a
markdown page with the same header and a table. Every benchmark writes through `write_record`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from guitar_distill.benchmarks.hardware import hardware_header, header_markdown
from guitar_distill.common.artifacts import write_json, write_text


def command_line(module: str, argv=None) -> str:
    """The command as typed: `python -m benchmarks.x --flag ...`."""
    return "python -m " + " ".join([module, *(sys.argv[1:] if argv is None else argv)])


def write_record(
    out: Path,
    stem: str,
    module: str,
    argv,
    *,
    title: str,
    settings: dict,
    results,
    table: str,
    hardware: dict | None = None,
    started: float | None = None,
    notes: str = "",
    extra: dict | None = None,
) -> dict:
    """Write OUT/STEM.json and OUT/STEM.md; returns the record.

    `hardware` defaults to this machine's header without compute roofs (latency passes its own, with
    them); `settings` are the values the run actually used, preset fields and flags alike.
    """
    hardware = hardware or hardware_header()
    record = {
        "command": command_line(module, argv),
        "hardware": hardware,
        "settings": settings,
        "results": results,
        **(extra or {}),
    }
    if started is not None:
        record["seconds"] = time.perf_counter() - started
    given = ", ".join(f"{k} {v}" for k, v in settings.items())
    page = (
        f"# {title}\n\n{header_markdown(hardware)}\nCommand: `{record['command']}`  \nSettings: {given}\n\n"
        f"{table}" + (f"\n{notes}" if notes else "")
    )
    out = Path(out)
    write_json(out / f"{stem}.json", record)
    write_text(out / f"{stem}.md", page)
    return record
