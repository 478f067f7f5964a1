// ispmon dashboard: plain JS over the daemon's REST API, live through /events (Server-Sent Events).
// No build step. Charts: the vendored uPlot. The token (when ISPMON_API_TOKEN is set) is kept in
// sessionStorage and sent as a bearer header; EventSource cannot send headers, so the stream is
// read with fetch.
"use strict";

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const STATUSES = ["up", "degraded", "down", "maintenance", "unknown"];
const COLOURS = {up: "#2f9e44", degraded: "#e8a317", down: "#e03131", maintenance: "#4263eb", unknown: "#adb5bd"};
const state = {endpoints: new Map(), cells: new Map(), selected: null, charts: []};

function token() { return sessionStorage.getItem("ispmon-token") || ""; }
function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (token()) h.Authorization = "Bearer " + token();
  return h;
}
function showError(text) { const e = $("error"); e.textContent = text; e.hidden = !text; }

async function api(path, options, started) {
  const opts = Object.assign({}, options || {});
  opts.headers = headers(opts.headers);
  const resp = await (started || fetch(path, opts));
  if (resp.status === 401 || resp.status === 403) {
    $("token-box").hidden = false;
    const body = await resp.json().catch(() => ({}));
    showError(body.message || "a token is needed");
    throw new Error("auth");
  }
  if (resp.status === 204) return null;
  const body = await resp.json().catch(() => null);
  if (!resp.ok) {
    const err = new Error((body && body.message) || resp.statusText);
    err.status = resp.status;
    err.body = body;
    throw err;
  }
  return body;
}
const iso = (d) => d.toISOString();
const hoursAgo = (h) => new Date(Date.now() - h * 3600e3);
function duration(seconds) {
  seconds = Math.max(0, Math.round(seconds));
  const d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600), m = Math.floor(seconds % 3600 / 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  return `${m}m ${seconds % 60}s`;
}
function table(head, rows) {
  if (!rows.length) return '<p class="muted">none</p>';
  return "<table><tr>" + head.map((h) => `<th>${esc(h)}</th>`).join("") + "</tr>" +
    rows.map((r) => "<tr>" + r.map((c) => `<td>${c}</td>`).join("") + "</tr>").join("") + "</table>";
}
function bytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

// -- the health grid ----------------------------------------------------------------------------------
function groupOf(e) { return e.tags.length ? e.tags[0] : "untagged"; }

function renderCounts() {
  const counts = {};
  for (const e of state.endpoints.values()) counts[e.status] = (counts[e.status] || 0) + 1;
  $("counts").innerHTML = STATUSES.filter((s) => counts[s])
    .map((s) => `<span class="cnt" data-status="${s}">${s.toUpperCase()} ${counts[s]}</span>`).join(" · ");
}

function cellTitle(e) {
  const rtt = e.response_time_ms == null ? "" : ` — ${e.response_time_ms.toFixed(1)} ms`;
  return `${e.name} (${e.id}) — ${e.status.toUpperCase()}${rtt}`;
}

function renderGrid() {
  const filter = $("grid-filter").value.trim().toLowerCase();
  const groups = new Map();
  for (const e of state.endpoints.values()) {
    if (filter && !e.name.toLowerCase().includes(filter) && !e.tags.some((t) => t.toLowerCase().includes(filter))) continue;
    const g = groupOf(e);
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push(e);
  }
  const parts = [];
  for (const g of [...groups.keys()].sort()) {
    const list = groups.get(g);
    const bad = list.filter((e) => e.status !== "up").length;
    parts.push(`<div class="group" data-group="${esc(g)}"><h3>${esc(g)} <span>${list.length} · ${bad} not up</span></h3><div class="cells">`);
    for (const e of list) {
      // No title here: it is set when the pointer comes (5,000 fewer attributes to build and parse).
      parts.push(`<div class="cell s-${e.status}" data-id="${esc(e.id)}" data-status="${e.status}">${esc(e.name)}</div>`);
    }
    parts.push("</div></div>");
  }
  const grid = $("grid");
  grid.innerHTML = parts.join("") || '<p class="muted">no endpoints</p>';
  state.cells.clear();
  for (const el of grid.querySelectorAll(".cell")) state.cells.set(el.dataset.id, el);
  grid.setAttribute("aria-busy", "false");
  renderCounts();
}

async function loadGrid() {
  // The first time, the request index.html started before this script loaded.
  const early = window.__gridFetch;
  window.__gridFetch = null;
  const data = await api("/dashboard/grid", null, early);
  if (!window.__gridFetchMs) window.__gridFetchMs = performance.now();
  state.endpoints = new Map(data.endpoints.map((e) => [e.id, e]));
  renderGrid();
  if (!window.__gridMs) {
    window.__gridMs = performance.now();
    document.body.dataset.gridReady = "1";
  }
}

function renderGroupCounts() {
  for (const group of $("grid").querySelectorAll(".group")) {
    const cells = group.querySelectorAll(".cell");
    const bad = group.querySelectorAll('.cell:not([data-status="up"])').length;
    group.querySelector("h3 span").textContent = `${cells.length} · ${bad} not up`;
  }
}

function applyChanges(changes) {
  let regroup = false;
  for (const c of changes) {
    const e = state.endpoints.get(c.id);
    if (!e) { regroup = true; continue; }  // created since the grid was loaded
    e.status = c.status;
    if (c.response_time_ms != null) e.response_time_ms = c.response_time_ms;
    const el = state.cells.get(c.id);
    if (el) {
      el.className = `cell s-${c.status}` + (state.selected === c.id ? " sel" : "");
      el.dataset.status = c.status;
      if (el.title) el.title = cellTitle(e);
    }
    if (state.selected === c.id) loadDetail(c.id);
  }
  if (regroup) loadGrid().catch(() => {});
  else { renderCounts(); renderGroupCounts(); }
}

// -- one endpoint: response times, status timeline, latency and loss ---------------------------------
// uPlot is loaded on the first chart: the grid, which most loads are for, needs none.
let uplotLoading = null;
function loadUPlot() {
  if (!uplotLoading) {
    uplotLoading = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = "/static/vendor/uplot/uPlot.iife.min.js";
      script.onload = resolve;
      script.onerror = reject;
      document.head.appendChild(script);
    });
  }
  return uplotLoading;
}

async function chart(el, title, labels, xs, ys, kind) {
  await loadUPlot();
  const width = Math.max(300, el.clientWidth || 600);
  const series = [{}].concat(labels.map((label, i) => {
    const colour = COLOURS[label] || ["#1c7ed6", "#e8590c", "#2b8a3e", "#862e9c", "#c2255c"][i % 5];
    const s = {label, stroke: colour, width: 1.5};
    if (kind === "area" || kind === "bar") s.fill = colour + "55";
    if (kind === "bar" && uPlot.paths && uPlot.paths.bars) s.paths = uPlot.paths.bars({size: [0.8, 40]});
    return s;
  }));
  const plot = new uPlot({title, width, height: 200, series}, [xs].concat(ys), el);
  state.charts.push(plot);
  return plot;
}

async function loadDetail(id) {
  const e = state.endpoints.get(id);
  if (!e) return;
  const section = $("detail-section");
  section.hidden = false;
  $("detail-title").textContent = `${e.name} — ${e.status.toUpperCase()}`;
  const hist = await api(`/services/${encodeURIComponent(id)}/history?since=${iso(hoursAgo(24))}&limit=1000`);
  const items = hist.items.slice().reverse();
  $("detail-timeline").innerHTML = items.map((h) =>
    `<i class="s-${h.status}" title="${esc(h.checked_at)} ${h.status}"></i>`).join("");
  const box = $("detail-chart");
  box.innerHTML = "";
  await chart(box, "Response time (ms), last 24 h", ["response ms"],
    items.map((h) => Date.parse(h.checked_at) / 1000), [items.map((h) => h.response_time_ms)], "line");
  const lat = $("detail-latency");
  lat.innerHTML = "";
  if (e.protocol === "icmp") {
    const l = await api(`/network/latency/${encodeURIComponent(id)}?since=${iso(hoursAgo(24))}&step=300`);
    await chart(lat, "Latency (median ms) and loss (%)", ["median ms", "loss %"],
      l.steps.map((s) => Date.parse(s.start) / 1000),
      [l.steps.map((s) => s.median_ms ?? null), l.steps.map((s) => s.loss_percent ?? null)], "line");
  }
}

// -- panels -------------------------------------------------------------------------------------------
async function loadOutages() {
  const data = await api("/outages/active");
  state.outages = data.items;
  renderOutages();
}
function renderOutages() {
  const now = Date.now();
  $("outages").innerHTML = table(["endpoint", "status", "severity", "for"], (state.outages || []).map((o) => [
    esc((state.endpoints.get(o.endpoint_id) || {name: o.endpoint_id}).name),
    `<span class="s-${esc(o.status)} cell">${esc(o.status)}</span>`, esc(o.severity),
    `<span class="dur" data-start="${esc(o.started_at)}">${duration((now - Date.parse(o.started_at)) / 1000)}</span>`,
  ]));
}

async function loadAlerts() {
  const data = await api("/alerts/?state=firing&limit=100");
  $("alerts").innerHTML = table(["alert", "severity", "since", ""], data.items.map((a) => [
    esc(a.title), esc(a.severity), esc(new Date(a.started_at).toLocaleString()),
    `<button class="ack" data-id="${a.id}" type="button">acknowledge</button>`,
  ]));
}

function weekOf(date) {
  const d = new Date(date);
  d.setUTCHours(0, 0, 0, 0);
  d.setUTCDate(d.getUTCDate() - ((d.getUTCDay() + 6) % 7));
  return d.toISOString().slice(0, 10);
}
async function loadTrends() {
  const data = await api(`/outages/?since=${iso(hoursAgo(90 * 24))}&limit=1000`);
  const byWeek = {}, byService = {}, bySeverity = {};
  for (const o of data.items) {
    const w = weekOf(o.started_at);
    byWeek[w] = (byWeek[w] || 0) + 1;
    byService[o.endpoint_id] = byService[o.endpoint_id] || {count: 0, seconds: 0};
    byService[o.endpoint_id].count++;
    byService[o.endpoint_id].seconds += o.duration_seconds || (Date.now() - Date.parse(o.started_at)) / 1000;
    bySeverity[o.severity] = (bySeverity[o.severity] || 0) + 1;
  }
  const max = Math.max(1, ...Object.values(byWeek));
  const weeks = Object.keys(byWeek).sort().map((w) => [esc(w), `<span class="bar" style="width:${120 * byWeek[w] / max}px"></span> ${byWeek[w]}`]);
  const services = Object.entries(byService).sort((a, b) => b[1].seconds - a[1].seconds).slice(0, 10)
    .map(([id, s]) => [esc((state.endpoints.get(id) || {name: id}).name), s.count, duration(s.seconds)]);
  const severities = Object.entries(bySeverity).map(([s, n]) => [esc(s), n]);
  $("trends").innerHTML = `<div style="display:flex;gap:24px;flex-wrap:wrap">
    <div><h3>By week</h3>${table(["week", "outages"], weeks)}</div>
    <div><h3>By service (downtime)</h3>${table(["service", "outages", "downtime"], services)}</div>
    <div><h3>By severity</h3>${table(["severity", "outages"], severities)}</div></div>
    <p class="muted">${data.items.length} outages${data.next_after ? " (first 1000)" : ""}</p>`;
}

async function loadMaintenance() {
  const data = await api("/maintenance/");
  const rows = data.items.map((w) => {
    const occ = w.current_occurrence || w.next_occurrence;
    const when = occ ? `${new Date(occ.start).toLocaleString()} – ${new Date(occ.end).toLocaleString()}` : "none ahead";
    return [esc(w.name), w.active ? "<b>now</b>" : "next", esc(when)];
  });
  $("maintenance").innerHTML = table(["window", "", "when"], rows);
}

async function loadNetwork() {
  const data = await api("/network/summary");
  const top = data.top_utilised.map((i) => [esc(i.device_id), esc(i.name),
    `<span class="bar" style="width:${Math.min(100, i.utilisation_pct)}px"></span> ${i.utilisation_pct.toFixed(1)} %`]);
  const down = data.interfaces_down.map((i) => [esc(i.device_id), esc(i.name || i.id)]);
  $("network").innerHTML = `<h3>Top interfaces</h3>${table(["device", "interface", "utilisation"], top)}
    <h3>Interfaces down</h3>${table(["device", "interface"], down)}`;
}

async function loadUsage() {
  const data = await api(`/usage/top?since=${iso(hoursAgo(24 * 30))}&until=${iso(new Date())}&limit=10`);
  // The quota of each: this period against it (the customer's own period, not the 30 days).
  const quotas = await Promise.all(data.items.map((c) =>
    api(`/customers/${encodeURIComponent(c.customer_id)}/usage/summary`).catch(() => null)));
  $("usage").innerHTML = table(["customer", "used (30 days)", "quota this period"], data.items.map((c, i) => {
    const q = quotas[i];
    const quota = !q || q.quota_bytes == null ? '<span class="muted">no quota</span>'
      : `<span class="bar" style="width:${Math.min(100, q.percent)}px"></span> ${q.percent.toFixed(0)} % of ${esc(bytes(q.quota_bytes))}`;
    return [esc(c.customer_id), esc(bytes(c.bytes_total)), quota];
  }));
}

function renderReports() {
  const since = iso(hoursAgo(24 * 30)), until = iso(new Date());
  const kinds = ["availability", "outages", "network", "usage", "alerts"];
  $("reports").innerHTML = table(["last 30 days", "", "", ""], kinds.map((k) => [esc(k)].concat(["pdf", "csv", "json"].map((f) =>
    `<a class="report" href="/reports/${k}?since=${encodeURIComponent(since)}&until=${encodeURIComponent(until)}&format=${f}" data-kind="${k}" data-format="${f}">${f}</a>`))));
}

// -- views -------------------------------------------------------------------------------------------
const STEP_S = {raw: 0, "5m": 300, "1h": 3600, "1d": 86400};
function bucketed(xs, ys, step) {
  if (!STEP_S[step]) return [xs, ys];
  const sums = new Map();
  xs.forEach((x, i) => {
    if (ys[i] == null) return;
    const b = Math.floor(x / STEP_S[step]) * STEP_S[step];
    const s = sums.get(b) || [0, 0];
    s[0] += ys[i]; s[1]++;
    sums.set(b, s);
  });
  const keys = [...sums.keys()].sort((a, b) => a - b);
  return [keys, keys.map((k) => sums.get(k)[0] / sums.get(k)[1])];
}

async function seriesData(view, s) {
  const since = iso(hoursAgo(view.range_hours)), until = iso(new Date());
  const label = s.label || s.target || s.source;
  if (s.source === "endpoint_response_time") {
    const h = await api(`/services/${encodeURIComponent(s.target)}/history?since=${since}&limit=1000`);
    const items = h.items.slice().reverse();
    const [xs, ys] = bucketed(items.map((i) => Date.parse(i.checked_at) / 1000), items.map((i) => i.response_time_ms), view.step);
    return [{label: label + " ms", xs, ys}];
  }
  if (s.source === "interface_rates") {
    const m = await api(`/interfaces/${encodeURIComponent(s.target)}/metrics?since=${since}&until=${until}&step=${view.step}`);
    const xs = m.items.map((i) => Date.parse(i.at) / 1000);
    const dirs = view.filters.direction ? [view.filters.direction] : ["in", "out"];
    return dirs.map((d) => ({label: `${label} ${d} bps`, xs, ys: m.items.map((i) => i[`${d}_bps`] ?? i[`${d}_bps_avg`] ?? null)}));
  }
  if (s.source === "customer_usage") {
    const step = view.step === "1d" ? "day" : "hour";
    const u = await api(`/customers/${encodeURIComponent(s.target)}/usage?since=${since}&until=${until}&step=${step}`);
    return [{label: label + " bytes", xs: u.items.map((i) => Date.parse(i.start) / 1000), ys: u.items.map((i) => i.bytes_total)}];
  }
  const params = new URLSearchParams({since, until, step: view.step});
  if (view.filters.tag) params.set("tag", view.filters.tag);
  if (view.filters.protocol) params.set("protocol", view.filters.protocol);
  const c = await api(`/dashboard/checks?${params}`);
  const xs = c.buckets.map((b) => Date.parse(b.start) / 1000);
  const wanted = view.filters.status ? [view.filters.status] : STATUSES;
  return wanted.map((st) => ({label: st, xs, ys: c.buckets.map((b) => b.counts[st] || 0)}));
}

async function drawView(view, el) {
  el.innerHTML = `<h3>${esc(view.name)} <span class="muted">${esc(view.kind)}, ${esc(view.step)}, ${view.range_hours} h</span></h3>`;
  let all = [];
  try {
    for (const s of view.series) all = all.concat(await seriesData(view, s));
  } catch (err) {
    el.insertAdjacentHTML("beforeend", `<p class="error">${esc(err.message)}</p>`);
    return;
  }
  // One x axis for every series: the union of their times, a gap where a series has no point.
  const xs = [...new Set(all.flatMap((s) => s.xs))].sort((a, b) => a - b);
  const ys = all.map((s) => { const m = new Map(s.xs.map((x, i) => [x, s.ys[i]])); return xs.map((x) => m.get(x) ?? null); });
  if (view.kind === "table") {
    el.insertAdjacentHTML("beforeend", table(["time"].concat(all.map((s) => s.label)),
      xs.map((x, i) => [esc(new Date(x * 1000).toISOString())].concat(ys.map((y) => y[i] == null ? "" : (+y[i]).toFixed(2))))));
    return;
  }
  const box = document.createElement("div");
  el.appendChild(box);
  await chart(box, "", all.map((s) => s.label), xs, ys, view.kind);
}

async function loadViews() {
  const data = await api("/views/?limit=1000");
  const pinned = $("pinned");
  pinned.innerHTML = "";
  for (const v of data.items.filter((x) => x.pinned)) {
    const el = document.createElement("div");
    el.className = "view";
    el.dataset.view = v.id;
    pinned.appendChild(el);
    drawView(v, el);
  }
  $("views-list").innerHTML = table(["view", "kind", "series", ""], data.items.map((v) => [
    esc(v.name), esc(v.kind), esc(v.series.map((s) => s.source + (s.target ? ":" + s.target : "")).join(", ")),
    `<button type="button" class="pin" data-id="${esc(v.id)}" data-pinned="${v.pinned}">${v.pinned ? "unpin" : "pin"}</button>
     <button type="button" class="del" data-id="${esc(v.id)}">delete</button>`,
  ]));
}

async function saveView(form) {
  const f = new FormData(form);
  const series = {source: f.get("source")};
  if (f.get("target")) series.target = f.get("target");
  const body = {name: f.get("name"), kind: f.get("kind"), step: f.get("step"),
    range_hours: Number(f.get("range_hours")), series: [series], pinned: f.get("pinned") === "on", filters: {}};
  if (f.get("tag")) body.filters.tag = f.get("tag");
  try {
    await api("/views/", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
    showError("");
    form.reset();
    await loadViews();
  } catch (err) {
    if (err.message !== "auth") {
      const fields = ((err.body && err.body.errors) || []).map((e) => `${e.field}: ${e.message}`).join("; ");
      showError(fields || err.message);
    }
  }
}

// -- live updates ------------------------------------------------------------------------------------
function setLive(on) { const el = $("live"); el.className = "live " + (on ? "on" : "off"); el.textContent = on ? "live" : "reconnecting"; }

function handleMessage(block) {
  let event = "message", data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event: ")) event = line.slice(7);
    else if (line.startsWith("data: ")) data += line.slice(6);
  }
  if (event === "status") {
    applyChanges(JSON.parse(data).changes);
  } else if (event === "outages") {
    loadOutages().catch(() => {});
    loadAlerts().catch(() => {});
    loadTrends().catch(() => {});
  }
}

async function stream() {
  const decoder = new TextDecoder();
  for (;;) {
    try {
      const resp = await fetch("/events", {headers: headers()});
      if (!resp.ok) throw new Error(String(resp.status));
      setLive(true);
      // A reconnect may have missed changes: take the grid again.
      if (window.__gridMs) { loadGrid().catch(() => {}); loadOutages().catch(() => {}); }
      const reader = resp.body.getReader();
      let buf = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buf += decoder.decode(value, {stream: true});
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) { handleMessage(buf.slice(0, i)); buf = buf.slice(i + 2); }
      }
    } catch (err) { /* reconnect below */ }
    setLive(false);
    await new Promise((r) => setTimeout(r, 2000));
  }
}

// -- wiring ------------------------------------------------------------------------------------------
function safe(fn) { return fn().catch((err) => { if (err.message !== "auth") console.warn(err); }); }

function loadAll() {
  // The grid first: the other panels' requests would compete with it for the daemon's time.
  safe(loadGrid).then(() => {
    safe(loadOutages); safe(loadTrends); safe(loadAlerts); safe(loadMaintenance);
    safe(loadNetwork); safe(loadUsage); safe(loadViews);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  renderReports();
  $("grid").addEventListener("click", (ev) => {
    const cell = ev.target.closest(".cell");
    if (!cell) return;
    if (state.selected && state.cells.get(state.selected)) state.cells.get(state.selected).classList.remove("sel");
    state.selected = cell.dataset.id;
    cell.classList.add("sel");
    safe(() => loadDetail(cell.dataset.id));
  });
  $("grid-filter").addEventListener("input", renderGrid);
  $("grid").addEventListener("mouseover", (ev) => {
    const cell = ev.target.closest(".cell");
    const e = cell && state.endpoints.get(cell.dataset.id);
    if (e) cell.title = cellTitle(e);
  });
  $("token-button").addEventListener("click", () => { $("token-box").hidden = !$("token-box").hidden; });
  $("token-save").addEventListener("click", () => {
    sessionStorage.setItem("ispmon-token", $("token").value.trim());
    $("token").value = "";
    showError("");
    $("token-box").hidden = true;
    loadAll();
  });
  $("view-form").addEventListener("submit", (ev) => { ev.preventDefault(); saveView(ev.target); });
  $("views-list").addEventListener("click", async (ev) => {
    const b = ev.target.closest("button");
    if (!b) return;
    try {
      if (b.classList.contains("del")) await api(`/views/${b.dataset.id}`, {method: "DELETE"});
      else await api(`/views/${b.dataset.id}`, {method: "PUT", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({pinned: b.dataset.pinned !== "true"})});
      await loadViews();
    } catch (err) { if (err.message !== "auth") showError(err.message); }
  });
  $("alerts").addEventListener("click", async (ev) => {
    const b = ev.target.closest("button.ack");
    if (!b) return;
    try {
      await api(`/alerts/${b.dataset.id}/acknowledge`, {method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({by: "dashboard"})});
      await loadAlerts();
    } catch (err) { if (err.message !== "auth") showError(err.message); }
  });
  setInterval(renderOutages, 1000);
  setInterval(() => { safe(loadNetwork); safe(loadUsage); safe(loadAlerts); }, 60000);
  loadAll();
  stream();
});
