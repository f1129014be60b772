"""Export on smoke models: every format, the parity gate, the edge bundle and its predictor."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import real_photos, smoke_models, split_images
from PIL import Image

from guitar_distill.common.config import PROJECT_ROOT
from guitar_distill.common.layout import MODEL_STAGES
from guitar_distill.common.models import load_model_file
from guitar_distill.export.parity import ParityError, gate, measure

FORMATS = {"teacher": ["onnx_fp32", "onnx_int8", "tflite_fp32", "tflite_fp16", "tflite_dynamic_int8", "tflite_int8"]}
FORMATS["student"] = FORMATS["teacher"] + ["tflite_qat_int8"]


@smoke_models
def test_every_format_written_and_within_its_gate(exported):
    parity = json.loads((exported / "export" / "parity.json").read_text())
    for model, formats in FORMATS.items():
        parameters = load_model_file(exported / MODEL_STAGES[model] / "model.keras").count_params()
        for fmt in formats:
            folder = exported / "export" / model / fmt
            assert (folder / "labels.txt").read_text().split() == ["ES", "FlyingV", "Telecaster"]
            meta = json.loads((folder / "model.json").read_text())
            assert meta["format"] == fmt and len(meta["sha256"]) == 64
            # Each file says what its network costs: a runtime file alone (the released teacher) cannot.
            assert meta["network"]["parameters"] == parameters and meta["network"]["macs"] > parameters
            r = parity[f"{model}/{fmt}"]
            assert r["images"] == 6
            if fmt in ("onnx_fp32", "tflite_fp32"):
                assert r["agreement"] >= 0.999 and r["max_prob_diff"] < 1e-3
        assert parity[f"{model}/onnx_fp32"]["batch_max_diff"] < 1e-4
    assert (
        json.loads((exported / "export" / "student" / "tflite_int8" / "model.json").read_text())["input"]["dtype"]
        == "uint8"
    )
    assert "| student | tflite_qat_int8 |" in (exported / "export" / "parity.md").read_text()


@smoke_models
def test_gate_catches_a_preprocessing_mismatch(exported):
    from guitar_distill.common.cache import load_split
    from guitar_distill.common.manifest import load_data_info

    info = load_data_info(exported)
    x, y = load_split(info, "val")
    model = exported / "export" / "student" / "tflite_fp32" / "model.tflite"
    from guitar_distill.common.runtimes import open_classifier, predict_all

    reference = predict_all(open_classifier(model), x)
    gate("student/tflite_fp32", model, measure(model, x, y, reference), 0.999, 1e-3)  # the file against itself
    # What a caller who scales pixels to 0..1 (a preprocessing mismatch) would compare against: the
    # probabilities move even where the answer does not, and the fp32 tolerance sees it.
    wrong = predict_all(open_classifier(model), np.asarray(x, np.float32) / 255.0)
    with pytest.raises(ParityError, match="max probability difference"):
        gate("student/tflite_fp32", model, measure(model, x, y, wrong), 0.999, 1e-3)
    # A reference whose classes are rotated disagrees on every photo: caught by fp32 and quantised gates.
    rotated = measure(model, x, y, np.roll(reference, 1, axis=1))
    assert rotated["agreement"] == 0.0
    with pytest.raises(ParityError, match="argmax agreement 0.0000 < 0.999"):
        gate("student/tflite_fp32", model, rotated, 0.999, 1e-3)
    with pytest.raises(ParityError, match="argmax agreement 0.0000 < 0.85"):
        gate("student/tflite_int8", model, rotated, 0.85)


def test_gate_on_known_results():
    ok = {"agreement": 0.9, "max_prob_diff": 0.3, "images": 10}
    gate("m/tflite_int8", "f", ok, 0.85)  # quantised: agreement only
    with pytest.raises(ParityError, match="max probability difference 3.00e-01 > 0.001"):
        gate("m/tflite_fp32", "f", dict(ok, agreement=1.0), 0.999, 1e-3)
    with pytest.raises(ParityError, match="batch 1 vs batch 8"):
        gate("m/onnx_fp32", "f", dict(ok, agreement=1.0, max_prob_diff=0.0, batch_max_diff=0.01), 0.999, 1e-3)


def bundle(exported):
    return exported / "edge" / "guitar-student"


def predict(exported, *args, python=sys.executable, cwd=None):
    script = bundle(exported) / "predict.py"
    return subprocess.run([python, str(script), *args], capture_output=True, text=True, timeout=300, cwd=cwd)


@smoke_models
def test_bundle_contents_and_predictions(exported):
    b = bundle(exported)
    for name in (
        "model.tflite",
        "model_fp32.tflite",
        "labels.txt",
        "model.json",
        "model_fp32.json",
        "predict.py",
        "images.py",
        "check.py",
        "README.md",
        "golden/expected.json",
        "golden/expected_model_fp32.json",
    ):
        assert (b / name).exists(), name
    assert (b.parent / "guitar-student.tar.gz").stat().st_size > 1000
    from guitar_distill.edge.images import load_for_model
    from guitar_distill.edge.predict import TFLiteClassifier

    photo = real_photos("ES", 1)[0]
    labels = (b / "labels.txt").read_text().split()
    for model in ("model.tflite", "model_fp32.tflite"):
        result = predict(exported, str(photo), "--json", "--top-k", "2", "--model", str(b / model))
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout)
        classifier = TFLiteClassifier(b / model)
        probs = classifier.predict(load_for_model(photo, classifier.size)[None])[0]
        best = np.argsort(-probs, kind="stable")[:2]
        assert out[0]["file"] == str(photo)
        assert out[0]["top"] == [[labels[i], round(float(probs[i]), 4)] for i in best]  # the file's own answer


@smoke_models
def test_predict_keeps_the_faster_file_and_says_why(exported, tmp_path, monkeypatch):
    import guitar_distill.edge.predict as predict_module

    copy = tmp_path / "bundle"
    shutil.copytree(bundle(exported), copy)
    timed = []

    def fake_time(classifier, runs=30):  # int8 slower than float32 here: the AVX2 / Cortex-A72 case
        timed.append(classifier.path.name)
        return {"model.tflite": 1.6, "model_fp32.tflite": 1.2}[classifier.path.name]

    monkeypatch.setattr(predict_module, "time_model", fake_time)
    chosen, why = predict_module.choose_model(copy, threads=1)
    assert chosen.name == "model_fp32.tflite" and "1.20 ms" in why and "1.60 ms" in why and "first use" in why
    assert sorted(timed) == ["model.tflite"] * 3 + ["model_fp32.tflite"] * 3  # alternating rounds
    record = json.loads((copy / ".fastest.json").read_text())
    assert record["choice"] == "model_fp32.tflite" and record["threads"] == 1
    timed.clear()
    chosen, why = predict_module.choose_model(copy, threads=1)  # cached: nothing timed again
    assert chosen.name == "model_fp32.tflite" and not timed and "as timed before" in why
    predict_module.choose_model(copy, threads=2)  # another thread count is another question
    assert len(timed) == 6
    timed.clear()
    record = json.loads((copy / ".fastest.json").read_text())
    (copy / ".fastest.json").write_text(json.dumps({**record, "cpu": "another machine"}))
    predict_module.choose_model(copy, threads=2)  # another CPU: timed again
    assert len(timed) == 6
    # the self-test checks whichever file runs, against that file's own golden answers
    for model in ("model.tflite", "model_fp32.tflite"):
        result = predict(exported, "--selftest", "--model", str(copy / model))
        assert result.returncode == 0 and " 0 failed" in result.stdout, result.stdout + result.stderr


@smoke_models
def test_bad_inputs_are_reported_and_others_still_processed(exported, tmp_path):
    good = tmp_path / "good.jpg"
    shutil.copy(real_photos("FlyingV", 1)[0], good)
    (tmp_path / "text.jpg").write_text("hello")
    (tmp_path / "cut.jpg").write_bytes(good.read_bytes()[:1500])
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    alpha = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    alpha.save(tmp_path / "alpha.png")
    Image.new("L", (7000, 7000)).save(tmp_path / "huge.png")
    result = predict(exported, str(tmp_path), "--json")
    assert result.returncode == 1
    by_file = {os.path.basename(r["file"]): r for r in json.loads(result.stdout)}
    assert "top" in by_file["good.jpg"] and "top" in by_file["alpha.png"]
    assert by_file["text.jpg"]["error"] == "not an image"
    assert by_file["cut.jpg"]["error"].startswith("truncated or corrupt")
    assert by_file["dot.png"]["error"].startswith("too small")
    assert by_file["huge.png"]["error"].startswith("too many pixels")


@smoke_models
def test_bad_model_files(exported, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(bundle(exported), copy)
    photo = str(real_photos("SG", 1)[0])
    script = str(copy / "predict.py")
    run = lambda *a: subprocess.run([sys.executable, script, *a], capture_output=True, text=True)  # noqa: E731
    missing = run(photo, "--model", str(copy / "nope.tflite"))
    assert missing.returncode == 1 and "nope.tflite: model file not found" in missing.stderr
    (copy / "model.tflite").write_bytes((copy / "model.tflite").read_bytes()[:-10] + b"0123456789")
    tampered = run(photo)
    assert tampered.returncode == 1 and "sha256 does not match" in tampered.stderr
    (copy / "model.json").unlink()
    (copy / "model.tflite").write_bytes(b"garbage" * 100)
    corrupt = run(photo)
    assert corrupt.returncode == 1 and "not a valid TFLite model" in corrupt.stderr


@smoke_models
def test_edge_predict_module_in_the_project(exported):
    model = bundle(exported) / "model.tflite"
    photo = str(real_photos("SG", 1)[0])
    result = subprocess.run(
        [sys.executable, "-m", "guitar_distill.edge.predict", photo, "--model", str(model)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    as_json = json.loads(predict(exported, photo, "--json", "--model", str(model)).stdout)[0]["top"]
    assert result.stdout.strip() == f"{photo}: " + ", ".join(f"{label} {p:.1%}" for label, p in as_json)


@smoke_models
def test_selftest_in_a_minimal_environment(exported, tmp_path, edge_python):
    """The bundle runs where only ai-edge-litert, numpy and pillow are installed."""
    python = edge_python
    target = tmp_path / "guitar-student"
    shutil.copytree(bundle(exported), target)
    result = subprocess.run(
        [str(python), str(target / "predict.py"), "--selftest"], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed" in result.stdout and " 0 failed" in result.stdout


def release_args(artifacts: Path, dest: Path) -> tuple[str, ...]:
    return ("--preset", "smoke", "--artifacts", str(artifacts), "--dest", str(dest))


@pytest.fixture(scope="module")
def released(exported, tmp_path_factory) -> Path:
    """models/ made from the smoke run's artifacts, once for the tests below."""
    from conftest import run_stage

    dest = tmp_path_factory.mktemp("release") / "models"
    run_stage("export.release", *release_args(exported, dest))
    return dest


@smoke_models
def test_the_release_holds_the_models_their_records_and_the_card(exported, released):
    release = json.loads((released / "RELEASE.json").read_text())
    assert set(release["files"]) == {
        "student/keras/model.keras",
        "student/tflite_int8/model.tflite",
        "student/tflite_qat_int8/model.tflite",
        "student/onnx_fp32/model.onnx",
        "student/onnx_int8/model.onnx",
        "teacher/keras_fp16/model.keras",
        "student/guitar-student/model.tflite",
        "student/guitar-student/model_fp32.tflite",
    }
    bundle_card = released / "student" / "guitar-student" / "MODEL_CARD.md"
    assert (released / "MODEL_CARD.md").read_text() == bundle_card.read_text()
    assert release["labels"] == ["ES", "FlyingV", "Telecaster"]
    # the records name the photo folder relative to the project, as presets do: the same on every machine
    source = json.loads((released / "records" / "data_summary.json").read_text())["source"]
    original = json.loads((exported / "data" / "summary.json").read_text())["source"]
    assert not Path(source).is_absolute() and (PROJECT_ROOT / source).resolve() == Path(original).resolve()
    assert not list(released.rglob("*.jpg")), "photos of the data set must stay out of models/"
    assert (released / "training" / "teacher" / "history.csv").exists()


@smoke_models
def test_release_check_measures_every_file_and_catches_a_changed_one(exported, released, tmp_path):
    from conftest import run_stage

    dest = shutil.copytree(released, tmp_path / "models")
    check = run_stage("export.release", *release_args(exported, dest), "--check").stdout
    assert check.count("top-1") == 8 and "sha256" not in check.lower().replace("sha256 mismatch", "")
    with open(dest / "student" / "onnx_fp32" / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(AssertionError, match="sha256 mismatch in .*student/onnx_fp32/model.onnx"):
        run_stage("export.release", *release_args(exported, dest), "--check")


@smoke_models
def test_the_released_bundle_carries_its_golden_photos_and_passes_its_selftest(released):
    golden = released / "student" / "guitar-student" / "golden"
    assert {Image.open(p).size for p in golden.glob("*.png")} == {(32, 32)} and len(list(golden.glob("*.png"))) == 2
    selftest = subprocess.run(
        [sys.executable, str(golden.parent / "predict.py"), "--selftest"], capture_output=True, text=True
    )
    assert selftest.returncode == 0 and "2 passed, 0 failed" in selftest.stdout, selftest.stdout + selftest.stderr


@smoke_models
def test_the_released_teacher_is_float16_and_its_tflite_files_rebuild_from_it(exported, released, tmp_path):
    """Half the size of float32 Keras weights, and the TFLite files rebuilt from it answer as the trained
    teacher's do; Grad-CAM in such a run (no teacher/model.keras) takes the Keras file they came from."""
    from conftest import run_stage

    from guitar_distill.common.runtimes import open_classifier

    teacher = released / "teacher" / "keras_fp16" / "model.keras"
    teacher_json = json.loads(teacher.with_name("model.json").read_text())
    assert teacher_json["weights_dtype"] == "float16" and teacher_json["head"] == "flatten"
    assert teacher.stat().st_size < 0.6 * (exported / "teacher" / "model.keras").stat().st_size
    artifacts = tmp_path / "artifacts"
    shutil.copytree(exported / "data", artifacts / "data")
    run_stage("export.release", *release_args(artifacts, released), "--import-teacher")
    images, _ = split_images(exported, "val")
    trained = open_classifier(exported / "export" / "teacher" / "tflite_fp32" / "model.tflite").predict(images)
    for fmt in ("tflite_fp32", "tflite_fp16"):
        imported = artifacts / "export" / "teacher" / fmt
        assert (imported / "IMPORTED.txt").exists()
        assert json.loads((imported / "model.json").read_text())["format"] == fmt
        np.testing.assert_allclose(open_classifier(imported / "model.tflite").predict(images), trained, atol=5e-3)
    shutil.copytree(exported / "distill", artifacts / "distill")
    gradcam = run_stage("benchmarks.gradcam", "--preset", "smoke", "--artifacts", str(artifacts), "--per-class", "1")
    assert "the Keras file this run's teacher files were rebuilt from" in " ".join(gradcam.stdout.split())
    assert (artifacts / "bench" / "gradcam" / "grid_00.png").exists()


def test_predict_refuses_bad_arguments_with_clear_messages(tmp_path, capfd):
    from guitar_distill.edge.predict import DEFAULT_MODEL
    from guitar_distill.edge.predict import main as predict_main

    assert DEFAULT_MODEL.exists(), "the released student in models/ is the predictor's default"
    (tmp_path / "empty").mkdir()
    photo = str(tmp_path / "synthetic.jpg")  # argument handling needs no real photo (fast tier)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 60, 3), dtype=np.uint8)).save(photo)
    # bad inputs are reported and the rest answered, in order; exit 1 (bad input) at the end
    assert predict_main([str(tmp_path / "empty"), str(tmp_path / "nothing.jpg"), photo, "--json"]) == 1
    captured = capfd.readouterr()
    answers = json.loads(captured.out)
    assert [a.get("error", "")[:14] for a in answers] == ["no photos in t", "no such file o", ""]
    assert "top" in answers[2] and all(a["model"] == str(DEFAULT_MODEL) for a in answers)
    assert "XNNPACK" not in captured.err
    for bad, message in (
        (["--top-k", "0"], "at least 1"),
        (["--top-k", "-1"], "at least 1"),
        (["--top-k", "99"], "knows only 11 classes"),
        (["--threads", "0"], "at least 1"),
    ):
        with pytest.raises(SystemExit) as stop:
            predict_main([photo, *bad])
        assert stop.value.code == 2 and message in capfd.readouterr().err
    assert predict_main([photo, "--top-k", "11", "--json"]) == 0
    top = json.loads(capfd.readouterr().out)[0]["top"]
    assert len(top) == 11 and abs(sum(p for _, p in top) - 1) < 0.01


@pytest.mark.slow
def test_released_bundle_on_aarch64_gives_the_x86_answers(tmp_path, capsys):
    """`make pi-check`: the released bundle under QEMU (arm64 Python, aarch64 wheels) vs x86, photo by photo."""
    if os.geteuid() != 0 and not shutil.which("qemu-aarch64-static"):
        pytest.skip("pi-check installs qemu-user-static and an arm64 sysroot with apt-get: needs root once")
    from conftest import run_stage

    out = run_stage(
        "checks.pi_check", "--bundle", "models/student/guitar-student", "--out", str(tmp_path), timeout=900
    ).stdout
    with capsys.disabled():  # the comparison summary, in the test log
        print("\n" + "\n".join(line for line in out.splitlines() if "photos, top-1 flips" in line))
    record = json.loads((tmp_path / "pi_check.json").read_text())
    assert record["passed"] and record["selftest_exit"] == {"int8": 0, "fp32": 0}, out
    for kind in ("int8", "fp32"):
        r = record["results"][kind]
        assert r["photos"] >= 54 and r["top1_flips"] == 0 and r["max_prob_diff"] <= r["tolerance"]
    assert out.count("selftest: 11 passed, 0 failed") == 2  # the int8 and the float32 file


def test_the_web_check_waits_for_the_error_about_the_file_it_gave():
    """A loaded machine: the page may still show the last file's error, then its own 'Reading', when polled."""
    from guitar_distill.checks.web_check import page_status

    class Page:
        shown = iter(
            [["notes.txt: not an image", "error"], ["Reading huge.png...", ""], ["huge.png: too many pixels", "error"]]
        )

        def execute_script(self, script):
            return next(self.shown)

    assert page_status(Page(), wait_for_error=True, about="huge.png", seconds=5) == ("huge.png: too many pixels", True)


@pytest.mark.slow
def test_web_page_in_a_real_browser_matches_python(tmp_path, capsys):
    """`make web-check`: the released student's page in headless Chromium vs edge/images.py + ONNX Runtime."""
    if os.geteuid() != 0 and not shutil.which("chromedriver"):
        pytest.skip("the web check installs Debian's chromium and chromium-driver with apt-get: needs root once")
    from conftest import run_stage

    out = run_stage("checks.web_check", "--out", str(tmp_path), timeout=900).stdout
    with capsys.disabled():  # the agreement figure, in the test log
        print("\n" + "\n".join(line for line in out.splitlines() if "agreement" in line))
    record = json.loads((tmp_path / "web_check.json").read_text())
    assert record["photos"] >= 54 and record["agreement"] >= 0.99, out
    assert record["model"] == "model.onnx" and record["page_threads"] >= 1  # the release's int8 file, served isolated
    assert record["browser_over_native"] == pytest.approx(record["median_inference_ms"] / record["native_median_ms"])
    for case in ("not an image", "too many pixels", "model fails to load"):
        assert record["bad_input"][case]["shown_as_error"], (case, record["bad_input"][case])
    assert "not an image" in record["bad_input"]["not an image"]["text"]
    assert "too many pixels" in record["bad_input"]["too many pixels"]["text"]
    assert "failed to load" in record["bad_input"]["model fails to load"]["text"]
    shipped = record["bad_input"]["runtime and model left out"]
    assert shipped["shown_as_error"] and "cannot run yet" in shipped["text"] and "guitar-distill web" in shipped["text"]


def test_the_bundle_ships_the_most_accurate_int8_file_that_agrees_with_keras(capsys):
    from guitar_distill.export.__main__ import bundle_choice

    qat = {"accuracy": 0.526, "agreement": 0.946}  # the demo's: more accurate, but disagrees too often
    ptq = {"accuracy": 0.518, "agreement": 0.991}
    assert bundle_choice({"tflite_qat_int8": qat, "tflite_int8": ptq}, 0.98) == "tflite_int8"
    assert bundle_choice({"tflite_qat_int8": qat, "tflite_int8": ptq}, 0.90) == "tflite_qat_int8"
    tie = {"accuracy": 0.518, "agreement": 0.99}
    assert bundle_choice({"tflite_qat_int8": tie, "tflite_int8": ptq}, 0.98) == "tflite_int8"
    assert bundle_choice({"tflite_qat_int8": qat, "tflite_int8": dict(ptq, agreement=0.95)}, 0.98) == "tflite_int8"
    assert "no int8 student agrees" in capsys.readouterr().out


@smoke_models
def test_partitions_name_the_ops_xnnpack_leaves_out(exported, tmp_path):
    from guitar_distill.benchmarks.partitions import delegated_partitions
    from guitar_distill.benchmarks.partitions import main as partitions_main

    fp32 = delegated_partitions(exported / "export" / "student" / "tflite_fp32" / "model.tflite")
    assert fp32["partitions"] == 1 and fp32["outside"] == []  # the whole float graph in one partition
    int8 = delegated_partitions(exported / "export" / "student" / "tflite_int8" / "model.tflite")
    assert int8["partitions"] >= 1 and int8["nodes"] > len(int8["outside"])
    # what XNNPACK may leave to LiteRT's kernels in a uint8-in, uint8-out int8 graph: the edges only
    assert set(int8["outside"]) <= {"QUANTIZE", "DEQUANTIZE", "SOFTMAX"}, int8
    partitions_main([str(exported / "export" / "student" / "tflite_int8" / "model.tflite"), "--out", str(tmp_path)])
    assert json.loads((tmp_path / "partitions.json").read_text())["results"]
