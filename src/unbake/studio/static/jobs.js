// The sidebar: models, picking and uploading songs, and the job list with live progress
// (server-sent events). Opening a finished job is the app's business (`hooks.open`).

import * as API from "./api.js";
import { $, el, fmtBytes, fmtTime, toast } from "./dom.js";
import { state } from "./state.js";

export const hooks = { open: (id) => {}, closed: (id) => {} };

export async function loadModels() {
  const select = $("#model-select");
  try {
    state.models = await API.getModels();
  } catch (err) {
    toast(`cannot list models: ${err.message}`, "error");
    return;
  }
  select.replaceChildren(...state.models.map((m) => el("option", { value: m.name },
    `${m.name} — ${m.sources.join(" + ")} (${m.offline ? m.availability : "needs download"})${m.default ? " · default" : ""}`)));
  // the model `unbake separate` uses when none is named
  const preferred = state.models.find((m) => m.default) || state.models.find((m) => m.offline);
  if (preferred) select.value = preferred.name;
  showModelInfo();
}

export function showModelInfo() {
  const m = state.models.find((x) => x.name === $("#model-select").value);
  $("#model-info").textContent = m
    ? `${m.description || ""} ${m.offline ? `Works offline (${m.availability}).` : "Its weights are downloaded on first use."} Licence: ${m.licence}.`
    : "";
}

export function pick(files) {
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

async function uploadOne(file, model) {
  const bar = $("#upload-progress");
  bar.hidden = false;
  try {
    return await API.upload(file, model, (f) => { bar.firstElementChild.style.width = `${100 * f}%`; });
  } finally {
    bar.hidden = true;
  }
}

export async function separatePicked() {
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

export async function loadJobs() {
  for (const j of await API.getJobs()) upsertJob(j);
}

export function upsertJob(job) {
  state.jobs.set(job.id, job);
  renderJob(job);
  if (!["done", "failed", "cancelled"].includes(job.status)) follow(job.id);
  $("#no-jobs").hidden = state.jobs.size > 0;
}

function follow(id) {
  if (state.streams.has(id)) return;
  const es = new EventSource(API.jobUrl(id, "/events"));
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
      if (!state.mixer) hooks.open(id);
      else toast(`${job.name} is separated`);
    }
  });
  es.onerror = () => {
    // the browser reconnects by itself; a job deleted meanwhile answers 404 and closes the stream
    if (es.readyState === EventSource.CLOSED) state.streams.delete(id);
  };
}

export function renderJob(job) {
  const list = $("#job-list");
  let li = list.querySelector(`li[data-id="${CSS.escape(job.id)}"]`);
  if (!li) {
    li = el("li", { class: "job", dataset: { id: job.id } });
    list.prepend(li);
  }
  li.dataset.status = job.status;
  const pct = Math.round(100 * (job.progress || 0));
  const active = job.status === "running" || job.status === "queued";
  const stageText = job.status === "running" ? `${job.stage || "running"} ${pct}%`
    : job.status === "queued" ? "waiting in the queue" : job.status;
  const actions = el("div", { class: "job-actions" });
  if (job.status === "done") actions.append(el("button", { class: "open", onclick: () => hooks.open(job.id) }, "Open"));
  if (active) actions.append(el("button", { class: "cancel", onclick: () => cancelJob(job.id) }, "Cancel"));
  else actions.append(el("button", { class: "delete", onclick: (e) => deleteJob(job.id, e.currentTarget) }, "Delete"));
  li.replaceChildren(
    el("div", { class: "job-name", title: job.name }, job.name),
    el("div", { class: "job-meta" }, el("span", { class: `badge ${job.status}` }, job.status), ` ${job.model}`,
      job.duration_s ? ` · ${fmtTime(job.duration_s)}` : ""),
    ...(active
      ? [el("div", { class: "bar", role: "progressbar", "aria-valuenow": pct, "aria-valuemin": 0, "aria-valuemax": 100 },
        el("div", { style: { width: `${pct}%` } })), el("div", { class: "hint stage" }, stageText)]
      : []),
    ...(job.error ? [el("div", { class: "error" }, job.error)] : []),
    actions,
  );
  li.classList.toggle("selected", !!state.mixer && state.mixer.job.id === job.id);
}

async function cancelJob(id) {
  try { upsertJob(await API.cancelJob(id)); } catch (err) { toast(err.message, "error"); }
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
    await API.deleteJob(id);
  } catch (err) { toast(err.message, "error"); return; }
  state.jobs.delete(id);
  const li = $(`#job-list li[data-id="${CSS.escape(id)}"]`);
  if (li) li.remove();
  $("#no-jobs").hidden = state.jobs.size > 0;
  hooks.closed(id);
}
