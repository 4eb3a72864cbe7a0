// A task's result, loaded a piece at a time so that a long one never freezes the page:
// the Markdown in parts rendered (and sanitised) by the server, the transcript and the
// chunks in pages. The next piece loads when the reader scrolls near the end of what is
// shown, or with the "more" button (keyboards, and browsers without observers).

import { api } from "./api.js";
import { clock, h, section } from "./dom.js";

const ITEMS_PAGE = 200;

export function resultView(taskId) {
  const base = `/ui/api/tasks/${encodeURIComponent(taskId)}`;
  const content = h("div", { class: "markdown", id: "result-content" });
  const transcript = h("div");
  const chunks = h("div");
  const box = h(
    "div",
    { class: "result" },
    section("Result", content, lazy(content, (n) => loadPart(base, content, n))),
    transcript,
    chunks,
  );
  lazyItems(base, "segments", transcript, "Transcript", segmentRow, transcriptTable);
  lazyItems(base, "chunks", chunks, "Chunks", chunkItem, () => h("ol", { class: "chunks" }));
  return box;
}

// A "more" control that calls `load(n)` for n = 0, 1, … while it returns true, and also
// when it scrolls into view.
function lazy(target, load) {
  const more = h("button", { type: "button", class: "more", text: "Show more" });
  const box = h("div", { class: "lazy" }, more);
  let next = 0;
  let busy = false;
  const step = async () => {
    if (busy || more.hidden) return;
    busy = true;
    more.disabled = true;
    try {
      const again = await load(next);
      next += 1;
      more.hidden = !again;
    } catch (err) {
      box.append(h("p", { class: "error", role: "alert", text: err.message }));
      more.hidden = true;
    } finally {
      busy = false;
      more.disabled = false;
    }
    if (!more.hidden && visible(more)) step();
  };
  more.addEventListener("click", step);
  if ("IntersectionObserver" in window) {
    new IntersectionObserver((entries) => entries.some((e) => e.isIntersecting) && step(), {
      rootMargin: "400px",
    }).observe(more);
  }
  step();
  return box;
}

function visible(el) {
  const rect = el.getBoundingClientRect();
  return rect.top < window.innerHeight + 400 && rect.bottom > 0 && !el.hidden;
}

async function loadPart(base, content, n) {
  const data = await api(`${base}/content?part=${n}`);
  const part = h("div", { class: "part", dataset: { part: String(n) } });
  // The server renders Markdown with raw HTML turned off and link targets checked
  // (morag_worker/server/render.py); the page's CSP forbids inline script besides.
  part.innerHTML = data.html;
  if (n === 0 && data.metadata && Object.keys(data.metadata).length) {
    content.before(
      h(
        "details",
        { class: "metadata" },
        h("summary", { text: "Metadata" }),
        h("pre", { class: "json", text: JSON.stringify(data.metadata, null, 2) }),
      ),
    );
  }
  content.append(part);
  content.dataset.parts = String(data.parts);
  content.dataset.loaded = String(n + 1);
  return n + 1 < data.parts;
}

function lazyItems(base, kind, holder, title, row, container) {
  let list = null;
  const count = h("p", { class: "muted" });
  const load = async (n) => {
    const data = await api(`${base}/items?kind=${kind}&offset=${n * ITEMS_PAGE}&limit=${ITEMS_PAGE}`);
    if (!data.total) {
      holder.replaceChildren();
      return false;
    }
    if (!list) {
      list = container();
      holder.querySelector(".lazy").before(count, list);
    }
    const body = list.tBodies ? list.tBodies[0] : list;
    body.append(...data.items.map(row));
    const shown = Math.min(data.total, (n + 1) * ITEMS_PAGE);
    count.textContent = `${shown} of ${data.total} shown.`;
    list.dataset.shown = String(shown);
    return shown < data.total;
  };
  holder.append(section(title, lazy(holder, load)));
}

function transcriptTable() {
  return h(
    "table",
    { class: "grid transcript" },
    h("caption", { class: "sr-only", text: "Transcript: time, speaker, text" }),
    h("thead", {}, h("tr", {}, ["time", "speaker", "text"].map((name) => h("th", { scope: "col", text: name })))),
    h("tbody"),
  );
}

function segmentRow(s) {
  return h(
    "tr",
    {},
    h("td", { "data-label": "time", class: "num" }, h("time", { text: `${clock(s.start)}–${clock(s.end)}` })),
    h("td", { "data-label": "speaker", class: "speaker", text: s.speaker || "" }),
    h("td", { "data-label": "text", text: s.text || "" }),
  );
}

function chunkItem(c) {
  const where = [
    (c.heading_path || []).join(" › "),
    c.page !== null && c.page !== undefined ? `page ${c.page}` : "",
    c.start_s !== null && c.start_s !== undefined ? `${clock(c.start_s)}–${clock(c.end_s)}` : "",
    c.token_count ? `${c.token_count} tokens` : "",
  ].filter(Boolean).join(" · ");
  return h("li", { value: c.index + 1 }, where ? h("p", { class: "muted", text: where }) : null, h("p", { class: "chunk-text", text: c.text }));
}
