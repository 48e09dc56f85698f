// swdepot's operator page: a client of the service's own ONTAP-style REST API.
// Everything is rendered with textContent (never innerHTML), so no value from the
// API or a package can inject markup.
"use strict";

const POLL_MS = 1000;
const JOBS_PAGE = 10;
const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, code, message) {
    super(`${message} (code ${code})`);
    this.status = status;
    this.code = code;
    this.text = message;
  }
}

// Absolute URLs from location.origin: a page opened as https://user:pw@host/ has a base
// URL with credentials, from which fetch() refuses to build a request.
const url = (path) => new URL(path, location.origin).href;

async function api(method, path, body) {
  const init = { method, headers: { accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  return decode(await fetch(url(path), init));
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
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h ? `${h}h ${m}m ${r}s` : m ? `${m}m ${r}s` : `${r}s`;
}

const words = (state) => (state || "").replace(/_/g, " ");

function cell(row, text, cls, label) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined || text === "" ? "–" : String(text);
  if (cls) td.className = cls;
  // the column's name, shown before the value when a narrow screen stacks the cells
  td.dataset.label = label || row.closest("table").tHead.rows[0].cells[td.cellIndex]
    .textContent;
  return td;
}

function notify(text, isError) {
  const n = $("notice");
  n.textContent = text;
  n.className = isError ? "error" : "";
  n.hidden = false;
}

function button(text, cls, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  if (cls) b.className = cls;
  b.addEventListener("click", onClick);
  return b;
}

// --- who is looking ----------------------------------------------------------------------

let mayWrite = false;

async function loadSession() {
  try {
    const s = await api("GET", "/api/swdepot/session");
    mayWrite = Boolean(s.may_write);
    $("session-user").textContent = `${s.user} (${s.role}) ·`;
  } catch (e) {
    if (e.status !== 404) throw e;
    mayWrite = true;  // a service without the endpoint: let it refuse what it must
  }
  document.body.classList.toggle("may-write", mayWrite);
}

// --- sections ----------------------------------------------------------------------------

let software = null;
let packages = [];
const UNFINISHED = ["in_progress", "waiting", "paused_by_user", "paused_on_error",
  "pause_pending", "cancel_pending"];

async function loadCluster() {
  const cluster = await api("GET", "/api/cluster");
  $("cluster-name").textContent = cluster.name;
}

async function loadSoftware() {
  const sw = await api("GET", "/api/cluster/software?fields=*");
  software = sw;
  $("software-version").textContent = sw.version;
  $("software-state").textContent = words(sw.state);
  $("software-nodes").textContent = (sw.nodes || []).map((n) => `${n.name} (${n.version})`)
    .join(", ");
  renderValidation(sw);
  renderUpdate(sw);
  renderUpdateForm();
}

function renderValidation(sw) {
  const results = sw.validation_results;
  $("validation").hidden = !results;
  if (!results) return;
  const tbody = $("validation-results").tBodies[0];
  tbody.replaceChildren();
  for (const r of results) {
    const row = tbody.insertRow();
    cell(row, r.update_check);
    cell(row, r.status, `check-${r.status}`);
    cell(row, r.issue && r.issue.message);
    cell(row, r.action && r.action.message);
  }
  const errors = results.filter((r) => r.status === "error").length;
  const warnings = results.filter((r) => r.status === "warning").length;
  $("validation-summary").textContent = !results.length ? "every check passed"
    : [errors && `${errors} error${errors === 1 ? "" : "s"}`,
       warnings && `${warnings} warning${warnings === 1 ? "" : "s"}`]
      .filter(Boolean).join(", ") || "every check passed";
}

function renderUpdate(sw) {
  const details = sw.update_details;
  $("update").hidden = !details;
  if (!details) return;
  const state = sw.state;
  const s = $("update-state");
  s.textContent = `Update ${words(state)}`;
  s.className = `update-${state}`;
  $("update-target").textContent = sw.pending_version ? `to ${sw.pending_version}` : "";
  const elapsed = sw.elapsed_duration || 0, estimated = sw.estimated_duration || 0;
  $("update-time").textContent = UNFINISHED.includes(state)
    ? `${duration(elapsed)} of about ${duration(estimated)}`
    : `took ${duration(elapsed)}`;
  const bar = $("update-bar");
  bar.max = Math.max(estimated, 1);
  bar.value = state === "completed" ? bar.max : Math.min(elapsed, bar.max);
  bar.className = state === "failed" || state === "paused_on_error" ? "failed"
    : state === "completed" ? "done" : "";
  // the outcome, once the update ended
  const outcome = $("update-outcome");
  const failedStep = (sw.status_details || []).find(
    (d) => d.state === "failed" || d.state === "paused_on_error");
  outcome.hidden = UNFINISHED.includes(state) && state !== "paused_on_error";
  outcome.className = state === "completed" ? "ok" : state === "canceled" ? "" : "bad";
  outcome.textContent = state === "completed"
    ? `Update completed: every node runs ${sw.version}.`
    : state === "canceled" ? "Update canceled. Nodes already updated stay updated."
    : failedStep && failedStep.issue ? failedStep.issue.message : `Update ${words(state)}.`;
  // controls
  $("update-pause").hidden = state !== "in_progress";
  $("update-resume").hidden = state !== "paused_by_user" && state !== "paused_on_error";
  $("update-cancel").hidden = !["in_progress", "paused_by_user", "paused_on_error",
    "pause_pending"].includes(state);
  // per node and phase
  const phases = $("update-phases").tBodies[0];
  phases.replaceChildren();
  for (const d of details) {
    const row = phases.insertRow();
    cell(row, d.phase);
    cell(row, d.node && d.node.name);
    cell(row, words(d.state), `update-${d.state}`);
    cell(row, `${duration(d.elapsed_duration || 0)} / ${duration(d.estimated_duration || 0)}`,
      "num");
  }
  const steps = $("update-steps").tBodies[0];
  steps.replaceChildren();
  for (const d of sw.status_details || []) {
    const row = steps.insertRow();
    cell(row, d.name);
    cell(row, d.node && d.node.name);
    cell(row, words(d.state), `update-${d.state}`);
    cell(row, [d.issue && d.issue.message, d.action && d.action.message].filter(Boolean)
      .join(" "));
  }
}

function renderUpdateForm() {
  const select = $("update-version");
  const images = packages.filter((p) => p.kind !== "firmware");
  const wanted = select.value;
  const have = [...select.options].map((o) => o.value).join();
  if (have !== images.map((p) => p.version).join()) {
    select.replaceChildren(...images.map((p) => {
      const o = document.createElement("option");
      o.value = p.version;
      o.textContent = `${p.version} (${p.file_name})`;
      return o;
    }));
    if (images.some((p) => p.version === wanted)) select.value = wanted;
  }
  const busy = software && UNFINISHED.includes(software.state);
  const none = images.length === 0;
  $("validate-button").disabled = busy || none || pending > 0;
  $("update-button").disabled = busy || none || pending > 0;
  $("update-form-note").textContent = none ? "The repository holds no software image."
    : busy ? "An update is under way." : "";
}

async function loadRepository() {
  const body = await api("GET", "/api/cluster/software/packages?fields=*");
  const records = body.records || [];
  packages = records;
  const tbody = $("repository").tBodies[0];
  tbody.replaceChildren();
  let total = 0;
  for (const p of records) {
    total += p.size || 0;
    const row = tbody.insertRow();
    row.dataset.version = p.version;
    cell(row, p.version);
    cell(row, p.file_name, "wrap");
    cell(row, p.kind);
    cell(row, bytes(p.size), "num");
    cell(row, when(p.create_time));
    cell(row, p.signer || "unsigned");
    const td = row.insertCell();
    td.className = "write actions";
    td.append(button("Delete", "danger", (e) => deletePackage(p.version, e.target)));
  }
  $("repository-empty").hidden = records.length > 0;
  $("repository-summary").textContent = records.length
    ? `${records.length} package${records.length === 1 ? "" : "s"}, ${bytes(total)}` : "";
  renderUpdateForm();
}

// A request refused before any job started: shown on the card until another download
// (another job) replaces the one the card showed.
let downloadRefusal = null;
let downloadJob = null;

async function loadDownload() {
  const d = await api("GET", "/api/cluster/software/download");
  downloadJob = d.state === "running" && d.job ? d.job.uuid : null;
  const refused = downloadRefusal && (d.job && d.job.uuid) === downloadRefusal.job;
  if (!refused) downloadRefusal = null;
  const state = $("download-state");
  const bar = $("download-progress");
  $("download-cancel").hidden = !downloadJob;
  if (refused) {
    state.textContent = "refused";
    state.className = "state-failure";
    $("download-message").textContent = downloadRefusal.message;
    bar.max = 1; bar.value = 0; bar.className = "failed";
    for (const id of ["download-bytes", "download-speed", "download-eta"]) $(id).textContent = "";
    return;
  }
  state.textContent = d.state;
  state.className = `state-${d.state}`;
  $("download-message").textContent = d.state === "failure"
    ? `${d.message} (code ${d.code})` : d.message;
  const done = d.bytes_done || 0, total = d.bytes_total || 0;
  if (total > 0) { bar.max = total; bar.value = Math.min(done, total); }
  else if (d.state === "running") { bar.removeAttribute("value"); }  // size unknown yet
  else { bar.max = 1; bar.value = d.state === "success" ? 1 : 0; }
  bar.className = d.state === "failure" ? "failed" : d.state === "success" ? "done" : "";
  $("download-bytes").textContent = d.bytes_done === undefined ? ""
    : `${bytes(done)} of ${total ? bytes(total) : "?"}` +
      (total ? ` (${Math.floor((100 * done) / total)}%)` : "");
  const running = d.state === "running";
  $("download-speed").textContent = running && d.speed ? `${bytes(d.speed)}/s` : "";
  $("download-eta").textContent = running && d.speed && total
    ? `ETA ${duration((total - done) / d.speed)}` : "";
}

// --- jobs --------------------------------------------------------------------------------

let jobsShown = JOBS_PAGE;
// what the jobs this page started were for (an update and a validation share one
// description); kept for the browser tab's life
const started = JSON.parse(sessionStorage.getItem("swdepot-jobs") || "{}");

function remember(uuid, label) {
  started[uuid] = label;
  sessionStorage.setItem("swdepot-jobs", JSON.stringify(started));
}

function jobLabel(j) {
  if (started[j.uuid]) return started[j.uuid];
  const d = j.description || "";
  if (d === "POST /api/cluster/software/download") return `Download ${j.target || ""}`;
  if (d === "POST /api/cluster/software/upload") return `Upload ${j.target || ""}`;
  if (d.startsWith("DELETE /api/cluster/software/packages/")) {
    return `Delete package ${j.target || d.slice(38)}`;
  }
  if (d === "PATCH /api/cluster/software") return "Software update request";
  return d;
}

function jobSeconds(j) {
  if (!j.start_time) return null;
  const end = j.end_time ? Date.parse(j.end_time) : Date.now();
  return (end - Date.parse(j.start_time)) / 1000;
}

async function loadJobs() {
  const body = await api("GET", "/api/cluster/jobs?fields=*");
  // the API lists jobs in the order they were created (start times have whole seconds)
  const all = (body.records || []).reverse();
  const filter = $("jobs-state").value;
  const jobs = filter ? all.filter((j) => j.state === filter) : all;
  const tbody = $("jobs").tBodies[0];
  tbody.replaceChildren();
  for (const j of jobs.slice(0, jobsShown)) {
    const row = tbody.insertRow();
    row.dataset.uuid = j.uuid;
    cell(row, when(j.start_time));
    cell(row, jobLabel(j), "wrap").title = j.description;
    cell(row, j.node && j.node.name);
    const seconds = jobSeconds(j);
    cell(row, seconds === null ? null : duration(seconds), "num");
    cell(row, j.state, `state-${j.state}`);
    cell(row, j.state === "failure" ? `${j.message} (code ${j.code})` : j.message, "wrap");
  }
  $("jobs-empty").hidden = jobs.length > 0;
  $("jobs-more").hidden = jobs.length <= jobsShown;
  $("jobs-summary").textContent = jobs.length > jobsShown
    ? `${jobsShown} of ${jobs.length}` : jobs.length ? `${jobs.length}` : "";
  return all;
}

// --- actions -----------------------------------------------------------------------------

let pending = 0;  // requests of this page under way (update form buttons wait for them)

async function waitJob(uuid) {
  for (;;) {
    const job = await api("GET", `/api/cluster/jobs/${encodeURIComponent(uuid)}`);
    if (job.state === "success" || job.state === "failure") return job;
    await new Promise((r) => setTimeout(r, 300));
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
  let job;
  try {
    ({ job } = await api("POST", "/api/cluster/software/download", body));
  } catch (e) {
    const d = await api("GET", "/api/cluster/software/download").catch(() => ({}));
    downloadRefusal = { message: e.message, job: d.job ? d.job.uuid : undefined };
    notify(e.message, true);
    await loadDownload().catch(() => {});
    return;
  }
  downloadRefusal = null;
  remember(job.uuid, `Download ${body.url.split(/[?#]/)[0]}`);
  notify("Package download in progress.", false);
  await refresh();
  try {
    await report(await waitJob(job.uuid), "Package download completed.");
  } catch (e) {
    notify(e.message, true);
  }
}

async function cancelDownload() {
  if (!downloadJob) return;
  const b = $("download-cancel");
  b.disabled = true;
  try {
    await api("PATCH", `/api/cluster/jobs/${encodeURIComponent(downloadJob)}?action=cancel`);
    notify("Canceling the download…", false);
  } catch (e) {
    notify(e.message, true);
  } finally {
    b.disabled = false;
  }
}

function uploadFile(event) {
  event.preventDefault();
  const form = event.target;
  const file = form.file.files[0];
  if (!file) return;
  const submit = form.querySelector("button[type=submit]");
  submit.disabled = true;
  const bar = $("upload-progress");
  bar.hidden = false;
  bar.max = file.size || 1;
  bar.value = 0;
  const done = () => { bar.hidden = true; submit.disabled = false; };
  const data = new FormData();
  data.append("file", file, file.name);
  const xhr = new XMLHttpRequest();  // fetch() cannot report upload progress
  xhr.open("POST", url("/api/cluster/software/upload"));
  xhr.setRequestHeader("accept", "application/json");
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) { bar.max = e.total; bar.value = e.loaded; } };
  xhr.onerror = () => { notify("The upload was interrupted.", true); done(); };
  xhr.onload = async () => {
    const response = new Response(xhr.responseText, { status: xhr.status });
    try {
      const { job } = await decode(response);
      remember(job.uuid, `Upload ${file.name}`);
      notify(`Uploaded ${file.name}; processing.`, false);
      await report(await waitJob(job.uuid), "Package upload completed.");
    } catch (e) {
      notify(e.status === 404 && e.code == 3
        ? "This service does not offer uploads (API not found)." : e.message, true);
    } finally {
      done();
    }
  };
  xhr.send(data);
}

async function deletePackage(version, b) {
  if (!window.confirm(`Delete package ${version} from the repository?`)) return;
  b.disabled = true;
  try {
    const { job } = await api("DELETE",
      `/api/cluster/software/packages/${encodeURIComponent(version)}`);
    remember(job.uuid, `Delete package ${version}`);
    await report(await waitJob(job.uuid), `Package ${version} deleted.`);
  } catch (e) {
    notify(e.message, true);
    b.disabled = false;
  }
}

// The update, as System Manager runs it: validate, update (with or without the
// warnings), then pause, resume or cancel; every request answers with a job.
async function softwareJob(query, body, label, success) {
  pending++;
  renderUpdateForm();
  try {
    const { job } = await api("PATCH", `/api/cluster/software${query}`, body);
    remember(job.uuid, label);
    const done = await waitJob(job.uuid);
    await report(done, success);
    return done;
  } catch (e) {
    notify(e.message, true);
    return null;
  } finally {
    pending--;
    renderUpdateForm();
  }
}

async function validate() {
  const version = $("update-version").value;
  if (!version) return;
  const job = await softwareJob("?validate_only=true", { version }, `Validate ${version}`,
    `Validation of ${version} finished.`);
  if (job && job.state === "success" && software && software.validation_results) {
    const results = software.validation_results;
    const bad = results.filter((r) => r.status !== "ok").length;
    notify(bad ? `Validation of ${version}: ${$("validation-summary").textContent}; see ` +
      "the checks below." : `Validation of ${version}: every check passed.`, false);
  }
}

async function update(event) {
  event.preventDefault();
  const version = $("update-version").value;
  if (!version) return;
  const skip = $("skip-warnings").checked;
  if (!window.confirm(`Update the cluster to ${version}` +
    `${skip ? ", ignoring warnings" : ""}? Every node is updated in turn.`)) return;
  await softwareJob(skip ? "?skip_warnings=true" : "", { version },
    `Update to ${version}${skip ? " (warnings skipped)" : ""}`,
    `Update to ${version} started.`);
}

function updateAction(action, question, label, success) {
  return async () => {
    if (question && !window.confirm(question)) return;
    await softwareJob(`?action=${action}`, {}, label, success);
  };
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
    await loadSoftware();
  } catch (e) {
    notify(`Cannot read the service: ${e.message}`, true);
  }
}

async function start() {
  $("download-form").addEventListener("submit", startDownload);
  $("download-cancel").addEventListener("click", cancelDownload);
  $("upload-form").addEventListener("submit", uploadFile);
  $("update-form").addEventListener("submit", update);
  $("validate-button").addEventListener("click", validate);
  $("update-pause").addEventListener("click", updateAction("pause", null, "Pause the update",
    "Pausing the update after the step under way."));
  $("update-resume").addEventListener("click", updateAction("resume", null,
    "Resume the update", "Update resumed."));
  $("update-cancel").addEventListener("click", updateAction("cancel",
    "Cancel the update? Nodes already updated stay updated.", "Cancel the update",
    "Canceling the update."));
  $("jobs-state").addEventListener("change", () => { jobsShown = JOBS_PAGE; refresh(); });
  $("jobs-more").addEventListener("click", () => { jobsShown += JOBS_PAGE; refresh(); });
  try {
    await loadSession();
    await loadCluster();
  } catch (e) {
    notify(e.message, true);
  }
  await refresh();
  setInterval(refresh, POLL_MS);
}

start();
