// Overview: counts by status (last hour, last 24 h), outcomes over time, the queue, the newest
// dead letters. One API call per refresh: GET /api/stats (aggregates the reconciler keeps).

import { ApiError, api } from "./api.js";
import { RANGES, outcomesChart } from "./chart.js";
import { fill, h, setText } from "./dom.js";
import { STATUSES, STATUS_LABELS, ago, clock, dateTime, duration, number, shortId, timeAgo, truncate } from "./format.js";

function countTiles(counts, since) {
  return h(
    "ul",
    { class: "tiles" },
    STATUSES.map((status) =>
      h(
        "li",
        { class: ["tile", `tile-${status}`] },
        h(
          "a",
          { href: `#/jobs?status=${status}&since=${since}`, "aria-label": `${number(counts?.[status] ?? 0)} ${STATUS_LABELS[status].toLowerCase()}: list them` },
          h("span", { class: "tile-value", "data-status": status }, number(counts?.[status] ?? 0)),
          h("span", { class: "tile-label" }, h("span", { class: ["dot", `dot-${status}`], "aria-hidden": "true" }), STATUS_LABELS[status]),
        ),
      ),
    ),
  );
}

function deadLetterTable(jobs) {
  if (!jobs.length) {
    return h("p", { class: "empty", id: "no-dead-letters" }, "No dead letters. Jobs that run out of attempts show up here.");
  }
  return h(
    "table",
    { class: "data", id: "dead-letters" },
    h("caption", { class: "visually-hidden" }, "The newest dead-lettered jobs"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { scope: "col" }, "Job"),
        h("th", { scope: "col" }, "Type"),
        h("th", { scope: "col", class: "num" }, "Attempts"),
        h("th", { scope: "col" }, "Dead-lettered"),
        h("th", { scope: "col" }, "Last error"),
      ),
    ),
    h(
      "tbody",
      {},
      jobs.map((job) =>
        h(
          "tr",
          {},
          h("td", {}, h("a", { href: `#/jobs/${encodeURIComponent(job.id)}`, class: "mono", title: job.id }, shortId(job.id))),
          h("td", {}, job.type),
          h("td", { class: "num" }, `${job.attempt}/${job.max_attempts}`),
          h("td", {}, timeAgo(job.finished_at || job.updated_at)),
          h("td", { class: "error-cell", title: job.last_error || "" }, truncate(job.last_error || "–", 140)),
        ),
      ),
    ),
  );
}

function figure(label, value, { warn = false, id, hint } = {}) {
  return h(
    "div",
    { class: ["figure", warn && "warn"] },
    h("dt", {}, label),
    h("dd", { id }, value),
    hint ? h("dd", { class: "hint" }, hint) : null,
  );
}

export function createOverview(params, ctx) {
  let range = RANGES[params.get("range")] ? params.get("range") : "24h";
  let stats = null;
  let fallback = false;

  const asOf = h("p", { class: "as-of", id: "as-of" });
  const hour = h("div", { class: "panel-body" });
  const day = h("div", { class: "panel-body" });
  const queue = h("div", { class: "panel-body" });
  const chart = h("div", { class: "panel-body" });
  const dead = h("div", { class: "panel-body" });
  const rangeButtons = Object.keys(RANGES).map((key) =>
    h("button", { type: "button", class: "segment", "aria-pressed": String(key === range), onclick: () => ctx.setParams({ range: key === "24h" ? "" : key }) }, key),
  );
  const root = h(
    "section",
    { class: "view overview", "aria-labelledby": "view-title" },
    h("div", { class: "view-head" }, h("h1", { id: "view-title", tabindex: "-1" }, "Overview"), asOf),
    h(
      "div",
      { class: "grid overview-grid" },
      h("section", { class: "panel counts", "aria-labelledby": "h-hour" }, h("h2", { id: "h-hour" }, "Last hour"), hour),
      h("section", { class: "panel counts", "aria-labelledby": "h-day" }, h("h2", { id: "h-day" }, "Last 24 hours"), day),
      h("section", { class: "panel queue", "aria-labelledby": "h-queue" }, h("h2", { id: "h-queue" }, "Queue"), queue),
      h(
        "section",
        { class: "panel chart-panel", "aria-labelledby": "h-chart" },
        h(
          "div",
          { class: "panel-head" },
          h("h2", { id: "h-chart" }, "Outcomes over time"),
          h("div", { class: "segments", role: "group", "aria-label": "Time range of the chart" }, rangeButtons),
        ),
        chart,
      ),
      h(
        "section",
        { class: "panel wide dead-panel", "aria-labelledby": "h-dead" },
        h("div", { class: "panel-head" }, h("h2", { id: "h-dead" }, "Recent dead letters"), h("a", { href: "#/jobs?status=dead_lettered" }, "All dead letters")),
        dead,
      ),
    ),
  );
  fill(hour, h("p", { class: "muted" }, "Loading…"));

  function renderChart() {
    rangeButtons.forEach((b) => b.setAttribute("aria-pressed", String(b.textContent === range)));
    if (stats) fill(chart, outcomesChart(stats.series, RANGES[range]));
  }

  function render() {
    const hint = "Jobs due in the last {span} (submitted, for jobs without a delay), by status: counted until 15 minutes after they were due, so a later change (a long run, a late retry, a redrive) shows in the list they link to, not here.";
    fill(hour, countTiles(stats.last_hour, "1h"), h("p", { class: "hint" }, hint.replace("{span}", "hour")));
    fill(day, countTiles(stats.last_24h, "24h"), h("p", { class: "hint" }, hint.replace("{span}", "24 hours")));
    const q = stats.queue || {};
    const oldest = q.oldest_queued_age_seconds;
    fill(
      queue,
      h(
        "dl",
        { class: "figures" },
        figure("Depth", number(q.depth), { id: "queue-depth", hint: "messages, delayed ones included" }),
        figure("Poison", number(q.poison_depth), { warn: q.poison_depth > 0, id: "poison-depth", hint: "given up by the host" }),
        figure("Oldest queued", oldest === null || oldest === undefined ? "–" : duration(oldest * 1000), {
          warn: oldest > 300,
          id: "oldest-queued",
          // A delayed job's message, or a held one's (a rate limit's start), is hidden: not a backlog.
          hint: oldest === null || oldest === undefined ? "no message waiting to be taken" : "the oldest message waiting to be taken",
        }),
      ),
    );
    renderChart();
    fill(dead, deadLetterTable(stats.recent_dead_letters || []));
    if (stats.as_of) {
      asOf.title = dateTime(stats.as_of);
      setText(asOf, `Counts as of ${clock(stats.as_of)} (${ago(stats.as_of)}); the reconciler recounts every 30 s.`);
    } else {
      setText(asOf, "Not counted yet: the reconciler counts every 30 s.");
    }
  }

  // An app without GET /api/stats (an older deployment): say so, and list the dead letters.
  async function refreshFallback(signal) {
    const { data } = await api.listJobs({ status: "dead_lettered", limit: 10 }, signal);
    const note = h("p", { class: "notice" }, "This app does not serve /api/stats yet: counts, the chart and the queue need it.");
    fill(hour, note);
    fill(day, h("p", { class: "muted" }, "–"));
    fill(queue, h("p", { class: "muted" }, "–"));
    fill(chart, h("p", { class: "muted" }, "–"));
    fill(dead, deadLetterTable(data.jobs));
    setText(asOf, `Dead letters as of ${clock(Date.now())}.`);
    return { retryAfter: null };
  }

  return {
    name: "overview",
    root,
    title: "Overview",
    async refresh(signal) {
      if (fallback) return refreshFallback(signal);
      try {
        const response = await api.stats(signal);
        stats = response.data;
        render();
        ctx.rendered("overview");
        return { retryAfter: response.retryAfter };
      } catch (error) {
        if (error instanceof ApiError && error.status === 404 && error.code === "not_found") {
          fallback = true;
          return refreshFallback(signal);
        }
        throw error;
      }
    },
    update(next) {
      range = RANGES[next.get("range")] ? next.get("range") : "24h";
      renderChart();
    },
    tickClock() {
      if (stats?.as_of) setText(asOf, `Counts as of ${clock(stats.as_of)} (${ago(stats.as_of)}); the reconciler recounts every 30 s.`);
    },
  };
}
