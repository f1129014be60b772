"""The edge bundle: the student's int8 .tflite, labels, model.json, predict.py and golden photos."""

from __future__ import annotations

import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

import guitar_distill.edge as edge
from guitar_distill.common.artifacts import atomic_path, write_json, write_labels, write_text
from guitar_distill.dataset.split import balanced_subset
from guitar_distill.edge.images import load_for_model
from guitar_distill.edge.predict import TFLiteClassifier, classify, golden_answers
from guitar_distill.export.web import add_web_page


@dataclass(frozen=True)
class BundleText:
    """What a bundle says about its task, in its README, its web page and its model card."""

    title: str  # the README's and the page's heading
    about: str  # what the model is, one paragraph
    hint: str = "Take a photo, or pick one."  # the page's prompt
    web_help: str = (
        "rebuild the bundle with an ONNX file (`gd.bundle(files, ...)` with onnx_fp32 or onnx_int8 among them)"
    )


def stage_text(source: Path, student: str) -> BundleText:
    """The export stage's bundle text: the data's own title, the student distilled (its teacher: the card)."""
    from guitar_distill.dataset.scan import source_title

    title = source_title(source)
    title = title[:1].lower() + title[1:]
    return BundleText(
        title=f"guitar-student: a classifier of {title} for a Raspberry Pi or a phone",
        about=f"A {student} student distilled from a larger teacher, quantised to int8 (uint8 input).",
        hint=f"A classifier of {title}: take a photo, or pick one.",
        web_help="from the project, `guitar-distill web models/student/guitar-student --onnx "
        "models/student/onnx_int8/model.onnx` adds them",
    )


BUNDLE_README = """# {title}

{about}
`model.json` says where it came from, its input and its sha256; `MODEL_CARD.md`, where there is one, says
what it can and cannot do, with its figures.

## Raspberry Pi (64-bit Raspberry Pi OS) or any Linux/macOS box

    python3 -m venv venv && . venv/bin/activate
    pip install ai-edge-litert numpy pillow
    python predict.py --selftest           # checks the golden photos: run this first
    python predict.py photo.jpg photos/ --top-k 3
    python predict.py photo.jpg --json
    python check.py listings/              # one sub-folder per claimed label: suspects.csv here, most suspicious first
    python predict.py --benchmark --runs 200   # the model's own latency on this device

Two files hold the same model: `model.tflite` (int8) and `model_fp32.tflite` (float32), where both are
here. On first use predict.py times both on this machine and keeps the faster (int8 wins on CPUs with
int8 dot products; on a Raspberry Pi 4 or an AVX2-only PC float32 can be faster), prints which and why,
and caches the choice in `.fastest.json`; `--model model_fp32.tflite` forces one, and `--selftest`
checks whichever runs.

`check.py` flags the photos whose claimed label gets a probability under `label_check.threshold`
in model.json, a threshold chosen on validation photos with 5 % of their labels flipped on purpose
(the precision and recall it gave there are beside it, and the checker prints them).

Input: any JPEG, PNG, WebP, BMP or TIFF photo; EXIF orientation and colour modes are handled and
the photo is resized to the model's input. A missing path, an empty folder or an unreadable photo is
reported and the rest are still answered. Exit status: 0 all answered, 1 a file, photo or model was
missing or bad, 2 a flag or value the script does not take.

The web page (`index.html`, served with `python serve.py` here: cross-origin isolated, so it may use
threads) runs the model in the browser once ONNX Runtime Web and `model.onnx` are beside it. Where
they are not, the page says so; {web_help}.

What `--selftest` proves: `golden/expected.json` holds what this very model answered for the golden
photos when the bundle was built (top-1 and its probability). The self-test checks that this device
gives the same answers (top-1 equal, probability within 0.02): a reproducibility check of the runtime,
the photo decoding and the file, not a check that the answers are right. Some golden answers may be
wrong; `label` in expected.json is the true class, `top` the model's answer. The model's accuracy is
in `model.json` ("validation").
"""


def build_bundle(
    dest: Path,
    model_file: Path,
    model_json: dict,
    labels: list[str],
    golden: list[tuple[str, Path]],
    text: BundleText,
    onnx_file: Path | None = None,
    fp32_file: Path | None = None,
    fp32_json: dict | None = None,
    card: str | None = None,
) -> Path:
    """Write `dest/` and `dest.tar.gz`; `golden` is (label, photo path) pairs; with `onnx_file`, the web page;
    with `fp32_file`, the float32 model beside the int8 one (predict.py keeps the faster); with `card`, its
    MODEL_CARD.md."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "golden").mkdir(parents=True)
    shutil.copy(model_file, tmp / "model.tflite")
    write_json(tmp / "model.json", model_json)
    if fp32_file is not None:
        shutil.copy(fp32_file, tmp / "model_fp32.tflite")
        write_json(tmp / "model_fp32.json", {**(fp32_json or {}), "file": "model_fp32.tflite"})
    write_labels(tmp, labels)
    edge_dir = Path(edge.__file__).parent
    for name in ("predict.py", "images.py", "check.py"):
        shutil.copy(edge_dir / name, tmp / name)
    write_text(tmp / "README.md", BUNDLE_README.format(title=text.title, about=text.about, web_help=text.web_help))
    write_golden(tmp, labels, golden, int(model_json["input"]["shape"][1]))
    if card:
        write_text(tmp / "MODEL_CARD.md", card)
    if onnx_file is not None:
        add_web_page(tmp, onnx_file, labels, TFLiteClassifier(tmp / "model.tflite").size, text)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    with atomic_path(dest.with_name(dest.name + ".tar.gz")) as archive:
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(dest, arcname=dest.name)
    return dest


def edge_bundle(
    dest: Path, int8: Path, meta: dict, info, val, ecfg, seed: int, text: BundleText, card=None, **files
) -> Path:
    """`build_bundle` with what the data gives: the label check's threshold, chosen on the validation photos
    `val` = (images, labels) with a known share of labels flipped, and one golden photo a class. `card`, a
    function of the bundle's model.json, writes its model card."""
    from guitar_distill.edge.check import choose_threshold

    classifier, (val_x, val_y) = TFLiteClassifier(int8), val
    probs = np.concatenate([classifier.predict(val_x[i : i + 256]) for i in range(0, len(val_x), 256)])
    threshold = choose_threshold(probs, val_y, ecfg.label_check_flip_share, ecfg.label_check_precision, seed)
    golden = golden_photos(info.split_rows("val"), info.source, info.classes, ecfg.golden_images, seed)
    meta = {**meta, "label_check": threshold}
    return build_bundle(dest, int8, meta, info.classes, golden, text, card=card(meta) if card else None, **files)


def write_golden(bundle: Path, labels: list[str], golden: list[tuple[str, Path]], size: int) -> None:
    """golden/: each (label, photo) at the model's input side as a PNG, and every model file's answers for them.

    At its input side, a photo decodes to the same pixels on every machine (PNG is lossless and the
    resize is the identity), so the self-test compares runtimes, not JPEG decoders; the photos are small
    enough (one a class) to travel with the bundle wherever it is copied.
    """
    folder = bundle / "golden"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    photos = []
    for label, photo in golden:
        target = folder / f"{label}_{photo.stem}.png"
        Image.fromarray(load_for_model(photo, size)).save(target, optimize=True)
        photos.append((label, target))
    for model in sorted(bundle.glob("model*.tflite")):  # each file's own answers: the self-test checks the file it runs
        classifier = TFLiteClassifier(model)
        expected = [
            {"file": target.name, "label": label, "top": classify(classifier, labels, [target], 3)[0]["top"]}
            for label, target in photos
        ]
        write_json(golden_answers(model), expected)


def golden_photos(rows, source: Path, classes: list[str], count: int, seed: int):
    """`count` validation photos of as many classes, one a class, seeded (`balanced_subset`, as everywhere)."""
    labels = np.array([classes.index(r.label) for r in rows])
    one_each = balanced_subset(labels, 1, seed)
    chosen = np.sort(np.random.default_rng(seed).permutation(one_each)[:count])
    return [(rows[i].label, source / rows[i].path) for i in chosen]
