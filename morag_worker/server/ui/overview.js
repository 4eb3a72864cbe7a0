// Overview: queue depth per type and state, tasks ended per minute over the last hour,
// the oldest queued task and the workers online.

import { api, poll } from "./api.js";
import { throughputChart } from "./chart.js";
import { ago, badge, clear, h, section } from "./dom.js";

const STATES = ["queued", "leased", "completed", "failed", "dead", "cancelled"];

export function overviewPage(main, { session }) {
  const scope = session.role === "admin" ? "all users" : `your tasks (${session.user_id})`;
  const body = h("div", { class: "overview" }, h("p", { class: "muted", text: "Loading…" }));
  main.append(h("h1", { text: "Overview" }), h("p", { class: "muted", text: `Showing ${scope}.` }), body);
  return poll(async () => {
    const data = await api("/ui/api/overview");
    clear(body,
      totals(data.counts),
      depthTable(data.counts),
      section("Tasks ended, last hour", throughputChart(data.throughput)),
      oldest(data.oldest_queued, data.generated_at),
      workersOnline(data.workers),
    );
  }, 5000);
}

function totals(counts) {
  const sum = Object.fromEntries(STATES.map((s) => [s, 0]));
  for (const row of counts) sum[row.state] = (sum[row.state] || 0) + row.n;
  return h(
    "ul",
    { class: "totals", "aria-label": "Tasks by state" },
    STATES.map((state) =>
      h(
        "li",
        {},
        h("a", { href: `#/tasks?state=${state}` }, h("span", { class: "n", text: sum[state] }), badge(state)),
      ),
    ),
  );
}

function depthTable(counts) {
  const types = [...new Set(counts.map((row) => row.task_type))].sort();
  if (!types.length) return section("Queue by type", h("p", { text: "No tasks yet." }));
  const n = (type, state) =>
    counts.find((row) => row.task_type === type && row.state === state)?.n ?? 0;
  return section(
    "Queue by type",
    h(
      "div",
      { class: "scroll" },
      h(
        "table",
        { class: "grid" },
        h("caption", { class: "sr-only", text: "Tasks per type and state" }),
        h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "type" }), STATES.map((s) => h("th", { scope: "col", class: "num", text: s })))),
        h(
          "tbody",
          {},
          types.map((type) =>
            h(
              "tr",
              {},
              h("th", { scope: "row" }, h("a", { href: `#/tasks?task_type=${type}`, text: type })),
              STATES.map((state) => h("td", { class: "num", text: n(type, state) })),
            ),
          ),
        ),
      ),
    ),
  );
}

function oldest(task, now) {
  if (!task) return section("Oldest queued task", h("p", { text: "Nothing is waiting." }));
  return section(
    "Oldest queued task",
    h(
      "p",
      {},
      h("a", { href: `#/tasks/${task.task_id}`, text: task.task_id }),
      ` (${task.task_type}, ${task.user_id}) queued ${ago(task.created_at, now)}`,
      task.available_at > now ? `, waiting for its retry backoff (${ago(now, task.available_at)} left)` : "",
    ),
  );
}

function workersOnline(workers) {
  const online = workers.filter((w) => w.online);
  if (!online.length) return section("Workers online", h("p", { text: "No worker is online." }));
  return section(
    "Workers online",
    h(
      "ul",
      { class: "worker-list" },
      online.map((w) =>
        h(
          "li",
          {},
          h("a", { href: "#/workers", text: w.worker_id }),
          ` on ${w.host || "?"}: ${w.running}/${w.capacity} busy`,
          h(
            "ul",
            {},
            (w.status?.children || []).map((c) =>
              h("li", {}, `${c.name} (${c.gpu === null || c.gpu === undefined ? "cpu" : `gpu ${c.gpu}`}): `, badge(c.state)),
            ),
            w.status ? null : w.devices.map((d) => h("li", { text: `${d.kind}${d.index ?? ""} ${d.name || ""}` })),
          ),
        ),
      ),
    ),
  );
}
