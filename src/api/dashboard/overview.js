// The overview: the status report, polled while it is on screen.
const POLL_MS = 2000;

// What each table last showed. A table is rebuilt only when its data changed, so that a
// click on a link is never lost to a poll replacing the row under the pointer.
const shown = {};
function changed(id, data) {
  const sig = JSON.stringify(data);
  if (shown[id] === sig) return false;
  shown[id] = sig;
  return true;
}

function renderTotals(r) {
  const t = { pending: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 };
  for (const x of r.types) for (const k in t) t[k] += x[k];
  for (const k in t) $("t-" + k).textContent = t[k].toLocaleString("en-US");
  $("t-queue").textContent = r.queue_depth == null ? "?" : r.queue_depth.toLocaleString("en-US");
  $("t-live").textContent = r.throughput.last_10s_per_sec.toFixed(1);
  $("t-rate").textContent = r.throughput.last_minute_per_sec.toFixed(1);
}

function renderTypes(r) {
  const tb = $("types");
  if (!changed("types", r.types)) return;
  if (!r.types.length) return emptyRow(tb, 6, "no jobs yet");
  tb.replaceChildren(...r.types.map((t) => {
    const tr = row([el("td", t.type, "mono"), num(t.pending), num(t.running), num(t.succeeded), num(t.failed), num(t.cancelled)]);
    tr.dataset.type = t.type;
    return tr;
  }));
}

function bar(b) {
  const wrap = el("div", null, "bar");
  const pct = (n) => (b.total ? (100 * n) / b.total : 0) + "%";
  for (const [k, c] of [["succeeded", "s"], ["failed", "f"], ["cancelled", "c"]]) {
    const s = el("span", null, c); s.style.width = pct(b[k]); s.title = k + ": " + b[k]; wrap.appendChild(s);
  }
  const td = el("td"); td.appendChild(wrap);
  td.appendChild(el("div", Math.round(b.progress * 100) + "% done", "empty"));
  return td;
}

function renderBatches(r) {
  const tb = $("batches");
  if (!changed("batches", r.batches)) return;
  if (!r.batches.length) return emptyRow(tb, 7, "no batches yet");
  tb.replaceChildren(...r.batches.map((b) => {
    const name = el("td");
    const d = el("div"); d.appendChild(link(b.name || "(unnamed)", "#/batch/" + b.id));
    name.appendChild(d);
    name.appendChild(el("div", b.id, "mono empty"));
    const tr = row([name, el("td", b.type, "mono"), bar(b), num(b.succeeded), num(b.failed), num(b.pending), num(b.total)]);
    tr.dataset.batch = b.id;
    tr.dataset.succeeded = b.succeeded;
    tr.dataset.failed = b.failed;
    tr.dataset.pending = b.pending;
    tr.dataset.total = b.total;
    return tr;
  }));
}

// Pending jobs no live node can run: a queue nobody serves, or a type nobody has a
// processor for. They wait, uncharged; this says which and for how long.
function renderUnrunnable(r) {
  const tb = $("unrunnable");
  const rows = r.unrunnable || [];
  if (!changed("unrunnable", rows)) return;
  if (!rows.length) return emptyRow(tb, 5, "every pending job has a node that can run it");
  tb.replaceChildren(...rows.map((u) => {
    const why = !u.type_known ? "no node has a processor for the type"
      : !u.queue_served ? "no node serves the queue"
      : "no node serving the queue has a processor for the type";
    const tr = row([el("td", u.queue, "mono"), el("td", u.type, "mono"), num(u.pending),
      el("td", Math.round(u.waiting_secs).toLocaleString("en-US") + " s", "num"), el("td", why)]);
    tr.dataset.queue = u.queue;
    tr.dataset.type = u.type;
    return tr;
  }));
}

function renderNodes(r) {
  const tb = $("nodes");
  if (!r.nodes.length) return emptyRow(tb, 8, "no live nodes");
  tb.replaceChildren(...r.nodes.map((n) => {
    const queues = Object.entries(n.queues || {}).map(([q, c]) => q + "=" + c).join(", ");
    const tr = row([el("td", n.id, "mono"), el("td", n.host), el("td", queues, "mono"), num(n.concurrency), num(n.in_flight),
      num(n.processed), num(n.failed), el("td", new Date(n.last_heartbeat).toLocaleTimeString())]);
    tr.dataset.node = n.id;
    return tr;
  }));
}

function renderCron(c) {
  const tb = $("cron");
  if (!changed("cron", c.entries.map((e) => [e.name, e.last_tick, e.next_tick]))) return;
  if (!c.entries.length) return emptyRow(tb, 7, "no cron entries");
  tb.replaceChildren(...c.entries.map((e) => row([el("td", e.name, "mono"), el("td", e.schedule, "mono"),
    el("td", e.timezone), el("td", e.type, "mono"), el("td", e.catch_up), el("td", when(e.last_tick)),
    el("td", when(e.next_tick))])));
}

function renderSpark(buckets) {
  const svg = $("spark"), ns = "http://www.w3.org/2000/svg";
  const w = 300, h = 90, max = Math.max(1, ...buckets);
  const step = buckets.length > 1 ? w / (buckets.length - 1) : w;
  const pts = buckets.map((v, i) => [i * step, h - 4 - (v / max) * (h - 10)]);
  const line = pts.map((p) => p[0].toFixed(1) + "," + p[1].toFixed(1)).join(" ");
  const area = document.createElementNS(ns, "polygon");
  area.setAttribute("points", "0," + h + " " + line + " " + w + "," + h);
  area.setAttribute("fill", "rgba(53,99,233,.15)");
  const pl = document.createElementNS(ns, "polyline");
  pl.setAttribute("points", line);
  pl.setAttribute("fill", "none");
  pl.setAttribute("stroke", "#3563e9");
  pl.setAttribute("stroke-width", "2");
  pl.setAttribute("vector-effect", "non-scaling-stroke");
  svg.replaceChildren(area, pl);
  $("spark-max").textContent = "peak " + max.toLocaleString("en-US") + " per 10 s";
}

async function poll() {
  try {
    const r = await api("status");
    $("error").textContent = "";
    renderTotals(r); renderTypes(r); renderBatches(r); renderUnrunnable(r); renderNodes(r);
    renderSpark(r.throughput.buckets_10s);
    setLive(true, "updated " + new Date(r.generated_at).toLocaleTimeString());
    document.body.dataset.loaded = "1";
    // The cron table on its own: a failure there must not hide the status above it.
    try { renderCron(await api("cron")); } catch (e) { if (!(e instanceof NeedToken)) emptyRow($("cron"), 7, "cannot load the cron entries"); }
  } catch (e) {
    if (e instanceof NeedToken) return;
    $("error").textContent = "Cannot load the status: " + e.message;
    setLive(false, "disconnected");
  }
}
