// Draw a digit or a number (or upload a photo), send it after each stroke, show every model's answer.
// One digit goes to POST /api/predict; a number (the wider pad) to POST /api/number, which also says where each
// digit was found: boxes drawn over the pad. Plain JavaScript, no framework: the page must work offline.
"use strict";

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const ctx = pad.getContext("2d");
const overlay = $("boxes").getContext("2d");
const seen = $("seen").getContext("2d");
const INK = "#fff"; // white ink on black, as MNIST stores digits; the server's preprocessing accepts either
const PAPER = "#000";
const SIDE = 280; // the pad's height in pixels; a number's pad is three times as wide
let maxBytes = Infinity;
let sent = 0; // requests sent; only the answer to the latest one is shown
let last = null; // the previous point of the stroke being drawn, null between strokes
let mode = "digit"; // or "number"
let view = { scale: 1, dx: 0, dy: 0 }; // from the image the server read to the pad (a photo is fitted into it)
let photo = false; // the pad shows an uploaded photo: the next stroke starts a fresh drawing
let shown = []; // the number results shown, for their boxes

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
  overlay.clearRect(0, 0, pad.width, pad.height);
  view = { scale: 1, dx: 0, dy: 0 };
  photo = false;
}

function canvasPoint(ev) {
  // The canvas has a fixed size in pixels whatever its size on screen: scale from CSS pixels.
  const r = pad.getBoundingClientRect();
  return [((ev.clientX - r.left) * pad.width) / r.width, ((ev.clientY - r.top) * pad.height) / r.height];
}

function segment(from, to) {
  ctx.strokeStyle = INK;
  ctx.lineWidth = pad.height * 0.075; // about 2 pixels of the 20x20 digit box, like MNIST's pen
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(from[0], from[1]);
  ctx.lineTo(to[0], to[1]);
  ctx.stroke();
}

function dot(p) {
  ctx.fillStyle = INK;
  ctx.beginPath();
  ctx.arc(p[0], p[1], pad.height * 0.0375, 0, 2 * Math.PI);
  ctx.fill();
}

pad.addEventListener("pointerdown", (ev) => {
  if (ev.button !== 0) return;
  ev.preventDefault();
  if (photo) clearPad(); // drawing over a photo would send both
  pad.setPointerCapture(ev.pointerId); // keep the stroke when the pointer leaves the canvas
  last = canvasPoint(ev);
  dot(last); // a tap leaves a dot (a line of no length draws nothing in Chromium)
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
  send(padPng(), "image/png", "drawing.png");
}

function padPng() {
  // The pad as PNG bytes, encoded now: toBlob() waits for the browser to be idle (in Chromium up to a second, and
  // a whole second in a headless one), and the answer should follow the stroke at once.
  const bytes = atob(pad.toDataURL("image/png").split(",")[1]);
  return new Blob([Uint8Array.from(bytes, (c) => c.charCodeAt(0))], { type: "image/png" });
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

function reset() {
  clearPad();
  document.body.dataset.answered = String(next()); // an answer still on its way is for the cleared drawing: drop it
  hideError();
  showDoubt(null);
  $("source").textContent = "";
  seen.clearRect(0, 0, 28, 28);
  $("strip").replaceChildren();
  showModels(lastModels);
}
$("clear").addEventListener("click", reset);

function setMode(next) {
  mode = next;
  document.body.dataset.mode = mode;
  pad.width = $("boxes").width = mode === "number" ? 3 * SIDE : SIDE;
  pad.height = $("boxes").height = SIDE;
  $("mode-digit").setAttribute("aria-pressed", String(mode === "digit"));
  $("mode-number").setAttribute("aria-pressed", String(mode === "number"));
  $("seen-figure").hidden = mode === "number";
  $("strip-figure").hidden = mode !== "number";
  history.replaceState(null, "", mode === "number" ? "#number" : location.pathname);
  reset();
  showStatus();
}
$("mode-digit").addEventListener("click", () => setMode("digit"));
$("mode-number").addEventListener("click", () => setMode("number"));

$("upload").addEventListener("change", async (ev) => {
  const file = ev.target.files[0];
  ev.target.value = ""; // choosing the same file again fires "change" again
  if (!file) return;
  if (file.size > maxBytes) {
    showError(`${file.name} is ${(file.size / 1048576).toFixed(1)} MB; the server accepts ${(maxBytes / 1048576).toFixed(1)} MB at most`);
    return;
  }
  $("source").textContent = `Input: ${file.name}`;
  $("number-source").textContent = `Input: ${file.name}`;
  if (mode === "number") await showPhoto(file); // before sending: its answer's boxes are drawn over it
  // The server takes image types only (never a form's text/plain): anything else goes as bytes for it to judge.
  send(file, file.type.startsWith("image/") ? file.type : "application/octet-stream", file.name);
});

async function showPhoto(file) {
  // The photo, fitted into the pad, so that the boxes the server finds can be drawn over it.
  clearPad();
  try {
    const img = await createImageBitmap(file);
    const scale = Math.min(pad.width / img.width, pad.height / img.height);
    view = { scale, dx: (pad.width - img.width * scale) / 2, dy: (pad.height - img.height * scale) / 2 };
    ctx.drawImage(img, view.dx, view.dy, img.width * scale, img.height * scale);
    photo = true;
  } catch {
    // not an image the browser can draw: the server's answer says why
  }
}

// ------------------------------------------------------------------ server
function next() {
  sent += 1;
  document.body.dataset.sent = String(sent);
  return sent;
}

async function send(body, type, name, seq = next()) {
  const asked = mode;
  let message = null;
  let data = null;
  try {
    const res = await fetch(asked === "number" ? "/api/number" : "/api/predict", {
      method: "POST",
      body,
      headers: { "Content-Type": type, "X-Filename": encodeURIComponent(name) },
    });
    data = await res.json().catch(() => ({ error: `the server answered ${res.status} without a JSON body` }));
    if (!res.ok || data.error) message = data.error || `the server answered ${res.status}`;
  } catch (err) {
    message = `no answer from the server (${err.message}); is python demo.py still running?`;
  }
  if (seq !== sent || asked !== mode) return; // a newer drawing is on its way: its answer wins
  if (message) {
    showError(message);
    showDoubt(null);
    seen.clearRect(0, 0, 28, 28);
    $("strip").replaceChildren();
    overlay.clearRect(0, 0, pad.width, pad.height);
    showModels(lastModels);
  } else if (asked === "number") {
    hideError();
    showNumber(data);
  } else {
    hideError();
    showInput(seen, data.input);
    showResults(data.results);
    showDoubt(data.doubt);
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

function showDoubt(message) {
  // One digit's answers when the drawing holds several digits or nothing digit-like: said, and the cards dimmed.
  $("doubt").textContent = message || "";
  $("doubt").hidden = !message;
  for (const node of $("results").children) node.classList.toggle("doubtful", Boolean(message));
}

// ------------------------------------------------------------------ answers
function showInput(target, grid) {
  const img = target.createImageData(28, 28);
  grid.flat().forEach((v, i) => {
    img.data.set([v, v, v, 255], 4 * i);
  });
  target.putImageData(img, 0, 0);
}

function scoreText(kind, score) {
  return kind === "probability" ? `${(100 * score).toFixed(1)}%` : score.toFixed(2);
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
    li.append(el("span", "cls", cls), bar, el("span", "score", scoreText(r.score_kind, score)));
    list.append(li);
  }
  node.append(list, meta(r));
  return node;
}

function meta(r) {
  const node = el("p", "meta");
  node.append(el("span", "kind", r.score_kind), " · ", el("span", "ms", r.ms === null ? "" : `${r.ms.toFixed(1)} ms`));
  return node;
}

function numberCard(r, i) {
  // A model's whole number, then each digit with its score; hovering the card shows where it found them.
  const node = el("article", "result number");
  node.dataset.model = r.name;
  node.dataset.family = r.family;
  node.append(el("h3", "name", r.name), el("div", "label", r.number || "–"));
  const list = el("ol", "digits");
  for (const d of r.digits) {
    const li = el("li");
    li.append(el("span", "cls", d.label), el("span", "score", scoreText(r.score_kind, d.score)));
    list.append(li);
  }
  node.append(list, meta(r));
  node.addEventListener("mouseenter", () => drawBoxes(i));
  node.addEventListener("mouseleave", () => drawBoxes(0));
  return node;
}

function showNumber(data) {
  shown = data.results;
  $("results").replaceChildren(...shown.map(numberCard));
  drawBoxes(0);
  $("strip").replaceChildren(
    ...data.inputs.map((grid) => {
      const c = el("canvas", "digit-input");
      c.width = c.height = 28;
      showInput(c.getContext("2d"), grid);
      return c;
    }),
  );
  const n = data.inputs.length;
  const who = shown.length ? `cut by ${shown[0].name}, read by every model` : "no trained model to read them yet";
  $("status").textContent = `${n} digit${n === 1 ? "" : "s"} found in ${data.layout_ms.toFixed(0)} ms, ${who}.`;
}

function drawBoxes(i) {
  // The digits model i found, as boxes over the pad (in the pad's pixels: the photo's fit, if any).
  overlay.clearRect(0, 0, pad.width, pad.height);
  const r = shown[i];
  if (!r) return;
  overlay.lineWidth = 3;
  overlay.strokeStyle = "#f5a623";
  overlay.fillStyle = "#f5a623";
  overlay.font = "bold 18px system-ui, sans-serif";
  for (const d of r.digits) {
    const [x, y, w, h] = d.box.map((v) => v * view.scale);
    overlay.strokeRect(view.dx + x - 2, view.dy + y - 2, w + 4, h + 4);
    overlay.fillText(d.label, view.dx + x, Math.max(18, view.dy + y - 6));
  }
  document.body.dataset.boxes = String(r.digits.length);
}

function showResults(results) {
  $("results").replaceChildren(...results.map(card));
}

// Before any drawing: one empty card per loaded model, and the commands that train the missing ones.
let lastModels = [];
function showModels(models) {
  if (mode === "number") {
    shown = [];
    $("results").replaceChildren(...models.map((m, i) => numberCard({ ...m, number: "", digits: [], ms: null }, i)));
  } else {
    showResults(models.map((m) => ({ ...m, label: "–", top: [], ms: null })));
  }
}

let info = null;
function showStatus() {
  if (!info) return;
  const where = mode === "number" ? "Write a number in the black strip" : "Draw a digit in the black square";
  $("status").textContent = info.models.length
    ? `${info.models.length} trained model${info.models.length > 1 ? "s" : ""} (${info.dataset}). ${where}.`
    : `No trained model for ${info.dataset} yet: train one with a command below; the 28×28 input is shown anyway.`;
}

async function loadModels() {
  try {
    const res = await fetch("/api/models");
    info = await res.json();
    maxBytes = info.max_upload_bytes;
    lastModels = info.models;
    showModels(lastModels);
    showStatus();
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

setMode(location.hash === "#number" ? "number" : "digit");
loadModels();
