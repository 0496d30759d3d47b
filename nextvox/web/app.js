// nextvox web page: plain JavaScript over the HTTP API (/api/...), no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { selected: null, radio: [], points: [] };

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const isJson = (response.headers.get("content-type") || "").includes("json");
  const body = isJson ? await response.json() : await response.text();
  if (!response.ok) throw new Error(isJson && body.error ? body.error : `${response.status} ${response.statusText}`);
  return body;
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "dataset") Object.assign(node.dataset, value); else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function label(track) {
  const who = track.artist || "unknown artist";
  return `${who} — ${track.title || track.path.split("/").pop()}`;
}

function showError(where, error) {
  where.replaceChildren(element("li", { class: "error" }, String(error.message || error)));
}

// ---- health --------------------------------------------------------------------------------
async function loadHealth() {
  try {
    const h = await api("/api/health");
    const counts = h.counts;
    $("status").textContent = counts.analyzed
      ? `${counts.analyzed} tracks analysed · ${h.index} search · voice model ${h.timbre_model_versions.join(", ")}`
      : "no analysed tracks yet: run `nextvox analyze LIBRARY`, then reload";
  } catch (error) {
    $("status").textContent = `server unreachable: ${error.message}`;
  }
}

// ---- tracks --------------------------------------------------------------------------------
let searchTimer = null;
async function loadTracks() {
  const q = encodeURIComponent($("search").value.trim());
  try {
    const page = await api(`/api/tracks?status=analyzed&limit=200&q=${q}`);
    $("track-list").replaceChildren(...page.tracks.map((t) =>
      element("li", { class: "track", dataset: { path: t.path }, title: t.path },
        element("span", { class: "title" }, label(t)), element("br"), element("span", { class: "sub" }, t.genre || t.path))));
    if (!page.tracks.length) $("track-list").replaceChildren(element("li", { class: "note" }, "no track matches"));
  } catch (error) {
    showError($("track-list"), error);
  }
}

function play(track) {
  $("player").src = track.audio_url;
  $("now-playing").textContent = label(track);
  $("player").play().catch(() => {}); // autoplay may be refused until the user interacts
}

async function select(path) {
  try {
    const track = await api(`/api/tracks/${encodeURI(path)}`);
    state.selected = track;
    document.querySelectorAll("#track-list li").forEach((li) => li.classList.toggle("selected", li.dataset.path === path));
    play(track);
    $("radio-button").disabled = false;
    drawMap();
    const answer = await api(`/api/similar?k=10&w_melody=${melodyWeight()}&path=${encodeURIComponent(path)}`);
    showRecommendations(answer);
  } catch (error) {
    showError($("recommendations"), error);
  }
}

// The melody's share in the score (0: voices alone); the API weighs timbre 1 beside it.
function melodyWeight() {
  return $("melody-weight").value;
}

function showRecommendations(answer) {
  const items = answer.results.map((r) =>
    element("li", { class: "rec", dataset: { path: r.path } },
      element("span", { class: "title" }, label(r)),
      element("div", { class: "reason" }, `${r.reason} · score ${r.score.toFixed(3)}` +
        (r.melody_similarity === null ? "" : ` · melody ${r.melody_similarity.toFixed(2)}`)),
      element("div", {}, ...r.tags.map((tag) => element("span", { class: "tag" }, tag)))));
  for (const note of answer.notes) items.push(element("li", { class: "note" }, note));
  $("recommendations").replaceChildren(...items);
  if (!answer.results.length) $("recommendations").replaceChildren(element("li", { class: "note" }, "nothing to recommend"));
}

// ---- upload ------------------------------------------------------------------------------
async function upload(file) {
  $("upload-status").textContent = `listening to ${file.name}…`;
  try {
    const answer = await api(`/api/query?k=10&w_melody=${melodyWeight()}&filename=${encodeURIComponent(file.name)}`,
      { method: "POST", body: file, headers: { "content-type": file.type || "application/octet-stream" } });
    $("upload-status").textContent = `voices like ${file.name}:`;
    showRecommendations(answer);
  } catch (error) {
    $("upload-status").textContent = `could not use ${file.name}: ${error.message}`;
  }
}

// ---- radio and export --------------------------------------------------------------------
async function startRadio() {
  if (!state.selected) return;
  try {
    const answer = await api("/api/radio", {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ seeds: [state.selected.path], n: 20 }),
    });
    state.radio = answer.tracks;
    $("radio-list").replaceChildren(...answer.tracks.map((r) =>
      element("li", { dataset: { path: r.path } }, element("span", { class: "title" }, label(r)),
        element("span", { class: "sub" }, ` · timbre ${r.timbre_similarity.toFixed(2)}`))));
    $("export-m3u8").disabled = $("export-xspf").disabled = !answer.tracks.length;
  } catch (error) {
    showError($("radio-list"), error);
  }
}

async function exportPlaylist(format) {
  const response = await fetch("/api/playlists/export", {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ paths: state.radio.map((r) => r.path), format, title: `nextvox radio: ${label(state.selected)}`, locations: "url" }),
  });
  if (!response.ok) { showError($("radio-list"), new Error((await response.json()).error)); return; }
  const link = element("a", { href: URL.createObjectURL(await response.blob()), download: `nextvox-radio.${format}` });
  document.body.append(link);
  link.click();
  link.remove();
}

// ---- map ---------------------------------------------------------------------------------
const palette = (name) => {
  let hash = 0;
  for (const c of String(name)) hash = (hash * 31 + c.charCodeAt(0)) >>> 0;
  return `hsl(${hash % 360}, 65%, 45%)`;
};

function mapLayout(canvas) {
  const xs = state.points.map((p) => p.x), ys = state.points.map((p) => p.y);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const margin = 24, w = canvas.width - 2 * margin, h = canvas.height - 2 * margin;
  return (p) => [margin + ((p.x - x0) / (x1 - x0 || 1)) * w, margin + (1 - (p.y - y0) / (y1 - y0 || 1)) * h];
}

function drawMap() {
  const canvas = $("map"), context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  if (!state.points.length) return;
  const key = $("color-by").value, place = mapLayout(canvas), groups = new Set();
  for (const p of state.points) {
    const [x, y] = place(p), group = p[key] || "unknown";
    groups.add(group);
    context.fillStyle = palette(group);
    context.beginPath(); context.arc(x, y, 5, 0, 2 * Math.PI); context.fill();
    if (state.selected && p.path === state.selected.path) {
      context.strokeStyle = "#111"; context.lineWidth = 2.5;
      context.beginPath(); context.arc(x, y, 9, 0, 2 * Math.PI); context.stroke();
    }
  }
  $("legend").replaceChildren(...[...groups].sort().slice(0, 40).map((g) =>
    element("li", {}, element("span", { class: "swatch", style: `background:${palette(g)}` }), g)));
}

async function loadMap() {
  try {
    const map = await api("/api/map?limit=5000");
    state.points = map.points;
    const share = map.explained_variance.map((v) => `${Math.round(v * 100)}%`).join(" + ");
    $("map-caption").textContent = `${map.points.length} of ${map.n_total} tracks · ${map.projection.toUpperCase()} of the voice vectors (${share} of the variance)`;
    drawMap();
  } catch (error) {
    $("map-caption").textContent = `no map: ${error.message}`;
  }
}

function clickMap(event) {
  const canvas = $("map"), box = canvas.getBoundingClientRect();
  const x = (event.clientX - box.left) * (canvas.width / box.width), y = (event.clientY - box.top) * (canvas.height / box.height);
  const place = mapLayout(canvas);
  let best = null, bestDistance = 12 ** 2;
  for (const p of state.points) {
    const [px, py] = place(p), d = (px - x) ** 2 + (py - y) ** 2;
    if (d < bestDistance) { best = p; bestDistance = d; }
  }
  if (best) select(best.path);
}

// ---- wiring ------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  $("search").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(loadTracks, 200); });
  for (const list of ["track-list", "recommendations", "radio-list"]) {
    $(list).addEventListener("click", (event) => {
      const item = event.target.closest("[data-path]");
      if (item) select(item.dataset.path);
    });
  }
  $("upload").addEventListener("change", (event) => { if (event.target.files[0]) upload(event.target.files[0]); });
  $("radio-button").addEventListener("click", startRadio);
  $("export-m3u8").addEventListener("click", () => exportPlaylist("m3u8"));
  $("export-xspf").addEventListener("click", () => exportPlaylist("xspf"));
  $("color-by").addEventListener("change", drawMap);
  $("melody-weight").addEventListener("change", () => {
    $("melody-weight-value").textContent = melodyWeight();
    if (state.selected) select(state.selected.path);
  });
  $("map").addEventListener("click", clickMap);
  loadHealth();
  loadTracks();
  loadMap();
});
