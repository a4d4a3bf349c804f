// Building the page with DOM APIs only: every value from the API becomes a text node or an
// attribute value, never markup. (The page's CSP requires Trusted Types with no policy, so an
// HTML string given to innerHTML and the like would throw anyway.)

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") el.textContent = String(value);
    else if (name === "class") el.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "style") throw new Error("no style attributes: the CSP forbids them; use a class");
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** h("a", {href: "#/jobs", class: "link"}, "text", otherNode): an element; strings become text. */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** The same for SVG elements. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function setText(el, text) {
  const value = text === undefined || text === null ? "" : String(text);
  if (el.textContent !== value) el.textContent = value;
}

/** Copy text to the clipboard; says so on the button for a moment. */
export async function copyText(text, button) {
  let ok = true;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    ok = false;
  }
  if (button) {
    const before = button.dataset.label || button.textContent;
    button.dataset.label = before;
    button.textContent = ok ? "Copied" : "Copy failed";
    setTimeout(() => {
      button.textContent = before;
    }, 1500);
  }
  return ok;
}

/** Say something to screen readers (the page's aria-live region). */
export function announce(message) {
  const region = document.getElementById("announcer");
  if (!region) return;
  region.textContent = "";
  // A new text node after the region was emptied is read out, even when the text repeats.
  setTimeout(() => {
    region.textContent = message;
  }, 50);
}
