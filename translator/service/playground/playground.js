// The page of `translator serve` (GET /): no build step, no library, only the server's own API.
"use strict";

const $ = (id) => document.getElementById(id);
let model = null; // GET /health once ready: beam sizes, n-best beam sizes, attention

function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.textContent = text; // user text only ever goes in as text
  return node;
}

async function post(body) {
  const response = await fetch("/v1/translate", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(`${response.status}: ${answer.error}`);
  return answer;
}

async function waitUntilReady() {
  for (;;) {
    try {
      const health = await (await fetch("/health")).json();
      if (health.status === "ready") return health;
      $("status").textContent = `${health.model}: ${health.status}…`;
    } catch (error) {
      $("status").textContent = "the server does not answer; retrying…";
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

function showBeamSizes() {
  const select = $("beam-size");
  for (const size of model.beam_sizes) {
    const option = element("option", { value: size }, size === 1 ? "1 (greedy)" : String(size));
    if (size === model.beam_size) option.selected = true;
    select.append(option);
  }
  select.addEventListener("change", limitNBest);
  limitNBest();
}

function limitNBest() {
  const beamSize = Number($("beam-size").value);
  const allowed = model.n_best_beam_sizes.includes(beamSize) ? beamSize : 1;
  const input = $("n-best");
  input.max = allowed;
  if (Number(input.value) > allowed) input.value = allowed;
}

function showError(error) {
  $("error").hidden = !error;
  $("error").textContent = error ? String(error.message || error) : "";
}

function unknownWarning(share) {
  if (!(share > 0)) return null;
  const percent = Math.max(1, Math.round(share * 100));
  const words = share > 0.5 ? "mostly unknown to the model's tokenizer" : "unknown to the model's tokenizer";
  return element("p", { class: "unknown-warning" },
    `⚠ ${percent}% of this sentence's characters are ${words}: expect a poor translation.`);
}

function showResults(sentences, answer, beamSize) {
  const results = $("results");
  results.replaceChildren();
  sentences.forEach((sentence, index) => {
    const item = element("article", { class: "result" });
    item.append(element("div", { class: "source" }, sentence));
    const line = element("div");
    line.append(element("span", { class: "translation" }, answer.translations[index]),
                element("span", { class: "score" }, `score ${answer.scores[index].toFixed(3)}`));
    item.append(line);
    const warning = unknownWarning(answer.unknown_shares[index]);
    if (warning) item.append(warning);
    if (answer.truncated[index]) item.append(element("p", { class: "unknown-warning" }, "⚠ truncated to the model's longest input"));
    const listed = answer.n_best ? answer.n_best[index] : [];
    if (listed.length > 1) {
      const list = element("ol", { class: "n-best" });
      for (const hypothesis of listed) {
        list.append(element("li", {}, `${hypothesis.translation}  (${hypothesis.score.toFixed(3)})`));
      }
      item.append(list);
    }
    if (model.attention) {
      const button = element("button", { class: "show-attention", type: "button" }, "attention");
      button.addEventListener("click", () => showAttention(sentence, beamSize).catch(showError));
      item.append(button);
    }
    results.append(item);
  });
}

async function showAttention(sentence, beamSize) {
  showError(null);
  const answer = await post({ sentences: [sentence], beam_size: beamSize, attention: true });
  const { source_pieces: sources, target_pieces: targets, weights } = answer.attention[0];
  const table = $("heatmap");
  table.replaceChildren();
  const head = element("thead");
  const top = element("tr");
  top.append(element("th"));
  for (const piece of sources) top.append(element("th", { scope: "col" }, piece));
  head.append(top);
  const body = element("tbody");
  targets.forEach((piece, row) => {
    const line = element("tr");
    line.append(element("th", { scope: "row" }, piece));
    weights[row].forEach((weight, column) => {
      const cell = element("td", { title: `${piece} ← ${sources[column]}: ${weight.toFixed(3)}` });
      cell.style.background = `rgba(31, 87, 204, ${Math.min(1, weight).toFixed(3)})`;
      line.append(cell);
    });
    body.append(line);
  });
  table.append(head, body);
  $("attention-caption").textContent =
    `"${answer.translations[0]}": each row is a target piece, each column a source piece; darker is more attention.`;
  $("attention").hidden = false;
}

async function translate(event) {
  event.preventDefault();
  showError(null);
  const sentences = $("sentences").value.split("\n").map((line) => line.trim()).filter((line) => line);
  if (!sentences.length) return showError("type a sentence first");
  const beamSize = Number($("beam-size").value);
  const nBest = Number($("n-best").value) || 1;
  $("translate").disabled = true;
  try {
    const answer = await post({ sentences, beam_size: beamSize, n_best: nBest, details: true });
    showResults(sentences, answer, beamSize);
    $("attention").hidden = true;
  } catch (error) {
    showError(error);
  } finally {
    $("translate").disabled = false;
  }
}

async function start() {
  model = await waitUntilReady();
  $("status").textContent = `${model.model}: ready`;
  showBeamSizes();
  $("form").addEventListener("submit", translate);
  $("translate").disabled = false;
  document.body.dataset.ready = "true";
}

start();
