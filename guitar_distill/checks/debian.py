"""Debian packages a check needs on this machine: installed once with apt-get, as root."""

from __future__ import annotations

import os
import shutil
import subprocess

from guitar_distill.common.errors import ToolkitError


def apt_install(packages: tuple[str, ...], commands: tuple[str, ...], why: str) -> list[str]:
    """The paths of `commands`, installing `packages` first if one is missing (refreshing the package
    list once if the first try fails, as on a machine whose list is old)."""
    found = [shutil.which(c) for c in commands]
    if all(found):
        return found
    if os.geteuid() != 0:
        raise ToolkitError(f"{why} needs Debian's {', '.join(packages)}: sudo apt-get install {' '.join(packages)}")
    print(f"installing {', '.join(packages)} (Debian)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", *packages]
    if subprocess.run(install, capture_output=True, text=True, env=env).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
        result = subprocess.run(install, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise ToolkitError(f"apt-get install {' '.join(packages)} failed:\n{result.stderr[-2000:]}")
    return [shutil.which(c) for c in commands]
