// SuperStyleNet style editor: the page's logic (plain JavaScript, no dependencies).
// Every request of this tab goes through one queue, in order; the server keeps
// the tab's edits under the session id it gave this page when it loaded.
"use strict";

const $ = (id) => document.getElementById(id);
const ui = {
  session: null,     // this tab's session id
  info: null,        // /api/info: name, classes, samples
  state: null,       // last state from the server
  selected: new Set(),
  lastOp: null,      // "style" / "colour" right after such an edit: the slider and colour amend it
  queue: Promise.resolve(),
  pending: 0,
  tool: "select",    // what a press on the label map does: "select" a class or "paint" a stroke
  stroke: null,      // the stroke being drawn: {points: [[fx, fy], ...]}
  original: null,    // {image, label} of the sample before any edit (the before/after toggle)
  image: null,       // the latest rendered image (data URL)
  before: false,     // the before/after toggle shows the original
};

function showMessage(text, kind) {
  const box = $("message");
  box.textContent = text || "";
  box.className = text ? kind || "info" : "";
}

async function api(path, body) {
  const init = body === undefined ? { method: "GET" }
    : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new Error("the editor's server cannot be reached (" + e.message + ")");
  }
  let data = null;
  try {
    data = await resp.json();
  } catch (e) {
    throw new Error("the server answered " + resp.status + " without a message");
  }
  if (!resp.ok) throw new Error(data.error || "the server answered " + resp.status);
  return data;
}

// Run `task` after every earlier request of this tab; errors end up in the message box.
function enqueue(task) {
  ui.pending += 1;
  document.body.classList.add("busy");
  const run = ui.queue.then(task).catch((e) => {
    showMessage(e.message, "error");
    return null;
  }).finally(() => {
    ui.pending -= 1;
    if (ui.pending === 0) document.body.classList.remove("busy");
  });
  ui.queue = run;
  return run;
}

function act(action, body) {
  return enqueue(async () => {
    const st = await api("/api/sessions/" + ui.session + "/" + action, body || {});
    if (st.error === undefined && st.session) applyState(st);
    return st;
  });
}

function sourceLabel(sample) {
  return "sample " + sample.name;
}

function buildStatic() {
  const info = ui.info;
  $("model-name").textContent = "model: " + info.name + " \u00b7 " + info.samples.length + " samples";
  const thumbs = $("thumbs");
  for (const s of info.samples) {
    const img = document.createElement("img");
    img.className = "thumb";
    img.loading = "lazy";
    img.src = "/api/samples/" + s.index + "/thumb.png";
    img.alt = img.title = s.name;
    img.dataset.index = s.index;
    img.addEventListener("click", () => selectSample(s.index));
    thumbs.appendChild(img);
  }
  const legend = $("legend");
  for (const c of info.classes) {
    const label = document.createElement("label");
    label.dataset.class = c.index;
    const box = document.createElement("input");
    box.type = "checkbox";
    box.dataset.class = c.index;
    box.addEventListener("change", () => {
      if (box.checked) ui.selected.add(c.index); else ui.selected.delete(c.index);
      selectionChanged();
    });
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = c.colour;
    label.append(box, swatch, document.createTextNode(c.name));
    legend.appendChild(label);
    $("paint-class").add(new Option(c.name, String(c.index)));
  }
  fillSources([]);
}

function fillSources(uploads) {
  const select = $("style-source");
  const keep = select.value;
  select.textContent = "";
  for (const s of ui.info.samples) select.add(new Option(sourceLabel(s), "sample:" + s.index));
  for (const u of uploads) select.add(new Option("upload " + u.name, "upload:" + u.id));
  if ([...select.options].some((o) => o.value === keep)) select.value = keep;
}

// The selection changed: a slider or colour move starts a new edit rather than amending the last one.
function selectionChanged() {
  ui.lastOp = null;
  showSelection(true);
}

function showSelection(updateColour) {
  for (const box of document.querySelectorAll("#legend input")) {
    box.checked = ui.selected.has(Number(box.dataset.class));
  }
  const first = [...ui.selected][0];
  if (updateColour && ui.state && ui.state.colours && first !== undefined && ui.state.colours[first]) {
    $("colour").value = ui.state.colours[first];
  }
}

function setSrc(img, url) {
  if (url && img.getAttribute("src") !== url) img.src = url;
}

// The before/after toggle: the original image and label map of the sample, or the edited ones.
function showBefore(on) {
  ui.before = Boolean(on && ui.original);
  const button = $("before-after");
  button.setAttribute("aria-pressed", String(ui.before));
  button.textContent = ui.before ? "Show after" : "Show before";
  $("before-badge").hidden = !ui.before;
  if (!ui.state || ui.state.sample === null) return;
  setSrc($("result-view"), ui.before ? ui.original.image : ui.image);
  setSrc($("label-view"), ui.before ? ui.original.label : ui.state.label_url);
}

function applyState(st) {
  ui.state = st;
  if (st.image) {
    ui.image = st.image;
    const view = $("result-view");
    view.dataset.version = st.version;
    $("render-time").textContent = "(rendered in " + (st.render_ms / 1000).toFixed(2) + " s)";
  }
  if (st.sample !== null) {
    $("label-figure").classList.remove("empty");
    $("result-figure").classList.remove("empty");
  }
  showBefore(st.image ? false : ui.before);  // a new render shows the edited state
  for (const img of document.querySelectorAll(".thumb")) {
    img.classList.toggle("current", Number(img.dataset.index) === st.sample);
  }
  const present = new Set(st.present || []);
  for (const label of document.querySelectorAll("#legend label")) {
    label.classList.toggle("absent", st.sample !== null && !present.has(Number(label.dataset.class)));
  }
  const history = $("history");
  history.textContent = "";
  for (const text of st.edits) {
    const li = document.createElement("li");
    li.textContent = text;
    history.appendChild(li);
  }
  $("undo").disabled = !st.can_undo;
  $("reset").disabled = !st.can_undo;
  $("download").href = st.sample === null ? "#" : "/api/sessions/" + ui.session + "/image.png?download=1";
  $("download").setAttribute("download", (st.sample_name || "image") + "_edited.png");
  $("download-label").href = st.sample === null ? "#" : "/api/sessions/" + ui.session + "/label_map.png";
  $("download-label").setAttribute("download", (st.sample_name || "label") + "_label.png");
  $("before-after").disabled = st.sample === null;
  fillSources(st.uploads || []);
  showSelection(ui.lastOp !== "colour");
}

function selectSample(index) {
  ui.selected.clear();
  ui.lastOp = null;
  selectionChanged();
  return act("sample", { sample: index }).then((st) => {
    if (!st) return;
    ui.original = { image: st.image, label: st.sample_label_url };
    showMessage("Click a region (or tick classes) and give it a style or a colour, or paint the label map.", "info");
  });
}

// Where an event falls in the picture shown with object-fit: contain: fractions of its width and height,
// and the picture's on-screen scale (screen pixels per image pixel).
function pictureFraction(event, img) {
  const rect = img.getBoundingClientRect();
  const scale = Math.min(rect.width / img.naturalWidth, rect.height / img.naturalHeight);
  const w = img.naturalWidth * scale, h = img.naturalHeight * scale;
  return { x: (event.clientX - rect.left - (rect.width - w) / 2) / w,
           y: (event.clientY - rect.top - (rect.height - h) / 2) / h, scale: scale,
           left: (rect.width - w) / 2, top: (rect.height - h) / 2, w: w, h: h };
}

function needSample() {
  if (!ui.state || ui.state.sample === null) {
    showMessage("Pick a sample first.", "error");
    return false;
  }
  return true;
}

function clickView(event) {
  if (event.currentTarget.id === "label-view" && ui.tool === "paint") return;  // strokes: pointer events
  if (!needSample()) return;
  showBefore(false);
  const { x, y } = pictureFraction(event, event.currentTarget);
  if (x < 0 || x > 1 || y < 0 || y > 1) return;
  enqueue(async () => {
    const hit = await api("/api/sessions/" + ui.session + "/pick", { x: x, y: y });
    if (hit.class === null) {
      showMessage("That pixel is 'don't care': it has no class.", "info");
      return;
    }
    if (ui.selected.has(hit.class)) ui.selected.delete(hit.class); else ui.selected.add(hit.class);
    selectionChanged();
    showMessage((ui.selected.has(hit.class) ? "Selected " : "Deselected ") + hit.name + ".", "info");
  });
}

// ---- painting: a stroke is drawn on the canvas over the label map, then sent as one "paint" edit
function brushSize() {
  return Number($("brush-size").value);
}

function drawStroke() {
  const canvas = $("stroke-canvas");
  const ratio = window.devicePixelRatio || 1;
  canvas.width = canvas.clientWidth * ratio;
  canvas.height = canvas.clientHeight * ratio;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!ui.stroke || !ui.stroke.points.length) return;
  const g = ui.stroke.geometry;
  const colour = ui.info.classes[Number($("paint-class").value)].colour;
  ctx.strokeStyle = ctx.fillStyle = colour;
  ctx.lineWidth = brushSize() * g.scale * ratio;
  ctx.lineCap = ctx.lineJoin = "round";
  const at = ([x, y]) => [(g.left + x * g.w) * ratio, (g.top + y * g.h) * ratio];
  ctx.beginPath();
  if (ui.stroke.points.length === 1) {
    const [px, py] = at(ui.stroke.points[0]);
    ctx.arc(px, py, ctx.lineWidth / 2, 0, 2 * Math.PI);
    ctx.fill();
    return;
  }
  ui.stroke.points.forEach((p, i) => { const [px, py] = at(p); if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py); });
  ctx.stroke();
}

function addStrokePoint(event) {
  const f = pictureFraction(event, $("label-view"));
  const point = [Math.min(Math.max(f.x, 0), 1), Math.min(Math.max(f.y, 0), 1)];
  const last = ui.stroke.points[ui.stroke.points.length - 1];
  const img = $("label-view");
  const near = last && Math.abs(last[0] - point[0]) * img.naturalWidth < 0.5
    && Math.abs(last[1] - point[1]) * img.naturalHeight < 0.5;
  if (near) return;  // one point per half label pixel is enough
  ui.stroke.geometry = f;
  ui.stroke.points.push(point);
  drawStroke();
}

function startStroke(event) {
  if (ui.tool !== "paint" || event.button !== 0) return;
  if (!needSample()) return;
  event.preventDefault();
  showBefore(false);
  $("label-view").setPointerCapture(event.pointerId);
  ui.stroke = { points: [] };
  addStrokePoint(event);
}

function finishStroke(event) {
  if (!ui.stroke) return;
  if (event && event.type === "pointerup") addStrokePoint(event);
  const points = ui.stroke.points;
  const body = { class: Number($("paint-class").value), size: brushSize(), points: points };
  ui.lastOp = null;
  act("paint", body).then((st) => {
    if (st) showMessage("Painted " + ui.info.classes[body.class].name + ".", "info");
  }).finally(() => {
    ui.stroke = null;
    drawStroke();
  });
}

function setTool(tool) {
  ui.tool = tool;
  document.body.classList.toggle("painting", tool === "paint");
  $("label-caption").textContent = tool === "paint"
    ? "Label map: drag to paint the chosen class"
    : "Label map: click a region to select its class";
}

function classes() {
  return [...ui.selected].sort((a, b) => a - b);
}

function applyStyle(amend) {
  const body = { classes: classes(), source: $("style-source").value, alpha: Number($("alpha").value),
                 amend: amend };
  return act("style", body).then((st) => {
    if (st) { ui.lastOp = "style"; showMessage("", ""); }
  });
}

function applyColour() {
  const body = { classes: classes(), colour: $("colour").value, amend: ui.lastOp === "colour" };
  return act("colour", body).then((st) => {
    if (st) { ui.lastOp = "colour"; showMessage("", ""); }
  });
}

function readFile(input, what) {
  return new Promise((resolve, reject) => {
    const file = input.files[0];
    if (!file) { reject(new Error("choose the " + what + " first")); return; }
    const reader = new FileReader();
    reader.onload = () => resolve({ name: file.name, data: reader.result });
    reader.onerror = () => reject(new Error(file.name + ": cannot be read"));
    reader.readAsDataURL(file);
  });
}

function upload() {
  enqueue(async () => {
    const image = await readFile($("upload-image"), "photo");
    const label = await readFile($("upload-label"), "label map");
    showMessage("Extracting the style codes of " + image.name + " (SPSE)...", "info");
    const st = await api("/api/sessions/" + ui.session + "/upload",
      { image: image.data, image_name: image.name, label: label.data, label_name: label.name });
    applyState(st);
    $("style-source").value = "upload:" + st.upload.id;
    showMessage("Style of " + st.upload.name + " ready: select classes and apply it.", "info");
  });
}

async function start() {
  try {
    ui.info = await api("/api/info");
    ui.session = (await api("/api/sessions", {})).session;
  } catch (e) {
    showMessage(e.message, "error");
    return;
  }
  document.body.dataset.session = ui.session;
  buildStatic();
  $("label-view").addEventListener("click", clickView);
  $("label-view").addEventListener("pointerdown", startStroke);
  $("label-view").addEventListener("pointermove", (e) => { if (ui.stroke) addStrokePoint(e); });
  $("label-view").addEventListener("pointerup", finishStroke);
  $("label-view").addEventListener("pointercancel", finishStroke);
  $("tool-select").addEventListener("change", () => setTool("select"));
  $("tool-paint").addEventListener("change", () => setTool("paint"));
  $("brush-size").addEventListener("input", () => { $("brush-size-value").value = $("brush-size").value; });
  $("before-after").addEventListener("click", () => showBefore(!ui.before));
  $("result-view").addEventListener("click", clickView);
  $("apply-style").addEventListener("click", () => applyStyle(false));
  $("alpha").addEventListener("input", () => { $("alpha-value").value = Number($("alpha").value).toFixed(2); });
  $("alpha").addEventListener("change", () => { if (ui.lastOp === "style") applyStyle(true); });
  $("colour").addEventListener("change", applyColour);
  $("undo").addEventListener("click", () => { ui.lastOp = null; act("undo"); });
  $("reset").addEventListener("click", () => { ui.lastOp = null; act("reset"); });
  $("upload").addEventListener("click", upload);
  document.addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === "z" && ui.state && ui.state.can_undo) { ui.lastOp = null; act("undo"); }
  });
  $("undo").disabled = $("reset").disabled = $("before-after").disabled = true;
  document.body.dataset.ready = "1";
  showMessage("Pick a sample to edit.", "info");
}

start();
