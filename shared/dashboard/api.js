// The dashboard's only way to data: the public HTTP API, the same one any client uses.
//
// The API's base is found from this module's own URL (/api/dashboard/api.js -> /api/), so the page
// works under any host and route prefix. In Azure the API needs a function key: a 401 is what
// tells the page to ask for one; the key lives in sessionStorage (this tab only, gone when it
// closes) and travels in the `x-functions-key` header, never in a URL.

const BASE = new URL("../", import.meta.url);
const KEY_ITEM = "jobs-dashboard.function-key";

export class ApiError extends Error {
  constructor(status, code, detail, { problem = null, retryAfter = null } = {}) {
    super(detail);
    this.status = status; // 0: no answer at all
    this.code = code;
    this.detail = detail;
    this.problem = problem;
    this.retryAfter = retryAfter;
  }
}

export function storedKey() {
  try {
    return sessionStorage.getItem(KEY_ITEM);
  } catch {
    return null;
  }
}

export function saveKey(key) {
  sessionStorage.setItem(KEY_ITEM, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_ITEM);
}

// Set by main.js: shows the key dialog and resolves true once a key is saved, false if dismissed.
let askForKey = async () => false;
let pendingAsk = null;

export function onKeyNeeded(handler) {
  askForKey = handler;
}

function keyNeeded(refused) {
  // Many requests may be refused at once: one dialog answers them all.
  pendingAsk ??= askForKey(refused).finally(() => {
    pendingAsk = null;
  });
  return pendingAsk;
}

/** Seconds from a Retry-After header (seconds or an HTTP date); null when absent or unreadable. */
export function retryAfterSeconds(value) {
  if (!value) return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, Math.round((date - Date.now()) / 1000));
}

/**
 * One API call: `{data, status, retryAfter}`, or an ApiError with the problem's `code` and `detail`.
 * A 401 asks for the key (once for all requests waiting) and sends the request again with it.
 */
export async function request(method, path, { query = null, body = undefined, signal = undefined, headers: extra = {} } = {}) {
  const url = new URL(path, BASE);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, String(value));
  }
  for (let attempt = 0; ; attempt++) {
    const key = storedKey();
    const headers = { Accept: "application/json", ...extra };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (key) headers["x-functions-key"] = key;
    let response;
    try {
      response = await fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
        cache: "no-store",
        credentials: "same-origin",
        referrerPolicy: "no-referrer",
      });
    } catch (exc) {
      if (exc && exc.name === "AbortError") throw exc;
      throw new ApiError(0, "unreachable", "the app did not answer (network error)");
    }
    const retryAfter = retryAfterSeconds(response.headers.get("Retry-After"));
    const text = await response.text(); // read to the end: a response left unread is logged as aborted
    if ((response.status === 401 || response.status === 403) && attempt < 3) {
      if (await keyNeeded(Boolean(key))) continue;
    }
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (response.ok) return { data, status: response.status, retryAfter };
    const problem = data && typeof data === "object" ? data : null;
    const code = problem?.code || (response.status === 401 ? "key_needed" : `http_${response.status}`);
    const detail =
      problem?.detail ||
      (response.status === 401 || response.status === 403
        ? "this API needs a function key"
        : `the app answered ${response.status} ${response.statusText}`);
    throw new ApiError(response.status, code, detail, { problem, retryAfter });
  }
}

function ifMatch(revision) {
  return revision ? { "If-Match": `"${revision}"` } : {};
}

export const api = {
  listJobs: (query, signal) => request("GET", "jobs", { query, signal }),
  getJob: (id, signal) => request("GET", `jobs/${encodeURIComponent(id)}`, { signal }),
  retryJob: (id) => request("POST", `jobs/${encodeURIComponent(id)}/retry`),
  cancelJob: (id) => request("POST", `jobs/${encodeURIComponent(id)}/cancel`),
  // An Idempotency-Key per confirmation: a request sent twice (a double click, a retry) starts one operation.
  bulk: (action, filter, key) => request("POST", `jobs/${action}`, { body: { filter }, headers: { "Idempotency-Key": key } }),
  getOperation: (id, signal) => request("GET", `operations/${encodeURIComponent(id)}`, { signal }),
  stats: (signal) => request("GET", "stats", { signal }),
  // Flow control: job types with their pauses and limits.
  listTypes: (signal) => request("GET", "types", { signal }),
  getType: (type, signal) => request("GET", `types/${encodeURIComponent(type)}`, { signal }),
  changeType: (type, body) => request("PATCH", `types/${encodeURIComponent(type)}`, { body }),
  pauseAll: () => request("POST", "pause"),
  resumeAll: () => request("POST", "resume"),
  // Recurring schedules.
  listSchedules: (query, signal) => request("GET", "schedules", { query, signal }),
  getSchedule: (id, signal) => request("GET", `schedules/${encodeURIComponent(id)}`, { signal }),
  createSchedule: (body, key) => request("POST", "schedules", { body, headers: { "Idempotency-Key": key } }),
  // With the revision a change was based on (If-Match): refused with 412 if someone changed it since.
  changeSchedule: (id, body, revision) => request("PATCH", `schedules/${encodeURIComponent(id)}`, { body, headers: ifMatch(revision) }),
  deleteSchedule: (id, revision) => request("DELETE", `schedules/${encodeURIComponent(id)}`, { headers: ifMatch(revision) }),
  health: (signal) => request("GET", "health", { signal }),
  document: () => request("GET", "openapi.json"),
};

/** A fresh Idempotency-Key: one per confirmed action, so a request sent twice acts once. */
export function idempotencyKey() {
  if (crypto.randomUUID) return `dashboard-${crypto.randomUUID()}`;
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `dashboard-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

let documentOnce = null;

/** The OpenAPI document, read once per page load (the registered types, the time zones). */
export function apiDocument() {
  documentOnce ??= api.document().then(
    (r) => r.data,
    (error) => {
      documentOnce = null; // asked again next time
      throw error;
    },
  );
  return documentOnce;
}
