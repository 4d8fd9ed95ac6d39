// Entry point: hash routes (#/runs, #/sweep?id=..., #/compare), the API key prompt, error notices.

import { getKey, onAuthError, setKey } from "./api.js";
import { CompareView } from "./compare.js";
import { $, el } from "./dom.js";
import { RunsView } from "./runs.js";
import { SweepView } from "./sweep.js";

const router = {
  href(view, pairs) {
    const q = new URLSearchParams(pairs).toString();
    return `#/${view}${q ? `?${q}` : ""}`;
  },
  replace(view, pairs) {
    history.replaceState(null, "", router.href(view, pairs));
  },
  parse() {
    const hash = location.hash.replace(/^#\/?/, "");
    const [view, q] = hash.split("?");
    return { view: view || "runs", params: new URLSearchParams(q || "") };
  },
};

const notice = $("#notice");
const keyForm = $("#key-form");
const keyInput = $("#key-input");
const keyButton = $("#key-button");
let authFailed = false;

function showNotice(text, kind) {
  notice.replaceChildren(el("p", { class: `notice ${kind}` }, text,
    kind === "error" ? el("button", { type: "button", class: "link", text: "Dismiss", on: { click: () => notice.replaceChildren() } }) : null));
}

function reportError(e) {
  if (e && e.status === 401) return; // the auth listener below says it
  showNotice(`Error: ${e && (e.text || e.message) ? e.text || e.message : String(e)}`, "error");
}

onAuthError((err) => {
  if (authFailed) return;
  authFailed = true;
  const had = Boolean(getKey());
  showNotice(`401 Unauthorized: ${err.message}. ${had ? "The API key kept in this tab was refused; enter the right one." : "This server needs an API key: enter it below."}`, "auth");
  keyForm.hidden = false;
  keyInput.focus();
});

keyForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  setKey(keyInput.value.trim());
  keyInput.value = "";
  keyForm.hidden = true;
  authFailed = false;
  notice.replaceChildren();
  updateKeyButton();
  route();
});

keyButton.addEventListener("click", () => {
  if (getKey()) {
    setKey("");
    updateKeyButton();
    route();
  } else {
    keyForm.hidden = !keyForm.hidden;
    if (!keyForm.hidden) keyInput.focus();
  }
});

function updateKeyButton() {
  keyButton.textContent = getKey() ? "Forget API key" : "API key…";
}

const views = {
  runs: new RunsView($("#view-runs"), router, reportError),
  sweep: new SweepView($("#view-sweep"), router, reportError),
  compare: new CompareView($("#view-compare"), router, reportError),
};
let current = null;

async function route() {
  const { view, params } = router.parse();
  const name = view in views ? view : "runs";
  if (current) current.leave();
  current = views[name];
  for (const [key, v] of Object.entries(views)) $(`#view-${key}`).hidden = v !== current;
  for (const link of document.querySelectorAll("nav a")) {
    const on = link.dataset.view === (name === "sweep" ? "runs" : name);
    if (on) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!authFailed && notice.querySelector(".error")) notice.replaceChildren();
  document.title = `lorakit · ${name}`;
  await current.enter(params);
  document.body.dataset.ready = "true";
}

window.addEventListener("hashchange", route);
updateKeyButton();
route();
