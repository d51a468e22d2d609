// unbake studio front end: the entry module. It wires the page's controls to the views
// (jobs.js: uploads and the job list; mixer.js: the mixer and its A/B switch; quality.js) and
// exports mixes and projects through the server. Plain ES modules, no dependencies.

import * as API from "./api.js";
import { $, download, fmtDb, toast } from "./dom.js";
import { hooks, loadJobs, loadModels, pick, renderJob, separatePicked, showModelInfo } from "./jobs.js";
import { Mixer } from "./mixer.js";
import { defaultSettings, loadNeutral } from "./settings.js";
import { state } from "./state.js";

async function openJob(id) {
  const job = state.jobs.get(id) || await API.getJob(id);
  if (job.status !== "done") return;
  closeMixer();
  let analysis;
  try {
    analysis = await API.getAnalysis(id);
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

hooks.open = openJob;
hooks.closed = (id) => { if (state.mixer && state.mixer.job.id === id) closeMixer(); };

// ---------------------------------------------------------------- export and projects

async function exportMix() {
  const m = state.mixer;
  if (!m) return;
  const status = $("#export-status");
  const button = $("#export-btn");
  button.disabled = true;
  status.textContent = "Rendering the mix on the server…";
  try {
    const r = await API.render(m.job.id, m.settings, $("#export-format").value);
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
    const url = URL.createObjectURL(await API.saveProject(m.job.id, m.settings));
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
    const r = await API.loadProject(m.job.id, await file.text());
    m.setAll(r.settings);
    const ignored = r.settings.ignored || [];
    $("#export-status").textContent = `Loaded ${file.name}.` +
      (ignored.length ? ` Not used here: ${ignored.join(", ")} (the studio mixes the open song).` : "");
  } catch (err) {
    $("#export-status").textContent = `Cannot load ${file.name}: ${err.message}`;
  }
}

// ---------------------------------------------------------------- wiring

function wireUploads() {
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
}

function wireMixer() {
  const withMixer = (fn) => (e) => { if (state.mixer) fn(state.mixer, e); };
  $("#play-btn").addEventListener("click", withMixer((m) => m.toggle()));
  $("#stop-btn").addEventListener("click", withMixer((m) => m.stop(true)));
  $("#loop-check").addEventListener("change", withMixer((m, e) => {
    m.loop = e.target.checked;
    if (m.playing) m.restart(m.position());
  }));
  $("#loop-clear").addEventListener("click", withMixer((m) => m.setRegion(null, true)));
  $("#ab-mix").addEventListener("click", withMixer((m) => m.setAB("mix")));
  $("#ab-orig").addEventListener("click", withMixer((m) => m.setAB("original")));
  $("#master-loudness").addEventListener("change", withMixer((m, e) => {
    m.settings.master.loudness_lufs = e.target.value === "" ? null : Number(e.target.value);
    // an explicit "no limiter" would let a loudness target clip; without it the engine's ceiling applies
    if (m.settings.master.true_peak_db === null) delete m.settings.master.true_peak_db;
    m.persist();
  }));
  $("#export-btn").addEventListener("click", exportMix);
  $("#save-project").addEventListener("click", saveProject);
  $("#load-project").addEventListener("change", (e) => { loadProject(e.target.files[0]); e.target.value = ""; });
  $("#reset-mix").addEventListener("click", withMixer((m) => m.setAll(defaultSettings(m.stems))));
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
  wireUploads();
  wireMixer();
  try { state.config = await API.getConfig(); } catch { /* limits are checked by the server too */ }
  try { await loadNeutral(); } catch (err) { toast(`cannot load the mixer's settings: ${err.message}`, "error"); }
  await Promise.all([loadModels(), loadJobs().catch((err) => toast(`cannot list jobs: ${err.message}`, "error"))]);
  document.body.dataset.ready = "1";
}

main();
