// Formatting for people: numbers, times, ages, durations, statuses.

import { h } from "./dom.js";

export const STATUSES = ["queued", "running", "succeeded", "dead_lettered", "cancelled"];
export const STATUS_LABELS = {
  queued: "Queued",
  running: "Running",
  succeeded: "Succeeded",
  dead_lettered: "Dead-lettered",
  cancelled: "Cancelled",
};
export const TERMINAL = new Set(["succeeded", "dead_lettered", "cancelled"]);

const numberFormat = new Intl.NumberFormat();
// A 24-hour clock everywhere: times line up in columns and read the same in every locale.
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
const hmFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hourCycle: "h23",
});

export function number(n) {
  return n === null || n === undefined ? "–" : numberFormat.format(n);
}

export function parseTime(value) {
  if (!value) return null;
  const t = Date.parse(value);
  return Number.isNaN(t) ? null : t;
}

/** "Nov 25, 12:00:03" in the browser's time zone; "–" for none. */
export function dateTime(value) {
  const t = parseTime(value);
  return t === null ? "–" : dateTimeFormat.format(t);
}

/** "12:05" */
export function hm(value) {
  const t = typeof value === "number" ? value : parseTime(value);
  return t === null ? "–" : hmFormat.format(t);
}

export function clock(value) {
  const t = typeof value === "number" ? value : parseTime(value);
  return t === null ? "–" : timeFormat.format(t);
}

/** A length of time: "850 ms", "12.4 s", "3 min 4 s", "2 h 5 min", "3 d 4 h". */
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
  const negative = ms < 0;
  ms = Math.abs(ms);
  let out;
  if (ms < 1000) out = `${Math.round(ms)} ms`;
  else if (ms < 60_000) out = `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  else if (ms < 3_600_000) out = `${Math.floor(ms / 60_000)} min ${Math.floor((ms % 60_000) / 1000)} s`;
  else if (ms < 86_400_000) out = `${Math.floor(ms / 3_600_000)} h ${Math.floor((ms % 3_600_000) / 60_000)} min`;
  else out = `${Math.floor(ms / 86_400_000)} d ${Math.floor((ms % 86_400_000) / 3_600_000)} h`;
  return negative ? `−${out}` : out;
}

export function between(from, to) {
  const a = parseTime(from);
  const b = parseTime(to);
  return a === null || b === null ? null : b - a;
}

/** "12 s ago", "in 9 min": coarse, for tables. */
export function ago(value, now = Date.now()) {
  const t = parseTime(value);
  if (t === null) return "–";
  const ms = now - t;
  const abs = Math.abs(ms);
  let text;
  if (abs < 5_000) return "just now";
  if (abs < 60_000) text = `${Math.floor(abs / 1000)} s`;
  else if (abs < 3_600_000) text = `${Math.floor(abs / 60_000)} min`;
  else if (abs < 86_400_000) text = `${Math.floor(abs / 3_600_000)} h`;
  else text = `${Math.floor(abs / 86_400_000)} d`;
  return ms >= 0 ? `${text} ago` : `in ${text}`;
}

/** A time element: relative text, the exact time on hover and for assistive technology. */
export function timeAgo(value) {
  if (!value) return h("span", { class: "muted" }, "–");
  return h("time", { datetime: value, title: dateTime(value) }, ago(value));
}

export function shortId(id) {
  return id && id.length > 12 ? `${id.slice(0, 2)}…${id.slice(-8)}` : id || "";
}

export function truncate(text, max) {
  if (text === null || text === undefined) return "";
  const str = String(text);
  return str.length > max ? `${str.slice(0, max - 1)}…` : str;
}

/** A status as colour and text (the colour is never the only sign). */
export function statusBadge(status) {
  return h("span", { class: ["status", `status-${status}`] }, h("span", { class: "dot", "aria-hidden": "true" }), STATUS_LABELS[status] || status);
}

export function plural(n, one, many = `${one}s`) {
  return `${number(n)} ${n === 1 ? one : many}`;
}

export const PRIORITY_LABELS = { high: "High", normal: "Normal", low: "Low" };

/** A compact badge for a priority that is not the usual one (high, low); nothing for normal. */
export function priorityBadge(priority) {
  if (!priority || priority === "normal") return null;
  const label = PRIORITY_LABELS[priority] || priority;
  return h(
    "span",
    { class: ["badge", `priority-${priority}`], title: `${label} priority: its own queue` },
    h("span", { "aria-hidden": "true" }, priority === "high" ? "↑ " : priority === "low" ? "↓ " : ""),
    priority,
    h("span", { class: "visually-hidden" }, " priority"),
  );
}

/** "per second", "per minute", "per hour", "per day", else "per 30 s". */
export function per(seconds) {
  const named = { 1: "per second", 60: "per minute", 3600: "per hour", 86400: "per day" }[seconds];
  if (named) return named;
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["min", 60]]) {
    if (seconds > size && seconds % size === 0) return `per ${number(seconds / size)} ${unit}`;
  }
  return `per ${number(seconds)} s`;
}

/** A rate limit in words: "10 per minute"; "No limit" for none. */
export function rateText(rate) {
  return rate ? `${number(rate.limit)} ${per(rate.period_seconds)}` : "No limit";
}

/** A time in UTC, to the second: "2026-11-26 01:30:00 UTC". */
export function utcText(value) {
  const t = parseTime(value);
  return t === null ? "–" : `${new Date(t).toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

/** The API's wall-clock time in a zone ("2026-11-26T02:30:00+01:00") as "2026-11-26 02:30:00 +01:00". */
export function zoneText(local) {
  if (!local) return "–";
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.\d+)?(Z|[+-]\d{2}:\d{2})?$/.exec(local);
  if (!m) return local;
  return `${m[1]} ${m[2]} ${!m[3] || m[3] === "Z" ? "+00:00" : m[3]}`;
}
