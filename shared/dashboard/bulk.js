// Bulk actions on the Jobs view: "Retry all matching" / "Cancel all matching" for the current
// filter. A confirmation dialog says how many jobs match, counted by paging GET /api/jobs with
// limit=200 (up to COUNT_CAP); then POST /api/jobs/{retry|cancel} starts an operation, and its
// progress (applied + skipped + failed of matched) is polled from GET /api/operations/{id}, as
// its Retry-After says, until it ends.

import { ApiError, api, idempotencyKey } from "./api.js";
import { announce, fill, h, setText } from "./dom.js";
import { STATUS_LABELS, number, plural } from "./format.js";
import { Poller } from "./live.js";

export const COUNT_CAP = 1000;
const MAX_COUNT_REQUESTS = 25; // per status: a filtered listing may answer short pages
const APPLIES_TO = { retry: ["dead_lettered", "cancelled"], cancel: ["queued", "running"] };
const VERB = { retry: "Retry", cancel: "Cancel" };
const DONE_WORD = { retry: "redriven", cancel: "cancelled" };
const DOING = { retry: "Redriving", cancel: "Cancelling" };

export function bulkAllowed(action, status) {
  return !status || APPLIES_TO[action].includes(status);
}

/** How many jobs the action would take: {count, capped, partial}. */
export async function countMatching(action, filter, onProgress, signal) {
  const statuses = filter.status ? [filter.status] : APPLIES_TO[action];
  let count = 0;
  let partial = false;
  for (const status of statuses) {
    let continuation = null;
    let requests = 0;
    do {
      const { data } = await api.listJobs({ ...filter, status, limit: 200, continuation: continuation || undefined }, signal);
      count += data.jobs.length;
      continuation = data.continuation;
      requests += 1;
      onProgress(count);
      if (count >= COUNT_CAP) return { count, capped: true, partial: false };
    } while (continuation && requests < MAX_COUNT_REQUESTS);
    if (continuation) partial = true;
  }
  return { count, capped: false, partial };
}

function countText(result) {
  if (result.capped) return `${number(COUNT_CAP)}+`;
  if (result.partial) return `at least ${number(result.count)}`;
  return number(result.count);
}

// --- the operation under way (one at a time), shown by the Jobs view's panel -------------------

const state = { action: null, operation: null, estimate: null, error: null, what: "" };
let render = () => {};
let poller = null;

function track(action, operation, estimate, what) {
  poller?.stop();
  Object.assign(state, { action, operation, estimate, error: null, what });
  render();
  poller = new Poller(async () => {
    try {
      const response = await api.getOperation(state.operation.id);
      state.operation = response.data;
      state.error = null;
      render();
      if (state.operation.status !== "running") {
        poller.stop();
        const op = state.operation;
        announce(`${VERB[action]} finished: ${number(op.applied)} ${DONE_WORD[action]}, ${number(op.skipped)} skipped, ${number(op.failed)} failed.`);
      }
      return { retryAfter: response.retryAfter };
    } catch (error) {
      state.error = error;
      render();
      throw error;
    }
  });
  poller.start();
}

/** The panel that shows the operation's progress; `onEnd` runs when it ends (to refresh the list). */
export function bulkPanel(onEnd) {
  const title = h("h2", { id: "bulk-title" });
  const progress = h("progress", { id: "bulk-progress", "aria-labelledby": "bulk-title", max: "1" });
  const text = h("p", { id: "bulk-text" });
  const errors = h("div", {});
  const dismiss = h("button", { type: "button", class: "button quiet", id: "bulk-dismiss" }, "Dismiss");
  const panel = h("section", { class: "bulk-panel", id: "bulk-panel", "aria-labelledby": "bulk-title", hidden: true }, title, progress, h("div", { role: "status" }, text), errors, dismiss);
  let endedShown = null;
  dismiss.addEventListener("click", () => {
    Object.assign(state, { action: null, operation: null });
    poller?.stop();
    panel.hidden = true;
  });

  function sync() {
    const op = state.operation;
    panel.hidden = !op;
    if (!op) return;
    const action = state.action;
    const done = op.applied + op.skipped + op.failed;
    const total = Math.max(op.matched, state.estimate ?? 0);
    const running = op.status === "running";
    panel.dataset.status = op.status;
    setText(title, running ? `${DOING[action]} every job that is ${state.what}` : `${VERB[action]} of every job that is ${state.what}: ${op.status}`);
    if (total > 0) {
      progress.max = total;
      progress.value = running ? done : total;
    } else if (running) {
      progress.removeAttribute("value"); // indeterminate until the first page is counted
    } else {
      progress.max = 1;
      progress.value = 1;
    }
    const counts = `${number(op.applied)} ${DONE_WORD[action]}, ${number(op.skipped)} skipped (state did not allow it), ${number(op.failed)} failed`;
    setText(
      text,
      running
        ? `${number(done)} of ${number(op.matched)} matched so far done: ${counts}.${state.error ? ` (${state.error.detail}; retrying)` : ""}`
        : `Done: ${number(op.matched)} matched; ${counts}.`,
    );
    fill(
      errors,
      op.errors?.length
        ? h("details", {}, h("summary", {}, `First ${plural(op.errors.length, "error")}`), h("ul", {}, op.errors.map((e) => h("li", {}, h("code", {}, e.id), ": ", e.error))))
        : null,
    );
    dismiss.hidden = running;
    if (!running && endedShown !== op.id) {
      endedShown = op.id;
      onEnd();
    }
  }

  render = sync;
  panel.sync = sync;
  sync();
  return panel;
}

// --- the confirmation ----------------------------------------------------------------------

/**
 * Ask, with the number of jobs that match, then start the operation. `filter` is the API's (times
 * already absolute: the same for the count and the operation); `description` says in words what
 * it holds besides the status.
 */
export function openBulk(action, filter, description) {
  const verb = VERB[action];
  const statuses = filter.status ? [filter.status] : APPLIES_TO[action];
  const which = statuses.map((s) => STATUS_LABELS[s].toLowerCase()).join(" or ");
  const controller = new AbortController();
  const countLine = h("p", { id: "bulk-count", class: "count", "aria-live": "polite" }, "Counting matching jobs…");
  const error = h("p", { class: "error-text", role: "alert", hidden: true });
  const confirm = h("button", { type: "button", class: ["button", action === "cancel" ? "danger" : "primary"], id: "bulk-confirm", disabled: true }, `${verb} matching jobs`);
  const back = h("button", { type: "button", class: "button", id: "bulk-back" }, "Go back");
  const dialog = h(
    "dialog",
    { class: "confirm", id: "bulk-dialog", "aria-labelledby": "bulk-dialog-title", "aria-describedby": "bulk-dialog-what" },
    h("h2", { id: "bulk-dialog-title" }, `${verb} all matching jobs?`),
    h("p", { id: "bulk-dialog-what" }, `Every job that is ${which}${description ? `, ${description}` : ""}.`),
    countLine,
    h(
      "p",
      { class: "hint" },
      action === "retry"
        ? "Each is queued again for one more attempt. It runs in the background, a page at a time; jobs that change state meanwhile are skipped."
        : "Queued jobs never run; running ones stop at their next checkpoint. It runs in the background, a page at a time.",
    ),
    error,
    h("div", { class: "dialog-buttons" }, confirm, back),
  );
  let result = null;
  back.addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => {
    controller.abort();
    dialog.remove();
  });
  confirm.addEventListener("click", async () => {
    confirm.disabled = true;
    error.hidden = true;
    try {
      const response = await api.bulk(action, filter, idempotencyKey());
      dialog.close();
      announce(`${verb} started.`);
      track(action, response.data, result && !result.capped && !result.partial ? result.count : null, [which, description].filter(Boolean).join(", "));
    } catch (exc) {
      if (!(exc instanceof ApiError)) throw exc;
      error.hidden = false;
      setText(error, `The app refused: ${exc.detail}`);
      confirm.disabled = false;
    }
  });
  document.body.append(dialog);
  dialog.showModal();
  back.focus();

  countMatching(action, filter, (n) => setText(countLine, `Counting matching jobs… ${number(n)} so far`), controller.signal)
    .then((counted) => {
      result = counted;
      const n = countText(counted);
      if (counted.count === 0) {
        setText(countLine, "No jobs match: there is nothing to do.");
        return;
      }
      setText(countLine, `${n} ${counted.count === 1 && !counted.capped ? "job matches" : "jobs match"}.`);
      setText(confirm, `${verb} ${n} ${counted.count === 1 && !counted.capped ? "job" : "jobs"}`);
      confirm.disabled = false;
    })
    .catch((exc) => {
      if (exc && exc.name === "AbortError") return;
      setText(countLine, `Could not count them (${exc.detail || exc.message}); the action can still run.`);
      confirm.disabled = false;
    });
}
