// The results page of the ruinmap job service: plain JavaScript and MapLibre GL JS (vendored
// in vendor/maplibre-gl/, served by the service), no network access beyond the service itself
// unless the service sets a basemap (`[page] basemap_url`). The job list refreshes while jobs
// are active; a finished job (#job=<id>) shows its downloads, a map (the damage raster as
// tiles rendered by the service, districts coloured by damaged buildings or damaged share with
// a legend scaled to the data, building outlines from zoom 14, a popup of a district's figures
// on click) and its per-district table, sortable by any column.
"use strict";

const API = new URL("..", window.location.href);
const ACTIVE = new Set(["accepted", "running"]);
const TABLE_COLUMNS = ["district_id", "name", "damaged_fraction", "damaged_km2", "area_km2",
  "mean_score", "buildings", "buildings_damaged", "buildings_damaged_fraction"];
let token = sessionStorage.getItem("ruinmap-token") || "";
let refreshTimer = null;
let shownJob = null;
let map = null;
let tableRows = [];
let sortState = { column: null, descending: true };

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

const LABELS = { buildings_damaged: "damaged buildings", damaged_fraction: "damaged share of area" };
const POPUP_COLUMNS = ["damaged_fraction", "damaged_km2", "area_km2", "mean_score",
  "buildings", "buildings_damaged", "buildings_damaged_fraction"];

function absolute(path) {
  // MapLibre fetches tiles itself: it needs absolute URLs with the {z}/{x}/{y} left intact
  return new URL(path, API).href.replaceAll("%7B", "{").replaceAll("%7D", "}");
}

function drawLegend(data) {
  const legend = document.getElementById("legend");
  legend.replaceChildren();
  const title = document.createElement("h3");
  title.textContent = "Districts: " + (LABELS[data.colour_by] || data.colour_by);
  const ramp = document.createElement("div");
  ramp.className = "ramp";
  ramp.style.background = "linear-gradient(to right, " + data.ramp.join(", ") + ")";
  const ends = document.createElement("div");
  ends.className = "ends";
  const isShare = data.colour_by.endsWith("fraction");
  const label = (v) => isShare ? +(100 * v).toFixed(1) + " %" : String(Math.round(v));
  for (const v of [0, data.scale_max / 2, data.scale_max]) {
    const span = document.createElement("span");
    span.textContent = (v === data.scale_max ? "≥ " : "") + label(v);
    ends.appendChild(span);
  }
  ends.dataset.max = String(data.scale_max);
  legend.append(title, ramp, ends);
  if (data.classes.length) {
    const classes = document.createElement("h3");
    classes.textContent = "Damage classes (raster)";
    legend.appendChild(classes);
    for (const c of data.classes) {
      const row = document.createElement("div");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = c.colour;
      row.append(swatch, c.name);
      legend.appendChild(row);
    }
  }
}

function popupHtml(p) {
  const table = document.createElement("table");
  for (const column of POPUP_COLUMNS) {
    if (!(column in p)) continue;
    const row = table.insertRow();
    const th = document.createElement("th");
    th.textContent = column.replaceAll("_", " ");
    row.appendChild(th);
    cell(row, fmt(p[column], column), "num");
  }
  const box = document.createElement("div");
  box.className = "district-popup";
  box.dataset.district = p.district_id;
  const title = document.createElement("strong");
  title.textContent = (p.name || "") + " (" + p.district_id + ")";
  box.append(title, table);
  return box;
}

async function loadBuildings(data) {
  const note = document.getElementById("buildings-note");
  if (!data.buildings) { note.textContent = ""; return; }
  if (map.getZoom() < data.buildings.min_zoom) {
    note.textContent = "Building outlines from zoom " + data.buildings.min_zoom + " on.";
    map.getSource("buildings").setData({ type: "FeatureCollection", features: [] });
    return;
  }
  const b = map.getBounds();
  const bbox = [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map((v) => v.toFixed(6));
  try {
    const geojson = await (await api(data.buildings.href + "?bbox=" + bbox.join(","))).json();
    map.getSource("buildings").setData(geojson);
    note.textContent = geojson.features.length + " building outlines" +
      (geojson.truncated ? " (the first " + data.buildings.max_features +
        ", damaged first; zoom in for all)" : "") + ".";
  } catch (error) {
    showError("buildings: " + error.message);
  }
}

function drawMap(data) {
  if (map) map.remove();
  const container = document.getElementById("map");
  container.dataset.ready = "false";
  const origin = API.origin;
  const field = data.colour_by;
  const features = data.districts;
  const sources = {
    districts: { type: "geojson", data: features },
    buildings: { type: "geojson", data: { type: "FeatureCollection", features: [] } },
  };
  const layers = [{ id: "background", type: "background", paint: { "background-color": "#f2f1ec" } }];
  if (data.basemap_url) {
    sources.basemap = { type: "raster", tiles: [data.basemap_url], tileSize: 256 };
    layers.push({ id: "basemap", type: "raster", source: "basemap" });
  }
  const stops = data.ramp.flatMap((c, i) => [data.scale_max * i / (data.ramp.length - 1), c]);
  layers.push({ id: "district-fill", type: "fill", source: "districts", paint: {
    "fill-color": ["case", ["==", ["typeof", ["get", field]], "number"],
      ["interpolate", ["linear"], ["get", field], ...stops], "#cccccc"],
    // paler when zoomed in, so the raster and building outlines read over it
    "fill-opacity": ["interpolate", ["linear"], ["zoom"], 13, 0.6, 16, 0.3] } });
  for (const [layer, template] of Object.entries(data.tiles)) {
    sources[layer] = { type: "raster", tiles: [absolute(template)], tileSize: 256,
      bounds: data.bounds, maxzoom: 22 };
    layers.push({ id: layer, type: "raster", source: layer, paint: { "raster-opacity": 0.85 },
      layout: { visibility: document.getElementById(layer + "-toggle").checked ? "visible" : "none" } });
  }
  layers.push({ id: "district-line", type: "line", source: "districts",
    paint: { "line-color": "#333333", "line-width": 1.2 } });
  if (data.buildings) {
    layers.push({ id: "buildings-line", type: "line", source: "buildings",
      minzoom: data.buildings.min_zoom, paint: { "line-width": 0.8,
        "line-color": ["case", ["to-boolean", ["get", "damaged"]], "#7a0019", "#555555"] } });
  }
  map = new maplibregl.Map({
    container: container,
    style: { version: 8, sources: sources, layers: layers },
    bounds: data.bounds,
    fitBoundsOptions: { padding: 20 },
    attributionControl: false,
    canvasContextAttributes: { preserveDrawingBuffer: true },
    // tiles and buildings come from this service: they carry the token like every other call
    transformRequest: (url) => (token && url.startsWith(origin)
      ? { url: url, headers: { Authorization: "Bearer " + token } } : { url: url }),
  });
  window.ruinmapMap = map;
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }));
  map.addControl(new maplibregl.ScaleControl());
  map.on("click", "district-fill", (event) => {
    const feature = event.features[0];
    new maplibregl.Popup({ maxWidth: "320px" }).setLngLat(event.lngLat)
      .setDOMContent(popupHtml(feature.properties)).addTo(map);
  });
  map.on("mouseenter", "district-fill", () => { map.getCanvas().style.cursor = "pointer"; });
  map.on("mouseleave", "district-fill", () => { map.getCanvas().style.cursor = ""; });
  map.on("moveend", () => loadBuildings(data));
  map.on("error", (event) => showError("map: " + (event.error && event.error.message)));
  map.once("load", () => { loadBuildings(data); });
  map.once("idle", () => { container.dataset.ready = "true"; });
  drawLegend(data);
}

function sortTable(column) {
  if (sortState.column === column) sortState.descending = !sortState.descending;
  else sortState = { column: column, descending: column !== "name" && column !== "district_id" };
  const sign = sortState.descending ? -1 : 1;
  tableRows.sort((a, b) => {
    const x = a[column], y = b[column];
    if (x === y) return 0;
    if (x === null || x === undefined) return 1;  // missing values last either way
    if (y === null || y === undefined) return -1;
    return (typeof x === "number" && typeof y === "number" ? x - y
      : String(x).localeCompare(String(y), undefined, { numeric: true })) * sign;
  });
}

function renderTable(columns) {
  const head = document.querySelector("#districts thead");
  const body = document.querySelector("#districts tbody");
  head.replaceChildren();
  body.replaceChildren();
  const headRow = document.createElement("tr");
  for (const column of columns) {
    const th = document.createElement("th");
    th.textContent = column.replaceAll("_", " ");
    th.dataset.column = column;
    if (sortState.column === column) {
      th.setAttribute("aria-sort", sortState.descending ? "descending" : "ascending");
    }
    th.addEventListener("click", () => { sortTable(column); renderTable(columns); });
    headRow.appendChild(th);
  }
  head.appendChild(headRow);
  for (const p of tableRows) {
    const row = document.createElement("tr");
    row.dataset.district = p.district_id;
    for (const column of columns) {
      cell(row, fmt(p[column], column), typeof p[column] === "number" ? "num" : "");
    }
    body.appendChild(row);
  }
}

function drawTable(data) {
  const columns = TABLE_COLUMNS.filter((c) => data.columns.includes(c));
  tableRows = data.districts.features.map((f) => f.properties);
  sortState = { column: null, descending: true };
  sortTable(data.colour_by);
  renderTable(columns);
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
      if (map) { map.remove(); map = null; }
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
    drawMap(data);
    drawTable(data);
  } catch (error) {
    showError(error.message);
  }
}

function route() {
  const match = /job=([0-9a-f]+)/.exec(window.location.hash);
  if (match) showJob(match[1]);
  else document.getElementById("detail").hidden = true;
}

for (const layer of ["damage", "score"]) {
  document.getElementById(layer + "-toggle").addEventListener("change", (event) => {
    if (map && map.getLayer(layer)) {
      map.setLayoutProperty(layer, "visibility", event.target.checked ? "visible" : "none");
    }
  });
}
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
