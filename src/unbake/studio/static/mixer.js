// The mixer view of one separated song: a row per stem (fader, pan, mute, solo, waveform,
// spectrogram), the transport with loop regions, and the A/B switch against the original,
// loudness-matched with the server's LUFS figures.

import * as API from "./api.js";
import { AudioGraph, balanceGains, dbToGain } from "./audio.js";
import { $, el, fmtDb, fmtTime, toast } from "./dom.js";
import { renderQuality } from "./quality.js";
import { audible, defaultSettings, exportOnlyKeys, mergeSettings } from "./settings.js";
import { state } from "./state.js";

export class Mixer {
  constructor(job, analysis) {
    this.job = job;
    this.analysis = analysis;
    this.stems = analysis.stems;
    this.duration = analysis.duration_s;
    this.settings = this.restoreSettings();
    this.graph = null;       // AudioGraph once the audio is loaded
    this.playing = false;
    this.offset = 0;         // seconds into the song when paused / when playback started
    this.startedAt = 0;      // graph time at start
    this.region = null;      // [a, b] seconds
    this.loop = false;
    this.ab = "mix";         // "mix" (B) or "original" (A)
    this.matchGain = 1;      // the original's gain that matches its loudness to the mix's
    this.matchSeq = 0;
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

  // -- exports for DJ software and DAWs: the NI Stems file needs the four NI stems; MIDI reads a
  // bass line, a melody (vocals) or drums
  buildExports() {
    const ni = ["drums", "bass", "other", "vocals"];
    const stemsFile = $("#stems-file-link");
    stemsFile.hidden = !ni.every((s) => this.stems.includes(s));
    stemsFile.href = API.jobUrl(this.job.id, "/stems.stem.mp4");
    const kinds = { bass: "bass", vocals: "melody", drums: "drums" };
    const select = $("#midi-stem");
    const choices = this.stems.filter((s) => s in kinds);
    select.replaceChildren(...choices.map((s) => new Option(`MIDI: ${s} (${kinds[s]})`, s)));
    const link = $("#midi-link");
    select.hidden = link.hidden = choices.length === 0;
    const update = () => { link.href = API.stemUrl(this.job.id, select.value, "/midi"); };
    select.onchange = update;
    if (choices.length) update();
  }

  // -- view
  build() {
    $("#mix-title").textContent = this.job.name;
    const a = this.analysis;
    $("#mix-meta").textContent = `${this.job.model} · ${this.stems.length} stems · ${fmtTime(a.duration_s)} · ${a.sample_rate} Hz · ${a.channels === 1 ? "mono" : "stereo"}`;
    $("#tracks").replaceChildren(this.buildRow("original", true), ...this.stems.map((s) => this.buildRow(s, false)));
    $("#zip-link").href = API.jobUrl(this.job.id, "/stems.zip?format=flac");
    this.buildExports();
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
    const spec = el("button", { class: "spec-toggle", onclick: () => this.toggleSpec(name) }, "Spectrogram");
    const controls = isOriginal
      ? el("div", { class: "track-controls" }, el("span", { class: "hint" }, "the recording you uploaded: what A plays"), spec)
      : this.stemControls(name, spec);
    return el("div", { class: `track${isOriginal ? " original" : ""}`, dataset: { stem: name } }, head, controls, lane);
  }

  stemControls(name, spec) {
    const gain = el("input", { type: "range", class: "gain", min: -60, max: 12, step: 0.5, value: 0,
      "aria-label": `${name} volume (dB)` });
    const gainOut = el("output", { class: "gain-out" }, "0.0 dB");
    const pan = el("input", { type: "range", class: "pan", min: -1, max: 1, step: 0.05, value: 0,
      "aria-label": `${name} pan` });
    const panOut = el("output", { class: "pan-out" }, "C");
    gain.addEventListener("input", () => this.set(name, { gain_db: Number(gain.value) }));
    gain.addEventListener("dblclick", () => this.set(name, { gain_db: defaultSettings([name]).tracks[name].gain_db }));
    pan.addEventListener("input", () => this.set(name, { pan: Number(pan.value) }));
    pan.addEventListener("dblclick", () => this.set(name, { pan: defaultSettings([name]).tracks[name].pan }));
    const mute = el("button", { class: "mute", "aria-pressed": "false", title: `Mute ${name}`,
      onclick: () => this.set(name, { mute: !this.settings.tracks[name].mute }) }, "M");
    const solo = el("button", { class: "solo", "aria-pressed": "false", title: `Solo ${name}`,
      onclick: () => this.set(name, { solo: !this.settings.tracks[name].solo }) }, "S");
    const note = el("span", { class: "hint fx-note" });
    const formats = (state.config && state.config.export_formats) || ["wav", "flac", "mp3"];
    this.rows[name] = { gain, gainOut, pan, panOut, mute, solo, note };
    return el("div", { class: "track-controls" }, mute, solo,
      el("label", { class: "slider" }, "Vol", gain, gainOut),
      el("label", { class: "slider" }, "Pan", pan, panOut), spec,
      el("span", { class: "stem-downloads" }, "↓",
        ...formats.map((f) => el("a", { href: API.stemUrl(this.job.id, name, `/download?format=${f}`),
          download: "", class: "stem-dl", dataset: { format: f } }, f))), note);
  }

  toggleSpec(name) {
    const row = $(`#tracks .track[data-stem="${CSS.escape(name)}"]`);
    const img = $(".spec", row);
    const show = img.hidden;
    if (show && !img.src) {
      img.addEventListener("load", () => { img.dataset.loaded = "1"; }, { once: true });
      img.addEventListener("error", () => toast(`no spectrogram for ${name}`, "error"), { once: true });
      img.src = API.stemUrl(this.job.id, name, "/spectrogram.png");
    }
    img.hidden = !show;
    $(".wave", row).hidden = show;
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
      const heard = name === "original" || this.audible(name);
      g.fillStyle = name === "original" ? "#8a93a6" : heard ? "#5ec8a8" : "#3b4150";
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
      const at = (x) => this.duration * Math.min(1, Math.max(0, (x - rect.left) / rect.width));
      const t0 = at(e.clientX);
      let dragged = false;
      const move = (ev) => {
        if (Math.abs(ev.clientX - e.clientX) > 4) {
          dragged = true;
          const t1 = at(ev.clientX);
          this.setRegion([Math.min(t0, t1), Math.max(t0, t1)], false);
        }
      };
      const up = (ev) => {
        lane.removeEventListener("pointermove", move);
        lane.removeEventListener("pointerup", up);
        const t1 = at(ev.clientX);
        if (dragged) this.setRegion([Math.min(t0, t1), Math.max(t0, t1)], true);
        else this.seek(t0);
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
  audible(name) { return audible(this.settings, this.stems, name); }

  changed() {
    this.persist();
    this.applySettingsToView();
    this.applyGains();
    this.scheduleMatch();
    this.drawWaves();
  }

  set(name, patch) {
    Object.assign(this.settings.tracks[name], patch);
    this.changed();
  }

  setAll(settings) {
    this.settings = mergeSettings(defaultSettings(this.stems), settings);
    showMasterLoudness(this.settings.master);
    this.changed();
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
      $(`#tracks .track[data-stem="${CSS.escape(s)}"]`).classList.toggle("silent", !this.audible(s));
      const extra = exportOnlyKeys(t);
      r.note.textContent = extra.length ? `${extra.join(", ")}: heard in the export, not in this preview` : "";
    }
  }

  // -- audio
  async loadAudio() {
    const status = $("#audio-status");
    if (!AudioGraph.available()) { status.textContent = "This browser has no Web Audio: playback is off, export still works."; return; }
    const graph = new AudioGraph(this.analysis.sample_rate);
    const names = ["original", ...this.stems];
    let loaded = 0;
    status.textContent = `Loading audio 0/${names.length}…`;
    try {
      await Promise.all(names.map(async (name) => {
        const url = name === "original" ? API.jobUrl(this.job.id, "/original") : API.stemUrl(this.job.id, name, "/audio");
        await graph.load(name, await (await API.api(url)).arrayBuffer());
        loaded += 1;
        if (state.mixer === this) status.textContent = `Loading audio ${loaded}/${names.length}…`;
      }));
    } catch (err) {
      status.textContent = `Playback unavailable: ${err.message}. Export still works.`;
      graph.close();
      return;
    }
    if (state.mixer !== this) { graph.close(); return; }
    this.graph = graph;
    status.textContent = "";
    $("#play-btn").disabled = false;
    $("#stop-btn").disabled = false;
    await this.computeMatch();
    document.body.dataset.audioReady = "1";
  }

  // the span that repeats while Loop is on: the marked region, or the whole song
  loopRange() {
    if (!this.loop) return null;
    return this.region || [0, this.duration];
  }

  position() {
    if (!this.playing) return this.offset;
    let t = this.offset + (this.graph.now - this.startedAt);
    const range = this.loopRange();
    if (range) {
      const [a, b] = range;
      if (t >= b) t = a + ((t - a) % (b - a));
    }
    return Math.min(Math.max(t, 0), this.duration);
  }

  play() {
    if (!this.graph || this.playing) return;
    let from = this.offset >= this.duration - 0.01 ? 0 : this.offset;
    const range = this.loopRange();
    if (range && (from < range[0] || from >= range[1])) from = range[0];
    this.startedAt = this.graph.start(this.stems, from, range, () => this.stop(true));
    this.offset = from;
    this.playing = true;
    this.applyGains();
    $("#play-btn").textContent = "Pause";
    $("#play-btn").setAttribute("aria-label", "Pause");
    const tick = () => { this.updateTime(); if (this.playing) this.raf = requestAnimationFrame(tick); };
    this.raf = requestAnimationFrame(tick);
  }

  stop(toStart = false) {
    const pos = this.position();
    if (this.graph) this.graph.stop();
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
    if (!this.graph) return;
    const tracks = {};
    for (const s of this.stems) {
      const t = this.settings.tracks[s];
      tracks[s] = [...balanceGains(t.pan), this.audible(s) ? dbToGain(t.gain_db) : 0];
    }
    this.graph.setGains({ tracks, mix: this.ab === "mix" ? 1 : 0, original: this.ab === "original" ? this.matchGain : 0 });
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

  // Loudness matching for A/B: the server measures the integrated loudness (BS.1770, as
  // `unbake remix`) of the mix as set now (gains, pans, mutes, solos) and of the original. The
  // master loudness target is left out: A/B compares the balance of the stems, not the mastering.
  async computeMatch() {
    const seq = ++this.matchSeq;
    let r;
    try {
      r = await API.abMatch(this.job.id, { tracks: this.settings.tracks });
    } catch (err) {
      if (seq === this.matchSeq) $("#ab-info").textContent = `no loudness match: ${err.message}`;
      return;
    }
    if (seq !== this.matchSeq || state.mixer !== this) return;
    this.matchGain = r.gain_db === null ? 1 : dbToGain(r.gain_db);
    $("#ab-info").textContent = r.mix_lufs === null ? "the mix is silent"
      : r.original_lufs === null ? "the original is silent"
        : `A is played ${fmtDb(r.gain_db)} dB to match the mix (${r.mix_lufs.toFixed(1)} LUFS)`;
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
    if (this.graph) this.graph.close();
    clearTimeout(this.matchTimer);
    this.matchSeq += 1;
  }
}

export function showMasterLoudness(master) {
  const select = $("#master-loudness");
  const value = master.loudness_lufs === null ? "" : String(master.loudness_lufs);
  if (![...select.options].some((o) => o.value === value)) select.append(el("option", { value }, `${value} LUFS`));
  select.value = value;
}
