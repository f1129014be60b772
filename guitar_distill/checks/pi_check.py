"""`python -m guitar_distill.checks.pi_check` (`make pi-check`): the edge bundle, unchanged, on 64-bit ARM Linux.

A Raspberry Pi 4/5 runs aarch64. Here the bundle's predict.py runs under QEMU user-mode emulation
with Debian's arm64 Python 3.11 and the aarch64 wheels of ai-edge-litert, numpy and pillow from
PyPI (the versions this project uses on x86), on the golden photos and validation photos, with the
int8 student (the bundle's model) and the fp32 student. The same commands run on x86 here, and the
answers are compared photo by photo: top-1 must be equal on every photo, probabilities within the
tolerance below. Emulated timings mean nothing and are not reported.

What it builds (Debian arm64 packages unpacked into a sysroot, the wheels unpacked into a site
folder) is cached in ~/.cache/guitar-distill/pi-check (GUITAR_PI_CACHE to move it).

Two things QEMU user mode does not give an ARM program: an ARM /proc/cpuinfo (it passes the x86 host's
through, and the cpuinfo library that XNNPACK and ruy use to pick kernels crashes on it) and nothing
else. The check runs the emulated process in a private mount namespace (`unshare --mount`) with a
Raspberry Pi 4's /proc/cpuinfo (4 x Cortex-A72) bound over the host's, and QEMU set to Cortex-A72.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from importlib import metadata
from pathlib import Path

from guitar_distill.checks.debian import apt_install
from guitar_distill.common.config import MODELS_DIR, PROJECT_ROOT, Preset, resolve_config, stage_parser
from guitar_distill.common.errors import ToolkitError, run_cli

CACHE = Path(os.environ.get("GUITAR_PI_CACHE", Path.home() / ".cache" / "guitar-distill" / "pi-check"))
PYTHON = "python3.11"  # Debian 12's; its arm64 build runs the cp311 aarch64 wheels
ARM64_PACKAGES = (  # python3.11 and libstdc++ for arm64 with their run-time dependencies (apt-cache depends)
    "gcc-12-base",
    "libbz2-1.0",
    "libc6",
    "libcom-err2",
    "libcrypt1",
    "libdb5.3",
    "libexpat1",
    "libffi8",
    "libgcc-s1",
    "libgssapi-krb5-2",
    "libk5crypto3",
    "libkeyutils1",
    "libkrb5-3",
    "libkrb5support0",
    "liblzma5",
    "libncursesw6",
    "libnsl2",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "libreadline8",
    "libsqlite3-0",
    "libssl3",
    "libstdc++6",
    "libtinfo6",
    "libtirpc3",
    "libuuid1",
    "python3.11-minimal",
    "python3.11",
    "zlib1g",
)
WHEELS = ("ai-edge-litert", "numpy", "pillow")  # what the bundle's README installs on a Pi
AARCH64_TAGS = ("manylinux2014_aarch64", *(f"manylinux_2_{v}_aarch64" for v in (17, 24, 27, 28, 31, 34, 35, 36)))
QEMU_CPU = "cortex-a72"  # the Raspberry Pi 4's core
PI4_CPUINFO = (
    "".join(
        f"processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
        f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n"
        f"CPU revision\t: 3\n\n"
        for n in range(4)
    )
    + "Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n"
)
# Probability tolerance, ARM vs x86, per model kind. int8: the output is a uint8 with scale 1/256,
# and the two kernels may round an accumulator differently by one step, which can move an output by
# a quantum or two; fp32: the same float arithmetic in another order (NEON vs AVX FMA tiling).
# predict.py --json prints probabilities to 4 decimals, which adds up to 1e-4 to any difference.
JSON_ROUNDING = 1e-4
TOLERANCE = {"int8": 2.5 / 256 + JSON_ROUNDING, "fp32": 1e-5 + JSON_ROUNDING}


def run(cmd: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise ToolkitError(f"pi-check: {what} failed ({' '.join(map(str, cmd[:6]))} ...):\n{result.stderr[-3000:]}")
    return result


def ensure_qemu() -> str:
    return apt_install(("qemu-user-static",), ("qemu-aarch64-static",), "pi-check")[0]


def ensure_sysroot() -> Path:
    """Debian's arm64 Python and libraries, unpacked (no dpkg database, no binfmt registration)."""
    sysroot = CACHE / "sysroot"
    ready = CACHE / "sysroot.json"
    if ready.exists() and json.loads(ready.read_text()).get("packages") == list(ARM64_PACKAGES):
        return sysroot
    if os.geteuid() != 0:
        raise ToolkitError("pi-check builds its arm64 sysroot with apt-get once: run it as root (or with sudo)")
    print("building the arm64 sysroot from Debian's packages (once)")
    arches = run(["dpkg", "--print-foreign-architectures"], "dpkg").stdout.split()
    if "arm64" not in arches:
        run(["dpkg", "--add-architecture", "arm64"], "dpkg --add-architecture arm64")
        run(["apt-get", "update", "-qq"], "apt-get update")
    debs = CACHE / "debs"
    shutil.rmtree(debs, ignore_errors=True)
    debs.mkdir(parents=True)
    result = subprocess.run(
        ["apt-get", "download", *(f"{p}:arm64" for p in ARM64_PACKAGES)], cwd=debs, capture_output=True, text=True
    )
    if result.returncode != 0:  # an old package list: refresh once
        run(["apt-get", "update", "-qq"], "apt-get update")
        run(["apt-get", "download", *(f"{p}:arm64" for p in ARM64_PACKAGES)], "apt-get download", cwd=debs)
    shutil.rmtree(sysroot, ignore_errors=True)
    for deb in sorted(debs.glob("*.deb")):
        run(["dpkg", "-x", str(deb), str(sysroot)], f"dpkg -x {deb.name}")
    ready.write_text(json.dumps({"packages": list(ARM64_PACKAGES), "debs": sorted(d.name for d in debs.glob("*.deb"))}))
    return sysroot


def ensure_site() -> Path:
    """The aarch64 wheels of the versions installed here, unpacked into one folder for PYTHONPATH."""
    pins = [f"{name}=={metadata.version(name)}" for name in WHEELS]
    site = CACHE / ("site-" + hashlib.sha256(" ".join(pins).encode()).hexdigest()[:12])
    if (site / ".ready").exists():
        return site
    print(f"fetching the aarch64 wheels of {', '.join(pins)} (once)")
    wheels = CACHE / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    platforms = [arg for tag in AARCH64_TAGS for arg in ("--platform", tag)]
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--only-binary=:all:",
            *platforms,
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "-d",
            str(wheels),
            *pins,
        ],
        "pip download (aarch64 wheels)",
    )
    shutil.rmtree(site, ignore_errors=True)
    for wheel in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(wheel) as z:
            z.extractall(site)
    (site / ".ready").write_text("\n".join(sorted(w.name for w in wheels.glob("*.whl"))) + "\n")
    return site


def arm_command(qemu: str, sysroot: Path, site: Path, args: list[str]) -> list[str]:
    """The emulated `python3.11 ARGS`, with a Pi 4's /proc/cpuinfo in a private mount namespace."""
    cpuinfo = CACHE / "cpuinfo-pi4"
    cpuinfo.write_text(PI4_CPUINFO)
    inner = " ".join(
        [
            "mount --bind",
            str(cpuinfo),
            "/proc/cpuinfo &&",
            "exec env",
            f"PYTHONPATH={site}",
            qemu,
            "-cpu",
            QEMU_CPU,
            "-L",
            str(sysroot),
            str(sysroot / "usr" / "bin" / PYTHON),
            *(json.dumps(a) for a in args),
        ]
    )
    return ["unshare", "--mount", "sh", "-c", inner]


def bundle_copy(bundle: Path, tmp: Path) -> Path:
    """A copy of the bundle in `tmp`, its golden photos checked present (the bundle carries them)."""
    copy = tmp / bundle.name
    shutil.copytree(bundle, copy, ignore=shutil.ignore_patterns(".fastest.json"))
    expected = copy / "golden" / "expected.json"
    if not expected.exists():
        raise ToolkitError(f"{bundle}: no golden/expected.json; rebuild the bundle (guitar-distill export)")
    missing = [
        item["file"] for item in json.loads(expected.read_text()) if not (copy / "golden" / item["file"]).exists()
    ]
    if missing:
        raise ToolkitError(f"{bundle}/golden: photos missing: {', '.join(missing)}; rebuild the bundle")
    return copy


def split_info(artifacts: Path, cfg: Preset):
    """The data stage's record in `artifacts`, else the preset's split made (manifest only) in the cache."""
    from guitar_distill.common.manifest import load_data_info

    if (Path(artifacts) / "data" / "summary.json").exists():
        return load_data_info(artifacts)
    data = CACHE / "data" / cfg.name
    if not (data / "data" / "summary.json").exists():
        print(f"making the {cfg.name} preset's split (manifest only) in {data}")
        run(
            [
                sys.executable,
                "-m",
                "guitar_distill.dataset",
                "--preset",
                cfg.name,
                "--artifacts",
                str(data),
                "--no-cache",
            ],
            "python -m guitar_distill.dataset --no-cache",
            cwd=PROJECT_ROOT,
        )
    return load_data_info(data)


def validation_photos(info, count: int, seed: int) -> list[Path]:
    """`count` validation photos spread over the classes (the same seeded sample as export's)."""
    import numpy as np

    from guitar_distill.dataset.split import balanced_subset

    rows = info.split_rows("val")
    per_class = -(-count // max(len(info.classes), 1))
    picked = np.random.default_rng(seed).permutation(balanced_subset(info.labels("val"), per_class, seed))[:count]
    return [info.source / rows[i].path for i in np.sort(picked)]


def predictions(command: list[str], cwd: Path) -> dict[str, list]:
    result = run(command, "predict.py", cwd=cwd)
    out = json.loads(result.stdout)
    errors = [f"{r['file']}: {r['error']}" for r in out if "error" in r]
    if errors:
        raise ToolkitError("pi-check: predict.py could not read some photos:\n" + "\n".join(errors))
    return {r["file"]: r["top"] for r in out}


def compare(x86: dict, arm: dict, tolerance: float) -> dict:
    rows = []
    for name, top_x86 in x86.items():
        top_arm = arm[name]
        px, pa = dict(top_x86), dict(top_arm)
        diff = max(abs(px[c] - pa[c]) for c in px)
        rows.append(
            {
                "photo": str(Path(name).relative_to(Path(name).parents[1])),
                "top1_x86": top_x86[0][0],
                "top1_arm": top_arm[0][0],
                "max_prob_diff": diff,
            }
        )
    flips = sum(r["top1_x86"] != r["top1_arm"] for r in rows)
    for r in rows:  # the per-photo comparison, where there is anything to see
        if r["top1_x86"] != r["top1_arm"] or r["max_prob_diff"] > 0:
            print(
                f"  {r['photo']}: x86 {r['top1_x86']}, aarch64 {r['top1_arm']}, "
                f"max probability difference {r['max_prob_diff']:.4f}"
            )
    worst = max(r["max_prob_diff"] for r in rows)
    return {
        "photos": len(rows),
        "top1_flips": flips,
        "max_prob_diff": worst,
        "tolerance": tolerance,
        "passed": flips == 0 and worst <= tolerance,
        "rows": rows,
    }


def parse_args(argv=None):
    parser = stage_parser("Run the edge bundle on aarch64 under QEMU and compare with x86.", default_preset="cpu")
    parser.add_argument("--bundle", type=Path, help="default: ARTIFACTS/edge/guitar-student, else the released one")
    parser.add_argument("--fp32", type=Path, help="the fp32 student .tflite (default: next to the bundle's source)")
    parser.add_argument(
        "--photos", type=int, default=50, help="validation photos besides the golden ones (%(default)s)"
    )
    parser.add_argument("--out", type=Path, help="record folder (default: ARTIFACTS/bench)")
    return parser.parse_args(argv)


def selftests_on_arm(arm, copy: Path) -> dict:
    """The exit code of the bundle's self-test on aarch64, for each of its model files."""
    selftests = {}
    for kind, model in (("int8", copy / "model.tflite"), ("fp32", copy / "model_fp32.tflite")):
        if model.exists():  # both of the bundle's files pass their own golden answers
            command = arm([str(copy / "predict.py"), "--selftest", "--model", str(model)])
            run = subprocess.run(command, capture_output=True, text=True, cwd=copy)
            selftests[kind] = run.returncode
            print(f"aarch64 selftest, {model.name} (exit {run.returncode}):\n{run.stdout.strip()}")
    return selftests


def compare_on_both(arm, copy: Path, fp32: Path, photos: list[Path]) -> dict:
    """For the int8 and the fp32 file: the same photos on x86 and on aarch64, compared."""
    results = {}
    classes = len((copy / "labels.txt").read_text().split())
    for kind, model in (("int8", copy / "model.tflite"), ("fp32", fp32)):
        common = [str(copy / "predict.py"), "--model", str(model), "--labels", str(copy / "labels.txt")]
        common += ["--json", "--top-k", str(classes), *map(str, photos)]
        r = results[kind] = compare(
            predictions([sys.executable, *common], copy), predictions(arm(common), copy), TOLERANCE[kind]
        )
        print(
            f"{kind} ({model.name} from {model.parent}): {r['photos']} photos, top-1 flips {r['top1_flips']}, "
            f"max probability difference {r['max_prob_diff']:.5f} (tolerance {r['tolerance']:.5f}): "
            f"{'ok' if r['passed'] else 'FAILED'}"
        )
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = resolve_config(args)
    start = time.perf_counter()
    built = args.artifacts / "edge" / "guitar-student"
    bundle = (args.bundle or (built if built.exists() else MODELS_DIR / "student" / "guitar-student")).resolve()
    # The fp32 student of the same run as the bundle: the export's, or the released one.
    fp32 = (args.fp32 or bundle / "model_fp32.tflite").resolve()  # the commands run inside a copy of the bundle
    if not fp32.exists():
        raise ToolkitError(
            f"{fp32}: no fp32 student .tflite: run `make export` (or `make release`), or pass --fp32 FILE"
        )
    qemu, sysroot, site = ensure_qemu(), ensure_sysroot(), ensure_site()
    print(f"ready in {time.perf_counter() - start:.0f} s (cache: {CACHE})")

    def arm(command):
        return arm_command(qemu, sysroot, site, command)

    with tempfile.TemporaryDirectory() as tmp:
        copy = bundle_copy(bundle, Path(tmp))
        photos = sorted((copy / "golden").glob("*.png"))
        photos += validation_photos(split_info(args.artifacts, cfg), args.photos, cfg.data.seed)
        selftests = selftests_on_arm(arm, copy)
        results = compare_on_both(arm, copy, fp32, photos)
    passed = selftests and not any(selftests.values()) and all(r["passed"] for r in results.values())
    record = {
        "bundle": str(bundle),
        "fp32": str(fp32),
        "qemu_cpu": QEMU_CPU,
        "python": PYTHON,
        "wheels": {name: metadata.version(name) for name in WHEELS},
        "selftest_exit": selftests,
        "results": results,
        "passed": passed,
        "seconds": time.perf_counter() - start,
    }
    out = args.out or args.artifacts / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "pi_check.json").write_text(json.dumps(record, indent=2))
    print(f"pi-check {'passed' if passed else 'FAILED'} in {record['seconds']:.0f} s: {out / 'pi_check.json'}")
    return 0 if passed else 1


if __name__ == "__main__":
    run_cli(main)
