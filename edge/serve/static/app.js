// The live page: the MJPEG stream in an <img>, and /api/stats + /api/misses polled.
// No framework, no build step, no CDN: the device may have no internet.
"use strict";

const token = new URLSearchParams(location.search).get("token");
const $ = (id) => document.getElementById(id);

function url(path, params) {
  const q = new URLSearchParams(params || {});
  if (token) q.set("token", token);
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

function fmt(v, digits) {
  return typeof v === "number" && isFinite(v) ? v.toFixed(digits) : "–";
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
}

// -- the stream ------------------------------------------------------------------------------
function startStream() {
  const img = $("stream");
  const dpr = window.devicePixelRatio || 1;
  const want = Math.round((img.clientWidth || 640) * dpr / 80) * 80;
  const width = Math.max(160, Math.min(1920, want));
  img.onerror = () => {
    $("stream-note").textContent = "stream unavailable (server busy or stopped); retrying…";
    setTimeout(() => { img.src = url("stream.mjpg", { width, t: Date.now() }); }, 3000);
  };
  img.onload = () => { $("stream-note").textContent = ""; };
  img.src = url("stream.mjpg", { width });
}

// -- stats -------------------------------------------------------------------------------------
function showStats(s) {
  const total = (s.latency_ms || {}).total || {};
  const frames = s.frames || {};
  $("what").textContent = `${s.source} → ${s.model} (${s.delegate})`;
  const mode = $("mode");
  mode.textContent = s.mode === "degraded" ? `degraded: every ${s.every}` : "normal";
  mode.className = "pill " + (s.mode === "degraded" ? "degraded" : "on");
  $("fps").textContent = fmt(s.fps, 1);
  $("p50").textContent = fmt(total.p50, 1);
  $("p99").textContent = fmt(total.p99, 1);
  // the tiles and the overlay's HUD are over one window, the last N frames (the chart below
  // is per second): say so on the tiles
  const n = (s.latency_window || {}).frames;
  for (const el of document.querySelectorAll(".card small.window")) {
    el.textContent = n ? `last ${n} frames` : "";
  }
  $("missrate").textContent = fmt(100 * (s.miss_rate || 0), 2) + "%";
  $("missrate").parentElement.classList.toggle("bad", (frames.missed || 0) > 0);
  $("budget").textContent = fmt(s.budget_ms, 1);
  $("temp").textContent = fmt(s.temperature_c, 1);
  $("frames").textContent = (s.counter_names || [])
    .map((k) => `${k.replace("_", " ")} ${frames[k] || 0}`).join(" · ");
  $("frames").dataset.processed = frames.processed || 0;
  const causes = Object.entries(s.missed_by_cause || {}).sort((a, b) => b[1] - a[1]);
  $("causes").textContent = causes.length
    ? "misses by cause: " + causes.map(([c, n]) => `${c} ${n}`).join(", ") : "";
  showStages(s.latency_ms || {}, s.budget_ms);
}

function showStages(stages, budget) {
  const body = $("stages").tBodies[0];
  body.replaceChildren();
  for (const [name, st] of Object.entries(stages)) {
    const row = body.insertRow();
    cell(row, name);
    cell(row, fmt(st.p50, 2));
    cell(row, fmt(st.p99, 2), name === "total" && st.p99 > budget ? "late" : "");
    cell(row, fmt(st.max, 2), name === "total" && st.max > budget ? "late" : "");
  }
}

function showMisses(data) {
  const body = $("misses").tBodies[0];
  body.replaceChildren();
  for (const m of data.misses || []) {
    const row = body.insertRow();
    cell(row, (m.ts || "").slice(11, 23));
    cell(row, String(m.frame));
    cell(row, m.cause, "late");
    cell(row, fmt(m.over_ms, 1));
    cell(row, m.action);
  }
  $("no-misses").hidden = (data.misses || []).length > 0;
}

async function poll(path, params, show) {
  try {
    const r = await fetch(url(path, params), { cache: "no-store" });
    if (!r.ok) throw new Error(`${path}: ${r.status}`);
    show(await r.json());
    return true;
  } catch (e) {
    return false;
  }
}

function setConn(ok) {
  const c = $("conn");
  c.textContent = ok ? "live" : "offline";
  c.className = "pill " + (ok ? "on" : "off");
  if (ok) $("updated").textContent = new Date().toLocaleTimeString();
}

async function tick() {
  setConn(await poll("api/stats", {}, showStats));
  setTimeout(tick, 1000);
}

async function tickMisses() {
  await poll("api/misses", { limit: 10 }, showMisses);
  setTimeout(tickMisses, 2000);
}

$("metrics").href = url("metrics");
startStream();
tick();
tickMisses();
