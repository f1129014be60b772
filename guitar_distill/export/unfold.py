"""`python -m guitar_distill.export.unfold`: a trainable Keras teacher back from a TFLite teacher file.

A TFLite converter folds every batch norm into the convolution before it, so the file keeps one
kernel and one bias per convolution and no batch-norm statistics: it cannot be trained further.
This rebuilds the teacher in Keras from the file: each convolution gets the folded kernel and bias,
and each batch norm becomes an exact identity at inference that still normalises in training,
with statistics measured on training photos: per channel, the folded kernel and bias are scaled by
a to the norm of a fresh He initialisation, and with m and v the mean and variance of the folded
convolution's output, gamma = sqrt(a^2 v + eps) / a, beta = m, moving mean a m, moving variance
a^2 v. So the Keras model answers as the file does, in training mode too, and a fine-tune takes
steps of the size the recipe's learning rates were chosen for.

    python -m guitar_distill.export.unfold models/teacher/tflite_fp16/model.tflite --preset cpu
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from guitar_distill.common.config import stage_parser
from guitar_distill.common.errors import ToolkitError, run_cli
from guitar_distill.common.quiet import quiet_start

# TFLite names a folded convolution's kernel after its Keras layer: "resnet50_teacher_1/conv1_conv_1/convolution".
FP16_SAFE = 1e4  # largest bias or variance the rescaling may produce (float16 holds up to 65504)
KERNEL_NAME = re.compile(r"(?:^|/)(conv\d_(?:block\d+_\d_)?conv)(?:_\d+)?/")


def folded_weights(path: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray]]:
    """{conv layer name: (Keras-ordered kernel, bias)} and the final dense (kernel, bias), float32."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    # fp16 files store constants in float16 behind a DEQUANTIZE; follow it back to the stored tensor.
    stored = {op["outputs"][0]: op["inputs"][0] for op in ops if op["op_name"] == "DEQUANTIZE"}

    def constant(index):
        return np.asarray(interpreter.get_tensor(stored.get(index, index)), dtype=np.float32)

    convs, dense = {}, None
    for op in ops:
        if op["op_name"] == "CONV_2D":
            weight, bias = op["inputs"][1:3]
            match = KERNEL_NAME.search(names[stored.get(weight, weight)])
            if not match:
                raise ValueError(
                    f"{path}: cannot tell which layer the kernel {names[stored.get(weight, weight)]!r} "
                    f"belongs to (not a teacher exported by this project?)"
                )
            convs[match.group(1)] = (constant(weight).transpose(1, 2, 3, 0), constant(bias))  # OHWI -> HWIO
        elif op["op_name"] == "FULLY_CONNECTED":
            if dense is not None:
                raise ValueError(f"{path}: more than one dense layer; not a ResNet50 teacher")
            weight, bias = op["inputs"][1:3]
            dense = (constant(weight).T, constant(bias))
    if len(convs) != 53 or dense is None:
        raise ValueError(
            f"{path}: {len(convs)} convolutions and {'a' if dense is not None else 'no'} dense layer; "
            f"a ResNet50 teacher has 53 and one"
        )
    return convs, dense


def unfolded_teacher(path: Path, images: np.ndarray, batch_size: int = 64):
    """The Keras teacher (Flatten head, the file's input size) answering as `path` does.

    `images` (uint8, the file's size) are the photos whose statistics the batch norms take.
    """
    import keras

    from guitar_distill.teacher.model import build_teacher

    convs, (kernel, bias) = folded_weights(path)
    size = int(images.shape[1])
    model = build_teacher(kernel.shape[1], size, None)
    if model.get_layer("predictions").kernel.shape != kernel.shape:
        raise ValueError(
            f"{path}: its dense layer is {kernel.shape}, a {size}px Flatten teacher's is "
            f"{tuple(model.get_layer('predictions').kernel.shape)}: photos of another size?"
        )
    for name, (w, b) in convs.items():
        model.get_layer(name).set_weights([w, b])
        bn = model.get_layer(name.removesuffix("_conv") + "_bn")
        channels = w.shape[-1]
        # Identity at inference: (x - 0) / sqrt(1 - eps + eps) * 1 + 0.
        bn.set_weights([np.ones(channels), np.zeros(channels), np.zeros(channels), np.full(channels, 1 - bn.epsilon)])
    model.get_layer("predictions").set_weights([kernel, bias])

    conv_names = list(convs)
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in conv_names])
    sums = [np.zeros(convs[n][0].shape[-1]) for n in conv_names]
    squares = [np.zeros_like(s) for s in sums]
    counts = [0] * len(conv_names)
    for start in range(0, len(images), batch_size):
        outputs = probe.predict_on_batch(np.asarray(images[start : start + batch_size], dtype=np.float32))
        for k, out in enumerate(outputs):
            out = np.asarray(out, dtype=np.float64).reshape(-1, out.shape[-1])
            sums[k] += out.sum(0)
            squares[k] += (out**2).sum(0)
            counts[k] += out.shape[0]
    for k, name in enumerate(conv_names):
        conv, bn = model.get_layer(name), model.get_layer(name.removesuffix("_conv") + "_bn")
        mean = sums[k] / counts[k]
        var = np.maximum(squares[k] / counts[k] - mean**2, 0.0)
        # Each output channel's kernel rescaled to the norm of a fresh He initialisation, the scale the
        # recipe's learning rates were chosen for: under a batch norm the scale changes nothing else,
        # but it sets the effective step (lr / |w|^2), and the folded kernels' scales are arbitrary.
        # The batch norm multiplies it back: gamma (a x - a m) / sqrt(a^2 v + eps) + beta = x.
        w, b = conv.get_weights()
        fan_in = int(np.prod(w.shape[:-1]))
        norm = np.sqrt((w.reshape(-1, w.shape[-1]) ** 2).mean(0))
        a = np.where(norm > 0, np.sqrt(2.0 / fan_in) / np.maximum(norm, 1e-12), 1.0)
        # ... within what the float16 release can hold: a dead channel (kernel near 0, bias not) is left
        # near its own scale rather than blown up to an infinite bias or variance.
        a = np.minimum(
            a, np.minimum(FP16_SAFE / np.maximum(np.abs(b), 1e-12), np.sqrt(FP16_SAFE / np.maximum(var, 1e-12)))
        )
        conv.set_weights([w * a, b * a])
        gamma = np.sqrt(a**2 * var + bn.epsilon) / a
        bn.set_weights([gamma, mean, a * mean, a**2 * var])
    return model


def main(argv=None):
    parser = stage_parser(
        "Rebuild a trainable Keras teacher from a TFLite teacher file (batch norms unfolded).", default_preset="cpu"
    )
    parser.add_argument("tflite", type=Path, help="the teacher's .tflite file (fp32 or fp16)")
    parser.add_argument("--out", type=Path, help="default: ARTIFACTS/unfold/model.keras")
    parser.add_argument(
        "--photos", type=int, default=1024, help="training photos for the statistics (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if not args.tflite.is_file():
        raise ToolkitError(f"{args.tflite}: no such file")
    quiet_start()
    from guitar_distill.common.cache import load_split
    from guitar_distill.common.manifest import load_data_info
    from guitar_distill.common.models import float32_copy, load_model_file, retyped_copy, save_model
    from guitar_distill.common.progress import console
    from guitar_distill.common.runtimes import open_classifier, predict_all

    info = load_data_info(args.artifacts)
    size = open_classifier(args.tflite).size  # the file's own resolution, whatever the data stage's
    train, _ = load_split(info, "train", size)
    rng = np.random.default_rng(0)
    picked = np.sort(rng.choice(len(train), min(args.photos, len(train)), replace=False))
    try:
        model = unfolded_teacher(args.tflite, np.asarray(train[picked]))
    except ValueError as e:
        raise ToolkitError(str(e)) from None
    val_x, val_y = load_split(info, "val", size)
    ours = predict_all(model, val_x)
    theirs = predict_all(open_classifier(args.tflite), val_x)
    out = args.out or args.artifacts / "unfold" / "model.keras"
    try:
        save_model(retyped_copy(model, "float16", strict=True), out)
    except ValueError as e:
        raise ToolkitError(f"{args.tflite}: {e}") from None
    again = predict_all(float32_copy(load_model_file(out)), val_x)
    console.print(
        f"val top-1: TFLite {np.mean(theirs.argmax(1) == val_y):.4f}, Keras {np.mean(ours.argmax(1) == val_y):.4f}, "
        f"its float16 file {np.mean(again.argmax(1) == val_y):.4f}; top-1 agreement with the TFLite file "
        f"{np.mean(ours.argmax(1) == theirs.argmax(1)):.4f}, max probability difference "
        f"{np.abs(ours - theirs).max():.2e}"
    )
    console.print(f"trainable teacher: {out} (float16 weights; start a run from it with --weights {out})")


if __name__ == "__main__":
    run_cli(main)
