// Mixer settings: the `tracks:` and `master:` sections of an `unbake remix` project. The neutral
// values come from the server (one declaration for the studio, the command line and the engine).

import { getNeutral } from "./api.js";

let neutral = null;

export async function loadNeutral() {
  neutral = await getNeutral();
  return neutral;
}

export function defaultSettings(stems) {
  const tracks = {};
  for (const s of stems) tracks[s] = structuredClone(neutral.track);
  return { tracks, master: structuredClone(neutral.master) };
}

const number = (x, fallback) => (Number.isFinite(Number(x)) && x !== null ? Number(x) : fallback);

// Settings the studio has no control for (eq, compressor, automation, a limiter ceiling) are
// kept as they came, so a loaded project exports as `unbake remix` renders it.
export function mergeSettings(base, incoming) {
  const out = structuredClone(base);
  for (const [name, t] of Object.entries((incoming && incoming.tracks) || {})) {
    if (!out.tracks[name] || !t || typeof t !== "object") continue;
    const merged = { ...out.tracks[name], ...structuredClone(t) };
    merged.gain_db = number(merged.gain_db, neutral.track.gain_db);
    merged.pan = number(merged.pan, neutral.track.pan);
    merged.mute = merged.mute === true;
    merged.solo = merged.solo === true;
    out.tracks[name] = merged;
  }
  const m = incoming && incoming.master;
  if (m && typeof m === "object") {
    out.master = { ...out.master, ...structuredClone(m) };
    if (typeof out.master.loudness_lufs !== "number") out.master.loudness_lufs = neutral.master.loudness_lufs;
  }
  return out;
}

const PREVIEWED = new Set(["gain_db", "pan", "mute", "solo"]);

// keys of a track that change the export but not the browser's preview
export function exportOnlyKeys(track) {
  return Object.entries(track)
    .filter(([k, v]) => !PREVIEWED.has(k) && !(Array.isArray(v) && !v.length)
      && JSON.stringify(v) !== JSON.stringify(neutral.track[k]))
    .map(([k]) => k);
}

export function audible(settings, stems, name) {
  const t = settings.tracks[name];
  const anySolo = stems.some((s) => settings.tracks[s].solo);
  return !t.mute && (!anySolo || t.solo);
}
