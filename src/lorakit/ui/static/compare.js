// The compare view: one prompt (or text) sent to the base and up to 4 adapters at once; every
// answer streams into its own column. The requests leave together, so the server runs them as
// one mixed-adapter batch. Classifiers show label probabilities, NER adapters entity spans.

import { getJSON, HttpError, postJSON } from "./api.js";
import { renderBars, renderEntities } from "./labels.js";
import { el } from "./dom.js";
import { sseEvents } from "./sse.js";

const MAX_ADAPTERS = 4;
const ENCODER_TASKS = new Set(["classification", "token_classification"]);

function meta(model) {
  return model.lorakit || {};
}

export class CompareView {
  constructor(root, router, reportError) {
    this.root = root;
    this.reportError = reportError;
    this.models = [];
    this.controller = null;
  }

  async enter() {
    this.root.replaceChildren(el("h1", { text: "Compare" }), el("p", { class: "muted", text: "Loading the served models…" }));
    let models;
    try {
      const info = await getJSON("api/info");
      if (!info.models_served) return this.noModel("This page was started without a model (lorakit ui).");
      models = await getJSON("v1/models");
    } catch (e) {
      if (e instanceof HttpError && (e.status === 404 || e.status === 0)) return this.noModel(`GET /v1/models: ${e.text}.`);
      this.reportError(e);
      this.root.replaceChildren(el("h1", { text: "Compare" }), el("p", { class: "error", role: "alert", text: `Cannot list the models: ${e.text || e.message}` }));
      return;
    }
    this.models = (models.data || []).filter((m) => m && typeof m.id === "string");
    if (!this.models.length) return this.noModel("GET /v1/models lists no model.");
    this.renderForm();
  }

  leave() {
    if (this.controller) this.controller.abort();
  }

  noModel(why) {
    this.root.replaceChildren(
      el("h1", { text: "Compare" }),
      el("div", { class: "notice-box", id: "no-model", role: "status" },
        el("p", { class: "strong", text: "No model is being served." }),
        el("p", { text: `${why} To compare the base model and adapters side by side, start the server with a model, e.g. ` },
          el("code", { text: "lorakit serve --base smollm2-135m --adapter NAME=runs/NAME/adapter --runs runs" }),
          ", and open its page."),
        el("p", { class: "muted", text: "The Runs view works without a model." })),
    );
  }

  renderForm() {
    const boxes = this.models.map((m, i) => {
      const k = meta(m);
      // An encoder base has no trained head of its own: only its adapters can label a text.
      const headless = k.kind === "base" && ENCODER_TASKS.has(k.task);
      const box = el("input", { type: "checkbox", name: "model", value: m.id, id: `model-${i}`, disabled: headless });
      const detail = [headless ? "encoder without a head: its adapters answer" : k.task,
        k.kind === "adapter" && m.parent ? `adapter of ${m.parent}` : null].filter(Boolean).join(" · ");
      return { model: m, box, li: el("li", {}, el("label", { for: `model-${i}` }, box, " ", m.id, " ",
        el("span", { class: `badge kind-${k.kind === "base" ? "base" : "adapter"}`, text: k.kind === "base" ? "base" : "adapter" }),
        detail ? el("span", { class: "muted", text: ` ${detail}` }) : null)) };
    });
    // Start with the base(s) and the first adapters ticked.
    const adapters = boxes.filter((b) => meta(b.model).kind !== "base");
    for (const b of boxes) b.box.checked = !b.box.disabled && (meta(b.model).kind === "base" || adapters.indexOf(b) < MAX_ADAPTERS);
    this.boxes = boxes;
    const limit = el("p", { class: "muted", id: "model-limit" });
    const enforce = () => {
      const n = boxes.filter((b) => b.box.checked && meta(b.model).kind !== "base").length;
      for (const b of boxes) if (meta(b.model).kind !== "base") b.box.disabled = !b.box.checked && n >= MAX_ADAPTERS;
      limit.textContent = `${n} of at most ${MAX_ADAPTERS} adapters selected.`;
    };
    for (const b of boxes) b.box.addEventListener("change", enforce);
    enforce();

    this.prompt = el("textarea", { id: "prompt", rows: 3, required: true, placeholder: "Type a prompt, or a sentence for classifier / NER adapters" });
    this.prompt.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); this.form.requestSubmit(); }
    });
    const num = (id, label, value, attrs) => {
      const input = el("input", { type: "number", id, value: String(value), ...attrs });
      return [el("span", { class: "option" }, el("label", { for: id, text: label }), input), input];
    };
    const [maxOption, maxTokens] = num("max-tokens", "Max tokens", 64, { min: "1", max: "4096", step: "1" });
    const [tempOption, temperature] = num("temperature", "Temperature", 0, { min: "0", max: "2", step: "0.1" });
    const [seedOption, seed] = num("seed", "Seed", 0, { min: "0", step: "1" });
    const chat = el("input", { type: "checkbox", id: "use-chat" });
    // Generation settings only where something generates (an encoder server only labels texts).
    const generates = this.models.some((m) => !ENCODER_TASKS.has(meta(m).task));
    this.options = { maxTokens, temperature, seed, chat };
    this.sendButton = el("button", { type: "submit", id: "send", class: "primary", text: "Send" });
    this.stopButton = el("button", { type: "button", id: "stop", text: "Stop", disabled: true, on: { click: () => this.controller?.abort() } });
    this.form = el("form", { id: "compare-form", on: { submit: (ev) => { ev.preventDefault(); this.send(); } } },
      el("fieldset", { class: "models" }, el("legend", { text: `Models: the base and up to ${MAX_ADAPTERS} adapters` }),
        el("ul", { class: "model-list" }, boxes.map((b) => b.li)), limit),
      el("label", { for: "prompt", class: "block", text: "Prompt (for classifier and NER adapters: the text to label)" }),
      this.prompt,
      el("div", { class: "options", hidden: !generates }, maxOption, tempOption, seedOption,
        el("label", { for: "use-chat", class: "inline" }, chat, " Chat template (/v1/chat/completions)")),
      el("div", { class: "actions" }, this.sendButton, this.stopButton, el("span", { class: "muted", text: "Ctrl+Enter sends" })),
    );
    this.columns = el("div", { class: "columns", id: "compare-columns", "aria-label": "Answers" });
    this.announce = el("p", { class: "sr-only", role: "status" });
    this.root.replaceChildren(el("h1", { text: "Compare" }), this.form, this.announce, this.columns);
  }

  async send() {
    const chosen = this.boxes.filter((b) => b.box.checked).map((b) => b.model);
    const text = this.prompt.value;
    if (!chosen.length || !text.trim()) {
      this.prompt.reportValidity();
      return;
    }
    if (this.controller) this.controller.abort();
    const controller = new AbortController();
    this.controller = controller;
    const columns = chosen.map((m) => this.column(m));
    this.columns.style.setProperty("--cols", String(columns.length));
    this.columns.replaceChildren(...columns.map((c) => c.node));
    this.sendButton.disabled = true;
    this.stopButton.disabled = false;
    // All requests start before any is awaited: they reach the server together.
    this.announce.textContent = `Sending to ${columns.length} models…`;
    await Promise.all(columns.map((c) => this.runColumn(c, text, controller.signal)));
    this.announce.textContent = `${columns.length} answers finished.`;
    if (this.controller === controller) {
      this.sendButton.disabled = false;
      this.stopButton.disabled = true;
      this.controller = null;
    }
  }

  column(model) {
    const k = meta(model);
    const body = el("div", { class: "answer", tabindex: "0", role: "region", "aria-label": `Answer of ${model.id}`, "aria-busy": "true" });
    const stats = el("p", { class: "stats", text: "waiting…" });
    const node = el("section", { class: "column", dataset: { model: model.id, task: k.task || "" } },
      el("header", {}, el("h2", { text: model.id }), el("p", { class: "muted", text: [k.kind === "base" ? "base" : "adapter", k.task].filter(Boolean).join(" · ") })),
      body, stats);
    return { model, node, body, stats };
  }

  async runColumn(col, text, signal) {
    const task = meta(col.model).task;
    try {
      if (ENCODER_TASKS.has(task)) await this.classify(col, text, signal);
      else await this.generate(col, text, signal);
      col.node.dataset.done = "true";
    } catch (e) {
      const message = e.name === "AbortError" ? "stopped" : e.text || e.message;
      col.stats.textContent = message;
      col.node.dataset.done = e.name === "AbortError" ? "stopped" : "error";
      if (e.name !== "AbortError") {
        col.body.append(el("p", { class: "error", role: "alert", text: message }));
        if (e.status === 401) this.reportError(e);
      }
    } finally {
      col.body.setAttribute("aria-busy", "false");
    }
  }

  async classify(col, text, signal) {
    const t0 = performance.now();
    const res = await (await postJSON("v1/classify", { model: col.model.id, input: text }, { signal })).json();
    const ms = performance.now() - t0;
    const item = (res.data || [])[0] || {};
    if (meta(col.model).task === "classification") col.body.replaceChildren(renderBars(item, meta(col.model).labels));
    else col.body.replaceChildren(renderEntities(text, item.entities || []));
    const tokens = res.usage?.prompt_tokens;
    col.stats.textContent = `${tokens != null ? `${tokens} tokens · ` : ""}${ms.toFixed(0)} ms`;
  }

  async generate(col, text, signal) {
    const o = this.options;
    const chat = o.chat.checked;
    const body = {
      model: col.model.id,
      max_tokens: Number(o.maxTokens.value) || 64,
      temperature: Number(o.temperature.value) || 0,
      seed: Number(o.seed.value) || 0,
      stream: true,
      ...(chat ? { messages: [{ role: "user", content: text }] } : { prompt: text }),
    };
    const t0 = performance.now();
    const response = await postJSON(chat ? "v1/chat/completions" : "v1/completions", body, { signal });
    const out = document.createTextNode("");
    col.body.replaceChildren(el("div", { class: "output" }, out));
    let tokens = 0, first = null, finish = null, usageTokens = null;
    for await (const chunk of sseEvents(response)) {
      if (chunk.error) throw new HttpError(0, chunk.error.message || "stream error", chunk.error.type);
      const choice = (chunk.choices || [])[0] || {};
      const piece = chat ? choice.delta?.content : choice.text;
      if (typeof piece === "string" && piece.length) {
        out.appendData(piece);
        tokens += 1;
        first ??= performance.now();
        col.body.scrollTop = col.body.scrollHeight;
        this.showRate(col, tokens, t0, first);
      }
      if (choice.finish_reason) finish = choice.finish_reason;
      if (chunk.usage?.completion_tokens != null) usageTokens = chunk.usage.completion_tokens;
    }
    this.showRate(col, usageTokens ?? tokens, t0, first, finish ?? "done");
  }

  showRate(col, tokens, t0, first, finish = null) {
    const seconds = (performance.now() - t0) / 1000;
    const rate = seconds > 0 ? tokens / seconds : 0;
    const ttft = first != null ? ` · first token after ${(first - t0).toFixed(0)} ms` : "";
    col.stats.textContent = `${tokens} tokens · ${rate.toFixed(1)} tok/s${ttft}${finish ? ` · ${finish}` : ""}`;
    col.node.dataset.tokens = String(tokens);
  }
}
