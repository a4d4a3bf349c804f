// Types: every registered job type with how its jobs flow now: its priority, paused or active (by
// its own pause, everything's, or both), its concurrency limit with the attempts running now and
// the jobs waiting for a slot, its rate limit. Pause and resume a type, or
// every type (with a confirmation); set a type's limits, or give them back to the code.
//
// Per refresh: GET /api/types (one table query for the flow settings, plus one per type with a
// concurrency limit, to count the slots held and the jobs waiting), every 5 s.

import { ApiError, api } from "./api.js";
import { announce, fill, h, setText } from "./dom.js";
import { clearProblem, confirmAction, field, showProblem } from "./forms.js";
import { PRIORITY_LABELS, duration, number, plural, priorityBadge, rateText } from "./format.js";

function stateBadge(type) {
  const by = type.paused_by; // its own pause ("type"), everything's ("all"), both, or neither
  const label = !type.paused ? "Active" : by.includes("all") ? (by.includes("type") ? "Paused (itself and all)" : "Paused (all)") : "Paused";
  return h("span", { class: ["state", type.paused ? "state-paused" : "state-active"] }, h("span", { class: "dot", "aria-hidden": "true" }), label);
}

function concurrencyText(type) {
  if (type.max_concurrency === null || type.max_concurrency === undefined) return "No limit";
  const running = `${number(type.running ?? 0)} running of ${number(type.max_concurrency)}`;
  return type.waiting ? `${running}, ${number(type.waiting)}${type.waiting >= 1000 ? "+" : ""} waiting` : running;
}

function limitsSentence(type) {
  const concurrency = type.max_concurrency ? `at most ${number(type.max_concurrency)} running at once` : "no concurrency limit";
  const rate = type.rate_limit ? `at most ${rateText(type.rate_limit)}` : "no rate limit";
  return `${concurrency}; ${rate}`;
}

export function createTypes(params, ctx) {
  let data = null;
  const rows = new Map();
  const busy = new Set(); // types with a request under way

  const message = h("p", { class: "action-message", id: "types-message", role: "status" });
  const allNotice = h("div", { class: "notice paused-all", id: "paused-all", hidden: true });
  const pauseAll = h("button", { type: "button", class: "button", id: "pause-all", onclick: askPauseAll }, "Pause all…");
  const resumeAll = h("button", { type: "button", class: "button", id: "resume-all", onclick: askResumeAll }, "Resume all…");
  const tbody = h("tbody", {});
  const table = h(
    "table",
    { class: "data types", id: "types-table", hidden: true },
    h("caption", { class: "visually-hidden" }, "Job types, their state and limits"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { scope: "col" }, "Type"),
        h("th", { scope: "col" }, "Priority"),
        h("th", { scope: "col" }, "State"),
        h("th", { scope: "col" }, "Concurrency"),
        h("th", { scope: "col" }, "Rate limit"),
        h("th", { scope: "col", class: "num" }, "Max attempts"),
        h("th", { scope: "col", class: "num" }, "Time limit"),
        h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")),
      ),
    ),
    tbody,
  );
  const empty = h("p", { class: "empty", id: "types-empty", hidden: true }, "No job types are registered.");
  const loading = h("p", { class: "muted" }, "Loading…");

  const root = h(
    "section",
    { class: "view types-view", "aria-labelledby": "view-title" },
    h("div", { class: "view-head" }, h("h1", { id: "view-title", tabindex: "-1" }, "Types"), h("div", { class: "head-buttons" }, pauseAll, resumeAll)),
    h(
      "p",
      { class: "hint view-hint" },
      "A paused type's jobs stay queued and are set aside, costing nothing while they wait; running attempts finish. Pauses and limits reach every instance within 5 s. A job over a limit waits without using an attempt.",
    ),
    allNotice,
    h("div", { class: "types-message-row" }, message),
    loading,
    h("div", { class: "table-wrap" }, table),
    empty,
  );

  // --- the table ---

  function makeRow(type) {
    const name = type.type;
    const cells = {
      priority: h("td", {}),
      state: h("td", {}),
      concurrency: h("td", { class: "concurrency" }),
      rate: h("td", { class: "rate" }),
      attempts: h("td", { class: "num" }),
      time: h("td", { class: "num" }),
    };
    const toggle = h("button", { type: "button", class: "button pause-toggle", "data-type": name, onclick: () => toggle.dataset.action === "resume" ? resume(name) : pause(name) });
    const limits = h("button", { type: "button", class: "button quiet limits-open", "data-type": name, "aria-label": `Limits of ${name}…`, onclick: () => openLimits(name) }, "Limits…");
    const tr = h(
      "tr",
      { "data-type": name },
      h("th", { scope: "row" }, h("a", { href: `#/jobs?type=${encodeURIComponent(name)}`, class: "mono", title: `Jobs of type ${name}` }, name)),
      cells.priority,
      cells.state,
      cells.concurrency,
      cells.rate,
      cells.attempts,
      cells.time,
      h("td", {}, h("div", { class: "row-actions" }, toggle, limits)),
    );
    return { tr, cells, toggle, limits, sig: "" };
  }

  function updateRow(row, type, all) {
    const working = busy.has(type.type);
    const sig = JSON.stringify([type, all, working]);
    if (sig === row.sig) return;
    row.sig = sig;
    row.tr.dataset.state = type.paused ? "paused" : "active";
    fill(row.cells.priority, priorityBadge(type.priority) ?? h("span", { class: "muted" }, PRIORITY_LABELS[type.priority] || type.priority));
    fill(
      row.cells.state,
      stateBadge(type),
      type.paused ? h("a", { href: `#/jobs?type=${encodeURIComponent(type.type)}&status=queued`, class: "state-link" }, "queued jobs") : null,
    );
    fill(row.cells.concurrency, type.max_concurrency ? concurrencyText(type) : h("span", { class: "muted" }, "No limit"));
    fill(row.cells.rate, type.rate_limit ? rateText(type.rate_limit) : h("span", { class: "muted" }, "No limit"));
    setText(row.cells.attempts, number(type.max_attempts));
    const limit = type.time_limit_seconds;
    setText(row.cells.time, limit >= 60 && limit % 60 === 0 ? `${number(limit / 60)} min` : duration(limit * 1000));
    const own = type.paused_by.includes("type");
    const action = own ? "resume" : "pause";
    row.toggle.dataset.action = action;
    setText(row.toggle, working ? (action === "resume" ? "Resuming…" : "Pausing…") : action === "resume" ? "Resume" : "Pause");
    row.toggle.setAttribute("aria-label", `${action === "resume" ? "Resume" : "Pause"} ${type.type}`);
    // Its own pause and everything's are separate: under a global pause, pausing a type keeps it
    // paused after Resume all, and resuming it lifts only its own pause.
    row.toggle.disabled = working;
    row.toggle.title = !all ? "" : own ? "Lifts its own pause; it runs once every type is resumed." : "Keeps it paused after Resume all.";
    row.limits.disabled = working;
  }

  function render() {
    loading.hidden = Boolean(data);
    if (!data) return;
    const all = Boolean(data.paused_all);
    const keep = new Set(data.types.map((t) => t.type));
    for (const [name, row] of rows) {
      if (!keep.has(name)) {
        row.tr.remove();
        rows.delete(name);
      }
    }
    let previous = null;
    for (const type of data.types) {
      let row = rows.get(type.type);
      if (!row) {
        row = makeRow(type);
        rows.set(type.type, row);
      }
      updateRow(row, type, all);
      const expected = previous ? previous.nextSibling : tbody.firstChild;
      if (row.tr !== expected) tbody.insertBefore(row.tr, expected);
      previous = row.tr;
    }
    table.hidden = data.types.length === 0;
    empty.hidden = data.types.length > 0;
    allNotice.hidden = !all;
    if (all) {
      fill(
        allNotice,
        h("p", {}, h("strong", {}, "Every job type is paused."), " Queued jobs of every type wait; running attempts finish. Types paused on their own stay paused after Resume all."),
      );
    }
    pauseAll.disabled = all || busy.has("*");
    resumeAll.disabled = busy.has("*");
    root.dataset.pausedAll = String(all);
  }

  function replaceType(resource) {
    if (!data) return;
    const { released, woken, ...type } = resource;
    data = { ...data, types: data.types.map((t) => (t.type === type.type ? type : t)) };
  }

  // --- pause and resume ---

  async function change(name, body, done) {
    if (busy.has(name)) return;
    busy.add(name);
    render();
    try {
      const { data: resource } = await api.changeType(name, body);
      busy.delete(name);
      replaceType(resource);
      render();
      const text = done(resource);
      setText(message, text);
      announce(text);
      return resource;
    } catch (error) {
      busy.delete(name);
      render();
      if (!(error instanceof ApiError)) throw error;
      setText(message, `${name}: the API refused: ${error.detail}`);
      return null;
    } finally {
      ctx.refreshNow();
    }
  }

  function pause(name) {
    setText(message, `Pausing ${name}…`);
    return change(name, { paused: true }, () => `Paused ${name}: its queued jobs wait (every instance within 5 s); running attempts finish.`);
  }

  function resume(name) {
    setText(message, `Resuming ${name}: releasing its parked jobs…`);
    return change(name, { paused: false }, (r) => `Resumed ${name}: ${plural(r.released ?? 0, "parked job")} released${r.paused ? ", but every type is still paused" : ""}.`);
  }

  async function everything(kind) {
    busy.add("*");
    render();
    try {
      const { data: list } = kind === "pause" ? await api.pauseAll() : await api.resumeAll();
      data = { paused_all: list.paused_all, types: list.types };
      return list;
    } finally {
      busy.delete("*");
      render();
      ctx.refreshNow();
    }
  }

  async function askPauseAll() {
    const list = await confirmAction({
      id: "pause-all-dialog",
      title: "Pause every job type?",
      body: [
        h("p", {}, `Queued jobs of all ${data ? plural(data.types.length, "type") : "types"} wait until you resume them; running attempts finish. Every instance stops starting jobs within 5 s.`),
        h("p", { class: "hint" }, "Resume all undoes it; a type paused on its own stays paused."),
      ],
      confirmLabel: "Pause all types",
      danger: true,
      run: () => everything("pause"),
    });
    if (list) {
      setText(message, "Every job type is paused.");
      announce("Every job type is paused.");
    }
    pauseAll.focus();
  }

  async function askResumeAll() {
    const list = await confirmAction({
      id: "resume-all-dialog",
      title: "Resume every job type?",
      body: [
        h("p", {}, "Parked jobs are released and run; a type paused on its own stays paused."),
        h("p", { class: "hint" }, "The request releases what it can in 5 s; the reconciler releases the rest within a minute."),
      ],
      confirmLabel: "Resume all types",
      run: () => everything("resume"),
    });
    if (list) {
      const text = `Every type resumed: ${plural(list.released ?? 0, "parked job")} released.`;
      setText(message, text);
      announce(text);
    }
    resumeAll.focus();
  }

  // --- limits ---

  function openLimits(name) {
    const type = data?.types.find((t) => t.type === name);
    if (!type) return;
    const initial = {
      concurrency: type.max_concurrency ? String(type.max_concurrency) : "",
      limit: type.rate_limit ? String(type.rate_limit.limit) : "",
      period: type.rate_limit ? String(type.rate_limit.period_seconds) : "",
    };
    const concurrency = h("input", { id: "limit-concurrency", name: "max_concurrency", type: "number", min: "1", max: "10000", step: "1", inputmode: "numeric", value: initial.concurrency });
    const rateLimit = h("input", { id: "limit-rate", name: "limit", type: "number", min: "1", max: "1000", step: "1", inputmode: "numeric", value: initial.limit });
    const ratePeriod = h("input", { id: "limit-period", name: "period_seconds", type: "number", min: "0.1", max: "86400", step: "any", inputmode: "decimal", value: initial.period });
    const fConcurrency = field("At most running at once", concurrency, { hint: "Across every instance. Empty: the code's limit (none if the code sets none)." });
    const fLimit = field("Starts", rateLimit);
    const fPeriod = field("Per (seconds)", ratePeriod, { hint: "60: a minute; 3600: an hour." });
    const fields = { max_concurrency: fConcurrency, "rate_limit.limit": fLimit, "rate_limit.period_seconds": fPeriod, rate_limit: fLimit };
    const general = h("p", { class: "error-text", id: "limits-error", role: "alert", hidden: true });
    const status = h("p", { class: "hint", id: "limits-status", role: "status" });
    const save = h("button", { type: "submit", class: "button primary", id: "limits-save" }, "Save");
    const close = h("button", { type: "button", class: "button", id: "limits-close" }, "Close");
    const concurrencyDefault = h("button", { type: "button", class: "button quiet", id: "concurrency-default" }, "Use the code's");
    const rateDefault = h("button", { type: "button", class: "button quiet", id: "rate-default" }, "Use the code's");
    const form = h(
      "form",
      { id: "limits-form", novalidate: true },
      h("h2", { id: "limits-title" }, "Limits of ", h("code", {}, name)),
      h("p", { class: "hint", id: "limits-now" }, `In force now: ${limitsSentence(type)}. What you set here overrides the code's, on every instance within 5 s.`),
      h("fieldset", { class: "limit-group" }, h("legend", {}, "Concurrency"), h("div", { class: "limit-fields" }, fConcurrency.wrap), concurrencyDefault),
      h("fieldset", { class: "limit-group" }, h("legend", {}, "Rate"), h("div", { class: "limit-fields" }, fLimit.wrap, fPeriod.wrap), rateDefault),
      general,
      status,
      h("div", { class: "dialog-buttons" }, save, close),
    );
    const dialog = h("dialog", { id: "limits-dialog", class: "limits-dialog", "aria-labelledby": "limits-title" }, form);

    function read(input, fieldRef) {
      if (input.validity.badInput) {
        fieldRef.setError("Enter a number.");
        return { bad: true };
      }
      return { value: input.value.trim() === "" ? null : Number(input.value) };
    }

    async function send(body, what) {
      clearProblem(fields, general);
      setText(status, "Saving…");
      for (const b of [save, concurrencyDefault, rateDefault]) b.disabled = true;
      try {
        const { data: resource } = await api.changeType(name, body);
        replaceType(resource);
        render();
        dialog.close();
        const woke = resource.woken ? ` ${plural(resource.woken, "waiting job")} woken to start now or take a new start.` : "";
        const text = `${what} ${name}: ${limitsSentence(resource)}.${woke}`;
        setText(message, text);
        announce(text);
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        setText(status, "");
        showProblem(error, fields, general);
      } finally {
        for (const b of [save, concurrencyDefault, rateDefault]) b.disabled = false;
        ctx.refreshNow();
      }
    }

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      clearProblem(fields, general);
      const body = {};
      const c = read(concurrency, fConcurrency);
      const l = read(rateLimit, fLimit);
      const p = read(ratePeriod, fPeriod);
      if (c.bad || l.bad || p.bad) return;
      if (concurrency.value !== initial.concurrency) body.max_concurrency = c.value;
      if (rateLimit.value !== initial.limit || ratePeriod.value !== initial.period) {
        // Both empty: back to the code's. One of the two: sent as it is, and the API says what is missing.
        body.rate_limit = l.value === null && p.value === null ? null : { ...(l.value !== null && { limit: l.value }), ...(p.value !== null && { period_seconds: p.value }) };
      }
      if (!Object.keys(body).length) {
        setText(status, "Nothing changed.");
        return;
      }
      send(body, "Limits of");
    });
    concurrencyDefault.addEventListener("click", () => send({ max_concurrency: null }, "Concurrency back to the code's for"));
    rateDefault.addEventListener("click", () => send({ rate_limit: null }, "Rate limit back to the code's for"));
    close.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => {
      dialog.remove();
      rows.get(name)?.limits.focus();
    });
    document.body.append(dialog);
    dialog.showModal();
    concurrency.focus();
  }

  return {
    name: "types",
    root,
    title: "Types",
    async refresh(signal) {
      const response = await api.listTypes(signal);
      data = response.data;
      render();
      ctx.rendered("types");
      return { retryAfter: response.retryAfter };
    },
  };
}
