"""`python -m benchmarks.gradcam`: where do teacher and student look? (Grad-CAM, Selvaraju et al. 2017)

For given photos, or N test photos per class: a grid of photo, teacher map and student map, each
with its top-1; with `--corrupt doodle` the same before and after the corruption (the write-up's
prank). Agreement between the two maps (Pearson correlation and IoU of the top-20 % region) per
photo and per class goes to JSON, so the report can say whether the student attends to the same
parts of the guitar as the teacher.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from guitar_distill.benchmarks.record import write_record
from guitar_distill.common.artifacts import stage_dir
from guitar_distill.common.config import resolve_config, resolve_project_path, stage_parser
from guitar_distill.common.corruptions import CORRUPTIONS, corrupt
from guitar_distill.common.errors import run_cli
from guitar_distill.common.layout import evaluation_split, imported_teacher
from guitar_distill.common.manifest import load_data_info
from guitar_distill.common.markdown import markdown_table
from guitar_distill.common.plots import pyplot, save_figure
from guitar_distill.common.progress import console, progress_bar
from guitar_distill.common.quiet import quiet_start
from guitar_distill.edge.images import load_for_model

if TYPE_CHECKING:
    import keras


def grad_cam(model: keras.Model, images: np.ndarray, layer: str, class_index=None):
    """Heatmaps in [0, 1] at the layer's resolution, and the probabilities.

    `class_index`: None for each image's predicted class, or an int / array of ints.
    Gradients of the class logit (not the probability) with respect to the layer's output,
    averaged over space, weight its channels; the ReLU of the weighted sum is the map.
    """
    import keras
    import tensorflow as tf  # gradients need a backend; the benchmarks run on TensorFlow

    from guitar_distill.common.models import logits_model

    logits = logits_model(model)
    probe = keras.Model(logits.inputs, [logits.get_layer(layer).output, logits.outputs[0]])
    x = tf.convert_to_tensor(np.asarray(images, dtype=np.float32))
    with tf.GradientTape() as tape:
        features, z = probe(x, training=False)
        target = (
            tf.argmax(z, axis=1)
            if class_index is None
            else tf.cast(tf.broadcast_to(class_index, [tf.shape(z)[0]]), tf.int64)
        )
        score = tf.gather(z, target, axis=1, batch_dims=1)
    grads = tape.gradient(score, features)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1)).numpy()
    peak = cam.max(axis=(1, 2), keepdims=True)
    cam = np.where(peak > 0, cam / np.where(peak > 0, peak, 1), 0.0)
    return cam.astype(np.float32), tf.nn.softmax(z).numpy()


def upsample(cam: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(cam.astype(np.float32), mode="F").resize((size, size), Image.BILINEAR))


def map_agreement(a: np.ndarray, b: np.ndarray, top: float = 0.2) -> dict:
    """Pearson correlation and IoU of the top-`top` fraction of pixels of two same-sized maps.

    A flat map points nowhere, so it agrees with nothing: both figures are 0.
    """
    a, b = a.ravel(), b.ravel()
    if a.std() == 0 or b.std() == 0:
        return {"correlation": 0.0, "iou_top20": 0.0}
    corr = float(np.corrcoef(a, b)[0, 1])
    k = max(1, int(round(top * a.size)))
    ta, tb = set(np.argsort(-a)[:k].tolist()), set(np.argsort(-b)[:k].tolist())
    return {"correlation": corr, "iou_top20": len(ta & tb) / len(ta | tb)}


def overlay(image: np.ndarray, cam: np.ndarray) -> np.ndarray:
    heat = pyplot().get_cmap("jet")(upsample(cam, image.shape[0]))[..., :3] * 255
    return (0.55 * image + 0.45 * heat).astype(np.uint8)


def gradcam_grid(photos, labels, classes, teacher, student, corruption, severity, seed, path) -> list[dict]:
    from guitar_distill.student.model import LAST_FEATURES
    from guitar_distill.teacher.model import LAST_CONV_LAYER

    size = teacher.input_shape[1]
    images = np.stack([load_for_model(p, size) for p in photos])
    variants = [("photo", images)]
    if corruption:
        variants.append(
            (corruption, np.stack([corrupt(corruption, img, severity, seed + i) for i, img in enumerate(images)]))
        )
    plt = pyplot()
    cols = 3 * len(variants)
    fig, axes = plt.subplots(len(photos), cols, figsize=(2.3 * cols, 2.5 * len(photos)), squeeze=False)
    records = [{"file": str(p), "label": classes[y]} for p, y in zip(photos, labels)]
    for v, (name, batch) in enumerate(variants):
        t_cam, t_prob = grad_cam(teacher, batch, LAST_CONV_LAYER)
        s_cam, s_prob = grad_cam(student, batch, LAST_FEATURES)
        for i in range(len(photos)):
            agree = map_agreement(upsample(t_cam[i], size), upsample(s_cam[i], size))
            records[i][name] = {
                "teacher": [classes[t_prob[i].argmax()], float(t_prob[i].max())],
                "student": [classes[s_prob[i].argmax()], float(s_prob[i].max())],
                **agree,
            }
            panels = [
                (batch[i], f"{name}: {classes[labels[i]]}"),
                (overlay(batch[i], t_cam[i]), f"teacher {classes[t_prob[i].argmax()]} {t_prob[i].max():.0%}"),
                (overlay(batch[i], s_cam[i]), f"student {classes[s_prob[i].argmax()]} {s_prob[i].max():.0%}"),
            ]
            for j, (img, title) in enumerate(panels):
                ax = axes[i, 3 * v + j]
                ax.imshow(img)
                ax.set_title(title, fontsize=8)
                ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path, dpi=80)
    return records


def parse_args(argv=None):
    parser = stage_parser("Grad-CAM grids for teacher and student, and their agreement.")
    parser.add_argument("photos", nargs="*", type=Path, help="photos to explain (default: test photos)")
    parser.add_argument("--per-class", type=int, default=2, help="test photos per class when none are given")
    parser.add_argument("--corrupt", choices=sorted(CORRUPTIONS), help="also show the maps after this corruption")
    parser.add_argument("--severity", type=int, default=3)
    return parser.parse_args(argv)


def gradcam_teacher(artifacts: Path, info):
    """The teacher stage's Keras model, or the released Keras teacher this run's teacher files came from."""
    from guitar_distill.common.models import load_stage_model

    imported = imported_teacher(artifacts)
    if not imported or (artifacts / "teacher" / "model.keras").exists():
        return load_stage_model(artifacts, "teacher", "make teacher")
    from guitar_distill.export.release import released_teacher

    console.print(f"teacher: {imported}, the Keras file this run's teacher files were rebuilt from")
    return released_teacher(resolve_project_path(imported), len(info.classes), info.image_size)


def photos_to_explain(args, info) -> tuple[list[Path], list[int], list[str]]:
    """(photos, labels, group names): the given photos, or `--per-class` of each class from the evaluation split."""
    if args.photos:
        return args.photos, [0] * len(args.photos), ["given"] * len(args.photos)  # unknown: shown as class 0
    split = evaluation_split(info)
    rows = [r for c in info.classes for r in [r for r in info.split_rows(split) if r.label == c][: args.per_class]]
    return [info.source / r.path for r in rows], [info.classes.index(r.label) for r in rows], [r.label for r in rows]


def agreement(records: list[dict], names: list[str], corrupt: str | None) -> tuple[dict, dict]:
    """(overall, per group) mean correlation and top-20 % IoU of the teacher's and the student's maps."""
    keys = ("correlation", "iou_top20")
    per_class = {}
    for name, rec in zip(names, records):
        per_class.setdefault(name, []).append(rec["photo"])
    summary = {c: {k: float(np.mean([r[k] for r in rs])) for k in keys} for c, rs in per_class.items()}
    overall = {k: float(np.mean([r["photo"][k] for r in records])) for k in keys}
    if corrupt:
        overall.update({f"{corrupt}_{k}": float(np.mean([r[corrupt][k] for r in records])) for k in keys})
    return overall, summary


def main(argv=None):
    args = parse_args(argv)
    quiet_start()  # after parsing: --help and argument errors need no TensorFlow
    cfg = resolve_config(args)
    start = time.perf_counter()
    info = load_data_info(args.artifacts)
    from guitar_distill.common.models import load_stage_model

    teacher, student = (
        gradcam_teacher(args.artifacts, info),
        load_stage_model(args.artifacts, "distill", "make distill"),
    )
    photos, labels, names = photos_to_explain(args, info)
    out = stage_dir(args.artifacts, "bench") / "gradcam"
    suffix = f"_{args.corrupt}" if args.corrupt else ""
    records, chunk = [], 6  # photos per grid image
    with progress_bar(len(photos), "grad-cam") as advance:
        for n, i in enumerate(range(0, len(photos), chunk)):
            part = slice(i, i + chunk)
            grid = out / f"grid_{n:02d}{suffix}.png"
            records += gradcam_grid(
                photos[part],
                labels[part],
                info.classes,
                teacher,
                student,
                args.corrupt,
                args.severity,
                cfg.data.seed,
                grid,
            )
            advance(len(photos[part]))
    overall, summary = agreement(records, names, args.corrupt)
    table = markdown_table(
        ["class", "correlation", "IoU top-20 %"],
        [[c, f"{v['correlation']:.3f}", f"{v['iou_top20']:.3f}"] for c, v in summary.items()],
    )
    write_record(
        out,
        f"agreement{suffix}",
        "benchmarks.gradcam",
        argv,
        title=f"Grad-CAM agreement, teacher vs student ({len(records)} photos)",
        table=table,
        started=start,
        settings={
            "photos": len(records),
            "corrupt": args.corrupt,
            "severity": args.severity,
            "per_class": args.per_class,
        },
        results={"overall": overall, "per_class": summary, "photos": records},
    )
    console.print(
        f"teacher/student Grad-CAM agreement over {len(records)} photos: correlation "
        f"{overall['correlation']:.3f}, IoU of top-20 % {overall['iou_top20']:.3f}"
        + (f"; after {args.corrupt}: correlation {overall[f'{args.corrupt}_correlation']:.3f}" if args.corrupt else "")
    )
    console.print(f"grad-cam done in {time.perf_counter() - start:.0f} s: grids and agreement JSON in {out}")


if __name__ == "__main__":
    run_cli(main)
