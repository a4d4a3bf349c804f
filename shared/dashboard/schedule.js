// One schedule: its definition, its next five fire times (in UTC, in its zone and in yours), its
// last fire and the job that made, its last 10 fires with their jobs, Pause / Resume, Edit
// (the create form, filled in; only what changed is sent), Delete.
//
// Per refresh (every 5 s): GET /api/schedules/{id} (one point read), and GET /api/jobs/{id} for
// the last fire's job while it is new or not finished (one point read).

import { ApiError, api } from "./api.js";
import { announce, fill, h, setText } from "./dom.js";
import { PRIORITY_LABELS, STATUS_LABELS, TERMINAL, ago, dateTime, number, priorityBadge, shortId, statusBadge, utcText, zoneText } from "./format.js";
import { askDelete, lastFireCell, openScheduleForm, policiesText, scheduleTitle, setPaused, stateBadge } from "./schedules.js";

function fact(label, value, title) {
  return h("div", { class: "fact" }, h("dt", {}, label), h("dd", { title }, value));
}

export function createSchedulePage(id, ctx) {
  let schedule = null;
  let signature = "";
  let lastJob = null; // the last fire's job, as last read
  let busy = false;

  const title = h("span", { id: "schedule-title" }, id);
  const stateSlot = h("span", { id: "schedule-state" });
  const actions = h("div", { class: "actions", id: "schedule-actions" });
  const message = h("p", { class: "action-message", id: "schedule-message", role: "status" });
  const facts = h("dl", { class: "facts", id: "schedule-facts" });
  const fires = h("div", { id: "schedule-next" });
  const jobs = h("div", { id: "schedule-jobs" });
  const payload = h("div", { id: "schedule-payload" });
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));

  const root = h(
    "section",
    { class: "view schedule-view", "aria-labelledby": "view-title" },
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/schedules" }, "Schedules"), h("span", { "aria-hidden": "true" }, " / "), h("span", { "aria-current": "page" }, "Schedule")),
    h("div", { class: "view-head" }, h("h1", { id: "view-title", tabindex: "-1" }, "Schedule ", title), stateSlot),
    h("div", { class: "action-row" }, actions, message),
    body,
  );

  function layout() {
    fill(
      body,
      h(
        "div",
        { class: "grid detail-grid" },
        h("section", { class: "panel", "aria-labelledby": "h-definition" }, h("h2", { id: "h-definition" }, "Definition"), facts),
        h("section", { class: "panel", "aria-labelledby": "h-next" }, h("h2", { id: "h-next" }, "Next fire times"), fires),
        h("section", { class: "panel", "aria-labelledby": "h-jobs" }, h("h2", { id: "h-jobs" }, "Jobs it made"), jobs),
        h("section", { class: "panel", "aria-labelledby": "h-payload" }, h("h2", { id: "h-payload" }, "Payload of each job"), payload),
      ),
    );
  }

  function renderActions() {
    const focused = actions.contains(document.activeElement) ? document.activeElement.id : null;
    fill(
      actions,
      h("button", { type: "button", class: "button", id: "schedule-toggle", disabled: busy, onclick: toggle }, schedule.paused ? "Resume" : "Pause"),
      h("button", { type: "button", class: "button", id: "schedule-edit", disabled: busy, onclick: edit }, "Edit…"),
      h("button", { type: "button", class: "button danger", id: "schedule-delete", disabled: busy, onclick: remove }, "Delete…"),
    );
    if (focused) document.getElementById(focused)?.focus();
  }

  function renderFires() {
    if (!schedule.next_fires?.length) {
      fill(fires, h("p", { class: "muted", id: "no-fires" }, schedule.paused ? "Paused: it fires nothing until it is resumed (then from that time on)." : "No fire time ahead."));
      return;
    }
    const now = Date.now();
    fill(
      fires,
      h(
        "table",
        { class: "data compact", id: "next-fires" },
        h("caption", { class: "visually-hidden" }, "The next five fire times"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "UTC"), h("th", { scope: "col" }, `In ${schedule.time_zone}`), h("th", { scope: "col" }, "Your time"), h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "How soon")))),
        h(
          "tbody",
          {},
          schedule.next_fires.map((f) =>
            h("tr", {}, h("td", {}, h("time", { datetime: f.at }, utcText(f.at))), h("td", { class: "fire-local" }, zoneText(f.local)), h("td", {}, dateTime(f.at)), h("td", { class: "hint" }, ago(f.at, now))),
          ),
        ),
      ),
    );
  }

  function renderJobs() {
    const last = schedule.last_fire;
    const items = [];
    if (!last) {
      items.push(h("p", { class: "muted", id: "schedule-no-fire" }, "It has not fired yet."));
    } else {
      items.push(
        h(
          "p",
          { id: "schedule-last-job" },
          "Last fire ",
          h("time", { datetime: last.at, title: utcText(last.at) }, dateTime(last.at)),
          " made job ",
          h("a", { href: `#/jobs/${encodeURIComponent(last.job_id)}`, class: "mono", title: last.job_id }, shortId(last.job_id)),
          " ",
          lastJob && lastJob.id === last.job_id ? statusBadge(lastJob.status) : lastJob === false ? h("span", { class: "muted" }, "(no longer kept)") : null,
        ),
      );
    }
    const recent = schedule.recent_fires || [];
    if (recent.length > 1) {
      items.push(
        h("h3", { class: "small-heading" }, `Its last ${recent.length} fires, newest first`),
        h(
          "ul",
          { class: "recent-fires", id: "schedule-fires" },
          recent.map((f) => h("li", {}, h("time", { datetime: f.at }, utcText(f.at)), " → ", h("a", { href: `#/jobs/${encodeURIComponent(f.job_id)}`, class: "mono", title: f.job_id }, shortId(f.job_id)))),
        ),
      );
    }
    items.push(
      h(
        "p",
        { class: "hint" },
        `${number(schedule.fired)} made, ${number(schedule.skipped)} skipped`,
        schedule.last_skip ? ` (the last at ${utcText(schedule.last_skip.at)}: ${schedule.last_skip.reason})` : "",
        ". The schedule keeps its last 10 fires; older jobs are among ",
        h("a", { href: `#/jobs?type=${encodeURIComponent(schedule.job.type)}`, id: "schedule-type-jobs" }, `the jobs of type ${schedule.job.type}`),
        ".",
      ),
    );
    fill(jobs, items);
  }

  function render() {
    setText(title, scheduleTitle(schedule));
    fill(stateSlot, stateBadge(schedule.paused));
    root.dataset.state = schedule.paused ? "paused" : "active";
    renderActions();
    const template = schedule.job;
    fill(
      facts,
      fact("Id", h("code", { class: "mono" }, schedule.id)),
      fact("Name", schedule.name ?? "–"),
      fact("Cron", h("code", {}, schedule.cron)),
      fact("Time zone", schedule.time_zone),
      fact("Job type", h("span", {}, template.type), priorityBadge(template.priority)),
      fact("Priority", template.priority ? PRIORITY_LABELS[template.priority] : "The type's default"),
      fact("Max attempts", template.max_attempts ? number(template.max_attempts) : "The type's default"),
      fact("Overlap", schedule.overlap === "skip" ? "skip: no job while the last fire's job is not finished" : "allow"),
      fact("Catch-up", schedule.catch_up === "skip" ? "skip: no job for fires missed while the app was down" : "once: one job for all the fires missed"),
      fact("State", schedule.paused ? "Paused" : "Active"),
      fact("Next fire", schedule.next_fire_at ? utcText(schedule.next_fire_at) : "–"),
      fact("Last fire", lastFireCell(schedule)),
      fact("Fired", `${number(schedule.fired)} jobs`),
      fact("Skipped", number(schedule.skipped), policiesText(schedule)),
      fact("Created", dateTime(schedule.created_at), schedule.created_at),
      fact("Updated", dateTime(schedule.updated_at), schedule.updated_at),
    );
    renderFires();
    fill(payload, h("pre", { class: "json", id: "schedule-payload-json", tabindex: "0", "aria-label": "payload" }, JSON.stringify(template.payload ?? null, null, 2)));
    renderJobs();
  }

  async function toggle() {
    if (busy) return;
    busy = true;
    renderActions();
    setText(message, schedule.paused ? "Resuming…" : "Pausing…");
    try {
      schedule = await setPaused(schedule, !schedule.paused);
      signature = "";
      const text = schedule.paused ? "Paused: it fires nothing until resumed." : `Resumed: next fire ${utcText(schedule.next_fire_at)}.`;
      setText(message, text);
      announce(text);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      setText(message, `The API refused: ${error.detail}`);
    } finally {
      busy = false;
      render();
      ctx.refreshNow();
    }
  }

  async function edit() {
    if (busy) return;
    busy = true;
    renderActions();
    try {
      const changed = await openScheduleForm(schedule);
      if (changed) {
        schedule = changed;
        signature = "";
        const text = schedule.next_fire_at ? `Saved: next fire ${utcText(schedule.next_fire_at)}.` : "Saved.";
        setText(message, text);
        announce(text);
      }
    } finally {
      busy = false;
      render();
      document.getElementById("schedule-edit")?.focus();
      ctx.refreshNow();
    }
  }

  async function remove() {
    if (await askDelete(schedule)) {
      announce(`Deleted schedule ${scheduleTitle(schedule)}.`);
      ctx.navigate("#/schedules");
    } else {
      document.getElementById("schedule-delete")?.focus();
    }
  }

  async function readLastJob(signal) {
    const last = schedule.last_fire;
    if (!last) return;
    if (lastJob && lastJob.id === last.job_id && TERMINAL.has(lastJob.status)) return; // nothing more to learn
    try {
      const previous = lastJob;
      lastJob = (await api.getJob(last.job_id, signal)).data;
      if (previous && previous.id === lastJob.id && previous.status !== lastJob.status) {
        announce(`The last fire's job is now ${STATUS_LABELS[lastJob.status].toLowerCase()}.`);
      }
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 404) throw error;
      lastJob = false; // deleted after the retention period
    }
  }

  return {
    name: "schedule",
    root,
    title: "Schedule",
    async refresh(signal) {
      try {
        const response = await api.getSchedule(id, signal);
        const first = schedule === null;
        schedule = response.data;
        await readLastJob(signal);
        const sig = JSON.stringify([schedule, lastJob && lastJob.status]);
        if (first) layout();
        if (sig !== signature) {
          signature = sig;
          render();
        } else {
          renderFires(); // "in 3 s" moves on
        }
        document.title = `Schedule ${scheduleTitle(schedule)} · Jobs dashboard`;
        ctx.rendered("schedule");
        return { retryAfter: response.retryAfter };
      } catch (error) {
        if (error instanceof ApiError && error.status === 404) {
          schedule = null;
          fill(stateSlot);
          fill(actions);
          fill(body, h("div", { class: "empty", id: "schedule-missing" }, h("p", {}, `No schedule with id ${id}.`), h("p", { class: "hint" }, "It may have been deleted."), h("a", { href: "#/schedules" }, "Back to schedules")));
          return { retryAfter: 30 };
        }
        throw error;
      }
    },
    tickClock() {
      if (schedule) renderFires();
    },
  };
}
