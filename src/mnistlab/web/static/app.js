// The draw-a-digit page: a pad that keeps its strokes, a debounced call to the
// JSON API, and a view of the answer. Plain script, no build step, no CDN.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const pad = $("pad");
  const drop = $("drop");
  const ctx = pad.getContext("2d");
  const answer = $("answer");

  // Strokes are kept in pad-relative coordinates (0..1 of the width and height)
  // so they redraw crisply after a resize and export at a fixed resolution.
  const state = {
    mode: "digit",       // "digit" -> /api/predict, "number" -> /api/read-number
    strokes: [],         // [[{x, y}, ...], ...]
    cleared: null,       // {strokes, photo} Clear took away, which Undo brings back (until the next stroke)
    drawing: null,       // the stroke under the pointer, or null
    pointer: null,       // the pointerId drawing it: a second finger (a pinch, a palm) draws nothing
    photo: null,         // {image, file} while an uploaded photo is shown (image null: the browser cannot show it)
    photoLoads: 0,       // bumped per chosen photo (and per stroke), so a slow earlier photo is dropped
    timer: 0,
    version: 0,          // bumped on every change, so a late canvas export is dropped
    request: null,       // AbortController of the request in flight
    retry: 0,            // the timer that sends a request again after a busy server's Retry-After
  };
  // Export size in CSS pixels; the brush is 1/10 of the pad height, like MNIST's strokes. The server
  // reads a clean drawing at about 140 px (reading/steps.py, _DRAWING_SIDE): more is only more to send and decode.
  const EXPORT_HEIGHT = 140;
  const BRUSH = 1 / 10;
  const DEBOUNCE_MS = 250;
  // A request the server has not answered by then is given up, and the page says so: the server holds a request
  // at most LOAD_WAIT seconds while its model loads (it writes that into the page; then it answers 503 "still
  // loading"), lets an upload pause at most 10 s (`--read-timeout`) and answers a photo in milliseconds. Added:
  // the upload's own time on a slow line (a phone's photo on a weak signal), at 16 KiB/s, 64 s a megabyte; the
  // server waits for slower ones.
  const LOAD_WAIT_S = Number(document.querySelector('meta[name="mnistlab-load-wait"]')?.content) || 0;
  const REQUEST_TIMEOUT_MS = 1000 * LOAD_WAIT_S + 10000;
  const SLOW_UPLOAD_BYTES_PER_S = 16384;
  // A 503 that will pass (a busy server, more connections open than `--max-connections`, or a model still
  // loading) says when to try again (Retry-After, seconds): the page waits that long and sends the same request,
  // at most this many times.
  const BUSY_RETRIES = 3;
  const MAX_RETRY_AFTER_S = 30;

  // ---- drawing ---------------------------------------------------------------

  function resize() {
    const ratio = window.devicePixelRatio || 1;
    const { width, height } = pad.getBoundingClientRect();
    pad.width = Math.max(1, Math.round(width * ratio));
    pad.height = Math.max(1, Math.round(height * ratio));
    render(ctx, pad.width, pad.height);
  }

  function render(target, width, height) {
    target.fillStyle = "#000";
    target.fillRect(0, 0, width, height);
    if (state.photo && state.photo.image) {
      const img = state.photo.image;
      const scale = Math.min(width / img.naturalWidth, height / img.naturalHeight);
      const w = img.naturalWidth * scale, h = img.naturalHeight * scale;
      target.fillStyle = "#808080";  // under a transparent photo: dark ink and light ink both show
      target.fillRect((width - w) / 2, (height - h) / 2, w, h);
      target.drawImage(img, (width - w) / 2, (height - h) / 2, w, h);
    } else if (state.photo && target === ctx) {  // a file the browser cannot show (a TIFF): its name, on screen only
      target.fillStyle = "#aaa";
      target.font = `${Math.round(height / 16)}px system-ui, sans-serif`;
      target.textAlign = "center";
      target.fillText(state.photo.file.name, width / 2, height / 2, width * 0.9);
    }
    target.strokeStyle = target.fillStyle = "#fff";
    target.lineCap = target.lineJoin = "round";
    target.lineWidth = height * BRUSH;
    for (const stroke of state.strokes) drawStroke(target, stroke, width, height);
  }

  function drawStroke(target, stroke, width, height) {
    target.beginPath();
    if (stroke.length === 1) {
      target.arc(stroke[0].x * width, stroke[0].y * height, target.lineWidth / 2, 0, 2 * Math.PI);
      target.fill();
      return;
    }
    target.moveTo(stroke[0].x * width, stroke[0].y * height);
    for (const p of stroke.slice(1)) target.lineTo(p.x * width, p.y * height);
    target.stroke();
  }

  function point(event) {
    const r = pad.getBoundingClientRect();
    return { x: (event.clientX - r.left) / r.width, y: (event.clientY - r.top) / r.height };
  }

  pad.addEventListener("pointerdown", (event) => {
    if ((event.pointerType === "mouse" && event.button !== 0) || state.drawing) return;  // one stroke at a time
    event.preventDefault();
    // The pad's keys (Z, C, U, N) act where the drawing is; the ring that shows a keyboard's focus is not drawn.
    pad.focus({ preventScroll: true, focusVisible: false });
    state.photoLoads++;  // a photo still loading would replace this drawing
    if (state.photo) clearAll();
    state.cleared = null;
    pad.setPointerCapture(event.pointerId);
    state.pointer = event.pointerId;
    state.drawing = [point(event)];
    state.strokes.push(state.drawing);
    changed();
  });

  pad.addEventListener("pointermove", (event) => {
    if (!state.drawing || event.pointerId !== state.pointer) return;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const e of events.length ? events : [event]) state.drawing.push(point(e));
    changed();
  });

  for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
    pad.addEventListener(type, (event) => {
      if (!state.drawing || event.pointerId !== state.pointer) return;
      state.drawing = state.pointer = null;
      changed();
    });
  }

  function changed() {
    state.version++;
    render(ctx, pad.width, pad.height);
    const empty = !state.strokes.length && !state.photo;
    $("hint").hidden = !empty;
    const undoable = state.strokes.length > 0 || state.cleared !== null;
    if (!undoable && document.activeElement === $("undo")) pad.focus();  // not lost to the page with the button
    $("undo").disabled = !undoable;
    clearTimeout(state.timer);
    clearTimeout(state.retry);  // a busy server's retry would send what is no longer on the pad
    if (empty) {
      if (state.request) state.request.abort();
      showEmpty();
    } else {
      // "pending" until the answer for this very drawing is back: an answer to an
      // earlier, half-drawn stroke never counts as "done".
      answer.dataset.state = "pending";
      state.timer = setTimeout(submit, DEBOUNCE_MS);
    }
  }

  function undo() {
    if (state.strokes.length) state.strokes.pop();
    else if (state.cleared) {  // Clear undone
      ({ strokes: state.strokes, photo: state.photo } = state.cleared);
      state.cleared = null;
    }
    else return;
    state.drawing = state.pointer = null;
    changed();
  }

  function clearAll() {
    if (state.strokes.length || state.photo) state.cleared = { strokes: state.strokes, photo: state.photo };
    state.strokes = [];
    state.drawing = state.pointer = null;
    state.photo = null;
    state.photoLoads++;
    changed();
  }

  // ---- photos ------------------------------------------------------------------

  function usePhoto(file) {
    if (!file) return;
    const load = ++state.photoLoads;  // only the last photo chosen is shown and sent
    const image = new Image();
    const url = URL.createObjectURL(file);
    const show = (shown) => {
      URL.revokeObjectURL(url);
      if (load !== state.photoLoads) return;
      state.strokes = [];
      state.cleared = null;
      state.photo = { image: shown, file };
      changed();
    };
    image.onload = () => show(image);
    // Not something the browser can show (a TIFF): its name on the pad, and the server still reads it or says why not.
    image.onerror = () => show(null);
    image.src = url;
  }

  $("upload").addEventListener("click", () => $("file").click());
  $("file").addEventListener("change", (event) => { usePhoto(event.target.files[0]); event.target.value = ""; });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("dragging"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("dragging");
    const file = event.dataTransfer.files[0];
    // A picture dragged from another web page, a link or text brings an address and no file.
    if (file) usePhoto(file);
    else showError("Only an image file can be dropped here; save the picture first, then drop or upload its file.");
  });
  // A file dropped beside the pad must not navigate away from the page.
  for (const type of ["dragover", "drop"]) document.addEventListener(type, (event) => event.preventDefault());

  // ---- asking the server ---------------------------------------------------------

  function submit() {
    if (state.photo) { send(state.photo.file, state.photo.file.name); return; }
    // Export the strokes at a fixed size so the answer does not depend on the screen.
    const out = document.createElement("canvas");
    out.height = EXPORT_HEIGHT;
    out.width = Math.round(EXPORT_HEIGHT * pad.width / pad.height);
    render(out.getContext("2d"), out.width, out.height);
    const version = state.version;
    out.toBlob((blob) => { if (version === state.version) send(blob, "drawing.png"); }, "image/png");
  }

  async function send(blob, name, attempt = 0) {
    clearTimeout(state.retry);
    if (state.request) state.request.abort();
    const controller = new AbortController();
    const version = state.version;
    state.request = controller;
    const form = new FormData();
    form.append("file", blob, name);
    // Relative to the page, which then works below a path prefix (a mount, a proxy's /mnist/) as at /.
    const url = state.mode === "number" ? "api/read-number" : "api/predict?top=10";
    answer.dataset.state = "busy";
    offerRetry(false);
    if (["?", "!"].includes($("digit").textContent)) $("verdict").textContent = "Reading…";  // no answer to dim yet
    const timeout = REQUEST_TIMEOUT_MS + Math.round(1000 * blob.size / SLOW_UPLOAD_BYTES_PER_S);
    const deadline = setTimeout(() => controller.abort(new DOMException("no answer", "TimeoutError")), timeout);
    try {
      const response = await fetch(url, { method: "POST", body: form, signal: controller.signal });
      const body = await response.json().catch(() => ({ detail: `The server answered ${response.status}.` }));
      if (controller !== state.request) return;
      const wait = response.status === 503 && attempt < BUSY_RETRIES ? retryAfter(response) : null;
      if (wait !== null) {  // still "busy": the answer shown stays dimmed until the retry's answer comes
        say(`${whatIsWrong(body)}; trying again in ${wait} s…`);
        state.retry = setTimeout(() => send(blob, name, attempt + 1), wait * 1000);
        return;
      }
      if (!response.ok) {  // the server's fault (5xx) or a request too slow (408) may pass another time; a 4xx not
        throw Object.assign(new Error(body.detail || `The server answered ${response.status}.`),
          { retryable: response.status >= 500 || response.status === 408 });
      }
      if (state.mode === "number" ? !Array.isArray(body.digits) : typeof body.digit !== "number") {
        throw new Error("The server's answer is not one this page can read; reload the page, or check the server.");
      }
      if (state.mode === "number") showNumber(body); else showDigit(body);
      // Drawing went on while this request was out: show it, but another answer is due.
      answer.dataset.state = version === state.version ? "done" : "pending";
    } catch (error) {
      if (controller !== state.request) return;
      if (error.name === "TimeoutError") {
        showError(`The server did not answer within ${Math.round(timeout / 1000)} s; check that it is running, then try again.`, true);
      } else if (error.name === "AbortError") {
        return;
      } else if (error instanceof TypeError) {  // fetch's own failure: no connection, nothing answered, or no file
        // A photo moved, deleted or changed since it was chosen fails the same way, with the server up.
        const gone = blob instanceof File && !(await readable(blob));
        if (controller !== state.request) return;
        showError(gone
          ? `The file ${name} can no longer be read (moved, deleted or changed since it was chosen); choose it again.`
          : "Cannot reach the server; check that it is running, then try again.", !gone);
      } else {
        showError(error.message, Boolean(error.retryable));
      }
    } finally {
      clearTimeout(deadline);
      if (controller === state.request) state.request = null;
    }
  }

  // Whether the browser can still read a chosen file: its first chunk (a slice of a deleted file reads as empty).
  const readable = (file) => file.stream().getReader().read().then(() => true, () => false);

  // Retry-After in whole seconds (1 to MAX_RETRY_AFTER_S), else null: the server's message is shown instead.
  function retryAfter(response) {
    const text = response.headers.get("retry-after") || "";
    const seconds = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
    return seconds >= 1 && seconds <= MAX_RETRY_AFTER_S ? seconds : null;
  }

  // What the server's sentence says is wrong, without what it says to do ("...; try again in a few seconds."):
  // the page does that itself. "The model is still loading", "The server is busy (100 connections open)".
  function whatIsWrong(body) {
    const detail = typeof body.detail === "string" ? body.detail : "";
    return detail.split("; ")[0].replace(/\.$/, "") || "The server cannot answer yet";
  }

  // ---- showing the answer -----------------------------------------------------------

  // Cut down to a tenth of a percent, never rounded up: 0.9996 is "99.9% sure", where rounding said "100% sure"
  // of a model that is not certain; only a probability of 1 is 100% (the server sends no figure under 1 as 1).
  const percent = (p) => {
    const tenths = Math.floor(1000 * p + 1e-6);  // the 1e-6: 0.57 * 1000 is 569.99999...
    return tenths >= 1000 ? "100%" : tenths < 1 ? "0%" : `${(tenths / 10).toFixed(1)}%`;
  };

  const bars = [];
  for (let d = 0; d < 10; d++) {
    const li = document.createElement("li");
    li.innerHTML = `<span class="label">${d}</span><span class="track"><span class="fill"></span></span><span class="pct">0%</span>`;
    $("bars").append(li);
    bars.push(li);
  }

  function setBars(top) {
    const probs = new Map(top.map(([digit, p]) => [digit, p]));
    const best = top.length ? top[0][0] : -1;
    bars.forEach((li, d) => {
      const p = probs.get(d) || 0;
      li.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
      li.querySelector(".pct").textContent = percent(p);
      li.classList.toggle("best", d === best);
    });
  }

  function seenImage(src, caption, unsure) {
    const figure = document.createElement("figure");
    figure.className = unsure ? "unsure" : "";
    const img = document.createElement("img");
    img.src = src;
    img.width = img.height = 28;
    img.alt = `28 by 28 image the model read as ${caption}`;
    const text = document.createElement("figcaption");
    text.textContent = caption;
    figure.append(img, text);
    return figure;
  }

  // "Not sure: low probability (0.30)", and a reason that says it already: "Not sure it is a digit (...)".
  const doubt = (reason) => {
    const why = reason || "the model hesitates";
    return /^not sure/i.test(why) ? why.charAt(0).toUpperCase() + why.slice(1) : `Not sure: ${why}`;
  };

  // The answer is a live region: a screen reader says it when its text changes. The same answer twice (a 7 drawn
  // again, the same error) would change nothing, and be heard once; a trailing no-break space, there or not,
  // makes the second differ from the first without showing.
  function say(text) {
    const verdict = $("verdict");
    verdict.textContent = verdict.textContent === text ? `${text}\u00a0` : text;
  }

  // The server's reasons for an image with no ink to read (trust/thresholds.py: NO_INK, SMALL_INK): the model's
  // "guess" at a blank image (a 1 at 100%) says nothing, and is not shown as one.
  const NO_INK = /^no (digit-sized )?ink found/;

  function showDigit(r) {
    const blank = !r.confident && NO_INK.test(r.reason || "");
    answer.classList.toggle("unsure", !r.confident);
    $("digit").textContent = blank ? "?" : r.digit;
    say(r.confident
      ? `${percent(r.probability)} sure.`
      : blank ? `${doubt(r.reason)}.` : `${doubt(r.reason)}. Best guess ${r.digit} (${percent(r.probability)}).`);
    setBars(blank ? [] : r.top);
    $("seen").replaceChildren(seenImage(r.mnist_image_png, blank ? "no digit" : `${r.digit}`, !r.confident));
  }

  function showNumber(r) {
    answer.classList.toggle("unsure", !r.confident);
    $("digit").textContent = r.number || "?";
    const doubtful = r.digits.flatMap((d, i) => (d.confident ? [] : [i + 1]));  // positions, counted from 1
    const first = r.digits[(doubtful[0] || 1) - 1];
    // A photo's row read a second time can keep the second reading's digits, each confident, and stay doubted.
    say(!r.digits.length
      ? "No digits found."
      : r.confident
        ? `Read ${r.digits.length} digit${r.digits.length > 1 ? "s" : ""} with confidence.`
        : !doubtful.length
          ? "Not sure of the whole number: each digit looks clear on its own, but a first look at the photo doubted it."
          : `Not sure about digit${doubtful.length > 1 ? "s" : ""} ${doubtful.join(", ")} of ${r.digits.length}: `
            + `${first.reason || "the model hesitates"}.`);
    // A doubted digit says so in words too, not only by its orange frame.
    $("seen").replaceChildren(...r.digits.map((d) => seenImage(
      d.mnist_image_png, `${d.digit} ${percent(d.probability)}${d.confident ? "" : ", not sure"}`, !d.confident)));
  }

  function showEmpty() {
    offerRetry(false);
    answer.dataset.state = "empty";
    answer.classList.remove("unsure");
    $("digit").textContent = "?";
    $("verdict").textContent = state.mode === "number" ? "Write a number to start." : "Draw a digit to start.";
    setBars([]);
    $("seen").replaceChildren();
  }

  // A request that failed where the same drawing or photo may pass another time offers to send it again.
  function showError(message, retryable) {
    offerRetry(retryable);
    answer.dataset.state = "error";
    answer.classList.add("unsure");
    $("digit").textContent = "!";
    say(message);
    setBars([]);
    $("seen").replaceChildren();
  }

  function offerRetry(on) {
    const button = $("try-again");
    if (!on && document.activeElement === button) pad.focus();  // not lost to the page with the button
    button.hidden = !on;
  }

  // ---- modes and keys -------------------------------------------------------------------

  function setMode(mode) {
    if (mode === state.mode) return;  // the mode already chosen: its drawing stays
    state.mode = mode;
    $("mode-digit").setAttribute("aria-pressed", String(mode === "digit"));
    $("mode-number").setAttribute("aria-pressed", String(mode === "number"));
    drop.dataset.mode = mode;
    $("digit-details").hidden = mode === "number";
    $("hint").textContent = mode === "number" ? "Write a number here" : "Draw a digit here";
    state.strokes = [];
    state.cleared = null;  // strokes of the other pad's shape
    state.photo = null;
    state.photoLoads++;
    resize();
    changed();
  }

  $("mode-digit").addEventListener("click", () => setMode("digit"));
  $("mode-number").addEventListener("click", () => setMode("number"));
  $("undo").addEventListener("click", undo);
  $("clear").addEventListener("click", clearAll);
  $("try-again").addEventListener("click", submit);

  // Ctrl+Z undoes anywhere on the page. The single keys act only while the pad has focus (a click or a stroke
  // on it gives it focus, or Tab): a stray key typed elsewhere, or by speech input, changes nothing.
  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.metaKey) return;
    const key = event.key.toLowerCase();
    if (event.ctrlKey) {
      if (key === "z" && !event.shiftKey && !event.target.closest("input, textarea, select, [contenteditable]")) {
        event.preventDefault();
        undo();
      }
      return;
    }
    if (event.target !== pad) return;
    if (key === "z") { event.preventDefault(); undo(); }
    else if (key === "c") clearAll();
    else if (key === "u") $("file").click();
    else if (key === "n") setMode(state.mode === "digit" ? "number" : "digit");
  });

  new ResizeObserver(resize).observe(pad);
  showEmpty();
})();
