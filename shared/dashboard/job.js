// One job: its facts, every attempt on a timeline, payload and result, and Retry / Cancel where
// its state allows them; while it is queued, when it may start and whether its type is paused or
// limited. Per refresh: GET /api/jobs/{id}, as often as its Retry-After says while it is not
// finished (else every 5 s); while it is queued, also GET /api/types/{type}, at most every 5 s.

import { ApiError, api } from "./api.js";
import { announce, copyText, fill, h, setText } from "./dom.js";
import { PRIORITY_LABELS, STATUS_LABELS, TERMINAL, ago, between, dateTime, duration, number, priorityBadge, rateText, statusBadge } from "./format.js";

const JSON_PREVIEW_CHARS = 2000;
const JSON_PREVIEW_LINES = 40;
const KEPT_ERRORS = 20; // the API keeps the last 20 errors of a job
const PORTAL = "https://portal.azure.com/";
const TYPE_EVERY_MS = 5000; // how stale the type's pause may be here: as on every instance

function jsonBlock(value, id, expanded, toggle) {
  if (value === null || value === undefined) return null;
  const text = JSON.stringify(value, null, 2);
  const lines = text.split("\n");
  const long = text.length > JSON_PREVIEW_CHARS || lines.length > JSON_PREVIEW_LINES;
  let shown = text;
  if (long && !expanded) {
    shown = lines.slice(0, JSON_PREVIEW_LINES).join("\n");
    if (shown.length > JSON_PREVIEW_CHARS) shown = shown.slice(0, JSON_PREVIEW_CHARS);
    shown += "\n…";
  }
  const pre = h("pre", { class: "json", id, tabindex: "0", "aria-label": id.replace("job-", "") }, shown);
  if (!long) return pre;
  const size = new Blob([text]).size;
  const label = expanded ? "Show less" : `Show all (${size >= 10_240 ? `${(size / 1024).toFixed(1)} KB` : `${number(size)} bytes`}, ${number(lines.length)} lines)`;
  return h("div", {}, pre, h("button", { type: "button", class: "button quiet", "aria-expanded": String(expanded), "aria-controls": id, onclick: toggle }, label));
}

function timeline(job) {
  const events = [{ at: job.created_at, kind: "submitted", title: "Submitted", detail: `${job.type}, up to ${job.max_attempts} ${job.max_attempts === 1 ? "attempt" : "attempts"}` }];
  const delay = between(job.created_at, job.due_at);
  if (delay !== null && delay > 1000) events.push({ at: job.due_at, kind: "due", title: "Due", detail: `delayed ${duration(delay)}` });
  for (const e of job.errors || []) events.push({ at: e.at, kind: "failed", title: `Attempt ${e.attempt} failed`, error: e.error });
  if (job.started_at) events.push({ at: job.started_at, kind: "started", title: `Attempt ${job.attempt} started` });
  if (job.status === "running") events.push({ at: null, kind: "running", title: `Attempt ${job.attempt} running`, detail: `for ${duration(Date.now() - Date.parse(job.started_at))}` });
  if (job.finished_at) events.push({ at: job.finished_at, kind: job.status, title: STATUS_LABELS[job.status] });
  if (job.status === "queued" && job.attempt > 1) events.push({ at: null, kind: "queued", title: `Attempt ${job.attempt} queued` });
  const order = (e) => (e.at ? Date.parse(e.at) : Number.POSITIVE_INFINITY);
  events.sort((a, b) => order(a) - order(b));
  const dropped = job.attempt > KEPT_ERRORS && (job.errors || []).length >= KEPT_ERRORS;
  return h(
    "div",
    {},
    dropped ? h("p", { class: "hint" }, `The API keeps the last ${KEPT_ERRORS} errors of a job: earlier attempts are not shown.`) : null,
    h(
      "ol",
      { class: "timeline", id: "timeline" },
      events.map((e) =>
        h(
          "li",
          { class: ["event", `event-${e.kind}`] },
          h("span", { class: "marker", "aria-hidden": "true" }),
          h("div", { class: "event-head" }, h("strong", {}, e.title), e.at ? h("time", { datetime: e.at, title: e.at }, dateTime(e.at)) : null, e.detail ? h("span", { class: "hint" }, e.detail) : null),
          e.error ? h("pre", { class: "error-text event-error" }, e.error) : null,
        ),
      ),
    ),
  );
}

function fact(label, value, title) {
  return h("div", { class: "fact" }, h("dt", {}, label), h("dd", { title }, value));
}

export function createJob(id, ctx) {
  let job = null;
  let signature = "";
  let missing = false;
  let busy = false;
  let flow = null; // the job's type as GET /api/types/{type} last said (while the job is queued)
  let flowAt = 0;
  let flowUnsupported = false; // an app without flow control: not asked again
  const expanded = { payload: false, result: false };

  const statusSlot = h("span", { id: "job-status" });
  const actions = h("div", { class: "actions", id: "job-actions" });
  const message = h("p", { class: "action-message", id: "action-message", role: "status" });
  const notices = h("div", { class: "job-notices", id: "job-notices" });
  const facts = h("dl", { class: "facts", id: "job-facts" });
  const history = h("div", { id: "job-timeline" });
  const payload = h("div", {});
  const result = h("div", {});
  const copy = h("button", { type: "button", class: "button quiet", onclick: (e) => copyText(id, e.currentTarget) }, "Copy id");
  const body = h("div", { class: "job-body" });
  const traces = h("div", { id: "job-traces" });

  const root = h(
    "section",
    { class: "view job-view", "aria-labelledby": "view-title" },
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: ctx.jobsHash() }, "Jobs"), h("span", { "aria-hidden": "true" }, " / "), h("span", { "aria-current": "page" }, "Job")),
    h(
      "div",
      { class: "view-head" },
      h("h1", { id: "view-title", tabindex: "-1" }, "Job ", h("code", { class: "mono job-full-id", id: "job-id" }, id)),
      copy,
      statusSlot,
    ),
    h("div", { class: "action-row" }, actions, message),
    notices,
    body,
  );
  fill(body, h("p", { class: "muted" }, "Loading…"));

  function layout() {
    fill(
      body,
      h(
        "div",
        { class: "grid detail-grid" },
        h("section", { class: "panel", "aria-labelledby": "h-facts" }, h("h2", { id: "h-facts" }, "Facts"), facts),
        h("section", { class: "panel", "aria-labelledby": "h-timeline" }, h("h2", { id: "h-timeline" }, "Attempts"), history),
        h("section", { class: "panel", "aria-labelledby": "h-payload" }, h("h2", { id: "h-payload" }, "Payload"), payload),
        h("section", { class: "panel", "aria-labelledby": "h-result" }, h("h2", { id: "h-result" }, "Result"), result),
        h("section", { class: "panel wide", "aria-labelledby": "h-traces" }, h("h2", { id: "h-traces" }, "Traces"), traces),
      ),
    );
  }

  function renderTraces() {
    // In Azure the API gives a link to the job's telemetry (JOBS_APPINSIGHTS_RESOURCE_ID); locally
    // there is no Application Insights, so no link. Only a link to the portal is followed.
    const url = typeof job.trace_url === "string" && job.trace_url.startsWith(PORTAL) ? job.trace_url : null;
    if (url) {
      fill(
        traces,
        h(
          "p",
          {},
          h("a", { href: url, id: "job-trace-link", target: "_blank", rel: "noopener noreferrer" }, "Open this job's telemetry in Application Insights"),
          " (the Azure portal's Logs: every request, dependency, log line and exception of operation ",
          h("code", { class: "mono" }, job.trace_id),
          ", oldest first; a row opens the end-to-end transaction).",
        ),
      );
      return;
    }
    fill(
      traces,
      h(
        "p",
        {},
        "In Azure, this job's traces are in Application Insights: open ",
        h("em", {}, "Transaction search"),
        " and filter on the custom dimension ",
        h("code", {}, "job_id"),
        " = ",
        h("code", { class: "mono" }, id),
        ", or on the operation id shown as Trace id above.",
      ),
    );
  }

  function renderJson() {
    fill(payload, jsonBlock(job.payload, "job-payload", expanded.payload, () => toggle("payload")) ?? h("p", { class: "muted" }, "No payload (null)."));
    const none = TERMINAL.has(job.status) ? "No result (null)." : "No result yet.";
    fill(result, jsonBlock(job.result, "job-result", expanded.result, () => toggle("result")) ?? h("p", { class: "muted" }, none));
  }

  function toggle(which) {
    expanded[which] = !expanded[which];
    renderJson();
    const button = (which === "payload" ? payload : result).querySelector("button");
    button?.focus();
  }

  function renderActions() {
    const buttons = [];
    if (job.status === "dead_lettered" || job.status === "cancelled") {
      buttons.push(h("button", { type: "button", class: "button primary", id: "job-retry", disabled: busy, onclick: () => act("retry") }, "Retry"));
    }
    if (job.status === "queued" || job.status === "running") {
      buttons.push(h("button", { type: "button", class: "button danger", id: "job-cancel", disabled: busy, onclick: () => act("cancel") }, "Cancel"));
    }
    const focused = actions.contains(document.activeElement) ? document.activeElement.id : null;
    fill(actions, buttons);
    if (focused) document.getElementById(focused)?.focus();
  }

  function renderNotices() {
    const now = Date.now();
    const items = [];
    if (job && job.status === "queued") {
      const due = Date.parse(job.due_at);
      const hold = job.held_by; // what flow control holds it back by, as the API reads it
      if (hold && hold.reason === "rate_limit" && hold.until) {
        items.push(
          h(
            "p",
            { class: "notice", id: "job-held" },
            h("strong", {}, "Waiting for its type's rate limit"),
            ": it holds the start ",
            h("time", { datetime: hold.until, title: hold.until }, dateTime(hold.until)),
            ` (${ago(hold.until, now)}). A change of the limit gives it a new start.`,
          ),
        );
      } else if (hold && hold.reason === "concurrency_limit") {
        items.push(
          h(
            "p",
            { class: "notice", id: "job-held" },
            h("strong", {}, "Waiting for a concurrency slot"),
            ": every slot of its type is taken; it starts when one is given back, or asks again on its own",
            hold.until ? ` ${ago(hold.until, now)}.` : ".",
          ),
        );
      } else if (due > now + 1000) {
        items.push(
          h(
            "p",
            { class: "notice", id: "job-starts" },
            h("strong", {}, "Starts no earlier than "),
            h("time", { datetime: job.due_at, title: job.due_at }, dateTime(job.due_at)),
            ` (${ago(job.due_at, now)}): it was submitted with a start time (run_at or delay_seconds).`,
          ),
        );
      }
      if ((flow && flow.paused) || (hold && hold.reason === "pause")) {
        items.push(
          h(
            "p",
            { class: "notice", id: "job-type-paused" },
            h("strong", {}, "Its type, ", h("code", {}, job.type), ", is paused"),
            ": the job stays queued until the type is resumed (",
            h("a", { href: "#/types" }, "Types"),
            ").",
          ),
        );
      } else if (flow && (flow.max_concurrency || flow.rate_limit)) {
        const limits = [];
        if (flow.max_concurrency) limits.push(`at most ${number(flow.max_concurrency)} running at once (${number(flow.running ?? 0)} now)`);
        if (flow.rate_limit) limits.push(`at most ${rateText(flow.rate_limit)}`);
        items.push(
          h(
            "p",
            { class: "hint", id: "job-type-limits" },
            "Its type, ",
            h("code", {}, job.type),
            `, is limited to ${limits.join(" and ")}: over a limit the job waits without using an attempt (`,
            h("a", { href: "#/types" }, "Types"),
            ").",
          ),
        );
      }
    }
    fill(notices, items);
    notices.hidden = items.length === 0;
  }

  async function refreshFlow(signal) {
    // The type's pause and limits matter only while the job waits; asked at most every 5 s.
    if (!job || job.status !== "queued" || flowUnsupported) {
      flow = null;
      return;
    }
    if (Date.now() - flowAt < TYPE_EVERY_MS) return;
    flowAt = Date.now();
    try {
      flow = (await api.getType(job.type, signal)).data;
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 404) {
        flowUnsupported = error.code === "not_found"; // no /api/types here; type_not_found: no handler now
        flow = null;
      }
    }
  }

  function render() {
    const now = Date.now();
    fill(statusSlot, statusBadge(job.status), priorityBadge(job.priority));
    root.dataset.status = job.status;
    renderActions();
    const wait = between(job.due_at, job.started_at);
    const took = job.finished_at ? between(job.started_at, job.finished_at) : job.status === "running" && job.started_at ? now - Date.parse(job.started_at) : null;
    fill(
      facts,
      fact("Status", STATUS_LABELS[job.status]),
      fact("Type", job.type),
      fact("Priority", PRIORITY_LABELS[job.priority] || job.priority || "Normal", "Which queue it waits in: high never waits behind normal or low work"),
      fact("Attempt", `${job.attempt} of ${job.max_attempts}`),
      fact("Submitted", `${dateTime(job.created_at)} (${ago(job.created_at, now)})`, job.created_at),
      fact("Due", dateTime(job.due_at), job.due_at),
      fact("Started", dateTime(job.started_at), job.started_at || ""),
      fact("Finished", dateTime(job.finished_at), job.finished_at || ""),
      fact("Updated", dateTime(job.updated_at), job.updated_at),
      fact("Queue wait", wait === null ? "–" : duration(Math.max(0, wait)), "started − due: the latest attempt's start, backoff included"),
      fact(job.status === "running" ? "Running for" : "Duration", took === null ? "–" : duration(took), "finished − started, of the latest attempt"),
      fact("Last error", job.last_error ? h("span", { class: "error-text" }, job.last_error) : "–"),
      fact("Trace id", job.trace_id || "–", "In Application Insights: Transaction search, then this operation id (or the custom dimension job_id)"),
    );
    fill(history, timeline(job));
    renderJson();
    renderTraces();
  }

  async function act(action) {
    if (busy) return;
    busy = true;
    renderActions();
    setText(message, action === "retry" ? "Retrying…" : "Cancelling…");
    try {
      const response = action === "retry" ? await api.retryJob(id) : await api.cancelJob(id);
      show(response.data);
      setText(message, action === "retry" ? `Queued again: attempt ${job.attempt} of ${job.max_attempts}.` : "Cancelled.");
      announce(`Job is now ${STATUS_LABELS[job.status].toLowerCase()}.`);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      setText(message, `Not ${action === "retry" ? "retried" : "cancelled"}: ${error.detail}`);
    } finally {
      busy = false;
      renderActions();
      ctx.refreshNow();
    }
  }

  function show(next) {
    const previous = job;
    job = next;
    const sig = `${job.status}|${job.attempt}|${job.updated_at}|${(job.errors || []).length}`;
    if (!previous || missing) layout();
    missing = false;
    if (sig !== signature) {
      signature = sig;
      render();
      if (previous && previous.status !== job.status) announce(`Job is now ${STATUS_LABELS[job.status].toLowerCase()}.`);
    } else if (job.status === "running") {
      render(); // the running time moves on
    }
  }

  return {
    name: "job",
    root,
    title: `Job ${id}`,
    async refresh(signal) {
      try {
        const response = await api.getJob(id, signal);
        show(response.data);
        await refreshFlow(signal);
        renderNotices();
        ctx.rendered("job");
        return { retryAfter: response.retryAfter };
      } catch (error) {
        if (error instanceof ApiError && error.status === 404) {
          missing = true;
          job = null;
          signature = "";
          fill(statusSlot);
          fill(actions);
          fill(notices);
          fill(body, h("div", { class: "empty", id: "job-missing" }, h("p", {}, `No job with id ${id}.`), h("p", { class: "hint" }, "Jobs are kept for the retention period, then deleted."), h("a", { href: ctx.jobsHash() }, "Back to jobs")));
          return { retryAfter: 30 };
        }
        throw error;
      }
    },
    tickClock() {
      if (job) renderNotices();
    },
  };
}
