// discolib live view: the browser half of discolib_widgets.live.LiveView (an anywidget).
// Plain ES module, no build step, no imports. It shows the newest frame, reports the keys held while it has focus
// and mouse drags, and acknowledges each frame it drew (shown_index): Python sends the next frame only then, so a
// slow browser gets fewer frames, never a queue of stale ones.

const DRAG_MS = 50; // at most one drag message per DRAG_MS: each one is a comm message and a session call

// Key names are reported lower-case ("w", "arrowleft"), as Python binds them: Shift pressed or released mid-hold
// would otherwise leave "W" held forever.
function keyName(e) {
  return String(e.key || "").toLowerCase();
}

// The frame's bytes (a DataView from the comm; an ArrayBuffer or typed array also works) and their image type.
function bytesOf(data) {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function mimeOf(bytes) {
  return bytes.length > 3 && bytes[0] === 0x89 && bytes[1] === 0x50 ? "image/png" : "image/jpeg";
}

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "discolib-live-view";
  root.tabIndex = 0;
  // JupyterLab: no notebook shortcut (A, D D, S, R, F ...) while the view has focus; the keys fly the camera.
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  root.style.cssText = "display:inline-block;position:relative;outline:none;border:2px solid #bbb;border-radius:3px;cursor:grab;user-select:none;line-height:0";
  const img = document.createElement("img");
  img.className = "discolib-live-frame";
  img.alt = "live frame";
  img.draggable = false;
  img.setAttribute("data-frame-index", "-1");
  img.style.cssText = "display:block;background:#111;image-rendering:auto";
  const hint = document.createElement("div");
  hint.className = "discolib-live-hint";
  hint.style.cssText = "font:12px sans-serif;line-height:1.4;color:#666;padding:2px 4px;box-sizing:border-box";
  hint.textContent = "Click the image, then W/S forward/back, A/D left/right, R/F up/down, arrows turn, Q/E roll; drag to look.";
  root.append(img, hint);
  el.appendChild(root);

  const size = () => {
    const w = model.get("width");
    img.style.width = `${w}px`;
    img.style.minHeight = img.getAttribute("data-frame-index") === "-1" ? `${Math.round(w * 0.5625)}px` : "";
    img.style.maxWidth = "100%";
    hint.style.width = `${w}px`; // the hint wraps under the image, never widens the view
    hint.style.maxWidth = "100%";
  };

  // ------------------------------------------------------------------ frames
  let shownUrl = null;
  let loading = 0; // the newest load started; an older load finishing late is ignored
  const draw = () => {
    const data = model.get("frame");
    if (!data || !data.byteLength) return;
    const index = model.get("frame_index");
    const bytes = bytesOf(data);
    const url = URL.createObjectURL(new Blob([bytes], { type: mimeOf(bytes) }));
    const ticket = ++loading;
    const done = () => {
      if (ticket !== loading) { URL.revokeObjectURL(url); return; }
      if (shownUrl) URL.revokeObjectURL(shownUrl);
      shownUrl = url;
      img.setAttribute("data-frame-index", String(index));
      size();
      model.set("shown_index", index);
      const seq = model.get("frame_key_seq");
      if (seq > measured && pressedAt.has(seq)) { // the first frame drawn that shows key change `seq`
        measured = seq;
        model.set("browser_latency_ms", performance.now() - pressedAt.get(seq));
      }
      model.save_changes();
    };
    const probe = new Image();
    probe.onload = () => {
      if (ticket === loading) img.src = url; // decoded already: the swap shows no blank frame
      done();
    };
    probe.onerror = () => { if (ticket === loading) loading++; URL.revokeObjectURL(url); };
    probe.src = url;
  };

  // ------------------------------------------------------------------ keys
  const held = new Set();
  const bound = () => new Set(model.get("bound_keys"));
  // Each change of the held keys is numbered; Python tags the first frame that shows it (frame_key_seq), and the
  // time from the key event to drawing that frame is the key-to-frame latency a person sees.
  const pressedAt = new Map();
  let measured = model.get("frame_key_seq");
  const sendKeys = () => {
    const seq = model.get("key_seq") + 1;
    pressedAt.set(seq, performance.now());
    pressedAt.delete(seq - 64); // only recent changes can still be shown
    model.set("held_keys", [...held].sort());
    model.set("key_seq", seq);
    model.save_changes();
  };
  const onKeyDown = (e) => {
    const k = keyName(e);
    if (!bound().has(k) || e.ctrlKey || e.metaKey || e.altKey) return;
    e.preventDefault(); // arrows must not scroll the page
    e.stopPropagation(); // nor reach the notebook's own key handling
    if (held.has(k)) return; // auto-repeat: still the same key held
    held.add(k);
    sendKeys();
  };
  const onKeyUp = (e) => {
    const k = keyName(e);
    if (!bound().has(k)) return;
    e.preventDefault();
    e.stopPropagation();
    if (held.delete(k)) sendKeys();
  };
  const onBlur = () => {
    root.style.borderColor = "#bbb";
    if (held.size) { held.clear(); sendKeys(); }
  };
  const onFocus = () => { root.style.borderColor = "#1976d2"; };

  // ------------------------------------------------------------------ drag
  let dragging = false;
  let lastX = 0;
  let lastY = 0;
  let dx = 0;
  let dy = 0;
  let timer = null;
  const flush = () => {
    timer = null;
    if (!dx && !dy) return;
    const seq = ((model.get("drag") || {}).seq || 0) + 1;
    model.set("drag", { dx, dy, seq });
    model.save_changes();
    dx = 0;
    dy = 0;
  };
  const onDown = (e) => {
    root.focus();
    if (e.button !== 0) return;
    e.preventDefault(); // no text selection or image drag ghost; focus was given above
    dragging = true;
    lastX = e.clientX;
    lastY = e.clientY;
    root.style.cursor = "grabbing";
    if (root.setPointerCapture) root.setPointerCapture(e.pointerId);
  };
  const onMove = (e) => {
    if (!dragging) return;
    dx += e.clientX - lastX;
    dy += e.clientY - lastY;
    lastX = e.clientX;
    lastY = e.clientY;
    if (timer === null) timer = setTimeout(flush, DRAG_MS);
  };
  const onUp = () => {
    if (!dragging) return;
    dragging = false;
    root.style.cursor = "grab";
    clearTimeout(timer);
    flush();
  };

  root.addEventListener("keydown", onKeyDown);
  root.addEventListener("keyup", onKeyUp);
  root.addEventListener("blur", onBlur);
  root.addEventListener("focus", onFocus);
  root.addEventListener("pointerdown", onDown);
  root.addEventListener("pointermove", onMove);
  root.addEventListener("pointerup", onUp);
  root.addEventListener("pointercancel", onUp);
  model.on("change:frame", draw);
  model.on("change:width", size);
  size();
  draw();

  return () => {
    clearTimeout(timer);
    loading++;
    if (shownUrl) URL.revokeObjectURL(shownUrl);
    model.off("change:frame", draw);
    model.off("change:width", size);
  };
}

export default { render };
