// One task: its state (kept current while it runs), parameters, input files, attempts,
// timings, the actions its owner may take, and its result.

import { api, ApiFailure, poll } from "./api.js";
import { ago, append, badge, bytes, clear, dl, h, section, seconds, when } from "./dom.js";
import { resultView } from "./result.js";

const TERMINAL = new Set(["completed", "failed", "dead", "cancelled"]);

export function taskPage(main, { arg: taskId }) {
  const title = h("h1", {}, "Task ", h("code", { text: taskId }), " ", h("span", { class: "state" }));
  const message = h("p", { class: "message", role: "status", "aria-live": "polite" });
  const cancel = h("button", { type: "button", class: "danger", text: "Cancel task", hidden: true });
  const retry = h("button", { type: "button", text: "Retry task", hidden: true });
  const facts = h("div");
  const inputs = h("div");
  const attempts = h("div");
  const result = h("div");
  let shownResult = false;
  let stop = () => {};
  main.append(
    h("p", {}, h("a", { href: "#/tasks", text: "← All tasks" })),
    title,
    h("div", { class: "actions" }, cancel, retry),
    message,
    facts,
    inputs,
    attempts,
    result,
  );

  async function refresh() {
    let task;
    try {
      task = await api(`/api/v1/tasks/${encodeURIComponent(taskId)}`);
    } catch (err) {
      if (err instanceof ApiFailure && err.status === 404) {
        clear(main, h("h1", { text: "Task not found" }), h("p", { text: err.message }));
        stop();
        return;
      }
      throw err;
    }
    const history = await api(`/api/v1/tasks/${encodeURIComponent(taskId)}/attempts`);
    clear(title.querySelector(".state"), badge(task.state));
    cancel.hidden = TERMINAL.has(task.state);
    retry.hidden = !["failed", "dead"].includes(task.state);
    clear(facts, summary(task));
    if (!inputs.childElementCount) append(inputs, [inputView(task)]);
    clear(attempts, attemptsView(history.attempts), timingsView(task.timings));
    if (task.state === "completed" && !shownResult) {
      shownResult = true;
      result.append(resultView(taskId));
    }
    if (TERMINAL.has(task.state)) stop();
  }

  async function act(button, method, path, done) {
    if (method === "DELETE" && !window.confirm(`Cancel task ${taskId}?`)) return;
    button.disabled = true;
    try {
      await api(path, { method });
      message.textContent = done;
      stop();
      stop = poll(refresh, 2000);
    } catch (err) {
      message.textContent = err.message;
    } finally {
      button.disabled = false;
    }
  }
  const base = `/api/v1/tasks/${encodeURIComponent(taskId)}`;
  cancel.addEventListener("click", () => act(cancel, "DELETE", base, "Cancelled."));
  retry.addEventListener("click", () => act(retry, "POST", `${base}/retry`, "Queued again."));
  stop = poll(refresh, 2000);
  return () => stop();
}

function summary(task) {
  const running = task.state === "leased";
  const progress = running
    ? h(
        "span",
        {},
        h("progress", { max: 1, value: task.progress ?? 0, "aria-label": "progress" }),
        ` ${task.stage || ""} ${task.progress !== null && task.progress !== undefined ? `${Math.round(task.progress * 100)} %` : ""}`,
      )
    : undefined;
  const error = task.last_error
    ? h("span", { class: "error-text" }, h("strong", { text: `${task.last_error.type}: ` }), task.last_error.message,
        task.last_error.retryable ? " (retryable)" : " (not retryable)")
    : undefined;
  return section(
    "Summary",
    dl([
      ["type", task.task_type],
      ["user", task.user_id],
      ["progress", progress],
      ["attempt", `${task.attempt} of ${task.max_attempts}`],
      ["priority", String(task.priority)],
      ["worker", task.worker_id || undefined],
      ["created", `${when(task.created_at)} (${ago(task.created_at)})`],
      ["started", task.started_at ? when(task.started_at) : undefined],
      ["finished", task.finished_at ? when(task.finished_at) : undefined],
      ["searchable since", task.indexed_at ? when(task.indexed_at) : undefined],
      ["last error", error],
    ]),
  );
}

function inputView(task) {
  const files = task.input_files.length
    ? h(
        "ul",
        { class: "files" },
        task.input_files.map((f) =>
          h(
            "li",
            {},
            h("a", { href: f.url, download: f.name, text: f.name }),
            ` ${bytes(f.size)} `,
            h("code", { class: "muted", title: "sha256", text: f.sha256.slice(0, 12) }),
          ),
        ),
      )
    : h("p", { class: "muted", text: "No input files." });
  return [
    section("Parameters", h("pre", { class: "json", text: JSON.stringify(task.parameters, null, 2) })),
    section("Input files", files),
  ];
}

function attemptsView(attempts) {
  if (!attempts.length) return section("Attempts", h("p", { class: "muted", text: "Not started yet." }));
  return section(
    "Attempts",
    h(
      "div",
      { class: "scroll" },
      h(
        "table",
        { class: "grid attempts" },
        h("thead", {}, h("tr", {}, ["#", "attempt", "worker", "started", "took", "outcome", "error", "timings"].map((name) => h("th", { scope: "col", text: name })))),
        h(
          "tbody",
          {},
          // "#" counts every lease; "attempt" is the task's count then, which a retry
          // starts again from 1 and a release does not advance.
          attempts.map((a, i) =>
            h(
              "tr",
              {},
              h("td", { "data-label": "#", class: "num", text: i + 1 }),
              h("td", { "data-label": "attempt", class: "num", text: a.attempt }),
              h("td", { "data-label": "worker", text: a.worker_id || "—" }),
              h("td", { "data-label": "started", text: when(a.started_at) }),
              h("td", { "data-label": "took", text: a.finished_at ? seconds(a.finished_at - a.started_at) : "running" }),
              h("td", { "data-label": "outcome" }, badge(a.outcome)),
              h("td", { "data-label": "error", class: "error-text", text: a.error ? `${a.error.type}: ${a.error.message}` : "" }),
              h("td", { "data-label": "timings", text: Object.entries(a.timings).map(([k, v]) => `${k} ${seconds(v)}`).join(", ") }),
            ),
          ),
        ),
      ),
    ),
  );
}

function timingsView(timings) {
  const entries = Object.entries(timings || {});
  if (!entries.length) return null;
  const longest = Math.max(...entries.map(([, v]) => v), 1e-9);
  return section(
    "Timings",
    h(
      "table",
      { class: "timings" },
      h("caption", { class: "sr-only", text: "Seconds per stage of the last attempt" }),
      h(
        "tbody",
        {},
        entries.map(([stage, value]) => {
          const bar = h("span", { class: "bar" });
          bar.style.width = `${Math.max(1, (value / longest) * 100)}%`;
          return h("tr", {}, h("th", { scope: "row", text: stage }), h("td", { class: "num", text: seconds(value) }), h("td", { class: "bar-cell" }, bar));
        }),
      ),
    ),
  );
}
