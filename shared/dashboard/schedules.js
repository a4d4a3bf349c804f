// Schedules: every recurring schedule with its cron expression and zone, the job it makes, when
// it fires next (in UTC and in its zone), its last fire and the job that made, its policies and
// counts; Pause / Resume, Delete (with a confirmation), and a form that creates one.
//
// Per refresh: GET /api/schedules (one table query a page: 200 schedules), every 5 s.

import { ApiError, api, apiDocument, idempotencyKey } from "./api.js";
import { announce, fill, h, setText } from "./dom.js";
import { clearProblem, confirmAction, field, showProblem } from "./forms.js";
import { ago, number, plural, priorityBadge, shortId, timeAgo, utcText, zoneText } from "./format.js";

const LIMIT = 200; // the API's largest page
export const OVERLAP = { allow: "Allow", skip: "Skip while the last runs" };
export const CATCH_UP = { once: "Once", skip: "Skip" };
const CRON_EXAMPLES = ["*/10 * * * * *", "0 * * * *", "30 2 * * *", "0 9 * * MON-FRI", "0 0 1 * *"];

export function scheduleTitle(schedule) {
  return schedule.name || schedule.id;
}

export function stateBadge(paused) {
  return h("span", { class: ["state", paused ? "state-paused" : "state-active"] }, h("span", { class: "dot", "aria-hidden": "true" }), paused ? "Paused" : "Active");
}

/** When it fires next: UTC, then the schedule's own wall clock, then how far off. */
export function nextFireCell(schedule, now = Date.now()) {
  const next = schedule.next_fires?.[0];
  if (!next) return h("span", { class: "muted" }, schedule.paused ? "– (paused)" : "–");
  return h(
    "div",
    { class: "fire" },
    h("time", { datetime: next.at, class: "fire-utc" }, utcText(next.at)),
    schedule.time_zone === "UTC" ? null : h("span", { class: "fire-local hint", title: `In ${schedule.time_zone}` }, `${zoneText(next.local)} ${schedule.time_zone}`),
    h("span", { class: "hint" }, ago(next.at, now)),
  );
}

export function lastFireCell(schedule) {
  const last = schedule.last_fire;
  if (!last) return h("span", { class: "muted" }, "Not yet");
  return h(
    "div",
    { class: "fire" },
    timeAgo(last.at),
    h("a", { href: `#/jobs/${encodeURIComponent(last.job_id)}`, class: "mono last-job", title: last.job_id, "aria-label": `Job ${last.job_id}, made by the last fire` }, shortId(last.job_id)),
  );
}

export function policiesText(schedule) {
  return `overlap: ${schedule.overlap} · catch-up: ${schedule.catch_up}`;
}

function policiesCell(schedule) {
  return [h("span", { class: "policy" }, `overlap: ${schedule.overlap}`), h("span", { class: "policy" }, `catch-up: ${schedule.catch_up}`)];
}

/** Pause or resume a schedule: the schedule as the API answers it (resumed: fires next from now). */
export async function setPaused(schedule, paused) {
  const { data } = await api.changeSchedule(schedule.id, { paused });
  return data;
}

/** Delete, after a confirmation; true once deleted. */
export async function askDelete(schedule) {
  const outcome = await confirmAction({
    id: "delete-schedule-dialog",
    title: "Delete this schedule?",
    body: [
      h("p", {}, "Schedule ", h("strong", {}, scheduleTitle(schedule)), ` (${schedule.cron}, ${schedule.time_zone}) fires nothing more.`),
      h("p", { class: "hint" }, `The ${plural(schedule.fired, "job")} it made stay, as any job does. This cannot be undone.`),
    ],
    confirmLabel: "Delete schedule",
    danger: true,
    run: () => api.deleteSchedule(schedule.id, schedule.revision),
  });
  return Boolean(outcome);
}

// --- the create form ---------------------------------------------------------------------------

// Problems with a code of their own, and the field each is about.
const CODES = {
  invalid_cron: "cron",
  unsatisfiable_cron: "cron",
  unknown_time_zone: "time_zone",
  unknown_job_type: "job.type",
  payload_too_large: "job.payload",
};

/** A text field's value as the API takes it: the JSON of a payload (empty: null). Throws on bad JSON. */
function payloadOf(text) {
  return text.trim() ? JSON.parse(text) : null;
}

/** What an edit changes: only the fields that differ from `before` (a new cron or zone restarts
 *  the fire times from now, so unchanged ones are not sent). */
function changesOf(before, after) {
  const body = {};
  for (const key of ["cron", "time_zone", "overlap", "catch_up"]) if (after[key] !== before[key]) body[key] = after[key];
  if ((after.name ?? null) !== (before.name ?? null)) body.name = after.name ?? null;
  const job = {};
  if (after.job.type !== before.job.type) job.type = after.job.type;
  if (JSON.stringify(after.job.payload ?? null) !== JSON.stringify(before.job.payload ?? null)) job.payload = after.job.payload ?? null;
  for (const key of ["priority", "max_attempts"]) if ((after.job[key] ?? null) !== (before.job[key] ?? null)) job[key] = after.job[key] ?? null;
  if (Object.keys(job).length) body.job = job;
  return body;
}

/** The form in a dialog: a new schedule, or `existing` to edit (only what changed is sent).
 *  Resolves with the schedule created or changed, or null. */
export function openScheduleForm(existing = null) {
  return new Promise((resolve) => {
    const key = idempotencyKey(); // one per form: a create sent twice makes one schedule
    const editing = existing !== null;
    let saved = null; // the schedule created or changed
    const name = h("input", { id: "s-name", name: "name", type: "text", autocomplete: "off", maxlength: "200" });
    const cron = h("input", { id: "s-cron", name: "cron", type: "text", autocomplete: "off", spellcheck: "false", required: true, list: "s-cron-examples", class: "mono" });
    const cronExamples = h("datalist", { id: "s-cron-examples" }, CRON_EXAMPLES.map((c) => h("option", { value: c })));
    const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    const zone = h("input", { id: "s-zone", name: "time_zone", type: "text", autocomplete: "off", spellcheck: "false", list: "s-zones", value: "UTC" });
    const zones = h("datalist", { id: "s-zones" });
    const type = h("input", { id: "s-type", name: "type", type: "text", autocomplete: "off", spellcheck: "false", required: true, list: "s-types" });
    const types = h("datalist", { id: "s-types" });
    const payload = h("textarea", { id: "s-payload", name: "payload", rows: "4", spellcheck: "false", class: "mono", placeholder: '{"report": "daily"}' });
    const priority = h(
      "select",
      { id: "s-priority", name: "priority" },
      h("option", { value: "" }, "The type's default"),
      ["high", "normal", "low"].map((p) => h("option", { value: p }, p[0].toUpperCase() + p.slice(1))),
    );
    const attempts = h("input", { id: "s-attempts", name: "max_attempts", type: "number", min: "1", max: "100", step: "1", inputmode: "numeric", placeholder: "the type's" });
    const overlap = h("select", { id: "s-overlap", name: "overlap" }, Object.entries(OVERLAP).map(([v, label]) => h("option", { value: v }, label)));
    const catchUp = h("select", { id: "s-catch-up", name: "catch_up" }, Object.entries(CATCH_UP).map(([v, label]) => h("option", { value: v }, label)));
    const paused = h("input", { id: "s-paused", name: "paused", type: "checkbox" });

    const fields = {
      name: field("Name (optional)", name, { hint: "For people; the id is made for you." }),
      cron: field("Cron expression", cron, { hint: "5 fields (minute hour day month weekday), or 6 with seconds first: */10 * * * * * is every 10 s." }),
      time_zone: field("Time zone", zone, { hint: `An IANA name; yours is ${browserZone}.` }),
      "job.type": field("Job type", type),
      "job.payload": field("Payload (JSON)", payload, { hint: "Any JSON value; empty: null." }),
      "job.priority": field("Priority", priority),
      "job.max_attempts": field("Max attempts", attempts, { hint: "Empty: the type's." }),
      overlap: field("Overlap", overlap, { hint: "Skip: no job while the last fire's job is not finished." }),
      catch_up: field("Catch-up after downtime", catchUp, { hint: "Once: one job for all the fires missed; skip: none." }),
    };
    fields.job = fields["job.type"];
    const general = h("p", { class: "error-text", id: "schedule-form-error", role: "alert", hidden: true });
    const status = h("p", { class: "hint", id: "schedule-form-status", role: "status" });
    const save = editing
      ? h("button", { type: "submit", class: "button primary", id: "schedule-save" }, "Save changes")
      : h("button", { type: "submit", class: "button primary", id: "schedule-create" }, "Create schedule");
    const close = h("button", { type: "button", class: "button", id: "schedule-cancel" }, "Cancel");
    const form = h(
      "form",
      { id: "schedule-form", novalidate: true },
      h("h2", { id: "schedule-form-title" }, editing ? "Edit schedule" : "New schedule"),
      h(
        "div",
        { class: "form-grid" },
        fields.name.wrap,
        fields.cron.wrap,
        cronExamples,
        fields.time_zone.wrap,
        zones,
        fields["job.type"].wrap,
        types,
        fields["job.priority"].wrap,
        fields["job.max_attempts"].wrap,
        h("div", { class: "span-all" }, fields["job.payload"].wrap),
        fields.overlap.wrap,
        fields.catch_up.wrap,
        // Pausing an existing schedule is the page's own button.
        editing ? null : h("div", { class: "field checkbox" }, h("label", { for: "s-paused" }, paused, " Create it paused (it fires nothing until resumed)")),
      ),
      general,
      status,
      h("div", { class: "dialog-buttons" }, save, close),
    );
    const dialog = h("dialog", { id: "schedule-dialog", class: "wide-dialog", "aria-labelledby": "schedule-form-title" }, form);
    if (editing) {
      name.value = existing.name ?? "";
      cron.value = existing.cron;
      zone.value = existing.time_zone;
      type.value = existing.job.type;
      payload.value = existing.job.payload == null ? "" : JSON.stringify(existing.job.payload, null, 2);
      priority.value = existing.job.priority ?? "";
      attempts.value = existing.job.max_attempts ?? "";
      overlap.value = existing.overlap;
      catchUp.value = existing.catch_up;
    }

    apiDocument()
      .then((doc) => {
        const schemas = doc?.components?.schemas || {};
        fill(types, (schemas.JobRequest?.properties?.type?.enum || []).map((t) => h("option", { value: t })));
        const known = schemas.ScheduleRequest?.properties?.time_zone?.enum || [];
        fill(zones, known.map((z) => h("option", { value: z })));
      })
      .catch((error) => {
        if (!(error instanceof ApiError)) throw error; // no lists to choose from: what is typed is checked by the API
      });

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearProblem(fields, general);
      const body = { cron: cron.value.trim(), time_zone: zone.value.trim() || "UTC", overlap: overlap.value, catch_up: catchUp.value };
      if (name.value.trim()) body.name = name.value.trim();
      if (paused.checked) body.paused = true;
      const job = { type: type.value.trim() };
      try {
        job.payload = payloadOf(payload.value);
      } catch (exc) {
        fields["job.payload"].setError(`Not valid JSON: ${exc.message}`);
        payload.focus();
        return;
      }
      if (priority.value) job.priority = priority.value;
      if (attempts.validity.badInput) {
        fields["job.max_attempts"].setError("Enter a whole number.");
        attempts.focus();
        return;
      }
      if (attempts.value.trim()) job.max_attempts = Number(attempts.value);
      body.job = job;
      const changes = editing ? changesOf(existing, { ...body, name: name.value.trim() || null }) : null;
      if (editing && !Object.keys(changes).length) {
        dialog.close(); // nothing changed: nothing to send
        return;
      }
      save.disabled = true;
      setText(status, editing ? "Saving…" : "Creating…");
      try {
        const { data } = editing ? await api.changeSchedule(existing.id, changes, existing.revision) : await api.createSchedule(body, key);
        saved = data;
        dialog.close();
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        setText(status, "");
        if (error.status === 412) {
          // Someone else changed it since the form was filled from it: saving would undo their change.
          const text = "Someone changed this schedule since you opened the form, so nothing was saved. Cancel to see their change, then edit again.";
          general.hidden = false;
          setText(general, text);
          announce(text);
          return;
        }
        showProblem(error, fields, general, CODES);
      } finally {
        save.disabled = false;
      }
    });
    close.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(saved);
    });
    document.body.append(dialog);
    dialog.showModal();
    cron.focus();
  });
}

// --- the list -----------------------------------------------------------------------------------

export function createSchedules(params, ctx) {
  let schedules = null;
  let continuation = null;
  const rows = new Map();
  const busy = new Set();

  const message = h("p", { class: "action-message", id: "schedules-message", role: "status" });
  const create = h("button", { type: "button", class: "button primary", id: "new-schedule", onclick: startCreate }, "New schedule…");
  const tbody = h("tbody", {});
  const table = h(
    "table",
    { class: "data schedules", id: "schedules-table", hidden: true },
    h("caption", { class: "visually-hidden" }, "Recurring schedules"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { scope: "col" }, "Schedule"),
        h("th", { scope: "col" }, "Cron"),
        h("th", { scope: "col" }, "Job"),
        h("th", { scope: "col" }, "Next fire"),
        h("th", { scope: "col" }, "Last fire"),
        h("th", { scope: "col" }, "State"),
        h("th", { scope: "col" }, "Policies"),
        h("th", { scope: "col", class: "num" }, "Fired"),
        h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")),
      ),
    ),
    tbody,
  );
  const empty = h(
    "div",
    { class: "empty", id: "schedules-empty", hidden: true },
    h("p", {}, "No schedules yet. A schedule submits a job at every fire time of a cron expression, in a time zone."),
  );
  const loading = h("p", { class: "muted" }, "Loading…");
  const more = h("p", { class: "hint", id: "schedules-more", hidden: true }, `The first ${number(LIMIT)} schedules are shown (oldest first).`);

  const root = h(
    "section",
    { class: "view schedules-view", "aria-labelledby": "view-title" },
    h("div", { class: "view-head" }, h("h1", { id: "view-title", tabindex: "-1" }, "Schedules"), h("div", { class: "head-buttons" }, create)),
    h("div", { class: "types-message-row" }, message),
    loading,
    h("div", { class: "table-wrap" }, table),
    empty,
    more,
  );

  function makeRow(s) {
    const cells = {
      title: h("th", { scope: "row" }),
      cron: h("td", {}),
      job: h("td", {}),
      next: h("td", {}),
      last: h("td", {}),
      state: h("td", {}),
      policies: h("td", { class: "hint" }),
      counts: h("td", { class: "num" }),
    };
    const toggle = h("button", { type: "button", class: "button pause-toggle", "data-id": s.id, onclick: () => toggleOne(s.id) });
    const remove = h("button", { type: "button", class: "button quiet delete-schedule", "data-id": s.id, onclick: () => deleteOne(s.id) }, "Delete…");
    const tr = h("tr", { "data-id": s.id }, cells.title, cells.cron, cells.job, cells.next, cells.last, cells.state, cells.policies, cells.counts, h("td", {}, h("div", { class: "row-actions" }, toggle, remove)));
    return { tr, cells, toggle, remove, sig: "" };
  }

  function updateRow(row, s, now) {
    const working = busy.has(s.id);
    const sig = JSON.stringify([s, working]);
    if (sig !== row.sig) {
      row.sig = sig;
      row.tr.dataset.state = s.paused ? "paused" : "active";
      const title = scheduleTitle(s);
      fill(
        row.cells.title,
        h("a", { href: `#/schedules/${encodeURIComponent(s.id)}`, class: "schedule-link" }, title),
        s.name ? h("span", { class: "hint mono schedule-id" }, s.id) : null,
      );
      fill(row.cells.cron, h("code", { class: "cron" }, s.cron), h("span", { class: "hint zone" }, s.time_zone));
      fill(row.cells.job, h("span", {}, s.job.type), priorityBadge(s.job.priority));
      fill(row.cells.last, lastFireCell(s));
      fill(row.cells.state, stateBadge(s.paused));
      fill(row.cells.policies, policiesCell(s));
      row.cells.policies.title = policiesText(s);
      row.cells.counts.title = s.last_skip ? `last skip: ${utcText(s.last_skip.at)} (${s.last_skip.reason})` : "";
      setText(row.cells.counts, `${number(s.fired)}${s.skipped ? ` · ${number(s.skipped)} skipped` : ""}`);
      setText(row.toggle, working ? "…" : s.paused ? "Resume" : "Pause");
      row.toggle.setAttribute("aria-label", `${s.paused ? "Resume" : "Pause"} schedule ${title}`);
      row.remove.setAttribute("aria-label", `Delete schedule ${title}…`);
      row.toggle.disabled = working;
      row.remove.disabled = working;
    }
    fill(row.cells.next, nextFireCell(s, now));
  }

  function render() {
    loading.hidden = schedules !== null;
    if (schedules === null) return;
    const now = Date.now();
    const keep = new Set(schedules.map((s) => s.id));
    for (const [id, row] of rows) {
      if (!keep.has(id)) {
        row.tr.remove();
        rows.delete(id);
      }
    }
    let previous = null;
    for (const s of schedules) {
      let row = rows.get(s.id);
      if (!row) {
        row = makeRow(s);
        rows.set(s.id, row);
      }
      updateRow(row, s, now);
      const expected = previous ? previous.nextSibling : tbody.firstChild;
      if (row.tr !== expected) tbody.insertBefore(row.tr, expected);
      previous = row.tr;
    }
    table.hidden = schedules.length === 0;
    empty.hidden = schedules.length > 0;
    more.hidden = !continuation;
  }

  function say(text) {
    setText(message, text);
    announce(text);
  }

  function replace(s) {
    schedules = (schedules || []).map((x) => (x.id === s.id ? s : x));
    render();
  }

  async function toggleOne(id) {
    const s = schedules?.find((x) => x.id === id);
    if (!s || busy.has(id)) return;
    busy.add(id);
    render();
    try {
      const changed = await setPaused(s, !s.paused);
      busy.delete(id);
      replace(changed);
      say(changed.paused ? `Paused ${scheduleTitle(changed)}: it fires nothing until resumed.` : `Resumed ${scheduleTitle(changed)}: next fire ${utcText(changed.next_fire_at)}.`);
    } catch (error) {
      busy.delete(id);
      render();
      if (!(error instanceof ApiError)) throw error;
      say(`${scheduleTitle(s)}: the API refused: ${error.detail}`);
    } finally {
      ctx.refreshNow();
    }
  }

  async function deleteOne(id) {
    const s = schedules?.find((x) => x.id === id);
    if (!s) return;
    if (await askDelete(s)) {
      schedules = schedules.filter((x) => x.id !== id);
      render();
      say(`Deleted ${scheduleTitle(s)}; the jobs it made stay.`);
      ctx.refreshNow();
      create.focus();
    } else {
      rows.get(id)?.remove.focus();
    }
  }

  async function startCreate() {
    const made = await openScheduleForm();
    if (!made) {
      create.focus();
      return;
    }
    announce(`Created schedule ${scheduleTitle(made)}.`);
    ctx.navigate(`#/schedules/${encodeURIComponent(made.id)}`);
  }

  return {
    name: "schedules",
    root,
    title: "Schedules",
    async refresh(signal) {
      let response;
      try {
        response = await api.listSchedules({ limit: LIMIT }, signal);
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 404 && error.code === "not_found")) throw error;
        // An app without schedules (an older deployment): say so rather than fail.
        schedules = [];
        render();
        fill(empty, h("p", { class: "notice" }, "This app does not serve /api/schedules yet."));
        create.disabled = true;
        return { retryAfter: 60 };
      }
      schedules = response.data.schedules;
      continuation = response.data.continuation;
      render();
      ctx.rendered("schedules");
      return { retryAfter: response.retryAfter };
    },
    tickClock() {
      if (schedules) render();
    },
  };
}
