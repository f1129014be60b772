"""Grad-CAM: it finds the quadrant that decides the class; shapes and ranges on both builders."""

import json

import keras
import numpy as np
import pytest
from conftest import run_stage, smoke_models

from guitar_distill.benchmarks.gradcam import grad_cam, map_agreement, upsample
from guitar_distill.student.model import LAST_FEATURES, build_nin_student
from guitar_distill.teacher.model import LAST_CONV_LAYER, build_teacher


def quadrant_data(n=320, seed=0):
    """Class 1: a red square somewhere in the top-left quadrant; class 0: noise only."""
    rng = np.random.default_rng(seed)
    x = rng.integers(40, 216, (n, 64, 64, 3)).astype(np.float32)
    y = rng.integers(0, 2, n)
    for i in np.flatnonzero(y):
        r, c = rng.integers(2, 20, 2)
        x[i, r : r + 10, c : c + 10] = (230, 20, 20)
    return x, y


def test_gradcam_mass_falls_in_the_deciding_quadrant():
    keras.utils.set_random_seed(0)
    L = keras.layers
    inputs = keras.Input((64, 64, 3))
    h = L.Rescaling(1 / 255)(inputs)
    h = L.MaxPooling2D(2)(L.Conv2D(16, 3, padding="same", activation="relu")(h))
    h = L.MaxPooling2D(2)(L.Conv2D(16, 3, padding="same", activation="relu")(h))
    h = L.Conv2D(16, 3, padding="same", activation="relu", name="features")(h)
    model = keras.Model(inputs, L.Softmax()(L.GlobalAveragePooling2D()(L.Conv2D(2, 1)(h))))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    x, y = quadrant_data()
    model.fit(x, y, epochs=12, batch_size=32, verbose=0)
    assert np.mean(model.predict(x, verbose=0).argmax(1) == y) > 0.9
    positives = x[y == 1][:32]
    cams, probs = grad_cam(model, positives, "features", class_index=1)
    assert cams.shape == (32, 16, 16) and probs.shape == (32, 2)
    mass = [upsample(c, 64)[:32, :32].sum() / upsample(c, 64).sum() for c in cams]
    assert np.median(mass) > 0.8  # a quarter of the image, most of the attention


@pytest.mark.parametrize(
    "builder,layer,cells",
    [
        (lambda: build_teacher(3, 64), LAST_CONV_LAYER, 2),
        (lambda: build_nin_student(3, 64, (8, 8, 8)), LAST_FEATURES, 4),
    ],
)
def test_maps_have_the_layer_shape_and_unit_range(builder, layer, cells):
    model = builder()
    x = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    cams, probs = grad_cam(model, x, layer)
    assert cams.shape == (2, cells, cells) and cams.dtype == np.float32
    assert cams.min() >= 0.0 and cams.max() <= 1.0
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


def test_map_agreement():
    yy, xx = np.mgrid[0:10, 0:10]
    a = np.exp(-((yy - 1) ** 2 + (xx - 1) ** 2) / 4.0)  # a blob top-left
    b = np.exp(-((yy - 8) ** 2 + (xx - 8) ** 2) / 4.0)  # and one bottom-right
    assert map_agreement(a, a) == {"correlation": pytest.approx(1.0), "iou_top20": 1.0}
    assert map_agreement(a, b)["iou_top20"] == 0.0 and map_agreement(a, b)["correlation"] < 0
    assert map_agreement(a, np.ones((10, 10))) == {"correlation": 0.0, "iou_top20": 0.0}


@smoke_models
def test_gradcam_cli_on_smoke_models(smoke_artifacts):
    run_stage(
        "benchmarks.gradcam",
        "--preset",
        "smoke",
        "--artifacts",
        str(smoke_artifacts),
        "--per-class",
        "1",
        "--corrupt",
        "doodle",
    )
    out = smoke_artifacts / "bench" / "gradcam"
    assert (out / "grid_00_doodle.png").stat().st_size > 1000
    result = json.loads((out / "agreement_doodle.json").read_text())["results"]
    assert len(result["photos"]) == 3 and set(result["per_class"]) == {"ES", "FlyingV", "Telecaster"}
    assert "doodle_correlation" in result["overall"]
    assert {"teacher", "student", "correlation", "iou_top20"} <= set(result["photos"][0]["doodle"])
