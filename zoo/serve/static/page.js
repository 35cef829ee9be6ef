// The page of `zoo serve` (GET /): reads /info, calls /predict, shows the answer. No framework and no build step:
// every asset is served by the same process, nothing is fetched from elsewhere. Text from the server or the user is
// put into the page with textContent only, never as HTML.
"use strict";

const KEY_STORE = "zoo-serve-api-key"; // sessionStorage: the key lives as long as this tab
const TOP_BARS = 5;
const $ = (id) => document.getElementById(id);
let info = null;
let lastText = "";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

async function call(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) headers["X-API-Key"] = key;
  const started = performance.now();
  let response;
  try {
    response = await fetch(path, Object.assign({}, options, { headers }));
  } catch (err) {
    return { status: 0, ok: false, body: null, text: `the server did not answer (${err.message})`,
             ms: performance.now() - started };
  }
  const text = await response.text();
  const ms = performance.now() - started;
  let body = null;
  try { body = JSON.parse(text); } catch (_) { /* not JSON: the text is shown as it is */ }
  return { status: response.status, statusText: response.statusText, ok: response.ok, body, text, ms };
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function describe(reply) {
  if (reply.status === 0) return reply.text;
  const what = reply.body && typeof reply.body === "object" && reply.body.error ? reply.body.error
    : reply.body && reply.body.detail ? reply.body.detail : (reply.text || "").slice(0, 500);
  return `Error ${reply.status}${reply.statusText ? " " + reply.statusText : ""}: ${what || "(empty answer)"}`;
}

function askForKey(refused) {
  $("key-box").hidden = false;
  $("try").hidden = true;
  showError(refused ? "The server refused the API key (401): enter the right one." : "");
  $("key-input").focus();
}

async function loadInfo() {
  const reply = await call("/info");
  if (reply.status === 401) {
    const tried = sessionStorage.getItem(KEY_STORE);
    sessionStorage.removeItem(KEY_STORE);
    askForKey(Boolean(tried));
    $("subtitle").textContent = "API key needed";
    return;
  }
  if (!reply.ok || !reply.body || !reply.body.model) {
    showError(`Could not read /info. ${describe(reply)}`);
    $("subtitle").textContent = "";
    return;
  }
  info = reply.body.model;
  $("key-box").hidden = true;
  showError("");
  setUp(info);
}

function taskOf(model) {
  const task = String(model.task || "");
  if (task === "image_classification") return "image";
  if (task === "recommendation") return "user";
  if (task === "token_classification") return "entities";
  return "text";
}

function setUp(model) {
  const kind = taskOf(model);
  const name = String(model.model_class || model.family || "model").split(".").pop();
  $("title").textContent = name;
  $("subtitle").textContent = [model.task, model.backend, model.labels ? `${model.labels.length} labels` : null]
    .filter(Boolean).join(" · ");
  $("text-input").hidden = !(kind === "text" || kind === "entities");
  $("image-input").hidden = kind !== "image";
  $("user-input").hidden = kind !== "user";
  if (kind === "entities") {
    $("text-label").textContent = "Sentence";
    $("input-text").placeholder = "Type a sentence: its entities are highlighted";
  }
  const rec = model.recommender;
  if (rec) {
    const list = $("example-users");
    list.replaceChildren(...rec.example_users.map((u) => el("option", { value: u })));
    $("user-hint").textContent = `${rec.num_users} users, ${rec.num_items} items; e.g. ` +
      rec.example_users.join(", ");
  }
  $("try").hidden = false;
  showCard(model);
}

function showCard(model) {
  const card = model.card || {};
  const facts = [
    ["task", card.task || model.task], ["data", card.dataset], ["family", model.family],
    ["backend", model.backend && `${model.backend} (${model.format || "?"} export)`],
    ["calibration", model.calibration && `${model.calibration}${model.temperature ? " T=" +
      [].concat(model.temperature).map((t) => Number(t).toFixed(3)).join(", ") : ""}`],
    ["verified", model.verification && `${model.verification.passed === false ? "FAILED" : "yes"} against the ` +
      `${model.verification.against || "eager model"}, max |diff| ${fmt(model.verification.max_abs_diff, 2)}`],
    ["batching", model.batching && (model.batching.engine === "inprocess"
      ? `up to ${model.batching.max_batch_size}, in-process: a batch starts when a model thread is free`
      : `up to ${model.batching.max_batch_size}, waits ${model.batching.batch_timeout * 1000} ms`)],
  ].filter(([, v]) => v !== undefined && v !== null && v !== "");
  $("card-summary").textContent = card.summary || "";
  $("card-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  const metrics = Object.entries(card.metrics || {});
  const base = card.baseline || {};
  const ref = Object.fromEntries((base.rows || []).map((r) => [r.metric, r.reference]));
  if (metrics.length) {
    $("card-metrics").hidden = false;
    $("card-metrics").tBodies[0].replaceChildren(...metrics.map(([k, v]) => el("tr",
      { class: k === card.headline ? "headline" : "", "data-metric": k },
      el("td", {}, `test/${k}`), el("td", { class: "num" }, fmt(v)),
      el("td", { class: "num" }, k in ref ? fmt(ref[k]) : ""))));
  }
  $("card-baseline").textContent = base.reference ? (base.beats === true ? `Beats the baseline (${base.reference}).`
    : base.beats === false ? `Does not beat the baseline (${base.reference}) by the margin.`
      : `Baseline: ${base.reference}.`) : (metrics.length ? "" : "No test metrics in this export (zoo test, then " +
      "zoo export of the run, records them).");
  $("card").hidden = false;
}

function fmt(x, digits = 4) {
  const n = Number(x);
  if (!Number.isFinite(n)) return String(x);
  return Math.abs(n) > 0 && Math.abs(n) < 1e-3 ? n.toExponential(digits - 2) : n.toFixed(digits);
}

function bars(scores, first) {
  const rows = Object.entries(scores).sort((a, b) => b[1] - a[1]).slice(0, TOP_BARS);
  return el("div", { class: "bars" }, ...rows.map(([label, p]) => el("div",
    { class: label === first ? "bar first" : "bar", "data-label": label, "data-p": String(p) },
    el("span", { class: "name", title: label }, label),
    el("span", { class: "track" }, el("span", { class: "fill", style: `display:block;width:${(100 * p).toFixed(1)}%` })),
    el("span", { class: "value" }, `${(100 * p).toFixed(1)} %`))));
}

function chips(title, names, id) {
  return el("div", { id, class: "chips" }, el("strong", {}, title + " "), ...names.map((n) => el("span", {}, n)));
}

function entities(text, found) {
  const out = el("p", { id: "entities" });
  let at = 0;
  for (const e of [...found].sort((a, b) => a.start - b.start)) {
    if (e.start < at) continue;
    out.append(text.slice(at, e.start));
    out.append(el("mark", { "data-type": e.type, title: `${e.type}, score ${fmt(e.score, 2)}` },
      text.slice(e.start, e.end), el("span", { class: "tag" }, e.type)));
    at = e.end;
  }
  out.append(text.slice(at));
  return out;
}

function render(answer, ms, text = lastText) {  // text: what an NER answer's offsets point into
  const body = [];
  if (Array.isArray(answer.entities)) {
    body.push(entities(text, answer.entities));
    body.push(el("p", { class: "muted" }, answer.entities.length ? `${answer.entities.length} entities` :
      "no entities found"));
    if (answer.untagged_words) body.push(el("p", { class: "muted" }, `${answer.untagged_words} words past the ` +
      "model's length were not read"));
  } else if (Array.isArray(answer.items)) {
    if (answer.known_user === false) body.push(el("p", { class: "muted" }, "Unknown user: the most popular items."));
    body.push(el("ol", { class: "items", id: "items" }, ...answer.items.map((it) => el("li",
      { "data-item": it.item, "data-score": String(it.score) }, it.name ? `${it.name} ` : "",
      el("code", {}, it.item), el("span", { class: "score" }, fmt(it.score))))));
  } else if (Array.isArray(answer.labels) && answer.scores) {
    body.push(chips("Labels:", answer.labels.length ? answer.labels : ["(none over its threshold)"], "labels"));
    body.push(bars(answer.scores, answer.labels[0]));
  } else if (answer.probabilities) {
    body.push(el("p", { class: "top", id: "label", "data-confidence": String(answer.confidence) },
      `${answer.label}`, el("span", { class: "muted" }, `  ${(100 * answer.confidence).toFixed(1)} % (calibrated)`)));
    body.push(bars(answer.probabilities, answer.label));
  }
  if (answer.prediction_set !== undefined) {
    const members = Array.isArray(answer.prediction_set) ? answer.prediction_set
      : String(answer.prediction_set).split("|").filter(Boolean);
    body.push(chips("Conformal prediction set:", members, "prediction-set"));
  }
  if (!body.length) body.push(el("p", {}, "The answer has no field this page knows; see the JSON below."));
  $("answer-body").replaceChildren(...body);
  $("latency").textContent = ms === undefined ? "" : `answered in ${ms.toFixed(0)} ms`;
  $("raw").textContent = JSON.stringify(answer, null, 1);
  $("answer").hidden = false;
}

async function request() {
  const kind = taskOf(info || {});
  if (kind === "image") {
    const file = $("input-image").files[0];
    if (!file) return { local: "Choose or drop an image first." };
    const form = new FormData();
    form.append("image", file, file.name);
    return { body: form };
  }
  const json = kind === "user" ? { user: $("input-user").value.trim() } : { text: $("input-text").value };
  lastText = json.text || "";
  return { body: JSON.stringify(json), headers: { "Content-Type": "application/json" } };
}

async function predict(event) {
  event.preventDefault();
  const req = await request();
  if (req.local) { showError(req.local); return; }
  const button = $("submit");
  button.disabled = true;
  const reply = await call("/predict", { method: "POST", body: req.body, headers: req.headers });
  button.disabled = false;
  if (reply.status === 401) {
    sessionStorage.removeItem(KEY_STORE);
    askForKey(true);
    return;
  }
  if (!reply.ok || reply.body === null) {
    showError(describe(reply));
    $("answer").hidden = true;
    return;
  }
  showError("");
  render(reply.body, reply.ms);
}

function showPreview(file) {
  const preview = $("preview");
  if (!file) { preview.hidden = true; return; }
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
}

function wire() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key-input").value;
    if (!key) return;
    sessionStorage.setItem(KEY_STORE, key);
    $("key-input").value = "";
    loadInfo();
  });
  $("predict-form").addEventListener("submit", predict);
  $("input-image").addEventListener("change", () => showPreview($("input-image").files[0]));
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer.files.length) {
      $("input-image").files = e.dataTransfer.files;
      showPreview(e.dataTransfer.files[0]);
    }
  });
  $("input-text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("predict-form").requestSubmit();
  });
}

window.zooPage = { render, describe }; // for tests that render an answer the served model does not give
wire();
loadInfo();
