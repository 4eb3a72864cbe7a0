// The overview's chart: tasks completed and failed per minute over the last hour, as
// stacked SVG bars, with the same numbers in words for screen readers.

import { h, svg } from "./dom.js";

const WIDTH = 600;
const HEIGHT = 140;
const PAD = 24;

export function throughputChart(data) {
  const n = data.completed.length;
  const totals = data.completed.map((c, i) => c + data.failed[i]);
  const peak = Math.max(1, ...totals);
  const barW = (WIDTH - PAD) / n;
  const y = (v) => HEIGHT - PAD - (v / peak) * (HEIGHT - 2 * PAD);
  const bars = [];
  for (let i = 0; i < n; i += 1) {
    const x = PAD + i * barW;
    const ok = data.completed[i];
    const bad = data.failed[i];
    const start = new Date((data.since + i * data.bucket_s) * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    const group = svg("g", {}, svg("title", { text: `${start}: ${ok} completed, ${bad} failed` }));
    if (ok) group.append(svg("rect", { class: "bar-ok", x, width: barW - 1, y: y(ok), height: y(0) - y(ok) }));
    if (bad) group.append(svg("rect", { class: "bar-bad", x, width: barW - 1, y: y(ok + bad), height: y(ok) - y(ok + bad) }));
    bars.push(group);
  }
  const completed = data.completed.reduce((a, b) => a + b, 0);
  const failed = data.failed.reduce((a, b) => a + b, 0);
  const span = n * data.bucket_s;
  const summary = `${completed} completed (${(completed / span).toFixed(3)}/s), ${failed} failed (${(failed / span).toFixed(3)}/s) in the last ${Math.round(span / 60)} minutes; busiest minute: ${Math.max(0, ...totals)} tasks.`;
  const chart = svg(
    "svg",
    { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "chart", role: "img", "aria-label": summary },
    svg("line", { class: "axis", x1: PAD, x2: WIDTH, y1: y(0), y2: y(0) }),
    svg("text", { class: "tick", x: 2, y: y(peak) + 4, text: String(peak) }),
    svg("text", { class: "tick", x: 2, y: y(0) + 4, text: "0" }),
    svg("text", { class: "tick", x: PAD, y: HEIGHT - 4, text: "−60 min" }),
    svg("text", { class: "tick", x: WIDTH - 30, y: HEIGHT - 4, text: "now" }),
    bars,
  );
  return h(
    "figure",
    { class: "throughput" },
    chart,
    h(
      "figcaption",
      {},
      h("span", { class: "key key-ok", "aria-hidden": "true" }),
      " completed ",
      h("span", { class: "key key-bad", "aria-hidden": "true" }),
      " failed — ",
      summary,
    ),
  );
}
