// stemforge page: upload a song, follow its job, then play, mix and download its stems (Web Audio API).
// Plain JavaScript, no build step. Talks to the REST API under /api; the token (if the server asks for one)
// is kept in localStorage and sent as "Authorization: Bearer ...".
"use strict";

const $ = (sel) => document.querySelector(sel);

const state = {
  token: localStorage.getItem("stemforge-token") || "",
  job: null,          // the job as GET /api/jobs/{id} shows it
  ctx: null,          // AudioContext
  master: null,       // GainNode every stem goes through
  stems: [],          // {name, buffer, bytes, type, gain, volume, muted, solo, row, canvas}
  sources: [],        // AudioBufferSourceNodes while playing
  playing: false,
  startedAt: 0,       // ctx time at which offset 0 would have played
  offset: 0,          // seconds into the song when paused
  duration: 0,
  watch: null,        // AbortController of the event stream
};
window.stemforge = state;  // for the browser tests and the curious

// ---------- errors and requests ----------

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

class ApiError extends Error {
  constructor(message, status, code) { super(message); this.status = status; this.code = code; }
}

function authHeaders() {
  return state.token ? { Authorization: `Bearer ${state.token}` } : {};
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  } catch (err) {
    throw new ApiError("cannot reach the server; is it still running?", 0, "network");
  }
  if (!response.ok) {
    let body = {};
    try { body = await response.json(); } catch (err) { /* not JSON */ }
    if (response.status === 401) $("#auth").hidden = false;
    throw new ApiError(body.error || `${response.status} ${response.statusText}`, response.status, body.code);
  }
  return response;
}

function saveBlob(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60000);
}

function trackName() {
  const name = (state.job && state.job.filename) || "track";
  return name.replace(/\.[^.]*$/, "") || "track";
}

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

// ---------- start: server limits, models, a job in the address ----------

async function init() {
  $("#auth-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = $("#token").value.trim();
    localStorage.setItem("stemforge-token", state.token);
    $("#auth").hidden = true;
    showError("");
    loadModels().then(resumeFromAddress);
  });
  setUpDrop();
  $("#new").addEventListener("click", reset);
  $("#delete").addEventListener("click", deleteJob);
  $("#play").addEventListener("click", togglePlay);
  $("#stop").addEventListener("click", () => { pause(); seek(0); });
  $("#zip").addEventListener("click", downloadZip);
  $("#remix").addEventListener("click", downloadRemix);
  try {
    const info = await (await api("/api/server")).json();
    const limits = info.limits;
    $("#limits").textContent = `up to ${limits.max_upload_mb} MB and ${clock(limits.max_seconds)} long`;
    if (info.auth && !state.token) { $("#auth").hidden = false; return; }
    await loadModels();
    await resumeFromAddress();
  } catch (err) {
    showError(err.message);
  }
}

async function loadModels() {
  const models = await (await api("/api/models")).json();
  const select = $("#model");
  select.replaceChildren(...models.map((m) => {
    const option = new Option(`${m.name} (${m.stems.join(", ")})`, m.name);
    option.selected = m.default;
    return option;
  }));
  document.body.dataset.ready = "1";
}

async function resumeFromAddress() {
  const match = location.hash.match(/job=([0-9a-f]{32})/);
  if (!match) return;
  try {
    const job = await (await api(`/api/jobs/${match[1]}`)).json();
    follow(job);
  } catch (err) {
    showError(err.message);
    history.replaceState(null, "", location.pathname);
  }
}

// ---------- upload ----------

function setUpDrop() {
  const drop = $("#drop");
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (event) => { event.preventDefault(); drop.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) upload(file);
  });
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); $("#file").click(); }
  });
  $("#file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) upload(file);
    event.target.value = "";
  });
}

function upload(file) {
  showError("");
  stopEverything();
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("model", $("#model").value || "default");
  form.append("format", $("#format").value);
  const split = $("#split").value;
  if (split.startsWith("two:")) form.append("two_stems", split.slice(4));
  $("#upload").hidden = true;
  $("#job").hidden = false;
  $("#mixer").hidden = true;
  $("#job-name").textContent = file.name;
  setProgress("uploading", 0);
  // XMLHttpRequest: fetch cannot report upload progress.
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/api/jobs");
  for (const [key, value] of Object.entries(authHeaders())) xhr.setRequestHeader(key, value);
  xhr.upload.onprogress = (event) => {
    if (event.lengthComputable) setProgress(`uploading ${Math.round(100 * event.loaded / event.total)}%`, event.loaded / event.total);
  };
  xhr.onerror = () => failUpload("the upload did not reach the server (connection lost?)");
  xhr.onload = () => {
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (err) { /* not JSON */ }
    if (xhr.status === 201) {
      follow(body);
    } else {
      if (xhr.status === 401) $("#auth").hidden = false;
      failUpload(body.error || `upload failed (${xhr.status})`);
    }
  };
  xhr.send(form);
}

function failUpload(message) {
  showError(message);
  $("#job").hidden = true;
  $("#upload").hidden = false;
}

// ---------- following a job: server-sent events (read with fetch, so the token header is sent) ----------

function setProgress(text, value) {
  $("#job-state").textContent = text;
  $("#progress").value = value;
}

function showJob(job) {
  state.job = job;
  $("#job-name").textContent = job.filename;
  const text = { queued: "waiting for a worker", running: `separating ${Math.round(job.progress * 100)}%`,
                 done: "done", failed: "failed" }[job.state] || job.state;
  setProgress(text, job.state === "done" ? 1 : job.progress);
  document.body.dataset.jobState = job.state;
}

function follow(job) {
  $("#upload").hidden = true;
  $("#job").hidden = false;
  history.replaceState(null, "", `#job=${job.id}`);
  showJob(job);
  if (job.state === "done" || job.state === "failed") { finished(job); return; }
  watch(job.id);
}

async function watch(id) {
  if (state.watch) state.watch.abort();
  const controller = new AbortController();
  state.watch = controller;
  try {
    const response = await api(`/api/jobs/${id}/events`, { signal: controller.signal });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const event = (block.match(/^event: (.*)$/m) || [])[1];
        const data = (block.match(/^data: (.*)$/m) || [])[1];
        if (!data) continue;
        if (event === "deleted") { showError("this job was deleted"); reset(); return; }
        const job = JSON.parse(data);
        showJob(job);
        if (event === "end") { finished(job); return; }
      }
    }
  } catch (err) {
    if (controller.signal.aborted) return;
    showError(err.message);
  }
  if (!controller.signal.aborted) setTimeout(() => poll(id), 1000);  // the stream broke: fall back to polling
}

async function poll(id) {
  try {
    const job = await (await api(`/api/jobs/${id}`)).json();
    showJob(job);
    if (job.state === "done" || job.state === "failed") finished(job); else setTimeout(() => poll(id), 1000);
  } catch (err) {
    showError(err.message);
  }
}

function finished(job) {
  state.watch = null;
  if (job.state === "failed") {
    showError(`Separation failed: ${job.error}`);
    return;
  }
  loadStems(job).catch((err) => showError(err.message));
}

async function deleteJob() {
  if (!state.job) return;
  try {
    await api(`/api/jobs/${state.job.id}`, { method: "DELETE" });
  } catch (err) {
    if (err.status !== 404) { showError(err.message); return; }
  }
  reset();
}

function stopEverything() {
  if (state.watch) state.watch.abort();
  state.watch = null;
  pause();
  state.stems = [];
  state.offset = 0;
  $("#stems").replaceChildren();
}

function reset() {
  stopEverything();
  state.job = null;
  delete document.body.dataset.jobState;
  history.replaceState(null, "", location.pathname);
  $("#job").hidden = true;
  $("#mixer").hidden = true;
  $("#upload").hidden = false;
}

// ---------- the mixer ----------

async function loadStems(job) {
  setProgress("loading the stems", 1);
  if (!state.ctx) {
    state.ctx = new AudioContext();
    state.master = state.ctx.createGain();
    state.master.connect(state.ctx.destination);
  }
  const loaded = await Promise.all(job.stems.map(async (name) => {
    const response = await api(job.links.stems[name]);
    const type = response.headers.get("Content-Type") || "audio/wav";
    const bytes = await response.arrayBuffer();
    const buffer = await state.ctx.decodeAudioData(bytes.slice(0));
    return { name, bytes, type, buffer };
  }));
  $("#stems").replaceChildren();
  state.stems = loaded.map((stem) => addStemRow(stem));
  state.duration = Math.max(...state.stems.map((s) => s.buffer.duration));
  state.offset = 0;
  $("#mixer").hidden = false;
  for (const stem of state.stems) drawWave(stem);
  updateClock();
  setProgress("done", 1);
  document.body.dataset.mixer = "ready";
}

function addStemRow(stem) {
  const row = $("#stem-row").content.firstElementChild.cloneNode(true);
  row.dataset.stem = stem.name;
  row.querySelector(".stem-name").textContent = stem.name;
  const gain = state.ctx.createGain();
  gain.connect(state.master);
  const item = { ...stem, gain, volume: 1, muted: false, solo: false, row, canvas: row.querySelector("canvas") };
  const mute = row.querySelector(".mute");
  const solo = row.querySelector(".solo");
  mute.setAttribute("aria-label", `mute ${stem.name}`);
  solo.setAttribute("aria-label", `solo ${stem.name}`);
  mute.addEventListener("click", () => { item.muted = !item.muted; mute.setAttribute("aria-pressed", item.muted); applyGains(); });
  solo.addEventListener("click", () => { item.solo = !item.solo; solo.setAttribute("aria-pressed", item.solo); applyGains(); });
  row.querySelector(".volume").addEventListener("input", (event) => { item.volume = Number(event.target.value); applyGains(); });
  const ext = stem.type.includes("mpeg") ? "mp3" : stem.type.includes("flac") ? "flac" : "wav";
  row.querySelector(".download").setAttribute("aria-label", `download ${stem.name}`);
  row.querySelector(".download").addEventListener("click", () => saveBlob(new Blob([stem.bytes], { type: stem.type }), `${trackName()}-${stem.name}.${ext}`));
  row.querySelector(".wave").addEventListener("click", (event) => {
    const box = event.currentTarget.getBoundingClientRect();
    seek(state.duration * (event.clientX - box.left) / box.width);
  });
  $("#stems").appendChild(row);
  return item;
}

function effectiveGain(stem, stems) {
  const soloing = stems.some((s) => s.solo);
  if (stem.muted || (soloing && !stem.solo)) return 0;
  return stem.volume;
}

function applyGains() {
  for (const stem of state.stems) {
    const value = effectiveGain(stem, state.stems);
    stem.gain.gain.setValueAtTime(value, state.ctx.currentTime);
    stem.row.classList.toggle("silent", value === 0);
  }
}

function drawWave(stem) {
  const canvas = stem.canvas;
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(100, Math.floor(canvas.clientWidth * ratio));
  const height = Math.max(20, Math.floor(canvas.clientHeight * ratio));
  canvas.width = width;
  canvas.height = height;
  const g = canvas.getContext("2d");
  const channels = [];
  for (let c = 0; c < stem.buffer.numberOfChannels; c++) channels.push(stem.buffer.getChannelData(c));
  const n = stem.buffer.length;
  const per = Math.max(1, Math.floor(n / width));
  g.fillStyle = "#2f6df6";
  for (let x = 0; x < width; x++) {
    let lo = 0, hi = 0;
    const start = Math.floor(x * n / width);
    for (let i = start; i < Math.min(n, start + per); i += 4) {
      let v = 0;
      for (const data of channels) v += data[i];
      v /= channels.length;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    const top = (1 - hi) * height / 2, bottom = (1 - lo) * height / 2;
    g.fillRect(x, top, 1, Math.max(1, bottom - top));
  }
}

function position() {
  if (!state.playing) return state.offset;
  return Math.min(state.duration, state.ctx.currentTime - state.startedAt);
}

function updateClock() {
  const now = position();
  $("#time").textContent = `${clock(now)} / ${clock(state.duration)}`;
  document.body.dataset.position = now.toFixed(2);
  const share = state.duration ? now / state.duration : 0;
  for (const stem of state.stems) stem.row.querySelector(".playhead").style.left = `${(100 * share).toFixed(3)}%`;
}

function tick() {
  if (!state.playing) return;
  if (position() >= state.duration) { pause(); seek(0); return; }
  updateClock();
  requestAnimationFrame(tick);
}

async function play() {
  if (state.playing || !state.stems.length) return;
  await state.ctx.resume();
  const when = state.ctx.currentTime + 0.05;
  applyGains();
  state.sources = state.stems.map((stem) => {
    const source = state.ctx.createBufferSource();
    source.buffer = stem.buffer;
    source.connect(stem.gain);
    source.start(when, Math.min(state.offset, stem.buffer.duration));  // one start time: sample-accurate sync
    return source;
  });
  state.startedAt = when - state.offset;
  state.playing = true;
  $("#play").innerHTML = "&#10073;&#10073; Pause";
  $("#play").setAttribute("aria-label", "pause");
  requestAnimationFrame(tick);
}

function pause() {
  if (!state.playing) return;
  state.offset = position();
  for (const source of state.sources) { try { source.stop(); } catch (err) { /* already stopped */ } }
  state.sources = [];
  state.playing = false;
  $("#play").innerHTML = "&#9654; Play";
  $("#play").setAttribute("aria-label", "play");
  updateClock();
}

function togglePlay() {
  if (state.playing) pause(); else play().catch((err) => showError(`cannot play: ${err.message}`));
}

function seek(seconds) {
  const wasPlaying = state.playing;
  pause();
  state.offset = Math.max(0, Math.min(seconds, state.duration));
  updateClock();
  if (wasPlaying) play();
}

// ---------- downloads ----------

async function downloadZip() {
  try {
    const blob = await (await api(state.job.links.zip)).blob();
    saveBlob(blob, `${trackName()}-stems.zip`);
  } catch (err) {
    showError(err.message);
  }
}

async function downloadRemix() {
  // The mix as heard (volumes, mutes, solos), rendered offline at the stems' rate, saved as 16-bit wav.
  const rate = state.stems[0].buffer.sampleRate;
  const length = Math.max(...state.stems.map((s) => s.buffer.length));
  const offline = new OfflineAudioContext(2, length, rate);
  for (const stem of state.stems) {
    const source = offline.createBufferSource();
    source.buffer = stem.buffer;
    const gain = offline.createGain();
    gain.gain.value = effectiveGain(stem, state.stems);
    source.connect(gain).connect(offline.destination);
    source.start(0);
  }
  const rendered = await offline.startRendering();
  saveBlob(encodeWav(rendered), `${trackName()}-mix.wav`);
}

function encodeWav(buffer) {
  const channels = buffer.numberOfChannels, frames = buffer.length, rate = buffer.sampleRate;
  const data = new DataView(new ArrayBuffer(44 + frames * channels * 2));
  const text = (at, s) => { for (let i = 0; i < s.length; i++) data.setUint8(at + i, s.charCodeAt(i)); };
  text(0, "RIFF"); data.setUint32(4, 36 + frames * channels * 2, true); text(8, "WAVE");
  text(12, "fmt "); data.setUint32(16, 16, true); data.setUint16(20, 1, true); data.setUint16(22, channels, true);
  data.setUint32(24, rate, true); data.setUint32(28, rate * channels * 2, true);
  data.setUint16(32, channels * 2, true); data.setUint16(34, 16, true);
  text(36, "data"); data.setUint32(40, frames * channels * 2, true);
  const planes = [];
  for (let c = 0; c < channels; c++) planes.push(buffer.getChannelData(c));
  let at = 44;
  for (let i = 0; i < frames; i++) {
    for (let c = 0; c < channels; c++) {
      const v = Math.max(-1, Math.min(1, planes[c][i]));
      data.setInt16(at, v < 0 ? v * 0x8000 : v * 0x7fff, true);
      at += 2;
    }
  }
  return new Blob([data], { type: "audio/wav" });
}

window.addEventListener("resize", () => { for (const stem of state.stems) drawWave(stem); });
document.addEventListener("DOMContentLoaded", init);
