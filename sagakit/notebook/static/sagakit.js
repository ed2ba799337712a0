// The sagakit notebook front-end: one ES module for anywidget, no build step, no network.
// Three views share it: "diagram" (the saga's diagram with fit, pan, zoom, Stop, replay and the
// step inspector), "history" (the run history table, whose rows can be clicked) and "lab" (the
// failure lab: per-step fault controls, Run, Run x N, Reset, backend, status, progress, the
// diagram and the history, in one panel).

const NBSP = "\u00a0";
const MIN_SCALE = 0.2;
const MAX_SCALE = 4;

function button(label, cls, title) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = `sagakit-button ${cls}`;
  b.textContent = label;
  b.title = title;
  return b;
}

function baseClasses(node) {
  return [...node.classList].filter((c) => !c.startsWith("state-") && c !== "injected").join(" ");
}

function renderDiagram({ model, el }) {
  const root = document.createElement("div");
  root.className = "sagakit-view";
  const bar = document.createElement("div");
  bar.className = "sagakit-toolbar";
  const fitButton = button("Fit", "sagakit-fit", "Fit the diagram to the cell's width");
  const zoomOut = button("\u2212", "sagakit-zoom-out", "Zoom out (or Ctrl + wheel)");
  const zoomIn = button("+", "sagakit-zoom-in", "Zoom in (or Ctrl + wheel); drag to pan");
  const replayButton = button("Replay", "sagakit-replay-button", "Step through the shown run's events");
  const stopButton = button("Stop", "sagakit-stop", "Cancel the run in flight: its completed steps are compensated");
  const zoomLabel = document.createElement("span");
  zoomLabel.className = "sagakit-zoom-level";
  bar.append(fitButton, zoomOut, zoomIn, zoomLabel, replayButton, stopButton);
  const viewport = document.createElement("div");
  viewport.className = "sagakit-viewport";
  const canvas = document.createElement("div");
  canvas.className = "sagakit-canvas";
  viewport.append(canvas);
  const caption = document.createElement("div");
  caption.className = "sagakit-caption";
  const replay = document.createElement("div");
  replay.className = "sagakit-replay";
  const slider = document.createElement("input");
  slider.type = "range";
  slider.min = "0";
  slider.step = "1";
  const replayLabel = document.createElement("span");
  replayLabel.className = "sagakit-replay-label";
  const replayClose = button("\u00d7", "sagakit-replay-close", "Back to the live view");
  replay.append(slider, replayLabel, replayClose);
  const inspector = document.createElement("div");
  inspector.className = "sagakit-inspector";
  root.append(bar, viewport, caption, replay, inspector);
  el.append(root);

  let svg = null;
  let nodes = new Map(); // "step-x" / "undo-x" -> {node, base, note, title}
  let width = 0;
  let height = 0;
  let scale = 1;
  let tx = 0;
  let ty = 0;
  let fitted = true;
  let replaying = false;

  function apply() {
    if (height * scale + 8 <= 560) ty = 4; // the whole height fits: no vertical panning to lose it
    canvas.style.transform = `translate(${tx}px, ${ty}px) scale(${scale})`;
    viewport.style.height = `${Math.max(48, Math.min(height * scale + 8, 560))}px`;
    zoomLabel.textContent = `${Math.round(scale * 100)}%`;
  }

  function fit() {
    const available = viewport.clientWidth || el.clientWidth || width;
    scale = width ? Math.min(1, Math.max(MIN_SCALE, (available - 8) / width)) : 1;
    tx = 4;
    ty = 4;
    fitted = true;
    apply();
  }

  function zoom(factor, cx, cy) {
    const next = Math.min(MAX_SCALE, Math.max(MIN_SCALE, scale * factor));
    const x = cx ?? viewport.clientWidth / 2;
    const y = cy ?? viewport.clientHeight / 2;
    tx = x - ((x - tx) * next) / scale;
    ty = y - ((y - ty) * next) / scale;
    scale = next;
    fitted = false;
    focus = null;
    apply();
  }

  // The failed step the view keeps in sight while the cell settles its size; moving the view
  // by hand lets it go.
  let focus = null;

  function bringIntoView(node) {
    if (!svg || !node || typeof node.getBBox !== "function") return;
    focus = node;
    if (!viewport.clientWidth || !svg.isConnected) return; // not laid out yet: on the next resize
    const box = node.getBBox();
    const view = svg.viewBox.baseVal;
    const unit = view && view.width ? width / view.width : 1;
    const left = (box.x - (view ? view.x : 0)) * unit * scale + tx;
    const right = left + box.width * unit * scale;
    const vw = viewport.clientWidth;
    // Fitted far below readable size (a long saga): zoom in on the failed step.
    if (left >= 0 && right <= vw && scale >= 0.5) return;
    if (scale < 0.5) {
      scale = 1;
      fitted = false;
    }
    tx = vw / 2 - ((box.x - (view ? view.x : 0) + box.width / 2) * unit) * scale;
    ty = 4;
    apply();
  }

  function setTitle(entry, id) {
    const state = ([...entry.node.classList].find((c) => c.startsWith("state-")) || "state-pending").slice(6);
    const name = id.slice(5);
    const what = id.startsWith("step-") ? name : `compensation of ${name}`;
    const note = entry.note && entry.note !== NBSP ? ` \u00b7 ${entry.note}` : "";
    if (entry.title) entry.title.textContent = `${what} \u2014 ${state.replace(/-/g, " ")}${note} (click to inspect)`;
  }

  function setClass(id, classes) {
    const entry = nodes.get(id);
    if (!entry) return null;
    entry.node.setAttribute("class", `${entry.base} ${classes}`);
    setTitle(entry, id);
    return entry.node;
  }

  function setNote(id, note) {
    const entry = nodes.get(id);
    if (!entry || !entry.text) return;
    entry.note = note || NBSP;
    entry.text.textContent = entry.note;
    setTitle(entry, id);
  }

  function applyDelta(delta) {
    let failed = null;
    if (delta.r) {
      focus = null;
      for (const id of nodes.keys()) {
        setClass(id, "state-pending");
        setNote(id, "");
      }
      caption.textContent = "";
    }
    for (const [step, classes] of Object.entries(delta.s || {})) {
      const node = setClass(`step-${step}`, classes);
      if (node && classes.split(" ").includes("state-failed")) failed = node;
    }
    for (const [step, note] of Object.entries(delta.n || {})) setNote(`step-${step}`, note);
    for (const [step, classes] of Object.entries(delta.u || {})) setClass(`undo-${step}`, classes);
    for (const [step, note] of Object.entries(delta.un || {})) setNote(`undo-${step}`, note);
    if ("c" in delta) caption.textContent = delta.c || "";
    if (failed) bringIntoView(failed);
  }

  function load() {
    canvas.innerHTML = model.get("svg");
    svg = canvas.querySelector("svg");
    nodes = new Map();
    if (svg) {
      width = svg.width.baseVal.value || svg.getBoundingClientRect().width;
      height = svg.height.baseVal.value || svg.getBoundingClientRect().height;
      svg.style.width = `${width}px`;
      svg.style.height = `${height}px`;
      for (const node of svg.querySelectorAll("g[id]")) {
        if (!node.id.startsWith("step-") && !node.id.startsWith("undo-")) continue;
        const texts = node.querySelectorAll("text");
        nodes.set(node.id, {
          node,
          base: baseClasses(node),
          text: texts.length >= 2 ? texts[texts.length - 1] : null,
          note: texts.length >= 2 ? texts[texts.length - 1].textContent : "",
          title: node.querySelector("title"),
        });
      }
    } else {
      const box = canvas.firstElementChild;
      width = box ? box.scrollWidth : 0;
      height = box ? box.scrollHeight : 0;
      for (const node of canvas.querySelectorAll("[id^='step-']")) {
        nodes.set(node.id, { node, base: baseClasses(node), text: null, note: "", title: null });
      }
    }
    fit();
    applyDelta(model.get("state"));
  }

  // Clicks open the inspector; a drag pans and is not a click.
  let drag = null;
  viewport.addEventListener("pointerdown", (event) => {
    drag = { x: event.clientX, y: event.clientY, tx, ty, moved: false };
  });
  viewport.addEventListener("pointermove", (event) => {
    if (!drag || event.buttons !== 1) return;
    const dx = event.clientX - drag.x;
    const dy = event.clientY - drag.y;
    if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
    if (!drag.moved) viewport.setPointerCapture?.(event.pointerId);
    drag.moved = true;
    tx = drag.tx + dx;
    ty = drag.ty + dy;
    fitted = false;
    focus = null;
    viewport.classList.add("sagakit-dragging");
    apply();
  });
  viewport.addEventListener("pointerup", () => {
    viewport.classList.remove("sagakit-dragging");
    setTimeout(() => (drag = null), 0);
  });
  viewport.addEventListener("click", (event) => {
    if (drag && drag.moved) return;
    const node = event.target.closest("[id^='step-'], [id^='undo-']");
    if (!node || !nodes.has(node.id)) return;
    const phase = node.id.startsWith("undo-") ? "compensate" : "forward";
    model.send({ t: "inspect", step: node.id.slice(5), phase });
  });
  viewport.addEventListener(
    "wheel",
    (event) => {
      if (!event.ctrlKey && !event.metaKey) return; // a plain wheel scrolls the notebook
      event.preventDefault();
      const rect = viewport.getBoundingClientRect();
      zoom(event.deltaY < 0 ? 1.15 : 1 / 1.15, event.clientX - rect.left, event.clientY - rect.top);
    },
    { passive: false },
  );
  fitButton.addEventListener("click", () => {
    focus = null;
    fit();
  });
  zoomIn.addEventListener("click", () => zoom(1.25));
  zoomOut.addEventListener("click", () => zoom(1 / 1.25));
  stopButton.addEventListener("click", () => model.send({ t: "stop" }));
  replayButton.addEventListener("click", () => model.send({ t: "replay" }));

  function showReplay() {
    const data = model.get("replay");
    const frames = (data && data.frames) || [];
    replaying = frames.length > 0;
    replay.classList.toggle("sagakit-open", replaying);
    if (!replaying) {
      applyDelta(model.get("state"));
      return;
    }
    slider.max = String(frames.length);
    slider.value = String(frames.length);
    seek(frames.length);
  }

  function seek(position) {
    const data = model.get("replay");
    const frames = data.frames;
    applyDelta(data.base);
    for (let i = 0; i < position; i++) applyDelta(frames[i]);
    replayLabel.textContent = position === 0 ? `0/${frames.length} \u00b7 before the run` : `${position}/${frames.length} \u00b7 ${data.labels[position - 1]}`;
    root.dataset.replayPosition = String(position);
  }

  slider.addEventListener("input", () => seek(Number(slider.value)));
  replayClose.addEventListener("click", () => model.send({ t: "live" }));

  function showInspector() {
    const content = model.get("inspector");
    inspector.innerHTML = content;
    inspector.classList.toggle("sagakit-open", Boolean(content));
    const close = inspector.querySelector(".sagakit-inspector-close");
    if (close) close.addEventListener("click", () => model.send({ t: "inspect", step: "" }));
  }

  function showBusy() {
    const busy = model.get("busy");
    stopButton.disabled = !busy;
    stopButton.style.display = model.get("stoppable") ? "" : "none";
    replayButton.style.display = model.get("replayable") ? "" : "none";
    root.classList.toggle("sagakit-busy", busy);
  }

  model.on("change:svg", load);
  model.on("change:state", () => {
    if (!replaying) applyDelta(model.get("state"));
  });
  model.on("change:replay", showReplay);
  model.on("change:inspector", showInspector);
  model.on("change:busy", showBusy);
  model.on("change:stoppable", showBusy);
  model.on("change:replayable", showBusy);
  model.on("msg:custom", (message) => {
    if (message.t === "d" && !replaying) applyDelta(message);
  });
  const observer =
    typeof ResizeObserver === "function"
      ? new ResizeObserver(() => {
          if (fitted) fit();
          if (focus) bringIntoView(focus);
        })
      : null;
  observer?.observe(viewport);
  load();
  showReplay();
  showInspector();
  showBusy();
  return () => observer?.disconnect();
}

function renderHistory({ model, el }) {
  const root = document.createElement("div");
  root.className = "sagakit-history-view";
  el.append(root);

  function draw() {
    const rows = model.get("rows");
    const total = model.get("total");
    const selected = model.get("selected");
    const shown = total > rows.length ? `newest ${rows.length} of ${total}` : `${total}`;
    root.dataset.runs = String(total);
    const head = document.createElement("div");
    head.innerHTML = `<b>history</b> \u00b7 ${shown} run${total === 1 ? "" : "s"} \u00b7 click a run to draw it`;
    const table = document.createElement("table");
    table.className = "sagakit-history-table";
    table.innerHTML = "<thead><tr><th>#</th><th>status</th><th>failed step</th><th>error</th><th>ms</th><th>backend</th><th>fault</th></tr></thead>";
    const body = document.createElement("tbody");
    for (const [number, status, failed, message, ms, backend, injected] of rows) {
      const tr = document.createElement("tr");
      tr.className = `run-${status}${number === selected ? " sagakit-selected" : ""}`;
      tr.dataset.run = String(number);
      for (const value of [number, status, failed, message, ms, backend, injected ? "fault" : ""]) {
        const td = document.createElement("td");
        td.textContent = String(value);
        tr.append(td);
      }
      tr.children[1].className = "sagakit-status-cell";
      tr.addEventListener("click", () => model.send({ t: "select", run: number }));
      body.append(tr);
    }
    table.append(body);
    root.replaceChildren(head, table);
  }

  model.on("change:rows", draw);
  model.on("change:total", draw);
  model.on("change:selected", draw);
  draw();
}

const LEGEND = [
  ["pending", "#f6f7f9", "#5f6b7a"],
  ["running", "#fff4c2", "#c99a06"],
  ["succeeded", "#dcf3dc", "#2e7d32"],
  ["failed", "#fbd3d3", "#c62828"],
  ["compensating", "#ffe2b8", "#ef6c00"],
  ["compensated", "#d8e6ff", "#1f5fbf"],
  ["compensation failed", "#8e1b1b", "#5c0000"],
  ["not compensated: needs manual cleanup", "#ffe9a8", "#b71c1c"],
  ["skipped", "#f0f0f0", "#9e9e9e"],
];

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// The failure lab. Its controls write the "faults", "n" and "backend" traits (the kernel keeps
// them and saga.faults in step); buttons send "run", "run_n" and "reset"; the kernel answers
// with "busy", "status", "progress" and the history and diagram traits.
function renderLab({ model, el }) {
  const root = element("div", "sagakit-lab");
  const title = element("div", "sagakit-title");
  const diagram = element("div", "sagakit-diagram");
  const legend = element("div", "sagakit-legend");
  for (const [name, fill, stroke] of LEGEND) {
    const swatch = element("span", "sagakit-swatch");
    swatch.style.background = fill;
    swatch.style.borderColor = stroke;
    legend.append(swatch, document.createTextNode(name));
  }
  legend.append(element("span", "sagakit-legend-fault", "fault"), element("span", "sagakit-legend-no-undo", "no undo"));
  const controls = element("div", "sagakit-controls");
  const bar = element("div", "sagakit-buttons");
  const backendBox = element("label", "sagakit-backend", "backend ");
  const backend = element("select");
  backendBox.append(backend);
  const run = button("Run", "sagakit-run sagakit-primary", "Run the saga once");
  const n = element("input", "sagakit-n");
  n.type = "number";
  n.min = "1";
  n.step = "1";
  const runN = button("Run \u00d7 N", "sagakit-run-n", "Run the saga N times in sequence");
  const progressBox = element("span", "sagakit-progress");
  const progress = element("progress");
  const progressLabel = element("span", "sagakit-progress-label");
  progressBox.append(progress, progressLabel);
  const reset = button("Reset", "sagakit-reset", "Remove every fault and clear the colours (the history stays)");
  bar.append(backendBox, run, n, runN, progressBox, reset);
  const status = element("div", "sagakit-status");
  const history = element("div", "sagakit-history");
  root.append(title, diagram, legend, controls, bar, status, history);
  el.append(root);

  const rows = new Map(); // step -> {mode, delay, probability, readout}

  function faultOf(step) {
    const row = rows.get(step);
    return [row.mode.value, Number(row.delay.value) || 0, Number(row.probability.value)];
  }

  function sendFaults(step) {
    const faults = { ...model.get("faults") };
    const [mode, delay, probability] = faultOf(step);
    if (mode === "none" && delay === 0) delete faults[step];
    else faults[step] = [mode, delay, probability];
    model.set("faults", faults);
    model.save_changes();
  }

  function drawControls() {
    controls.replaceChildren();
    rows.clear();
    const modes = model.get("modes");
    for (const [step, cssName] of model.get("steps")) {
      const row = element("div", `sagakit-step sagakit-step-${cssName}`);
      const label = element("code", "sagakit-step-name", step);
      const modeBox = element("label", `sagakit-fault-${cssName}`);
      const mode = element("select");
      for (const name of modes) mode.append(new Option(name, name));
      modeBox.append(mode);
      const delayBox = element("label", `sagakit-delay-${cssName}`, "delay s ");
      const delay = Object.assign(element("input"), { type: "number", min: "0", max: "3600", step: "0.1" });
      delayBox.append(delay);
      const probabilityBox = element("label", `sagakit-probability-${cssName}`, "p ");
      const probability = Object.assign(element("input"), { type: "range", min: "0", max: "1", step: "0.05" });
      const readout = element("span", "sagakit-readout");
      probabilityBox.append(probability, readout);
      row.append(label, modeBox, delayBox, probabilityBox);
      controls.append(row);
      rows.set(step, { mode, delay, probability, readout });
      mode.addEventListener("change", () => sendFaults(step));
      delay.addEventListener("change", () => sendFaults(step));
      probability.addEventListener("input", () => (readout.textContent = Number(probability.value).toFixed(2)));
      probability.addEventListener("change", () => sendFaults(step));
    }
    showFaults();
  }

  function showFaults() {
    const faults = model.get("faults");
    for (const [step, row] of rows) {
      const [mode, delay, probability] = faults[step] || ["none", 0, 1];
      row.mode.value = mode;
      if (document.activeElement !== row.delay) row.delay.value = String(delay);
      row.probability.value = String(probability);
      row.readout.textContent = Number(probability).toFixed(2);
    }
  }

  function showTitle() {
    title.replaceChildren(element("b", "", model.get("title")), document.createTextNode(" \u00b7 failure lab"));
  }

  function showBackends() {
    const names = model.get("backends");
    backendBox.style.display = names.length ? "" : "none";
    backend.replaceChildren(...names.map((name) => new Option(name, name)));
    backend.value = model.get("backend");
  }

  function showN() {
    if (document.activeElement !== n) n.value = String(model.get("n"));
    runN.textContent = `Run \u00d7 ${model.get("n")}`;
  }

  function showProgress() {
    const [done, total] = model.get("progress");
    progress.max = Math.max(1, total);
    progress.value = done;
    progressLabel.textContent = `${done}/${total}`;
    progressBox.dataset.done = String(done);
  }

  function showBusy() {
    const busy = model.get("busy");
    for (const b of [run, runN, reset]) b.disabled = busy;
    root.classList.toggle("sagakit-running", busy);
  }

  backend.addEventListener("change", () => {
    model.set("backend", backend.value);
    model.save_changes();
  });
  n.addEventListener("change", () => {
    const value = Math.max(1, Math.floor(Number(n.value) || 1));
    n.value = String(value);
    model.set("n", value);
    model.save_changes();
    showN();
  });
  run.addEventListener("click", () => model.send({ t: "run" }));
  runN.addEventListener("click", () => model.send({ t: "run_n" }));
  reset.addEventListener("click", () => model.send({ t: "reset" }));

  model.on("change:steps", drawControls);
  model.on("change:modes", drawControls);
  model.on("change:faults", showFaults);
  model.on("change:title", showTitle);
  model.on("change:backends", showBackends);
  model.on("change:backend", showBackends);
  model.on("change:n", showN);
  model.on("change:progress", showProgress);
  model.on("change:busy", showBusy);
  model.on("change:status", () => (status.innerHTML = model.get("status")));
  showTitle();
  drawControls();
  showBackends();
  showN();
  showProgress();
  showBusy();
  status.innerHTML = model.get("status");
  renderHistory({ model, el: history });
  return renderDiagram({ model, el: diagram });
}

const VIEWS = { diagram: renderDiagram, history: renderHistory, lab: renderLab };

function render(context) {
  return (VIEWS[context.model.get("kind")] || renderDiagram)(context);
}

export default { render };
