// Keys (admins): create one (its secret is shown once, here, and never again), list
// them, revoke one.

import { api } from "./api.js";
import { ago, clear, h, when } from "./dom.js";

export function keysPage(main, { session }) {
  main.append(h("h1", { text: "API keys" }));
  if (session.role !== "admin") {
    main.append(h("p", { text: "Managing keys needs an admin key." }));
    return null;
  }
  const secret = h("div", { class: "secret", role: "status", "aria-live": "polite" });
  const message = h("p", { class: "message", role: "status", "aria-live": "polite" });
  const tbody = h("tbody");
  main.append(createForm(secret, () => refresh()), secret, message, keyTable(tbody));

  async function refresh() {
    const data = await api("/api/v1/keys");
    clear(tbody, data.keys.slice().reverse().map((key) => keyRow(key, message, refresh)));
  }
  refresh().catch((err) => (message.textContent = err.message));
  return null;
}

function createForm(secret, refresh) {
  const field = (id, label, control) => h("div", { class: "field" }, h("label", { for: id, text: label }), control);
  const user = h("input", { id: "k-user", name: "user_id", required: true, pattern: "[A-Za-z0-9._@-]+", autocomplete: "off" });
  const role = h("select", { id: "k-role", name: "role" }, ["user", "worker", "admin"].map((r) => h("option", { value: r, text: r })));
  const pool = h("input", { id: "k-pool", name: "pool", type: "checkbox" });
  const days = h("input", { id: "k-days", name: "expires_days", type: "number", min: "0.01", step: "any", inputmode: "decimal" });
  const name = h("input", { id: "k-name", name: "name", maxlength: 128, autocomplete: "off" });
  const error = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    { class: "filters key-form", "aria-label": "Create a key" },
    field("k-user", "User", user),
    field("k-role", "Role", role),
    h("div", { class: "field check" }, pool, h("label", { for: "k-pool", text: "Pool worker (serves every user)" })),
    field("k-days", "Expires after (days, empty: never)", days),
    field("k-name", "Name", name),
    h("div", { class: "field buttons" }, h("button", { type: "submit", text: "Create key" })),
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const body = { user_id: user.value.trim(), role: role.value, pool: pool.checked, name: name.value };
    if (days.value) body.expires_days = Number(days.value);
    try {
      const created = await api("/api/v1/keys", { method: "POST", body });
      showSecret(secret, created);
      form.reset();
      refresh();
    } catch (err) {
      error.textContent = err.message;
    }
  });
  return form;
}

function showSecret(box, created) {
  const value = h("input", { id: "new-key", readonly: true, value: created.key, class: "mono", "aria-describedby": "new-key-help" });
  const copy = h("button", { type: "button", text: "Copy" });
  copy.addEventListener("click", async () => {
    value.select();
    try {
      await navigator.clipboard.writeText(created.key);
      copy.textContent = "Copied";
    } catch {
      copy.textContent = "Select and copy it";
    }
  });
  clear(box,
    h("h2", { text: `New ${created.info.role} key for ${created.info.user_id}` }),
    h("label", { for: "new-key", text: "Secret" }),
    h("div", { class: "row" }, value, copy),
    h("p", { id: "new-key-help", class: "warning", text: "Copy it now: it is shown only this once and the server keeps only its hash." }),
    h("button", { type: "button", class: "link", text: "Done, hide it", onclick: () => clear(box) }),
  );
  value.focus();
  value.select();
}

function keyTable(tbody) {
  return h(
    "div",
    { class: "scroll" },
    h(
      "table",
      { class: "grid keys" },
      h("caption", { class: "sr-only", text: "API keys, newest first" }),
      h("thead", {}, h("tr", {}, ["key", "user", "role", "name", "created", "expires", "last used", "state"].map((n) => h("th", { scope: "col", text: n })))),
      tbody,
    ),
  );
}

function keyRow(key, message, refresh) {
  const revoke = h("button", { type: "button", class: "danger small", text: "Revoke", "aria-label": `Revoke key ${key.prefix}` });
  revoke.addEventListener("click", async () => {
    if (!window.confirm(`Revoke key ${key.prefix} of ${key.user_id}? Programs using it stop working.`)) return;
    try {
      await api(`/api/v1/keys/${encodeURIComponent(key.key_id)}`, { method: "DELETE" });
      message.textContent = `Revoked ${key.prefix}.`;
      refresh();
    } catch (err) {
      message.textContent = err.message;
    }
  });
  const expired = key.expires_at && key.expires_at < Date.now() / 1000;
  return h(
    "tr",
    { dataset: { key: key.key_id } },
    h("th", { scope: "row", "data-label": "key" }, h("code", { text: `${key.prefix}_…` })),
    h("td", { "data-label": "user", text: key.user_id }),
    h("td", { "data-label": "role", text: `${key.role}${key.pool ? " (pool)" : ""}` }),
    h("td", { "data-label": "name", text: key.name || "—" }),
    h("td", { "data-label": "created", text: when(key.created_at) }),
    h("td", { "data-label": "expires", text: key.expires_at ? when(key.expires_at) : "never" }),
    h("td", { "data-label": "last used", text: key.last_used_at ? ago(key.last_used_at) : "never" }),
    h("td", { "data-label": "state" }, key.revoked_at ? `revoked ${ago(key.revoked_at)}` : expired ? "expired" : revoke),
  );
}
