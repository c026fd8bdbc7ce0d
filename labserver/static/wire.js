// The "wire" panel: every WebSocket message this page sends (↑) and receives (↓), with its
// type, its size in bytes (the UTF-8 payload of the text frame, RFC 6455 section 5.6: the
// frame header adds 2-14 bytes) and the time; plus connection events (•).
// The browser's own view of the same frames: DevTools > Network > WS > the /ws request > Messages.

import { $, clock, el } from "./dom.js";

const MAX_LINES = 200; // kept in the page, newest first; the totals count every message
const ARROWS = { in: "↓", out: "↑", event: "•" };
const utf8 = new TextEncoder();

const list = $("frames");
const totals = { in: { count: 0, bytes: 0 }, out: { count: 0, bytes: 0 } };

function renderTotals() {
  for (const direction of ["in", "out"]) {
    const { count, bytes } = totals[direction];
    $(`wire-${direction}`).textContent = `${count} · ${bytes.toLocaleString("en")} B`;
  }
}

/** Record one message. ``text`` is exactly what crossed the wire; ``message`` its parsed JSON
 * (or null when it did not parse). Events (connect, open, close) pass a description and no message. */
export function wire(direction, text, message = null) {
  const size = direction === "event" ? null : utf8.encode(text).length;
  if (size !== null) {
    totals[direction].count += 1;
    totals[direction].bytes += size;
    renderTotals();
  }
  const type = message && typeof message.type === "string" ? message.type : null;
  list.prepend(
    el(
      "li",
      { class: `frame ${direction}`, "data-dir": direction, "data-type": type, "data-size": size },
      el("span", { class: "arrow", "aria-label": direction === "event" ? "event" : direction === "in" ? "received" : "sent" }, ARROWS[direction]),
      el("time", {}, clock()),
      el("span", { class: "type" }, type ?? (direction === "event" ? "" : "?")),
      el("span", { class: "size" }, size === null ? "" : `${size} B`),
      el("code", {}, text),
    ),
  );
  while (list.children.length > MAX_LINES) list.lastElementChild.remove();
}

/** Empty the panel and its totals (log out). */
export function clearWire() {
  list.replaceChildren();
  for (const direction of ["in", "out"]) totals[direction] = { count: 0, bytes: 0 };
  renderTotals();
}
