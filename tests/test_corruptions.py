"""Corruptions: shapes, dtypes, seeding, and that severity means more damage."""

import numpy as np
import pytest
from conftest import real_photos, slow_fixture

from guitar_distill.common.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from guitar_distill.edge.images import load_for_model


@slow_fixture(scope="module")
def photo():
    return load_for_model(real_photos("Jazzmaster", 1)[0], 96)


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corruption_contract(photo, name):
    damage = []
    for severity in SEVERITIES:
        out = corrupt(name, photo, severity, seed=5)
        assert out.shape == photo.shape and out.dtype == np.uint8
        assert np.array_equal(out, corrupt(name, photo, severity, seed=5))  # seeded
        damage.append(np.abs(out.astype(int) - photo).mean())
    assert damage[0] > 0
    assert damage[-1] > damage[0]
    assert np.array_equal(photo, load_for_model(real_photos("Jazzmaster", 1)[0], 96))  # input untouched


def test_bad_arguments():
    photo = np.zeros((64, 64, 3), np.uint8)  # the checks come before any pixel is read: no real photo needed
    with pytest.raises(ValueError, match="severity"):
        corrupt("doodle", photo, 0, seed=0)
    with pytest.raises(ValueError, match="uint8"):
        corrupt("doodle", photo.astype(np.float32), 1, seed=0)
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt("fog", photo, 1, seed=0)
