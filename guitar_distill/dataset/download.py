"""Fetch the public source set (for users with internet; this project's machines are offline).

Source: github.com/eduardocsilva/guitar-classification-tensorflow, folder `Model Training/images`,
Apache License 2.0. Folders are renamed to the class keys used here.
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from guitar_distill.common.errors import ToolkitError

ARCHIVE_URLS = (
    "https://github.com/eduardocsilva/guitar-classification-tensorflow/archive/refs/heads/main.zip",
    "https://github.com/eduardocsilva/guitar-classification-tensorflow/archive/refs/heads/master.zip",
)
IMAGES_FOLDER = "Model Training/images"
CLASS_KEYS = {
    "fender_stratocaster": "Stratocaster",
    "fender_telecaster": "Telecaster",
    "fender_jazzmaster": "Jazzmaster",
    "fender_jaguar": "Jaguar",
    "fender_mustang": "Mustang",
    "gibson_les_paul": "LesPaul",
    "gibson_SG": "SG",
    "gibson_Flying_V": "FlyingV",
    "gibson_explorer": "Explorer",
    "gibson_firebird": "Firebird",
    "gibson_ES": "ES",
}


def extract_images(archive: Path, dest: Path) -> dict[str, int]:
    """Copy `<repo>/Model Training/images/<folder>/*` out of the archive into `dest/<class key>/`."""
    counts: dict[str, int] = {}
    with zipfile.ZipFile(archive) as zf:
        for name in zf.namelist():
            parts = name.split("/")
            # <repo-branch>/Model Training/images/<folder>/<file>
            if len(parts) != 5 or "/".join(parts[1:3]) != IMAGES_FOLDER or not parts[4]:
                continue
            key = CLASS_KEYS.get(parts[3])
            if key is None:
                continue
            target = dest / key / parts[4]
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(name) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            counts[key] = counts.get(key, 0) + 1
    if not counts:
        raise ToolkitError(f"{archive}: no '{IMAGES_FOLDER}/<class>/' files found in the archive")
    return counts


def download(dest: Path) -> dict[str, int]:
    dest = Path(dest)
    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "source.zip"
        for url in ARCHIVE_URLS:
            try:
                print(f"downloading {url}")
                urllib.request.urlretrieve(url, archive)
                break
            except OSError as e:
                errors.append(f"{url}: {e}")
        else:
            raise ToolkitError("download failed (is this machine online?):\n  " + "\n  ".join(errors))
        return extract_images(archive, dest)
