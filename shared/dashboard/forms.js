// Forms and confirmations: labelled fields with a place for their error, the API's problem
// responses shown next to the fields they name, and a confirmation dialog for actions that touch
// more than one thing. The API is the one that validates: the page only says what it answered.

import { ApiError } from "./api.js";
import { announce, h, setText } from "./dom.js";

/**
 * The fields a problem names, as `{path: message}`. The API validates bodies with one problem,
 * `invalid_field` (its detail reads "`rate_limit.limit`: Input should be …; `cron`: …"), or
 * `unknown_field` (with `fields`); some problems name one field in `field`.
 */
export function problemFields(error, codes = {}) {
  const out = {};
  const problem = error instanceof ApiError ? error.problem : null;
  if (!problem) return out;
  // Problems with a code of their own name no field: the form says which one each is about.
  if (codes[problem.code]) {
    // Its detail may name the field first ("`cron`: …"), which the message beside that field need not.
    out[codes[problem.code]] = String(problem.detail ?? "").replace(/^`[^`]*`:\s*/, "");
    return out;
  }
  if (typeof problem.field === "string") out[problem.field] = problem.detail;
  if (problem.code === "unknown_field" && Array.isArray(problem.fields)) {
    for (const name of problem.fields) out[name] = "not a field the API knows";
  }
  const detail = typeof problem.detail === "string" ? problem.detail : "";
  for (const part of detail.split(/;\s+(?=`)/)) {
    const m = /^`([^`]*)`:\s*([\s\S]+)$/.exec(part.trim());
    if (m) out[m[1] || "body"] = m[2].trim();
  }
  return out;
}

/**
 * A labelled control with a hint and an error line tied to it (aria-describedby), which
 * `setError` fills (and marks the control aria-invalid) or clears.
 */
export function field(label, control, { hint = "", className = "" } = {}) {
  const id = control.id;
  const hintEl = hint ? h("p", { class: "hint field-hint", id: `${id}-hint` }, hint) : null;
  const error = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
  control.setAttribute("aria-describedby", [hintEl ? `${id}-hint` : "", `${id}-error`].filter(Boolean).join(" "));
  const wrap = h("div", { class: ["field", className] }, h("label", { for: id }, label), control, hintEl, error);
  return {
    wrap,
    control,
    error,
    setError(message) {
      error.hidden = !message;
      setText(error, message || "");
      if (message) control.setAttribute("aria-invalid", "true");
      else control.removeAttribute("aria-invalid");
    },
  };
}

/**
 * Show a problem on a form: each named field's message beside it (`fields` maps the API's paths
 * to fields made by `field()`; a path matches its own field or the nearest parent listed; `codes`
 * maps a problem code to the path it is about), the rest in `general`. Focus goes to the first
 * field in error. Returns whether any field matched.
 */
export function showProblem(error, fields, general, codes = {}) {
  for (const f of Object.values(fields)) f.setError("");
  const named = problemFields(error, codes);
  const leftover = [];
  let first = null;
  for (const [path, message] of Object.entries(named)) {
    let target = null;
    for (let p = path; p; p = p.includes(".") ? p.slice(0, p.lastIndexOf(".")) : "") {
      if (fields[p]) {
        target = fields[p];
        break;
      }
    }
    if (target) {
      target.setError(target.error.hidden ? message : `${target.error.textContent}; ${message}`);
      first ??= target;
    } else {
      leftover.push(`${path}: ${message}`);
    }
  }
  const detail = error instanceof ApiError ? error.detail : String(error?.message || error);
  const rest = first ? leftover.join("; ") : detail;
  general.hidden = !rest;
  setText(general, rest ? `The API refused it: ${rest}` : "");
  if (first) first.control.focus();
  else if (rest) announce(`The API refused it: ${rest}`);
  return Boolean(first);
}

export function clearProblem(fields, general) {
  for (const f of Object.values(fields)) f.setError("");
  general.hidden = true;
  setText(general, "");
}

/**
 * Ask before an action: a modal dialog with a title, what will happen and two buttons. `run()`
 * does it; its error shows in the dialog (which stays open), its success closes the dialog.
 * Resolves with run()'s result, or null when the user goes back.
 */
export function confirmAction({ id, title, body, confirmLabel, danger = false, run }) {
  return new Promise((resolve) => {
    const error = h("p", { class: "error-text", role: "alert", hidden: true });
    const confirm = h("button", { type: "button", class: ["button", danger ? "danger" : "primary"], id: `${id}-confirm` }, confirmLabel);
    const back = h("button", { type: "button", class: "button", id: `${id}-back` }, "Go back");
    const dialog = h(
      "dialog",
      { class: "confirm", id, "aria-labelledby": `${id}-title`, "aria-describedby": `${id}-body` },
      h("h2", { id: `${id}-title` }, title),
      h("div", { id: `${id}-body` }, body),
      error,
      h("div", { class: "dialog-buttons" }, confirm, back),
    );
    let outcome = null;
    back.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(outcome);
    });
    confirm.addEventListener("click", async () => {
      confirm.disabled = true;
      error.hidden = true;
      try {
        outcome = (await run()) ?? true;
        dialog.close();
      } catch (exc) {
        if (!(exc instanceof ApiError)) throw exc;
        error.hidden = false;
        setText(error, `The API refused: ${exc.detail}`);
        confirm.disabled = false;
      }
    });
    document.body.append(dialog);
    dialog.showModal();
    back.focus();
  });
}
