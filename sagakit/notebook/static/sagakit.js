// The sagakit notebook front-end: one ES module for anywidget, no build step, no network.
// Three views share it: "diagram" (the saga's diagram with fit, pan, zoom, Stop, replay and the
// step inspector), "history" (the run history table, whose rows can be clicked) and "lab" (the
// failure lab: per-step fault controls, Run, Run x N, Reset, backend, pace, status, progress,
// the diagram, charts, the history and the comparison of two runs, in one panel).
//
// Everything the kernel sends is data: elements are built with createElement and text nodes,
// never from markup, so no value the kernel forwards (a step name, an error message, a
// payload) can be read as HTML.

const SVG_NS = "http://www.w3.org/2000/svg";
const NBSP = "\u00a0";
const READABLE_PX = 11; // the smallest text the diagram is drawn at
const MAX_SCALE = 4;

// -- building elements from data --------------------------------------------------------------

function build(tree, namespace, keepIds = true) {
  if (typeof tree === "string") return document.createTextNode(tree);
  const [tag, attributes, ...children] = tree;
  const ns = tag === "svg" ? SVG_NS : namespace;
  const node = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    const lower = name.toLowerCase();
    if (lower.startsWith("on") || (lower.endsWith("href") && /^\s*javascript:/i.test(value))) continue;
    if (name === "id" && !keepIds) node.setAttribute("data-id", value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(build(child, ns, keepIds));
  return node;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function svgElement(tag, attributes, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function button(label, cls, title) {
  const b = element("button", `sagakit-button ${cls}`, label);
  b.type = "button";
  b.title = title;
  return b;
}

function send(model, message) {
  try {
    model.send(message);
  } catch (error) {
    // The comm is gone (the kernel restarted, the widget closed): nothing to tell.
  }
}

// Text in runs of [kind, text]: "code" runs are step names.
function richText(parts) {
  const fragment = document.createDocumentFragment();
  for (const [kind, text] of parts || []) fragment.append(kind === "code" ? element("code", "", text) : document.createTextNode(text));
  return fragment;
}

// -- the theme --------------------------------------------------------------------------------

function parseColor(text) {
  const match = /rgba?\(([^)]+)\)/.exec(text || "");
  if (!match) return null;
  const parts = match[1].split(/[ ,/]+/).filter(Boolean).map(Number);
  return { r: parts[0], g: parts[1], b: parts[2], a: parts.length > 3 ? parts[3] : 1 };
}

function luminance({ r, g, b }) {
  const channel = (value) => {
    const c = value / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
}

function parentOf(node) {
  if (node.parentElement) return node.parentElement;
  const root = node.getRootNode && node.getRootNode();
  return root && root.host ? root.host : null;
}

// Dark or light: what the front-end says (JupyterLab, marimo, VS Code), else the page's own
// background behind the view.
function detectTheme(el) {
  const body = document.body;
  const html = document.documentElement;
  if (body.dataset.jpThemeLight === "false") return "dark";
  if (body.dataset.jpThemeLight === "true") return "light";
  const kind = body.dataset.vscodeThemeKind || "";
  if (kind) return kind.includes("light") ? "light" : "dark";
  for (const node of [html, body]) {
    if (["dark", "dark-theme", "dark-mode"].some((name) => node.classList.contains(name))) return "dark";
    if (node.dataset.theme === "dark" || node.dataset.mode === "dark") return "dark";
  }
  for (let node = parentOf(el); node; node = parentOf(node)) {
    const color = parseColor(getComputedStyle(node).backgroundColor);
    if (color && color.a > 0.5) return luminance(color) < 0.3 ? "dark" : "light";
  }
  return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

function installTheme(root, el, model) {
  const style = document.createElement("style");
  style.textContent = model.get("theme") || "";
  root.prepend(style);
  const apply = () => {
    const theme = detectTheme(el);
    if (root.dataset.skTheme !== theme) root.dataset.skTheme = theme;
  };
  apply();
  requestAnimationFrame(apply); // marimo and Jupyter attach the view first, then place it
  const observer = new MutationObserver(apply);
  for (const node of [document.documentElement, document.body]) {
    observer.observe(node, { attributes: true, attributeFilter: ["class", "data-jp-theme-light", "data-theme", "data-mode", "style", "data-vscode-theme-kind"] });
  }
  const media = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
  media?.addEventListener?.("change", apply);
  return () => {
    observer.disconnect();
    media?.removeEventListener?.("change", apply);
  };
}

// Keys pressed inside the view stay there: front-ends bind arrows and letters to their own
// commands (JupyterLab's ArrowLeft collapses a heading).
function keepKeys(root) {
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  root.setAttribute("data-jp-suppress-context-menu", "");
  for (const type of ["keydown", "keyup", "keypress"]) root.addEventListener(type, (event) => event.stopPropagation());
}

// -- a tooltip ---------------------------------------------------------------------------------

function tooltip(root) {
  const tip = element("div", "sagakit-tooltip");
  tip.setAttribute("role", "tooltip");
  root.append(tip);
  return {
    show(text, event) {
      tip.textContent = text;
      tip.classList.add("sagakit-open");
      const box = root.getBoundingClientRect();
      const x = Math.min(event.clientX - box.left + 12, box.width - tip.offsetWidth - 4);
      tip.style.left = `${Math.max(0, x)}px`;
      tip.style.top = `${event.clientY - box.top + 14}px`;
    },
    hide() {
      tip.classList.remove("sagakit-open");
    },
  };
}

function withTip(node, text, tip) {
  node.dataset.tip = text;
  node.addEventListener("pointerenter", (event) => tip.show(text, event));
  node.addEventListener("pointermove", (event) => tip.show(text, event));
  node.addEventListener("pointerleave", () => tip.hide());
}

// -- a drawing of the saga, coloured by state -------------------------------------------------

// How many characters fit on a text line of a step's box, from the box's own coordinates (an
// average character is about 0.6 of the font size wide in Helvetica).
function roomFor(text) {
  const shape = text.parentNode.querySelector("path, polygon");
  const drawn = shape && (shape.getAttribute("d") || shape.getAttribute("points"));
  if (!drawn) return 0;
  const xs = (drawn.match(/-?\d+(?:\.\d+)?/g) || []).map(Number).filter((_, i) => i % 2 === 0);
  const width = Math.max(...xs) - Math.min(...xs);
  const size = Number(text.getAttribute("font-size")) || 11;
  return width > 0 ? Math.floor((width - 6) / (size * 0.6)) : 0;
}

class Drawing {
  constructor(container, { keepIds = true } = {}) {
    this.container = container;
    this.keepIds = keepIds;
    this.nodes = new Map(); // "step-x" / "undo-x" -> {node, base, text, note, title}
    this.svg = null;
    this.width = 0;
    this.height = 0;
    this.unit = 1; // CSS pixels per SVG unit at scale 1
    this.smallestFont = 10;
  }

  load(tree) {
    this.container.replaceChildren();
    this.nodes = new Map();
    if (!tree || !tree.length) return;
    const built = build(tree, null, this.keepIds);
    this.container.append(built);
    const key = this.keepIds ? "id" : "data-id";
    if (built.namespaceURI === SVG_NS) {
      this.svg = built;
      const view = built.viewBox && built.viewBox.baseVal;
      this.width = built.width.baseVal.value || (view ? view.width : 0);
      this.height = built.height.baseVal.value || (view ? view.height : 0);
      this.unit = view && view.width ? this.width / view.width : 1;
      built.style.width = `${this.width}px`;
      built.style.height = `${this.height}px`;
      const sizes = [...built.querySelectorAll("text[font-size]")].map((t) => Number(t.getAttribute("font-size"))).filter((s) => s > 0);
      this.smallestFont = sizes.length ? Math.min(...sizes) : 10;
    } else {
      this.svg = null;
      this.width = built.scrollWidth || 0;
      this.height = built.scrollHeight || 0;
      this.unit = 1;
      this.smallestFont = 12;
    }
    const byId = new Map([...built.querySelectorAll(`[${key}]`)].map((node) => [node.getAttribute(key), node]));
    for (const [id, node] of byId) {
      const isStep = id.startsWith("step-");
      if (!isStep && !id.startsWith("undo-")) continue;
      let text = null;
      if (isStep) {
        const texts = node.querySelectorAll("text:not(.undo-line)");
        text = texts.length >= 2 ? texts[texts.length - 1] : node.querySelector(".sagakit-text-note");
      } else {
        // A compensation's outcome is written on its line in the step's box.
        const step = byId.get(`step-${id.slice(5)}`);
        text = step ? step.querySelector("text.undo-line") : null;
      }
      this.nodes.set(id, {
        node,
        base: [...node.classList].filter((c) => !c.startsWith("state-") && c !== "injected" && c !== "diverges").join(" "),
        text,
        room: isStep && text && text.namespaceURI === SVG_NS ? roomFor(text) : 0,
        original: !isStep && text ? text.textContent : "",
        note: text ? text.textContent : "",
        title: node.querySelector("title"),
      });
    }
  }

  // The smallest scale at which every text reads at READABLE_PX or more.
  get readable() {
    return Math.min(1, READABLE_PX / (this.smallestFont * this.unit));
  }

  setTitle(entry, id) {
    const state = ([...entry.node.classList].find((c) => c.startsWith("state-")) || "state-pending").slice(6);
    const name = id.slice(5);
    const what = id.startsWith("step-") ? name : `compensation of ${name}`;
    const note = entry.full && entry.full !== NBSP ? ` \u00b7 ${entry.full}` : "";
    if (entry.title) entry.title.textContent = `${what} \u2014 ${state.replace(/-/g, " ")}${note} (click to inspect)`;
  }

  setClass(id, classes) {
    const entry = this.nodes.get(id);
    if (!entry) return null;
    entry.node.setAttribute("class", `${entry.base} ${classes}`.trim());
    this.setTitle(entry, id);
    return entry.node;
  }

  setNote(id, note) {
    const entry = this.nodes.get(id);
    if (!entry || !entry.text) return;
    entry.full = note || entry.original || NBSP;
    entry.text.textContent = entry.full;
    // A step's note longer than its box is cut with an ellipsis: the tooltip has it whole. The
    // room is read from the box's drawn coordinates, never measured by layout: a view scrolled
    // out of a windowed notebook is not laid out.
    if (id.startsWith("step-") && entry.room && entry.full.length > entry.room) {
      entry.text.textContent = `${entry.full.slice(0, Math.max(4, entry.room - 1))}\u2026`;
    }
    this.setTitle(entry, id);
  }

  // Returns the node of a step that just failed, if any.
  apply(delta) {
    let failed = null;
    if (!delta) return failed;
    if (delta.r) {
      for (const id of this.nodes.keys()) {
        this.setClass(id, "state-pending");
        this.setNote(id, "");
      }
    }
    for (const [step, classes] of Object.entries(delta.s || {})) {
      const node = this.setClass(`step-${step}`, classes);
      if (node && classes.split(" ").includes("state-failed")) failed = node;
    }
    for (const [step, note] of Object.entries(delta.n || {})) this.setNote(`step-${step}`, note);
    for (const [step, classes] of Object.entries(delta.u || {})) this.setClass(`undo-${step}`, classes);
    for (const [step, note] of Object.entries(delta.un || {})) this.setNote(`undo-${step}`, note);
    return failed;
  }
}

// -- the diagram view: fit, pan, zoom, inspector, replay, playback, Stop ----------------------

function renderDiagram({ model, el }) {
  const root = element("div", "sagakit-view sagakit-root");
  const bar = element("div", "sagakit-toolbar");
  const fitButton = button("Fit", "sagakit-fit", "Show the whole saga (wrapped onto rows when it is wide)");
  const zoomOut = button("\u2212", "sagakit-zoom-out", "Zoom out (or Ctrl + wheel)");
  const zoomIn = button("+", "sagakit-zoom-in", "Zoom in (or Ctrl + wheel); drag to pan");
  const replayButton = button("Replay", "sagakit-replay-button", "Step through the shown run's events");
  const stopButton = button("Stop", "sagakit-stop", "Cancel the run in flight: its completed steps are compensated");
  const zoomLabel = element("span", "sagakit-zoom-level");
  const fitNote = element("span", "sagakit-fit-note");
  bar.append(fitButton, zoomOut, zoomIn, zoomLabel, replayButton, stopButton, fitNote);
  const viewport = element("div", "sagakit-viewport");
  viewport.tabIndex = 0;
  const canvas = element("div", "sagakit-canvas");
  viewport.append(canvas);
  const caption = element("div", "sagakit-caption");
  const replay = element("div", "sagakit-replay");
  const slider = element("input");
  slider.type = "range";
  slider.min = "0";
  slider.step = "1";
  slider.setAttribute("aria-label", "replay position");
  const replayLabel = element("span", "sagakit-replay-label");
  const replayClose = button("\u00d7", "sagakit-replay-close", "Back to the live view");
  const resumePoints = element("span", "sagakit-replay-resumes");
  replay.append(slider, replayLabel, resumePoints, replayClose);
  const inspector = element("div", "sagakit-inspector");
  root.append(bar, viewport, caption, replay, inspector);
  el.append(root);
  const forgetTheme = installTheme(root, el, model);
  keepKeys(root);

  const drawing = new Drawing(canvas);
  let scale = 1;
  let tx = 0;
  let ty = 0;
  let fitted = true;
  let replaying = false;
  let playing = null; // the playback timer
  let focus = null; // the failed step kept in sight while the cell settles its size
  let sentWidth = 0;

  const maxHeight = () => Math.max(240, Math.round(window.innerHeight * 0.75));

  function apply() {
    const tall = drawing.height * scale + 8;
    if (tall <= maxHeight()) ty = 4; // the whole height fits: no vertical panning to lose it
    canvas.style.transform = `translate(${tx}px, ${ty}px) scale(${scale})`;
    viewport.style.height = `${Math.max(48, Math.min(tall, maxHeight()))}px`;
    zoomLabel.textContent = `${Math.round(scale * 100)}%`;
  }

  function explainFit() {
    const available = viewport.clientWidth - 8;
    const wide = drawing.width * scale > available + 1;
    const tall = drawing.height * scale + 8 > maxHeight() + 1;
    if (!wide && !tall) {
      fitNote.textContent = "";
      return;
    }
    const what = wide ? "wider" : "taller";
    fitNote.textContent = `At the smallest readable size the saga is ${what} than the view: drag to pan.`;
  }

  function fit() {
    const available = (viewport.clientWidth || el.clientWidth || drawing.width) - 8;
    const whole = drawing.width ? Math.min(1, available / drawing.width, (maxHeight() - 8) / Math.max(1, drawing.height)) : 1;
    scale = Math.max(drawing.readable, whole);
    tx = 4;
    ty = 4;
    fitted = true;
    apply();
    explainFit();
  }

  // The kernel wraps a wide saga onto rows that fit the view at a readable size.
  function askForWidth() {
    if (!drawing.svg || !viewport.clientWidth) return;
    const points = Math.floor((viewport.clientWidth - 8) / drawing.readable / (drawing.unit || 1));
    if (Math.abs(points - sentWidth) < Math.max(24, sentWidth * 0.05)) return;
    sentWidth = points;
    send(model, { t: "width", pt: points });
  }

  function zoom(factor, cx, cy) {
    const next = Math.min(MAX_SCALE, Math.max(drawing.readable, scale * factor));
    const x = cx ?? viewport.clientWidth / 2;
    const y = cy ?? viewport.clientHeight / 2;
    tx = x - ((x - tx) * next) / scale;
    ty = y - ((y - ty) * next) / scale;
    scale = next;
    fitted = false;
    focus = null;
    apply();
    explainFit();
  }

  function bringIntoView(node) {
    if (!drawing.svg || !node) return;
    focus = node;
    if (!viewport.clientWidth || !drawing.svg.isConnected) return; // not laid out yet: on the next resize
    const box = node.getBoundingClientRect();
    const view = viewport.getBoundingClientRect();
    const left = box.left - view.left;
    const top = box.top - view.top;
    const inside = left >= 0 && left + box.width <= view.width && top >= 0 && top + box.height <= view.height;
    if (inside) return;
    if (left < 0 || left + box.width > view.width) tx += view.width / 2 - (left + box.width / 2);
    if (top < 0 || top + box.height > view.height) ty += view.height / 2 - (top + box.height / 2);
    apply();
  }

  function applyDelta(delta) {
    if (!delta) return;
    if (delta.r) {
      focus = null;
      caption.textContent = "";
    }
    const failed = drawing.apply(delta);
    if ("c" in delta) caption.textContent = delta.c || "";
    if (failed) bringIntoView(failed);
  }

  function load() {
    drawing.load(model.get("tree"));
    fit();
    applyDelta(model.get("state"));
    askForWidth();
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
    if (!node || !drawing.nodes.has(node.id)) return;
    const phase = node.id.startsWith("undo-") ? "compensate" : "forward";
    send(model, { t: "inspect", step: node.id.slice(5), phase });
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
  viewport.addEventListener("keydown", (event) => {
    const step = 40;
    const moves = { ArrowLeft: [step, 0], ArrowRight: [-step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] };
    if (moves[event.key]) {
      tx += moves[event.key][0];
      ty += moves[event.key][1];
      fitted = false;
      apply();
      event.preventDefault();
    } else if (event.key === "+" || event.key === "=") zoom(1.25);
    else if (event.key === "-") zoom(1 / 1.25);
    else if (event.key === "0") fit();
  });
  fitButton.addEventListener("click", () => {
    focus = null;
    fit();
  });
  zoomIn.addEventListener("click", () => zoom(1.25));
  zoomOut.addEventListener("click", () => zoom(1 / 1.25));
  stopButton.addEventListener("click", () => send(model, { t: "stop" }));
  replayButton.addEventListener("click", () => send(model, { t: "replay" }));

  function openReplay(data, position) {
    const frames = (data && data.frames) || [];
    replaying = frames.length > 0;
    replay.classList.toggle("sagakit-open", replaying);
    if (!replaying) return false;
    slider.max = String(frames.length);
    slider.value = String(position);
    // Where the run was resumed from its journal: a button per resumption jumps there.
    resumePoints.replaceChildren();
    (data.resumed || []).forEach((at, index) => {
      const jump = button(data.resumed.length > 1 ? `resumed (${index + 1})` : "resumed", "sagakit-replay-resumed",
        `Jump to event ${at}: where the run was resumed from its journal`);
      jump.dataset.position = String(at);
      jump.addEventListener("click", () => {
        stopPlayback();
        seek(data, at);
      });
      resumePoints.append(jump);
    });
    seek(data, position);
    return true;
  }

  function closeReplay() {
    stopPlayback();
    replaying = false;
    replay.classList.remove("sagakit-open", "sagakit-playing");
    root.removeAttribute("data-replay-position");
    applyDelta(model.get("state"));
  }

  function showReplay() {
    const data = model.get("replay");
    if (!data || !data.frames || !data.frames.length) {
      if (!playing) closeReplay();
      return;
    }
    stopPlayback();
    openReplay(data, data.frames.length);
  }

  let shownFrames = null;

  function seek(data, position) {
    shownFrames = data;
    const frames = data.frames;
    applyDelta(data.base);
    for (let i = 0; i < position; i++) applyDelta(frames[i]);
    slider.value = String(position);
    replayLabel.textContent = position === 0 ? `0/${frames.length} \u00b7 before the run` : `${position}/${frames.length} \u00b7 ${data.labels[position - 1]}`;
    root.dataset.replayPosition = String(position);
  }

  function stopPlayback() {
    if (playing) clearTimeout(playing);
    playing = null;
    replay.classList.remove("sagakit-playing");
  }

  // A run too fast to watch, played back at the chosen pace once it ended.
  function showPlayback() {
    const data = model.get("playback");
    stopPlayback();
    if (!data || !data.frames || !data.frames.length) {
      if (replaying && !(model.get("replay").frames || []).length) closeReplay();
      return;
    }
    openReplay(data, 0);
    replay.classList.add("sagakit-playing");
    let position = 0;
    const step = () => {
      position += 1;
      if (position > data.frames.length) {
        playing = null;
        closeReplay();
        return;
      }
      seek(data, position);
      replayLabel.textContent += ` \u00b7 played at ${data.pace} s per event`;
      playing = setTimeout(step, data.pace * 1000);
    };
    playing = setTimeout(step, data.pace * 1000);
  }

  slider.addEventListener("input", () => {
    stopPlayback();
    if (shownFrames) seek(shownFrames, Number(slider.value));
  });
  replayClose.addEventListener("click", () => {
    const wasPlaying = playing !== null || replay.classList.contains("sagakit-playing");
    closeReplay();
    if (!wasPlaying || (model.get("replay").frames || []).length) send(model, { t: "live" });
  });

  function showInspector() {
    const data = model.get("inspector") || {};
    inspector.replaceChildren();
    const open = Boolean(data.step);
    inspector.classList.toggle("sagakit-open", open);
    if (!open) return;
    const close = button("\u00d7", "sagakit-inspector-close", "Close");
    close.addEventListener("click", () => send(model, { t: "inspect", step: "" }));
    const title = element("div", "sagakit-inspector-title");
    title.append(element("b", "", data.title));
    if (data.kind && data.phase === "forward") {
      const kind = element("span", "sagakit-inspector-kind", data.kind);
      kind.title = data.kind_help || "";
      title.append(document.createTextNode(" \u00b7 "), kind);
    }
    if (data.state) title.append(document.createTextNode(" \u00b7 "), element("span", "sagakit-inspector-state", data.state));
    inspector.append(close, title);
    if (data.other) {
      const other = button(data.other === "compensate" ? "its compensation \u21ba" : "the step \u2192", "sagakit-inspector-switch",
        data.other === "compensate" ? "Inspect this step's compensation" : "Inspect the step this compensation undoes");
      other.addEventListener("click", () => send(model, { t: "inspect", step: data.step, phase: data.other }));
      title.append(document.createTextNode(" "), other);
    }
    if (data.kind_help && data.phase === "forward" && data.kind !== "compensatable") {
      inspector.append(element("div", "sagakit-inspector-kind-help", data.kind_help));
    }
    if (data.hint) inspector.append(element("div", "sagakit-hint", data.hint));
    if (data.message) {
      inspector.append(element("div", "sagakit-inspector-message", data.message));
      return;
    }
    const facts = element("div", "sagakit-inspector-facts");
    facts.append("run ", element("code", "", data.run), " \u00b7 idempotency key ", element("code", "", data.key));
    inspector.append(facts);
    inspector.append(element("div", "sagakit-inspector-label", data.phase === "compensate" ? "input (what the compensation received)" : "input (what the step received)"));
    inspector.append(element("pre", "sagakit-inspector-input", data.input === null || data.input === undefined ? "not recorded" : data.input));
    const table = element("table");
    const head = element("thead");
    const headRow = element("tr");
    for (const name of ["attempt", "status", "duration", "fault", "output / error"]) headRow.append(element("th", "", name));
    head.append(headRow);
    const body = element("tbody");
    for (const [attempt, status, duration, injected, output, errorType, errorMessage, frames, resumption] of data.attempts || []) {
      const row = element("tr", `sagakit-attempt status-${String(status).replace(/[^a-z_-]/gi, "")}${resumption ? " sagakit-after-resume" : ""}`);
      const statusCell = element("td", "", status);
      if (resumption) {
        const note = element("span", "sagakit-resumed-note", ` \u00b7 resumed${resumption > 1 ? ` (${resumption})` : ""}`);
        note.title = "this attempt ran after the run was resumed from its journal";
        statusCell.append(note);
      }
      row.append(element("td", "", attempt), statusCell, element("td", "", duration), element("td", "", injected ? "injected" : ""));
      const detail = element("td");
      if (errorType) {
        detail.append(element("b", "", errorType));
        if (errorMessage) detail.append(document.createTextNode(`: ${errorMessage}`));
        if (frames && frames.length) detail.append(element("pre", "sagakit-frames", frames.join("\n")));
      } else if (output !== null && output !== undefined) {
        detail.append(element("pre", "", output));
      }
      row.append(detail);
      body.append(row);
    }
    table.append(head, body);
    inspector.append(table);
  }

  function showBusy() {
    const busy = model.get("busy");
    stopButton.disabled = !busy;
    stopButton.style.display = model.get("stoppable") ? "" : "none";
    replayButton.style.display = model.get("replayable") ? "" : "none";
    root.classList.toggle("sagakit-busy", busy);
  }

  const onState = () => {
    if (!replaying) applyDelta(model.get("state"));
  };
  const onMessage = (message) => {
    if (message.t === "d" && !replaying) applyDelta(message);
  };
  model.on("change:tree", load);
  model.on("change:state", onState);
  model.on("change:replay", showReplay);
  model.on("change:inspector", showInspector);
  model.on("change:busy", showBusy);
  model.on("change:stoppable", showBusy);
  model.on("change:replayable", showBusy);
  model.on("msg:custom", onMessage);
  const hasPlayback = model.get("playback") !== undefined;
  if (hasPlayback) model.on("change:playback", showPlayback);
  let resizeTimer = null;
  const observer =
    typeof ResizeObserver === "function"
      ? new ResizeObserver(() => {
          if (fitted) fit();
          if (focus) bringIntoView(focus);
          clearTimeout(resizeTimer);
          resizeTimer = setTimeout(askForWidth, 250);
        })
      : null;
  observer?.observe(viewport);
  load();
  showReplay();
  showInspector();
  showBusy();
  send(model, { t: "views", n: 1 });
  return {
    root,
    fit,
    cleanup() {
      observer?.disconnect();
      forgetTheme();
      stopPlayback();
      clearTimeout(resizeTimer);
      model.off("change:tree", load);
      model.off("change:state", onState);
      model.off("change:replay", showReplay);
      model.off("change:inspector", showInspector);
      model.off("change:busy", showBusy);
      model.off("change:stoppable", showBusy);
      model.off("change:replayable", showBusy);
      model.off("msg:custom", onMessage);
      if (hasPlayback) model.off("change:playback", showPlayback);
      send(model, { t: "views", n: -1 });
    },
  };
}

// -- the history table ----------------------------------------------------------------------

const HISTORY_COLUMNS = ["#", "status", "failed step", "error", "ms", "backend", "fault", "started", "", ""];
const STATUS_WORDS = { completed: "completed", compensated: "rolled back", compensation_failed: "rollback failed", cancelled: "stopped", stuck: "stuck" };

function renderHistory({ model, el }, picks) {
  const root = element("div", "sagakit-history-view");
  el.append(root);
  const comparing = picks !== undefined;

  function draw() {
    const rows = model.get("rows");
    const total = model.get("total");
    const selected = model.get("selected");
    const shown = total > rows.length ? `newest ${rows.length} of ${total}` : `${total}`;
    root.dataset.runs = String(total);
    const head = element("div", "sagakit-history-head");
    head.append(element("b", "", "history"), document.createTextNode(` \u00b7 ${shown} run${total === 1 ? "" : "s"} \u00b7 click a run to draw it`));
    if (comparing) head.append(document.createTextNode(", tick two to compare them"));
    const table = element("table", "sagakit-history-table");
    const thead = element("thead");
    const headRow = element("tr");
    for (const name of comparing ? ["compare", ...HISTORY_COLUMNS] : HISTORY_COLUMNS) headRow.append(element("th", "", name));
    thead.append(headRow);
    const body = element("tbody");
    const busy = Boolean(model.get("busy"));
    for (const [number, status, failed, message, ms, backend, injected, when, source, resumable, resumed] of rows) {
      const tr = element("tr", `run-${status}${number === selected ? " sagakit-selected" : ""}`);
      tr.dataset.run = String(number);
      if (comparing) {
        const cell = element("td", "sagakit-pick-cell");
        const pick = element("input", "sagakit-pick");
        pick.type = "checkbox";
        pick.title = `compare run ${number}`;
        pick.checked = picks.has(number);
        pick.addEventListener("click", (event) => event.stopPropagation());
        pick.addEventListener("change", () => {
          if (pick.checked) picks.add(number);
          else picks.delete(number);
          while (picks.size > 2) picks.delete(picks.values().next().value);
          draw();
          if (picks.size === 2) send(model, { t: "compare", runs: [...picks].sort((a, b) => a - b) });
        });
        cell.append(pick);
        tr.append(cell);
      }
      const values = [number, STATUS_WORDS[status] || status, failed, message, ms, backend, injected ? "injected" : "", when || "", source || ""];
      values.forEach((value, position) => {
        const td = element("td", position === 1 ? "sagakit-status-cell" : position === 3 ? "sagakit-error-cell" : "", value);
        if (position === 3 && value) td.title = String(value);
        if (position === 1 && resumed) {
          const again = element("span", "sagakit-resumed-note", ` \u00b7 resumed${resumed > 1 ? ` \u00d7${resumed}` : ""}`);
          again.title = `resumed from the journal ${resumed === 1 ? "once" : `${resumed} times`}`;
          td.append(again);
        }
        if (position === 1 && status === "stuck") td.title = "stuck after the pivot: nothing was undone; fix the cause, then resume it";
        tr.append(td);
      });
      const action = element("td", "sagakit-action-cell");
      if (resumable && comparing) {
        const resume = button("Resume", "sagakit-resume", `Resume run ${number} from the journal (fix its cause first): nothing that succeeded runs again`);
        resume.dataset.run = String(number);
        resume.disabled = busy;
        resume.addEventListener("click", (event) => {
          event.stopPropagation();
          send(model, { t: "resume", run: number });
        });
        action.append(resume);
      }
      tr.append(action);
      tr.addEventListener("click", () => send(model, { t: "select", run: number }));
      body.append(tr);
    }
    table.append(thead, body);
    root.replaceChildren(head, table);
  }

  model.on("change:rows", draw);
  model.on("change:total", draw);
  model.on("change:selected", draw);
  if (comparing) model.on("change:busy", draw);
  draw();
  return { draw, root };
}

// -- charts, drawn in the view from data -------------------------------------------------------

function ticks(max, count) {
  if (!(max > 0)) return [0];
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * power).find((s) => s >= raw) || raw;
  const found = [];
  for (let value = 0; value <= max + step * 0.001; value += step) found.push(Number(value.toFixed(6)));
  return found;
}

function formatMs(value) {
  if (value === 0) return "0";
  if (value >= 100) return `${value.toFixed(0)} ms`;
  if (value >= 1) return `${value.toFixed(1)} ms`;
  return `${(value * 1000).toFixed(0)} \u00b5s`;
}

function chartFrame(width, rows, rowHeight, label, max) {
  const left = Math.min(170, Math.max(80, Math.round(width * 0.28)));
  const right = 14;
  const top = 6;
  const plot = Math.max(60, width - left - right);
  const height = top + rows.length * rowHeight + 30;
  const svg = svgElement("svg", { class: "sagakit-chart-svg", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
  const x = (value) => left + (max > 0 ? (value / max) * plot : 0);
  rows.forEach((name, row) => {
    const y = top + row * rowHeight;
    if (row % 2 === 0) svg.append(svgElement("rect", { class: "sagakit-chart-band", x: left, y, width: plot, height: rowHeight }));
    let shown = name;
    if (shown.length > 22) shown = `${shown.slice(0, 21)}\u2026`;
    const text = svgElement("text", { class: "sagakit-chart-label", x: left - 6, y: y + rowHeight / 2 + 4, "text-anchor": "end" }, shown);
    text.append(svgElement("title", {}, name));
    svg.append(text);
  });
  const axis = top + rows.length * rowHeight;
  svg.append(svgElement("line", { class: "sagakit-chart-axis", x1: left, x2: left + plot, y1: axis, y2: axis }));
  for (const value of ticks(max, Math.max(2, Math.floor(plot / 90)))) {
    svg.append(svgElement("line", { class: "sagakit-chart-grid", x1: x(value), x2: x(value), y1: top, y2: axis }));
    svg.append(svgElement("text", { class: "sagakit-chart-tick", x: x(value), y: axis + 14, "text-anchor": "middle" }, formatMs(value)));
  }
  return { svg, x, top, plot, left };
}

// The colours the bars drawn have, each with its name in the legend (legend: [state, label, meaning]).
function barKey(states, legend) {
  const key = element("span", "sagakit-key-states");
  const known = (legend || []).map(([state]) => state);
  const order = [...states].sort((a, b) => (known.indexOf(a) + 1 || 99) - (known.indexOf(b) + 1 || 99));
  for (const state of order) {
    const entry = element("span", `sagakit-key-state sagakit-key-${state}`);
    const found = (legend || []).find(([name]) => name === state);
    if (found) entry.title = found[2];
    const swatch = svgElement("svg", { class: "sagakit-key-swatch", width: 14, height: 9, "aria-hidden": "true" });
    swatch.append(svgElement("rect", { class: `sagakit-bar state-${state}`, x: 1, y: 1, width: 12, height: 7, rx: 1.5 }));
    entry.append(swatch, document.createTextNode(found ? found[1] : state.replace("-", " ")));
    key.append(document.createTextNode(" \u00b7 "), entry);
  }
  return key;
}

function drawTimeline(box, data, tip, legend) {
  const timeline = data.timeline;
  const title = element("div", "sagakit-chart-title", timeline ? `timeline \u00b7 ${data.label}` : "timeline");
  box.append(title);
  if (!timeline || !timeline.bars.length) {
    box.append(element("div", "sagakit-chart-empty", timeline ? "No step ran in this run." : "No run to draw yet: press Run."));
    return;
  }
  const width = Math.max(320, box.clientWidth || 520);
  const rowHeight = 20;
  const max = Math.max(timeline.total, ...timeline.bars.map((bar) => bar[3]));
  const { svg, x, top } = chartFrame(width, timeline.rows, rowHeight, title.textContent, max);
  const states = new Set();
  for (const [step, phase, start, end, status, attempt, injected, error, drawn] of timeline.bars) {
    const row = timeline.rows.indexOf(step);
    const state = drawn || "pending";
    states.add(state);
    const y = top + row * rowHeight + (phase === "forward" ? 3 : 10);
    const x0 = x(start);
    const bar = svgElement("rect", {
      class: `sagakit-bar sagakit-bar-${phase} state-${state}`,
      x: x0, y, width: Math.max(3, x(end) - x0), height: 7, rx: 1.5,
    });
    const what = phase === "forward" ? step : `compensation of ${step}`;
    const stuck = state === "stuck" ? " (the run is stuck here: its retries ran out)" : "";
    const detail = `${what} \u00b7 attempt ${attempt} \u00b7 ${status}${injected ? " (injected)" : ""}${stuck} \u00b7 ${formatMs(end - start)}, from ${formatMs(start)} to ${formatMs(end)}${error ? ` \u00b7 ${error}` : ""}`;
    withTip(bar, detail, tip);
    svg.append(bar);
  }
  box.append(svg);
  const key = element("div", "sagakit-chart-key");
  key.append(element("span", "sagakit-key-forward", "upper bar: the step"), document.createTextNode(" \u00b7 "), element("span", "sagakit-key-compensate", "lower bar: its compensation"), barKey(states, legend));
  box.append(key);
}

function drawDurations(box, data, tip) {
  const durations = data.durations;
  const steps = durations ? durations.steps : [];
  const title = element("div", "sagakit-chart-title", `compensation durations by step \u00b7 ${durations ? durations.runs : 0} runs`);
  box.append(title);
  if (!steps.length) {
    box.append(element("div", "sagakit-chart-empty", "No compensation has run yet: fail a step to see them."));
    return;
  }
  const width = Math.max(320, box.clientWidth || 420);
  const rowHeight = 24;
  const max = Math.max(...steps.map((row) => row[4]));
  const names = steps.map((row) => row[0]);
  const { svg, x, top } = chartFrame(width, names, rowHeight, title.textContent, max);
  steps.forEach(([step, count, p50, p95, most, values, mine], row) => {
    const middle = top + row * rowHeight + rowHeight / 2;
    const band = svgElement("rect", { class: "sagakit-range", x: x(p50), y: middle - 5, width: Math.max(2, x(p95) - x(p50)), height: 10, rx: 2 });
    withTip(band, `${step}: ${count} compensation${count === 1 ? "" : "s"} \u00b7 p50 ${formatMs(p50)} \u00b7 p95 ${formatMs(p95)} \u00b7 max ${formatMs(most)}`, tip);
    svg.append(band);
    values.forEach((value, index) => {
      const dot = svgElement("circle", { class: "sagakit-dot", cx: x(value), cy: middle + ((index % 3) - 1) * 3, r: 3.5 });
      withTip(dot, `${step}: ${formatMs(value)}`, tip);
      svg.append(dot);
    });
    if (mine !== null && mine !== undefined) {
      const ring = svgElement("circle", { class: "sagakit-dot-shown", cx: x(mine), cy: middle, r: 6 });
      withTip(ring, `${step} in the run shown: ${formatMs(mine)}`, tip);
      svg.append(ring);
    }
  });
  box.append(svg);
  const key = element("div", "sagakit-chart-key", "dots: each compensation \u00b7 band: p50 to p95 \u00b7 ring: the run shown");
  box.append(key);
}

function renderCharts(container, model, tip) {
  function draw() {
    tip.hide(); // the marks under the pointer are about to go
    const data = model.get("charts") || {};
    const show = model.get("show_charts");
    container.style.display = show ? "" : "none";
    container.replaceChildren();
    if (!show) return;
    if (data.error) {
      container.append(element("div", "sagakit-chart-empty", data.error));
      return;
    }
    const timeline = element("div", "sagakit-chart sagakit-chart-timeline");
    const durations = element("div", "sagakit-chart sagakit-chart-durations");
    container.append(timeline, durations);
    drawTimeline(timeline, data, tip, model.get("legend"));
    drawDurations(durations, data, tip);
  }
  model.on("change:charts", draw);
  model.on("change:show_charts", draw);
  container.addEventListener("pointerleave", () => tip.hide());
  let width = 0;
  const observer =
    typeof ResizeObserver === "function"
      ? new ResizeObserver(() => {
          if (Math.abs(container.clientWidth - width) > 20) {
            width = container.clientWidth;
            draw();
          }
        })
      : null;
  observer?.observe(container);
  draw();
  return () => observer?.disconnect();
}

// -- two runs compared ------------------------------------------------------------------------

function renderComparison(container, model, picks, redrawHistory) {
  function draw() {
    const data = model.get("comparison") || {};
    container.replaceChildren();
    const open = Boolean(data.runs && data.runs.length === 2);
    container.classList.toggle("sagakit-open", open);
    if (!open) return;
    const [a, b] = data.runs;
    const head = element("div", "sagakit-compare-head");
    head.append(element("b", "", `run ${a.number} (${a.status}) vs run ${b.number} (${b.status})`));
    const close = button("\u00d7", "sagakit-compare-close", "Close the comparison");
    close.addEventListener("click", () => {
      picks.clear();
      redrawHistory();
      send(model, { t: "compare_close" });
    });
    head.append(close);
    container.append(head);
    container.append(element("div", "sagakit-compare-first", data.first ? data.first.text : "The two runs did the same, step for step (durations aside)."));
    const pair = element("div", "sagakit-compare-pair");
    const drawings = [];
    for (const [letter, run] of [["a", a], ["b", b]]) {
      const side = element("div", `sagakit-compare-side sagakit-compare-${letter}`);
      side.append(element("div", "sagakit-compare-label", `run ${letter} = run ${run.number} \u00b7 ${run.status}`));
      const holder = element("div", "sagakit-compare-drawing");
      side.append(holder);
      pair.append(side);
      const drawing = new Drawing(holder, { keepIds: false });
      drawing.load(model.get("tree"));
      drawing.apply(run.state);
      drawings.push([drawing, holder]);
      side.append(element("div", "sagakit-compare-caption", run.state.c || ""));
    }
    container.append(pair);
    // Side by side when both fit at a readable size, else one above the other; never smaller
    // than readable (a drawing wider than its side scrolls).
    const [first] = drawings;
    const room = container.clientWidth - 40;
    const sideBySide = first[0].width * first[0].readable * 2 + 24 <= room;
    pair.classList.toggle("sagakit-side-by-side", sideBySide);
    for (const [drawing, holder] of drawings) {
      if (!drawing.svg) continue;
      const width = (sideBySide ? room / 2 - 16 : room) || drawing.width;
      const scale = Math.max(drawing.readable, Math.min(1, width / drawing.width));
      drawing.svg.style.width = `${drawing.width * scale}px`;
      drawing.svg.style.height = `${drawing.height * scale}px`;
      holder.dataset.scale = String(scale);
    }
    container.append(pair);
    const table = element("table", "sagakit-compare-table");
    const thead = element("thead");
    const headRow = element("tr");
    for (const name of data.columns) headRow.append(element("th", "", name));
    thead.append(headRow);
    const body = element("tbody");
    const hidden = ["differs", "difference", "index"].map((name) => data.columns.indexOf(name));
    const difference = data.columns.indexOf("difference");
    const stepColumn = data.columns.indexOf("step");
    const phaseColumn = data.columns.indexOf("phase");
    for (const row of data.rows) {
      const what = row[difference];
      let cls = what === "output" ? "sagakit-differs-output" : what ? "sagakit-differs" : "";
      if (data.first && row[stepColumn] === data.first.step && row[phaseColumn] === data.first.phase) cls += " sagakit-first";
      const tr = element("tr", cls.trim());
      if (what) tr.title = `differs: ${what}`;
      row.forEach((value, position) => {
        if (hidden.includes(position)) return;
        const td = element("td", "", value);
        if (value.length > 40) td.title = value;
        tr.append(td);
      });
      body.append(tr);
    }
    headRow.replaceChildren(...data.columns.filter((_, position) => !hidden.includes(position)).map((name) => element("th", "", name)));
    table.append(thead, body);
    const scroller = element("div", "sagakit-compare-scroll");
    scroller.append(table);
    container.append(scroller);
  }
  model.on("change:comparison", draw);
  draw();
}

// -- the failure lab ----------------------------------------------------------------------------

// A step's kind, next to its name in the controls and in the legend.
const KIND_BADGES = { pivot: "pivot", retriable: "\u21bb retriable", readonly: "read-only" };
const KIND_LEGEND = { pivot: "pivot: the point of no return", retriable: "\u21bb retriable (after the pivot)", readonly: "read-only" };
const KIND_HELP = {
  pivot: "the pivot (double outline): the go/no-go step. A failure at or before it rolls back; once it succeeds the saga must complete, so nothing is undone any more",
  retriable: "after the pivot: a failure is retried under the step's policy, never compensated; when the retries run out the run is stuck (resume it from a journal)",
  readonly: "read-only: the step changes nothing, so there is nothing to undo and it needs no compensation",
};

// Its controls write the "faults", "n", "backend" and "pace" traits (the kernel keeps them and
// saga.faults in step); buttons send "run", "run_n", "reset" and "reload"; the kernel answers
// with "busy", "status", "progress", the history, charts and diagram traits.
function renderLab({ model, el }) {
  const root = element("div", "sagakit-lab sagakit-root");
  keepKeys(root);
  const forgetTheme = installTheme(root, el, model);
  const tip = tooltip(root);
  const title = element("div", "sagakit-title");
  const diagram = element("div", "sagakit-diagram");
  const legend = element("div", "sagakit-legend");
  const controls = element("div", "sagakit-controls");
  const modesHelp = element("details", "sagakit-modes");
  const bar = element("div", "sagakit-buttons");
  const backendBox = element("label", "sagakit-backend", "backend ");
  const backend = element("select");
  backendBox.append(backend);
  const run = button("Run", "sagakit-run sagakit-primary", "Run the saga once");
  const n = element("input", "sagakit-n");
  n.type = "number";
  n.min = "1";
  n.step = "1";
  n.setAttribute("aria-label", "N");
  const runN = button("Run \u00d7 N", "sagakit-run-n", "Run the saga N times in sequence");
  const progressBox = element("span", "sagakit-progress");
  const progress = element("progress");
  const progressLabel = element("span", "sagakit-progress-label");
  progressBox.append(progress, progressLabel);
  const reset = button("Reset", "sagakit-reset", "Remove every fault and clear the colours (the history stays)");
  const paceBox = element("label", "sagakit-pace", "watch ");
  paceBox.title = "A run too fast to see is played back at this pace once it ends";
  const pace = element("select");
  for (const [label, value] of [["live only", 0], ["0.1 s / event", 0.1], ["0.25 s / event", 0.25], ["0.5 s / event", 0.5], ["1 s / event", 1]]) pace.append(new Option(label, String(value)));
  paceBox.append(pace);
  bar.append(backendBox, run, n, runN, progressBox, reset, paceBox);
  const status = element("div", "sagakit-status");
  status.setAttribute("aria-live", "polite");
  const comparison = element("div", "sagakit-compare");
  const charts = element("div", "sagakit-charts");
  const history = element("div", "sagakit-history");
  root.append(title, diagram, legend, controls, modesHelp, bar, status, comparison, charts, history);
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
    controls.classList.toggle("sagakit-has-kinds", model.get("steps").some(([, , , kind]) => kind && kind !== "compensatable"));
    for (const [step, cssName, undo, kind] of model.get("steps")) {
      const row = element("div", `sagakit-step sagakit-step-${cssName}${kind && kind !== "compensatable" ? ` kind-${kind}` : ""}`);
      const label = element("code", "sagakit-step-name", step);
      label.title = step;
      const badge = element("span", `sagakit-kind kind-${kind || "compensatable"}`, KIND_BADGES[kind] || "");
      badge.title = KIND_HELP[kind] || (undo ? "compensatable: a failure after it rolls it back" : "no compensation: a rollback leaves its effect in place");
      const modeBox = element("label", `sagakit-fault-${cssName}`);
      const mode = element("select");
      mode.setAttribute("aria-label", `fault of ${step}`);
      for (const [name, help] of modes) {
        if (!undo && name.endsWith("_compensation")) continue; // nothing to fail: no compensation
        const option = new Option(name, name);
        option.title = help;
        mode.append(option);
      }
      modeBox.append(mode);
      const delayBox = element("label", `sagakit-delay-${cssName}`, "delay s ");
      const delay = Object.assign(element("input"), { type: "number", min: "0", max: "3600", step: "0.1" });
      delayBox.append(delay);
      const probabilityBox = element("label", `sagakit-probability-${cssName}`, "p ");
      probabilityBox.title = "the probability that the fault fires on a run";
      const probability = Object.assign(element("input"), { type: "range", min: "0", max: "1", step: "0.05" });
      probability.setAttribute("aria-label", `probability of the fault of ${step}`);
      const readout = element("span", "sagakit-readout");
      probabilityBox.append(probability, readout);
      row.append(label, badge, modeBox, delayBox, probabilityBox);
      controls.append(row);
      rows.set(step, { mode, delay, probability, readout });
      mode.addEventListener("change", () => {
        mode.title = (modes.find(([name]) => name === mode.value) || ["", ""])[1];
        sendFaults(step);
      });
      delay.addEventListener("change", () => sendFaults(step));
      probability.addEventListener("input", () => (readout.textContent = Number(probability.value).toFixed(2)));
      probability.addEventListener("change", () => sendFaults(step));
    }
    modesHelp.replaceChildren(element("summary", "", "what the fault modes do"));
    const list = element("dl");
    for (const [name, help] of modes) list.append(element("dt", "", name), element("dd", "", help));
    modesHelp.append(list);
    showFaults();
  }

  function showFaults() {
    const faults = model.get("faults");
    const modes = model.get("modes");
    for (const [step, row] of rows) {
      const [mode, delay, probability] = faults[step] || ["none", 0, 1];
      row.mode.value = mode;
      row.mode.title = (modes.find(([name]) => name === mode) || ["", ""])[1];
      if (document.activeElement !== row.delay && root.getRootNode().activeElement !== row.delay) row.delay.value = String(delay);
      row.probability.value = String(probability);
      row.readout.textContent = Number(probability).toFixed(2);
    }
  }

  function showTitle() {
    title.replaceChildren(element("b", "", model.get("title")), document.createTextNode(" \u00b7 failure lab"));
    const journal = model.get("journal");
    if (journal) {
      const source = element("span", "sagakit-journal", ` \u00b7 history from the journal ${journal} `);
      const reload = button("Reload", "sagakit-reload", "Read the journal again: runs other kernels and processes recorded since");
      reload.addEventListener("click", () => send(model, { t: "reload" }));
      title.append(source, reload);
    }
  }

  function showLegend() {
    legend.replaceChildren();
    for (const [state, label, meaning] of model.get("legend")) {
      const entry = element("span", `sagakit-legend-entry sagakit-legend-${state}`);
      entry.title = meaning;
      const swatch = element("span", "sagakit-swatch");
      swatch.style.background = `var(--sk-${state}-fill)`;
      swatch.style.borderColor = `var(--sk-${state}-stroke)`;
      entry.append(swatch, document.createTextNode(label));
      legend.append(entry);
    }
    const fault = element("span", "sagakit-legend-entry sagakit-legend-fault", "fault planned");
    fault.title = "a fault is planned or was injected on this step";
    legend.append(fault);
    const steps = model.get("steps");
    // A step left without a compensation is flagged; one that needs none by its kind is not.
    if (steps.some(([, , undo, kind]) => !undo && (!kind || kind === "compensatable"))) {
      const noUndo = element("span", "sagakit-legend-entry sagakit-legend-no-undo", "no compensation");
      noUndo.title = "a dotted box: the step has no compensation, so a rollback leaves its effect in place";
      legend.append(noUndo);
    }
    for (const kind of ["pivot", "retriable", "readonly"]) {
      if (!steps.some((entry) => entry[3] === kind)) continue;
      const entry = element("span", `sagakit-legend-entry sagakit-legend-kind sagakit-legend-${kind}`, KIND_LEGEND[kind]);
      entry.title = KIND_HELP[kind];
      legend.append(entry);
    }
  }

  function showBackends() {
    const names = model.get("backends");
    backendBox.style.display = names.length ? "" : "none";
    backend.replaceChildren(...names.map((name) => new Option(name, name)));
    backend.value = model.get("backend");
  }

  function showN() {
    if (root.getRootNode().activeElement !== n) n.value = String(model.get("n"));
    runN.textContent = `Run \u00d7 ${model.get("n")}`;
  }

  function showPace() {
    const value = model.get("pace");
    const found = [...pace.options].find((option) => Number(option.value) === value);
    if (!found) pace.append(new Option(`${value} s / event`, String(value)));
    pace.value = String(found ? found.value : value);
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
    for (const b of [run, runN, reset, ...status.querySelectorAll(".sagakit-resume")]) b.disabled = busy;
    root.classList.toggle("sagakit-running", busy);
  }

  function showStatus(live) {
    const data = (live && live.level ? live : model.get("status")) || {};
    status.className = `sagakit-status sagakit-status-${data.level || "ready"}`;
    const line = element("div", "sagakit-status-line");
    line.append(richText(data.text));
    if (data.resume) {
      const resume = button(`Resume run ${data.resume}`, "sagakit-resume sagakit-resume-shown",
        "Carry this run on from the journal (fix its cause first): nothing that succeeded runs again");
      resume.dataset.run = String(data.resume);
      resume.disabled = Boolean(model.get("busy"));
      resume.addEventListener("click", () => send(model, { t: "resume", run: data.resume }));
      line.append(document.createTextNode(" "), resume);
    }
    status.replaceChildren(line);
    for (const hint of data.hints || []) status.append(element("div", "sagakit-hint", `hint: ${hint}`));
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
  pace.addEventListener("change", () => {
    model.set("pace", Number(pace.value));
    model.save_changes();
  });
  run.addEventListener("click", () => send(model, { t: "run" }));
  runN.addEventListener("click", () => send(model, { t: "run_n" }));
  reset.addEventListener("click", () => send(model, { t: "reset" }));

  const handlers = [
    ["change:steps", drawControls], ["change:modes", drawControls], ["change:faults", showFaults],
    ["change:title", showTitle], ["change:journal", showTitle], ["change:legend", showLegend], ["change:steps", showLegend],
    ["change:backends", showBackends], ["change:backend", showBackends], ["change:n", showN],
    ["change:pace", showPace], ["change:progress", showProgress], ["change:busy", showBusy],
    ["change:status", () => showStatus(null)],
  ];
  for (const [name, handler] of handlers) model.on(name, handler);
  // While a run is in flight, its status line comes with the diagram's changes.
  const onLiveStatus = (message) => {
    if (message.t === "d" && message.st) showStatus(message.st);
  };
  model.on("msg:custom", onLiveStatus);
  showTitle();
  showLegend();
  drawControls();
  showBackends();
  showN();
  showPace();
  showProgress();
  showBusy();
  showStatus(null);
  const picks = new Set();
  const table = renderHistory({ model, el: history }, picks);
  renderComparison(comparison, model, picks, table.draw);
  const forgetCharts = renderCharts(charts, model, tip);
  const view = renderDiagram({ model, el: diagram });
  return () => {
    for (const [name, handler] of handlers) model.off(name, handler);
    model.off("msg:custom", onLiveStatus);
    forgetCharts();
    forgetTheme();
    view.cleanup();
  };
}

function renderHistoryView(context) {
  const root = element("div", "sagakit-root sagakit-history-only");
  context.el.append(root);
  const forgetTheme = installTheme(root, context.el, context.model);
  renderHistory({ model: context.model, el: root });
  return forgetTheme;
}

function renderDiagramView(context) {
  return renderDiagram(context).cleanup;
}

const VIEWS = { diagram: renderDiagramView, history: renderHistoryView, lab: renderLab };

function render(context) {
  return (VIEWS[context.model.get("kind")] || renderDiagramView)(context);
}

export default { render };
