"""Fixtures: a few real photos copied from ../shared/guitars, and smoke artifacts built once."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from guitar_distill.common.config import PROJECT_ROOT

SHARED_PHOTOS = PROJECT_ROOT.parent / "shared" / "guitars"
SMOKE_CLASSES = ("ES", "FlyingV", "Telecaster")
PHOTOS_PER_CLASS = 10  # the smoke split takes 6 train, 2 val, 2 test


# The fast tier (`pytest -m "not slow"`): no photos from ../shared, no trained smoke models, no
# subprocess stages. A fixture that needs them is declared with @slow_fixture, and every test that
# takes it, directly or through another fixture, is in the slow tier; other tests are marked where they are.
SLOW_FIXTURES: set[str] = set()


def slow_fixture(*args, **kwargs):
    """pytest.fixture for a fixture that reads ../shared photos, trains models or runs stages."""

    def register(function):
        SLOW_FIXTURES.add(function.__name__)
        return pytest.fixture(*args, **kwargs)(function)

    return register


def real_photos(label: str, count: int) -> list[Path]:
    if not SHARED_PHOTOS.is_dir():
        pytest.fail(f"the shared photos are missing: {SHARED_PHOTOS}")
    return sorted((SHARED_PHOTOS / label).glob("*.jpg"))[:count]


def photo_stack(classes, per_class: int, size: int) -> np.ndarray:
    """The first `per_class` real photos of each class, decoded for a model at `size` px, class by class
    (uint8, N x size x size x 3)."""
    from guitar_distill.edge.images import load_for_model

    return np.stack([load_for_model(p, size) for c in classes for p in real_photos(c, per_class)])


def split_images(artifacts: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of a split of a data stage's run, from its decode cache."""
    from guitar_distill.common.cache import load_split
    from guitar_distill.common.manifest import load_data_info

    return load_split(load_data_info(artifacts), split)


def copy_photos(dest: Path, classes=SMOKE_CLASSES, per_class=PHOTOS_PER_CLASS) -> Path:
    for label in classes:
        (dest / label).mkdir(parents=True, exist_ok=True)
        # Every 7th photo: spread over the folder, and clear of the shared set's duplicate pairs.
        for src in real_photos(label, per_class * 7)[::7][:per_class]:
            shutil.copy(src, dest / label / src.name)
    return dest


@slow_fixture()
def photo_source(tmp_path) -> Path:
    return copy_photos(tmp_path / "photos")


def run_stage(module: str, *args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python -m guitar_distill.MODULE args` in the project root (MODULE: "dataset", "export.release", ...); a
    failure or a run past `timeout` fails the test with its output.

    A run still going at `timeout` gets SIGABRT, on which Python's faulthandler prints every thread's stack:
    a hung stage fails with where it waits, not only that it waited.
    """
    full_env = {
        **os.environ,
        "KERAS_VERBOSE": "2",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONFAULTHANDLER": "1",
        **(env or {}),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", f"guitar_distill.{module}", *args],
        cwd=PROJECT_ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        try:
            stdout, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        raise AssertionError(
            f"python -m {module} {' '.join(args)} still running after {timeout} s; its stacks:\n"
            f"{stdout[-3000:]}\n{stderr[-12000:]}"
        ) from None
    result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    if result.returncode != 0:
        raise AssertionError(
            f"python -m {module} {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


@slow_fixture(scope="session")
def edge_python(tmp_path_factory) -> Path:
    """A venv with only what the edge bundle needs (ai-edge-litert, numpy, pillow), at this venv's versions."""
    import importlib.metadata as md

    venv = tmp_path_factory.mktemp("edge") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    pins = [f"{d}=={md.version(d)}" for d in ("ai-edge-litert", "numpy", "pillow")]
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", *pins], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True
    ).stdout
    assert "tensorflow" not in listed and "keras" not in listed and "guitar" not in listed
    return python


@slow_fixture(scope="session")
def smoke_artifacts(tmp_path_factory) -> Path:
    """data -> teacher -> student -> distill on the smoke preset, once per test session."""
    root = tmp_path_factory.mktemp("smoke")
    source = copy_photos(root / "photos")
    artifacts = root / "artifacts"
    common = ("--preset", "smoke", "--artifacts", str(artifacts))
    run_stage("dataset", *common, "--source", str(source))
    for stage in ("teacher", "student", "distill"):
        run_stage(stage, *common)
    return artifacts


@slow_fixture(scope="session")
def exported(smoke_artifacts) -> Path:
    """The smoke models exported in every format, with the edge bundle, once per test session."""
    run_stage("export", "--preset", "smoke", "--artifacts", str(smoke_artifacts))
    return smoke_artifacts


# `make test` runs pytest-xdist with --dist loadgroup: the tests that take the smoke models run on one
# worker, which builds them once (about 215 s on 2 cores), instead of on each worker that draws one.
# xdist reads the group from the test's own marks, so each such test carries @smoke_models (checked below).
smoke_models = pytest.mark.xdist_group("smoke_models")
SMOKE_MODEL_FIXTURES = {"smoke_artifacts", "exported"}


def pytest_collection_modifyitems(config, items):
    unmarked = []
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if SLOW_FIXTURES & fixtures:
            item.add_marker(pytest.mark.slow)
        if SMOKE_MODEL_FIXTURES & fixtures and item.get_closest_marker("xdist_group") is None:
            unmarked.append(item.nodeid)
    if unmarked:
        raise pytest.UsageError(
            "tests that take the smoke models need @smoke_models (tests/conftest.py): " + ", ".join(unmarked)
        )


def pytest_collection_finish(session):
    """On an xdist worker under --dist loadgroup, the group must have reached the test's id (`name@group`),
    which is all the scheduler reads; pytest 9.2 with xdist 3.8 drops it silently (pytest-xdist#1386)."""
    if not getattr(session.config.option, "loadgroup", False):
        return
    lost = [
        item.nodeid
        for item in session.items
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid.rsplit("]", 1)[-1]
    ]
    if lost:
        raise pytest.UsageError(
            f"pytest {pytest.__version__} with this pytest-xdist ignores xdist_group marks "
            f"(pytest-dev/pytest-xdist#1386): install the dev extra's pytest (<9.2); {lost[0]}"
        )
