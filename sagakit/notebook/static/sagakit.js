// The sagakit notebook front-end: one ES module for anywidget, no build step, no network.
// Two views share it: "diagram" (the saga's diagram with fit, pan, zoom, Stop, replay and the
// step inspector) and "history" (the run history table, whose rows can be clicked).

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
    head.innerHTML = `<b>history</b> \u00b7 ${shown} runs \u00b7 click a run to draw it`;
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
  model.on("change:selected", draw);
  draw();
}

function render(context) {
  return context.model.get("kind") === "history" ? renderHistory(context) : renderDiagram(context);
}

export default { render };
