// sitewatch viewer: map of an AOI in its UTM grid (imagery as one server-rendered PNG per date,
// overlays as SVG in map metres east and south of the grid's north-west corner), time slider,
// site panel with automatic findings and analyst records. No third-party code; every text
// from the workspace goes into the page through textContent, never as HTML.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const LABEL_PX = 12;          // label font size on screen, pixels
const PLACE_RADIUS_PX = 4;
const SCALE_BAR_PX = 120;     // longest scale bar, pixels
const ZOOM_STEP = 1.25;
const TOKEN_KEY = "sitewatch-token";
const AUTHOR_KEY = "sitewatch-author";

const state = {
  info: null,        // /api/workspace
  map: null,         // /api/aois/{aoi}
  t: 0,              // index of the date shown
  site: null,        // /api/sites/{id} of the open site
  view: null,        // {x, y, w, h}: the visible part of the map, metres
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  compare: {before: null, after: null, mode: "side", swipe: 50},
  editing: {},       // kind -> record being edited
  mapRequest: 0,     // guards against late answers after the AOI changed
  dragEnded: 0,      // when the last drag of the map ended (a drag is not a click on a site)
};

const $ = (id) => document.getElementById(id);

// -- DOM helpers ------------------------------------------------------------------------------
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  setAttributes(node, attributes);
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttributes(node, attributes);
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

function setAttributes(node, attributes) {
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
}

function message(text, isError = false) {
  const box = $("message");
  box.textContent = text;
  box.className = isError ? "error" : "";
  box.hidden = false;
  clearTimeout(message.timer);
  message.timer = setTimeout(() => { box.hidden = true; }, isError ? 12000 : 4000);
}

// -- talking to the server --------------------------------------------------------------------
async function api(path, {method = "GET", body, version} = {}) {
  const headers = {Accept: "application/json"};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.token) headers.Authorization = `Bearer ${state.token}`;
  if (version) headers["If-Match"] = `"${version}"`;
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data.detail || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

const enc = encodeURIComponent;

// -- address bar: #aoi=...&date=...&site=... (a #token=... is taken and removed) ----------------
function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.has("token")) {
    state.token = params.get("token");
    sessionStorage.setItem(TOKEN_KEY, state.token);
    params.delete("token");
    history.replaceState(null, "", `#${params}`);
  }
  return params;
}

function writeHash() {
  const params = new URLSearchParams();
  if (state.map) {
    params.set("aoi", state.map.name);
    params.set("date", state.map.dates[state.t].date);
  }
  if (state.site) params.set("site", state.site.site_id);
  history.replaceState(null, "", `#${params}`);
}

// -- start ------------------------------------------------------------------------------------
async function start() {
  const wanted = readHash();
  setUpMap();
  setUpTimebar();
  setUpToken();
  try {
    state.info = await api("/api/workspace");
  } catch (error) {
    message(`Cannot read the workspace: ${error.message}`, true);
    return;
  }
  $("workspace-name").textContent = state.info.name;
  showMode();
  const select = $("aoi-select");
  for (const aoi of state.info.aois) {
    const label = aoi.has_stack ? `${aoi.name} (${aoi.n_sites} sites)` : `${aoi.name} (no stack)`;
    select.append(el("option", {value: aoi.name, disabled: !aoi.has_stack, text: label}));
  }
  select.addEventListener("change", () => openAoi(select.value));
  const stacked = state.info.aois.filter((aoi) => aoi.has_stack);
  if (!stacked.length) {
    $("map-status").textContent = "No AOI of this workspace has a stack yet (run 'sitewatch stack').";
    return;
  }
  const first = stacked.find((aoi) => aoi.name === wanted.get("aoi")) || stacked[0];
  select.value = first.name;
  await openAoi(first.name, wanted.get("date"), wanted.get("site"));
}

function showMode() {
  const mode = $("mode");
  const editing = state.info.writable && state.token;
  mode.textContent = !state.info.writable ? "read-only" : editing ? "editing enabled" : "token needed to edit";
  mode.className = editing ? "badge writing" : "badge";
  $("token-form").hidden = !state.info.writable || Boolean(state.token);
  $("token-forget").hidden = !editing;
}

function setUpToken() {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = $("token-input").value.trim();
    $("token-input").value = "";
    if (state.token) sessionStorage.setItem(TOKEN_KEY, state.token);
    showMode();
    if (state.site) renderSite();
  });
  $("token-forget").addEventListener("click", () => {
    state.token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    showMode();
    if (state.site) renderSite();
  });
}

// -- AOI map ----------------------------------------------------------------------------------
async function openAoi(name, day = null, siteId = null) {
  const request = ++state.mapRequest;
  $("map").dataset.state = "loading";
  $("map-status").textContent = `Loading ${name}…`;
  let map;
  try {
    map = await api(`/api/aois/${enc(name)}`);
  } catch (error) {
    message(`Cannot open AOI ${name}: ${error.message}`, true);
    return;
  }
  if (request !== state.mapRequest) return;
  state.map = map;
  state.site = null;
  const index = map.dates.findIndex((d) => d.date === day);
  state.t = index >= 0 ? index : map.dates.length - 1;
  $("map").dataset.aoi = map.name;
  drawOverlays();
  drawSiteTable();
  drawLegend();
  $("credit").textContent = map.credit ? `Imagery: ${map.credit}` : "";
  const slider = $("date-slider");
  slider.max = String(map.dates.length - 1);
  slider.value = String(state.t);
  fitView();
  showDate();
  closeSite();
  if (siteId && map.sites.some((s) => s.site_id === siteId)) await openSite(siteId, false);
}

function setUpMap() {
  const box = $("map-svg");
  box.addEventListener("wheel", (event) => {
    event.preventDefault();
    const rect = box.getBoundingClientRect();
    zoom(event.deltaY > 0 ? ZOOM_STEP : 1 / ZOOM_STEP, event.clientX - rect.left, event.clientY - rect.top);
  }, {passive: false});
  let drag = null;
  box.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 || !state.view) return;
    drag = {x: event.clientX, y: event.clientY, view: {...state.view}, moved: false};
  });
  box.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const dx = event.clientX - drag.x;
    const dy = event.clientY - drag.y;
    if (!drag.moved && Math.hypot(dx, dy) < 4) return;
    if (!drag.moved) {
      drag.moved = true;
      box.setPointerCapture(event.pointerId);
      box.classList.add("dragging");
    }
    const scale = metresPerPixel();
    setView({...drag.view, x: drag.view.x - dx * scale, y: drag.view.y - dy * scale});
  });
  const end = (event) => {
    if (drag && drag.moved) {
      box.releasePointerCapture(event.pointerId);
      box.classList.remove("dragging");
      state.dragEnded = performance.now();
    }
    drag = null;
  };
  box.addEventListener("pointerup", end);
  box.addEventListener("pointercancel", end);
  box.addEventListener("dblclick", () => fitView());
  $("zoom-in").addEventListener("click", () => zoomCentre(1 / ZOOM_STEP));
  $("zoom-out").addEventListener("click", () => zoomCentre(ZOOM_STEP));
  $("zoom-fit").addEventListener("click", () => fitView());
  new ResizeObserver(() => { if (state.view) setView(state.view); }).observe(box);
}

function boxSize() {
  const rect = $("map-svg").getBoundingClientRect();
  return {width: Math.max(rect.width, 1), height: Math.max(rect.height, 1)};
}

function metresPerPixel() {
  return state.view.w / boxSize().width;
}

function setView(view) {
  // Keep the view's shape that of the box, so one metre is as wide as it is high.
  const {width, height} = boxSize();
  const h = view.w * height / width;
  state.view = {x: view.x, y: view.y + (view.h - h) / 2, w: view.w, h};
  const {x, y, w} = state.view;
  $("map-svg").setAttribute("viewBox", `${x} ${y} ${w} ${h}`);
  const scale = metresPerPixel();
  for (const id of ["layer-borders", "layer-sites", "layer-places"]) {
    $(id).setAttribute("font-size", LABEL_PX * scale);
    $(id).setAttribute("stroke-width", 3 * scale);
  }
  for (const dot of document.querySelectorAll(".place circle")) dot.setAttribute("r", PLACE_RADIUS_PX * scale);
  drawScaleBar(scale);
}

function fitView(bounds = null) {
  const [w0, h0] = state.map.size_m;
  const [x0, y0, x1, y1] = bounds || [0, 0, w0, h0];
  const {width, height} = boxSize();
  const margin = 1.04;
  const w = Math.max((x1 - x0) * margin, (y1 - y0) * margin * width / height);
  const h = w * height / width;
  setView({x: (x0 + x1) / 2 - w / 2, y: (y0 + y1) / 2 - h / 2, w, h});
}

function zoom(factor, px, py) {
  const {width, height} = boxSize();
  const v = state.view;
  const mx = v.x + px / width * v.w;
  const my = v.y + py / height * v.h;
  const w = Math.min(Math.max(v.w * factor, 20), 4 * Math.max(...state.map.size_m));
  const h = v.h * w / v.w;
  setView({x: mx - px / width * w, y: my - py / height * h, w, h});
}

function zoomCentre(factor) {
  const {width, height} = boxSize();
  zoom(factor, width / 2, height / 2);
}

function drawScaleBar(scale) {
  const most = SCALE_BAR_PX * scale;
  const power = 10 ** Math.floor(Math.log10(most));
  const length = [5, 2, 1].map((m) => m * power).find((v) => v <= most);
  $("scale-bar-line").style.width = `${length / scale}px`;
  $("scale-bar-label").textContent = length >= 1000 ? `${length / 1000} km` : `${length} m`;
}

function drawOverlays() {
  const map = state.map;
  const aoi = $("layer-aoi");
  aoi.replaceChildren(...map.outline.map((d) => svg("path", {d, class: "aoi-outline", "vector-effect": "non-scaling-stroke"})));
  const borders = $("layer-borders");
  borders.replaceChildren();
  for (const border of map.borders) {
    borders.append(svg("path", {d: border.path, class: "border-halo", "vector-effect": "non-scaling-stroke"}),
      svg("path", {d: border.path, class: "border-line", "vector-effect": "non-scaling-stroke"},
        svg("title", {text: border.name})));
    for (const side of border.sides) {
      borders.append(svg("text", {x: side.x, y: side.y, class: "border-side", "text-anchor": "middle", text: side.name}));
    }
  }
  const sites = $("layer-sites");
  sites.replaceChildren();
  for (const site of map.sites) {
    const group = svg("g", {class: "site", "data-site-id": site.site_id, onclick: () => { if (performance.now() - state.dragEnded > 300) openSite(site.site_id, false); }},
      svg("path", {d: site.path, stroke: site.colour, fill: site.colour, "vector-effect": "non-scaling-stroke"}),
      svg("text", {x: site.label[0], y: site.label[1], "text-anchor": "middle", "dominant-baseline": "central", text: siteNumber(site.site_id)}),
      svg("title", {text: `${site.site_id}: ${site.change_words}, ${site.status.replaceAll("_", " ")}`}));
    sites.append(group);
  }
  const places = $("layer-places");
  places.replaceChildren();
  for (const place of map.places) {
    places.append(svg("g", {class: "place"},
      svg("circle", {cx: place.x, cy: place.y, r: 1, "vector-effect": "non-scaling-stroke"}),
      svg("text", {x: place.x, y: place.y, dx: "0.6em", dy: "-0.5em", text: place.name}),
      svg("title", {text: `${place.name} (${place.kind})`})));
  }
}

function siteNumber(siteId) {
  const tail = siteId.split("-").pop();
  return /^\d+$/.test(tail) ? tail : siteId;
}

function drawLegend() {
  const seen = new Map(state.map.sites.map((s) => [s.change_words, s.colour]));
  const legend = $("legend");
  legend.replaceChildren(el("span", {text: "Automatic findings:"}));
  for (const [words, colour] of seen) {
    const swatch = el("span", {class: "swatch"});
    swatch.style.borderColor = colour;
    legend.append(el("span", {}, swatch, words));
  }
  legend.append(el("span", {text: "dashed white: AOI · dashed red: border · \u2601 cloudy date"}));
}

function drawSiteTable() {
  const body = $("site-table").querySelector("tbody");
  body.replaceChildren();
  for (const site of state.map.sites) {
    const chip = el("span", {class: "chip", text: site.change_words});
    chip.style.borderColor = site.colour;
    body.append(el("tr", {"data-site-id": site.site_id, onclick: () => openSite(site.site_id, true)},
      el("td", {text: site.site_id}), el("td", {}, chip),
      el("td", {text: `${Math.round(site.length_m)} × ${Math.round(site.width_m)}`}),
      el("td", {text: formatArea(site.area_m2)}), el("td", {text: site.first_seen || "–"})));
  }
  if (!state.map.sites.length) {
    body.append(el("tr", {}, el("td", {colspan: 5, class: "empty", text: "No sites were found in this AOI."})));
  }
}

function formatArea(m2) {
  if (m2 === null || m2 === undefined) return "–";
  return m2 >= 10000 ? `${(m2 / 10000).toFixed(1)} ha` : `${Math.round(m2)} m²`;
}

// -- time -------------------------------------------------------------------------------------
function setUpTimebar() {
  const slider = $("date-slider");
  slider.addEventListener("input", () => setDate(Number(slider.value)));
  $("date-prev").addEventListener("click", () => setDate(state.t - 1));
  $("date-next").addEventListener("click", () => setDate(state.t + 1));
  document.addEventListener("keydown", (event) => {
    if (!state.map || event.target.closest("input, textarea, select")) return;
    if (event.key === "ArrowLeft") setDate(state.t - 1);
    else if (event.key === "ArrowRight") setDate(state.t + 1);
    else if (event.key === "Escape" && state.site) closeSite();
  });
}

function setDate(t) {
  if (!state.map || t < 0 || t >= state.map.dates.length || t === state.t) return;
  state.t = t;
  $("date-slider").value = String(t);
  showDate();
}

function showDate() {
  const map = state.map;
  const date = map.dates[state.t];
  const cloud = date.obscured > 0 ? ` · cloud ${Math.round(100 * date.obscured)} %` : "";
  $("date-label").textContent = `${date.date} · ${state.t + 1} of ${map.dates.length}${cloud}`;
  drawTicks();
  drawFootprint();
  loadImagery(map, date.date);
  if (state.site) drawTimeline();
  writeHash();
}

function loadImagery(map, day) {
  const layer = $("layer-imagery");
  const url = `/api/aois/${enc(map.name)}/imagery/${day}.png?size=${map.image.size}`;
  const mark = `imagery-start ${map.name} ${day}`;
  performance.mark(mark);
  $("map").dataset.state = "loading";
  $("map-status").textContent = `Loading imagery of ${day}…`;
  const image = svg("image", {href: url, x: 0, y: 0, width: map.image.width_m, height: map.image.height_m, preserveAspectRatio: "none"});
  image.addEventListener("load", () => {
    if (state.map !== map || map.dates[state.t].date !== day) { image.remove(); return; }
    performance.measure(`imagery ${map.name} ${day}`, mark);
    for (const old of [...layer.children]) if (old !== image) old.remove();
    $("map").dataset.imageryDate = day;
    $("map").dataset.state = "ready";
    $("map-status").textContent = "";
  });
  image.addEventListener("error", () => {
    image.remove();
    $("map-status").textContent = `No imagery for ${day}`;
  });
  layer.append(image);
}

function drawTicks() {
  const ticks = $("date-ticks");
  ticks.replaceChildren();
  const dates = state.map.dates;
  const footprints = state.site ? state.site.automatic.footprints : null;
  dates.forEach((date, i) => {
    const share = dates.length > 1 ? i / (dates.length - 1) : 0.5;
    const classes = ["tick"];
    if (date.cloudy) classes.push("cloudy");
    if (i === state.t) classes.push("current");
    let title = `${date.date}: ${Math.round(100 * date.obscured)} % cloud or shadow`;
    const tick = el("span", {class: classes.join(" "), "data-date": date.date, onclick: () => setDate(i)});
    if (footprints && footprints[i]) {
      const dot = el("span", {class: "dot"});
      dot.style.background = state.site.colour;
      tick.append(dot);
      title += `; ${state.site.site_id} footprint observed`;
    }
    tick.title = title;
    // The range thumb is 16 px wide: its centre runs from 8 px to (width - 8 px).
    tick.style.left = `calc(8px + (100% - 16px) * ${share})`;
    ticks.append(tick);
  });
}

function drawFootprint() {
  const layer = $("layer-footprint");
  layer.replaceChildren();
  if (!state.site) return;
  const d = state.site.automatic.footprints[state.t];
  if (d) layer.append(svg("path", {d, class: "footprint", "vector-effect": "non-scaling-stroke"},
    svg("title", {text: `${state.site.site_id} on ${state.map.dates[state.t].date}`})));
}

// -- site panel -------------------------------------------------------------------------------
async function openSite(siteId, zoomTo) {
  let site;
  try {
    site = await api(`/api/sites/${enc(siteId)}`);
  } catch (error) {
    message(`Cannot open site ${siteId}: ${error.message}`, true);
    return;
  }
  if (!state.map || site.aoi !== state.map.name) return;
  const changed = !state.site || state.site.site_id !== site.site_id;
  state.site = site;
  if (changed) {
    state.compare.before = site.frames.before;
    state.compare.after = site.frames.after;
    state.editing = {};
  }
  for (const group of document.querySelectorAll("#layer-sites .site")) {
    group.classList.toggle("selected", group.dataset.siteId === siteId);
  }
  if (zoomTo) {
    const [x0, y0, x1, y1] = state.map.sites.find((s) => s.site_id === siteId).bounds;
    const pad = Math.max(x1 - x0, y1 - y0, 100) * 2;
    fitView([x0 - pad, y0 - pad, x1 + pad, y1 + pad]);
  }
  $("site-list").hidden = true;
  $("site-detail").hidden = false;
  renderSite();
  drawTicks();
  drawFootprint();
  writeHash();
}

function closeSite() {
  state.site = null;
  for (const group of document.querySelectorAll("#layer-sites .site.selected")) group.classList.remove("selected");
  $("site-detail").hidden = true;
  $("site-detail").replaceChildren();
  $("site-list").hidden = false;
  if (state.map) { drawTicks(); drawFootprint(); writeHash(); }
}

async function reloadSite() {
  if (state.site) await openSite(state.site.site_id, false);
}

function renderSite() {
  const site = state.site;
  const chip = el("span", {class: "chip", text: site.change_words});
  chip.style.borderColor = site.colour;
  const links = el("nav", {class: "links"});
  if (site.report) links.append(el("a", {href: site.report, target: "_blank", rel: "noopener", text: "Report section"}));
  links.append(el("span", {text: `Export ${site.aoi}:`}));
  for (const format of state.info.export_formats) {
    links.append(el("a", {href: `/api/aois/${enc(site.aoi)}/exports/${format}`, download: "", text: format.toUpperCase()}));
  }
  const detail = $("site-detail");
  detail.replaceChildren(
    el("div", {class: "site-head"},
      el("button", {type: "button", onclick: closeSite, text: "← All sites"}),
      el("h2", {text: site.site_id}), chip,
      el("span", {class: "hint", text: `status: ${site.status.replaceAll("_", " ")}`})),
    links,
    automaticSection(site),
    analystSection(site));
  drawTimeline();
  drawCompare();
}

function automaticSection(site) {
  const auto = site.automatic;
  const rows = auto.measurements.map(([label, value]) => el("tr", {}, el("td", {text: label}), el("td", {text: value})));
  return el("section", {class: "automatic", id: "automatic"},
    el("h3", {}, el("span", {class: "kind-label", text: "Automatic"}), "Findings generated by sitewatch"),
    el("p", {class: "findings", text: auto.findings}),
    el("p", {class: "hint", text: `How sure the detection is, from its evidence: ${auto.evidence_term} (never above "very likely" without an analyst).`}),
    el("table", {class: "measurements"}, el("tbody", {}, ...rows)),
    el("h4", {text: "Phase timeline"}),
    el("div", {id: "timeline"}),
    el("h4", {text: "Before / after"}),
    el("div", {id: "compare"}));
}

function drawTimeline() {
  const box = $("timeline");
  if (!box) return;
  const dates = state.map.dates.map((d) => d.date);
  const auto = state.site.automatic;
  const W = 600, left = 8, right = 592;
  const day = (iso) => Date.parse(iso.slice(0, 10));
  const t0 = day(dates[0]), t1 = day(dates[dates.length - 1]);
  const x = (iso) => left + (right - left) * (t1 > t0 ? (day(iso) - t0) / (t1 - t0) : 0.5);
  const chart = svg("svg", {class: "timeline", viewBox: `0 0 ${W} 78`, role: "img", "aria-label": "Phase timeline"});
  chart.append(svg("line", {x1: left, x2: right, y1: 44, y2: 44, stroke: "#9aa4ad"}));
  auto.phases.forEach((phase, i) => {
    const start = phase.after || phase.first_observed;
    const next = auto.phases[i + 1];
    const end = next ? (next.after || next.first_observed) : dates[dates.length - 1];
    if (phase.after) {
      chart.append(svg("rect", {x: x(phase.after), y: 18, width: Math.max(x(phase.first_observed) - x(phase.after), 1), height: 18, fill: phase.colour, "fill-opacity": 0.35},
        svg("title", {text: `${phase.phase.replaceAll("_", " ")} began between ${phase.after} and ${phase.first_observed}`})));
    }
    chart.append(svg("rect", {x: x(phase.first_observed), y: 18, width: Math.max(x(end) - x(phase.first_observed), 2), height: 18, fill: phase.colour},
      svg("title", {text: `${phase.phase.replaceAll("_", " ")} from ${phase.first_observed}`})));
    chart.append(svg("text", {x: x(start) + 2, y: 13, text: phase.phase.replaceAll("_", " ")}));
  });
  dates.forEach((date, i) => {
    const observed = Boolean(auto.footprints[i]);
    const cloudy = state.map.dates[i].cloudy;
    chart.append(svg("circle", {class: "obs", cx: x(date), cy: 44, r: 4, fill: observed ? state.site.colour : "#fff", stroke: cloudy ? "#9aa4ad" : "#333", onclick: () => setDate(i)},
      svg("title", {text: `${date}${observed ? ": footprint observed" : ""}${cloudy ? " (cloudy)" : ""}`})));
  });
  const now = x(dates[state.t]);
  chart.append(svg("line", {class: "now", x1: now, x2: now, y1: 14, y2: 52}));
  chart.append(svg("text", {x: left, y: 70, text: dates[0]}), svg("text", {x: right, y: 70, "text-anchor": "end", text: dates[dates.length - 1]}));
  box.replaceChildren(chart);
}

function drawCompare() {
  const site = state.site;
  const box = $("compare");
  const dates = state.map.dates.map((d) => d.date);
  const frames = site.frames;
  const choose = (which) => {
    const select = el("select", {"aria-label": `${which} date`, "data-role": which});
    for (const [i, date] of dates.entries()) {
      const cloud = frames.obscured[i] > 0.1 ? ` (cloud ${Math.round(100 * frames.obscured[i])} %)` : "";
      select.append(el("option", {value: date, text: date + cloud}));
    }
    select.value = state.compare[which] || dates[0];
    select.addEventListener("change", () => { state.compare[which] = select.value; drawCompare(); });
    return select;
  };
  const mode = (value, label) => {
    const input = el("input", {type: "radio", name: "compare-mode", value, checked: state.compare.mode === value});
    input.addEventListener("change", () => { state.compare.mode = value; drawCompare(); });
    return el("label", {}, input, ` ${label}`);
  };
  const controls = el("div", {class: "compare-controls"},
    el("label", {}, "Before ", choose("before")), el("label", {}, "After ", choose("after")),
    mode("side", "side by side"), mode("swipe", "swipe"));
  const before = state.compare.before || dates[0];
  const after = state.compare.after || dates[dates.length - 1];
  let view;
  if (state.compare.mode === "side") {
    view = el("div", {class: "compare-side"}, frameFigure(before, "before"), frameFigure(after, "after"));
  } else {
    const top = el("div", {class: "after-layer"}, frameImage(after), frameOverlay(after));
    top.style.clipPath = `inset(0 0 0 ${state.compare.swipe}%)`;
    const range = el("input", {type: "range", min: 0, max: 100, value: state.compare.swipe, class: "swipe-range", "aria-label": "Swipe position"});
    range.addEventListener("input", () => {
      state.compare.swipe = Number(range.value);
      top.style.clipPath = `inset(0 0 0 ${range.value}%)`;
    });
    view = el("div", {class: "compare-swipe"},
      el("div", {class: "frame"}, frameImage(before), frameOverlay(before), top), range,
      el("p", {class: "hint", text: `left: ${before} · right: ${after}; drag the slider to swipe`}));
  }
  box.replaceChildren(controls, view,
    el("p", {class: "hint", text: "Frames share one contrast stretch, so brightness changes are real; dashed: the site's footprint on that date."}));
}

function frameImage(date) {
  return el("img", {src: `/api/sites/${enc(state.site.site_id)}/frames/${date}.png`, alt: `${state.site.site_id} on ${date}`, "data-date": date,
    onload: (event) => { event.target.dataset.loaded = "yes"; }});
}

function frameOverlay(date) {
  const f = state.site.frames;
  const overlay = svg("svg", {viewBox: `${f.x} ${f.y} ${f.width} ${f.height}`, preserveAspectRatio: "none"});
  const i = state.map.dates.findIndex((d) => d.date === date);
  const d = state.site.automatic.footprints[i];
  if (d) overlay.append(svg("path", {d, fill: "none", stroke: state.site.colour, "stroke-width": 2, "stroke-dasharray": "5 3", "vector-effect": "non-scaling-stroke"}));
  return overlay;
}

function frameFigure(date, which) {
  const i = state.map.dates.findIndex((d) => d.date === date);
  const cloud = state.site.frames.obscured[i];
  return el("figure", {class: `frame-${which}`},
    el("div", {class: "frame"}, frameImage(date), frameOverlay(date)),
    el("figcaption", {text: `${which}: ${date}${cloud > 0.1 ? ` (cloud ${Math.round(100 * cloud)} %)` : ""}`}));
}

// -- analyst records --------------------------------------------------------------------------
const KINDS = {
  assessments: {title: "Assessments", one: "assessment", id: "assessment_id"},
  events: {title: "Collateral events", one: "event", id: "event_id"},
  notes: {title: "Notes", one: "note", id: "note_id"},
};

function analystSection(site) {
  const section = el("section", {class: "analyst", id: "analyst"},
    el("h3", {}, el("span", {class: "kind-label", text: "Analyst"}), "Human judgement recorded by analysts"));
  const canWrite = state.info.writable && Boolean(state.token);
  if (!state.info.writable) {
    section.append(el("p", {class: "write-note", text: "Read-only viewer: start 'sitewatch serve --write' to record assessments, events and notes."}));
  } else if (!state.token) {
    section.append(el("p", {class: "write-note", text: "Enter the token printed when the viewer started (top right) to add or change records."}));
  }
  for (const kind of Object.keys(KINDS)) {
    const records = site.analyst[kind];
    section.append(el("h4", {text: `${KINDS[kind].title} (${records.length})`}));
    const list = el("ul", {class: "records", "data-kind": kind});
    for (const record of records) list.append(recordItem(kind, record, canWrite));
    if (!records.length) list.append(el("li", {class: "empty", text: `No ${KINDS[kind].title.toLowerCase()} yet.`}));
    section.append(list);
    if (state.info.writable) section.append(recordForm(kind, canWrite));
  }
  return section;
}

function recordItem(kind, record, canWrite) {
  const item = el("li", {class: "record", "data-id": record[KINDS[kind].id]});
  if (state.editing[kind] && state.editing[kind][KINDS[kind].id] === record[KINDS[kind].id]) item.classList.add("editing");
  if (kind === "assessments") {
    item.append(el("div", {}, el("strong", {text: record.judgement}), ` — ${record.confidence_text}`),
      el("div", {class: "meta", text: `${record.author || "unknown author"} · assessed ${record.assessed} · ${record.assessment_id}`}));
    if (record.notes) item.append(el("p", {text: record.notes}));
  } else if (kind === "events") {
    item.append(el("div", {}, el("strong", {text: record.kind.replaceAll("_", " ")}), ` on ${record.occurred}`));
    if (record.description) item.append(el("p", {text: record.description}));
    const source = el("div", {class: "meta"}, `source: ${record.source || "–"}`);
    if (record.url) source.append(" · ", el("a", {href: record.url, target: "_blank", rel: "noopener noreferrer", text: "link"}));
    source.append(` · credibility: ${record.credibility || "not rated"} · ${record.author || "unknown author"}`);
    item.append(source);
  } else {
    item.append(el("p", {text: record.text}),
      el("div", {class: "meta", text: `${record.author || "unknown author"} · ${record.created_at}`}));
  }
  if (canWrite) {
    const actions = el("div", {class: "actions"});
    if (kind !== "notes") {
      actions.append(el("button", {type: "button", text: "Edit", onclick: () => { state.editing[kind] = record; renderSite(); }}));
    }
    const remove = el("button", {type: "button", class: "danger", text: "Delete"});
    remove.addEventListener("click", () => {
      if (remove.dataset.armed) deleteRecord(kind, record);
      else { remove.dataset.armed = "yes"; remove.textContent = "Confirm delete"; }
    });
    actions.append(remove);
    item.append(actions);
  }
  return item;
}

function recordForm(kind, canWrite) {
  const editing = state.editing[kind] || null;
  const author = localStorage.getItem(AUTHOR_KEY) || "";
  const fields = [];
  const field = (name, label, control) => {
    control.name = name;
    control.id = `${kind}-${name}`;
    fields.push(el("label", {for: control.id, text: label}), control);
  };
  const value = (name, fallback = "") => (editing && editing[name] !== null && editing[name] !== undefined ? String(editing[name]) : fallback);
  const options = (values, current, blank) => {
    const select = el("select");
    if (blank) select.append(el("option", {value: "", text: blank}));
    for (const v of values) select.append(el("option", {value: v, text: v.replaceAll("_", " ")}));
    select.value = current;
    return select;
  };
  if (kind === "assessments") {
    field("judgement", "Judgement", el("textarea", {required: true, placeholder: "e.g. a military logistics compound", text: value("judgement")}));
    const terms = state.info.confidence_terms.map((c) => c.term);
    const select = options(terms, value("confidence", "likely"));
    for (const [i, option] of [...select.options].entries()) {
      const c = state.info.confidence_terms[i];
      option.textContent = `${c.term} (${Math.round(100 * c.low)}-${Math.round(100 * c.high)} %)`;
    }
    field("confidence", "Confidence", select);
    field("assessed", "Assessed on", el("input", {type: "date", value: value("assessed")}));
    field("notes", "Notes", el("textarea", {text: value("notes")}));
  } else if (kind === "events") {
    field("occurred", "Occurred", el("input", {required: true, placeholder: "2019-05-15 or 2019-05-15T08:30Z", value: value("occurred")}));
    field("kind", "Kind", options(state.info.event_kinds, value("kind", "other"), null));
    field("description", "Description", el("textarea", {text: value("description")}));
    field("source", "Source", el("input", {value: value("source")}));
    field("url", "URL", el("input", {type: "url", placeholder: "https://…", value: value("url")}));
    field("credibility", "Credibility", options(state.info.credibility, value("credibility"), "not rated"));
  } else {
    field("text", "Note", el("textarea", {required: true, text: value("text")}));
  }
  field("author", "Author", el("input", {value: value("author", author)}));
  const verb = editing ? "Save changes" : `Add ${KINDS[kind].one}`;
  const actions = el("div", {class: "form-actions"}, el("button", {type: "submit", text: verb}));
  if (editing) actions.append(el("button", {type: "button", text: "Cancel", onclick: () => { delete state.editing[kind]; renderSite(); }}));
  const form = el("form", {class: "record-form", "data-kind": kind, "aria-label": verb}, ...fields, actions);
  form.addEventListener("submit", (event) => { event.preventDefault(); saveRecord(kind, form, editing); });
  return el("fieldset", {disabled: !canWrite}, form);
}

async function saveRecord(kind, form, editing) {
  const data = {};
  for (const control of form.elements) {
    if (!control.name) continue;
    const text = control.value.trim();
    data[control.name] = text === "" ? null : text;
  }
  if (data.author) localStorage.setItem(AUTHOR_KEY, data.author);
  try {
    if (editing) {
      await api(`/api/${kind}/${enc(editing[KINDS[kind].id])}`, {method: "PUT", body: data, version: editing.version});
      message(`${KINDS[kind].one} ${editing[KINDS[kind].id]} saved`);
    } else {
      const fields = Object.fromEntries(Object.entries(data).filter(([, v]) => v !== null));
      if (kind === "notes") fields.subject = state.site.site_id;
      else fields.site_id = state.site.site_id;
      const record = await api(`/api/${kind}`, {method: "POST", body: fields});
      message(`${KINDS[kind].one} ${record[KINDS[kind].id]} added`);
    }
    delete state.editing[kind];
    await reloadSite();
  } catch (error) {
    await writeFailed(error);
  }
}

async function deleteRecord(kind, record) {
  try {
    await api(`/api/${kind}/${enc(record[KINDS[kind].id])}`, {method: "DELETE", version: record.version});
    message(`${KINDS[kind].one} ${record[KINDS[kind].id]} deleted`);
    if (state.editing[kind] && state.editing[kind][KINDS[kind].id] === record[KINDS[kind].id]) delete state.editing[kind];
    await reloadSite();
  } catch (error) {
    await writeFailed(error);
  }
}

async function writeFailed(error) {
  message(error.message, true);
  if (error.status === 401) {
    state.token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    showMode();
    renderSite();
  } else if (error.status === 409 || error.status === 404) {
    // Someone changed the record meanwhile: show what is stored now, keep the message.
    state.editing = {};
    await reloadSite();
  }
}

start();
