// The student in the browser: the same photo handling as edge/images.py, onnxruntime-web (wasm) for
// the network. Everything it loads sits beside this file; nothing is fetched from the internet.
"use strict";

const MAX_PIXELS = 40000000;  // as edge/images.py: larger files are refused (decompression bombs)
const MIN_SIDE = 32;
const MAX_FILE_BYTES = 60 * 1024 * 1024;
const statusEl = document.getElementById("status");

function say(text, isError = false) {
  statusEl.textContent = text;
  statusEl.className = isError ? "error" : "";
}

// Pillow's Image.resize(..., BILINEAR, reducing_gap=None) on 8-bit RGB, bit for bit: separable
// triangle filter widened by the downscale factor, coefficients normalised and rounded to 22-bit
// fixed point, horizontal pass then vertical pass, each rounded and clipped (libImaging/Resample.c).
const PRECISION_BITS = 32 - 8 - 2;
const ONE = 2 ** PRECISION_BITS;

function coefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1.0);
  const support = 1.0 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Float64Array(outSize * ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1.0 / filterscale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0.0;
    for (let x = 0; x < xmax; x++) {
      let t = Math.abs((x + xmin - center + 0.5) * ss);
      const w = t < 1.0 ? 1.0 - t : 0.0;
      kk[xx * ksize + x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      if (ww !== 0.0) kk[xx * ksize + x] /= ww;
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  const fixed = new Int32Array(kk.length);
  for (let i = 0; i < kk.length; i++) {
    fixed[i] = kk[i] < 0 ? Math.trunc(-0.5 + kk[i] * ONE) : Math.trunc(0.5 + kk[i] * ONE);
  }
  return { bounds, k: fixed, ksize };
}

function clip8(v) {
  const x = Math.floor(v / ONE);
  return x < 0 ? 0 : x > 255 ? 255 : x;
}

// rgb: Uint8Array of w*h*3. Returns Uint8Array of size*size*3.
function resizeLikePillow(rgb, w, h, size) {
  if (w === size && h === size) return rgb;
  const horiz = coefficients(w, size);
  const tmp = new Uint8Array(size * h * 3);
  for (let y = 0; y < h; y++) {
    for (let xx = 0; xx < size; xx++) {
      const xmin = horiz.bounds[xx * 2], xmax = horiz.bounds[xx * 2 + 1], base = xx * horiz.ksize;
      for (let c = 0; c < 3; c++) {
        let ss = 1 << (PRECISION_BITS - 1);
        for (let x = 0; x < xmax; x++) ss += rgb[(y * w + x + xmin) * 3 + c] * horiz.k[base + x];
        tmp[(y * size + xx) * 3 + c] = clip8(ss);
      }
    }
  }
  const vert = coefficients(h, size);
  const out = new Uint8Array(size * size * 3);
  for (let yy = 0; yy < size; yy++) {
    const ymin = vert.bounds[yy * 2], ymax = vert.bounds[yy * 2 + 1], base = yy * vert.ksize;
    for (let xx = 0; xx < size; xx++) {
      for (let c = 0; c < 3; c++) {
        let ss = 1 << (PRECISION_BITS - 1);
        for (let y = 0; y < ymax; y++) ss += tmp[((y + ymin) * size + xx) * 3 + c] * vert.k[base + y];
        out[(yy * size + xx) * 3 + c] = clip8(ss);
      }
    }
  }
  return out;
}

// Decode with EXIF orientation applied and no colour management (as Pillow), alpha on white.
async function decode(blob) {
  if (blob.size === 0) throw new Error("the file is empty");
  if (blob.size > MAX_FILE_BYTES) throw new Error(`the file is too large (${(blob.size / 1e6).toFixed(0)} MB)`);
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, { imageOrientation: "from-image", colorSpaceConversion: "none",
                                             premultiplyAlpha: "none" });
  } catch (e) {
    throw new Error("this file is not an image the browser can read (JPEG, PNG, WebP, BMP or GIF)");
  }
  const w = bitmap.width, h = bitmap.height;
  if (w * h > MAX_PIXELS) throw new Error(`too many pixels: ${w}x${h} > ${MAX_PIXELS}`);
  if (Math.min(w, h) < MIN_SIDE) throw new Error(`too small: ${w}x${h}, need at least ${MIN_SIDE} px a side`);
  const canvas = new OffscreenCanvas(w, h);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = ctx.getImageData(0, 0, w, h).data;
  const rgb = new Uint8Array(w * h * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    const a = rgba[i + 3];
    for (let c = 0; c < 3; c++) {
      rgb[j + c] = a === 255 ? rgba[i + c] : Math.round((rgba[i + c] * a + 255 * (255 - a)) / 255);
    }
  }
  return { rgb, w, h };
}

let session = null, labels = [], inputSize = 0, inputName = "";

// A released bundle leaves the runtime and model.onnx out (16 MB); the page says so instead of failing
// obscurely, with the way to add them that web.json gives.
const MISSING_HELP = "A released copy leaves them out (16 MB); ";

async function missingFiles(meta) {
  const missing = [];
  if (typeof ort === "undefined") missing.push("ort.wasm.min.js (ONNX Runtime Web)");
  const model = await fetch(meta.model, { method: "HEAD" }).catch(() => null);
  if (!model || !model.ok) missing.push(meta.model);
  return missing;
}

async function loadModel() {
  const meta = await (await fetch("web.json")).json();
  if (meta.title) document.title = document.getElementById("title").textContent = meta.title;
  if (meta.hint) document.getElementById("hint").textContent = meta.hint;
  const missing = await missingFiles(meta);
  if (missing.length) {
    const help = MISSING_HELP + (meta.missing_help || "add them") + ", then serve this folder again.";
    throw new Error(`This page cannot run yet: ${missing.join(" and ")} missing beside it. ${help}`);
  }
  ort.env.wasm.wasmPaths = "./";
  // Worker threads need SharedArrayBuffer, which a browser gives only a cross-origin isolated page (serve.py
  // sends the two headers; a plain http.server does not, and the page then runs on one thread).
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  labels = meta.classes;
  inputSize = meta.input_size;
  try {
    session = await ort.InferenceSession.create(meta.model, { executionProviders: ["wasm"] });
  } catch (e) {
    throw new Error(`the model ${meta.model} failed to load: ${e.message || e}`);
  }
  inputName = session.inputNames[0];
  return meta;
}

// Probabilities for one photo (a Blob), with the model's time alone.
async function classifyBlob(blob) {
  if (!session) throw new Error("the model is not loaded");
  const { rgb, w, h } = await decode(blob);
  const pixels = resizeLikePillow(rgb, w, h, inputSize);
  const tensor = new ort.Tensor("float32", Float32Array.from(pixels), [1, inputSize, inputSize, 3]);
  const start = performance.now();
  const output = await session.run({ [inputName]: tensor });
  const ms = performance.now() - start;
  const probs = Array.from(output[session.outputNames[0]].data);
  const order = probs.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  return { top: order.map(([p, i]) => [labels[i], p]), ms, width: w, height: h };
}

// For tests and tools: classify a photo by URL (same origin).
async function classifyUrl(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return classifyBlob(await response.blob());
}

function show(result) {
  const table = document.getElementById("result");
  table.innerHTML = "";
  for (const [label, p] of result.top.slice(0, 3)) {
    const row = table.insertRow();
    row.insertCell().textContent = label;
    const bar = row.insertCell();
    bar.className = "barcell";
    bar.innerHTML = `<div class="bar" style="width:${(100 * p).toFixed(1)}%"></div>`;
    const cell = row.insertCell();
    cell.className = "p";
    cell.textContent = `${(100 * p).toFixed(1)} %`;
  }
  say(`${result.top[0][0]}: inference ${result.ms.toFixed(1)} ms (${result.width}x${result.height} photo)`);
}

document.getElementById("file").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  const photo = document.getElementById("photo");
  document.getElementById("result").innerHTML = "";
  say(`Reading ${file.name}...`);
  try {
    const result = await classifyBlob(file);
    photo.src = URL.createObjectURL(file);
    photo.hidden = false;
    show(result);
  } catch (e) {
    photo.hidden = true;
    say(`${file.name}: ${e.message}`, true);
  }
});

window.addEventListener("error", (e) => say(`Something went wrong: ${e.message}`, true));
window.addEventListener("unhandledrejection", (e) => say(`Something went wrong: ${e.reason && e.reason.message || e.reason}`, true));

window.modelReady = loadModel()
  .then((meta) => {
    say(`Ready: ${labels.length} classes, ${inputSize}x${inputSize} input; model ${meta.model}` +
        (meta.description ? `: ${meta.description}` : "") + `; ${ort.env.wasm.numThreads} thread(s).`);
    return true;
  })
  .catch((e) => { say(e.message, true); return false; });
window.classifyUrl = classifyUrl;
