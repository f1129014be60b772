"""The Python API: docs/api.md's example run as written (smaller), on a user's own folder of photos."""

import json
import re
import shutil
import subprocess
import sys

import keras
import pytest
from conftest import real_photos

from guitar_distill.common.config import PROJECT_ROOT
from guitar_distill.common.errors import ToolkitError

# Real photos under class names of the user's own: nothing about the task may say "guitar".
CLASSES = {"alpha": "ES", "beta": "SG", "gamma": "Telecaster"}


def user_folder(root):
    for name, source in CLASSES.items():
        (root / "photos" / name).mkdir(parents=True)
        for photo in real_photos(source, 8 * 5)[::5]:
            shutil.copy(photo, root / "photos" / name / photo.name)
    return root / "photos"


def small_teacher(path, num_classes=3):
    """Any Keras classifier: here a small CNN that takes any side."""
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x), name="small_teacher").save(path)
    return path


def docs_example() -> str:
    text = (PROJECT_ROOT / "docs" / "api.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    # One epoch leaves the student's probabilities near uniform, where int8 rounding flips the top answer at
    # will: the test checks the gate runs, not that an untrained model passes it.
    for big, small in (
        ("96", "48"),
        ("epochs=20", "epochs=1"),
        ("threads=[1, 2]", "threads=[1]"),
        ("calibration=data)", "calibration=data, min_agreement=0.0)"),
    ):
        assert big in code, f"docs/api.md's example no longer has {big!r}"
        code = code.replace(big, small)
    return code


@pytest.mark.slow
def test_the_documented_example_runs_on_a_users_folder(tmp_path, monkeypatch):
    user_folder(tmp_path)
    small_teacher(tmp_path / "teacher.keras")
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(docs_example(), "docs/api.md", "exec"), scope)
    data, files, table = scope["data"], scope["files"], scope["table"]
    assert data.classes == ["alpha", "beta", "gamma"] and data.image_size == 48
    assert set(files) == {"tflite_int8", "tflite_fp32", "onnx_int8"} and all(p.exists() for p in files.values())
    assert json.loads((files["tflite_int8"].with_name("model.json")).read_text())["classes"] == data.classes
    assert all(r["p50_ms"][1] > 0 and 0 <= r["top1"] <= 1 for r in table) and len(table) == 3
    metrics = json.loads((data.workdir / "distill-MobileNetV3Small" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 1 and "val_agreement_with_teacher" in metrics
    bundle = tmp_path / "my-bundle"
    web = json.loads((bundle / "web.json").read_text())
    assert web["title"] == "Which one is it?" and web["classes"] == data.classes
    for name in ("README.md", "MODEL_CARD.md", "web.json", "index.html"):
        text = (bundle / name).read_text()
        assert "guitar" not in text.lower(), f"{name} speaks of guitars; the data does not"
    assert "# Which one is it?" in (bundle / "README.md").read_text()
    assert "`alpha`, `beta`, `gamma`" in (bundle / "MODEL_CARD.md").read_text()
    selftest = subprocess.run([sys.executable, "predict.py", "--selftest"], cwd=bundle, capture_output=True, text=True)
    assert selftest.returncode == 0 and "0 failed" in selftest.stdout, selftest.stdout + selftest.stderr
    # A model file the toolkit did not train exports the same way (float32: held to the Keras model's answers).
    teacher = scope["gd"].export("teacher.keras", "teacher-out", formats=["tflite_fp32"], calibration=data)
    assert teacher.parity["tflite_fp32"]["agreement"] == 1.0 and teacher.name == "small_teacher"
    online_distillation_runs_the_given_teacher(scope["gd"], scope["student"], data, monkeypatch)


def test_models_that_break_the_contract_are_refused_naming_the_problem(tmp_path):
    from guitar_distill.api import keras_model

    inputs = keras.Input((32, 32, 3))
    logits = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(inputs))
    with pytest.raises(ToolkitError, match=r"student: the last layer .* is not a softmax"):
        keras_model(keras.Model(inputs, logits), "student", 3, 32)
    softmax = keras.Model(inputs, keras.layers.Softmax()(logits))
    with pytest.raises(ToolkitError, match=r"input shape \(None, 32, 32, 3\), expected RGB images \(None, 48, 48, 3\)"):
        keras_model(softmax, "student", 3, 48)
    with pytest.raises(ToolkitError, match=r"output shape \(None, 3\), expected \(None, 5\)"):
        keras_model(softmax, "teacher", 5)
    gray = keras.Input((32, 32, 1))
    with pytest.raises(ToolkitError, match="expected RGB images"):
        keras_model(keras.Model(gray, keras.layers.Softmax()(keras.layers.Flatten()(gray))), "model")
    with pytest.raises(ToolkitError, match="nope.keras: no such file"):
        keras_model(tmp_path / "nope.keras", "teacher")


def test_a_preset_names_its_student_by_architecture_or_by_builder():
    from dataclasses import replace

    from guitar_distill.common.config import apply_overrides, load_preset
    from guitar_distill.student.architectures import build_student, student_name

    cfg = load_preset("smoke")
    mobile = apply_overrides(cfg, ["student.architecture=mobilenet_v3_small", "student.alpha=0.25"]).student
    model = build_student(mobile, 3, 32)
    assert student_name(mobile) == "MobileNetV3-Small" and model.output_shape == (None, 3)
    own = replace(cfg.student, architecture="test_api:small_builder")
    assert build_student(own, 3, 32).name == "small_builder_model" and student_name(own) == "small_builder"
    with pytest.raises(ToolkitError, match="cannot import 'no_such_module'"):
        build_student(replace(cfg.student, architecture="no_such_module:f"), 3, 32)
    with pytest.raises(ToolkitError, match="has no function 'nope'"):
        build_student(replace(cfg.student, architecture="test_api:nope"), 3, 32)
    with pytest.raises(ToolkitError, match="use one of 'nin', 'mobilenet_v3_small'"):
        apply_overrides(cfg, ["student.architecture=resnet"])
    with pytest.raises(ToolkitError, match="not a softmax"):
        build_student(replace(cfg.student, architecture="test_api:logits_builder"), 3, 32)


def small_builder(num_classes, input_size):
    inputs = keras.Input((input_size, input_size, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x), name="small_builder_model")


def logits_builder(num_classes, input_size):
    inputs = keras.Input((input_size, input_size, 3))
    return keras.Model(inputs, keras.layers.Dense(num_classes)(keras.layers.GlobalAveragePooling2D()(inputs)))


def test_a_teacher_given_as_a_model_is_saved_once_for_its_weights(tmp_path):
    """Stored teacher outputs are keyed on the file: the same weights find the same file, other weights another."""
    from guitar_distill.api import model_file

    teacher = keras.saving.load_model(small_teacher(tmp_path / "teacher.keras"))
    first = model_file(teacher, tmp_path / "teachers")
    again = model_file(teacher, tmp_path / "teachers")
    assert first == again and first.exists() and first.parent == tmp_path / "teachers"
    teacher.set_weights([w + 1 for w in teacher.get_weights()])
    assert model_file(teacher, tmp_path / "teachers") != first
    assert model_file(tmp_path / "teacher.keras", tmp_path / "teachers") == (tmp_path / "teacher.keras").resolve()


def online_distillation_runs_the_given_teacher(gd, student, data, monkeypatch):
    """Online, a teacher given as a Keras model is the one that runs: not loaded again from the file saved for it."""
    from guitar_distill.common import models

    teacher = keras.models.load_model("teacher.keras")

    def no_reload(path, *args, **kwargs):
        raise AssertionError(f"the teacher was loaded again from {path}")

    monkeypatch.setattr(models, "load_model_file", no_reload)
    gd.distill(teacher, student, data, epochs=1, outputs="online", fresh=True)
    metrics = json.loads((data.workdir / f"distill-{student.name}" / "metrics.json").read_text())
    assert metrics["teacher_logits"] == "online" and metrics["epochs_run"] == 1
