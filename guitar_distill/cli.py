"""`guitar-distill COMMAND [options]`: every stage and tool of an installed copy, one entry point.

In a checkout the same commands are `python -m teacher`, `make teacher`, ...; installed, they are
`guitar-distill teacher` or `python -m guitar_distill.teacher`.
"""
from __future__ import annotations

import runpy
import sys

from guitar_distill.common.errors import ToolkitError, run_cli

COMMANDS = {
    "data": "guitar_distill.dataset", "teacher": "guitar_distill.teacher", "baseline": "guitar_distill.student",
    "distill": "guitar_distill.distill", "export": "guitar_distill.export", "release": "guitar_distill.export.release",
    "latency": "guitar_distill.benchmarks.latency", "accuracy": "guitar_distill.benchmarks.accuracy",
    "robustness": "guitar_distill.benchmarks.robustness", "gradcam": "guitar_distill.benchmarks.gradcam",
    "report": "guitar_distill.benchmarks.report", "student-size": "guitar_distill.benchmarks.student_size",
    "train-rate": "guitar_distill.benchmarks.train_rate", "cache-build": "guitar_distill.benchmarks.cache_build",
    "predict": "guitar_distill.edge.predict", "pi-check": "guitar_distill.checks.pi_check",
    "web-check": "guitar_distill.checks.web_check",
}


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        known = "\n".join(f"  {name:13s} python -m {module}" for name, module in COMMANDS.items())
        print(f"usage: guitar-distill COMMAND [options]   (COMMAND --help for its options)\n\ncommands:\n{known}")
        if argv and argv[0] not in ("-h", "--help"):
            raise ToolkitError(f"unknown command {argv[0]!r}")
        return
    sys.argv = [f"guitar-distill {argv[0]}", *argv[1:]]
    runpy.run_module(COMMANDS[argv[0]], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    run_cli(main)
