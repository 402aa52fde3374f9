// The operators' console: polls the admin API, follows one job's live events by long polling.
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("admin-token") || "";
let followed = null; // { id, next, generation }
let generation = 0;
let overviewTimer = null;

function api(path, options = {}) {
  return fetch(path, { ...options, headers: { ...(options.headers || {}), Authorization: `Bearer ${token}` } });
}

function showError(text) { $("error").textContent = text; $("error").hidden = !text; }

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  row.appendChild(td);
  return td;
}

function button(label, name, onClick, cls = "") {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.setAttribute("aria-label", name);
  if (cls) b.className = cls;
  b.addEventListener("click", onClick);
  return b;
}

function duration(s) {
  if (s < 60) return `${Math.round(s)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

async function refresh() {
  let response;
  try {
    response = await api("/console/api/overview");
  } catch {
    $("load").textContent = "service unreachable";
    return;
  }
  if (response.status === 401 || response.status === 404) {
    signedOut(response.status === 404 ? "The console is off: the service has no admin token." : "Wrong admin token.");
    return;
  }
  if (!response.ok) return;
  const o = await response.json();
  $("sign-in").hidden = true;
  for (const id of ["live", "handoffs", "finished"]) $(id).hidden = false;
  $("load").textContent = `${o.active_jobs} of ${o.max_jobs} job slots in use on ${o.replica}` +
    `${o.draining ? " (draining)" : ""} · showing ${o.scope} (registry: ${o.registry})`;
  renderJobs(o.jobs);
  renderHandoffs(o.handoffs);
}

function renderJobs(jobs) {
  const live = $("live-jobs");
  const finished = $("finished-jobs");
  live.replaceChildren();
  finished.replaceChildren();
  let liveCount = 0;
  let finishedCount = 0;
  for (const job of jobs) {
    const row = document.createElement("tr");
    row.dataset.job = job.job_id;
    if (followed && followed.id === job.job_id) row.className = "selected";
    const ended = ["completed", "failed", "cancelled"].includes(job.state);
    cell(row, job.job_id);
    cell(row, job.state + (job.detail ? ` (${job.detail})` : ""));
    cell(row, job.source);
    cell(row, job.room);
    cell(row, duration(job.duration_s));
    if (ended) {
      cell(row, job.reason);
      const actions = cell(row, "");
      actions.append(
        button("Record", `Show the record of job ${job.job_id}`, () => follow(job.job_id)),
        " ",
        button("Download", `Download the record of job ${job.job_id}`, () => download(job.job_id)),
      );
      finished.appendChild(row);
      finishedCount++;
    } else {
      cell(row, String(job.live_events));
      const actions = cell(row, "");
      actions.append(
        button("Follow", `Follow job ${job.job_id}`, () => follow(job.job_id)),
        " ",
        button("Cancel", `Cancel job ${job.job_id}`, () => cancel(job.job_id), "danger"),
      );
      live.appendChild(row);
      liveCount++;
    }
  }
  $("live-empty").hidden = liveCount > 0;
  $("finished-empty").hidden = finishedCount > 0;
}

function renderHandoffs(handoffs) {
  const rows = $("handoff-rows");
  rows.replaceChildren();
  let waiting = 0;
  for (const h of handoffs) {
    const row = document.createElement("tr");
    cell(row, h.job_id);
    cell(row, h.timestamp ? new Date(h.timestamp).toLocaleTimeString() : "");
    cell(row, h.reason);
    cell(row, h.summary);
    const actions = cell(row, "");
    actions.append(button("Open", `Open job ${h.job_id}`, () => follow(h.job_id)), " ");
    if (h.handled_at) {
      actions.append("handled");
      row.className = "muted";
    } else {
      waiting++;
      actions.append(button("Mark handled", `Mark the handoff of job ${h.job_id} handled`, () => handled(h.job_id)));
    }
    rows.appendChild(row);
  }
  $("handoffs-empty").hidden = handoffs.length > 0;
  $("handoffs-heading").textContent = `Handoff queue (${waiting} waiting)`;
}

async function cancel(id) {
  const response = await api(`/jobs/${encodeURIComponent(id)}`, { method: "DELETE" });
  if (!response.ok && response.status !== 409) showError(`Could not cancel ${id}: ${response.status}`);
  refresh();
}

async function handled(id) {
  await api(`/console/api/jobs/${encodeURIComponent(id)}/handoff/handled`, { method: "POST" });
  refresh();
}

async function download(id) {
  const response = await api(`/console/api/jobs/${encodeURIComponent(id)}/artifact`);
  if (!response.ok) { showError(`Could not download ${id}: ${response.status}`); return; }
  const url = URL.createObjectURL(await response.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = `${id}.json`;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// --- one job: live events while it runs, its record once it ended -----------------------------

function resetFollow(id) {
  $("follow").hidden = $("follow-side").hidden = false;
  $("follow-heading").textContent = `Job ${id}`;
  $("follow-transcript").replaceChildren();
  $("follow-todo").replaceChildren();
  $("follow-handoff").hidden = true;
  $("follow-record").textContent = "";
  $("follow-status").textContent = "";
  $("follow-reason").textContent = "";
}

async function follow(id) {
  generation++;
  followed = { id, next: 0, generation, lines: new Map() };
  resetFollow(id);
  refresh();
  const mine = followed;
  while (followed === mine) {
    let page;
    try {
      const r = await api(`/console/api/jobs/${encodeURIComponent(id)}/events?after=${mine.next}&wait=20`);
      if (!r.ok) break;
      page = await r.json();
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 2000));
      continue;
    }
    if (followed !== mine) return;
    $("follow-state").textContent = page.state;
    for (const event of page.events) showEvent(mine, event);
    mine.next = page.next;
    if (page.closed) break;
  }
  if (followed === mine) await showRecord(mine);
}

function transcriptLine(mine, key, who, time, text, final) {
  let li = key ? mine.lines.get(key) : null;
  if (!li) {
    li = document.createElement("li");
    li.innerHTML = '<time></time><span class="who"></span><span class="text"></span>';
    if (key) mine.lines.set(key, li);
    $("follow-transcript").appendChild(li);
  }
  li.className = final ? "final" : "interim";
  li.querySelector("time").textContent = time ? new Date(time).toLocaleTimeString() : "";
  li.querySelector(".who").textContent = `${who}:`;
  li.querySelector(".text").textContent = text;
}

function showTodo(items) {
  const list = $("follow-todo");
  list.replaceChildren();
  const marks = { pending: "○", in_progress: "◐", completed: "✓" };
  for (const item of items) {
    const li = document.createElement("li");
    li.className = item.status;
    li.dataset.id = item.id;
    li.dataset.status = item.status;
    li.innerHTML = '<span class="mark" aria-hidden="true"></span><span class="desc"></span> <span class="pill"></span>';
    li.querySelector(".mark").textContent = marks[item.status] || "?";
    li.querySelector(".desc").textContent = item.description;
    li.querySelector(".pill").textContent = item.status.replace("_", " ");
    list.appendChild(li);
  }
}

function showEvent(mine, event) {
  const d = event.data;
  switch (event.type) {
    case "transcript_chunk": {
      const typedKey = `typed:${d.participant_id}:${d.text}`;
      if (d.is_final && mine.lines.has(typedKey)) { // the pipeline's echo of a typed message
        mine.lines.set(d.transcript_id, mine.lines.get(typedKey));
        mine.lines.delete(typedKey);
        break;
      }
      transcriptLine(mine, d.transcript_id, d.participant_id, d.timestamp, d.text, d.is_final);
      break;
    }
    case "user_text":
      transcriptLine(mine, `typed:${d.participant_id}:${d.text}`, `${d.participant_id} (typed)`,
        d.timestamp, d.text, true);
      break;
    case "agent_status":
      $("follow-status").textContent = d.status;
      $("follow-status").className = `pill ${d.status}`;
      break;
    case "todo_list":
      showTodo(d.items);
      break;
    case "handoff":
      $("follow-handoff").hidden = false;
      $("follow-handoff").textContent = `Handoff: ${d.reason} ${d.summary}`;
      break;
    default:
      break;
  }
}

async function showRecord(mine) {
  const r = await api(`/jobs/${encodeURIComponent(mine.id)}`);
  if (!r.ok || followed !== mine) return;
  const job = await r.json();
  const record = job.record || {};
  $("follow-state").textContent = job.state;
  $("follow-reason").textContent = job.reason ? `ended: ${job.reason}` : "";
  $("follow-status").textContent = "gone";
  $("follow-status").className = "pill";
  if (Array.isArray(record.transcript)) {
    $("follow-transcript").replaceChildren();
    mine.lines.clear();
    let previous = null;
    for (const entry of record.transcript) {
      const same = previous && previous.source === "text" && entry.role === "user" &&
        entry.participant_id === previous.participant_id && entry.text === previous.text;
      previous = entry;
      if (same) continue; // a typed message, and the pipeline's transcript of it
      const typed = entry.source === "text" ? " (typed)" : "";
      transcriptLine(mine, null, `${entry.participant_id}${typed}`, entry.timestamp, entry.text, true);
    }
  }
  if (Array.isArray(record.todo_list)) showTodo(record.todo_list);
  if (record.handoff) {
    $("follow-handoff").hidden = false;
    $("follow-handoff").textContent = `Handoff: ${record.handoff.reason} ${record.handoff.summary}`;
  }
  $("follow-record").textContent = JSON.stringify(
    { end_reason: record.end_reason, timings: record.timings, metrics: record.metrics, counters: record.counters },
    null, 2);
  refresh();
}

function signedOut(message) {
  $("sign-in").hidden = false;
  for (const id of ["live", "handoffs", "finished", "follow", "follow-side"]) $(id).hidden = true;
  $("load").textContent = "not signed in";
  if (message && token) showError(message);
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("admin-token").value.trim();
  sessionStorage.setItem("admin-token", token);
  showError("");
  refresh();
});

if (token) refresh();
overviewTimer = setInterval(() => { if (token && document.visibilityState !== "hidden") refresh(); }, 2000);
window.addEventListener("beforeunload", () => clearInterval(overviewTimer));
