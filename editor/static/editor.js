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

function applyState(st) {
  ui.state = st;
  if (st.image) {
    const view = $("result-view");
    view.src = st.image;
    view.dataset.version = st.version;
    $("render-time").textContent = "(rendered in " + (st.render_ms / 1000).toFixed(2) + " s)";
  }
  if (st.label_url && $("label-view").getAttribute("src") !== st.label_url) $("label-view").src = st.label_url;
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
  fillSources(st.uploads || []);
  showSelection(ui.lastOp !== "colour");
}

function selectSample(index) {
  ui.selected.clear();
  ui.lastOp = null;
  selectionChanged();
  return act("sample", { sample: index }).then((st) => {
    if (st) showMessage("Click a region (or tick classes) and give it a style or a colour.", "info");
  });
}

function clickView(event) {
  if (!ui.state || ui.state.sample === null) {
    showMessage("Pick a sample first.", "error");
    return;
  }
  const img = event.currentTarget;
  const rect = img.getBoundingClientRect();
  // the image is shown with object-fit: contain; map the click into the picture itself
  const scale = Math.min(rect.width / img.naturalWidth, rect.height / img.naturalHeight);
  const w = img.naturalWidth * scale, h = img.naturalHeight * scale;
  const x = (event.clientX - rect.left - (rect.width - w) / 2) / w;
  const y = (event.clientY - rect.top - (rect.height - h) / 2) / h;
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
  $("undo").disabled = $("reset").disabled = true;
  document.body.dataset.ready = "1";
  showMessage("Pick a sample to edit.", "info");
}

start();
