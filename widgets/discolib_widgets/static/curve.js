// discolib keyframe curve editor: the browser half of discolib_widgets.curve.CurveEditor (an anywidget).
// Plain ES module, no build step, no imports: it must work offline in JupyterLab, Notebook 7, VS Code and Colab.
// Python owns the keyframe string: this file draws the traits `keyframes` and `curve` (discolib's own evaluation)
// and sends edited keys as {type: "keys", keys: [...]}; Python checks them and rewrites `text`.

const SVG_NS = "http://www.w3.org/2000/svg";
const HEIGHT = 180;
const MARGIN = { left: 52, right: 14, top: 12, bottom: 26 };
// While dragging, at most one message per SEND_MS (only the latest state; and one on release): each message costs
// Python a parse and an evaluation, and the panel a settings check.
const SEND_MS = 250;

// An id no other editor in the page has. Not a module-level counter: anywidget imports this module afresh (a new
// Blob URL) for each widget model, so a counter restarts at 1 and `url(#id)` would find the first editor's clip.
function uniqueId() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return `dc-curve-${c.randomUUID()}`; // secure contexts only
  return `dc-curve-${Math.random().toString(36).slice(2)}${Date.now().toString(36)}${Math.random().toString(36).slice(2)}`;
}

function svg(tag, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

function html(tag, cls, parent = null) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (parent) parent.appendChild(node);
  return node;
}

// A "nice" tick step (1, 2 or 5 times a power of ten) giving about `count` ticks over `span`.
function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const f = raw / power;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * power;
}

function ticks(lo, hi, count, integer) {
  if (!(hi > lo)) return [lo];
  let step = niceStep(hi - lo, count);
  if (integer) step = Math.max(1, Math.round(step));
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9 && out.length < 50; v += step) out.push(v);
  return out;
}

// Short text for a number on the axes and in the label (at most 6 significant digits, no float noise); the
// keyframe string itself is Python's, with every digit.
function fmt(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "?";
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e6 || a < 1e-4) return v.toExponential(3).replace(/\.?0+e/, "e");
  return String(Number(v.toPrecision(6)));
}

// `v` rounded to a multiple of `step` (a power of ten), without float noise.
function roundTo(v, step) {
  if (!(step > 0) || !Number.isFinite(step)) return v;
  const r = Math.round(v / step) * step;
  const digits = Math.max(0, Math.min(20, -Math.floor(Math.log10(step))));
  return Number(r.toFixed(digits));
}

// The curve's value at `frame` (linear between the sampled points; exact at the frames Python sampled).
function curveAt(curve, frame) {
  if (!curve.length) return null;
  let lo = 0;
  let hi = curve.length - 1;
  if (frame <= curve[lo][0]) return curve[lo][1];
  if (frame >= curve[hi][0]) return curve[hi][1];
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (curve[mid][0] <= frame) lo = mid;
    else hi = mid;
  }
  const [f0, v0] = curve[lo];
  const [f1, v1] = curve[hi];
  return f1 === f0 ? v0 : v0 + ((v1 - v0) * (frame - f0)) / (f1 - f0);
}

function render({ model, el }) {
  const id = uniqueId();
  const root = html("div", "dc-curve", el);
  // Keys typed here (Delete, arrows) are the editor's, not JupyterLab's notebook shortcuts.
  root.setAttribute("data-lm-suppress-shortcuts", "true");

  const head = html("div", "dc-curve-head", root);
  const title = html("span", "dc-curve-title", head);
  const label = html("span", "dc-curve-label", head);
  label.setAttribute("aria-live", "polite");
  const interpLabel = html("label", "dc-curve-interp-label", head);
  interpLabel.textContent = "interpolation ";
  const select = html("select", "dc-curve-interp", interpLabel);

  const plot = svg("svg", { class: "dc-curve-svg", height: HEIGHT, role: "application" }, root);
  plot.setAttribute("aria-label", "keyframe curve: drag a key, double-click to add one, Delete removes the selected key");
  plot.setAttribute("tabindex", "-1");
  const clip = svg("clipPath", { id: `${id}-clip` }, svg("defs", {}, plot));
  const clipRect = svg("rect", {}, clip);
  const grid = svg("g", { class: "dc-curve-grid" }, plot);
  const axes = svg("g", { class: "dc-curve-axes" }, plot);
  const line = svg("path", { class: "dc-curve-line", "clip-path": `url(#${id}-clip)` }, plot);
  const keyLayer = svg("g", { class: "dc-curve-keys" }, plot);

  const foot = html("div", "dc-curve-foot", root);
  const textBox = html("input", "dc-curve-text", foot);
  textBox.type = "text";
  textBox.spellcheck = false;
  textBox.setAttribute("aria-label", "keyframe string");
  const hint = html("div", "dc-curve-hint", root);
  const errorBox = html("div", "dc-curve-error", root);
  errorBox.setAttribute("role", "alert");

  // ------------------------------------------------------------------ state
  let keys = [];          // local copy of the `keyframes` trait, edited while dragging
  let width = 640;
  let scale = null;       // {f0, f1, v0, v1, x(f), y(v), frame(x), value(y)}
  let dragging = null;    // index of the key being dragged
  let selected = null;    // index of the selected key
  let hovered = null;
  let lastSend = -Infinity;
  let sendTimer = null;
  let lastSent = null;    // the payload last sent (JSON), so a release where the last drag message went sends nothing
  let circles = [];

  const maxFrame = () => Math.max(0, (model.get("max_frames") | 0) - 1);
  const editable = () => keys.some((k) => k.editable);

  function loadKeys() {
    keys = (model.get("keyframes") || []).map((k) => ({ ...k }));
    lastSent = null; // Python's keys now: the next edit is news even if it matches an earlier message
    if (selected !== null && selected >= keys.length) selected = null;
  }

  function computeScale() {
    const curve = model.get("curve") || [];
    const f0 = 0;
    const f1 = Math.max(1, maxFrame());
    let lo = Infinity;
    let hi = -Infinity;
    for (const [, v] of curve) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    for (const k of keys) {
      if (k.value !== null && k.frame >= 0 && k.frame <= maxFrame()) {
        lo = Math.min(lo, k.value);
        hi = Math.max(hi, k.value);
      }
    }
    if (!Number.isFinite(lo) || !Number.isFinite(hi)) {
      lo = 0;
      hi = 1;
    }
    const span = hi - lo;
    const pad = span > 0 ? span * 0.12 : Math.abs(hi) * 0.1 || 0.5;
    const v0 = lo - pad;
    const v1 = hi + pad;
    const w = Math.max(40, width - MARGIN.left - MARGIN.right);
    const h = HEIGHT - MARGIN.top - MARGIN.bottom;
    return {
      f0, f1, v0, v1, w, h,
      x: (f) => MARGIN.left + ((f - f0) / (f1 - f0)) * w,
      y: (v) => MARGIN.top + (1 - (v - v0) / (v1 - v0)) * h,
      frame: (x) => f0 + ((x - MARGIN.left) / w) * (f1 - f0),
      value: (y) => v0 + (1 - (y - MARGIN.top) / h) * (v1 - v0),
      // the value step one pixel is worth, as a power of ten: dragged values stay short (1.02, not 1.0234567)
      step: Math.pow(10, Math.floor(Math.log10((v1 - v0) / h))),
    };
  }

  // ------------------------------------------------------------------ drawing
  function drawAxes() {
    const s = scale;
    grid.replaceChildren();
    axes.replaceChildren();
    clipRect.setAttribute("x", MARGIN.left);
    clipRect.setAttribute("y", MARGIN.top);
    clipRect.setAttribute("width", s.w);
    clipRect.setAttribute("height", s.h);
    svg("rect", { class: "dc-curve-frame", x: MARGIN.left, y: MARGIN.top, width: s.w, height: s.h }, grid);
    for (const f of ticks(s.f0, s.f1, Math.max(2, Math.floor(s.w / 70)), true)) {
      const x = s.x(f);
      svg("line", { x1: x, x2: x, y1: MARGIN.top, y2: MARGIN.top + s.h }, grid);
      const t = svg("text", { x, y: HEIGHT - 8, "text-anchor": "middle" }, axes);
      t.textContent = String(f);
    }
    for (const v of ticks(s.v0, s.v1, 4, false)) {
      const y = s.y(v);
      svg("line", { x1: MARGIN.left, x2: MARGIN.left + s.w, y1: y, y2: y }, grid);
      const t = svg("text", { x: MARGIN.left - 6, y: y + 4, "text-anchor": "end" }, axes);
      t.textContent = fmt(Number(v.toPrecision(12)));
    }
  }

  function drawCurve() {
    const s = scale;
    const curve = model.get("curve") || [];
    let d = "";
    for (let i = 0; i < curve.length; i++) d += `${i ? "L" : "M"}${s.x(curve[i][0]).toFixed(2)},${s.y(curve[i][1]).toFixed(2)}`;
    if (curve.length === 1) d += `H${(MARGIN.left + s.w).toFixed(2)}`; // one frame: a flat line
    line.setAttribute("d", d);
  }

  function keyY(k) {
    const v = k.value !== null ? k.value : curveAt(model.get("curve") || [], k.frame);
    return v === null ? MARGIN.top : scale.y(v);
  }

  function drawKeys() {
    const s = scale;
    const refocus = circles.indexOf(document.activeElement);
    while (circles.length > keys.length) circles.pop().remove();
    while (circles.length < keys.length) {
      const c = svg("circle", { r: 5, tabindex: 0 }, keyLayer);
      const index = circles.length;
      c.addEventListener("pointerdown", (e) => onKeyDown(e, index));
      c.addEventListener("pointerenter", () => setHover(index));
      c.addEventListener("pointerleave", () => setHover(null));
      c.addEventListener("focus", () => { selected = index; drawKeys(); showLabel(); });
      c.addEventListener("keydown", (e) => onKey(e, index));
      c.addEventListener("contextmenu", (e) => { e.preventDefault(); deleteKey(index); });
      circles.push(c);
    }
    keys.forEach((k, i) => {
      const c = circles[i];
      const inside = k.frame >= 0 && k.frame <= maxFrame();
      const value = k.value !== null ? k.value : curveAt(model.get("curve") || [], k.frame);
      c.setAttribute("cx", inside ? s.x(k.frame).toFixed(2) : -100);
      c.setAttribute("cy", inside ? keyY(k).toFixed(2) : -100);
      c.style.display = inside ? "" : "none";
      c.setAttribute("class", [
        "dc-curve-key",
        k.editable ? "dc-curve-key-edit" : "dc-curve-key-ro",
        i === selected ? "dc-curve-key-selected" : "",
        i === dragging ? "dc-curve-key-dragging" : "",
      ].join(" ").trim());
      c.dataset.index = String(i);
      c.dataset.frame = String(k.frame);
      c.dataset.value = k.value === null ? "" : String(k.value);
      c.dataset.editable = String(k.editable);
      const what = k.expr !== null ? `expression ${k.expr} (read-only)` : fmt(value) + (k.editable ? "" : " (read-only)");
      c.setAttribute("aria-label", `key at frame ${k.frame}: ${what}`);
    });
    if (refocus >= 0 && refocus < circles.length && document.activeElement !== circles[refocus]) circles[refocus].focus();
  }

  function showLabel(pointerFrame = null) {
    const i = dragging ?? hovered ?? selected;
    label.classList.remove("dc-curve-label-curve");
    if (i !== null && keys[i]) {
      const k = keys[i];
      label.textContent = k.expr !== null ? `${k.frame}: ${k.expr}` : `${k.frame}: ${fmt(k.value)}`;
    } else if (pointerFrame !== null) {
      label.textContent = `${pointerFrame}: ${fmt(curveAt(model.get("curve") || [], pointerFrame))}`;
      label.classList.add("dc-curve-label-curve");
    } else {
      label.textContent = "";
    }
  }

  function setHover(i) {
    hovered = i;
    showLabel();
  }

  function draw(rescale = true) {
    if (rescale || !scale) scale = computeScale();
    plot.setAttribute("width", width);
    plot.setAttribute("viewBox", `0 0 ${width} ${HEIGHT}`);
    drawAxes();
    drawCurve();
    drawKeys();
    showLabel();
    root.classList.toggle("dc-curve-readonly", !editable());
    hint.textContent = editable()
      ? "drag a key · double-click to add · select + Delete or right-click to remove · arrow keys nudge"
      : "read-only: expression keys (hollow) cannot be dragged";
  }

  function syncTraits() {
    title.textContent = model.get("setting");
    const options = model.get("interpolations") || [];
    if (select.options.length !== options.length || [...select.options].some((o, i) => o.value !== options[i])) {
      select.replaceChildren(...options.map((name) => { const o = document.createElement("option"); o.value = name; o.textContent = name; return o; }));
    }
    select.value = model.get("interpolation");
    if (document.activeElement !== textBox) textBox.value = model.get("text");
    foot.style.display = model.get("show_text") ? "" : "none";
    interpLabel.style.display = model.get("show_interpolation") ? "" : "none";
    const err = model.get("error");
    errorBox.textContent = err;
    errorBox.style.display = err ? "" : "none";
    root.classList.toggle("dc-curve-has-error", !!err);
  }

  // ------------------------------------------------------------------ sending edits
  function payload() {
    return keys.map((k) => (k.editable ? { frame: k.frame, value: k.value } : { frame: k.frame, expr: k.expr, key: k.key }));
  }

  // Send the keys now (`now`: a release, a delete, an add) or, while dragging, at most once per SEND_MS: a timer
  // sends whatever the keys are when it fires, so a burst of moves coalesces into one message of the latest state.
  function send(now = false) {
    const t = performance.now();
    if (!now && t - lastSend < SEND_MS) {
      if (sendTimer === null) sendTimer = setTimeout(() => send(true), SEND_MS - (t - lastSend));
      return;
    }
    clearTimeout(sendTimer);
    sendTimer = null;
    const keysJson = JSON.stringify(payload());
    if (keysJson === lastSent) return;
    lastSend = t;
    lastSent = keysJson;
    model.send({ type: "keys", keys: JSON.parse(keysJson) });
  }

  function bounds(i) {
    const lo = i > 0 ? keys[i - 1].frame + 1 : 0;
    const hi = i < keys.length - 1 ? keys[i + 1].frame - 1 : maxFrame();
    return [Math.max(0, lo), Math.min(maxFrame(), hi)];
  }

  function moveKey(i, frame, value) {
    const [lo, hi] = bounds(i);
    keys[i].frame = Math.min(hi, Math.max(lo, Math.round(frame)));
    keys[i].value = roundTo(value, scale.step);
  }

  // Delete key i (never a read-only key, never the last key); `refocus`: keyboard users land on a neighbour.
  function deleteKey(i, refocus = false) {
    if (!keys[i] || !keys[i].editable || keys.length <= 1) return;
    keys.splice(i, 1);
    selected = refocus ? Math.min(i, keys.length - 1) : null;
    hovered = null;
    draw(false);
    send(true);
    if (refocus) circles[selected].focus({ preventScroll: true });
  }

  function pointer(e) {
    const r = plot.getBoundingClientRect();
    return [((e.clientX - r.left) * width) / Math.max(1, r.width), e.clientY - r.top];
  }

  // ------------------------------------------------------------------ events
  function onKeyDown(e, i) {
    if (e.button !== 0) return;
    selected = i;
    if (!keys[i].editable) { drawKeys(); showLabel(); return; }
    e.preventDefault();
    e.stopPropagation();
    circles[i].focus({ preventScroll: true });
    dragging = i;
    lastSent = null; // the keys may have changed since the last message (typed text, a reset): resend from here
    plot.setPointerCapture(e.pointerId);
    drawKeys();
    showLabel();
  }

  plot.addEventListener("pointermove", (e) => {
    const [x, y] = pointer(e);
    if (dragging === null) {
      if (hovered === null && scale && x >= MARGIN.left && x <= MARGIN.left + scale.w) {
        showLabel(Math.min(maxFrame(), Math.max(0, Math.round(scale.frame(x)))));
      }
      return;
    }
    moveKey(dragging, scale.frame(x), scale.value(y));
    drawKeys();
    showLabel();
    send();
  });

  function endDrag(e) {
    if (dragging === null) return;
    if (plot.hasPointerCapture(e.pointerId)) plot.releasePointerCapture(e.pointerId);
    dragging = null;
    send(true);
    draw(true);
  }
  plot.addEventListener("pointerup", endDrag);
  plot.addEventListener("pointercancel", endDrag);
  plot.addEventListener("pointerleave", () => { if (dragging === null && hovered === null) showLabel(); });

  plot.addEventListener("dblclick", (e) => {
    if (e.target.classList && e.target.classList.contains("dc-curve-key")) return;
    if (!editable() || !scale) return;
    const [x] = pointer(e);
    const frame = Math.round(scale.frame(x));
    if (frame < 0 || frame > maxFrame() || keys.some((k) => k.frame === frame)) return;
    const value = curveAt(model.get("curve") || [], frame);
    if (value === null) return;
    const k = { frame, value, expr: null, key: null, editable: true };
    keys.push(k);
    keys.sort((a, b) => a.frame - b.frame);
    selected = keys.indexOf(k);
    draw(false);
    send(true);
  });

  plot.addEventListener("pointerdown", (e) => {
    // a click on empty space clears the selection (keys stop the event)
    if (e.target === plot || !(e.target.classList && e.target.classList.contains("dc-curve-key"))) {
      selected = null;
      drawKeys();
      showLabel();
    }
  });

  function onKey(e, i) {
    const k = keys[i];
    if (!k) return;
    if (e.key === "Delete" || e.key === "Backspace") {
      e.preventDefault();
      e.stopPropagation(); // JupyterLab would otherwise act on the notebook cell
      deleteKey(i, true);
      return;
    }
    const arrows = { ArrowUp: [0, 1], ArrowDown: [0, -1], ArrowLeft: [-1, 0], ArrowRight: [1, 0] };
    if (!(e.key in arrows) || !k.editable) return;
    e.preventDefault();
    e.stopPropagation();
    const [df, dv] = arrows[e.key];
    const step = niceStep(scale.v1 - scale.v0, 20) * (e.shiftKey ? 10 : 1);
    keys[i].frame = Math.min(bounds(i)[1], Math.max(bounds(i)[0], k.frame + df * (e.shiftKey ? 10 : 1)));
    keys[i].value = roundTo(k.value + dv * step, scale.step);
    drawKeys();
    showLabel();
    send();
  }

  select.addEventListener("change", () => {
    model.set("interpolation", select.value);
    model.save_changes();
  });
  textBox.addEventListener("change", () => {
    model.set("text", textBox.value);
    model.save_changes();
  });
  textBox.addEventListener("keydown", (e) => e.stopPropagation()); // typing must not trigger notebook shortcuts

  // ------------------------------------------------------------------ model -> view
  const onKeysChange = () => {
    if (dragging !== null) return; // the drag owns the keys until release
    loadKeys();
    draw(true);
  };
  const onCurveChange = () => {
    if (dragging !== null) { drawCurve(); return; } // keep the scale still under the pointer
    draw(true);
  };
  const onOther = () => {
    syncTraits();
    if (dragging === null) { loadKeys(); draw(true); }
  };
  const onMsg = (msg) => {
    if (msg && msg.type === "reset") {
      dragging = null;
      loadKeys();
      draw(true);
    }
  };
  model.on("change:keyframes", onKeysChange);
  model.on("change:curve", onCurveChange);
  const OTHER = "change:text change:error change:setting change:interpolation change:interpolations change:max_frames change:show_text change:show_interpolation";
  model.on(OTHER, onOther);
  model.on("msg:custom", onMsg);

  const resize = new ResizeObserver(() => {
    const w = Math.round(root.clientWidth);
    if (w > 0 && w !== width) {
      width = w;
      draw(dragging === null);
    }
  });
  resize.observe(root);

  width = Math.round(root.clientWidth) || 640;
  syncTraits();
  loadKeys();
  draw(true);

  return () => {
    resize.disconnect();
    clearTimeout(sendTimer);
    model.off("change:keyframes", onKeysChange);
    model.off("change:curve", onCurveChange);
    model.off(OTHER, onOther);
    model.off("msg:custom", onMsg);
  };
}

export default { render };
