// Tasks: a filterable, paged table that keeps itself current. The filters live in the
// address (#/tasks?state=failed&q=report), so a filtered view can be bookmarked; rows
// are updated in place, so focus and scroll stay where they are while states change.

import { api, poll, query } from "./api.js";
import { ago, badge, clear, h } from "./dom.js";

const STATES = ["queued", "leased", "completed", "failed", "dead", "cancelled"];
const PAGE = 25;
const FILTERS = ["state", "task_type", "user_id", "q", "from", "to"];

export function tasksPage(main, { session, params }) {
  const admin = session.role === "admin";
  const filters = Object.fromEntries(FILTERS.map((name) => [name, params.get(name) || ""]));
  const cursors = [""]; // the cursor of each page seen; the last is the current page
  const status = h("p", { class: "muted", role: "status", "aria-live": "polite" });
  const tbody = h("tbody");
  const older = h("button", { type: "button", text: "Older →", onclick: () => turn(1) });
  const newer = h("button", { type: "button", text: "← Newer", onclick: () => turn(-1) });
  const rows = new Map();
  let nextCursor = null;

  main.append(
    h("h1", { text: "Tasks" }),
    filterForm(filters, admin),
    status,
    h(
      "div",
      { class: "scroll" },
      h(
        "table",
        { class: "grid tasks" },
        h("caption", { class: "sr-only", text: "Tasks, newest first" }),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["task", "type", "state", admin ? "user" : null, "input", "created", "progress", "attempt"]
              .filter(Boolean)
              .map((name) => h("th", { scope: "col", text: name })),
          ),
        ),
        tbody,
      ),
    ),
    h("div", { class: "pager" }, newer, older),
  );

  async function refresh() {
    const cursor = cursors[cursors.length - 1];
    const data = await api(`/api/v1/tasks${query(listQuery(filters, cursor))}`);
    nextCursor = data.next_cursor;
    render(data.tasks);
    newer.disabled = cursors.length === 1;
    older.disabled = !nextCursor;
    status.textContent = data.tasks.length
      ? `Page ${cursors.length}: ${data.tasks.length} tasks${nextCursor ? ", more on older pages" : ""}.`
      : "No tasks match.";
  }

  function render(tasks) {
    const seen = new Set();
    tasks.forEach((task, i) => {
      seen.add(task.task_id);
      let row = rows.get(task.task_id);
      if (!row) {
        row = newRow(task, admin);
        rows.set(task.task_id, row);
      }
      updateRow(row, task);
      if (tbody.children[i] !== row.tr) tbody.insertBefore(row.tr, tbody.children[i] || null);
    });
    for (const [id, row] of rows) {
      if (!seen.has(id)) {
        row.tr.remove();
        rows.delete(id);
      }
    }
  }

  function turn(step) {
    if (step > 0 && nextCursor) cursors.push(nextCursor);
    if (step < 0 && cursors.length > 1) cursors.pop();
    refresh();
  }

  return poll(refresh, 2000);
}

function listQuery(filters, cursor) {
  const toEpoch = (value) => (value ? new Date(value).getTime() / 1000 : null);
  return {
    state: filters.state,
    task_type: filters.task_type,
    user_id: filters.user_id,
    q: filters.q,
    created_after: toEpoch(filters.from),
    created_before: toEpoch(filters.to),
    limit: PAGE,
    cursor,
  };
}

function filterForm(filters, admin) {
  const field = (name, label, control) =>
    h("div", { class: "field" }, h("label", { for: `f-${name}`, text: label }), control);
  const select = (name, options) =>
    h(
      "select",
      { id: `f-${name}`, name },
      h("option", { value: "", text: "any" }),
      options.map((value) => h("option", { value, text: value, selected: filters[name] === value })),
    );
  const input = (name, type, extra = {}) =>
    h("input", { id: `f-${name}`, name, type, value: filters[name], ...extra });
  const types = select("task_type", filters.task_type ? [filters.task_type] : []);
  api("/api/v1/task-types")
    .then((data) => {
      for (const t of data.task_types) {
        if (t.task_type !== filters.task_type) types.append(h("option", { value: t.task_type, text: t.task_type }));
      }
    })
    .catch(() => {});
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter tasks" },
    field("state", "State", select("state", STATES)),
    field("task_type", "Type", types),
    admin ? field("user_id", "User", input("user_id", "text", { autocomplete: "off" })) : null,
    field("q", "File name, URL or task id", input("q", "search")),
    field("from", "Created from", input("from", "datetime-local")),
    field("to", "Created before", input("to", "datetime-local")),
    h("div", { class: "field buttons" }, h("button", { type: "submit", text: "Filter" }), h("a", { href: "#/tasks", text: "Clear" })),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const values = Object.fromEntries(new FormData(form).entries());
    location.hash = `#/tasks${query(values)}`;
  });
  return form;
}

function newRow(task, admin) {
  const cells = {
    link: h("a", { href: `#/tasks/${task.task_id}`, text: task.task_id }),
    type: h("td", { "data-label": "type", text: task.task_type }),
    state: h("td", { "data-label": "state" }),
    user: admin ? h("td", { "data-label": "user", text: task.user_id }) : null,
    input: h("td", { "data-label": "input", class: "input", text: source(task) }),
    created: h("td", { "data-label": "created", title: new Date(task.created_at * 1000).toLocaleString() }),
    progress: h("td", { "data-label": "progress" }),
    attempt: h("td", { "data-label": "attempt", class: "num" }),
  };
  const tr = h(
    "tr",
    { dataset: { task: task.task_id } },
    h("th", { scope: "row", "data-label": "task" }, cells.link),
    cells.type,
    cells.state,
    cells.user,
    cells.input,
    cells.created,
    cells.progress,
    cells.attempt,
  );
  return { tr, cells, key: "" };
}

function updateRow(row, task) {
  const progress =
    task.state === "leased"
      ? `${task.stage || "leased"}${task.progress !== null && task.progress !== undefined ? ` ${Math.round(task.progress * 100)} %` : ""}`
      : "";
  const key = [task.state, progress, task.attempt].join("|");
  row.cells.created.textContent = ago(task.created_at);
  if (key === row.key) return;
  row.key = key;
  clear(row.cells.state, badge(task.state));
  row.cells.progress.textContent = progress;
  row.cells.attempt.textContent = `${task.attempt}/${task.max_attempts}`;
}

function source(task) {
  if (task.parameters && typeof task.parameters.url === "string") return task.parameters.url;
  return task.input_files.map((f) => f.name).join(", ") || "—";
}
