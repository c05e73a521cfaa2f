// dermsight web app: vanilla JS talking to the REST API of the same server.
"use strict";

// Monk Skin Tone scale, MST 1 -> 10 (sRGB); the same table as
// dermsight.features.skintone.MONK_SRGB (a test checks they agree).
const MONK_HEX = ["#f6ede4", "#f3e7db", "#f7ead0", "#eadaba", "#d7bd96",
                  "#a07e56", "#825c43", "#604134", "#3a312a", "#292420"];

const ITA_WORDS = {
  very_light: "very light", light: "light", intermediate: "intermediate",
  tan: "tan", brown: "brown", dark: "dark",
};

const $ = (id) => document.getElementById(id);
const state = { model: null, file: null, previewUrl: null, last: null, camCache: null,
                stream: null, busy: false };

function setStatus(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

const KIND_WORDS = {
  dermoscopy: "a dermoscopy photo",
  clinical: "a clinical photo of skin",
  not_skin: "something other than a close-up photo of skin",
};

function modelFor(kind) {
  const models = (state.model && state.model.models) || {};
  return models[kind] || null;
}

function displayName(label, kind) {
  const served = modelFor(kind);
  const names = (served && served.display_names) || (state.model && state.model.display_names)
    || {};
  return names[label] || label.replace(/[_-]/g, " ");
}

function percent(p) {
  if (p >= 0.995) return "> 99 %";
  if (p < 0.01) return "< 1 %";
  return `${Math.round(p * 100)} %`;
}

function joinWords(items) {
  if (items.length <= 1) return items.join("");
  return `${items.slice(0, -1).join(", ")} or ${items[items.length - 1]}`;
}

// ---- model info and the metadata form ----
async function loadModel() {
  try {
    const res = await fetch("/v1/model");
    const body = await res.json();
    if (!res.ok) throw new Error(body.error ? body.error.message : res.statusText);
    state.model = body;
    if (body.disclaimer) $("disclaimer-text").textContent = body.disclaimer;
    const models = Object.entries(body.models || {});
    if (models.length) {
      const list = models.map(([kind, m]) =>
        `${kind} (${m.name || m.folder}, ${m.classes.length} classes)`).join(", ");
      $("model-line").textContent = `Models: ${list}` +
        (body.router ? " · photo-type router" : "");
    } else {
      const version = body.version ? ` ${body.version}` : "";
      $("model-line").textContent = `Model: ${body.name || "dermsight"}${version} · ` +
        `${body.classes.length} classes`;
    }
    buildMetadataForm(body.metadata_schema || {});
  } catch (err) {
    $("model-line").textContent = "Model: not available";
    setStatus(`The model is not available: ${err.message}`, true);
    $("metadata-fields").innerHTML = "";
  }
}

function buildMetadataForm(schema) {
  const box = $("metadata-fields");
  box.innerHTML = "";
  const numeric = schema.numeric || {};
  const categorical = schema.categorical || {};
  const multi = schema.multi_label || {};
  const names = [...Object.keys(numeric), ...Object.keys(categorical), ...Object.keys(multi)];
  if (!names.length) {
    $("metadata").hidden = true;
    return;
  }
  for (const [name, bounds] of Object.entries(numeric)) {
    const label = document.createElement("label");
    label.textContent = name.replace(/_/g, " ");
    const input = document.createElement("input");
    input.type = "number";
    input.name = name;
    input.id = `meta-${name}`;
    input.inputMode = "decimal";
    if (bounds && bounds.min !== undefined && bounds.min !== null) input.min = bounds.min;
    if (bounds && bounds.max !== undefined && bounds.max !== null) input.max = bounds.max;
    input.placeholder = "not given";
    label.appendChild(input);
    box.appendChild(label);
  }
  for (const [name, values] of Object.entries(categorical)) {
    const label = document.createElement("label");
    label.textContent = name.replace(/_/g, " ");
    const select = document.createElement("select");
    select.name = name;
    select.id = `meta-${name}`;
    const none = document.createElement("option");
    none.value = "";
    none.textContent = "not given";
    select.appendChild(none);
    for (const value of values || []) {
      const opt = document.createElement("option");
      opt.value = value;
      opt.textContent = String(value).replace(/_/g, " ");
      select.appendChild(opt);
    }
    label.appendChild(select);
    box.appendChild(label);
  }
  for (const [name, values] of Object.entries(multi)) {
    const label = document.createElement("label");
    label.textContent = `${name.replace(/_/g, " ")} (any that apply)`;
    const select = document.createElement("select");
    select.name = name;
    select.id = `meta-${name}`;
    select.multiple = true;
    select.size = Math.min(4, (values || []).length || 1);
    for (const value of values || []) {
      const opt = document.createElement("option");
      opt.value = value;
      opt.textContent = String(value).replace(/_/g, " ");
      select.appendChild(opt);
    }
    label.appendChild(select);
    box.appendChild(label);
  }
}

function metadataFields() {
  const out = {};
  for (const el of $("metadata-fields").querySelectorAll("input, select")) {
    if (el.multiple) {
      const chosen = [...el.selectedOptions].map((o) => o.value);
      if (chosen.length) out[el.name] = chosen.join("|");
    } else if (el.value !== "") {
      out[el.name] = el.value;
    }
  }
  return out;
}

// ---- choosing or capturing a photo ----
function useFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    setStatus(`"${file.name}" is not an image.`, true);
    return;
  }
  state.file = file;
  state.last = null;
  state.camCache = null;
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = URL.createObjectURL(file);
  $("preview-img").src = state.previewUrl;
  $("preview-img").hidden = false;
  $("cam-img").hidden = true;
  $("cam-toggle").checked = false;
  $("preview").hidden = false;
  $("preview-caption").textContent = "Your photo";
  $("analyse").disabled = false;
  $("results").hidden = true;
  setStatus("Photo ready. Press “Analyse photo”.");
}

async function openWebcam() {
  try {
    state.stream = await navigator.mediaDevices.getUserMedia(
      { video: { facingMode: "environment" }, audio: false });
    $("webcam-video").srcObject = state.stream;
    $("webcam").hidden = false;
    $("webcam-snap").focus();
  } catch (err) {
    setStatus(`The camera is not available: ${err.message}`, true);
  }
}

function closeWebcam() {
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  state.stream = null;
  $("webcam").hidden = true;
}

function snapWebcam() {
  const video = $("webcam-video");
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  canvas.toBlob((blob) => {
    if (!blob) return;
    useFile(new File([blob], "camera.jpg", { type: "image/jpeg" }));
    closeWebcam();
  }, "image/jpeg", 0.92);
}

// ---- prediction ----
async function requestPrediction(withCam) {
  const form = new FormData();
  form.append("file", state.file, state.file.name || "photo.jpg");
  form.append("top_k", "3");
  form.append("cam", withCam ? "true" : "false");
  const kind = $("photo-type").value;
  if (kind && kind !== "auto") form.append("photo_type", kind);
  const meta = metadataFields();
  if (Object.keys(meta).length) form.append("metadata", JSON.stringify(meta));
  const res = await fetch("/v1/predict", { method: "POST", body: form });
  let body;
  try {
    body = await res.json();
  } catch (err) {
    throw new Error(`the server answered ${res.status}`);
  }
  if (!res.ok) {
    const e = body && body.error ? body.error : { message: res.statusText };
    throw new Error(e.message);
  }
  return body;
}

async function analyse(event) {
  if (event) event.preventDefault();
  if (!state.file || state.busy) return;
  state.busy = true;
  $("analyse").disabled = true;
  setStatus("Analysing…");
  try {
    const pred = await requestPrediction($("cam-toggle").checked);
    state.last = pred;
    state.camCache = pred.cam_png_base64 || null;
    render(pred);
    setStatus("Done.");
    $("results-heading").focus();
  } catch (err) {
    setStatus(`Could not analyse the photo: ${err.message}`, true);
  } finally {
    state.busy = false;
    $("analyse").disabled = !state.file;
  }
}

function routeLine(pred) {
  const kind = pred.photo_type;
  const route = pred.route || {};
  const words = KIND_WORDS[kind] || kind || "a photo";
  const routed = state.model && state.model.routed;
  const how = route.forced ? `You chose ${words}`
    : routed ? `Looks like ${words}` : `Treated as ${words}`;
  if (pred.refused) return `${how}.`;
  const served = modelFor(kind);
  const model = served ? `the ${kind} model (${served.name || pred.model})`
    : `the ${pred.model} model`;
  return `${how}: analysed with ${model}.`;
}

function render(pred) {
  $("results").hidden = false;
  $("route-line").textContent = routeLine(pred);
  $("route-fix").hidden = !(state.model && state.model.routed);
  $("as-clinical").hidden = pred.photo_type === "clinical";
  $("as-dermoscopy").hidden = pred.photo_type === "dermoscopy";
  $("refusal").hidden = !pred.refused;
  $("answer").hidden = !!pred.refused;
  if (pred.refused) {
    $("refusal-text").textContent = pred.message || "";
    if (pred.disclaimer) $("disclaimer-text").textContent = pred.disclaimer;
    $("cam-img").hidden = true;
    $("preview-img").hidden = false;
    return;
  }
  $("summary").textContent = pred.summary || "";
  $("summary").hidden = !pred.summary;

  const lighting = pred.lighting || {};
  const tips = lighting.tips || [];
  $("retake").hidden = lighting.ok !== false;
  const tipList = $("retake-tips");
  tipList.innerHTML = "";
  for (const tip of tips.length ? tips : ["Retake the photo in bright, even light."]) {
    const li = document.createElement("li");
    li.textContent = tip;
    tipList.appendChild(li);
  }

  const list = $("top-k");
  list.innerHTML = "";
  for (const { label, probability } of pred.top_k) {
    const li = document.createElement("li");
    li.className = "bar-row";
    const name = displayName(label, pred.photo_type);
    li.innerHTML = '<div class="bar-label"><span class="bar-name"></span>' +
      '<span class="bar-value"></span></div>' +
      '<div class="bar-track" aria-hidden="true"><div class="bar-fill"></div></div>';
    li.querySelector(".bar-name").textContent = name;
    li.querySelector(".bar-value").textContent = percent(probability);
    li.querySelector(".bar-fill").style.width = `${Math.max(0, Math.min(1, probability)) * 100}%`;
    li.setAttribute("aria-label", `${name}: ${percent(probability)}`);
    list.appendChild(li);
  }

  const set = (pred.conformal_set || []).map((c) => displayName(c, pred.photo_type));
  const cov = pred.conformal_coverage;
  let text;
  if (set.length && cov) {
    const conf = `${Math.round(cov * 100)} %`;
    text = set.length === 1
      ? `Most likely ${set[0]}, with ${conf} confidence.`
      : `Most likely one of: ${joinWords(set)}, with ${conf} confidence.`;
  } else {
    text = pred.conformal_text || "";
  }
  $("conformal").textContent = text;
  $("conformal").hidden = !text;

  const tone = pred.skin_tone || {};
  const swatch = $("tone-swatch");
  if (tone.monk && tone.monk >= 1 && tone.monk <= 10) {
    swatch.style.background = MONK_HEX[tone.monk - 1];
    swatch.setAttribute("aria-label", `Monk skin tone ${tone.monk} of 10`);
    swatch.hidden = false;
  } else {
    swatch.hidden = true;
  }
  const parts = [];
  const ROMAN = ["I", "II", "III", "IV", "V", "VI"];
  if (tone.skin_type) {
    parts.push(`Fitzpatrick skin type ${ROMAN[tone.skin_type - 1]} (learned estimate)`);
  }
  if (tone.monk) {
    parts.push(`Monk skin tone ${tone.monk} of 10` +
      (tone.skin_type ? " (derived from it, not validated)" : ""));
  }
  if (tone.ita !== null && tone.ita !== undefined) {
    const cat = ITA_WORDS[tone.category] || tone.category || "";
    parts.push(`ITA ${Math.round(tone.ita)}° (${cat})`);
  }
  let toneText = parts.length ? parts.join(" · ") : "Could not be estimated.";
  if (!tone.skin_type && (tone.skin_type_reason || "").startsWith("too little")) {
    toneText += ` (no skin-type estimate: ${tone.skin_type_reason})`;
  }
  $("tone-text").textContent = toneText;

  const warnings = $("warnings");
  warnings.innerHTML = "";
  for (const w of pred.warnings || []) {
    const li = document.createElement("li");
    li.textContent = w;
    warnings.appendChild(li);
  }
  if (pred.disclaimer) $("disclaimer-text").textContent = pred.disclaimer;
  showCam($("cam-toggle").checked);
}

function showCam(on) {
  const camImg = $("cam-img");
  if (on && state.camCache) {
    camImg.src = `data:image/png;base64,${state.camCache}`;
    camImg.hidden = false;
    $("preview-img").hidden = true;
    $("preview-caption").textContent = "Grad-CAM: warm colours mark what weighed most";
  } else {
    camImg.hidden = true;
    $("preview-img").hidden = false;
    $("preview-caption").textContent = "Your photo";
  }
}

async function toggleCam() {
  const on = $("cam-toggle").checked;
  if (!on || state.camCache || !state.last) {
    showCam(on);
    return;
  }
  setStatus("Computing the Grad-CAM heat map…");
  $("cam-toggle").disabled = true;
  try {
    const pred = await requestPrediction(true);
    state.camCache = pred.cam_png_base64 || null;
    if (!state.camCache) throw new Error("this model gave no heat map");
    showCam($("cam-toggle").checked);
    setStatus("Grad-CAM heat map shown.");
  } catch (err) {
    $("cam-toggle").checked = false;
    setStatus(`Could not compute the heat map: ${err.message}`, true);
  } finally {
    $("cam-toggle").disabled = false;
  }
}

function reanalyseAs(kind) {
  $("photo-type").value = kind;
  state.camCache = null;
  $("cam-toggle").checked = false;
  analyse(null);
}

function init() {
  $("file-input").addEventListener("change", (e) => useFile(e.target.files[0]));
  $("camera-input").addEventListener("change", (e) => useFile(e.target.files[0]));
  $("predict-form").addEventListener("submit", analyse);
  $("cam-toggle").addEventListener("change", toggleCam);
  $("as-clinical").addEventListener("click", () => reanalyseAs("clinical"));
  $("as-dermoscopy").addEventListener("click", () => reanalyseAs("dermoscopy"));
  if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
    $("webcam-open").hidden = false;
    $("webcam-open").addEventListener("click", openWebcam);
    $("webcam-close").addEventListener("click", closeWebcam);
    $("webcam-snap").addEventListener("click", snapWebcam);
  }
  loadModel();
}

init();
