// Jobs: the listing, filtered by status, type and due time, newest or oldest first as the API
// lists them (`order=oldest`), a page at a time with the continuation token.
//
// Per refresh: GET /api/jobs once for the first min(200, loaded) jobs (more calls only when a
// filtered listing answers short pages, at most 5). Rows are updated in place, so scroll
// position, focus and "Load more" survive it.

import { ApiError, api, apiDocument } from "./api.js";
import { bulkAllowed, bulkPanel, openBulk } from "./bulk.js";
import { announce, fill, h, setText } from "./dom.js";
import { STATUSES, STATUS_LABELS, TERMINAL, ago, between, dateTime, duration, plural, priorityBadge, statusBadge, timeAgo, truncate } from "./format.js";

export const PAGE = 50;
const MAX_LIMIT = 200;
const MAX_REQUESTS = 5; // per load: a listing filtered on type (or queued/running/succeeded) may answer short pages
const ID = /^[A-Za-z0-9_.-]{10,64}$/;
const RELATIVE = /^(\d+)([mhd])$/;
const UNIT_MS = { m: 60_000, h: 3_600_000, d: 86_400_000 };
export const TIME_RANGES = [
  ["", "Any time"],
  ["15m", "Last 15 minutes"],
  ["1h", "Last hour"],
  ["24h", "Last 24 hours"],
  ["7d", "Last 7 days"],
  ["custom", "Between…"],
];

// What the API takes as a time: RFC 3339 with a zone (Date.parse would also take "7" or "2024-01-01").
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})$/;
const MAX_AGE_MS = 100 * 365 * UNIT_MS.d;

/** Whether a due-time filter is one the API takes: an age ("1h", up to a century) or a time. */
function validTime(value) {
  if (!value) return true;
  const m = RELATIVE.exec(value);
  if (m) return Number(m[1]) * UNIT_MS[m[2]] <= MAX_AGE_MS;
  return RFC3339.test(value) && !Number.isNaN(Date.parse(value));
}

/** What is wrong with a status or due-time filter, as sentences (none: it is usable). */
export function filterProblems({ status = "", since = "", until = "" }) {
  const problems = [];
  if (status && !STATUSES.includes(status)) problems.push(`"${status}" is not a status (${STATUSES.join(", ")})`);
  for (const [name, value] of [["since", since], ["until", until]]) {
    if (!validTime(value)) problems.push(`${name} "${value}" is neither an age (15m, 1h, 24h, 7d) nor a time`);
  }
  return problems;
}

export function readFilter(params) {
  const raw = { status: params.get("status") || "", since: params.get("since") || "", until: params.get("until") || "" };
  // A filter the list cannot use is said so, never dropped: listing (and offering to cancel)
  // every job for a mistyped status would be the opposite of what was asked.
  const problems = filterProblems(raw);
  return {
    status: STATUSES.includes(raw.status) ? raw.status : "",
    type: (params.get("type") || "").trim(),
    since: validTime(raw.since) ? raw.since : "",
    until: validTime(raw.until) ? raw.until : "",
    order: params.get("order") === "oldest" ? "oldest" : "newest",
    problems,
  };
}

/** The Jobs view's URL for a filter: `#/jobs?status=…&type=…`. */
export function jobsHash(filter) {
  const params = new URLSearchParams();
  for (const name of ["status", "type", "since", "until"]) if (filter[name]) params.set(name, filter[name]);
  if (filter.order === "oldest") params.set("order", "oldest");
  const query = params.toString();
  return query ? `#/jobs?${query}` : "#/jobs";
}

/** A relative time ("15m", "24h", "7d") as an RFC 3339 time now; anything else as given. */
export function resolveTime(value) {
  if (!value) return undefined;
  const m = RELATIVE.exec(value);
  return m ? new Date(Date.now() - Number(m[1]) * UNIT_MS[m[2]]).toISOString() : value;
}

/** The API's filter for a view filter, times made absolute now (what bulk actions take). */
export function apiFilter(filter) {
  const out = {};
  if (filter.status) out.status = filter.status;
  if (filter.type) out.type = filter.type;
  if (filter.since) out.since = resolveTime(filter.since);
  if (filter.until) out.until = resolveTime(filter.until);
  // "Due in the last hour" ends now, as the overview's counts do: not the jobs due later.
  else if (RELATIVE.test(filter.since)) out.until = new Date().toISOString();
  return out;
}

/** The listing's query: the filter, and the order. */
export function listQuery(filter) {
  return filter.order === "oldest" ? { ...apiFilter(filter), order: "oldest" } : apiFilter(filter);
}

export function describeFilter(filter) {
  const parts = [];
  if (filter.status) parts.push(STATUS_LABELS[filter.status].toLowerCase());
  if (filter.type) parts.push(`of type ${filter.type}`);
  if (filter.since) {
    const m = RELATIVE.exec(filter.since);
    parts.push(m ? `due in the last ${m[1]} ${{ m: "min", h: "h", d: "days" }[m[2]]}` : `due since ${dateTime(filter.since)}`);
  }
  if (filter.until) parts.push(`due before ${dateTime(filter.until)}`);
  return parts.join(", ");
}

// <input type="datetime-local"> speaks local time without a zone; the API wants RFC 3339.
function toLocalInput(value) {
  const t = Date.parse(value);
  if (Number.isNaN(t)) return "";
  const d = new Date(t);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function fromLocalInput(value) {
  if (!value) return "";
  const t = new Date(value);
  return Number.isNaN(t.getTime()) ? "" : t.toISOString();
}

async function loadPages(query, continuation, want, signal) {
  const jobs = [];
  let cont = continuation;
  let requests = 0;
  do {
    const limit = Math.min(MAX_LIMIT, Math.max(1, want - jobs.length));
    const { data } = await api.listJobs({ ...query, limit, continuation: cont || undefined }, signal);
    jobs.push(...data.jobs);
    cont = data.continuation;
    requests += 1;
  } while (cont && jobs.length < want && requests < MAX_REQUESTS);
  return { jobs, continuation: cont };
}

function field(label, control, id) {
  return h("div", { class: "field" }, h("label", { for: id }, label), control);
}

function idCell(id) {
  // The full id is in the text (copying the cell copies it) and in the title; the middle is hidden.
  const head = id.slice(0, 2);
  const tail = id.slice(-8);
  const middle = id.slice(2, -8);
  return h(
    "a",
    { href: `#/jobs/${encodeURIComponent(id)}`, class: "job-id mono", title: id, "aria-label": `Job ${id}` },
    head,
    h("span", { class: "id-middle" }, middle),
    tail,
  );
}

export function createJobs(params, ctx) {
  let filter = readFilter(params);
  let jobs = [];
  let continuation = null;
  // The query the continuation belongs to: a relative time ("1h") is made absolute once per
  // load, and the token is only good for the times it was issued for.
  let continuationQuery = null;
  let loaded = false;
  let generation = 0;
  let loadingMore = false;
  let knownTypes = null;
  const rows = new Map();

  // --- the controls ---
  const status = h("select", { id: "f-status", name: "status" }, h("option", { value: "" }, "Any status"), STATUSES.map((s) => h("option", { value: s }, STATUS_LABELS[s])));
  const typeList = h("datalist", { id: "job-types" });
  const type = h("input", { id: "f-type", name: "type", type: "text", list: "job-types", autocomplete: "off", spellcheck: "false", placeholder: "any type" });
  const range = h("select", { id: "f-range", name: "range" }, TIME_RANGES.map(([v, label]) => h("option", { value: v }, label)));
  const since = h("input", { id: "f-since", name: "since", type: "datetime-local" });
  const until = h("input", { id: "f-until", name: "until", type: "datetime-local" });
  const custom = h("div", { class: "custom-range", hidden: true }, field("Due from", since, "f-since"), field("Due before", until, "f-until"));
  const order = h("select", { id: "f-order", name: "order" }, h("option", { value: "newest" }, "Newest first"), h("option", { value: "oldest" }, "Oldest first"));
  const clear = h("button", { type: "button", class: "button quiet", id: "clear-filters", onclick: () => ctx.navigate("#/jobs") }, "Clear filters");
  const filters = h(
    "form",
    { class: "filters", "aria-label": "Filter jobs", onsubmit: (e) => { e.preventDefault(); applyForm(); } },
    field("Status", status, "f-status"),
    field("Type", type, "f-type"),
    typeList,
    field("Due", range, "f-range"),
    custom,
    field("Order", order, "f-order"),
    h("div", { class: "field buttons" }, h("button", { type: "submit", class: "button" }, "Apply"), clear),
  );
  status.addEventListener("change", applyForm);
  order.addEventListener("change", applyForm);
  type.addEventListener("change", applyForm);
  since.addEventListener("change", () => since.value && applyForm());
  until.addEventListener("change", () => applyForm());
  range.addEventListener("change", () => {
    custom.hidden = range.value !== "custom";
    if (range.value !== "custom") applyForm();
  });

  const search = h("input", { id: "f-search", name: "q", type: "search", autocomplete: "off", spellcheck: "false", placeholder: "a job id, or status:dead_lettered type:fail", "aria-describedby": "search-help" });
  const SEARCH_HELP = "An id opens that job; status:, type:, since: (15m, 1h, 24h, 7d) filter the list.";
  const searchHelp = h("p", { id: "search-help", class: "hint", "aria-live": "polite" }, SEARCH_HELP);
  search.addEventListener("input", () => {
    if (!searchHelp.classList.contains("error-text")) return;
    searchHelp.classList.remove("error-text");
    search.removeAttribute("aria-invalid");
    setText(searchHelp, SEARCH_HELP);
  });
  const searchForm = h(
    "form",
    { class: "search", role: "search", "aria-label": "Find jobs", onsubmit: (e) => { e.preventDefault(); runSearch(search.value); } },
    h("label", { for: "f-search" }, "Find"),
    h("div", { class: "search-row" }, search, h("button", { type: "submit", class: "button" }, "Go")),
    searchHelp,
  );

  const retryAll = h("button", { type: "button", class: "button", id: "retry-all", onclick: () => startBulk("retry") }, "Retry all matching…");
  const cancelAll = h("button", { type: "button", class: "button", id: "cancel-all", onclick: () => startBulk("cancel") }, "Cancel all matching…");
  const bulkHint = h("p", { class: "hint", id: "bulk-hint" });

  const summary = h("p", { class: "summary", id: "jobs-summary", "aria-live": "off" }, "Loading…");
  const orderNote = h("p", { class: "hint", id: "order-note", hidden: true });
  const tbody = h("tbody", {});
  const table = h(
    "table",
    { class: "data jobs", id: "jobs-table", hidden: true },
    h("caption", { class: "visually-hidden" }, "Jobs"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { scope: "col" }, "Job"),
        h("th", { scope: "col" }, "Type"),
        h("th", { scope: "col" }, "Status"),
        h("th", { scope: "col", class: "num" }, "Attempt"),
        h("th", { scope: "col" }, "Age"),
        h("th", { scope: "col", class: "num" }, "Duration"),
        h("th", { scope: "col" }, "Last error"),
      ),
    ),
    tbody,
  );
  const empty = h("div", { class: "empty", id: "jobs-empty", hidden: true });
  const more = h("button", { type: "button", class: "button", id: "load-more", hidden: true, onclick: loadMore }, "Load more");
  const panel = bulkPanel(() => ctx.refreshNow());

  const root = h(
    "section",
    { class: "view jobs-view", "aria-labelledby": "view-title" },
    h("div", { class: "view-head" }, h("h1", { id: "view-title", tabindex: "-1" }, "Jobs"), searchForm),
    filters,
    h("div", { class: "toolbar" }, h("div", {}, summary, orderNote), h("div", { class: "bulk-buttons" }, retryAll, cancelAll, bulkHint)),
    panel,
    h("div", { class: "table-wrap" }, table),
    empty,
    h("div", { class: "more" }, more),
  );

  // --- the filter, the form and the URL ---
  function syncForm() {
    status.value = filter.status;
    if (document.activeElement !== type) type.value = filter.type;
    order.value = filter.order;
    const preset = TIME_RANGES.some(([v]) => v && v !== "custom" && v === filter.since) && !filter.until;
    if (!filter.since && !filter.until) range.value = "";
    else if (preset) range.value = filter.since;
    else range.value = "custom";
    custom.hidden = range.value !== "custom";
    if (range.value === "custom") {
      since.value = toLocalInput(resolveTime(filter.since) || "");
      until.value = toLocalInput(resolveTime(filter.until) || "");
    }
    const usable = filter.problems.length === 0;
    const retryOk = usable && bulkAllowed("retry", filter.status);
    const cancelOk = usable && bulkAllowed("cancel", filter.status);
    retryAll.disabled = !retryOk;
    cancelAll.disabled = !cancelOk;
    setText(
      bulkHint,
      !usable ? "" : !retryOk ? "Retry applies to dead-lettered and cancelled jobs." : !cancelOk ? "Cancel applies to queued and running jobs." : "",
    );
    bulkHint.hidden = retryOk && cancelOk;
    clear.disabled = !(filter.status || filter.type || filter.since || filter.until || filter.order === "oldest" || !usable);
  }

  function applyForm() {
    const next = { status: status.value, type: type.value.trim(), since: "", until: "", order: order.value };
    if (range.value === "custom") {
      next.since = fromLocalInput(since.value);
      next.until = fromLocalInput(until.value);
    } else {
      next.since = range.value;
    }
    ctx.navigate(jobsHash(next));
  }

  function runSearch(text) {
    const value = text.trim();
    if (!value) return;
    if (!value.includes(":") && ID.test(value)) {
      ctx.navigate(`#/jobs/${encodeURIComponent(value)}`);
      return;
    }
    const next = { ...filter };
    const unknown = [];
    for (const token of value.split(/\s+/)) {
      const [name, ...rest] = token.split(":");
      const v = rest.join(":");
      if (name === "status") next.status = v.replace("-", "_");
      else if (name === "type") next.type = v;
      else if (name === "since") next.since = v;
      else if (name === "until") next.until = v;
      else if (name === "id") {
        ctx.navigate(`#/jobs/${encodeURIComponent(v)}`);
        return;
      } else unknown.push(`"${token}" is neither a job id nor status:, type:, since: or until:`);
    }
    const problems = [...unknown, ...filterProblems(next)];
    if (problems.length) {
      // Said beside the box, and nothing else changes: a filter half understood lists the wrong jobs.
      searchHelp.classList.add("error-text");
      setText(searchHelp, `${problems.join("; ")}.`);
      search.setAttribute("aria-invalid", "true");
      search.focus();
      return;
    }
    search.value = "";
    ctx.navigate(jobsHash(next));
  }

  function filterKey(f) {
    return JSON.stringify([f.status, f.type, f.since, f.until, f.order, f.problems]);
  }

  // --- the table ---
  function makeRow(job) {
    const cells = {
      status: h("td", {}),
      attempt: h("td", { class: "num" }),
      age: h("td", {}),
      duration: h("td", { class: "num" }),
      error: h("td", { class: "error-cell" }),
    };
    const tr = h("tr", { "data-id": job.id }, h("td", {}, idCell(job.id)), h("td", {}, job.type, priorityBadge(job.priority)), cells.status, cells.attempt, cells.age, cells.duration, cells.error);
    return { tr, cells, sig: "" };
  }

  function updateRow(row, job, now) {
    const sig = `${job.status}|${job.attempt}|${job.updated_at}`;
    if (sig !== row.sig) {
      row.sig = sig;
      row.tr.dataset.status = job.status;
      fill(row.cells.status, statusBadge(job.status));
      setText(row.cells.attempt, `${job.attempt}/${job.max_attempts}`);
      row.cells.error.title = job.last_error || "";
      setText(row.cells.error, job.last_error ? truncate(job.last_error, 90) : "");
    }
    const due = Date.parse(job.due_at);
    fill(row.cells.age, timeAgo(job.created_at), due > now + 5000 ? h("span", { class: "hint" }, ` · due ${ago(job.due_at, now)}`) : null);
    let took = null;
    if (job.status === "running" && job.started_at) took = `running ${duration(now - Date.parse(job.started_at))}`;
    else if (TERMINAL.has(job.status) && job.started_at && job.finished_at) took = duration(between(job.started_at, job.finished_at));
    setText(row.cells.duration, took ?? "–");
  }

  function render() {
    const now = Date.now();
    const list = jobs;
    const keep = new Set(list.map((j) => j.id));
    for (const [id, row] of rows) {
      if (!keep.has(id)) {
        row.tr.remove();
        rows.delete(id);
      }
    }
    let previous = null;
    for (const job of list) {
      let row = rows.get(job.id);
      if (!row) {
        row = makeRow(job);
        rows.set(job.id, row);
      }
      updateRow(row, job, now);
      const expected = previous ? previous.nextSibling : tbody.firstChild;
      if (row.tr !== expected) tbody.insertBefore(row.tr, expected);
      previous = row.tr;
    }
    table.hidden = !loaded || jobs.length === 0;
    table.setAttribute("aria-busy", String(!loaded));
    more.hidden = !loaded || !continuation;
    const filtered = Boolean(filter.status || filter.type || filter.since || filter.until);
    if (filter.problems.length) {
      fill(
        empty,
        h("p", { id: "filter-problems" }, `This filter cannot be used: ${filter.problems.join("; ")}.`),
        h("button", { type: "button", class: "button", onclick: () => ctx.navigate("#/jobs") }, "Clear filters"),
      );
      empty.hidden = false;
    } else if (loaded && jobs.length === 0) {
      fill(
        empty,
        continuation
          ? h("p", {}, "No matching jobs among the ones looked at so far. ", "Load more to keep looking.")
          : filtered
            ? h("p", {}, `No jobs match: ${describeFilter(filter)}.`)
            : h("p", {}, "No jobs yet. Submit one with POST /api/jobs (see /api/docs)."),
        filtered ? h("button", { type: "button", class: "button", onclick: () => ctx.navigate("#/jobs") }, "Clear filters") : null,
      );
      empty.hidden = false;
    } else {
      empty.hidden = true;
    }
    if (!loaded) setText(summary, "Loading…");
    else if (filter.problems.length) setText(summary, "Not a filter the list can use.");
    else {
      const what = filtered ? `${plural(jobs.length, "job")} ${describeFilter(filter)}` : plural(jobs.length, "job");
      setText(summary, continuation ? `${what} loaded; there are more.` : `${what}.`);
    }
    orderNote.hidden = filter.order !== "oldest";
    setText(
      orderNote,
      filter.since
        ? "Oldest first, from the start of the due time chosen."
        : "Oldest first, from the oldest job kept (finished jobs are deleted after the retention period).",
    );
  }

  // --- loading ---
  async function refresh(signal) {
    if (filter.problems.length) {
      // Nothing to ask the API: the view says what is wrong with the filter (render).
      [jobs, continuation, loaded] = [[], null, true];
      render();
      ctx.rendered("jobs");
      return { retryAfter: null };
    }
    const mine = generation;
    const query = listQuery(filter);
    const want = Math.min(MAX_LIMIT, Math.max(PAGE, jobs.length));
    const head = await loadPages(query, null, want, signal);
    if (mine !== generation) return { retryAfter: null }; // the filter changed meanwhile
    const before = new Set(jobs.map((j) => j.id));
    if (head.continuation && jobs.length > head.jobs.length) {
      // More was loaded than one refresh asks for: keep the rows past the fresh ones below them.
      const seen = new Set(head.jobs.map((j) => j.id));
      const last = head.jobs.at(-1);
      const oldest = filter.order === "oldest";
      const lastDue = last ? Date.parse(last.due_at) : oldest ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
      const past = (j) => (oldest ? Date.parse(j.due_at) >= lastDue : Date.parse(j.due_at) <= lastDue);
      const tail = jobs.filter((j) => !seen.has(j.id) && past(j));
      jobs = head.jobs.concat(tail);
      if (!tail.length) [continuation, continuationQuery] = [head.continuation, query];
    } else {
      jobs = head.jobs;
      [continuation, continuationQuery] = [head.continuation, query];
    }
    const added = loaded ? jobs.filter((j) => !before.has(j.id)).length : 0;
    loaded = true;
    render();
    ctx.rendered("jobs");
    if (added) announce(`${plural(added, "new job")} listed.`);
    return { retryAfter: null };
  }

  async function loadMore() {
    if (loadingMore || !continuation) return;
    loadingMore = true;
    more.disabled = true;
    setText(more, "Loading…");
    const mine = generation;
    try {
      const page = await loadPages(continuationQuery || listQuery(filter), continuation, PAGE);
      if (mine !== generation) return;
      const seen = new Set(jobs.map((j) => j.id));
      const fresh = page.jobs.filter((j) => !seen.has(j.id));
      jobs = jobs.concat(fresh);
      continuation = page.continuation;
      render();
      announce(`${plural(fresh.length, "more job")} loaded${continuation ? "" : "; that is all"}.`);
    } catch (error) {
      ctx.showError(error);
    } finally {
      loadingMore = false;
      more.disabled = false;
      setText(more, "Load more");
    }
  }

  function startBulk(action) {
    openBulk(action, apiFilter(filter), describeFilter({ ...filter, status: "" }));
  }

  async function loadTypes() {
    if (knownTypes) return;
    knownTypes = [];
    try {
      const data = await apiDocument();
      knownTypes = data?.components?.schemas?.JobRequest?.properties?.type?.enum || [];
      fill(typeList, knownTypes.map((t) => h("option", { value: t })));
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
    }
  }

  syncForm();
  render();
  loadTypes();

  return {
    name: "jobs",
    root,
    title: "Jobs",
    refresh,
    update(next) {
      const nextFilter = readFilter(next);
      const changed = filterKey(nextFilter) !== filterKey(filter);
      filter = nextFilter;
      syncForm();
      if (changed) {
        generation += 1;
        jobs = [];
        continuation = null;
        continuationQuery = null;
        loaded = false;
        render();
        ctx.refreshNow();
      } else {
        render();
      }
    },
    shown() {
      panel.sync();
    },
  };
}
