// swdepot's operator page: a client of the service's own ONTAP-style REST API.
// Everything is rendered with textContent (never innerHTML), so no value from the
// API or a package can inject markup.
"use strict";

const POLL_MS = 1000;
const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, code, message) {
    super(`${message} (code ${code})`);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const init = { method, headers: { accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  return decode(await fetch(path, init));
}

async function decode(response) {
  let payload = null;
  try { payload = await response.json(); } catch (_) { /* not JSON */ }
  if (response.ok) return payload;
  const err = (payload && payload.error) || { code: 0, message: `HTTP ${response.status}` };
  throw new ApiError(response.status, err.code, err.message);
}

// --- formatting --------------------------------------------------------------------------

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

function when(iso) { return iso ? new Date(iso).toLocaleString() : "–"; }

function duration(seconds) {
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h ? `${h}h ${m}m ${r}s` : m ? `${m}m ${r}s` : `${r}s`;
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (cls) td.className = cls;
  return td;
}

function notify(text, isError) {
  const n = $("notice");
  n.textContent = text;
  n.className = isError ? "error" : "";
  n.hidden = false;
}

// --- sections ----------------------------------------------------------------------------

async function loadCluster() {
  const cluster = await api("GET", "/api/cluster");
  $("cluster-name").textContent = `cluster ${cluster.name}`;
  const sw = await api("GET", "/api/cluster/software");
  $("software-version").textContent = sw.version;
  $("software-state").textContent = sw.state;
  $("software-nodes").textContent = (sw.nodes || []).map((n) => `${n.name} (${n.version})`)
    .join(", ");
}

async function loadRepository() {
  const body = await api("GET", "/api/cluster/software/packages?fields=*");
  const records = body.records || [];
  const tbody = $("repository").tBodies[0];
  tbody.replaceChildren();
  let total = 0;
  for (const p of records) {
    total += p.size || 0;
    const row = tbody.insertRow();
    row.dataset.version = p.version;
    cell(row, p.version);
    cell(row, p.file_name);
    cell(row, p.kind);
    cell(row, bytes(p.size), "num");
    cell(row, when(p.create_time));
    cell(row, p.signer || "unsigned");
    const button = document.createElement("button");
    button.textContent = "Delete";
    button.className = "danger";
    button.addEventListener("click", () => deletePackage(p.version, button));
    row.insertCell().append(button);
  }
  $("repository-empty").hidden = records.length > 0;
  $("repository-summary").textContent = records.length
    ? `${records.length} package${records.length === 1 ? "" : "s"}, ${bytes(total)}` : "";
}

async function loadDownload() {
  const d = await api("GET", "/api/cluster/software/download");
  const state = $("download-state");
  state.textContent = d.state;
  state.className = `state-${d.state}`;
  $("download-message").textContent = d.message;
  const bar = $("download-progress");
  const done = d.bytes_done || 0, total = d.bytes_total || 0;
  if (total > 0) { bar.max = total; bar.value = Math.min(done, total); }
  else if (d.state === "running") { bar.removeAttribute("value"); }  // size unknown yet
  else { bar.max = 1; bar.value = d.state === "success" ? 1 : 0; }
  $("download-bytes").textContent = d.bytes_done === undefined ? ""
    : `${bytes(done)} of ${total ? bytes(total) : "?"}` +
      (total ? ` (${Math.floor((100 * done) / total)}%)` : "");
  const running = d.state === "running";
  $("download-speed").textContent = running && d.speed ? `${bytes(d.speed)}/s` : "";
  $("download-eta").textContent = running && d.speed && total
    ? `ETA ${duration((total - done) / d.speed)}` : "";
}

async function loadJobs() {
  const body = await api("GET", "/api/cluster/jobs?fields=*");
  const jobs = (body.records || []).sort(
    (a, b) => (b.start_time || "").localeCompare(a.start_time || ""));
  const tbody = $("jobs").tBodies[0];
  tbody.replaceChildren();
  for (const j of jobs.slice(0, 20)) {
    const row = tbody.insertRow();
    row.dataset.uuid = j.uuid;
    cell(row, when(j.start_time));
    cell(row, j.description);
    cell(row, j.state, `state-${j.state}`);
    cell(row, j.message);
    cell(row, j.code, "num");
  }
  return jobs;
}

// --- actions -----------------------------------------------------------------------------

async function waitJob(uuid) {
  for (;;) {
    const job = await api("GET", `/api/cluster/jobs/${encodeURIComponent(uuid)}`);
    if (job.state === "success" || job.state === "failure") return job;
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function report(job, success) {
  if (job.state === "success") notify(success, false);
  else notify(`${job.message} (code ${job.code})`, true);
  await refresh();
}

async function startDownload(event) {
  event.preventDefault();
  const form = event.target;
  const body = { url: form.url.value.trim() };
  if (form.username.value) body.username = form.username.value;
  if (form.password.value) body.password = form.password.value;
  form.password.value = "";  // never kept in the page
  try {
    const { job } = await api("POST", "/api/cluster/software/download", body);
    notify("Package download in progress.", false);
    await refresh();
    await report(await waitJob(job.uuid), "Package download completed.");
  } catch (e) {
    notify(e.message, true);
  }
}

function uploadFile(event) {
  event.preventDefault();
  const file = event.target.file.files[0];
  if (!file) return;
  const bar = $("upload-progress");
  bar.hidden = false;
  bar.max = file.size || 1;
  bar.value = 0;
  const data = new FormData();
  data.append("file", file, file.name);
  const xhr = new XMLHttpRequest();  // fetch() cannot report upload progress
  xhr.open("POST", "/api/cluster/software/upload");
  xhr.setRequestHeader("accept", "application/json");
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) { bar.max = e.total; bar.value = e.loaded; } };
  xhr.onerror = () => notify("The upload was interrupted.", true);
  xhr.onload = async () => {
    const response = new Response(xhr.responseText, { status: xhr.status });
    try {
      const { job } = await decode(response);
      notify(`Uploaded ${file.name}; processing.`, false);
      await report(await waitJob(job.uuid), "Package upload completed.");
    } catch (e) {
      notify(e.status === 404 && e.code == 3
        ? "This service does not offer uploads (API not found)." : e.message, true);
    } finally {
      bar.hidden = true;
    }
  };
  xhr.send(data);
}

async function deletePackage(version, button) {
  if (!window.confirm(`Delete package ${version} from the repository?`)) return;
  button.disabled = true;
  try {
    const { job } = await api("DELETE",
      `/api/cluster/software/packages/${encodeURIComponent(version)}`);
    await report(await waitJob(job.uuid), `Package ${version} deleted.`);
  } catch (e) {
    notify(e.message, true);
    button.disabled = false;
  }
}

// --- polling -----------------------------------------------------------------------------

let lastFinished = null;

async function refresh() {
  try {
    await loadDownload();
    const jobs = await loadJobs();
    // reload the repository when a job ended since the last look (or at first)
    const finished = jobs.filter((j) => j.end_time).map((j) => j.uuid + j.state).join();
    if (finished !== lastFinished) {
      lastFinished = finished;
      await loadRepository();
    }
  } catch (e) {
    notify(`Cannot read the service: ${e.message}`, true);
  }
}

async function start() {
  $("download-form").addEventListener("submit", startDownload);
  $("upload-form").addEventListener("submit", uploadFile);
  try { await loadCluster(); } catch (e) { notify(e.message, true); }
  await refresh();
  setInterval(refresh, POLL_MS);
}

start();
