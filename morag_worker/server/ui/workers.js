// Workers: each supervisor with its host, release, children (device, cores, model cache,
// state, current task and progress), last contact, and quarantine and crash state, as
// its latest status report (sent with its heartbeats) tells.

import { api, poll } from "./api.js";
import { ago, badge, bytes, clear, dl, h, ranges, section, when } from "./dom.js";

export function workersPage(main, { session }) {
  const body = h("div", {}, h("p", { class: "muted", text: "Loading…" }));
  const scope = session.role === "admin" ? "every worker" : "your workers and pool workers";
  main.append(h("h1", { text: "Workers" }), h("p", { class: "muted", text: `Showing ${scope}.` }), body);
  return poll(async () => {
    const data = await api("/api/v1/workers");
    clear(body,
      data.workers.length
        ? data.workers.map((w) => workerCard(w, Date.now() / 1000))
        : h("p", { text: "No worker has registered." }),
    );
  }, 5000);
}

function workerCard(w, now) {
  const status = w.status;
  const flags = [];
  if (status?.draining) flags.push(h("span", { class: "badge state-dead", text: "draining" }));
  if (status?.leasing_paused) flags.push(h("span", { class: "badge state-failed", text: `not leasing: ${status.leasing_paused}` }));
  for (const [gpu, why] of Object.entries(status?.quarantined_gpus || {})) {
    flags.push(h("span", { class: "badge state-failed", text: `GPU ${gpu} quarantined: ${why}` }));
  }
  const id = `w-${w.worker_id.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  return h(
    "article",
    { class: "card worker", "aria-labelledby": id },
    h("h2", { id }, w.worker_id, " ", badge(w.online ? "online" : "offline"), " ", flags),
    dl([
      ["host", w.host || "—"],
      ["release", `${w.version || "?"} (protocol ${w.protocol_version})`],
      ["owner", `${w.user_id}${w.pool ? " (pool: serves every user)" : ""}`],
      ["busy", `${w.running} of ${w.capacity} children`],
      ["task types", w.task_types.join(", ") || "all"],
      ["devices", w.devices.map((d) => `${d.kind}${d.index ?? ""}${d.name ? ` ${d.name}` : ""}${d.memory_total_bytes ? ` (${bytes(d.memory_total_bytes)})` : ""}`).join("; ") || "—"],
      ["last seen", `${ago(w.last_seen_at, now)} (${when(w.last_seen_at)})`],
      ["registered", when(w.registered_at)],
      ["tasks done", status ? String(status.tasks_done) : undefined],
      ["status report", status ? ago(w.status_at, now) : "none (this supervisor sends no status report)"],
    ]),
    status ? childrenTable(status.children) : null,
    status?.recent_errors?.length ? recentErrors(status.recent_errors) : null,
  );
}

function childrenTable(children) {
  return section(
    "Children",
    h(
      "div",
      { class: "scroll" },
      h(
        "table",
        { class: "grid children" },
        h(
          "thead",
          {},
          h("tr", {}, ["child", "device", "cores", "state", "task", "models", "memory", "restarts"].map((name) => h("th", { scope: "col", text: name }))),
        ),
        h("tbody", {}, children.map(childRow)),
      ),
    ),
  );
}

function childRow(c) {
  const device = c.gpu === null || c.gpu === undefined ? "cpu" : `gpu ${c.gpu}`;
  const task = c.task_id
    ? h(
        "span",
        {},
        h("a", { href: `#/tasks/${c.task_id}`, text: c.task_id }),
        ` ${c.task_type || ""} ${c.stage || ""}`,
        c.progress !== null && c.progress !== undefined
          ? h("progress", { max: 1, value: c.progress, "aria-label": `progress of ${c.task_id}` })
          : null,
      )
    : "—";
  const memory = [`RSS ${bytes(c.rss_bytes)}`, c.gpu_memory_bytes ? `GPU ${bytes(c.gpu_memory_bytes)}` : ""].filter(Boolean).join(", ");
  const crashes = `${c.restarts} restarts, ${c.crashes} recent crashes`;
  return h(
    "tr",
    {},
    h("th", { scope: "row", "data-label": "child", text: c.name }),
    h("td", { "data-label": "device", text: device }),
    h("td", { "data-label": "cores", text: ranges(c.cores) || "—" }),
    h("td", { "data-label": "state" }, badge(c.state), c.quarantine ? h("span", { class: "error-text", text: ` ${c.quarantine}` }) : null),
    h("td", { "data-label": "task" }, task),
    h(
      "td",
      { "data-label": "models" },
      c.models.length ? h("ul", { class: "models" }, c.models.map((m) => h("li", { text: m }))) : "none loaded",
      c.cache_bytes ? h("span", { class: "muted", text: ` (${bytes(c.cache_bytes)})` }) : null,
    ),
    h("td", { "data-label": "memory", text: memory }),
    h("td", { "data-label": "restarts", text: crashes }),
  );
}

function recentErrors(errors) {
  return h(
    "details",
    {},
    h("summary", { text: `Recent errors (${errors.length})` }),
    h("ul", {}, errors.slice().reverse().map((e) => h("li", {}, h("time", { text: when(e.at) }), ` ${e.type}: ${e.message}`))),
  );
}
