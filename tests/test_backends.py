"""The JAX backend, data-parallel over two (host) devices: teacher and distillation smoke runs."""
import json

import pytest

from conftest import run_stage

pytest.importorskip("jax")


def test_jax_two_device_teacher_and_distillation(photo_source, tmp_path):
    artifacts = tmp_path / "art"
    common = ("--preset", "smoke", "--artifacts", str(artifacts))
    env = {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    run_stage("dataset", *common, "--source", str(photo_source))
    run_stage("teacher", *common, env=env)
    teacher = json.loads((artifacts / "teacher" / "metrics.json").read_text())
    assert teacher["backend"] == "jax" and len(teacher["devices"]) == 2
    assert teacher["epochs_run"] == 2
    # Known answer: the JAX-trained file, loaded under TensorFlow, scores what the run recorded.
    from guitar_distill.common.models import load_model_file
    from guitar_distill.common.runtimes import accuracy, predict_all
    from guitar_distill.common.cache import load_split
    from guitar_distill.common.manifest import load_data_info
    x, y = load_split(load_data_info(artifacts), "val")
    probs = predict_all(load_model_file(artifacts / "teacher" / "model.keras"), x)
    assert teacher["val_accuracy"] == pytest.approx(accuracy(probs, y))
    run_stage("distill", *common, env=env)
    distilled = json.loads((artifacts / "distill" / "metrics.json").read_text())
    assert distilled["backend"] == "jax" and "val_agreement_with_teacher" in distilled
