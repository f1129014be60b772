"""One command line: every tool under `guitar-distill`, one exit-code table."""

import importlib.util
import subprocess
import sys

import pytest

from guitar_distill.cli import COMMANDS


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "guitar_distill.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_every_command_names_a_runnable_module():
    for name, module, _ in COMMANDS:
        spec = importlib.util.find_spec(module)
        assert spec is not None, name
        source = spec.origin if not spec.submodule_search_locations else spec.origin.replace("__init__", "__main__")
        assert '__name__ == "__main__"' in open(source).read(), f"{name}: {module} runs nothing as a command"


def test_no_command_or_an_unknown_one_is_a_usage_error_without_a_traceback():
    for args in ((), ("chek", "x")):
        result = cli(*args)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "commands:" in result.stderr and "check " in result.stderr
    assert "unknown command 'chek'" in cli("chek").stderr
    listed = cli("--help")
    assert listed.returncode == 0 and all(f"  {name} " in listed.stdout for name, _, _ in COMMANDS)


@pytest.mark.parametrize("command", ["check", "predict", "audit", "gpu-receive"])
def test_each_command_has_help_and_refuses_a_bad_flag(command):
    assert cli(command, "--help").returncode == 0
    bad = cli(command, "--no-such-flag")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
