// The results page of the ruinmap job service: plain JavaScript, no libraries, no network
// access beyond the service itself. The job list refreshes while jobs are active; a finished
// job (#job=<id>) shows its downloads, a map (district polygons coloured by damaged fraction,
// the damage grid as an overlay, a legend) and its per-district table.
"use strict";

const API = new URL("..", window.location.href);
const SVG_NS = "http://www.w3.org/2000/svg";
const ACTIVE = new Set(["accepted", "running"]);
const TABLE_COLUMNS = ["district_id", "name", "damaged_fraction", "damaged_km2", "area_km2",
  "mean_score", "buildings", "buildings_damaged"];
let token = sessionStorage.getItem("ruinmap-token") || "";
let refreshTimer = null;
let shownJob = null;
let gridUrl = null;

function headers() {
  return token ? { Authorization: "Bearer " + token } : {};
}

async function api(path) {
  const response = await fetch(new URL(path, API), { headers: headers() });
  if (response.status === 401) {
    document.getElementById("auth").hidden = false;
    throw new Error("this service needs a token to read");
  }
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(detail);
  }
  return response;
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

async function refreshJobs() {
  clearTimeout(refreshTimer);
  try {
    const data = await (await api("jobs?limit=200")).json();
    const body = document.querySelector("#jobs tbody");
    body.replaceChildren();
    let active = 0;
    for (const job of data.jobs) {
      if (ACTIVE.has(job.status)) active += 1;
      const row = document.createElement("tr");
      row.dataset.job = job.jobID;
      row.dataset.status = job.status;
      if (job.jobID === shownJob) row.className = "selected";
      cell(row, job.jobID.slice(0, 12));
      cell(row, job.status, "status-" + job.status);
      const bar = document.createElement("progress");
      bar.max = 100;
      bar.value = job.progress || 0;
      cell(row, "").append(bar, " " + (job.progress || 0) + " %");
      cell(row, (job.created || "").replace("T", " ").slice(0, 19));
      cell(row, job.message || "");
      row.addEventListener("click", () => { window.location.hash = "job=" + job.jobID; });
      body.appendChild(row);
    }
    document.getElementById("summary").textContent =
      data.numberTotal + " job(s), " + active + " active";
    showError("");
    if (active) refreshTimer = setTimeout(refreshJobs, 2000);
  } catch (error) {
    showError(error.message);
  }
}

function fmt(value, column) {
  if (value === null || value === undefined) return "";
  if (typeof value !== "number") return String(value);
  if (column.endsWith("fraction")) return (100 * value).toFixed(1) + " %";
  return Number.isInteger(value) ? String(value) : value.toFixed(3);
}

function colour(ramp, value, vmax) {
  if (value === null || value === undefined || Number.isNaN(value)) return "#cccccc";
  const position = Math.min(Math.max(value / vmax, 0), 1) * (ramp.length - 1);
  const i = Math.min(Math.floor(position), ramp.length - 2);
  const t = position - i;
  const a = ramp[i], b = ramp[i + 1];
  const mix = (k) => Math.round(parseInt(a.substr(k, 2), 16) * (1 - t) +
                                parseInt(b.substr(k, 2), 16) * t);
  return "rgb(" + mix(1) + "," + mix(3) + "," + mix(5) + ")";
}

function pathData(geometry, toScreen) {
  const polygons = geometry.type === "Polygon" ? [geometry.coordinates]
    : geometry.type === "MultiPolygon" ? geometry.coordinates : [];
  let d = "";
  for (const polygon of polygons) {
    for (const ring of polygon) {
      ring.forEach((point, i) => {
        const [x, y] = toScreen(point);
        d += (i ? "L" : "M") + x.toFixed(2) + " " + y.toFixed(2);
      });
      d += "Z";
    }
  }
  return d;
}

function svg(tag, attributes) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  return element;
}

function drawLegend(ramp, vmax) {
  const legend = document.getElementById("legend");
  legend.replaceChildren();
  const defs = svg("defs", {});
  const gradient = svg("linearGradient", { id: "ramp" });
  ramp.forEach((c, i) => gradient.appendChild(
    svg("stop", { offset: (100 * i / (ramp.length - 1)) + "%", "stop-color": c })));
  defs.appendChild(gradient);
  legend.appendChild(defs);
  legend.appendChild(svg("rect", { x: 10, y: 4, width: 240, height: 14, fill: "url(#ramp)",
    stroke: "#666" }));
  const labels = [[10, "0 %", "start"], [130, "damaged fraction", "middle"],
    [250, "≥ " + Math.round(100 * vmax) + " %", "end"]];
  for (const [x, text, anchor] of labels) {
    const label = svg("text", { x: x, y: 36, "font-size": 12, "text-anchor": anchor });
    label.textContent = text;
    legend.appendChild(label);
  }
}

async function drawMap(jobId, data) {
  const [minx, miny, maxx, maxy] = data.bounds;
  const width = maxx - minx, height = maxy - miny;
  const map = document.getElementById("map");
  map.replaceChildren();
  map.setAttribute("viewBox", "0 0 " + width + " " + height);
  map.setAttribute("preserveAspectRatio", "xMidYMid meet");
  const toScreen = ([x, y]) => [x - minx, maxy - y];
  const fills = svg("g", { id: "district-fills" });
  const outlines = svg("g", { id: "district-outlines" });
  for (const feature of data.districts.features) {
    const d = pathData(feature.geometry, toScreen);
    const p = feature.properties;
    const fill = svg("path", { d: d, class: "district",
      fill: colour(data.ramp, p.damaged_fraction, data.scale_max) });
    fill.dataset.district = p.district_id;
    fills.appendChild(fill);
    const outline = svg("path", { d: d, class: "outline" });
    const title = svg("title", {});
    title.textContent = (p.name || p.district_id) + ": " + fmt(p.damaged_fraction, "fraction") +
      " damaged";
    outline.appendChild(title);
    outlines.appendChild(outline);
  }
  map.appendChild(fills);
  const overlay = svg("image", { id: "grid-overlay", x: 0, y: 0, width: width, height: height,
    preserveAspectRatio: "none", opacity: 0.75 });
  try {
    const blob = await (await api(data.grid.href)).blob();
    if (gridUrl) URL.revokeObjectURL(gridUrl);
    gridUrl = URL.createObjectURL(blob);
    overlay.setAttribute("href", gridUrl);
    map.appendChild(overlay);
  } catch (error) {
    showError("damage grid: " + error.message);
  }
  map.appendChild(outlines);
  overlay.style.display = document.getElementById("grid-toggle").checked ? "" : "none";
  drawLegend(data.ramp, data.scale_max);
}

function drawTable(data) {
  const columns = TABLE_COLUMNS.filter((c) => data.columns.includes(c));
  const head = document.querySelector("#districts thead");
  const body = document.querySelector("#districts tbody");
  head.replaceChildren();
  body.replaceChildren();
  const headRow = document.createElement("tr");
  for (const column of columns) {
    const th = document.createElement("th");
    th.textContent = column.replaceAll("_", " ");
    headRow.appendChild(th);
  }
  head.appendChild(headRow);
  const rows = data.districts.features.map((f) => f.properties)
    .sort((a, b) => (b.damaged_fraction || 0) - (a.damaged_fraction || 0));
  for (const p of rows) {
    const row = document.createElement("tr");
    for (const column of columns) {
      cell(row, fmt(p[column], column), typeof p[column] === "number" ? "num" : "");
    }
    body.appendChild(row);
  }
}

async function showJob(jobId) {
  shownJob = jobId;
  const detail = document.getElementById("detail");
  document.querySelectorAll("#jobs tbody tr").forEach((row) => {
    row.className = row.dataset.job === jobId ? "selected" : "";
  });
  try {
    const status = await (await api("jobs/" + jobId)).json();
    document.getElementById("detail-title").textContent =
      "Job " + jobId + " (" + status.status + ")";
    detail.hidden = false;
    if (status.status !== "successful") {
      document.getElementById("map").replaceChildren();
      document.querySelector("#districts tbody").replaceChildren();
      document.getElementById("downloads").textContent = status.message || "";
      if (ACTIVE.has(status.status)) setTimeout(() => { if (shownJob === jobId) showJob(jobId); }, 2000);
      return;
    }
    const results = await (await api("jobs/" + jobId + "/results")).json();
    const downloads = document.getElementById("downloads");
    downloads.replaceChildren("Downloads: ");
    for (const [name, link] of Object.entries(results)) {
      const a = document.createElement("a");
      a.href = link.href;
      a.textContent = link.title || name;
      a.download = link.title || name;
      // a plain link cannot send the token: fetch the file with it, then save the blob
      a.addEventListener("click", async (event) => {
        if (!token) return;
        event.preventDefault();
        try {
          const blob = await (await api(link.href)).blob();
          const save = document.createElement("a");
          save.href = URL.createObjectURL(blob);
          save.download = a.download;
          save.click();
          setTimeout(() => URL.revokeObjectURL(save.href), 10000);
        } catch (error) {
          showError(name + ": " + error.message);
        }
      });
      downloads.appendChild(a);
    }
    const data = await (await api("jobs/" + jobId + "/map-data")).json();
    await drawMap(jobId, data);
    drawTable(data);
    document.getElementById("map").dataset.ready = "true";
  } catch (error) {
    showError(error.message);
  }
}

function route() {
  const match = /job=([0-9a-f]+)/.exec(window.location.hash);
  if (match) showJob(match[1]);
  else document.getElementById("detail").hidden = true;
}

document.getElementById("grid-toggle").addEventListener("change", (event) => {
  const overlay = document.getElementById("grid-overlay");
  if (overlay) overlay.style.display = event.target.checked ? "" : "none";
});
document.getElementById("token-save").addEventListener("click", () => {
  token = document.getElementById("token").value.trim();
  sessionStorage.setItem("ruinmap-token", token);
  document.getElementById("auth").hidden = true;
  refreshJobs();
  route();
});
window.addEventListener("hashchange", route);
refreshJobs();
route();
