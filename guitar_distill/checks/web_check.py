"""`python -m guitar_distill.checks.web_check` (`make web-check`): the bundle's web page in a real browser.

Debian's headless Chromium, driven by Selenium, loads the page from a local `python -m http.server`
(the way a Pi serves it to a phone), classifies the golden photos and 50 validation photos through
the page's own code (decode, Pillow-exact resize, onnxruntime-web), and compares each top-1 with
the Python path (edge/images.py + ONNX Runtime) on the same file. Then it checks that bad input
shows a message in the page: a file that is not an image, an image with too many pixels, and a
model file that fails to load. `--screenshot` saves the page with a real photo classified.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from guitar_distill.checks.debian import apt_install
from guitar_distill.checks.pi_check import bundle_copy, split_info, validation_photos
from guitar_distill.common.config import MODELS_DIR, resolve_config, stage_parser
from guitar_distill.common.errors import ToolkitError, run_cli
from guitar_distill.export.web import RUNTIME_FILES, add_web_page

RELEASED = MODELS_DIR / "student"
DEBIAN_PACKAGES = ("chromium", "chromium-driver")


def ensure_chromium() -> tuple[str, str]:
    browser, driver = apt_install(DEBIAN_PACKAGES, ("chromium", "chromedriver"), "the web check")
    return browser, driver


@contextlib.contextmanager
def local_server(root: Path, serve_script: Path):
    """The bundle's serve.py on a free loopback port, serving `root` cross-origin isolated (threads allowed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, str(serve_script), "--port", str(port), "--root", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


@contextlib.contextmanager
def headless_chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    browser, driver = ensure_chromium()
    options = Options()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=430,900"):
        options.add_argument(arg)
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    chrome.set_script_timeout(180)
    try:
        yield chrome
    finally:
        chrome.quit()


CLASSIFY = "const done = arguments[1]; classifyUrl(arguments[0]).then(done, e => done({error: e.message}));"


def open_page(chrome, url: str) -> bool:
    chrome.get(url)
    return chrome.execute_async_script("window.modelReady.then(arguments[0])")


STATUS = "const s = document.getElementById('status'); return [s.textContent, s.className];"


def page_status(chrome, wait_for_error: bool = False, about: str = "", seconds: float = 60) -> tuple[str, bool]:
    """The status line's text and whether it is shown as an error (waiting until it is one, about `about` if
    given, if asked). Text and class are read in one script: read apart, a slow page can change between them."""
    deadline = time.time() + seconds
    while True:
        text, css = chrome.execute_script(STATUS)
        is_error = "error" in (css or "")
        if not wait_for_error or (is_error and about in text) or time.time() > deadline:
            return text, is_error
        time.sleep(0.2)


def upload(chrome, path: Path) -> None:
    chrome.find_element("id", "file").send_keys(str(path))


def native_latency(tflite_file: Path, photos: list[Path], size: int) -> float:
    """The median milliseconds a photo of the bundle's int8 file in LiteRT here, threads as predict.py leaves them:
    the browser's figure beside it compares the page with what the device runs natively."""
    from guitar_distill.edge.images import load_for_model
    from guitar_distill.edge.predict import TFLiteClassifier

    classifier = TFLiteClassifier(tflite_file)
    times = []
    for path in photos:
        x = load_for_model(path, size)[None]
        start = time.perf_counter()
        classifier.predict(x)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times[5:] or times))


def python_answers(onnx_file: Path, photos: list[Path], size: int) -> np.ndarray:
    from guitar_distill.common.runtimes import open_classifier
    from guitar_distill.edge.images import load_for_model

    session = open_classifier(onnx_file)
    return np.concatenate([session.predict(load_for_model(p, size)[None]) for p in photos])


def build_site(site: Path, bundle: Path, onnx_file: Path, photos: list[Path]) -> tuple[Path, list[Path]]:
    """The served folder: the page with its runtime and model, the page as shipped (neither), a page with a
    broken model, the photos, and two bad inputs. Returns (the page's folder, the served photos)."""
    from PIL import Image

    page = bundle_copy(bundle, site)
    shipped = shutil.copytree(page, site / "shipped")  # as released: no runtime, no model.onnx
    for name in (*RUNTIME_FILES, "model.onnx"):
        (shipped / name).unlink(missing_ok=True)
    meta = json.loads((page / "model.json").read_text())
    add_web_page(page, onnx_file, meta["classes"], int(meta["input"]["shape"][1]))
    (site / "photos").mkdir()
    served = [site / "photos" / f"{i:03d}_{p.parent.name}_{p.name}" for i, p in enumerate(photos)]
    for photo, target in zip(photos, served):
        shutil.copy(photo, target)
    # Bad input: not an image, too many pixels (a 7000 x 6000 PNG is 42 MP, over the 40 MP limit),
    # and a site whose model file is broken.
    (site / "notes.txt").write_text("not a photo\n")
    Image.new("RGB", (7000, 6000), (90, 120, 150)).save(site / "huge.png", optimize=False, compress_level=1)
    broken = shutil.copytree(page, site / "broken")
    (broken / "model.onnx").write_bytes(b"this is not an ONNX model")
    return page, served


def classify_on_page(chrome, served: list[Path], reference, classes: list[str]) -> list[dict]:
    """Each served photo through the page, against the Python answer for the same file."""
    rows = []
    for path, ref in zip(served, reference):
        got = chrome.execute_async_script(CLASSIFY, f"/photos/{path.name}")
        if "error" in got:
            raise ToolkitError(f"the page could not classify {path.name}: {got['error']}")
        probs = dict(got["top"])
        rows.append(
            {
                "photo": path.name,
                "page_top1": got["top"][0][0],
                "python_top1": classes[int(ref.argmax())],
                "max_prob_diff": float(max(abs(probs[c] - float(ref[k])) for k, c in enumerate(classes))),
                "inference_ms": got["ms"],
            }
        )
    return rows


def save_screenshot(chrome, served: list[Path], rows: list[dict], photos: list[Path], screenshot: Path) -> None:
    """The page showing the first photo it gets right (the true class is in the photo's path)."""
    truth = [p.name.split("_")[0] if p.parent.name == "golden" else p.parent.name for p in photos]
    shown = next((path for path, row, label in zip(served, rows, truth) if row["page_top1"] == label), served[0])
    upload(chrome, shown)
    deadline = time.time() + 60
    while page_status(chrome)[0].startswith("Reading") and time.time() < deadline:
        time.sleep(0.2)
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    chrome.save_screenshot(str(screenshot))


def bad_input_messages(chrome, base: str, site: Path) -> dict:
    """What the page shows for each bad input, and whether it shows it as an error."""
    bad = {}
    for name, path in (("not an image", site / "notes.txt"), ("too many pixels", site / "huge.png")):
        upload(chrome, path)
        # the error about this file, not the last one still showing before the page has read it
        bad[name] = page_status(chrome, wait_for_error=True, about=path.name)
    for name, folder in (("model fails to load", "broken"), ("runtime and model left out", "shipped")):
        open_page(chrome, f"{base}/{folder}/index.html")
        bad[name] = page_status(chrome, wait_for_error=True)
    return {k: {"text": t, "shown_as_error": e} for k, (t, e) in bad.items()}


def check(bundle: Path, onnx_file: Path, photos_count: int, info, seed: int, screenshot: Path | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp)
        photos = sorted((bundle / "golden").glob("*.png")) + validation_photos(info, photos_count, seed)
        page, served = build_site(site, bundle, onnx_file, photos)
        meta = json.loads((page / "model.json").read_text())
        size, classes = int(meta["input"]["shape"][1]), meta["classes"]
        reference = python_answers(onnx_file, served, size)
        native_ms = native_latency(page / "model.tflite", served, size)
        with local_server(site, page / "serve.py") as base, headless_chromium() as chrome:
            if not open_page(chrome, f"{base}/{page.name}/index.html"):
                raise ToolkitError(f"the page did not load its model: {page_status(chrome)[0]}")
            threads = chrome.execute_script("return ort.env.wasm.numThreads")
            started = time.perf_counter()
            rows = classify_on_page(chrome, served, reference, classes)
            page_seconds = time.perf_counter() - started
            if screenshot:
                save_screenshot(chrome, served, rows, photos, screenshot)
            bad = bad_input_messages(chrome, base, site)
    return {
        "photos": len(rows),
        "agreement": float(np.mean([r["page_top1"] == r["python_top1"] for r in rows])),
        "max_prob_diff": max(r["max_prob_diff"] for r in rows),
        "median_inference_ms": float(np.median([r["inference_ms"] for r in rows])),
        "page_threads": threads,
        "native_median_ms": native_ms,
        "model": onnx_file.name,
        "page_seconds": page_seconds,
        "bad_input": bad,
        "rows": rows,
    }


def main(argv=None) -> int:
    parser = stage_parser("The bundle's web page in headless Chromium vs the Python path.", default_preset="cpu")
    parser.add_argument("--bundle", type=Path, default=RELEASED / "guitar-student")
    parser.add_argument(
        "--onnx",
        type=Path,
        default=RELEASED / "onnx_int8" / "model.onnx",
        help="the student's ONNX file (default: the release's int8 file, the page's)",
    )
    parser.add_argument(
        "--photos", type=int, default=50, help="validation photos besides the golden ones (%(default)s)"
    )
    parser.add_argument("--screenshot", type=Path, help="save the page with a classified photo here (PNG)")
    parser.add_argument("--out", type=Path, help="record folder (default: ARTIFACTS/bench)")
    args = parser.parse_args(argv)
    cfg = resolve_config(args)
    args.out = args.out or args.artifacts / "bench"
    start = time.perf_counter()
    result = check(
        args.bundle.resolve(),
        args.onnx.resolve(),
        args.photos,
        split_info(args.artifacts, cfg),
        cfg.data.seed,
        args.screenshot,
    )
    bad_ok = all(v["shown_as_error"] for v in result["bad_input"].values())
    result["passed"] = result["agreement"] >= 0.99 and bad_ok
    result["browser_over_native"] = result["median_inference_ms"] / result["native_median_ms"]
    result["seconds"] = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "web_check.json").write_text(json.dumps(result, indent=2))
    print(
        f"browser vs Python top-1 agreement: {result['agreement']:.4f} on {result['photos']} photos "
        f"(max probability difference {result['max_prob_diff']:.2e})"
    )
    print(
        f"median inference a photo: {result['median_inference_ms']:.2f} ms in headless Chromium ({result['model']}, "
        f"wasm, {result['page_threads']} thread(s)) against {result['native_median_ms']:.2f} ms for the bundle's "
        f"model.tflite in LiteRT here: {result['browser_over_native']:.1f}x"
    )
    for name, v in result["bad_input"].items():
        print(f"bad input, {name}: {'shown' if v['shown_as_error'] else 'NOT shown'} as an error: {v['text']}")
    if args.screenshot:
        print(f"screenshot: {args.screenshot}")
    print(
        f"web check {'passed' if result['passed'] else 'FAILED'} in {result['seconds']:.0f} s: "
        f"{args.out / 'web_check.json'}"
    )
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    run_cli(main)
