// The dashboard's shell: views as URLs (the hash: #/, #/jobs?status=…, #/jobs/{id}, #/types, #/schedules, #/schedules/{id}), one poller
// that refreshes the view on screen, the function key prompt, and the error banner.

import { ApiError, api, forgetKey, onKeyNeeded, saveKey, storedKey } from "./api.js";
import { announce, setText } from "./dom.js";
import { clock, number } from "./format.js";
import { createJob } from "./job.js";
import { createJobs } from "./jobs.js";
import { Poller, hidden } from "./live.js";
import { createOverview } from "./overview.js";
import { createSchedulePage } from "./schedule.js";
import { createSchedules } from "./schedules.js";
import { createTypes } from "./types.js";

const main = document.getElementById("main");
const live = document.getElementById("live");
const banner = document.getElementById("banner");
const bannerText = document.getElementById("banner-text");
const bannerAction = document.getElementById("banner-action");
const forgetButton = document.getElementById("forget-key");

let current = null; // the view on screen
let jobsView = null; // kept while away, so going back finds its rows, "Load more" and scroll
let jobsScroll = 0;
let lastJobsHash = "#/jobs";
let firstView = true;
let lastUpdate = null;
let storageDown = false;
let keyDismissed = false; // "Not now": no more prompts until the banner's "Enter key"

// --- routes ----------------------------------------------------------------------------------

function parseHash() {
  const raw = location.hash.slice(1) || "/";
  if (!raw.startsWith("/")) return null; // an in-page anchor, not a view
  const q = raw.indexOf("?");
  const path = q >= 0 ? raw.slice(0, q) : raw;
  const params = new URLSearchParams(q >= 0 ? raw.slice(q + 1) : "");
  const parts = path.split("/").filter(Boolean);
  if (parts.length === 0) return { view: "overview", params };
  if (parts[0] === "jobs" && parts.length === 1) return { view: "jobs", params };
  if (parts[0] === "jobs" && parts.length === 2) return { view: "job", id: decodeURIComponent(parts[1]), params };
  if (parts[0] === "types" && parts.length === 1) return { view: "types", params };
  if (parts[0] === "schedules" && parts.length === 1) return { view: "schedules", params };
  if (parts[0] === "schedules" && parts.length === 2) return { view: "schedule", id: decodeURIComponent(parts[1]), params };
  return { view: "overview", params };
}

const ctx = {
  navigate(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  },
  /** Change the current view's URL parameters without a history entry, and tell the view. */
  setParams(values) {
    const target = parseHash();
    if (!target) return;
    const params = target.params;
    for (const [name, value] of Object.entries(values)) {
      if (value) params.set(name, value);
      else params.delete(name);
    }
    const path = location.hash.slice(1).split("?")[0] || "/";
    const qs = params.toString();
    history.replaceState(null, "", `#${path}${qs ? `?${qs}` : ""}`);
    current?.update?.(params);
  },
  refreshNow: () => poller.now(),
  jobsHash: () => lastJobsHash,
  showError,
  rendered(view) {
    if (!performance.getEntriesByName(`dashboard:${view}-rendered`).length) performance.mark(`dashboard:${view}-rendered`);
    document.body.dataset.rendered = view;
  },
};

function route() {
  const target = parseHash();
  if (!target) return;
  if (target.view === "jobs") lastJobsHash = location.hash || "#/jobs";
  const same = current && current.name === target.view && target.view !== "job" && target.view !== "schedule" && current.update;
  if (same) {
    current.update(target.params);
    return;
  }
  if (current === jobsView && jobsView) jobsScroll = window.scrollY;
  let next;
  let restoreScroll = null;
  if (target.view === "jobs") {
    if (jobsView) {
      next = jobsView;
      restoreScroll = jobsScroll;
      next.update(target.params);
    } else {
      next = jobsView = createJobs(target.params, ctx);
    }
  } else if (target.view === "job") {
    next = createJob(target.id, ctx);
  } else if (target.view === "types") {
    next = createTypes(target.params, ctx);
  } else if (target.view === "schedules") {
    next = createSchedules(target.params, ctx);
  } else if (target.view === "schedule") {
    next = createSchedulePage(target.id, ctx);
  } else {
    next = createOverview(target.params, ctx);
  }
  current = next;
  main.replaceChildren(next.root);
  next.shown?.();
  document.title = `${next.title} · Jobs dashboard`;
  for (const link of document.querySelectorAll(".nav a")) {
    const parent = { job: "jobs", schedule: "schedules" }[target.view];
    const active = link.dataset.view === target.view || link.dataset.view === parent;
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (restoreScroll !== null) window.scrollTo(0, restoreScroll);
  else if (!firstView) window.scrollTo(0, 0);
  // After a navigation (not on first load), focus goes to the new view's heading, for screen readers.
  if (!firstView) next.root.querySelector("h1")?.focus({ preventScroll: true });
  firstView = false;
  poller.now();
}

// --- live updates ----------------------------------------------------------------------------

function setLive(state, text, title = "") {
  live.dataset.state = state;
  setText(live, text);
  live.title = title;
}

const poller = new Poller(
  async () => {
    try {
      const outcome = await current.refresh();
      clearBanner();
      return outcome;
    } catch (error) {
      // Without a key, ask again only when told to (the banner's button), and poll slowly meanwhile.
      if (error instanceof ApiError && (error.status === 401 || error.status === 403)) error.retryAfter = 60;
      throw error;
    }
  },
  {
    onState(state, detail = {}) {
      if (state === "paused") setLive("paused", "Paused: tab hidden", "Nothing is asked of the API while this tab is hidden; it resumes when you come back.");
      else if (state === "updating") live.dataset.updating = "true";
      else if (state === "live") {
        delete live.dataset.updating;
        lastUpdate = detail.at;
        setLive("live", `Live · updated ${clock(detail.at)}`, "Refreshes by itself every few seconds (as the API's Retry-After says, else every 5 s).");
      } else if (state === "error") {
        delete live.dataset.updating;
        showError(detail.error);
        setLive("error", `Retrying in ${number(Math.min(60, Math.max(1, detail.seconds)))} s`, lastUpdate ? `last update ${clock(lastUpdate)}` : "");
      }
    },
  },
);

document.addEventListener("visibilitychange", () => {
  if (!hidden()) announce("Live updates resumed.");
});

// --- errors ----------------------------------------------------------------------------------

function showBanner(kind, text, action = null) {
  banner.hidden = false;
  banner.dataset.kind = kind;
  setText(bannerText, text);
  bannerAction.hidden = !action;
  if (action) {
    setText(bannerAction, action.label);
    bannerAction.onclick = action.run;
  }
}

function clearBanner() {
  storageDown = false;
  if (!banner.hidden) {
    banner.hidden = true;
    announce("The app answers again.");
  }
}

async function nameTheDependency() {
  // Which part of storage is down: GET /api/health names it (once per outage, not every refresh).
  try {
    await api.health();
  } catch (error) {
    const checks = error instanceof ApiError ? error.problem?.checks : null;
    if (checks) {
      const down = Object.entries(checks).filter(([, v]) => v !== "ok").map(([k, v]) => `${k}: ${v}`);
      if (down.length && storageDown) setText(bannerText, `Storage is not answering (${down.join("; ")}). Showing the last data received; retrying.`);
    }
  }
}

function showError(error) {
  if (!(error instanceof ApiError)) {
    if (error?.name === "AbortError") return;
    console.error(error); // a bug in the page, not an answer of the API: say it where developers look
    showBanner("error", `Something went wrong in the page: ${error?.message || error}`);
    return;
  }
  if (error.status === 401 || error.status === 403) {
    showBanner("key", "This API needs a function key.", { label: "Enter key", run: () => {
        keyDismissed = false;
        askForKey(Boolean(storedKey())).then((ok) => ok && poller.now());
      },
    });
    setLive("error", "Waiting for a key");
  } else if (error.status === 503) {
    const first = !storageDown;
    storageDown = true;
    showBanner("storage", "Storage is not answering. Showing the last data received; retrying.");
    if (first) nameTheDependency();
  } else if (error.status === 0) {
    showBanner("offline", "The app is not answering (network error). Showing the last data received; retrying.");
  } else if (error.status === 429) {
    showBanner("throttled", `The host is throttling requests; waiting ${error.retryAfter ?? 5} s.`);
  } else {
    showBanner("error", `The API answered ${error.status}${error.code ? ` (${error.code})` : ""}: ${error.detail}`);
  }
}

// --- the function key (Azure) ----------------------------------------------------------------

const keyDialog = document.getElementById("key-dialog");
const keyForm = document.getElementById("key-form");
const keyInput = document.getElementById("key-input");
const keyError = document.getElementById("key-error");
let keyAnswer = null;

function askForKey(refused) {
  if (keyAnswer) return keyAnswer.promise;
  let resolve;
  const promise = new Promise((r) => {
    resolve = r;
  });
  keyAnswer = { promise, resolve };
  keyError.hidden = !refused;
  setText(keyError, refused ? "The API refused that key. Check it, or ask for another." : "");
  keyInput.value = "";
  setLive("error", "Waiting for a key");
  keyDialog.showModal();
  keyInput.focus();
  return promise;
}

function answerKey(ok) {
  const answer = keyAnswer;
  keyAnswer = null;
  answer?.resolve(ok);
}

keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  if (!key) return;
  saveKey(key);
  keyDismissed = false;
  keyInput.value = "";
  forgetButton.hidden = false;
  keyDialog.close();
  answerKey(true);
});
document.getElementById("key-cancel").addEventListener("click", () => keyDialog.close());
keyDialog.addEventListener("close", () => {
  if (keyAnswer) keyDismissed = true;
  answerKey(false);
});
onKeyNeeded((refused) => (keyDismissed ? Promise.resolve(false) : askForKey(refused)));

forgetButton.hidden = !storedKey();
forgetButton.addEventListener("click", () => {
  forgetKey();
  forgetButton.hidden = true;
  announce("The key is forgotten.");
  poller.now();
});

// --- the rest of the shell ---------------------------------------------------------------------

document.getElementById("refresh-now").addEventListener("click", () => poller.now());
document.getElementById("skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});
window.addEventListener("hashchange", route);
// Relative times ("12 s ago") move on between refreshes too.
setInterval(() => {
  if (!hidden()) current?.tickClock?.();
}, 5000);

route();
poller.start();
