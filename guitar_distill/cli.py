"""`guitar-distill COMMAND [options]`: every stage and tool, one entry point.

Each command is a module's own command line, run as `python -m MODULE` would run it; `COMMAND --help`
shows its options. Exit status, the same for every command (docs/cli.md): 0 done, 1 bad input (a file,
photo, model or stage that is missing or wrong; the message names it), 2 usage (an unknown command, a
flag or value the command does not take).
"""

from __future__ import annotations

import runpy
import sys

# (command, module, what it does), in the order a run uses them
COMMANDS = (
    ("data", "guitar_distill.dataset", "scan, validate, de-duplicate and split photos; decode cache"),
    ("teacher", "guitar_distill.teacher", "train the ResNet50 teacher (resumable)"),
    ("diagnose", "guitar_distill.teacher.diagnose", "a teacher's fit, test resolutions and learning-rate range"),
    ("ensemble", "guitar_distill.teacher.ensemble", "one teacher from several classifiers' mean probabilities"),
    ("carry", "guitar_distill.common.carry", "carry a run in progress to another machine through git"),
    ("baseline", "guitar_distill.student", "train the student from labels alone (the no-KD baseline)"),
    ("distill", "guitar_distill.distill", "distil the teacher into the student (resumable)"),
    ("export", "guitar_distill.export", "ONNX and TFLite files, parity-gated; the edge bundle"),
    ("web", "guitar_distill.export.web", "add the web page's runtime and ONNX file to a bundle"),
    ("release", "guitar_distill.export.release", "copy a run's models into models/ (--check verifies)"),
    ("model-card", "guitar_distill.export.model_card", "render models/MODEL_CARD.md from the release's records"),
    ("latency", "guitar_distill.benchmarks.latency", "latency table: model x format x runtime x threads"),
    ("accuracy", "guitar_distill.benchmarks.accuracy", "top-1, agreement and calibration of every file"),
    ("robustness", "guitar_distill.benchmarks.robustness", "top-1 under noise, blur, JPEG, occlusion, doodles"),
    ("gradcam", "guitar_distill.benchmarks.gradcam", "where teacher and student look"),
    ("report", "guitar_distill.benchmarks.report", "the side-by-side report from the benchmark records"),
    ("student-size", "guitar_distill.benchmarks.student_size", "choose the student's widths by measurement"),
    ("train-rate", "guitar_distill.benchmarks.train_rate", "training images per second, with a profile"),
    ("cache-build", "guitar_distill.benchmarks.cache_build", "time the decode cache"),
    ("predict", "guitar_distill.edge.predict", "classify photos with the released student"),
    ("check", "guitar_distill.edge.check", "photos filed under a label that looks wrong"),
    ("audit", "guitar_distill.dataset.audit", "training photos whose label looks wrong (cleanlab)"),
    ("pi-check", "guitar_distill.checks.pi_check", "the bundle on aarch64 under QEMU, answers against x86"),
    ("web-check", "guitar_distill.checks.web_check", "the bundle's web page in headless Chromium"),
    ("gpu-kit", "guitar_distill.gpukit.build", "the kit for a lent GPU: photos as WebP, manifest, wheels"),
    ("gpu-run", "guitar_distill.gpukit.run", "on the GPU machine: train every stage from the kit"),
    ("gpu-receive", "guitar_distill.gpukit.receive", "check and unpack what a GPU run brought back"),
    ("gpu-check", "guitar_distill.gpukit.check", "the kit end to end here, without TensorFlow"),
)
MODULES = {name: module for name, module, _ in COMMANDS}


def usage() -> str:
    rows = "\n".join(f"  {name:13s} {what}" for name, _, what in COMMANDS)
    return (
        f"usage: guitar-distill COMMAND [options]   (guitar-distill COMMAND --help: its options)\n\n"
        f"commands:\n{rows}\n\nexit status: 0 done, 1 bad input, 2 usage (docs/cli.md)"
    )


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if not argv or argv[0] not in MODULES:
        print(usage(), file=sys.stderr)
        print(
            f"\nguitar-distill: error: {'no command given' if not argv else f'unknown command {argv[0]!r}'}",
            file=sys.stderr,
        )
        return 2
    sys.argv = [f"guitar-distill {argv[0]}", *argv[1:]]
    runpy.run_module(MODULES[argv[0]], run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
