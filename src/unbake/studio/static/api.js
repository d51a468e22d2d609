// The studio's HTTP API, as the views use it. Errors carry the server's `detail` as message.

export async function api(path, options = {}) {
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

export const apiJSON = async (path, options) => (await api(path, options)).json();

export const postJSON = (path, body) => api(path, {
  method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
});

export const jobUrl = (id, tail = "") => `/api/jobs/${encodeURIComponent(id)}${tail}`;
export const stemUrl = (id, stem, tail) => jobUrl(id, `/stems/${encodeURIComponent(stem)}${tail}`);

export const getConfig = () => apiJSON("/api/config");
export const getModels = () => apiJSON("/api/models");
export const getNeutral = () => apiJSON("/api/mix/neutral");
export const getJobs = () => apiJSON("/api/jobs");
export const getJob = (id) => apiJSON(jobUrl(id));
export const getAnalysis = (id) => apiJSON(jobUrl(id, "/analysis"));
export const cancelJob = (id) => apiJSON(jobUrl(id, "/cancel"), { method: "POST" });
export const deleteJob = (id) => api(jobUrl(id), { method: "DELETE" });
export const abMatch = async (id, settings) => (await postJSON(jobUrl(id, "/ab-match"), { settings })).json();
export const render = async (id, settings, format) => (await postJSON(jobUrl(id, "/render"), { settings, format })).json();
export const saveProject = async (id, settings) => (await postJSON(jobUrl(id, "/project"), { settings })).blob();
export const loadProject = (id, text) => apiJSON(jobUrl(id, "/project/load"), {
  method: "POST", headers: { "Content-Type": "application/x-yaml" }, body: text,
});

// XMLHttpRequest, not fetch: it reports upload progress
export function upload(file, model, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const q = new URLSearchParams({ model, name: file.name });
    xhr.open("POST", `/api/jobs?${q}`);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* empty */ }
      if (xhr.status === 201) resolve(body);
      else reject(new Error(`${file.name}: ${(body && body.detail) || `${xhr.status} ${xhr.statusText}`}`));
    };
    xhr.onerror = () => reject(new Error(`${file.name}: upload failed (connection lost)`));
    xhr.send(file);
  });
}
