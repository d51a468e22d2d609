// unbake studio front end: uploads and job list (with live progress), the Web Audio mixer with
// its A/B switch, and export. Plain ES module, no dependencies.

const $ = (sel, root = document) => root.querySelector(sel);

const state = {
  models: [],
  config: null,
  jobs: new Map(),        // id -> job
  streams: new Map(),     // id -> EventSource for jobs still queued or running
  picked: [],             // files chosen for the next separation
  awaitingOpen: new Set(),// jobs submitted here: open the first to finish if nothing is open
  mixer: null,            // the open Mixer
};

// ---------------------------------------------------------------- helpers

function toast(message, kind = "info") {
  const el = $("#toast");
  el.textContent = message;
  el.className = `toast ${kind}`;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, kind === "error" ? 8000 : 4000);
}

async function api(path, options = {}) {
  const res = await fetch(path, options);
  if (!res.ok) {
    let detail = `${res.status} ${res.statusText}`;
    try { detail = (await res.json()).detail || detail; } catch { /* not JSON */ }
    const err = new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
    err.status = res.status;
    throw err;
  }
  return res;
}

const apiJSON = async (path, options) => (await api(path, options)).json();

function fmtTime(s) {
  if (!Number.isFinite(s)) s = 0;
  const m = Math.floor(s / 60);
  return `${m}:${(s - 60 * m).toFixed(1).padStart(4, "0")}`;
}

function fmtDb(x, digits = 1) {
  return x === null || x === undefined ? "–" : `${x > 0 ? "+" : ""}${Number(x).toFixed(digits)}`;
}

function fmtBytes(n) {
  return n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(1)} GiB` : `${Math.round(n / (1 << 20))} MiB`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "style") Object.assign(node.style, v);  // CSSOM: allowed by the page's CSP
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== false && v !== null && v !== undefined) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function download(url, filename) {
  const a = el("a", { href: url, download: filename || "" });
  document.body.append(a);
  a.click();
  a.remove();
}

// ---------------------------------------------------------------- models and uploads

async function loadModels() {
  const select = $("#model-select");
  try {
    state.models = await apiJSON("/api/models");
  } catch (err) {
    toast(`cannot list models: ${err.message}`, "error");
    return;
  }
  select.replaceChildren(...state.models.map((m) => el("option", { value: m.name },
    `${m.name} — ${m.sources.join(" + ")} (${m.offline ? m.availability : "needs download"})`)));
  const firstOffline = state.models.find((m) => m.offline);
  if (firstOffline) select.value = firstOffline.name;
  showModelInfo();
}

function showModelInfo() {
  const m = state.models.find((x) => x.name === $("#model-select").value);
  $("#model-info").textContent = m
    ? `${m.description || ""} ${m.offline ? `Works offline (${m.availability}).` : "Its weights are downloaded on first use."} Licence: ${m.licence}.`
    : "";
}

function pick(files) {
  state.picked = [...files];
  const p = $("#picked");
  if (!state.picked.length) { p.hidden = true; $("#separate-btn").disabled = true; return; }
  p.hidden = false;
  p.textContent = state.picked.length === 1
    ? `Ready: ${state.picked[0].name} (${fmtBytes(state.picked[0].size)})`
    : `Ready: ${state.picked.length} files`;
  $("#separate-btn").disabled = false;
  $("#upload-error").hidden = true;
}

function uploadOne(file, model) {
  // XMLHttpRequest, not fetch: it reports upload progress
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const q = new URLSearchParams({ model, name: file.name });
    xhr.open("POST", `/api/jobs?${q}`);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    const bar = $("#upload-progress");
    bar.hidden = false;
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) bar.firstElementChild.style.width = `${(100 * e.loaded) / e.total}%`;
    };
    xhr.onload = () => {
      bar.hidden = true;
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* empty */ }
      if (xhr.status === 201) resolve(body);
      else reject(new Error(`${file.name}: ${(body && body.detail) || `${xhr.status} ${xhr.statusText}`}`));
    };
    xhr.onerror = () => { bar.hidden = true; reject(new Error(`${file.name}: upload failed (connection lost)`)); };
    xhr.send(file);
  });
}

async function separatePicked() {
  const model = $("#model-select").value;
  const files = state.picked;
  if (!files.length || !model) return;
  const limit = state.config ? state.config.max_upload_bytes : Infinity;
  $("#separate-btn").disabled = true;
  const errors = [];
  for (const f of files) {
    if (f.size > limit) { errors.push(`${f.name}: larger than the ${fmtBytes(limit)} upload limit`); continue; }
    try {
      const job = await uploadOne(f, model);
      state.awaitingOpen.add(job.id);
      upsertJob(job);
    } catch (err) {
      errors.push(err.message);
    }
  }
  pick([]);
  $("#file-input").value = "";
  const box = $("#upload-error");
  box.hidden = !errors.length;
  box.textContent = errors.join("\n");
}

// ---------------------------------------------------------------- jobs

async function loadJobs() {
  const jobs = await apiJSON("/api/jobs");
  for (const j of jobs) upsertJob(j);
}

function upsertJob(job) {
  state.jobs.set(job.id, job);
  renderJob(job);
  if (!["done", "failed", "cancelled"].includes(job.status)) follow(job.id);
  $("#no-jobs").hidden = state.jobs.size > 0;
}

function follow(id) {
  if (state.streams.has(id)) return;
  const es = new EventSource(`/api/jobs/${encodeURIComponent(id)}/events`);
  state.streams.set(id, es);
  es.addEventListener("job", (e) => {
    const job = JSON.parse(e.data);
    state.jobs.set(job.id, job);
    renderJob(job);
  });
  es.addEventListener("end", () => {
    es.close();
    state.streams.delete(id);
    const job = state.jobs.get(id);
    if (job && job.status === "done" && state.awaitingOpen.has(id)) {
      state.awaitingOpen.delete(id);
      if (!state.mixer) openJob(id);
      else toast(`${job.name} is separated`);
    }
  });
  es.onerror = () => {
    // the browser reconnects by itself; a job deleted meanwhile answers 404 and closes the stream
    if (es.readyState === EventSource.CLOSED) state.streams.delete(id);
  };
}

function renderJob(job) {
  const list = $("#job-list");
  let li = list.querySelector(`li[data-id="${CSS.escape(job.id)}"]`);
  if (!li) {
    li = el("li", { class: "job", dataset: { id: job.id } });
    list.prepend(li);
  }
  li.dataset.status = job.status;
  const pct = Math.round(100 * (job.progress || 0));
  const stageText = job.status === "running" ? `${job.stage || "running"} ${pct}%`
    : job.status === "queued" ? "waiting in the queue" : job.status;
  const actions = el("div", { class: "job-actions" });
  if (job.status === "done") actions.append(el("button", { class: "open", onclick: () => openJob(job.id) }, "Open"));
  if (job.status === "queued" || job.status === "running") {
    actions.append(el("button", { class: "cancel", onclick: () => cancelJob(job.id) }, "Cancel"));
  } else {
    actions.append(el("button", { class: "delete", onclick: (e) => deleteJob(job.id, e.currentTarget) }, "Delete"));
  }
  li.replaceChildren(
    el("div", { class: "job-name", title: job.name }, job.name),
    el("div", { class: "job-meta" }, el("span", { class: `badge ${job.status}` }, job.status), ` ${job.model}`,
      job.duration_s ? ` · ${fmtTime(job.duration_s)}` : ""),
    ...(job.status === "running" || job.status === "queued"
      ? [el("div", { class: "bar", role: "progressbar", "aria-valuenow": pct, "aria-valuemin": 0, "aria-valuemax": 100 },
        el("div", { style: { width: `${pct}%` } })), el("div", { class: "hint stage" }, stageText)]
      : []),
    ...(job.error ? [el("div", { class: "error" }, job.error)] : []),
    actions,
  );
  li.classList.toggle("selected", !!state.mixer && state.mixer.job.id === job.id);
}

async function cancelJob(id) {
  try { upsertJob(await apiJSON(`/api/jobs/${id}/cancel`, { method: "POST" })); } catch (err) { toast(err.message, "error"); }
}

async function deleteJob(id, button) {
  if (button.dataset.armed !== "1") {
    // a second click confirms: no modal dialog
    button.dataset.armed = "1";
    button.textContent = "Delete for good?";
    setTimeout(() => { if (button.isConnected) { button.dataset.armed = ""; button.textContent = "Delete"; } }, 4000);
    return;
  }
  try {
    await api(`/api/jobs/${id}`, { method: "DELETE" });
  } catch (err) { toast(err.message, "error"); return; }
  state.jobs.delete(id);
  const li = $(`#job-list li[data-id="${CSS.escape(id)}"]`);
  if (li) li.remove();
  $("#no-jobs").hidden = state.jobs.size > 0;
  if (state.mixer && state.mixer.job.id === id) closeMixer();
}

// ---------------------------------------------------------------- the mixer

const BAL_CENTRE = 1.0;

// The remix engine's pan law (unbake.remix.mixer.balance_gains): a balance control,
// sqrt(2)*(cos, sin) of (pan+1)*pi/4, exactly (1, 1) at the centre.
function balanceGains(pan) {
  if (pan === 0) return [BAL_CENTRE, BAL_CENTRE];
  const theta = ((Math.max(-1, Math.min(1, pan)) + 1) * Math.PI) / 4;
  return [Math.SQRT2 * Math.cos(theta), Math.SQRT2 * Math.sin(theta)];
}

const dbToGain = (db) => 10 ** (db / 20);

function defaultSettings(stems) {
  const tracks = {};
  for (const s of stems) tracks[s] = { gain_db: 0, pan: 0, mute: false, solo: false };
  return { tracks, master: { loudness_lufs: null } };
}

class Mixer {
  constructor(job, analysis) {
    this.job = job;
    this.analysis = analysis;
    this.stems = analysis.stems;
    this.duration = analysis.duration_s;
    this.settings = this.restoreSettings();
    this.ctx = null;
    this.buffers = {};       // name -> AudioBuffer ("original" too)
    this.nodes = null;       // live graph while playing
    this.playing = false;
    this.offset = 0;         // seconds into the song when paused / when playback started
    this.startedAt = 0;      // ctx.currentTime at start
    this.region = null;      // [a, b] seconds
    this.loop = false;
    this.ab = "mix";         // "mix" (B) or "original" (A)
    this.matchGain = 1;      // original's gain that matches its RMS to the mix's
    this.raf = 0;
    this.rows = {};
  }

  storageKey() { return `unbake-studio-mix-${this.job.id}`; }

  restoreSettings() {
    const base = defaultSettings(this.stems);
    try {
      const saved = JSON.parse(localStorage.getItem(this.storageKey()) || "null");
      if (saved && saved.tracks) return mergeSettings(base, saved);
    } catch { /* ignore a damaged entry */ }
    return base;
  }

  persist() {
    try { localStorage.setItem(this.storageKey(), JSON.stringify(this.settings)); } catch { /* private mode */ }
  }

  // -- view
  build() {
    $("#mix-title").textContent = this.job.name;
    const a = this.analysis;
    $("#mix-meta").textContent = `${this.job.model} · ${this.stems.length} stems · ${fmtTime(a.duration_s)} · ${a.sample_rate} Hz · ${a.channels === 1 ? "mono" : "stereo"}`;
    const tracks = $("#tracks");
    tracks.replaceChildren(this.buildRow("original", true), ...this.stems.map((s) => this.buildRow(s, false)));
    $("#zip-link").href = `/api/jobs/${this.job.id}/stems.zip?format=flac`;
    showMasterLoudness(this.settings.master);
    this.updateTime();
    this.applySettingsToView();
    renderQuality(this.analysis);
    requestAnimationFrame(() => this.drawWaves());
  }

  buildRow(name, isOriginal) {
    const lane = el("div", { class: "lane" },
      el("canvas", { class: "wave", "aria-label": `${name} waveform` }),
      el("img", { class: "spec", alt: `${name} spectrogram`, hidden: true }),
      el("div", { class: "region", hidden: true }),
      el("div", { class: "playhead" }));
    this.attachLane(lane);
    const loud = this.analysis.loudness_lufs ? this.analysis.loudness_lufs[name] : null;
    const head = el("div", { class: "track-head" },
      el("div", { class: "track-name" }, isOriginal ? "original" : name,
        el("span", { class: "hint" }, loud === null || loud === undefined ? "" : ` ${loud.toFixed(1)} LUFS`)));
    let controls;
    if (isOriginal) {
      controls = el("div", { class: "track-controls" },
        el("span", { class: "hint" }, "the recording you uploaded: what A plays"),
        el("button", { class: "spec-toggle", onclick: () => this.toggleSpec(name) }, "Spectrogram"));
    } else {
      const gain = el("input", { type: "range", class: "gain", min: -60, max: 12, step: 0.5, value: 0,
        "aria-label": `${name} volume (dB)` });
      const gainOut = el("output", { class: "gain-out" }, "0.0 dB");
      const pan = el("input", { type: "range", class: "pan", min: -1, max: 1, step: 0.05, value: 0,
        "aria-label": `${name} pan` });
      const panOut = el("output", { class: "pan-out" }, "C");
      gain.addEventListener("input", () => this.set(name, { gain_db: Number(gain.value) }));
      gain.addEventListener("dblclick", () => this.set(name, { gain_db: 0 }));
      pan.addEventListener("input", () => this.set(name, { pan: Number(pan.value) }));
      pan.addEventListener("dblclick", () => this.set(name, { pan: 0 }));
      const mute = el("button", { class: "mute", "aria-pressed": "false", title: `Mute ${name}`,
        onclick: () => this.set(name, { mute: !this.settings.tracks[name].mute }) }, "M");
      const solo = el("button", { class: "solo", "aria-pressed": "false", title: `Solo ${name}`,
        onclick: () => this.set(name, { solo: !this.settings.tracks[name].solo }) }, "S");
      const note = el("span", { class: "hint fx-note" });
      controls = el("div", { class: "track-controls" }, mute, solo,
        el("label", { class: "slider" }, "Vol", gain, gainOut),
        el("label", { class: "slider" }, "Pan", pan, panOut),
        el("button", { class: "spec-toggle", onclick: () => this.toggleSpec(name) }, "Spectrogram"),
        el("span", { class: "stem-downloads" }, "↓",
          ...["wav", "flac", "mp3"].map((f) => el("a", { href: `/api/jobs/${this.job.id}/stems/${encodeURIComponent(name)}/download?format=${f}`,
            download: "", class: "stem-dl", dataset: { format: f } }, f))), note);
      this.rows[name] = { gain, gainOut, pan, panOut, mute, solo, note };
    }
    const row = el("div", { class: `track${isOriginal ? " original" : ""}`, dataset: { stem: name } }, head, controls, lane);
    return row;
  }

  toggleSpec(name) {
    const row = $(`#tracks .track[data-stem="${CSS.escape(name)}"]`);
    const img = $(".spec", row);
    const canvas = $(".wave", row);
    const show = img.hidden;
    if (show && !img.src) {
      img.addEventListener("load", () => { img.dataset.loaded = "1"; }, { once: true });
      img.addEventListener("error", () => toast(`no spectrogram for ${name}`, "error"), { once: true });
      img.src = `/api/jobs/${this.job.id}/stems/${encodeURIComponent(name)}/spectrogram.png`;
    }
    img.hidden = !show;
    canvas.hidden = show;
    $(".spec-toggle", row).setAttribute("aria-pressed", String(show));
  }

  drawWaves() {
    for (const row of document.querySelectorAll("#tracks .track")) {
      const name = row.dataset.stem;
      const canvas = $(".wave", row);
      const peaks = this.analysis.peaks[name] || [];
      const w = canvas.clientWidth || 600;
      const h = canvas.clientHeight || 56;
      const dpr = window.devicePixelRatio || 1;
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
      const g = canvas.getContext("2d");
      g.scale(dpr, dpr);
      g.clearRect(0, 0, w, h);
      const audible = name === "original" || this.audible(name);
      g.fillStyle = name === "original" ? "#8a93a6" : audible ? "#5ec8a8" : "#3b4150";
      const mid = h / 2;
      const n = peaks.length;
      for (let x = 0; x < w; x++) {
        const i0 = Math.floor((x / w) * n);
        const i1 = Math.max(i0 + 1, Math.floor(((x + 1) / w) * n));
        let p = 0;
        for (let i = i0; i < i1 && i < n; i++) p = Math.max(p, peaks[i]);
        const y = Math.max(0.5, Math.min(1, p) * (mid - 1));
        g.fillRect(x, mid - y, 1, 2 * y);
      }
    }
  }

  attachLane(lane) {
    // click: seek; drag: mark a loop region
    lane.addEventListener("pointerdown", (e) => {
      const rect = lane.getBoundingClientRect();
      const t0 = this.duration * Math.min(1, Math.max(0, (e.clientX - rect.left) / rect.width));
      let dragged = false;
      const move = (ev) => {
        const t1 = this.duration * Math.min(1, Math.max(0, (ev.clientX - rect.left) / rect.width));
        if (Math.abs(ev.clientX - e.clientX) > 4) {
          dragged = true;
          this.setRegion([Math.min(t0, t1), Math.max(t0, t1)], false);
        }
      };
      const up = (ev) => {
        lane.removeEventListener("pointermove", move);
        lane.removeEventListener("pointerup", up);
        if (dragged) {
          const t1 = this.duration * Math.min(1, Math.max(0, (ev.clientX - rect.left) / rect.width));
          this.setRegion([Math.min(t0, t1), Math.max(t0, t1)], true);
        } else {
          this.seek(t0);
        }
      };
      lane.setPointerCapture(e.pointerId);
      lane.addEventListener("pointermove", move);
      lane.addEventListener("pointerup", up);
    });
  }

  setRegion(region, commit) {
    if (region && region[1] - region[0] < 0.05) region = null;
    this.region = region;
    for (const r of document.querySelectorAll("#tracks .region")) {
      r.hidden = !region;
      if (region) {
        r.style.left = `${(100 * region[0]) / this.duration}%`;
        r.style.width = `${(100 * (region[1] - region[0])) / this.duration}%`;
      }
    }
    $("#loop-clear").hidden = !region;
    $("#loop-info").textContent = region ? `region ${fmtTime(region[0])} – ${fmtTime(region[1])}` : "drag across a waveform to mark a loop region";
    if (commit) {
      if (region) { this.loop = true; $("#loop-check").checked = true; }
      if (this.playing) this.restart(region && this.loop ? region[0] : this.position());
    }
  }

  // -- settings
  audible(name) {
    const t = this.settings.tracks[name];
    const anySolo = this.stems.some((s) => this.settings.tracks[s].solo);
    return !t.mute && (!anySolo || t.solo);
  }

  set(name, patch) {
    Object.assign(this.settings.tracks[name], patch);
    this.persist();
    this.applySettingsToView();
    this.applyGains();
    this.scheduleMatch();
    this.drawWaves();
  }

  setAll(settings) {
    this.settings = mergeSettings(defaultSettings(this.stems), settings);
    this.persist();
    showMasterLoudness(this.settings.master);
    this.applySettingsToView();
    this.applyGains();
    this.scheduleMatch();
    this.drawWaves();
  }

  applySettingsToView() {
    for (const s of this.stems) {
      const t = this.settings.tracks[s];
      const r = this.rows[s];
      r.gain.value = t.gain_db;
      r.gainOut.textContent = `${fmtDb(t.gain_db)} dB`;
      r.pan.value = t.pan;
      r.panOut.textContent = t.pan === 0 ? "C" : t.pan < 0 ? `L${Math.round(-100 * t.pan)}` : `R${Math.round(100 * t.pan)}`;
      r.mute.setAttribute("aria-pressed", String(t.mute));
      r.solo.setAttribute("aria-pressed", String(t.solo));
      const row = $(`#tracks .track[data-stem="${CSS.escape(s)}"]`);
      row.classList.toggle("silent", !this.audible(s));
      const extra = exportOnlyKeys(t);
      r.note.textContent = extra.length ? `${extra.join(", ")}: heard in the export, not in this preview` : "";
    }
  }

  // -- audio
  async loadAudio() {
    const status = $("#audio-status");
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) { status.textContent = "This browser has no Web Audio: playback is off, export still works."; return; }
    try {
      this.ctx = new Ctx({ sampleRate: this.analysis.sample_rate, latencyHint: "playback" });
    } catch {
      this.ctx = new Ctx();
    }
    const names = ["original", ...this.stems];
    let loaded = 0;
    status.textContent = `Loading audio 0/${names.length}…`;
    try {
      await Promise.all(names.map(async (name) => {
        const url = name === "original" ? `/api/jobs/${this.job.id}/original`
          : `/api/jobs/${this.job.id}/stems/${encodeURIComponent(name)}/audio`;
        const data = await (await api(url)).arrayBuffer();
        this.buffers[name] = await this.ctx.decodeAudioData(data);
        loaded += 1;
        if (state.mixer === this) status.textContent = `Loading audio ${loaded}/${names.length}…`;
      }));
    } catch (err) {
      status.textContent = `Playback unavailable: ${err.message}. Export still works.`;
      return;
    }
    if (state.mixer !== this) return;
    status.textContent = "";
    $("#play-btn").disabled = false;
    $("#stop-btn").disabled = false;
    this.computeMatch();
    document.body.dataset.audioReady = "1";
  }

  // the span that repeats while Loop is on: the marked region, or the whole song
  loopRange() {
    if (!this.loop) return null;
    return this.region || [0, this.duration];
  }

  position() {
    if (!this.playing) return this.offset;
    let t = this.offset + (this.ctx.currentTime - this.startedAt);
    const range = this.loopRange();
    if (range) {
      const [a, b] = range;
      if (t >= b) t = a + ((t - a) % (b - a));
    }
    return Math.min(Math.max(t, 0), this.duration);
  }

  play() {
    if (!this.ctx || this.playing) return;
    this.ctx.resume();
    let from = this.offset >= this.duration - 0.01 ? 0 : this.offset;
    const range = this.loopRange();
    if (range && (from < range[0] || from >= range[1])) from = range[0];
    const ctx = this.ctx;
    const when = ctx.currentTime + 0.05;
    const mixBus = ctx.createGain();
    const origBus = ctx.createGain();
    mixBus.connect(ctx.destination);
    origBus.connect(ctx.destination);
    const nodes = { mixBus, origBus, sources: [], tracks: {} };
    const start = (buffer, dest) => {
      const src = ctx.createBufferSource();
      src.buffer = buffer;
      if (range) {
        src.loop = true;
        src.loopStart = range[0];
        src.loopEnd = range[1];
      }
      src.connect(dest);
      src.start(when, from);
      nodes.sources.push(src);
      return src;
    };
    for (const s of this.stems) {
      const buf = this.buffers[s];
      const split = ctx.createChannelSplitter(2);
      const left = ctx.createGain();
      const right = ctx.createGain();
      const merge = ctx.createChannelMerger(2);
      const fader = ctx.createGain();
      split.connect(left, 0);
      split.connect(right, buf.numberOfChannels > 1 ? 1 : 0);  // mono stems play as dual mono
      left.connect(merge, 0, 0);
      right.connect(merge, 0, 1);
      merge.connect(fader);
      fader.connect(mixBus);
      start(buf, split);
      nodes.tracks[s] = { left, right, fader };
    }
    const first = start(this.buffers.original, origBus);
    first.onended = () => { if (this.nodes === nodes) this.stop(true); };
    this.nodes = nodes;
    this.applyGains();
    this.offset = from;
    this.startedAt = when;
    this.playing = true;
    $("#play-btn").textContent = "Pause";
    $("#play-btn").setAttribute("aria-label", "Pause");
    const tick = () => { this.updateTime(); if (this.playing) this.raf = requestAnimationFrame(tick); };
    this.raf = requestAnimationFrame(tick);
  }

  stop(toStart = false) {
    const pos = this.position();
    if (this.nodes) {
      for (const src of this.nodes.sources) { src.onended = null; try { src.stop(); } catch { /* not started */ } }
      this.nodes.mixBus.disconnect();
      this.nodes.origBus.disconnect();
    }
    this.nodes = null;
    this.playing = false;
    cancelAnimationFrame(this.raf);
    this.offset = toStart ? 0 : pos;
    $("#play-btn").textContent = "Play";
    $("#play-btn").setAttribute("aria-label", "Play");
    this.updateTime();
  }

  restart(at) {
    this.stop();
    this.offset = at;
    this.play();
  }

  toggle() { if (this.playing) this.stop(); else this.play(); }

  seek(t) {
    if (this.playing) this.restart(t);
    else { this.offset = t; this.updateTime(); }
  }

  applyGains() {
    const n = this.nodes;
    if (!n) return;
    const now = this.ctx.currentTime;
    const ramp = (param, value) => param.setTargetAtTime(value, now, 0.01);
    for (const s of this.stems) {
      const t = this.settings.tracks[s];
      const [l, r] = balanceGains(t.pan);
      ramp(n.tracks[s].left.gain, l);
      ramp(n.tracks[s].right.gain, r);
      ramp(n.tracks[s].fader.gain, this.audible(s) ? dbToGain(t.gain_db) : 0);
    }
    // both play all the time, so switching A/B is instant and stays in sync
    ramp(n.mixBus.gain, this.ab === "mix" ? 1 : 0);
    ramp(n.origBus.gain, this.ab === "original" ? this.matchGain : 0);
  }

  setAB(which) {
    this.ab = which;
    $("#ab-mix").setAttribute("aria-pressed", String(which === "mix"));
    $("#ab-orig").setAttribute("aria-pressed", String(which === "original"));
    document.body.dataset.ab = which;
    this.applyGains();
  }

  scheduleMatch() {
    clearTimeout(this.matchTimer);
    this.matchTimer = setTimeout(() => this.computeMatch(), 150);
  }

  // Loudness matching for A/B, computed here: the RMS of the mix as set now (gains, pans,
  // mutes, solos; every 8th sample) against the original's. The master loudness target is
  // left out: A/B compares the balance of the stems, not the mastering.
  computeMatch() {
    const orig = this.buffers.original;
    if (!orig) return;
    const STEP = 8;
    const len = orig.length;
    const sumL = new Float32Array(Math.ceil(len / STEP));
    const sumR = new Float32Array(sumL.length);
    for (const s of this.stems) {
      if (!this.audible(s)) continue;
      const t = this.settings.tracks[s];
      const buf = this.buffers[s];
      const g = dbToGain(t.gain_db);
      const [bl, br] = balanceGains(t.pan);
      const L = buf.getChannelData(0);
      const R = buf.numberOfChannels > 1 ? buf.getChannelData(1) : L;
      const n = Math.min(len, buf.length);
      for (let i = 0, k = 0; i < n; i += STEP, k++) {
        sumL[k] += g * bl * L[i];
        sumR[k] += g * br * R[i];
      }
    }
    const oL = orig.getChannelData(0);
    const oR = orig.numberOfChannels > 1 ? orig.getChannelData(1) : oL;
    let em = 0; let eo = 0;
    for (let i = 0, k = 0; i < len; i += STEP, k++) {
      em += sumL[k] * sumL[k] + sumR[k] * sumR[k];
      eo += oL[i] * oL[i] + oR[i] * oR[i];
    }
    this.matchGain = eo > 0 && em > 0 ? Math.sqrt(em / eo) : 1;
    const db = 20 * Math.log10(this.matchGain);
    $("#ab-info").textContent = em > 0 ? `A is played ${fmtDb(db)} dB to match the mix (RMS)` : "the mix is silent";
    this.applyGains();
  }

  updateTime() {
    const t = this.position();
    $("#time").textContent = `${fmtTime(t)} / ${fmtTime(this.duration)}`;
    const pct = `${(100 * t) / (this.duration || 1)}%`;
    for (const p of document.querySelectorAll("#tracks .playhead")) p.style.left = pct;
  }

  close() {
    this.stop();
    if (this.ctx) this.ctx.close();
    clearTimeout(this.matchTimer);
  }
}

// Settings the studio has no control for (eq, compressor, automation, a limiter ceiling) are
// kept as they came, so a loaded project exports as `unbake remix` renders it.
function mergeSettings(base, incoming) {
  const out = structuredClone(base);
  for (const [name, t] of Object.entries((incoming && incoming.tracks) || {})) {
    if (!out.tracks[name] || !t || typeof t !== "object") continue;
    const merged = { ...out.tracks[name], ...structuredClone(t) };
    merged.gain_db = Number.isFinite(Number(merged.gain_db)) ? Number(merged.gain_db) : 0;
    merged.pan = Number.isFinite(Number(merged.pan)) ? Number(merged.pan) : 0;
    merged.mute = merged.mute === true;
    merged.solo = merged.solo === true;
    out.tracks[name] = merged;
  }
  const m = incoming && incoming.master;
  if (m && typeof m === "object") {
    out.master = { ...out.master, ...structuredClone(m) };
    if (typeof out.master.loudness_lufs !== "number") out.master.loudness_lufs = null;
  }
  return out;
}

const PREVIEWED = new Set(["gain_db", "pan", "mute", "solo"]);

function exportOnlyKeys(track) {
  return Object.entries(track).filter(([k, v]) => !PREVIEWED.has(k) && !(Array.isArray(v) && !v.length))
    .map(([k]) => k);
}

function showMasterLoudness(master) {
  const select = $("#master-loudness");
  const value = master.loudness_lufs === null ? "" : String(master.loudness_lufs);
  if (![...select.options].some((o) => o.value === value)) select.append(el("option", { value }, `${value} LUFS`));
  select.value = value;
}

async function openJob(id) {
  const job = state.jobs.get(id) || await apiJSON(`/api/jobs/${id}`);
  if (job.status !== "done") return;
  closeMixer();
  let analysis;
  try {
    analysis = await apiJSON(`/api/jobs/${id}/analysis`);
  } catch (err) { toast(`cannot open ${job.name}: ${err.message}`, "error"); return; }
  const mixer = new Mixer(job, analysis);
  state.mixer = mixer;
  $("#empty-state").hidden = true;
  $("#mixer").hidden = false;
  $("#quality-panel").hidden = false;
  document.body.dataset.openJob = id;
  mixer.build();
  mixer.setAB("mix");
  for (const j of state.jobs.values()) renderJob(j);
  await mixer.loadAudio();
}

function closeMixer() {
  if (!state.mixer) return;
  state.mixer.close();
  state.mixer = null;
  delete document.body.dataset.openJob;
  delete document.body.dataset.audioReady;
  $("#mixer").hidden = true;
  $("#quality-panel").hidden = true;
  $("#empty-state").hidden = false;
  $("#play-btn").disabled = true;
  $("#stop-btn").disabled = true;
  $("#loop-check").checked = false;
  $("#export-status").textContent = "";
  for (const j of state.jobs.values()) renderJob(j);
}

// ---------------------------------------------------------------- quality report

function renderQuality(analysis) {
  const box = $("#quality");
  const q = analysis.quality || {};
  const parts = [];
  if (!q.available) {
    parts.push(el("p", { class: "hint" }, q.message || "no quality report for this separation"));
  } else {
    const snr = typeof q.snr_db === "number" ? q.snr_db : null;
    parts.push(el("div", { class: "metric" }, el("span", {}, "stems sum to the mix"),
      el("strong", { id: "q-snr" }, q.exact ? "exactly" : snr === null ? "–" : `${snr.toFixed(1)} dB SNR`)));
    parts.push(el("div", { class: `metric ${q.trivial ? "warn" : ""}` }, el("span", {}, "trivial separation"),
      el("strong", { id: "q-trivial" }, q.trivial ? "yes" : "no")));
    if (q.reasons && q.reasons.length) {
      parts.push(el("ul", { class: "reasons" }, ...q.reasons.map((r) => el("li", {}, explainReason(r)))));
    }
    const perStem = q.stems || {};
    if (Object.keys(perStem).length) {
      parts.push(el("h3", {}, "energy share per stem"));
      for (const [name, v] of Object.entries(perStem)) {
        const share = typeof v.energy_share === "number" ? v.energy_share : 0;
        const pct = Math.max(0, Math.min(100, 100 * share));
        parts.push(el("div", { class: "share", dataset: { stem: name } }, el("span", {}, name),
          el("div", { class: "bar" }, el("div", { style: { width: `${pct}%` } })), el("span", {}, `${pct.toFixed(1)}%`)));
      }
    }
    const extra = el("details", {}, el("summary", {}, "full report"), el("pre", {}, JSON.stringify(q.report, null, 2)));
    parts.push(extra);
  }
  const loud = analysis.loudness_lufs || {};
  parts.push(el("h3", {}, "loudness"));
  for (const [name, v] of Object.entries(loud)) {
    parts.push(el("div", { class: "metric" }, el("span", {}, name), el("strong", {}, v === null ? "silent" : `${v.toFixed(1)} LUFS`)));
  }
  box.replaceChildren(...parts);
}

function explainReason(reason) {
  const [kind, detail = ""] = String(reason).split(":");
  if (kind === "dominant_stem") return `${detail} is the whole mix and the other stems are silent`;
  if (kind === "identical_stems") return `${detail.replace(",", " and ")} are (almost) the same signal`;
  if (kind === "silent_stems") return "every stem is silent";
  if (kind === "silent_mixture") return "the recording is silent";
  return reason;
}

// ---------------------------------------------------------------- export and projects

async function exportMix() {
  const m = state.mixer;
  if (!m) return;
  const format = $("#export-format").value;
  const status = $("#export-status");
  const button = $("#export-btn");
  button.disabled = true;
  status.textContent = "Rendering the mix on the server…";
  try {
    const r = await apiJSON(`/api/jobs/${m.job.id}/render`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ settings: m.settings, format }),
    });
    const meters = r.integrated_lufs !== undefined && r.integrated_lufs !== null
      ? ` (${Number(r.integrated_lufs).toFixed(1)} LUFS, peak ${fmtDb(r.true_peak_db)} dBTP)` : "";
    status.textContent = `Exported ${r.filename}${meters}.`;
    download(r.url, r.filename);
  } catch (err) {
    status.textContent = `Export failed: ${err.message}`;
  } finally {
    button.disabled = false;
  }
}

async function saveProject() {
  const m = state.mixer;
  if (!m) return;
  try {
    const res = await api(`/api/jobs/${m.job.id}/project`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ settings: m.settings }),
    });
    const blob = await res.blob();
    const url = URL.createObjectURL(blob);
    download(url, `${m.job.name.replace(/\.[^.]{1,5}$/, "").replace(/\.stem$/, "")}.unbake.yaml`);
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    $("#export-status").textContent = "Project saved: open it with `unbake remix` or load it here later.";
  } catch (err) {
    $("#export-status").textContent = `Saving the project failed: ${err.message}`;
  }
}

async function loadProject(file) {
  const m = state.mixer;
  if (!m || !file) return;
  try {
    const r = await apiJSON(`/api/jobs/${m.job.id}/project/load`, {
      method: "POST", headers: { "Content-Type": "application/x-yaml" }, body: await file.text(),
    });
    m.setAll(r.settings);
    const ignored = r.settings.ignored || [];
    $("#export-status").textContent = `Loaded ${file.name}.` +
      (ignored.length ? ` Not used here: ${ignored.join(", ")} (the studio mixes the open song).` : "");
  } catch (err) {
    $("#export-status").textContent = `Cannot load ${file.name}: ${err.message}`;
  }
}

// ---------------------------------------------------------------- wiring

function wire() {
  const drop = $("#drop-zone");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer && e.dataTransfer.files.length) pick(e.dataTransfer.files);
  });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("#file-input").click(); } });
  // a song dropped anywhere else must not make the browser navigate away from the studio
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
  $("#file-input").addEventListener("change", (e) => pick(e.target.files));
  $("#model-select").addEventListener("change", showModelInfo);
  $("#separate-btn").addEventListener("click", separatePicked);

  $("#play-btn").addEventListener("click", () => state.mixer && state.mixer.toggle());
  $("#stop-btn").addEventListener("click", () => { if (state.mixer) { state.mixer.stop(true); } });
  $("#loop-check").addEventListener("change", (e) => {
    const m = state.mixer;
    if (!m) return;
    m.loop = e.target.checked;
    if (m.playing) m.restart(m.position());
  });
  $("#loop-clear").addEventListener("click", () => state.mixer && state.mixer.setRegion(null, true));
  $("#ab-mix").addEventListener("click", () => state.mixer && state.mixer.setAB("mix"));
  $("#ab-orig").addEventListener("click", () => state.mixer && state.mixer.setAB("original"));
  $("#master-loudness").addEventListener("change", (e) => {
    const m = state.mixer;
    if (!m) return;
    m.settings.master.loudness_lufs = e.target.value === "" ? null : Number(e.target.value);
    // an explicit "no limiter" would let a loudness target clip; without it the engine's ceiling applies
    if (m.settings.master.true_peak_db === null) delete m.settings.master.true_peak_db;
    m.persist();
  });
  $("#export-btn").addEventListener("click", exportMix);
  $("#save-project").addEventListener("click", saveProject);
  $("#load-project").addEventListener("change", (e) => { loadProject(e.target.files[0]); e.target.value = ""; });
  $("#reset-mix").addEventListener("click", () => state.mixer && state.mixer.setAll(defaultSettings(state.mixer.stems)));

  window.addEventListener("keydown", (e) => {
    const m = state.mixer;
    if (!m || e.target.closest("input, select, textarea, button")) return;
    if (e.key === " ") { e.preventDefault(); m.toggle(); }
    else if (e.key === "a" || e.key === "A") m.setAB("original");
    else if (e.key === "b" || e.key === "B") m.setAB("mix");
  });
  let resizeTimer = 0;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => state.mixer && state.mixer.drawWaves(), 100);
  });
}

async function main() {
  wire();
  try { state.config = await apiJSON("/api/config"); } catch { /* limits are checked by the server too */ }
  await Promise.all([loadModels(), loadJobs().catch((err) => toast(`cannot list jobs: ${err.message}`, "error"))]);
  document.body.dataset.ready = "1";
}

main();
