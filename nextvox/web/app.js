// nextvox web page: plain JavaScript over the HTTP API (/api/...), no build step.
// A player: pick a track (keyboard or pointer), hear it and the voices alike one after the
// other; a queue (radio, voice path, recommendations) plays through, the player stays on screen.
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE_SIZE = 50;
// Categorical colours, each at least 4.5:1 against the page's background (light and dark); the
// eleven largest groups get one each, smaller groups share the last (grey).
const PALETTE = {
  light: ["#1f5fa8", "#c2410c", "#15803d", "#7e3fb0", "#b91c1c", "#0e7490", "#a16207", "#be185d", "#4d7c0f", "#6b4f2a", "#4338ca", "#475569"],
  dark: ["#7fb2f0", "#fb923c", "#4ade80", "#c4a1ff", "#f87171", "#22d3ee", "#facc15", "#f472b6", "#a3e635", "#d6a86c", "#a5b4fc", "#cbd5e1"],
};
const OTHER_GROUP = "other";
const state = {
  selected: null,          // the track whose voices alike are shown
  query: null,             // what the results answer: {kind: "track"|"history"|"upload", label, paths}
  results: [],             // the recommendations shown
  radio: [],               // the radio or voice path shown
  queue: [], position: -1, // what plays, and where in it
  history: [],             // tracks of the listening history
  page: 0, total: 0,       // paging of the track list
  points: [], hidden: new Set(), focusedPoint: -1, colours: new Map(),
  uploadResults: [], uploadName: null,
  hasPath: false,
};

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
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function label(track) {
  const who = track.artist || "unknown artist";
  return `${who} — ${track.title || track.path.split("/").pop()}`;
}

function announce(text) {
  $("announcer").textContent = "";
  setTimeout(() => { $("announcer").textContent = text; }, 50); // a change the screen reader hears
}

function showError(where, error) {
  where.replaceChildren(element("li", { class: "error", role: "alert" }, String(error.message || error)));
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

// The voice path control shows only when the server has the route.
async function detectPath() {
  try {
    const schema = await api("/openapi.json");
    state.hasPath = Boolean(schema.paths && schema.paths["/api/path"]);
  } catch (error) {
    state.hasPath = false;
  }
  $("path-controls").hidden = !state.hasPath;
}

// ---- lists of tracks: one button per track (Enter and Space work), ＋ adds it to the history --
function trackItem(track, { details = null, current = false } = {}) {
  const pick = element("button", { type: "button", class: "pick", dataset: { path: track.path },
    "aria-current": current ? "true" : null },
  element("span", { class: "title" }, label(track)), details);
  const add = element("button", { type: "button", class: "add", title: "add to the listening history",
    "aria-label": `add ${label(track)} to the listening history` }, "+");
  add.addEventListener("click", () => addToHistory(track));
  pick.addEventListener("click", () => pickTrack(track));
  return element("li", { class: "item", dataset: { path: track.path } }, pick, add);
}

// ---- the library: server-side search, paged ------------------------------------------------
let searchTimer = null;
async function loadTracks() {
  const q = encodeURIComponent($("search").value.trim());
  try {
    const page = await api(`/api/tracks?status=analyzed&limit=${PAGE_SIZE}&offset=${state.page * PAGE_SIZE}&q=${q}`);
    state.total = page.total;
    $("track-list").replaceChildren(...page.tracks.map((t) => {
      const item = trackItem(t, { details: element("span", { class: "sub" }, t.genre || t.path) });
      item.classList.add("track");
      return item;
    }));
    if (!page.tracks.length) $("track-list").replaceChildren(element("li", { class: "note" }, "no track matches"));
    const first = page.total ? state.page * PAGE_SIZE + 1 : 0, last = state.page * PAGE_SIZE + page.tracks.length;
    $("track-count").textContent = `${first}–${last} of ${page.total.toLocaleString()} tracks`;
    $("previous-page").disabled = state.page === 0;
    $("next-page").disabled = last >= page.total;
    markSelected();
  } catch (error) {
    showError($("track-list"), error);
  }
}

function markSelected() {
  document.querySelectorAll("#track-list .pick").forEach((b) => {
    b.setAttribute("aria-pressed", String(Boolean(state.selected) && b.dataset.path === state.selected.path));
  });
}

// ---- player and queue -----------------------------------------------------------------------
function playQueue(tracks, start = 0) {
  state.queue = tracks.slice();
  playAt(start);
}

function playAt(index) {
  if (index < 0 || index >= state.queue.length) return;
  state.position = index;
  const track = state.queue[index], player = $("player");
  if (player.dataset.path !== track.path) {
    player.dataset.path = track.path;
    player.src = track.audio_url;
    player.play().catch(() => {}); // autoplay may be refused until the user interacts
  }
  $("now-playing").textContent = label(track);
  renderQueue();
}

// Replace what follows the song playing, without touching the song itself.
function queueAfterCurrent(tracks) {
  const current = state.queue[state.position];
  state.queue = current ? [current, ...tracks.filter((t) => t.path !== current.path)] : tracks.slice();
  state.position = current ? 0 : -1;
  if (!current && state.queue.length) playAt(0); else renderQueue();
}

function renderQueue() {
  const n = state.queue.length;
  $("queue-position").textContent = n ? `song ${state.position + 1} of ${n} in the queue` : "";
  $("previous-track").disabled = state.position <= 0;
  $("next-track").disabled = state.position >= n - 1;
  $("export-m3u8").disabled = $("export-xspf").disabled = !n;
  $("queue").replaceChildren(...state.queue.map((t, i) => {
    const button = element("button", { type: "button", class: "pick", "aria-current": i === state.position ? "true" : null },
      element("span", { class: "title" }, label(t)));
    button.addEventListener("click", () => playAt(i));
    return element("li", { class: "item" }, button);
  }));
}

// ---- picking a track: it plays, its voices alike follow it in the queue ----------------------
async function pickTrack(track) {
  state.selected = track;
  state.query = { kind: "track", label: label(track), paths: [track.path] };
  $("radio-button").disabled = false;
  updatePathButton();
  markSelected();
  drawMap();
  playQueue([track]);
  announce(`playing ${label(track)}`);
  const answer = await refreshResults();
  if (answer && state.selected === track) queueAfterCurrent(answer.results);
}

function filtersIn() {
  const words = (id) => $(id).value.split(",").map((w) => w.trim()).filter(Boolean);
  return {
    exclude_query_artists: $("filter-exclude-query-artist").checked,
    exclude_artists: words("filter-exclude-artists"),
    genres: words("filter-genre"),
    gender: $("filter-gender").value || null,
  };
}

function diversityIn() {
  const cap = Number($("filter-per-artist").value);
  return { mmr_lambda: 1 - Number($("filter-variety").value), per_artist: cap > 0 ? cap : null };
}

function melodyWeight() {
  return Number($("melody-weight").value);
}

// New results for the current query (a pick, the history); the song playing goes on.
async function refreshResults() {
  if (!state.query || state.query.kind === "upload") {
    if (state.query && state.query.kind === "upload") return uploadAgain();
    return null;
  }
  try {
    const answer = await api("/api/recommend", {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ history: state.query.paths.map((path) => ({ path })), k: 10, w_melody: melodyWeight(),
        filters: filtersIn(), diversity: diversityIn() }),
    });
    showResults(answer, state.query.label);
    return answer;
  } catch (error) {
    showError($("recommendations"), error);
    return null;
  }
}

function percent(value) {
  return `${Math.round(value)}%`;
}

function resultDetails(r) {
  const parts = [];
  if (r.voice_percent !== null && r.voice_percent !== undefined) parts.push(`voice ${percent(r.voice_percent)}`);
  if (r.melody_percent !== null && r.melody_percent !== undefined) parts.push(`melody ${percent(r.melody_percent)}`);
  return element("span", { class: "details" },
    element("span", { class: "scores" }, parts.join(" · ")),
    element("span", { class: "reason" }, r.reason),
    element("span", { class: "tags" }, ...r.tags.map((tag) => element("span", { class: "tag" }, tag))));
}

function showResults(answer, what) {
  state.results = answer.results;
  const items = answer.results.map((r) => {
    const item = trackItem(r, { details: resultDetails(r) });
    item.classList.add("rec");
    return item;
  });
  for (const note of answer.notes) items.push(element("li", { class: "note" }, note));
  $("recommendations").replaceChildren(...items);
  if (!answer.results.length) $("recommendations").replaceChildren(element("li", { class: "note" }, "nothing to recommend"));
  $("results-for").textContent = `${answer.results.length} voices like ${what}`;
  $("play-recommendations").disabled = !answer.results.length;
  announce(`${answer.results.length} voices like ${what}`);
  if (window.matchMedia("(max-width: 1000px)").matches) $("results-title").scrollIntoView({ block: "nearest" });
}

// ---- listening history ----------------------------------------------------------------------
function addToHistory(track) {
  if (state.history.some((t) => t.path === track.path)) return;
  state.history.push(track);
  renderHistory();
  announce(`${label(track)} added to the history (${state.history.length} tracks)`);
}

function renderHistory() {
  $("history").replaceChildren(...state.history.map((t, i) => {
    const remove = element("button", { type: "button", class: "add", "aria-label": `remove ${label(t)} from the history` }, "-");
    remove.addEventListener("click", () => { state.history.splice(i, 1); renderHistory(); });
    return element("li", { class: "item" }, element("span", { class: "title history-title" }, label(t)), remove);
  }));
  $("history-recommend").disabled = $("history-clear").disabled = !state.history.length;
}

async function recommendFromHistory() {
  if (!state.history.length) return;
  const n = state.history.length;
  state.query = { kind: "history", label: `your history (${n} track${n === 1 ? "" : "s"})`, paths: state.history.map((t) => t.path) };
  const answer = await refreshResults();
  if (answer) playQueue(answer.results);
}

// ---- voices like mine: the upload is its own card ------------------------------------------
let uploaded = null;
async function upload(file) {
  uploaded = file;
  state.query = { kind: "upload", label: file.name, paths: [] };
  return uploadAgain();
}

async function uploadAgain() {
  const file = uploaded;
  if (!file) return null;
  $("upload-status").textContent = `listening to ${file.name}…`;
  const filters = filtersIn(), diversity = diversityIn();
  const params = new URLSearchParams({ k: "10", w_melody: String(melodyWeight()), filename: file.name,
    per_artist: String(diversity.per_artist || 0), mmr_lambda: String(diversity.mmr_lambda) });
  if (filters.gender) params.set("gender", filters.gender);
  for (const genre of filters.genres) params.append("genre", genre);
  try {
    const answer = await api(`/api/query?${params}`,
      { method: "POST", body: file, headers: { "content-type": file.type || "application/octet-stream" } });
    $("upload-status").textContent = `voices like ${file.name}: ${answer.results.length} found`;
    state.uploadResults = answer.results;
    $("your-recording").hidden = false;
    $("your-recording-name").textContent = `${file.name}: ${answer.results.length} voices alike, the closest ${
      answer.results.length ? label(answer.results[0]) : "none"}`;
    $("your-recording-radio").disabled = $("your-recording-play").disabled = !answer.results.length;
    showResults(answer, `your recording ${file.name}`);
    return answer;
  } catch (error) {
    $("upload-status").textContent = `could not use ${file.name}: ${error.message}`;
    return null;
  }
}

// ---- radio and voice path ---------------------------------------------------------------------
async function startRadio(seeds, what) {
  try {
    const answer = await api("/api/radio", {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ seeds, n: 20, filters: filtersIn() }),
    });
    showRadio(answer.tracks, `radio from ${what}`);
    queueAfterCurrent(answer.tracks);
  } catch (error) {
    showError($("radio-list"), error);
  }
}

function showRadio(tracks, what) {
  state.radio = tracks;
  $("radio-list").replaceChildren(...tracks.map((r) => {
    const details = element("span", { class: "details" }, element("span", { class: "reason" }, r.reason));
    return trackItem(r, { details });
  }));
  if (!tracks.length) $("radio-list").replaceChildren(element("li", { class: "note" }, "no songs for this radio"));
  $("radio-title").textContent = `Radio: ${what}`;
  announce(`${what}: ${tracks.length} songs queued`);
}

function updatePathButton() {
  $("path-button").disabled = !state.selected || !$("path-end").value.trim();
}

async function makePath() {
  if (!state.selected) return;
  try {
    const found = await api(`/api/tracks?status=analyzed&limit=1&q=${encodeURIComponent($("path-end").value.trim())}`);
    if (!found.tracks.length) throw new Error(`no track matches "${$("path-end").value.trim()}"`);
    const end = found.tracks[0];
    const answer = await api("/api/path", {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ start: state.selected.path, end: end.path, n: 10, filters: filtersIn() }),
    });
    showRadio(answer.tracks, `voice path to ${label(end)}`);
    queueAfterCurrent(answer.tracks.filter((t) => t.path !== state.selected.path));
  } catch (error) {
    showError($("radio-list"), error);
  }
}

// ---- export: the queue as a playlist that travels -----------------------------------------
async function exportPlaylist(format) {
  const locations = $("export-locations").value, prefix = $("export-prefix").value.trim();
  const request = { paths: state.queue.map((t) => t.path), format, title: "nextvox queue", locations };
  if (locations === "prefix") request.prefix = prefix;
  const response = await fetch("/api/playlists/export", {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(request),
  });
  if (!response.ok) { announce(`export failed: ${(await response.json()).error}`); return; }
  const link = element("a", { href: URL.createObjectURL(await response.blob()), download: `nextvox-queue.${format}` });
  document.body.append(link);
  link.click();
  link.remove();
}

// ---- map: categorical colours, tooltips, a legend that filters, keyboard steps ----------------
function theme() {
  return window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

function assignColours() {
  const key = $("color-by").value, sizes = new Map();
  for (const p of state.points) sizes.set(groupOf(p, key), (sizes.get(groupOf(p, key)) || 0) + 1);
  const ranked = [...sizes.keys()].sort((a, b) => sizes.get(b) - sizes.get(a) || a.localeCompare(b));
  const colours = PALETTE[theme()];
  state.colours = new Map(ranked.map((g, i) => [g, i < colours.length - 1 ? colours[i] : colours[colours.length - 1]]));
  state.groupSizes = sizes;
  state.groupOrder = ranked;
}

function groupOf(point, key = $("color-by").value) {
  return point[key] || "unknown";
}

function visiblePoints() {
  return state.points.filter((p) => !state.hidden.has(groupOf(p)));
}

function mapLayout(canvas) {
  const xs = state.points.map((p) => p.x), ys = state.points.map((p) => p.y);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const margin = 24, w = canvas.width - 2 * margin, h = canvas.height - 2 * margin;
  return (p) => [margin + ((p.x - x0) / (x1 - x0 || 1)) * w, margin + (1 - (p.y - y0) / (y1 - y0 || 1)) * h];
}

function cssPixels(canvas) {
  return canvas.width / (canvas.getBoundingClientRect().width || canvas.width); // canvas pixels per CSS pixel
}

function drawMap() {
  const canvas = $("map"), context = canvas.getContext("2d"), style = getComputedStyle(document.body);
  context.clearRect(0, 0, canvas.width, canvas.height);
  if (!state.points.length) return;
  const place = mapLayout(canvas), scale = cssPixels(canvas);
  const radius = 5 * scale, ink = style.getPropertyValue("--ink").trim() || "#111";
  const focused = state.points[state.focusedPoint];
  for (const p of visiblePoints()) {
    const [x, y] = place(p);
    context.fillStyle = state.colours.get(groupOf(p)) || "#777";
    context.beginPath(); context.arc(x, y, radius, 0, 2 * Math.PI); context.fill();
    context.lineWidth = scale; context.strokeStyle = ink; context.stroke();
    const mark = (state.selected && p.path === state.selected.path) || p === focused;
    if (mark) {
      context.strokeStyle = ink; context.lineWidth = 2.5 * scale;
      context.beginPath(); context.arc(x, y, radius + 4 * scale, 0, 2 * Math.PI); context.stroke();
    }
  }
}

function renderLegend() {
  $("legend").replaceChildren(...state.groupOrder.slice(0, 40).map((g) => {
    const shown = !state.hidden.has(g);
    const button = element("button", { type: "button", class: "legend-item", "aria-pressed": String(shown),
      "aria-label": `${g}: ${state.groupSizes.get(g)} songs, ${shown ? "shown" : "hidden"}` },
    element("span", { class: "swatch", style: `background:${state.colours.get(g)}` }), `${g} (${state.groupSizes.get(g)})`);
    button.addEventListener("click", () => {
      if (state.hidden.has(g)) state.hidden.delete(g); else state.hidden.add(g);
      renderLegend(); drawMap(); renderMapList();
      announce(`${g} ${state.hidden.has(g) ? "hidden" : "shown"} on the map`);
    });
    return element("li", {}, button);
  }));
}

function renderMapList() {
  if (!$("map-list-box").open) return;
  const points = visiblePoints().slice(0, 500);
  $("map-list").replaceChildren(...points.map((p) =>
    trackItem(p, { details: element("span", { class: "sub" }, groupOf(p)) })));
}

async function loadMap() {
  try {
    const map = await api("/api/map?limit=5000");
    state.points = map.points;
    state.hidden.clear();
    const share = map.explained_variance.map((v) => `${Math.round(v * 100)}%`).join(" + ");
    $("map-caption").textContent = `${map.points.length} of ${map.n_total} tracks · ${map.projection.toUpperCase()} of the voice vectors (${share} of the variance)`;
    recolour();
  } catch (error) {
    $("map-caption").textContent = `no map: ${error.message}`;
  }
}

function recolour() {
  state.hidden.clear();
  assignColours(); renderLegend(); drawMap(); renderMapList();
}

// The visible point nearest a pointer position (CSS pixels), within a finger's or a mouse's reach.
function pointAt(event) {
  const canvas = $("map"), box = canvas.getBoundingClientRect(), scale = cssPixels(canvas);
  const x = (event.clientX - box.left) * scale, y = (event.clientY - box.top) * scale;
  const reach = (window.matchMedia("(pointer: coarse)").matches ? 22 : 12) * scale;
  const place = mapLayout(canvas);
  let best = null, bestDistance = reach ** 2;
  for (const p of visiblePoints()) {
    const [px, py] = place(p), d = (px - x) ** 2 + (py - y) ** 2;
    if (d < bestDistance) { best = p; bestDistance = d; }
  }
  return best;
}

function showTooltip(point) {
  const tip = $("map-tooltip");
  if (!point) { tip.hidden = true; return; }
  const canvas = $("map"), [px, py] = mapLayout(canvas)(point), scale = cssPixels(canvas);
  tip.textContent = `${label(point)} · ${groupOf(point)}`;
  tip.style.left = `${px / scale + 12}px`;
  tip.style.top = `${py / scale + 12}px`;
  tip.hidden = false;
}

function stepMap(direction) {
  const points = visiblePoints();
  if (!points.length) return;
  const order = points.slice().sort((a, b) => a.x - b.x || a.y - b.y);
  const current = order.indexOf(state.points[state.focusedPoint]);
  const next = order[(current + direction + order.length) % order.length];
  state.focusedPoint = state.points.indexOf(next);
  drawMap();
  showTooltip(next);
  announce(`${label(next)}, ${groupOf(next)}`);
}

function mapKeys(event) {
  const steps = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 };
  if (event.key in steps) { event.preventDefault(); stepMap(steps[event.key]); }
  else if ((event.key === "Enter" || event.key === " ") && state.points[state.focusedPoint]) {
    event.preventDefault(); pickTrack(state.points[state.focusedPoint]);
  } else if (event.key === "Escape") showTooltip(null);
}

// ---- wiring ------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  $("search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { state.page = 0; loadTracks(); }, 200);
  });
  $("previous-page").addEventListener("click", () => { state.page = Math.max(0, state.page - 1); loadTracks(); });
  $("next-page").addEventListener("click", () => { state.page += 1; loadTracks(); });
  $("history-recommend").addEventListener("click", recommendFromHistory);
  $("history-clear").addEventListener("click", () => { state.history = []; renderHistory(); });
  $("upload").addEventListener("change", (event) => { if (event.target.files[0]) upload(event.target.files[0]); });
  $("your-recording-play").addEventListener("click", () => playQueue(state.uploadResults));
  $("your-recording-radio").addEventListener("click", () => {
    const seeds = state.uploadResults.slice(0, 3).map((r) => r.path);
    if (seeds.length) startRadio(seeds, `your recording ${state.uploadName || ""}`.trim());
  });
  $("upload").addEventListener("change", (event) => { state.uploadName = event.target.files[0] ? event.target.files[0].name : null; });
  $("play-recommendations").addEventListener("click", () => playQueue(state.results));
  $("radio-button").addEventListener("click", () => { if (state.selected) startRadio([state.selected.path], label(state.selected)); });
  $("path-end").addEventListener("input", updatePathButton);
  $("path-button").addEventListener("click", makePath);
  $("export-m3u8").addEventListener("click", () => exportPlaylist("m3u8"));
  $("export-xspf").addEventListener("click", () => exportPlaylist("xspf"));
  $("export-locations").addEventListener("change", () => {
    document.querySelectorAll(".prefix-field").forEach((node) => { node.hidden = $("export-locations").value !== "prefix"; });
  });
  $("previous-track").addEventListener("click", () => playAt(state.position - 1));
  $("next-track").addEventListener("click", () => playAt(state.position + 1));
  $("player").addEventListener("ended", () => {
    if (state.position < state.queue.length - 1) playAt(state.position + 1); else announce("end of the queue");
  });
  $("color-by").addEventListener("change", recolour);
  $("melody-weight").addEventListener("change", () => { $("melody-weight-value").textContent = melodyWeight(); refreshResults(); });
  $("filter-variety").addEventListener("change", () => { $("filter-variety-value").textContent = $("filter-variety").value; refreshResults(); });
  for (const id of ["filter-gender", "filter-genre", "filter-exclude-artists", "filter-exclude-query-artist", "filter-per-artist"]) {
    $(id).addEventListener("change", refreshResults);
  }
  $("map").addEventListener("click", (event) => { const p = pointAt(event); if (p) pickTrack(p); });
  $("map").addEventListener("mousemove", (event) => showTooltip(pointAt(event)));
  $("map").addEventListener("mouseleave", () => showTooltip(null));
  $("map").addEventListener("keydown", mapKeys);
  $("map").addEventListener("blur", () => showTooltip(null));
  $("map-list-box").addEventListener("toggle", renderMapList);
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => { assignColours(); renderLegend(); drawMap(); });
  loadHealth();
  loadTracks();
  loadMap();
  detectPath();
});
