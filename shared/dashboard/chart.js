// The outcomes chart: stacked bars per 5-minute bucket, drawn as inline SVG from `series` of
// GET /api/stats. No library: a few dozen lines of rectangles, with a text summary and a table
// for assistive technology.

import { h, s } from "./dom.js";
import { STATUS_LABELS, hm, number, plural } from "./format.js";

export const OUTCOMES = ["succeeded", "dead_lettered", "cancelled"];
export const RANGES = { "1h": 1, "6h": 6, "24h": 24 };
const BUCKET_MS = 5 * 60_000;
const W = 960;
const H = 220;
const PAD = { left: 44, right: 8, top: 12, bottom: 26 };

function niceMax(value) {
  if (value <= 4) return 4;
  const step = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= value) return m * step;
  return 10 * step;
}

function tickEveryMinutes(hours) {
  return hours <= 1 ? 15 : hours <= 6 ? 60 : 180;
}

/** The chart for the last `hours` of the series: an SVG, a legend and a table (in a details). */
export function outcomesChart(series, hours, idBase = "outcomes") {
  const points = (series || []).slice(-hours * 12);
  const totals = Object.fromEntries(OUTCOMES.map((k) => [k, points.reduce((n, p) => n + (p[k] || 0), 0)]));
  const heights = points.map((p) => OUTCOMES.reduce((n, k) => n + (p[k] || 0), 0));
  const top = niceMax(Math.max(0, ...heights));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const slot = points.length ? plotW / points.length : plotW;
  const barW = Math.max(1, slot * 0.8);
  const y = (v) => PAD.top + plotH - (v / top) * plotH;

  const busiest = heights.length ? heights.indexOf(Math.max(...heights)) : -1;
  const summary =
    `Finished jobs over the last ${hours} ${hours === 1 ? "hour" : "hours"} by 5-minute bucket of due time: ` +
    OUTCOMES.map((k) => `${number(totals[k])} ${STATUS_LABELS[k].toLowerCase()}`).join(", ") +
    (busiest >= 0 && heights[busiest] > 0 ? `; busiest: ${hm(points[busiest].at)} with ${number(heights[busiest])}.` : ".");

  const svg = s("svg", {
    viewBox: `0 0 ${W} ${H}`,
    class: "chart",
    role: "img",
    "aria-labelledby": `${idBase}-title`,
    "aria-describedby": `${idBase}-desc`,
  });
  svg.append(s("title", { id: `${idBase}-title`, text: "Outcomes over time" }));
  svg.append(s("desc", { id: `${idBase}-desc`, text: summary }));

  for (const fraction of [0, 0.5, 1]) {
    const value = top * fraction;
    svg.append(s("line", { class: "gridline", x1: PAD.left, x2: W - PAD.right, y1: y(value), y2: y(value) }));
    svg.append(s("text", { class: "axis", x: PAD.left - 6, y: y(value) + 4, "text-anchor": "end", text: number(value) }));
  }
  const every = tickEveryMinutes(hours);
  points.forEach((p, i) => {
    const at = Date.parse(p.at);
    const x = PAD.left + i * slot;
    const local = new Date(at);
    if ((local.getHours() * 60 + local.getMinutes()) % every === 0) {
      svg.append(s("line", { class: "tick", x1: x, x2: x, y1: PAD.top + plotH, y2: PAD.top + plotH + 4 }));
      svg.append(s("text", { class: "axis", x, y: H - 8, "text-anchor": "middle", text: hm(at) }));
    }
    const group = s("g", { class: "bucket" });
    const counts = OUTCOMES.filter((k) => p[k]).map((k) => `${number(p[k])} ${STATUS_LABELS[k].toLowerCase()}`);
    group.append(
      s("title", {
        text: `${hm(at)}–${hm(at + BUCKET_MS)}: ${counts.join(", ") || "nothing finished"}`,
      }),
    );
    group.append(s("rect", { class: "hit", x, y: PAD.top, width: slot, height: plotH }));
    let base = 0;
    for (const k of OUTCOMES) {
      const v = p[k] || 0;
      if (!v) continue;
      group.append(s("rect", { class: `bar bar-${k}`, x: x + (slot - barW) / 2, y: y(base + v), width: barW, height: y(base) - y(base + v) }));
      base += v;
    }
    svg.append(group);
  });
  svg.append(s("line", { class: "baseline", x1: PAD.left, x2: W - PAD.right, y1: y(0), y2: y(0) }));

  const legend = h(
    "ul",
    { class: "legend" },
    OUTCOMES.map((k) => h("li", {}, h("span", { class: ["swatch", `swatch-${k}`], "aria-hidden": "true" }), `${STATUS_LABELS[k]} ${number(totals[k])}`)),
  );

  const rows = points.filter((p, i) => heights[i] > 0);
  const table = h(
    "details",
    { class: "chart-table" },
    h("summary", {}, "Show the numbers"),
    rows.length
      ? h(
          "table",
          { class: "data compact" },
          h("caption", { class: "visually-hidden" }, "Finished jobs per 5-minute bucket"),
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "From"), OUTCOMES.map((k) => h("th", { scope: "col", class: "num" }, STATUS_LABELS[k])))),
          h(
            "tbody",
            {},
            rows.map((p) => h("tr", {}, h("td", {}, hm(p.at)), OUTCOMES.map((k) => h("td", { class: "num" }, number(p[k] || 0))))),
          ),
        )
      : h("p", { class: "muted" }, `Nothing finished in the last ${plural(hours, "hour")}.`),
  );
  return h("div", { class: "chart-wrap" }, svg, legend, table);
}
