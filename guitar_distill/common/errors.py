"""One error type for what a user can fix, and the one place the command line turns it into an exit code."""

from __future__ import annotations


class ToolkitError(Exception):
    """Bad input, a missing file or stage, a setting that cannot work: the message says which and what to do."""


def run_cli(main) -> None:
    """Run a command's main(): a ToolkitError becomes its message on stderr and exit status 1; main's
    return value, if any, is the exit status."""
    try:
        code = main()
    except ToolkitError as e:
        raise SystemExit(str(e)) from None
    raise SystemExit(code)
