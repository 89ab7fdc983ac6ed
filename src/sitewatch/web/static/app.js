// sitewatch viewer: map of an AOI in its stack's UTM grid, drawn by OpenLayers (the global `ol`,
// with proj4js for the grid's CRS and GeographicLib's `geodesic` for measuring, all three
// served from the installed package): imagery and change layers as tiles of the server's tile
// grid, sites, places and borders as vector layers; time slider, two-date comparison (swipe,
// side by side), cursor readout, geodesic measuring, permalink; site panel with automatic
// findings and analyst records. Every text from the workspace goes into the page through
// textContent or OpenLayers' canvas text, never as HTML.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const TOKEN_KEY = "sitewatch-token";
const AUTHOR_KEY = "sitewatch-author";
const OVERZOOM = 3;            // view levels finer than the stack's pixel (each halves it)
const CHANGE_OPACITY = 0.75;
const GEOD = geodesic.Geodesic.WGS84;

const state = {
  info: null,        // /api/workspace
  map: null,         // /api/aois/{aoi}
  t: 0,              // index of the date shown
  b: 0,              // index of the second date (comparison)
  mode: "single",    // comparison: single, swipe or side
  layer: "",         // change layer shown ("" for none)
  site: null,        // /api/sites/{id} of the open site
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  compare: {before: null, after: null, mode: "side", swipe: 50},
  editing: {},       // kind -> record being edited
  mapRequest: 0,     // guards against late answers after the AOI changed
};

// The OpenLayers objects of the AOI open: maps a (main) and b (side by side), their shared view,
// the projection, and the layers by name (each map has its own layer objects over shared
// sources).
const ol_ = {a: null, b: null, view: null, projection: null, grid: null, layers: {a: {}, b: {}},
             sources: {}, draw: null, rendered: {a: false, b: true}};

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

// -- address bar (the permalink) --------------------------------------------------------------
// #aoi=...&date=...&site=...&x=...&y=...&res=...&mode=...&b=...&layer=...: x, y the view's
// centre in the grid's CRS (metres), res its resolution (metres per screen pixel), b the second
// date. A #token=... is taken into this tab's session storage and removed.
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
    if (state.site) params.set("site", state.site.site_id);
    const centre = ol_.view && ol_.view.getCenter();
    if (centre) {
      params.set("x", centre[0].toFixed(1));
      params.set("y", centre[1].toFixed(1));
      params.set("res", String(Number(ol_.view.getResolution().toPrecision(6))));
    }
    if (state.mode !== "single") {
      params.set("mode", state.mode);
      params.set("b", state.map.dates[state.b].date);
    }
    if (state.layer) params.set("layer", state.layer);
  }
  history.replaceState(null, "", `#${params}`);
  $("permalink").href = location.href;
}

// -- start ------------------------------------------------------------------------------------
async function start() {
  const wanted = readHash();
  setUpMapTools();
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
  await openAoi(first.name, wanted.get("aoi") === first.name ? wanted : new URLSearchParams());
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
async function openAoi(name, wanted = new URLSearchParams()) {
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
  const index = (day) => map.dates.findIndex((d) => d.date === day);
  state.t = index(wanted.get("date")) >= 0 ? index(wanted.get("date")) : map.dates.length - 1;
  state.b = index(wanted.get("b")) >= 0 ? index(wanted.get("b")) : 0;
  state.mode = ["swipe", "side"].includes(wanted.get("mode")) ? wanted.get("mode") : "single";
  state.layer = map.change_layers.some((l) => l.name === wanted.get("layer")) ? wanted.get("layer") : "";
  $("map").dataset.aoi = map.name;
  buildMaps(map);
  drawSiteTable();
  fillToolChoices();
  drawLegend();
  $("credit").textContent = map.credit ? `Imagery: ${map.credit}` : "";
  const slider = $("date-slider");
  slider.max = String(map.dates.length - 1);
  slider.value = String(state.t);
  const x = Number(wanted.get("x")), y = Number(wanted.get("y")), res = Number(wanted.get("res"));
  if (wanted.has("x") && Number.isFinite(x) && Number.isFinite(y) && res > 0) {
    ol_.view.setCenter([x, y]);
    ol_.view.setResolution(res);
  } else {
    fitView();
  }
  closeSite();
  showDate();
  showCompare();
  showChangeLayer();
  const siteId = wanted.get("site");
  if (siteId && map.sites.some((s) => s.site_id === siteId)) await openSite(siteId, false);
}

function buildMaps(map) {
  for (const which of ["a", "b"]) if (ol_[which]) ol_[which].setTarget(null);
  const tiles = map.tiles;
  const code = `EPSG:${tiles.epsg}`;
  proj4.defs(code, tiles.proj4);
  ol.proj.proj4.register(proj4);
  const projection = ol.proj.get(code);
  const grid = new ol.tilegrid.TileGrid({origin: tiles.origin, resolutions: tiles.resolutions,
                                         tileSize: tiles.tile_px, extent: tiles.extent});
  const finest = tiles.resolutions[tiles.resolutions.length - 1];
  const resolutions = [2 * tiles.resolutions[0], ...tiles.resolutions];
  for (let i = 1; i <= OVERZOOM; i++) resolutions.push(finest / 2 ** i);
  const [w, s, e, n] = tiles.extent;
  const margin = Math.max(e - w, n - s);
  const view = new ol.View({projection, resolutions, constrainResolution: true,
                            extent: [w - margin, s - margin, e + margin, n + margin], constrainOnlyCenter: true});
  Object.assign(ol_, {view, projection, grid, sources: vectorSources(map), layers: {a: {}, b: {}}});
  for (const which of ["a", "b"]) {
    const layers = ol_.layers[which];
    layers.imagery = new ol.layer.Tile({className: `imagery-${which}`});
    layers.change = new ol.layer.Tile({className: `change-${which}`, opacity: CHANGE_OPACITY, visible: false});
    const vector = (name, style, extra = {}) => new ol.layer.Vector({source: ol_.sources[name], style, ...extra});
    layers.aoi = vector("aoi", aoiStyle);
    layers.borders = vector("borders", borderStyle, {declutter: false});
    layers.sites = vector("sites", siteStyle);
    layers.footprint = vector("footprint", footprintStyle);
    layers.places = vector("places", placeStyle);
    const list = [layers.imagery];
    if (which === "a") {
      layers.swipe = new ol.layer.Tile({className: "imagery-swipe", visible: false});
      layers.swipe.on("prerender", clipSwipe);
      layers.swipe.on("postrender", (event) => event.context.restore());
      list.push(layers.swipe);
      layers.measure = vector("measure", measureStyle);
    }
    list.push(layers.change, layers.aoi, layers.borders, layers.sites, layers.footprint, layers.places);
    if (layers.measure) list.push(layers.measure);
    const olMap = new ol.Map({
      target: `map-${which}`, layers: list, view,
      controls: which === "a" ? [new ol.control.Zoom(), new ol.control.ScaleLine({units: "metric"}),
                                 new ol.control.Attribution({collapsible: false})] : [],
      interactions: ol.interaction.defaults.defaults({keyboard: false}),
    });
    olMap.on("pointermove", (event) => showReadout(event.coordinate));
    olMap.on("click", (event) => pickSite(olMap, event));
    olMap.on("pointermove", (event) => {
      olMap.getTargetElement().classList.toggle("over-site", !event.dragging && olMap.hasFeatureAtPixel(event.pixel, {layerFilter: (l) => l === layers.sites}));
    });
    ol_[which] = olMap;
  }
  // Ready: each map shown has drawn every tile of its view since the last change.
  for (const which of ["a", "b"]) {
    ol_[which].on("rendercomplete", () => {
      ol_.rendered[which] = true;
      if (ol_.rendered.a && ol_.rendered.b && state.map === map) {
        $("map").dataset.state = "ready";
        $("map").dataset.imageryDate = map.dates[state.t].date;
        $("map-status").textContent = "";
      }
    });
  }
  ol_.a.on("movestart", loading);
  ol_.a.on("moveend", () => {
    $("map").dataset.moves = String(Number($("map").dataset.moves || 0) + 1);
    writeHash();
  });
  $("map").dataset.tilesLoaded = "0";
  $("map").dataset.sites = String(map.sites.length);
}

// The vector sources of an AOI's map: features in the grid's CRS, as the server gives them.
function vectorSources(map) {
  const format = new ol.format.GeoJSON();
  const feature = (geometry, properties) => new ol.Feature({geometry: format.readGeometry(geometry), ...properties});
  const point = (x, y, properties) => new ol.Feature({geometry: new ol.geom.Point([x, y]), ...properties});
  const borders = [];
  for (const border of map.borders) {
    borders.push(feature(border.geometry, {name: border.name, role: "line"}));
    for (const side of border.sides) borders.push(point(side.x, side.y, {name: side.name, role: "side"}));
  }
  return {
    aoi: new ol.source.Vector({features: map.outline.map((g) => feature(g, {}))}),
    borders: new ol.source.Vector({features: borders}),
    sites: new ol.source.Vector({features: map.sites.map((s) => {
      const f = feature(s.geometry, {site_id: s.site_id, colour: s.colour, label: siteNumber(s.site_id)});
      f.setId(s.site_id);
      return f;
    })}),
    footprint: new ol.source.Vector(),
    places: new ol.source.Vector({features: map.places.map((p) => point(p.x, p.y, {name: p.name, kind: p.kind}))}),
    measure: new ol.source.Vector(),
  };
}

// The map changed (view, date, layers): not ready until the maps shown have drawn it.
function loading() {
  $("map").dataset.state = "loading";
  ol_.rendered = {a: false, b: state.mode !== "side"};
  ol_.a.render();
  if (state.mode === "side") ol_.b.render();
}

function tileSource(path, version) {
  const source = new ol.source.TileImage({
    projection: ol_.projection, tileGrid: ol_.grid, interpolate: false, transition: 0,
    tileUrlFunction: ([z, x, y]) => `${path}/${z}/${x}/${y}.png?v=${version}`,
    attributions: state.map.credit || undefined,
  });
  source.on("tileloadend", () => {
    $("map").dataset.tilesLoaded = String(Number($("map").dataset.tilesLoaded) + 1);
  });
  source.on("tileloaderror", () => { $("map-status").textContent = "Some tiles could not be loaded"; });
  return source;
}

function imagerySource(t) {
  const key = `imagery-${t}`;
  if (!ol_.sources[key]) ol_.sources[key] = tileSource(`/api/aois/${enc(state.map.name)}/imagery/${state.map.dates[t].date}`, state.map.tiles.version);
  return ol_.sources[key];
}

function changeSource(name) {
  const key = `change-${name}`;
  const version = state.map.change_layers.find((l) => l.name === name).version;
  if (!ol_.sources[key]) ol_.sources[key] = tileSource(`/api/aois/${enc(state.map.name)}/change/${enc(name)}`, version);
  return ol_.sources[key];
}

// -- styles -----------------------------------------------------------------------------------
const HALO = new ol.style.Stroke({color: "rgba(0, 0, 0, 0.75)", width: 3});

function label(text, options = {}) {
  return new ol.style.Text({text, font: "600 12px system-ui, sans-serif", fill: new ol.style.Fill({color: "#fff"}),
                            stroke: HALO, overflow: true, ...options});
}

function aoiStyle() {
  return new ol.style.Style({stroke: new ol.style.Stroke({color: "#fff", width: 1.5, lineDash: [6, 4]})});
}

function borderStyle(feature) {
  if (feature.get("role") === "side") {
    return new ol.style.Style({text: label(feature.get("name"), {font: "italic 12px system-ui, sans-serif",
                                                                 fill: new ol.style.Fill({color: "#ffd9d9"})})});
  }
  return [new ol.style.Style({stroke: new ol.style.Stroke({color: "rgba(255, 255, 255, 0.8)", width: 4})}),
          new ol.style.Style({stroke: new ol.style.Stroke({color: "#a30000", width: 2.2, lineDash: [8, 3]})})];
}

function siteStyle(feature) {
  const selected = state.site && state.site.site_id === feature.get("site_id");
  const colour = feature.get("colour");
  const fill = ol.color.asArray(colour).slice(0, 3).concat(selected ? 0.08 : 0.2);
  return new ol.style.Style({
    stroke: new ol.style.Stroke({color: colour, width: selected ? 3.5 : 2}),
    fill: new ol.style.Fill({color: fill}),
    text: label(feature.get("label")),
  });
}

function footprintStyle() {
  return new ol.style.Style({stroke: new ol.style.Stroke({color: "#fff", width: 2, lineDash: [4, 3]})});
}

function placeStyle(feature) {
  return new ol.style.Style({
    image: new ol.style.Circle({radius: 4, fill: new ol.style.Fill({color: "#fff"}),
                                stroke: new ol.style.Stroke({color: "#000", width: 1.5})}),
    text: label(feature.get("name"), {textAlign: "left", offsetX: 8, offsetY: -8, font: "12px system-ui, sans-serif"}),
  });
}

function measureStyle() {
  return new ol.style.Style({
    stroke: new ol.style.Stroke({color: "#ffcc00", width: 2.5}),
    fill: new ol.style.Fill({color: "rgba(255, 204, 0, 0.15)"}),
    image: new ol.style.Circle({radius: 4, fill: new ol.style.Fill({color: "#ffcc00"})}),
  });
}

function fitView(bounds = null) {
  const [w, s, e, n] = bounds || state.map.tiles.extent;
  ol_.view.fit([w, s, e, n], {size: ol_.a.getSize(), padding: [20, 20, 20, 20], nearest: false});
}

function pickSite(olMap, event) {
  if (ol_.draw) return;
  const layer = olMap === ol_.a ? ol_.layers.a.sites : ol_.layers.b.sites;
  const feature = olMap.forEachFeatureAtPixel(event.pixel, (f) => f, {layerFilter: (l) => l === layer});
  if (feature) openSite(feature.get("site_id"), false);
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
  const shown = state.map.change_layers.find((l) => l.name === state.layer);
  if (!shown) return;
  const box = el("span", {class: "change-legend", "data-layer": shown.name}, el("strong", {text: `${shown.legend.title}:`}));
  if (shown.legend.ramp) {
    const ramp = el("span", {class: "ramp"});
    ramp.style.background = `linear-gradient(to right, ${shown.legend.ramp.join(", ")})`;
    box.append(el("span", {text: shown.legend.labels[0]}), ramp, el("span", {text: shown.legend.labels[1]}));
  } else {
    for (const item of shown.legend.classes) {
      const swatch = el("span", {class: "swatch filled"});
      swatch.style.background = item.colour;
      box.append(el("span", {}, swatch, item.label));
    }
  }
  legend.append(box);
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

// -- tools: comparison, change layer, readout, measuring ---------------------------------------
function setUpMapTools() {
  $("zoom-fit").addEventListener("click", () => fitView());
  $("compare-mode").addEventListener("change", () => { state.mode = $("compare-mode").value; showCompare(); });
  $("date-b").addEventListener("change", () => { state.b = Number($("date-b").value); showCompare(); });
  $("swipe").addEventListener("input", () => { loading(); showCompareLabel(); });
  $("change-layer").addEventListener("change", () => { state.layer = $("change-layer").value; showChangeLayer(); });
  $("measure-line").addEventListener("click", () => startMeasure("LineString"));
  $("measure-area").addEventListener("click", () => startMeasure("Polygon"));
  $("measure-clear").addEventListener("click", () => {
    stopMeasure();
    ol_.sources.measure.clear();
    $("measure-output").textContent = "";
    for (const key of Object.keys($("measure-output").dataset)) delete $("measure-output").dataset[key];
  });
  new ResizeObserver(() => { for (const m of [ol_.a, ol_.b]) if (m) m.updateSize(); }).observe($("maps"));
}

function fillToolChoices() {
  const dates = $("date-b");
  dates.replaceChildren(...state.map.dates.map((d, i) => el("option", {value: String(i), text: d.date + (d.cloudy ? " \u2601" : "")})));
  dates.value = String(state.b);
  $("compare-mode").value = state.mode;
  const layers = $("change-layer");
  layers.replaceChildren(el("option", {value: "", text: "none"}),
    ...state.map.change_layers.map((l) => el("option", {value: l.name, text: l.legend.title})));
  layers.value = state.layer;
  layers.disabled = !state.map.change_layers.length;
}

function showCompare() {
  const {a, b} = ol_.layers;
  const second = imagerySource(state.b);
  const side = state.mode === "side";
  a.swipe.setSource(second);
  a.swipe.setVisible(state.mode === "swipe");
  b.imagery.setSource(second);
  $("map-b").hidden = !side;
  $("maps").classList.toggle("side", side);
  $("swipe").hidden = state.mode !== "swipe";
  $("date-b").disabled = state.mode === "single";
  $("map").dataset.compare = state.mode;
  ol_.a.updateSize();
  ol_.b.updateSize();
  loading();
  showCompareLabel();
  writeHash();
}

function showCompareLabel() {
  const box = $("compare-label");
  const a = state.map.dates[state.t].date, b = state.map.dates[state.b].date;
  box.hidden = state.mode === "single";
  box.textContent = state.mode === "swipe" ? `left: ${a} · right of the line: ${b}` : `left: ${a} · right: ${b}`;
}

// Clip the second date's layer to the right of the swipe line.
function clipSwipe(event) {
  const context = event.context;
  const [width, height] = ol_.a.getSize();
  const x = width * Number($("swipe").value) / 100;
  const tl = ol.render.getRenderPixel(event, [x, 0]);
  const tr = ol.render.getRenderPixel(event, [width, 0]);
  const bl = ol.render.getRenderPixel(event, [x, height]);
  const br = ol.render.getRenderPixel(event, [width, height]);
  context.save();
  context.beginPath();
  context.moveTo(tl[0], tl[1]);
  context.lineTo(bl[0], bl[1]);
  context.lineTo(br[0], br[1]);
  context.lineTo(tr[0], tr[1]);
  context.closePath();
  context.clip();
}

function showChangeLayer() {
  for (const which of ["a", "b"]) {
    const layer = ol_.layers[which].change;
    if (state.layer) layer.setSource(changeSource(state.layer));
    layer.setVisible(Boolean(state.layer));
  }
  loading();
  $("map").dataset.changeLayer = state.layer;
  drawLegend();
  writeHash();
}

// The cursor's position: latitude/longitude (WGS 84), the grid's UTM coordinates and MGRS.
function showReadout(coordinate) {
  const [lon, lat] = ol.proj.toLonLat(coordinate, ol_.projection);
  const epsg = state.map.tiles.epsg;
  const zone = epsg % 100;
  const utm = (epsg >= 32601 && epsg <= 32660) || (epsg >= 32701 && epsg <= 32760)
    ? `UTM ${zone}${epsg < 32700 ? "N" : "S"} ${coordinate[0].toFixed(1)} E ${coordinate[1].toFixed(1)} N`
    : `EPSG:${epsg} ${coordinate[0].toFixed(1)} ${coordinate[1].toFixed(1)}`;
  let grid = "";
  try { grid = proj4.mgrs.forward([lon, lat], 5); } catch { grid = "outside MGRS"; }
  const latText = `${Math.abs(lat).toFixed(6)}° ${lat >= 0 ? "N" : "S"}`;
  const lonText = `${Math.abs(lon).toFixed(6)}° ${lon >= 0 ? "E" : "W"}`;
  const box = $("readout");
  box.replaceChildren(el("span", {class: "lonlat", text: `${latText} ${lonText}`}),
    el("span", {class: "utm", text: utm}), el("span", {class: "mgrs", text: `MGRS ${grid}`}));
  Object.assign(box.dataset, {lat: lat.toFixed(7), lon: lon.toFixed(7), x: coordinate[0].toFixed(2),
                              y: coordinate[1].toFixed(2), mgrs: grid});
}

function startMeasure(type) {
  stopMeasure();
  const draw = new ol.interaction.Draw({source: ol_.sources.measure, type, style: measureStyle()});
  draw.on("drawstart", (event) => {
    event.feature.getGeometry().on("change", (e) => showMeasure(e.target, false));
  });
  draw.on("drawend", (event) => { showMeasure(event.feature.getGeometry(), true); setTimeout(stopMeasure, 0); });
  ol_.a.addInteraction(draw);
  ol_.draw = draw;
  $("map").dataset.measuring = type;
  $("measure-output").textContent = type === "Polygon" ? "Click the corners; double-click or Enter to finish." : "Click points; double-click or Enter to finish.";
}

function stopMeasure() {
  if (!ol_.draw) return;
  ol_.a.removeInteraction(ol_.draw);
  ol_.draw = null;
  delete $("map").dataset.measuring;
}

// Geodesic length, bearing and area on the WGS 84 ellipsoid (GeographicLib, as PROJ and
// pyproj.Geod compute them) of a measured line or polygon in the grid's CRS.
function showMeasure(geometry, done) {
  const ring = geometry.getType() === "Polygon" ? geometry.getCoordinates()[0] : geometry.getCoordinates();
  const points = ring.map((c) => ol.proj.toLonLat(c, ol_.projection));
  const box = $("measure-output");
  const data = {vertices: JSON.stringify(ring.map((c) => [c[0], c[1]])), done: done ? "yes" : ""};
  if (geometry.getType() === "Polygon") {
    const polygon = GEOD.Polygon(false);
    for (const [lon, lat] of points.slice(0, -1)) polygon.AddPoint(lat, lon);
    const result = polygon.Compute(false, true);
    const area = Math.abs(result.area);
    Object.assign(data, {areaM2: area.toFixed(2), perimeterM: result.perimeter.toFixed(3)});
    box.textContent = `Area ${formatNumber(area)} m² (${(area / 10000).toFixed(3)} ha), perimeter ${formatNumber(result.perimeter)} m`;
  } else {
    let length = 0;
    for (let i = 1; i < points.length; i++) {
      length += GEOD.Inverse(points[i - 1][1], points[i - 1][0], points[i][1], points[i][0]).s12;
    }
    const first = points[0], last = points[points.length - 1];
    const line = GEOD.Inverse(first[1], first[0], last[1], last[0]);
    const bearing = (line.azi1 + 360) % 360;
    Object.assign(data, {lengthM: length.toFixed(3), bearingDeg: bearing.toFixed(6)});
    box.textContent = `Distance ${formatNumber(length)} m, bearing ${bearing.toFixed(1)}° (true north, first to last point)`;
  }
  for (const key of Object.keys(box.dataset)) delete box.dataset[key];
  Object.assign(box.dataset, data);
}

function formatNumber(value) {
  return value.toLocaleString("en", {maximumFractionDigits: 1, minimumFractionDigits: 1});
}

// -- time -------------------------------------------------------------------------------------
function setUpTimebar() {
  const slider = $("date-slider");
  slider.addEventListener("input", () => setDate(Number(slider.value)));
  $("date-prev").addEventListener("click", () => setDate(state.t - 1));
  $("date-next").addEventListener("click", () => setDate(state.t + 1));
  document.addEventListener("keydown", (event) => {
    if (!state.map) return;
    if (ol_.draw && (event.key === "Enter" || event.key === "Escape")) {
      if (event.key === "Enter") ol_.draw.finishDrawing();
      else { ol_.draw.abortDrawing(); stopMeasure(); }
      return;
    }
    if (event.target.closest("input:not([type=range]), textarea, select")) return;
    if (event.target === slider) return;  // the slider steps itself
    if (event.key === "ArrowLeft") setDate(state.t - 1);
    else if (event.key === "ArrowRight") setDate(state.t + 1);
    else if (event.key === "Home") setDate(0);
    else if (event.key === "End") setDate(state.map.dates.length - 1);
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
  $("map-status").textContent = `Loading imagery of ${date.date}…`;
  ol_.layers.a.imagery.setSource(imagerySource(state.t));
  ol_.layers.b.imagery.setSource(imagerySource(state.b));
  loading();
  if (state.mode !== "single") showCompareLabel();
  if (state.site) drawTimeline();
  writeHash();
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
  const source = ol_.sources.footprint;
  source.clear();
  if (!state.site) return;
  const geometry = state.site.automatic.footprints[state.t];
  if (geometry) source.addFeature(new ol.Feature({geometry: new ol.format.GeoJSON().readGeometry(geometry)}));
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
  ol_.sources.sites.changed();  // restyle: the selected site stands out
  $("map").dataset.selectedSite = siteId;
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
  if (ol_.sources.sites) ol_.sources.sites.changed();
  delete $("map").dataset.selectedSite;
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
  const overlay = svg("svg", {viewBox: `0 0 ${f.width} ${f.height}`, preserveAspectRatio: "none"});
  const i = state.map.dates.findIndex((d) => d.date === date);
  const footprint = state.site.automatic.footprints[i];
  if (footprint) {
    const d = svgPath(footprint, f.west, f.north);
    overlay.append(svg("path", {d, fill: "none", stroke: state.site.colour, "stroke-width": 2, "stroke-dasharray": "5 3", "vector-effect": "non-scaling-stroke"}));
  }
  return overlay;
}

// SVG path data of a GeoJSON (multi)polygon in the grid's CRS, in metres east and south of
// (west, north): the frame's own coordinates.
function svgPath(geometry, west, north) {
  const polygons = geometry.type === "MultiPolygon" ? geometry.coordinates : [geometry.coordinates];
  return polygons.flat().map((ring) => "M" + ring.slice(0, -1).map(([x, y]) => `${(x - west).toFixed(1)} ${(north - y).toFixed(1)}`).join("L") + "Z").join("");
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
