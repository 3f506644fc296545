// The job browser: a filtered, paged list (#/jobs?status=&type=&batch=&after=), a job's page
// (#/job/ID) and a batch's page (#/batch/ID), each action asking first. Then the router.

function listQuery(p) {
  const q = new URLSearchParams();
  for (const k of ["status", "type", "batch", "after", "limit"]) if (p.get(k)) q.set(k, p.get(k));
  return q;
}

async function showJobs(p) {
  $("f-status").value = p.get("status") || "";
  $("f-type").value = p.get("type") || "";
  $("f-batch").value = p.get("batch") || "";
  $("f-limit").value = p.get("limit") || "50";
  const q = listQuery(p);
  if (!q.get("limit")) q.set("limit", "50");
  const tb = $("job-rows");
  let page;
  try {
    page = await api("jobs?" + q.toString());
  } catch (e) {
    if (!(e instanceof NeedToken)) emptyRow(tb, 7, "Cannot list jobs: " + e.message);
    return;
  }
  if (!page.jobs.length) emptyRow(tb, 7, "no jobs match");
  else tb.replaceChildren(...page.jobs.map((j) => {
    const err = (j.last_error || "").split("\n")[0];
    const tr = row([
      (() => { const td = el("td", null, "mono"); td.appendChild(link(j.id, "#/job/" + j.id)); return td; })(),
      el("td", j.type, "mono"),
      (() => { const td = el("td"); td.appendChild(badge(j.status)); return td; })(),
      el("td", j.attempts + "/" + j.max_attempts, "num"),
      (() => { const td = el("td", null, "mono"); if (j.batch_id) td.appendChild(link(j.batch_id.slice(0, 8) + "…", "#/batch/" + j.batch_id)); return td; })(),
      el("td", when(j.created_at)),
      el("td", err.length > 160 ? err.slice(0, 160) + "…" : err, "err"),
    ]);
    tr.dataset.job = j.id; tr.dataset.status = j.status;
    return tr;
  }));
  const next = $("page-next");
  next.disabled = !page.next;
  next.onclick = () => { const n = listQuery(p); n.set("after", page.next); location.hash = "#/jobs?" + n; };
  $("page-first").disabled = !p.get("after");
  $("page-first").onclick = () => { const n = listQuery(p); n.delete("after"); location.hash = "#/jobs?" + n; };
  $("page-info").textContent = page.jobs.length + " shown" + (page.next ? ", more after" : "");
  document.body.dataset.jobsQuery = q.toString();
}

function field(dl, name, value, node) {
  const dd = el("dd", node ? null : value);
  if (node) dd.appendChild(node);
  dd.dataset.field = name;
  dl.append(el("dt", name.replace("_", " ")), dd);
}

async function showJob(id) {
  let j;
  try {
    j = await api("jobs/" + encodeURIComponent(id));
  } catch (e) {
    if (!(e instanceof NeedToken)) flash("Cannot load job " + id + ": " + e.message, true);
    $("job-fields").replaceChildren(); $("attempts").replaceChildren();
    return;
  }
  const dl = $("job-fields");
  dl.replaceChildren();
  field(dl, "id", j.id);
  field(dl, "type", j.type);
  field(dl, "status", null, badge(j.status));
  field(dl, "attempts", j.attempts + " of " + j.max_attempts);
  field(dl, "priority", j.priority);
  field(dl, "batch", null, j.batch_id ? link(j.batch_id, "#/batch/" + j.batch_id) : el("span", "–"));
  field(dl, "created", when(j.created_at));
  field(dl, "run_at", when(j.run_at));
  field(dl, "updated", when(j.updated_at));
  field(dl, "finished", when(j.finished_at));
  field(dl, "node", j.node_id || "–");
  field(dl, "last_error", null, el("pre", j.last_error || "–"));
  $("job-target").textContent = JSON.stringify(j.target, null, 2);
  const tb = $("attempts");
  if (!j.attempt_history.length) emptyRow(tb, 6, "no failed attempts");
  else tb.replaceChildren(...j.attempt_history.map((a) => {
    const err = el("td", null, "err"); err.appendChild(el("pre", a.error));
    const tr = row([el("td", a.attempt, "num"), el("td", when(a.at)), el("td", a.node || "–", "mono"),
      el("td", a.took_ms == null ? "unknown" : a.took_ms + " ms", "num"), el("td", a.outcome), err]);
    tr.dataset.attempt = a.attempt;
    return tr;
  }));
  const retry = $("job-retry"), cancel = $("job-cancel");
  retry.disabled = !(j.status === "failed" || j.status === "cancelled");
  cancel.disabled = j.status !== "pending";
  retry.onclick = () => act("Retry job " + j.id + "? It goes back to pending with fresh attempts.",
    "Retry", "jobs/" + j.id + "/retry", "Job " + j.id + " is pending again.", () => showJob(j.id));
  cancel.onclick = () => act("Cancel job " + j.id + "? It will not run (unless retried).",
    "Cancel job", "jobs/" + j.id + "/cancel", "Job " + j.id + " is cancelled.", () => showJob(j.id));
  document.body.dataset.job = j.id;
  document.body.dataset.jobStatus = j.status;
}

/** Confirms, posts, reports, refreshes. */
async function act(question, okLabel, path, done, refresh, body) {
  if (!(await confirmFirst(question, okLabel))) return;
  try {
    const r = body ? await bulk(path, body) : await api(path, "POST");
    flash(typeof done === "function" ? done(r) : done);
  } catch (e) {
    if (!(e instanceof NeedToken)) flash(e.message, true);
  }
  await refresh();
}

async function showBatch(id) {
  let b;
  try {
    b = await api("batches/" + encodeURIComponent(id));
  } catch (e) {
    if (!(e instanceof NeedToken)) flash("Cannot load batch " + id + ": " + e.message, true);
    $("batch-fields").replaceChildren();
    return;
  }
  const dl = $("batch-fields");
  dl.replaceChildren();
  field(dl, "id", b.id);
  field(dl, "name", b.name || "(unnamed)");
  field(dl, "type", b.type);
  field(dl, "created", when(b.created_at));
  // The overview's progress cell, without the table cell around it.
  const progress = el("div"); progress.append(...bar(b).childNodes);
  field(dl, "progress", null, progress);
  for (const k of ["total", "succeeded", "failed", "cancelled", "pending"]) field(dl, k, b[k].toLocaleString("en-US"));
  const retry = $("batch-retry"), cancel = $("batch-cancel");
  retry.textContent = "Retry failed jobs (" + b.failed + ")";
  cancel.textContent = "Cancel pending jobs (" + b.pending + ")";
  retry.disabled = b.failed === 0;
  cancel.disabled = b.pending === 0;
  retry.onclick = () => act("Retry the " + b.failed + " failed jobs of this batch?", "Retry them", "retry",
    (n) => n + " jobs retried.", () => showBatch(b.id), { batch: b.id, status: "failed" });
  cancel.onclick = () => act("Cancel the pending jobs of this batch? Jobs running right now finish.",
    "Cancel them", "cancel", (n) => n + " jobs cancelled.", () => showBatch(b.id), { batch: b.id });
  $("batch-jobs").href = "#/jobs?batch=" + b.id;
  document.body.dataset.batch = b.id;
}

let timer = null;

/** Shows the view the address names. */
function route() {
  const h = location.hash.replace(/^#\/?/, "");
  const [path, query] = h.split("?");
  const parts = path.split("/");
  let view = "overview";
  if (parts[0] === "jobs") view = "jobs";
  else if (parts[0] === "job" && UUID.test(parts[1] || "")) view = "job";
  else if (parts[0] === "batch" && UUID.test(parts[1] || "")) view = "batch";
  for (const v of ["overview", "jobs", "job", "batch"]) $("view-" + v).classList.toggle("on", v === view);
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("on", a.dataset.nav === view);
  document.body.dataset.view = view;
  clearInterval(timer); timer = null;
  if (view === "overview") { poll(); timer = setInterval(poll, POLL_MS); }
  else if (view === "jobs") showJobs(new URLSearchParams(query || ""));
  else if (view === "job") showJob(parts[1].toLowerCase());
  else showBatch(parts[1].toLowerCase());
}

$("filters").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const q = new URLSearchParams();
  const set = (k, v) => { v = v.trim(); if (v) q.set(k, v); };
  set("status", $("f-status").value); set("type", $("f-type").value);
  set("batch", $("f-batch").value); set("limit", $("f-limit").value);
  location.hash = "#/jobs?" + q;
});
$("jump").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const id = $("jump-id").value.trim();
  if (!UUID.test(id)) { flash("A job id looks like 0190f0a8-…: 36 characters", true); return; }
  location.hash = "#/job/" + id.toLowerCase();
});
$("auth-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const t = $("token").value.trim();
  if (t) localStorage.setItem(KEY, t);
  $("token").value = "";
  route();
});
$("forget").addEventListener("click", () => { localStorage.removeItem(KEY); route(); });
window.addEventListener("hashchange", () => { flash(""); route(); });

// A token can also arrive in the URL fragment (#token=…), which never reaches the server or
// its logs; it is moved to localStorage and removed from the address bar.
const m = location.hash.match(/token=([^&]+)/);
if (m) { localStorage.setItem(KEY, decodeURIComponent(m[1])); history.replaceState(null, "", location.pathname); }
route();
