// Timeline page: fetches /v1/track/series/<id>/{timeline,trend} with the X-API-Key header.
// Vanilla JS, no network access beyond this server.
(function () {
  "use strict";
  const seriesId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
  const api = "/v1/track";
  const $ = (id) => document.getElementById(id);
  const keyInput = $("apikey");
  keyInput.value = sessionStorage.getItem("dermsight-key") || "";
  const objectUrls = [];

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      // style through the CSSOM: a style attribute would be refused by the page's CSP
      if (k === "class") e.className = v; else if (k === "style") e.style.cssText = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }

  async function call(path, opts) {
    const headers = Object.assign({"X-API-Key": keyInput.value.trim()}, (opts || {}).headers);
    const res = await fetch(api + path, Object.assign({}, opts, {headers}));
    if (!res.ok) {
      let msg = res.status + " " + res.statusText;
      try { const body = await res.json(); if (body.error) msg = body.error.message; } catch (e) {}
      throw new Error(msg);
    }
    return res;
  }

  function pct(x) { return (100 * x).toFixed(0) + " %"; }

  function renderTrend(t) {
    const box = $("trend");
    box.replaceChildren();
    box.append(el("h2", {}, "Trend"));
    if (!t.trend) {
      box.append(el("p", {}, t.message || "Not enough photos yet."));
    } else {
      const r = t.trend;
      box.append(el("p", {}, "Compared with the first photo: ",
        el("strong", {class: "label-" + r.label, id: "trend-label"}, r.label),
        " (confidence " + pct(r.probability) + ", " + r.method.replace("_", " ") + ")"));
      for (const [c, p] of Object.entries(r.probabilities)) {
        box.append(el("div", {class: "small"}, c + " " + pct(p)),
                   el("div", {class: "bar", style: "width:" + (100 * p).toFixed(1) + "%"}));
      }
      if (r.note) box.append(el("p", {class: "small"}, r.note));
      if (t.baseline && t.trend.method !== t.baseline.method) {
        box.append(el("p", {class: "small"}, "Simple severity baseline: " + t.baseline.label +
                          " (" + pct(t.baseline.probability) + ")"));
      }
    }
    box.append(el("p", {class: "small"}, t.n_used + " of " + t.n_photos +
                  " photos used; photos flagged for quality are left out."));
  }

  async function renderPhoto(p) {
    const img = el("img", {alt: "photo taken " + p.taken_at});
    const card = el("div", {class: "visit" + (p.flagged ? " flagged" : "")}, img,
      el("div", {}, new Date(p.taken_at).toLocaleString()));
    if (p.prediction && p.prediction.top_k) {
      const top = p.prediction.top_k.map((k) => (k.label || k.class || k[0]) + " " +
        pct(k.probability !== undefined ? k.probability : k[1])).join(", ");
      const who = p.prediction.model ? p.prediction.photo_type + " photo, read by the " +
        p.prediction.model + " model: " : "model: ";
      card.append(el("div", {class: "small"}, who + top));
    }
    if (p.tone) card.append(el("div", {class: "small"}, "skin tone: " + p.tone.ita_category +
                                 " (Monk " + p.tone.monk_estimate + ")"));
    if (p.lesion) card.append(el("div", {class: "small"}, "severity score: " +
                                 p.lesion.severity.toFixed(2)));
    card.append(el("div", {class: "small"}, p.flagged ? "⚠ " + p.flag_reason :
                   "quality: ok"));
    try {
      const res = await call("/photos/" + encodeURIComponent(p.id) + "/image");
      const url = URL.createObjectURL(await res.blob());
      objectUrls.push(url);
      img.src = url;
    } catch (e) { img.alt = "image unavailable: " + e.message; }
    return card;
  }

  async function load() {
    $("error").textContent = "";
    sessionStorage.setItem("dermsight-key", keyInput.value.trim());
    objectUrls.splice(0).forEach((u) => URL.revokeObjectURL(u));
    try {
      const sid = encodeURIComponent(seriesId);
      const tl = await (await call("/series/" + sid + "/timeline")).json();
      $("series-title").textContent = "Photos · " + (tl.name || tl.body_site || tl.id);
      $("disclaimer").lastChild.textContent = " " + tl.disclaimer;
      const cards = await Promise.all(tl.photos.map(renderPhoto));
      $("photos").replaceChildren(...cards);
      renderTrend(await (await call("/series/" + sid + "/trend")).json());
    } catch (e) { $("error").textContent = e.message; }
  }

  $("keyform").addEventListener("submit", (ev) => { ev.preventDefault(); load(); });
  $("upload").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = $("file").files[0];
    if (!f) { $("error").textContent = "choose a photo first"; return; }
    const form = new FormData();
    form.append("file", f);
    if ($("taken").value) form.append("taken_at", new Date($("taken").value).toISOString());
    try {
      await call("/series/" + encodeURIComponent(seriesId) + "/photos",
                 {method: "POST", body: form});
      $("file").value = "";
      load();
    } catch (e) { $("error").textContent = e.message; }
  });
  if (keyInput.value) load();
})();
