// Small DOM helpers shared by the client's modules.
//
// Security rule of every module: text that came from the network is only ever put in the
// page with textContent / append(string), never innerHTML, so a message like
// <img src=x onerror=alert(1)> is shown as text, not run.

/** The page root, also behind a path prefix (jupyter-server-proxy's /proxy/<port>/): every URL
 * the page uses is resolved against it, never written as an absolute path. */
export const BASE = new URL("../", import.meta.url);

/** The element with this data-testid. */
export const $ = (testid) => document.querySelector(`[data-testid="${testid}"]`);

/** Build an element. String children become Text nodes: never parsed as HTML. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else node.setAttribute(name, String(value));
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

/** hh:mm:ss of Unix seconds, or of now. */
export const clock = (seconds) =>
  new Date(seconds ? seconds * 1000 : Date.now()).toLocaleTimeString([], { hour12: false });

/** A server path such as "/uploads/ab…12.png" as a URL under BASE (the proxy's prefix kept). */
export const labUrl = (path) => new URL(String(path).replace(/^\/+/, ""), BASE);
