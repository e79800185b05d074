// The latency chart: capture-to-result p50 and p99 per second from /api/series, drawn with
// uPlot (vendored: static/uplot.min.js, MIT). The budget is a dashed line, each second with a
// deadline miss gets a red mark (its causes on hover, and written beside it when there is
// room), and seconds spent degraded are shaded. "per stage" adds each stage's p99.
// Needs url() and $() from app.js.
"use strict";

const chart = {
  u: null,        // the uPlot instance
  stages: false,  // per-stage lines on
  last: null,     // the newest bucket's t (server clock seconds)
  offset: null,   // browser epoch seconds minus server clock seconds
  keptS: 600,
  budget: null,
  d: null,        // columns: x, p50, p99, misses, causes, every, {stage: p99}
  gen: 0,         // bumped when the data restarts: answers to older polls are dropped
};

// per-stage lines: none the colour of p50 (blue), p99 (amber) or the misses (red)
const STAGE_COLORS = ["#9aa0a6", "#81c995", "#78d9ec", "#c58af9", "#fcad70", "#ff8bcb",
  "#e6c9a8", "#a8c7fa"];

function emptyData() {
  return { x: [], p50: [], p99: [], misses: [], causes: [], every: [], stage: {} };
}

function css(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function clock(s) {
  return new Date(s * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit",
                                                      second: "2-digit", hour12: false });
}

function causeText(causes) {
  const parts = Object.entries(causes || {}).sort((a, b) => b[1] - a[1]);
  return parts.map(([c, n]) => `${c} ${n}`).join(", ");
}

// -- data --------------------------------------------------------------------------------------
function pushPoint(d, x, p50, p99, misses, causes, every, stageVals) {
  d.x.push(x); d.p50.push(p50); d.p99.push(p99); d.misses.push(misses);
  d.causes.push(causes); d.every.push(every);
  for (const [name, col] of Object.entries(d.stage)) col.push(stageVals ? stageVals[name] ?? null : null);
}

function addBuckets(body) {
  const d = chart.d;
  if (chart.offset === null) chart.offset = Date.now() / 1000 - body.now_s;
  chart.keptS = body.kept_s;
  chart.budget = body.budget_ms;
  const stages = body.stages || {};
  for (const name of Object.keys(stages)) {
    if (!(name in d.stage)) d.stage[name] = d.x.map(() => null);
  }
  body.t.forEach((t, i) => {
    if (chart.last !== null && t <= chart.last) return;
    if (chart.last !== null && t > chart.last + 1) {  // a second without a bucket: a gap
      pushPoint(d, chart.last + 1 + chart.offset, null, null, 0, {}, d.every.at(-1) ?? 1, null);
    }
    const sv = {};
    for (const [name, cols] of Object.entries(stages)) sv[name] = cols.p99_ms[i];
    pushPoint(d, t + chart.offset, body.p50_ms[i], body.p99_ms[i], body.misses[i],
      body.causes[i], body.every[i], sv);
    chart.last = t;
  });
  const oldest = (chart.last ?? 0) + chart.offset - chart.keptS;
  let cut = 0;
  while (cut < d.x.length && d.x[cut] <= oldest) cut++;
  if (cut) {
    for (const k of ["x", "p50", "p99", "misses", "causes", "every"]) d[k].splice(0, cut);
    for (const col of Object.values(d.stage)) col.splice(0, cut);
  }
}

function columns() {
  const d = chart.d;
  const budget = d.x.map(() => chart.budget);
  const cols = [d.x, d.p50, d.p99, budget, d.misses];
  if (chart.stages) for (const col of Object.values(d.stage)) cols.push(col);
  return cols;
}

// -- drawing -----------------------------------------------------------------------------------
function shadeDegraded(u) {
  const d = chart.d, ctx = u.ctx, { left, top, width, height } = u.bbox;
  let spans = 0;
  ctx.save();
  ctx.fillStyle = "rgba(251, 188, 4, 0.18)";
  for (let i = 0; i < d.x.length; i++) {
    if (!(d.every[i] > 1)) continue;
    let j = i;
    while (j + 1 < d.x.length && d.every[j + 1] > 1) j++;
    const x0 = Math.max(left, u.valToPos(d.x[i] - 0.5, "x", true));
    const x1 = Math.min(left + width, u.valToPos(d.x[j] + 0.5, "x", true));
    if (x1 > x0) { ctx.fillRect(x0, top, x1 - x0, height); spans++; }
    i = j;
  }
  ctx.restore();
  u.root.parentElement.dataset.degradedSpans = spans;
}

function drawBudget(u) {
  if (chart.budget == null) return;
  const ctx = u.ctx, { left, width } = u.bbox, dpr = devicePixelRatio || 1;
  const y = Math.round(u.valToPos(chart.budget, "y", true)) + 0.5;
  ctx.save();
  ctx.strokeStyle = css("--bad") || "#ea4335";
  ctx.lineWidth = dpr;
  ctx.setLineDash([6 * dpr, 4 * dpr]);
  ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + width, y); ctx.stroke();
  ctx.restore();
}

function drawMisses(u) {
  const d = chart.d, ctx = u.ctx, { left, top, width } = u.bbox;
  const dpr = devicePixelRatio || 1, s = 6 * dpr;
  let marks = 0, lastLabel = -Infinity;
  const causes = new Set();
  ctx.save();
  ctx.fillStyle = css("--bad") || "#ea4335";
  ctx.font = `${11 * dpr}px system-ui, sans-serif`;
  ctx.textBaseline = "top";
  ctx.textAlign = "left";
  for (let i = 0; i < d.x.length; i++) {
    if (!(d.misses[i] > 0)) continue;
    const x = u.valToPos(d.x[i], "x", true);
    if (x < left || x > left + width) continue;
    ctx.beginPath();  // a triangle pointing down at the second, at the top of the plot
    ctx.moveTo(x - s, top); ctx.lineTo(x + s, top); ctx.lineTo(x, top + 1.6 * s);
    ctx.closePath(); ctx.fill();
    const main = Object.entries(d.causes[i] || {}).sort((a, b) => b[1] - a[1])[0];
    if (main) causes.add(main[0]);
    if (main && x - lastLabel > 70 * dpr) {  // the cause beside the mark, room allowing
      const right = x + s + ctx.measureText(main[0]).width < left + width;
      ctx.textAlign = right ? "left" : "right";
      ctx.fillText(main[0], right ? x + s : x - s, top + 2);
      lastLabel = x;
    }
    marks++;
  }
  ctx.restore();
  const box = u.root.parentElement;
  box.dataset.missMarks = marks;
  box.dataset.missCauses = [...causes].sort().join(",");
}

function makeChart() {
  const box = $("chart");
  if (chart.u) { chart.u.destroy(); chart.u = null; }
  const fg = css("--fg") || "#e8eaed", grid = css("--line") || "#2c313a";
  const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } };
  const series = [
    {},
    { label: "p50", stroke: "#8ab4f8", width: 1.5, value: (u, v) => v == null ? "–" : v.toFixed(1) },
    { label: "p99", stroke: "#fbbc04", width: 2, value: (u, v) => v == null ? "–" : v.toFixed(1) },
    // the budget is drawn across the whole plot by drawBudget; the series is for the legend
    { label: "budget", stroke: css("--bad") || "#ea4335", width: 1, dash: [6, 4],
      paths: () => null, points: { show: false },
      value: (u, v) => v == null ? "–" : v.toFixed(1) },
    { label: "misses", stroke: css("--bad") || "#ea4335", scale: "n", paths: () => null,
      points: { show: false },
      value: (u, v, si, i) => i == null || !v ? "0" : `${v} (${causeText(chart.d.causes[i])})` },
  ];
  if (chart.stages) {
    Object.keys(chart.d.stage).forEach((name, k) => series.push({
      label: `${name} p99`, stroke: STAGE_COLORS[k % STAGE_COLORS.length], width: 1,
      value: (u, v) => v == null ? "–" : v.toFixed(1),
    }));
  }
  const opts = {
    width: Math.max(200, box.clientWidth),
    height: box.clientWidth < 520 ? 200 : 260,
    series,
    scales: {
      // at least a minute wide: a chart just started fills up from the right
      x: { time: true, range: (u, lo, hi) => [Math.min(lo ?? hi - 60, hi - 60), hi] },
      y: { range: (u, lo, hi) => [0, Math.max(hi || 0, chart.budget || 0) * 1.15 || 1] },
      n: { range: [0, 1] },
    },
    // the time of day on one line (uPlot's default adds a date line that crowds a phone)
    axes: [{ ...axis, space: 64, size: 32, values: (u, splits) => splits.map(clock) },
           { ...axis, label: "ms", size: 44 }],
    legend: { live: true },
    cursor: { drag: { x: false, y: false } },
    hooks: { drawClear: [shadeDegraded], draw: [drawBudget, drawMisses] },
  };
  chart.u = new uPlot(opts, columns(), box);
}

function redraw() {
  if (!chart.u || chart.u.series.length !== columns().length) makeChart();
  else chart.u.setData(columns());
  const box = $("chart");
  box.dataset.points = chart.d.x.length;
  box.dataset.last = chart.last ?? "";
  $("chart-note").textContent = chart.d.x.length ? "" : "collecting: one point a second…";
}

// -- polling -----------------------------------------------------------------------------------
async function pollSeries() {
  const params = chart.stages ? { stages: 1 } : {};
  if (chart.last !== null) params.since = chart.last;
  const gen = chart.gen;
  try {
    const r = await fetch(url("api/series", params), { cache: "no-store" });
    if (r.ok) {
      const body = await r.json();
      if (!body.recording) {
        $("chart-note").textContent = "no pipeline attached: nothing to chart";
      } else if (chart.last !== null && body.now_s + 1 < chart.last) {
        restartSeries();  // the device restarted: its clock began again; start over
      } else if (gen === chart.gen) {
        addBuckets(body);
        redraw();
      }
    }
  } catch (e) {
    // offline: app.js shows it; the next poll retries
  }
  setTimeout(pollSeries, 1000);
}

function restartSeries() {
  chart.gen++;
  chart.d = emptyData();
  chart.last = null;
  if (chart.u) { chart.u.destroy(); chart.u = null; }
}

$("per-stage").addEventListener("change", (e) => {
  chart.stages = e.target.checked;
  restartSeries();  // the next poll fetches the whole ring again, with the stages
});

window.addEventListener("resize", () => {
  const box = $("chart");
  if (chart.u) chart.u.setSize({ width: Math.max(200, box.clientWidth),
                                 height: box.clientWidth < 520 ? 200 : 260 });
});

restartSeries();
pollSeries();
