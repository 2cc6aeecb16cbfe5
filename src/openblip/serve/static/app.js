// The openblip web page: plain JavaScript over the server's own API (same origin, so a browser
// that authenticated for the page sends the same credentials with these requests).
"use strict";

const $ = (id) => document.getElementById(id);
let imageUrl = null; // the current image as a data URL
let caps = {};
let captionText = null; // the caption shown, for its heat map

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const r = await fetch(path, init);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((data.error && data.error.message) || `HTTP ${r.status}`);
  return data;
}

const fmt = (x, d = 3) => (x === null || x === undefined || Number.isNaN(x) ? "–" : Number(x).toFixed(d));

async function loadModel() {
  try {
    const m = (await api("/v1/models")).data[0];
    caps = m.capabilities;
    $("model").textContent = `${m.id}` + (m.scorer ? ` · scorer ${m.scorer}` : " · no scorer");
    $("search-panel").hidden = !caps.search;
    $("explain").hidden = !caps.explain;
    $("ask-form").querySelector("button").disabled = !caps.vqa;
    if (!caps.vqa) $("answer-note").textContent = caps.caption
      ? "this model captions; questions need a VQA model" : "";
    if (!caps.match) $("match-panel").querySelector("button").disabled = true;
  } catch (e) { $("model").textContent = `error: ${e.message}`; }
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function useFile(file) {
  if (!file) return;
  imageUrl = await readFile(file);
  $("preview").src = imageUrl; $("preview").hidden = false; $("drop-hint").hidden = true;
  await caption();
}

async function caption() {
  const box = $("caption"), score = $("itm-score"), err = $("caption-error");
  err.hidden = true;
  if (!caps.caption) { box.textContent = "(this model does not caption)"; box.dataset.state = "done"; return; }
  box.textContent = "captioning…"; box.dataset.state = "busy"; score.textContent = "–"; score.className = "score";
  captionText = null; $("explain-button").disabled = true; $("heatmap").hidden = true;
  $("explain-words").textContent = ""; $("explain-note").textContent = "";
  try {
    const r = (await api("/v1/caption", { images: [imageUrl] })).results[0];
    box.textContent = r.caption || "(empty caption)";
    if (r.itm_score === null) { score.textContent = "no scorer"; }
    else {
      score.textContent = fmt(r.itm_score);
      score.className = "score " + (r.itm_score < lowScore ? "low" : "ok");
    }
    captionText = r.caption;
    $("explain-button").disabled = !r.caption;
    box.dataset.state = "done";
  } catch (e) {
    box.textContent = "–"; box.dataset.state = "error"; err.textContent = e.message; err.hidden = false;
  }
  refreshQuality();
}

// A text's heat map (a low-score caption's first of all): where in the image its words are.
async function explain(text) {
  const img = $("heatmap"), err = $("explain-error");
  err.hidden = true; img.dataset.state = "busy";
  $("explain-note").textContent = `("${text}")`;
  try {
    const r = (await api("/v1/explain", { images: [imageUrl], text })).results[0];
    img.src = r.heatmap; img.hidden = false;
    await img.decode(); // resolves once the picture can be drawn (also when the same src is set again)
    $("explain-words").textContent = `ITM ${fmt(r.itm_score)} · ` +
      r.words.map((w) => `${w.word} ${fmt(100 * w.mass, 0)}%`).join(", ");
    img.dataset.state = "done";
  } catch (e) { img.dataset.state = "error"; err.textContent = e.message; err.hidden = false; }
}

async function ask(ev) {
  ev.preventDefault();
  const q = $("question").value.trim();
  if (!imageUrl) { $("answer").textContent = "pick an image first"; return; }
  if (!q) return;
  $("answer").textContent = "…";
  try {
    const r = (await api("/v1/vqa", { images: [imageUrl], question: q })).results[0];
    $("answer").textContent = r.answer;
    $("answer-note").textContent = r.itm_score === null ? "" : `ITM score ${fmt(r.itm_score)}`;
  } catch (e) { $("answer").textContent = "–"; $("answer-note").textContent = e.message; }
}

async function match(ev) {
  ev.preventDefault();
  const texts = $("texts").value.split("\n").map((t) => t.trim()).filter(Boolean);
  const body = $("match-table").querySelector("tbody");
  body.innerHTML = "";
  if (!imageUrl || !texts.length) return;
  try {
    for (const r of (await api("/v1/match", { images: [imageUrl], texts })).results) {
      const tr = document.createElement("tr");
      for (const v of [r.text, fmt(r.itm_score), fmt(r.itc_score)]) {
        const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
      }
      if (caps.explain) { // a matched text opens its heat map too
        tr.cells[0].classList.add("link"); tr.cells[0].title = "show where this text looks";
        tr.cells[0].addEventListener("click", () => explain(r.text));
      }
      body.appendChild(tr);
    }
  } catch (e) { body.innerHTML = `<tr><td colspan="3" class="error"></td></tr>`; body.querySelector("td").textContent = e.message; }
}

async function search(ev) {
  ev.preventDefault();
  const q = $("query").value.trim();
  const list = $("hits");
  list.innerHTML = "";
  if (!q) return;
  try {
    const r = (await api("/v1/search", { texts: [q], k: 10 })).results[0];
    for (const h of r.hits) {
      const li = document.createElement("li");
      li.textContent = `${h.image || h.text}  (score ${fmt(h.score)})`;
      list.appendChild(li);
    }
  } catch (e) { list.textContent = e.message; }
}

let lowScore = 0.3;
async function refreshQuality() {
  try {
    const q = await api("/v1/quality");
    lowScore = q.low_score_threshold;
    const s = q.last_n;
    $("q-outputs").textContent = `${s.outputs} (${s.scored} scored)`;
    $("q-itm").textContent = s.itm ? `${fmt(s.itm.mean)} / ${fmt(s.itm.p50)}` : "–";
    $("q-low").textContent = s.low_score_share === null ? "–" : `${fmt(100 * s.low_score_share, 1)} % below ${lowScore}`;
    $("q-degenerate").textContent = s.outputs ? `${fmt(100 * s.empty_share, 1)} % / ${fmt(100 * s.repeated_word_share, 1)} %` : "–";
    const d = q.drift;
    $("q-drift-itm").textContent = d.itm_score ? `KS D ${fmt(d.itm_score.value)} (p ${fmt(d.itm_score.p_value)})`
      : (d.note || "–");
    $("q-drift-emb").textContent = d.image_embedding
      ? `centroid distance ${fmt(d.image_embedding.value, 4)} (noise ${fmt(d.image_embedding.noise_floor, 4)})` : "–";
  } catch (e) { $("q-outputs").textContent = e.message; }
}

function setUp() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => useFile(e.target.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); useFile(e.dataTransfer.files[0]); });
  $("ask-form").addEventListener("submit", ask);
  $("match-form").addEventListener("submit", match);
  $("search-form").addEventListener("submit", search);
  $("explain-button").addEventListener("click", () => { if (captionText) explain(captionText); });
  loadModel();
  refreshQuality();
  setInterval(refreshQuality, 5000);
}

setUp();
