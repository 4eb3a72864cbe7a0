// The dashboard's shell: signing in and out, the navigation, and the router. Pages live
// behind the hash (#/tasks, #/tasks/<id>, #/workers, #/keys), so one HTML file serves
// them all and a link to any of them can be shared.

import { api, ApiFailure, whenSignedOut } from "./api.js";
import { clear, h } from "./dom.js";
import { keysPage } from "./keys.js";
import { overviewPage } from "./overview.js";
import { taskPage } from "./task.js";
import { tasksPage } from "./tasks.js";
import { workersPage } from "./workers.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
let session = null;
let stopPage = () => {};

const ROUTES = [
  [/^\/?$/, "overview", () => overviewPage],
  [/^\/tasks\/?$/, "tasks", () => tasksPage],
  [/^\/tasks\/([^/?]+)$/, "tasks", () => taskPage],
  [/^\/workers\/?$/, "workers", () => workersPage],
  [/^\/keys\/?$/, "keys", () => keysPage],
];

function parseHash() {
  const raw = decodeURIComponent(location.hash.replace(/^#/, "")) || "/";
  const [path, search = ""] = raw.split("?");
  return { path, params: new URLSearchParams(search) };
}

// Each page change moves focus to the new page (screen readers announce it); the first
// page of a visit leaves focus at the top, where the skip link is.
function route({ focus = true } = {}) {
  stopPage();
  stopPage = () => {};
  if (!session) return;
  const { path, params } = parseHash();
  for (const [pattern, tab, page] of ROUTES) {
    const match = path.match(pattern);
    if (!match) continue;
    markTab(tab);
    clear(main);
    const stop = page()(main, { session, params, arg: match[1] });
    stopPage = typeof stop === "function" ? stop : () => {};
    if (focus) main.focus({ preventScroll: true });
    return;
  }
  clear(main, h("h1", { text: "Not found" }), h("p", { text: `No page ${path}.` }));
}

function markTab(tab) {
  for (const link of nav.querySelectorAll("a")) {
    if (link.dataset.tab === tab) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${tab[0].toUpperCase()}${tab.slice(1)} · morag dashboard`;
}

function showSignedIn(info, { focus = true } = {}) {
  session = info;
  document.body.classList.add("signed-in");
  nav.hidden = false;
  nav.querySelector('[data-tab="keys"]').parentElement.hidden = info.role !== "admin";
  clear(who,
    h("span", { class: "who-name", text: `${info.user_id} (${info.role})` }),
    h("button", { type: "button", class: "link", onclick: signOut, text: "Sign out" }),
  );
  route({ focus });
}

function showSignIn(message = "") {
  stopPage();
  session = null;
  document.body.classList.remove("signed-in");
  nav.hidden = true;
  clear(who);
  const error = h("p", { id: "login-error", class: "error", role: "alert", text: message });
  const input = h("input", {
    id: "api-key",
    name: "api-key",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    "aria-describedby": "login-help login-error",
  });
  const form = h(
    "form",
    { class: "login", onsubmit: (event) => signIn(event, input, error) },
    h("h1", { text: "Sign in" }),
    h("label", { for: "api-key", text: "API key" }),
    input,
    h("p", {
      id: "login-help",
      class: "help",
      text: "A user or admin key (mrg_…). It is sent once; the browser keeps only a " +
        "session cookie that scripts cannot read.",
    }),
    h("button", { type: "submit", text: "Sign in" }),
    error,
  );
  clear(main, form);
  document.title = "Sign in · morag dashboard";
  input.focus();
}

async function signIn(event, input, error) {
  event.preventDefault();
  const key = input.value.trim();
  input.value = "";
  error.textContent = "";
  try {
    const info = await api("/ui/api/session", {
      method: "POST",
      headers: { Authorization: `Bearer ${key}` },
    });
    showSignedIn(info);
  } catch (err) {
    error.textContent = err instanceof ApiFailure ? err.message : String(err);
    input.focus();
  }
}

async function signOut() {
  try {
    await api("/ui/api/session", { method: "DELETE" });
  } catch (err) {
    console.warn(err);
  }
  showSignIn("Signed out.");
}

async function start() {
  // The skip link moves focus without touching the hash, which names the page.
  document.querySelector(".skip").addEventListener("click", (event) => {
    event.preventDefault();
    main.focus();
  });
  // A 401 after signing in means the session ended (expired, signed out elsewhere, key
  // revoked): say so. Before, it only means there is no session yet.
  whenSignedOut((failure) => showSignIn(session ? `Your session ended: ${failure.message}` : ""));
  window.addEventListener("hashchange", () => route());
  try {
    showSignedIn(await api("/ui/api/session"), { focus: false });
  } catch (err) {
    if (!(err instanceof ApiFailure) || err.status !== 401) showSignIn(err.message);
  }
}

start();
