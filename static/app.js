// Draw a digit (or upload a photo), send it to POST /api/predict after each stroke, show every model's answer.
// Plain JavaScript, no framework: the page must work offline, from the files of this folder alone.
"use strict";

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const ctx = pad.getContext("2d");
const seen = $("seen").getContext("2d");
const INK = "#fff"; // white ink on black, as MNIST stores digits; the server's preprocessing accepts either
const PAPER = "#000";
let maxBytes = Infinity;
let sent = 0; // requests sent; only the answer to the latest one is shown
let inked = false;
let last = null; // the previous point of the stroke being drawn, null between strokes

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// ------------------------------------------------------------------ drawing
function clearPad() {
  ctx.fillStyle = PAPER;
  ctx.fillRect(0, 0, pad.width, pad.height);
  inked = false;
}

function canvasPoint(ev) {
  // The canvas is 280x280 pixels whatever its size on screen: scale from CSS pixels.
  const r = pad.getBoundingClientRect();
  return [((ev.clientX - r.left) * pad.width) / r.width, ((ev.clientY - r.top) * pad.height) / r.height];
}

function segment(from, to) {
  ctx.strokeStyle = INK;
  ctx.lineWidth = pad.width * 0.075; // about 2 pixels of the 20x20 digit box, like MNIST's pen
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(from[0], from[1]);
  ctx.lineTo(to[0], to[1]);
  ctx.stroke();
  inked = true;
}

pad.addEventListener("pointerdown", (ev) => {
  if (ev.button !== 0) return;
  ev.preventDefault();
  pad.setPointerCapture(ev.pointerId); // keep the stroke when the pointer leaves the canvas
  last = canvasPoint(ev);
  segment(last, last); // a tap leaves a dot
});

pad.addEventListener("pointermove", (ev) => {
  if (last === null) return;
  // Coalesced events: the points a fast pen or finger passed through between two frames.
  const events = (ev.getCoalescedEvents && ev.getCoalescedEvents()) || [];
  for (const e of events.length ? events : [ev]) {
    const p = canvasPoint(e);
    segment(last, p);
    last = p;
  }
});

function endStroke() {
  if (last === null) return;
  last = null;
  $("source").textContent = "";
  const seq = next(); // counted now, not in toBlob's callback: the page is busy from the end of the stroke on
  pad.toBlob((blob) => send(blob, "image/png", "drawing.png", seq), "image/png");
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

$("clear").addEventListener("click", () => {
  clearPad();
  document.body.dataset.answered = String(next()); // an answer still on its way is for the cleared drawing: drop it
  hideError();
  $("source").textContent = "";
  seen.clearRect(0, 0, 28, 28);
  showModels(lastModels);
});

$("upload").addEventListener("change", (ev) => {
  const file = ev.target.files[0];
  ev.target.value = ""; // choosing the same file again fires "change" again
  if (!file) return;
  if (file.size > maxBytes) {
    showError(`${file.name} is ${(file.size / 1048576).toFixed(1)} MB; the server accepts ${(maxBytes / 1048576).toFixed(1)} MB at most`);
    return;
  }
  $("source").textContent = `Input: ${file.name}`;
  // The server takes image types only (never a form's text/plain): anything else goes as bytes for it to judge.
  send(file, file.type.startsWith("image/") ? file.type : "application/octet-stream", file.name);
});

// ------------------------------------------------------------------ server
function next() {
  sent += 1;
  document.body.dataset.sent = String(sent);
  return sent;
}

async function send(body, type, name, seq = next()) {
  let message = null;
  let data = null;
  try {
    const res = await fetch("/api/predict", {
      method: "POST",
      body,
      headers: { "Content-Type": type, "X-Filename": encodeURIComponent(name) },
    });
    data = await res.json().catch(() => ({ error: `the server answered ${res.status} without a JSON body` }));
    if (!res.ok || data.error) message = data.error || `the server answered ${res.status}`;
  } catch (err) {
    message = `no answer from the server (${err.message}); is python demo.py still running?`;
  }
  if (seq !== sent) return; // a newer drawing is on its way: its answer wins
  if (message) {
    showError(message);
    seen.clearRect(0, 0, 28, 28);
    showModels(lastModels);
  } else {
    hideError();
    showInput(data.input);
    showResults(data.results);
  }
  document.body.dataset.answered = String(seq);
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function hideError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

// ------------------------------------------------------------------ answers
function showInput(grid) {
  const img = seen.createImageData(28, 28);
  grid.flat().forEach((v, i) => {
    img.data.set([v, v, v, 255], 4 * i);
  });
  seen.putImageData(img, 0, 0);
}

function card(r) {
  const node = el("article", "result");
  node.dataset.model = r.name;
  node.dataset.family = r.family;
  node.append(el("h3", "name", r.name), el("div", "label", r.label));
  const list = el("ol", "top");
  const scores = r.top.map(([, s]) => s);
  // Probabilities fill the bar in proportion; decision scores have no fixed range: scale to the shown ones.
  const lo = r.score_kind === "probability" ? 0 : Math.min(0, ...scores);
  const hi = r.score_kind === "probability" ? 1 : Math.max(...scores);
  for (const [cls, score] of r.top.slice(0, 3)) {
    const li = el("li");
    const bar = el("span", "bar");
    const fill = el("span", "fill");
    fill.style.width = `${hi > lo ? (100 * (score - lo)) / (hi - lo) : 0}%`;
    bar.append(fill);
    const value = r.score_kind === "probability" ? `${(100 * score).toFixed(1)}%` : score.toFixed(2);
    li.append(el("span", "cls", cls), bar, el("span", "score", value));
    list.append(li);
  }
  const meta = el("p", "meta");
  meta.append(el("span", "kind", r.score_kind), " · ", el("span", "ms", r.ms === null ? "" : `${r.ms.toFixed(1)} ms`));
  node.append(list, meta);
  return node;
}

function showResults(results) {
  $("results").replaceChildren(...results.map(card));
}

// Before any drawing: one empty card per loaded model, and the commands that train the missing ones.
let lastModels = [];
function showModels(models) {
  showResults(models.map((m) => ({ ...m, label: "–", top: [], ms: null })));
}

async function loadModels() {
  try {
    const res = await fetch("/api/models");
    const info = await res.json();
    maxBytes = info.max_upload_bytes;
    lastModels = info.models;
    showModels(lastModels);
    $("status").textContent = info.models.length
      ? `${info.models.length} trained model${info.models.length > 1 ? "s" : ""} (${info.dataset}). Draw a digit in the black square.`
      : `No trained model for ${info.dataset} yet: train one with a command below; the 28×28 input is shown anyway.`;
    $("missing").replaceChildren(
      ...info.missing.map((m) => {
        const li = el("li");
        li.dataset.model = m.name;
        li.append(el("span", "name", m.name), " ", el("code", "command", m.command));
        return li;
      }),
    );
    $("missing-section").hidden = info.missing.length === 0;
  } catch (err) {
    showError(`cannot list the models (${err.message}); is python demo.py running?`);
  }
  document.body.dataset.ready = "1";
}

clearPad();
loadModels();
