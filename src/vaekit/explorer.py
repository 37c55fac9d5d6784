"""The latent-space explorer `vaekit serve` answers at GET /: the served run's validation data
encoded as a 2-D map (the latent itself when 2-D, else PCA of the posterior means), coloured by
label; clicking a point shows what the decoder makes of it, and the last two points clicked show
the decoded path between them. One self-contained page: its data comes from /v1/R/explorer and
/v1/R/decode (with the token from the page's #token=... when the server asks for one)."""

from __future__ import annotations

import html

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vaekit explorer</title>
<link rel="icon" href="data:,">
<style>
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
#main { display: flex; gap: 2em; align-items: flex-start; }
#map { border: 1px solid #ccc; background: #fafafa; }
#map circle { cursor: pointer; stroke: none; }
#map circle.picked { stroke: #000; stroke-width: 2; }
#side { max-width: 560px; }
.path { display: flex; flex-wrap: wrap; gap: 4px; align-items: flex-start; }
.path > div { border: 1px solid #ddd; padding: 2px; }
img.pixels { image-rendering: pixelated; width: 84px; }
table.row td { padding: 1px 8px; border-bottom: 1px solid #eee; }
.muted { color: #777; }
#legend { max-width: 560px; margin-top: 4px; }
</style></head>
<body>
<h1>vaekit explorer</h1>
<p>Run <select id="run">__OPTIONS__</select> <span id="about" class="muted"></span></p>
<div id="main">
  <div><svg id="map" width="560" height="560" role="img" aria-label="the encoded validation data"></svg>
  <div id="legend" class="muted"></div></div>
  <div id="side">
    <h2>Decoded point</h2><div id="example" class="muted">Click a point.</div>
    <h2>Path between the last two points</h2><div id="path" class="muted">Click two points.</div>
  </div>
</div>
<script>
"use strict";
const token = new URLSearchParams(location.hash.slice(1)).get("token");
const headers = Object.assign({"Content-Type": "application/json"}, token ? {"Authorization": "Bearer " + token} : {});
const palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"];
let data = null, picked = [];

async function call(path, body) {
  const r = await fetch(path, body ? {method: "POST", headers, body: JSON.stringify(body)} : {headers});
  const answer = await r.json();
  if (!r.ok) throw new Error(answer.error || r.statusText);
  return answer;
}

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function render(record) {
  const kind = data.kind;
  if (kind === "image") return el("img", {class: "pixels", src: "data:image/png;base64," + record, alt: "decoded image"});
  if (typeof record === "string") return el("code", {}, record);
  if (Array.isArray(record)) return el("span", {}, record.join(", "));
  if (kind === "series") return sparkline(record);
  const table = el("table", {class: "row"});
  for (const [k, v] of Object.entries(record)) {
    const tr = el("tr"); tr.append(el("td", {}, k), el("td", {}, v === null ? "(missing)" : String(v))); table.append(tr);
  }
  return table;
}

function sparkline(record) {
  const ns = "http://www.w3.org/2000/svg", box = document.createElementNS(ns, "svg");
  box.setAttribute("width", 220); box.setAttribute("height", 60 * Object.keys(record).length);
  Object.values(record).forEach((values, c) => {
    const lo = Math.min(...values), hi = Math.max(...values), span = hi - lo || 1;
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", values.map((v, i) => `${i * 220 / Math.max(values.length - 1, 1)},${c * 60 + 55 - 50 * (v - lo) / span}`).join(" "));
    line.setAttribute("fill", "none"); line.setAttribute("stroke", palette[c % 10]);
    box.append(line);
  });
  return box;
}

function labelOf(i) { return data.labels ? data.labels[i] : null; }

function decodeBody(zs, labels) {
  const body = {z: zs, format: "png"};
  if (data.conditional) body.labels = labels;
  return body;
}

async function pick(i) {
  picked = picked.concat([i]).slice(-2);
  document.querySelectorAll("#map circle.picked").forEach(c => c.classList.remove("picked"));
  picked.forEach(j => document.getElementById("p" + j).classList.add("picked"));
  const example = document.getElementById("example");
  try {
    const answer = await call(`/v1/${run()}/decode`, decodeBody([data.z[i]], [labelOf(i)]));
    example.replaceChildren(el("p", {class: "muted"}, `point ${i}` + (labelOf(i) !== null ? `, label ${name(labelOf(i))}` : "")),
                            render(answer.outputs[0]));
    example.className = "";
  } catch (e) { example.textContent = e.message; }
  if (picked.length < 2) return;
  const [a, b] = picked.map(j => data.z[j]), steps = 8, zs = [];
  for (let s = 0; s < steps; s++) zs.push(a.map((v, d) => v + (b[d] - v) * s / (steps - 1)));
  const path = document.getElementById("path");
  try {
    const answer = await call(`/v1/${run()}/decode`, decodeBody(zs, zs.map(() => labelOf(picked[0]))));
    const strip = el("div", {class: "path"});
    answer.outputs.forEach(r => { const d = el("div"); d.append(render(r)); strip.append(d); });
    path.replaceChildren(strip); path.className = "";
  } catch (e) { path.textContent = e.message; }
}

function name(label) { return data.label_names ? data.label_names[label] : label; }
function run() { return document.getElementById("run").value; }

async function load() {
  const svg = document.getElementById("map"), about = document.getElementById("about");
  svg.replaceChildren(); picked = [];
  try { data = await call(`/v1/${run()}/explorer`); } catch (e) { about.textContent = e.message; return; }
  about.textContent = `${data.kind} run, ${data.points.length} validation examples, ${data.projection}`;
  const xs = data.points.map(p => p[0]), ys = data.points.map(p => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const sx = v => 20 + 520 * (v - x0) / ((x1 - x0) || 1), sy = v => 540 - 520 * (v - y0) / ((y1 - y0) || 1);
  const ns = "http://www.w3.org/2000/svg";
  data.points.forEach((p, i) => {
    const c = document.createElementNS(ns, "circle");
    c.setAttribute("id", "p" + i); c.setAttribute("cx", sx(p[0]).toFixed(1)); c.setAttribute("cy", sy(p[1]).toFixed(1));
    c.setAttribute("r", 3.5); c.setAttribute("fill", labelOf(i) === null ? palette[0] : palette[labelOf(i) % 10]);
    c.setAttribute("fill-opacity", 0.7);
    const title = document.createElementNS(ns, "title");
    title.textContent = `point ${i}` + (labelOf(i) !== null ? `: ${name(labelOf(i))}` : "");
    c.append(title);
    c.addEventListener("click", () => pick(i));
    svg.append(c);
  });
  const legend = document.getElementById("legend");
  legend.replaceChildren();
  if (data.labels) [...new Set(data.labels)].sort((a, b) => a - b).forEach(label => {
    const key = el("span", {style: `color: ${palette[label % 10]}; margin-right: 1em`}, `\u25cf ${name(label)}`);
    legend.append(key);
  });
}

document.getElementById("run").addEventListener("change", load);
load();
</script>
</body></html>
"""


def page(runs: list[str]) -> str:
    options = "".join(f"<option>{html.escape(name)}</option>" for name in runs)
    return PAGE.replace("__OPTIONS__", options)
