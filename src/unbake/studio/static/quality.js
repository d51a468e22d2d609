// The quality panel: does the split sum to the mix, is it trivial, how the energy is shared, and
// the full `unbake check` report as tables with rounded figures.

import { $, el, fmtNumber } from "./dom.js";

const label = (key) => String(key).replace(/_/g, " ");

function keyValueTable(entries) {
  return el("table", { class: "report" }, el("tbody", {},
    ...entries.map(([k, v]) => el("tr", {}, el("th", { scope: "row" }, label(k)), el("td", {}, fmtNumber(v))))));
}

// rows: [[name, {column: value}]]
function grid(rows, corner = "") {
  const columns = [...new Set(rows.flatMap(([, r]) => Object.keys(r)))];
  return el("table", { class: "report" },
    el("thead", {}, el("tr", {}, el("th", {}, corner), ...columns.map((c) => el("th", { scope: "col" }, label(c))))),
    el("tbody", {}, ...rows.map(([name, r]) => el("tr", {}, el("th", { scope: "row" }, name),
      ...columns.map((c) => el("td", {}, name === c ? "–" : fmtNumber(r[c])))))));
}

const isPlain = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

// one table for the scalar figures, then one per nested section
export function reportTables(report) {
  const scalars = Object.entries(report).filter(([, v]) => !isPlain(v) && !Array.isArray(v));
  const parts = [keyValueTable(scalars)];
  for (const [key, value] of Object.entries(report)) {
    if (Array.isArray(value) && value.length && isPlain(value[0])) {
      parts.push(el("h4", {}, label(key)), grid(value.map((row, i) => [String(i + 1), row]), "#"));
    } else if (isPlain(value) && Object.values(value).every(isPlain)) {
      parts.push(el("h4", {}, label(key)), grid(Object.entries(value)));
    } else if (isPlain(value)) {
      parts.push(el("h4", {}, label(key)), keyValueTable(Object.entries(value)));
    }
  }
  return parts;
}

function explainReason(reason) {
  const [kind, detail = ""] = String(reason).split(":");
  if (kind === "dominant_stem") return `${detail} is the whole mix and the other stems are silent`;
  if (kind === "identical_stems") return `${detail.replace(",", " and ")} are (almost) the same signal`;
  if (kind === "silent_stems") return "every stem is silent";
  if (kind === "silent_mixture") return "the recording is silent";
  return reason;
}

export function renderQuality(analysis) {
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
    if (q.report) parts.push(el("details", { class: "full-report" }, el("summary", {}, "full report"), ...reportTables(q.report)));
  }
  const loud = analysis.loudness_lufs || {};
  parts.push(el("h3", {}, "loudness"));
  for (const [name, v] of Object.entries(loud)) {
    parts.push(el("div", { class: "metric" }, el("span", {}, name), el("strong", {}, v === null ? "silent" : `${v.toFixed(1)} LUFS`)));
  }
  box.replaceChildren(...parts);
}
