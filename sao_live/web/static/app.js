// The sao-live page: talks to the daemon that served it (JSON over fetch, live updates over a WebSocket).
"use strict";

const $ = (selector) => document.querySelector(selector);
const token = new URLSearchParams(location.search).get("token");
const PAD_KEYS = "1234qwerasdfzxcv";
const PAGE = 40;
const state = { mine: new Set(), keys: new Set(), offset: 0, total: 0, filter: "", pads: null, sets: [] };

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

// ------------------------------------------------------------------ talking to the daemon

function headers() {
  const h = { "Content-Type": "application/json" };
  if (token) h["X-Sao-Token"] = token;
  return h;
}

async function api(path, body) {
  let response;
  try {
    response = await fetch(path, { method: "POST", headers: headers(), body: JSON.stringify(body || {}) });
  } catch (e) {
    throw { code: "offline", message: "the daemon cannot be reached", field: null };
  }
  let data = {};
  try { data = await response.json(); } catch (e) { /* not JSON: a refusal from the guard */ }
  if (!response.ok) throw data.error || { code: `http_${response.status}`, message: response.statusText, field: null };
  return data;
}

let socket = null;
let retry = 250;

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  socket = new WebSocket(`${scheme}${location.host}/ws${token ? `?token=${encodeURIComponent(token)}` : ""}`);
  socket.onmessage = (event) => handle(JSON.parse(event.data));
  socket.onclose = () => {
    online(false);
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 2000);
  };
}

function online(yes) {
  $("#offline").hidden = yes;
  document.body.classList.toggle("offline", !yes);
  if (!yes) $("#status").textContent = "disconnected from the daemon";
}

function handle(msg) {
  switch (msg.type) {
    case "hello":
      online(true);
      retry = 250;
      renderStatus(msg.status);
      renderQueue(msg.queue);
      renderPads(msg.pads);
      renderSets(msg.sets);
      loadLibrary(true);
      break;
    case "status": renderStatus(msg.status); break;
    case "queue": renderQueue(msg.jobs); break;
    case "pads": renderPads(msg.pads); break;
    case "progress": progress(msg.job, msg.fraction); break;
    case "clip": addClip(msg.clip, true); break;
    case "error":
    case "cancelled":
      if (state.mine.has(msg.id)) showError({ code: msg.code, message: msg.message, field: null });
      break;
    case "playing": flashPad(msg.target); break;
  }
}

// ------------------------------------------------------------------ status line

function renderStatus(s) {
  const parts = [
    s.model, s.ready ? "ready" : "loading the model…", `${s.bpm} bpm (${s.tempo_source})`,
    s.audio ? `voices ${s.voices}` : "no audio device", `underruns ${s.underruns}`,
    `cache ${s.clips} clips, ${s.cache_mb} MB`, `worker ${s.worker_pid || "down"}`,
    `queue ${s.queued} + ${s.running}`,
  ];
  $("#status").textContent = parts.join(" · ");
  $("#status").dataset.ready = s.ready;
  const sampler = $("#f-sampler");
  if (sampler.options.length <= 1 && s.samplers) {
    for (const name of s.samplers) sampler.append(el("option", { value: name }, name));
  }
}

// ------------------------------------------------------------------ the prompt form

function clearErrors() {
  for (const node of document.querySelectorAll("#form .err")) { node.textContent = ""; delete node.dataset.code; }
  for (const node of document.querySelectorAll("#form [aria-invalid]")) node.removeAttribute("aria-invalid");
}

function showError(err) {
  const where = err.field && $(`#err-${err.field}`) ? err.field : "form";
  const node = $(`#err-${where}`);
  node.textContent = `${err.message} (${err.code})`;
  node.dataset.code = err.code;
  const input = $(`#f-${where}`);
  if (input) { input.setAttribute("aria-invalid", "true"); input.setAttribute("aria-describedby", `err-${where}`); }
}

function lengthMode() {
  const mode = new FormData($("#form")).get("length");
  for (const node of document.querySelectorAll("[data-length]")) node.hidden = node.dataset.length !== mode;
}

async function submit(trigger) {
  clearErrors();
  const form = Object.fromEntries(new FormData($("#form")));
  try {
    const answer = await api("/api/generate", { ...form, trigger });
    state.mine.add(answer.id);
  } catch (err) {
    showError(err);
  }
}

// ------------------------------------------------------------------ the queue

function renderQueue(jobs) {
  const list = $("#queue");
  list.replaceChildren(...jobs.map((job) => {
    const bar = el("progress", { max: "1", "aria-label": `progress of ${job.prompt}` });
    bar.value = job.progress;
    const where = job.running ? "running" : `#${job.position}`;
    const item = el("li", { dataset: { job: job.job, id: job.id } },
      el("span", { class: "what", title: job.prompt }, `${job.prompt} · ${job.seconds} s · ${job.source} · `,
        el("span", { class: "pos" }, where)),
      job.source === "daemon" ? el("span") : el("button", { type: "button", onclick: () => cancel(job.job) }, "Cancel"),
      bar);
    return item;
  }));
  $("#queue-empty").hidden = jobs.length > 0;
}

function progress(job, fraction) {
  const item = document.querySelector(`#queue li[data-job="${job}"]`);
  if (!item) return;
  item.querySelector("progress").value = fraction;
  item.querySelector(".pos").textContent = "running";
}

async function cancel(job) {
  try { await api("/api/cancel", { job }); } catch (err) { showError(err); }
}

// ------------------------------------------------------------------ the library

function clipUrl(key, download) { return `/clips/${key}.wav${download ? "?download=1" : ""}`; }

async function loadLibrary(fresh) {
  if (fresh) state.offset = 0;
  const query = new URLSearchParams({ q: state.filter, offset: state.offset, limit: PAGE });
  let data;
  try {
    const response = await fetch(`/api/clips?${query}`, { headers: headers() });
    data = await response.json();
  } catch (e) { return; }
  if (fresh) { $("#library").replaceChildren(); state.keys.clear(); }
  for (const row of data.clips) addClip(row, false);
  state.offset = data.offset + data.clips.length;
  state.total = data.total;
  $("#lib-count").textContent = `(${data.total})`;
  $("#more").hidden = state.offset >= data.total;
}

function describe(row) {
  const parts = [`${row.seconds.toFixed(2)} s`, `seed ${row.seed}`];
  if (row.bars) parts.push(`${row.bars} bars at ${row.bpm} bpm`);
  return parts.join(" · ");
}

function addClip(row, fresh) {
  if (state.keys.has(row.key)) return;
  if (state.filter && !row.prompt.toLowerCase().includes(state.filter.toLowerCase())) return;
  state.keys.add(row.key);
  const name = `${row.prompt.replace(/[^A-Za-z0-9]+/g, "-").slice(0, 40)}-${row.seed}.wav`;
  const canvas = el("canvas", { role: "img", "aria-label": `waveform of ${row.prompt}` });
  const item = el("li", { class: fresh ? "clip new" : "clip", draggable: "true", dataset: { key: row.key } },
    canvas,
    el("div", { class: "prompt", title: row.prompt }, row.prompt),
    el("div", { class: "info" }, describe(row)),
    el("div", { class: "actions" },
      el("button", { type: "button", class: "play", onclick: () => playHere(row) }, "Play"),
      el("button", { type: "button", class: "daemon", onclick: () => libraryAction("/api/play", row.key) }, "Play on daemon"),
      el("button", { type: "button", class: "stop", onclick: () => libraryAction("/api/stop", row.key) }, "Stop"),
      el("a", { href: clipUrl(row.key, true), download: name }, "Download"),
      el("button", { type: "button", class: "copy", onclick: () => copyPath(row.path) }, "Copy path")));
  item.addEventListener("dragstart", (event) => {
    const url = new URL(clipUrl(row.key, true), location.href).href;
    event.dataTransfer.setData("DownloadURL", `audio/wav:${name}:${url}`);  // Chromium: the file itself
    event.dataTransfer.setData("text/uri-list", url);
    event.dataTransfer.setData("text/plain", row.path);
  });
  const list = $("#library");
  if (fresh) { list.prepend(item); state.total += 1; $("#lib-count").textContent = `(${state.total})`; }
  else list.append(item);
  drawWave(canvas, row.peaks);
}

function drawWave(canvas, b64) {
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round((canvas.clientWidth || 128) * ratio);
  canvas.height = Math.round((canvas.clientHeight || 42) * ratio);
  if (!b64) return;
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const slices = bytes.length / 2;
  let peak = 0;
  for (const b of bytes) peak = Math.max(peak, Math.abs(b - 127.5));
  const ctx = canvas.getContext("2d");
  const mid = canvas.height / 2;
  const scale = peak > 0 ? (mid - 1) / peak : 0;  // each clip at its own scale: quiet clips stay visible
  const width = canvas.width / slices;
  ctx.fillStyle = getComputedStyle(canvas).color;
  for (let i = 0; i < slices; i++) {
    const top = mid - (bytes[2 * i + 1] - 127.5) * scale;
    const bottom = mid - (bytes[2 * i] - 127.5) * scale;
    ctx.fillRect(i * width, top, Math.max(1, width), Math.max(1, bottom - top));
  }
}

function playHere(row) {
  const player = $("#player");
  player.src = clipUrl(row.key);
  player.dataset.key = row.key;
  player.play().catch((e) => { $("#err-library").textContent = `the browser cannot play it: ${e.message}`; });
}

async function libraryAction(path, key) {
  $("#err-library").textContent = "";
  try { await api(path, key ? { key } : {}); } catch (err) { $("#err-library").textContent = `${err.message} (${err.code})`; }
}

async function copyPath(path) {
  try {
    await navigator.clipboard.writeText(path);
    $("#err-library").textContent = "";
  } catch (e) {  // no clipboard (a plain-http address on another machine): let the user copy it
    window.prompt("Copy the clip's path:", path);
  }
}

// ------------------------------------------------------------------ pads and sets

function renderPads(pads) {
  state.pads = pads;
  $("#set-name").textContent = pads.name ? `· ${pads.name}` : "· no set loaded";
  $("#bank").replaceChildren(...pads.banks.map((name, i) => {
    const option = el("option", { value: String(i) }, name);
    option.selected = i === pads.bank;
    return option;
  }));
  $("#pads").replaceChildren(...pads.pads.map((pad) => {
    const what = pad.ready ? `ready${pad.variations > 1 ? ` · pool ${pad.pool}` : ""}` : "rendering";
    const classes = ["pad", pad.ready ? "ready" : "", pad.rendering ? "rendering" : ""].join(" ");
    const key = PAD_KEYS[pad.number - 1] || "";
    return el("button", { type: "button", class: classes, dataset: { pad: pad.number },
      "aria-keyshortcuts": key, title: pad.prompt, onclick: () => hit(pad.number) },
    el("span", { class: "n" }, `${pad.number}${key ? ` (${key})` : ""}`),
    el("span", { class: "p" }, pad.prompt),
    el("span", { class: "s" }, pad.rendering ? `${what} · refilling ${pad.rendering}` : what));
  }));
}

function renderSets(names) {
  state.sets = names;
  $("#set-list").replaceChildren(...names.map((name) => el("option", { value: name }, name)));
  $("#load").disabled = names.length === 0;
}

function flashPad(target) {
  const pad = typeof target === "string" && target.startsWith("pad") ? $(`.pad[data-pad="${target.slice(3)}"]`) : null;
  if (!pad) return;
  pad.classList.add("hit");
  setTimeout(() => pad.classList.remove("hit"), 150);
}

async function hit(number) {
  $("#err-pads").textContent = "";
  try { await api("/api/pad", { number }); } catch (err) { $("#err-pads").textContent = `${err.message} (${err.code})`; }
}

async function padAction(path, body, busy) {
  $("#err-pads").textContent = busy || "";
  try { await api(path, body); $("#err-pads").textContent = ""; }
  catch (err) { $("#err-pads").textContent = `${err.message} (${err.code})`; }
}

// ------------------------------------------------------------------ wiring

document.addEventListener("DOMContentLoaded", () => {
  $("#form").addEventListener("submit", (event) => { event.preventDefault(); submit(false); });
  $("#trigger").addEventListener("click", () => submit(true));
  for (const radio of document.querySelectorAll("[name=length]")) radio.addEventListener("change", lengthMode);
  let timer = null;
  $("#filter").addEventListener("input", (event) => {
    clearTimeout(timer);
    timer = setTimeout(() => { state.filter = event.target.value.trim(); loadLibrary(true); }, 150);
  });
  $("#more").addEventListener("click", () => loadLibrary(false));
  $("#stop-all").addEventListener("click", () => libraryAction("/api/stop", null));
  $("#bank").addEventListener("change", (event) => padAction("/api/bank", { bank: Number(event.target.value) }));
  $("#load").addEventListener("click", () => padAction("/api/load", { name: $("#set-list").value }, "loading (pre-rendering every pad)…"));
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    if (event.target.closest("input, textarea, select")) return;
    const index = PAD_KEYS.indexOf(event.key.toLowerCase());
    if (index >= 0 && state.pads && index < state.pads.pads.length) { event.preventDefault(); hit(index + 1); }
  });
  connect();
});
