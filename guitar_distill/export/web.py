"""The bundle's web page: edge/web/ plus the student's ONNX file and onnxruntime-web's wasm runtime.

onnxruntime-web comes from the npm registry (`npm pack`, once, cached in ~/.cache/guitar-distill/npm);
only the three files the wasm backend loads are copied into the bundle, so the page needs nothing
from the internet at run time. Serving it: `python serve.py` in the bundle folder (cross-origin isolated,
so ONNX Runtime Web may use threads; `python -m http.server` works too, on one thread).

    python -m guitar_distill.export.web BUNDLE_DIR --onnx student.onnx   # (re)vendor the page into a bundle
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import guitar_distill.edge as edge
from guitar_distill.common.errors import ToolkitError, run_cli

ONNXRUNTIME_WEB = "1.30.0"  # the npm package; its wasm runs the same ONNX opset the export writes
RUNTIME_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
PAGE_FILES = ("index.html", "app.js", "serve.py")
NPM_CACHE = Path(os.environ.get("GUITAR_NPM_CACHE", Path.home() / ".cache" / "guitar-distill" / "npm"))


def onnxruntime_web_dist(version: str = ONNXRUNTIME_WEB) -> Path:
    """The package's dist/ folder, fetched with `npm pack` once."""
    folder = NPM_CACHE / f"onnxruntime-web-{version}"
    dist = folder / "package" / "dist"
    if all((dist / f).exists() for f in RUNTIME_FILES):
        return dist
    if not shutil.which("npm"):
        raise ToolkitError(
            "the web page needs onnxruntime-web from the npm registry: install node/npm "
            "(Debian: apt-get install npm), or build the bundle with --no-web"
        )
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["npm", "pack", f"onnxruntime-web@{version}", "--silent"], cwd=folder, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise ToolkitError(f"npm pack onnxruntime-web@{version} failed:\n{result.stderr[-2000:]}")
    with tarfile.open(folder / result.stdout.strip().splitlines()[-1]) as tar:
        tar.extractall(folder, filter="data")
    return dist


def onnx_precision(onnx_file: Path) -> str:
    """An exported file's format ("onnx_int8", "onnx_fp32") from its model.json, else from its folder's name."""
    meta = Path(onnx_file).with_name("model.json")
    if meta.exists():
        return json.loads(meta.read_text()).get("format", "")
    return Path(onnx_file).parent.name


def add_web_page(bundle: Path, onnx_file: Path, classes: list[str], input_size: int, text=None) -> list[str]:
    """Copy the page, the model and the runtime into `bundle`; returns the files written. The page's heading
    and prompt come from `text` (export/bundle.BundleText), else from the bundle's web.json as it was."""
    dist = onnxruntime_web_dist()
    web_dir = Path(edge.__file__).parent / "web"
    for name in PAGE_FILES:
        shutil.copy(web_dir / name, bundle / name)
    for name in RUNTIME_FILES:
        shutil.copy(dist / name, bundle / name)
    shutil.copy(onnx_file, bundle / "model.onnx")
    precision = "int8" if "int8" in onnx_precision(onnx_file) else "float32"
    before = json.loads((bundle / "web.json").read_text()) if (bundle / "web.json").exists() else {}
    words = {"title": text.title, "hint": text.hint, "missing_help": text.web_help} if text else before
    meta = {
        "model": "model.onnx",
        "classes": classes,
        "input_size": input_size,
        "description": f"the {precision} model (ONNX Runtime Web, wasm), the same network as predict.py's files",
        "onnxruntime_web": ONNXRUNTIME_WEB,
        **{k: words[k] for k in ("title", "hint", "missing_help") if k in words},
    }
    (bundle / "web.json").write_text(json.dumps(meta, indent=2) + "\n")
    return [*PAGE_FILES, *RUNTIME_FILES, "model.onnx", "web.json"]


def main(argv=None):
    parser = argparse.ArgumentParser(description="Put the web page (and onnxruntime-web) into an edge bundle.")
    parser.add_argument("bundle", type=Path)
    parser.add_argument(
        "--onnx",
        type=Path,
        required=True,
        help="the student's ONNX file (models/student/onnx_int8/model.onnx in a release)",
    )
    args = parser.parse_args(argv)
    meta = json.loads((args.bundle / "model.json").read_text())
    files = add_web_page(args.bundle, args.onnx, meta["classes"], int(meta["input"]["shape"][1]))
    print(f"web page in {args.bundle}: {', '.join(files)}; serve it with `python -m http.server` there")


if __name__ == "__main__":
    run_cli(main)
