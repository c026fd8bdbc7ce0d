// labserver browser client: vanilla ES modules, no dependencies, no build step.
// This one owns the session and the socket; the others each do one job:
//   dom.js (helpers), wire.js (the wire panel), queue.js (messages typed offline),
//   feed.js (posts, likes, comments, uploads), rtc.js (a WebRTC data channel).
//
// The hybrid approach in one page:
//   * HTTP for request/response: sign up / log in (-> token), room history,
//     the notifications you missed, "is my token still good?".
//   * One WebSocket for everything live: chat and its acks, typing, presence,
//     notifications; with reconnect + resume so a dropped socket loses nothing.
//
// Security rule of every module: text that came from the network is only ever put
// in the page with textContent / append(string), never innerHTML, so a message
// like <img src=x onerror=alert(1)> is shown as text, not run.

import { $, BASE, clock, el } from "./dom.js";
import { createFeed } from "./feed.js";
import { OfflineQueue } from "./queue.js";
import { createRtc } from "./rtc.js";
import { clearWire, wire } from "./wire.js";

const STORE = window.sessionStorage; // per tab: two tabs can be two different users
const KEYS = { token: "labserver.token", user: "labserver.user", room: "labserver.room" };

const HISTORY = 100; // messages loaded over HTTP when entering a room
const MAX_LOG = 500; // chat lines kept in the page
const OFFLINE_LIMIT = 10; // chat lines kept while the socket is down; more are refused (rate limit: burst 40)
const TYPING_EVERY_MS = 1000; // send "typing" at most once a second...
const TYPING_IDLE_MS = 3000; // ...and "typing stopped" after this long without a key
const BACKOFF = { baseMs: 500, capMs: 15000 }; // reconnect delays: 0.5 s, 1 s, 2 s ... 15 s

// --- state -----------------------------------------------------------------------------

const state = {
  token: STORE.getItem(KEYS.token),
  user: JSON.parse(STORE.getItem(KEYS.user) || "null"),
  room: STORE.getItem(KEYS.room) || "general",
  running: false, // logged in and wanting a socket; false stops reconnects
  ws: null,
  socketId: null, // set by "welcome"
  limits: {},
  joined: false,
  lastSeq: 0, // highest seq seen in the room: what "resume" asks to continue after
  canResume: false, // we have been in state.room before, so resume instead of join
  attempt: 0, // reconnect attempts since the last successful join
  reconnectTimer: null,
  refs: 0,
  requests: new Map(), // ref -> {resolve, reject}: answers we are waiting for
  outbox: new Map(), // ref -> {li, text}: chat lines sent but not yet stored
  offline: new OfflineQueue(OFFLINE_LIMIT), // {li, text, room}: typed while the socket was down
  bySeq: new Map(), // seq -> <li> of the chat log
  online: new Map(), // user id -> user
  typing: new Map(), // user id -> {username, timer}
  notes: new Set(), // notification ids shown
  typingSentAt: 0,
  typingActive: false,
  typingIdle: null,
};

// --- DOM ----------------------------------------------------------------------------------

const ui = {
  loginView: document.getElementById("login-view"),
  appView: document.getElementById("app-view"),
  loginForm: document.getElementById("login-form"),
  loginError: $("login-error"),
  status: $("status"),
  socketId: $("socket-id"),
  me: $("me"),
  drop: $("drop"),
  logout: $("logout"),
  roomForm: document.getElementById("room-form"),
  roomInput: $("room-input"),
  room: $("room"),
  log: $("log"),
  typing: $("typing"),
  composer: document.getElementById("composer"),
  input: $("composer-input"),
  send: $("send"),
  notice: $("notice"),
  online: $("online"),
  onlineCount: $("online-count"),
  notifications: $("notifications"),
  announcement: $("announcement"),
};

function setStatus(phase, text, code = null) {
  ui.status.dataset.state = phase; // idle | connecting | open | closed
  if (code === null) delete ui.status.dataset.code;
  else ui.status.dataset.code = String(code);
  ui.status.textContent = text;
}

function notice(text) {
  ui.notice.textContent = text;
}

/** The instructor's latest announcement (PROTOCOL.md section 6), with its time, until dismissed.
 * Replaced, not appended: the live region then reads out exactly the new one. */
function showAnnouncement(message) {
  const dismiss = el("button", { type: "button", class: "secondary small", "data-testid": "announcement-dismiss",
    "aria-label": "dismiss the announcement" }, "×");
  dismiss.addEventListener("click", () => ui.announcement.replaceChildren());
  ui.announcement.replaceChildren(
    el("strong", {}, "Instructor: "),
    el("span", { "data-testid": "announcement-text" }, String(message.text ?? "")),
    " ",
    el("time", { class: "when" }, clock(message.ts)),
    dismiss,
  );
}

// --- HTTP half -----------------------------------------------------------------------------

/** One JSON request; throws an Error carrying the HTTP status and the server's error code. */
async function api(method, path, body) {
  const headers = {};
  const form = body instanceof FormData; // an upload: fetch writes the multipart Content-Type itself
  if (body !== undefined && !form) headers["Content-Type"] = "application/json";
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const response = await fetch(new URL(path, BASE), {
    method,
    headers,
    body: body === undefined || form ? body : JSON.stringify(body),
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error(data?.message || `${response.status} ${response.statusText}`);
    error.status = response.status;
    error.code = data?.error;
    throw error;
  }
  return data;
}

async function loadHistory(room, after) {
  const query = new URLSearchParams({ after: String(after), limit: String(HISTORY) });
  const data = await api("GET", `api/rooms/${encodeURIComponent(room)}/messages?${query}`);
  if (room !== state.room) return;
  for (const message of data.messages) addMessage(message);
}

async function loadNotifications() {
  try {
    const data = await api("GET", "api/notifications?limit=20");
    for (const note of data.notifications.reverse()) addNotification(note); // oldest first, each on top
  } catch (error) {
    notice(`could not load notifications: ${error.message}`);
  }
}

// --- WebSocket half: the connection --------------------------------------------------------

function connect() {
  clearTimeout(state.reconnectTimer);
  if (!state.running) return;
  const url = new URL("ws", BASE);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("token", state.token);
  const ws = new WebSocket(url);
  state.ws = ws;
  setStatus("connecting", state.attempt ? `reconnecting (attempt ${state.attempt})…` : "connecting…");
  wire("event", `connect ${url.origin}${url.pathname}?token=…`);
  ws.onopen = () => {
    if (ws !== state.ws) return;
    setStatus("open", "open");
    wire("event", "open");
  };
  ws.onmessage = (event) => {
    if (ws !== state.ws) return;
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      wire("in", String(event.data));
      return;
    }
    wire("in", event.data, message);
    dispatch(message);
  };
  ws.onclose = (event) => {
    if (ws === state.ws) onClose(event);
  };
}

function send(message) {
  const ws = state.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  const text = JSON.stringify(message);
  ws.send(text);
  wire("out", text, message);
  return true;
}

const nextRef = () => `c${++state.refs}`;

/** Send a message with a ref; resolve with the reply carrying that ref (reject on "error"). */
function request(message) {
  const ref = message.ref ?? nextRef();
  return new Promise((resolve, reject) => {
    if (!send({ ...message, ref })) {
      reject(closedError());
      return;
    }
    state.requests.set(ref, { resolve, reject });
  });
}

function closedError() {
  const error = new Error("connection closed before the answer");
  error.closed = true;
  return error;
}

async function onClose(event) {
  const welcomed = state.socketId !== null;
  state.ws = null;
  state.socketId = null;
  setJoined(false);
  ui.socketId.textContent = "–";
  for (const { reject } of state.requests.values()) reject(closedError());
  state.requests.clear();
  clearTyping();
  ui.online.classList.add("stale");
  const closed = `closed ${event.code}${event.reason ? ` · ${event.reason}` : ""}`;
  wire("event", closed);
  if (!state.running) {
    setStatus("closed", closed, event.code);
    return;
  }
  // A refused handshake (401: bad or revoked token) reaches the page only as
  // close code 1006: browsers hide the HTTP answer. Ask over HTTP instead.
  if (!welcomed || event.code === 1008) {
    setStatus("closed", `${closed} · checking the token…`, event.code);
    try {
      await api("GET", "api/me");
    } catch (error) {
      if (error.status === 401) {
        if (state.running) endSession(`Session ended: ${event.reason || error.message}`);
        return;
      }
    }
    if (!state.running) return;
  }
  // Exponential backoff with jitter: a restarted server is not hit by every client at once.
  const ceiling = Math.min(BACKOFF.capMs, BACKOFF.baseMs * 2 ** state.attempt);
  const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
  state.attempt += 1;
  setStatus("closed", `${closed} · reconnecting in ${(delay / 1000).toFixed(1)} s`, event.code);
  state.reconnectTimer = setTimeout(connect, delay);
}

// --- WebSocket half: incoming messages -----------------------------------------------------

function dispatch(message) {
  const pending = message.ref !== undefined ? state.requests.get(message.ref) : undefined;
  if (pending) {
    state.requests.delete(message.ref);
    if (message.type === "error") pending.reject(Object.assign(new Error(message.message), message));
    else pending.resolve(message);
    return;
  }
  switch (message.type) {
    case "welcome":
      state.socketId = message.socket_id;
      state.limits = message.limits || {};
      ui.socketId.textContent = message.socket_id;
      enterRoom();
      feed.connected();
      break;
    case "chat":
      if (message.room === state.room) addMessage(message);
      break;
    case "typing":
      onTyping(message);
      break;
    case "presence":
      if (message.online) state.online.set(message.user.id, message.user);
      else state.online.delete(message.user.id);
      renderOnline();
      break;
    case "member_joined":
    case "member_left":
      if (message.room === state.room && message.user.id !== state.user?.id) {
        const verb = message.type === "member_joined" ? "joined" : "left";
        systemLine(`${message.user.username} ${verb} ${message.room}`);
      }
      break;
    case "announcement":
      showAnnouncement(message);
      break;
    case "notification":
      addNotification(message);
      feed.noticed(message);
      break;
    case "post_updated":
      feed.updated(message);
      break;
    case "signal":
      rtc.signal(message);
      break;
    case "error":
      notice(`server error ${message.code}: ${message.message}`);
      break;
    default:
      break; // pong, dm...: visible in the wire panel
  }
}

/** After "welcome": resume where we were (no gap), or join afresh; then follow presence. */
async function enterRoom() {
  const room = state.room;
  try {
    if (state.canResume) {
      const reply = await request({ type: "resume", room, after: state.lastSeq });
      if (reply.type === "resync") {
        // Too far behind (or the server lost history): start the room over, over HTTP.
        systemLine(`resync (${reply.reason}): reloading history`);
        await joinRoom(room);
      } else {
        setJoined(true);
        settleUnconfirmed();
        if (reply.count) systemLine(`resumed: ${reply.count} missed message(s) replayed`);
      }
    } else {
      await joinRoom(room);
    }
    state.attempt = 0;
    sendQueued();
    const presence = await request({ type: "subscribe", topic: "presence" });
    state.online = new Map(presence.online.map((user) => [user.id, user]));
    ui.online.classList.remove("stale");
    renderOnline();
  } catch (error) {
    if (!error.closed) notice(`could not enter ${room}: ${error.message}`);
  }
}

/** A fresh join: clear the log, join over the socket, then fill in history over HTTP. */
async function joinRoom(room) {
  clearLog();
  const ack = await request({ type: "join", room });
  if (room !== state.room) return;
  state.canResume = true;
  setJoined(true);
  settleUnconfirmed();
  // Live messages after ack.last_seq arrive on the socket; the ones before come over
  // HTTP. Both paths meet in addMessage, which drops duplicates by seq.
  await loadHistory(room, Math.max(0, ack.last_seq - HISTORY)).catch((error) =>
    notice(`could not load history: ${error.message}`),
  );
}

async function switchRoom(room) {
  if (room === state.room && state.joined) return;
  stopTyping();
  const old = state.room;
  dropQueued(old);
  state.room = room;
  STORE.setItem(KEYS.room, room);
  state.canResume = false;
  setJoined(false);
  clearLog();
  clearTyping();
  if (state.socketId === null) return; // joins on the next "welcome"
  request({ type: "leave", room: old }).catch(() => {}); // not_in_room is fine too
  try {
    await joinRoom(room);
  } catch (error) {
    if (!error.closed) notice(`could not join ${room}: ${error.message}`);
  }
}

function setJoined(joined) {
  state.joined = joined;
  ui.room.dataset.joined = String(joined);
  ui.room.textContent = joined ? `#${state.room}` : `#${state.room} (not joined)`;
  // Offline, Send stays usable: the message is queued (see queueChat).
  ui.send.textContent = joined ? "Send" : "Queue";
  ui.send.title = joined ? "" : "not connected: the message is kept and sent after the reconnect";
}

// --- the chat log ----------------------------------------------------------------------------

function clearLog() {
  ui.log.replaceChildren();
  state.bySeq.clear();
  state.lastSeq = 0;
  for (const entry of state.outbox.values()) entry.li = null;
  state.outbox.clear();
}

/** Order of a log line: its seq; notices sit after the seq seen when they were written. */
function orderOf(li) {
  if (li.dataset.seq) return Number(li.dataset.seq);
  if (li.dataset.after) return Number(li.dataset.after) + 0.5;
  return Infinity; // not stored yet: stays at the bottom
}

function place(li, order) {
  let before = null;
  for (const child of ui.log.children) {
    if (child !== li && orderOf(child) > order) {
      before = child;
      break;
    }
  }
  const stick = ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 40;
  ui.log.insertBefore(li, before);
  while (ui.log.children.length > MAX_LOG) {
    const first = ui.log.firstElementChild;
    if (first.dataset.seq) state.bySeq.delete(Number(first.dataset.seq));
    first.remove();
  }
  if (stick) ui.log.scrollTop = ui.log.scrollHeight;
}

function chatLine({ seq = null, from, text, ts = null, mine = false }) {
  return el(
    "li",
    { class: `msg${mine ? " mine" : ""}`, "data-seq": seq, "data-mine": mine ? "true" : null },
    el("span", { class: "seq", title: "seq: the room's sequence number, given by the server" }, seq ? `#${seq}` : "…"),
    el("time", {}, clock(ts)),
    el("span", { class: "from" }, from),
    el("span", { class: "text" }, text), // textContent: shown literally
    mine ? el("span", { class: "mark" }) : null,
  );
}

function setSeq(li, seq) {
  li.dataset.seq = String(seq);
  li.querySelector(".seq").textContent = `#${seq}`;
  state.bySeq.set(seq, li);
}

const MARKS = {
  queued: ["queued", "typed while offline: sent when the connection is back"],
  pending: ["sending…", "sent; waiting for the ack"],
  acked: ["✓", "acknowledged: the server stored it"],
  unconfirmed: ["?", "the connection dropped before the ack; checking after the reconnect"],
  failed: ["✗", "not stored"],
};

function mark(li, phase, detail = "") {
  li.dataset.state = phase;
  const [symbol, title] = MARKS[phase];
  const node = li.querySelector(".mark");
  node.textContent = detail ? `${symbol} ${detail}` : symbol;
  node.title = title;
}

/** A stored chat message (live, replayed by resume, or from HTTP history). */
function addMessage(message) {
  const seq = message.seq;
  state.lastSeq = Math.max(state.lastSeq, seq);
  if (state.bySeq.has(seq)) return; // already shown: history and live overlap
  const mine = message.from?.id === state.user?.id;
  // Our own message coming back from the room: it is the line we are waiting on.
  const own = mine ? [...state.outbox.values()].find((e) => e.li && !e.li.dataset.seq && e.text === message.text) : null;
  if (own) {
    setSeq(own.li, seq);
    if (own.li.dataset.state === "unconfirmed") mark(own.li, "acked"); // it has a seq: it was stored
    place(own.li, seq);
    return;
  }
  const li = chatLine({ seq, from: message.from?.username ?? "?", text: message.text, ts: message.ts, mine });
  if (mine) mark(li, "acked");
  state.bySeq.set(seq, li);
  place(li, seq);
}

function systemLine(text) {
  place(el("li", { class: "system", "data-after": state.lastSeq }, text), state.lastSeq + 0.5);
}

/** Send one chat line; ``li`` is its line already in the log when it was queued offline. */
async function sendChat(text, li = chatLine({ from: state.user.username, text, mine: true })) {
  const ref = nextRef();
  li.dataset.ref = ref;
  mark(li, "pending");
  const entry = { li, text };
  state.outbox.set(ref, entry);
  place(li, Infinity);
  try {
    const ack = await request({ type: "chat", room: state.room, text, ref });
    if (!entry.li) return; // the log was cleared meanwhile
    state.outbox.delete(ref);
    const echo = state.bySeq.get(ack.seq);
    if (echo && echo !== li) {
      li.remove(); // the room's copy arrived first and was not matched: keep that one
      mark(echo, "acked");
    } else {
      if (!li.dataset.seq) setSeq(li, ack.seq);
      place(li, ack.seq);
      mark(li, "acked");
    }
  } catch (error) {
    if (!entry.li) return;
    if (error.closed && !li.dataset.seq) mark(li, "unconfirmed"); // settled after the reconnect
    else if (error.closed) {
      state.outbox.delete(ref); // its copy came back with a seq: stored, only the ack was lost
      mark(li, "acked");
    } else {
      state.outbox.delete(ref);
      mark(li, "failed", error.code || error.message);
    }
  }
}

/** Typed while the socket is down: shown at once, marked "queued", sent by sendQueued after the
 * reconnect. A full queue refuses the message visibly and leaves its text in the composer. */
function queueChat(text) {
  const li = chatLine({ from: state.user.username, text, mine: true });
  if (!state.offline.add({ li, text, room: state.room })) {
    notice(`offline: ${OFFLINE_LIMIT} messages are queued already; this one was not sent (it is still in the box)`);
    return false;
  }
  mark(li, "queued");
  place(li, Infinity);
  notice(`offline: ${state.offline.size} message(s) queued, sent when the connection is back`);
  return true;
}

/** Once the room is joined again: send what was typed offline, in order. */
function sendQueued() {
  const queued = state.offline.drain();
  for (const { li, text, room } of queued) {
    if (room === state.room) sendChat(text, li);
    else if (li.isConnected) mark(li, "failed", `not sent: typed for #${room}`);
  }
  if (queued.length) notice(`back online: ${queued.length} queued message(s) sent`);
}

/** Leaving a room with messages queued for it: they are not sent, and the page says so. */
function dropQueued(room) {
  const count = state.offline.drain().length;
  if (count) notice(`${count} message(s) typed offline for #${room} were not sent: you left the room`);
}

/** After resume/join: what we sent before the drop either came back with a seq, or was lost. */
function settleUnconfirmed() {
  for (const [ref, entry] of state.outbox) {
    if (entry.li?.dataset.state === "unconfirmed") {
      state.outbox.delete(ref);
      mark(entry.li, "failed", "not delivered: send it again");
    }
  }
}

// --- typing ----------------------------------------------------------------------------------

function onInput() {
  clearTimeout(state.typingIdle);
  if (!state.joined) return;
  if (!ui.input.value.trim()) {
    stopTyping();
    return;
  }
  const now = Date.now();
  if (now - state.typingSentAt >= TYPING_EVERY_MS) {
    state.typingSentAt = now;
    state.typingActive = send({ type: "typing", room: state.room, active: true });
  }
  state.typingIdle = setTimeout(stopTyping, TYPING_IDLE_MS);
}

function stopTyping() {
  clearTimeout(state.typingIdle);
  if (state.typingActive) send({ type: "typing", room: state.room, active: false });
  state.typingActive = false;
}

function onTyping(message) {
  if (message.room !== state.room || message.user.id === state.user?.id) return;
  const id = message.user.id;
  clearTimeout(state.typing.get(id)?.timer);
  if (message.active) {
    // The server sends active=false when it expires; this timer only covers a lost message.
    const ttl = ((state.limits.typing_ttl ?? 5) + 2) * 1000;
    const timer = setTimeout(() => {
      state.typing.delete(id);
      renderTyping();
    }, ttl);
    state.typing.set(id, { username: message.user.username, timer });
  } else {
    state.typing.delete(id);
  }
  renderTyping();
}

function clearTyping() {
  for (const { timer } of state.typing.values()) clearTimeout(timer);
  state.typing.clear();
  renderTyping();
}

function renderTyping() {
  const names = [...state.typing.values()].map((t) => t.username).sort();
  let text = "";
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length > 2) text = `${names.length} people are typing…`;
  ui.typing.textContent = text;
  ui.typing.dataset.active = String(names.length > 0);
}

// --- presence, notifications, raw frames -------------------------------------------------------

function renderOnline() {
  const users = [...state.online.values()].sort((a, b) => a.username.localeCompare(b.username));
  ui.online.replaceChildren(
    ...users.map((user) =>
      el(
        "li",
        { "data-user-id": user.id, class: user.id === state.user?.id ? "self" : null },
        el("span", { class: "dot" }),
        user.username,
        user.id === state.user?.id ? el("small", {}, " (you)") : null,
      ),
    ),
  );
  ui.onlineCount.textContent = String(users.length);
  rtc.peers(users);
}

function addNotification(note) {
  if (state.notes.has(note.id)) return;
  state.notes.add(note.id);
  ui.notifications.prepend(
    el(
      "li",
      { "data-id": note.id, "data-kind": note.kind },
      el("span", { class: "kind" }, note.kind),
      el("span", { class: "text" }, note.text),
      el("time", {}, clock(note.ts)),
    ),
  );
  while (ui.notifications.children.length > 50) ui.notifications.lastElementChild.remove();
}

// --- session: log in, log out -----------------------------------------------------------------

function start() {
  state.running = true;
  state.attempt = 0;
  state.canResume = false;
  ui.loginView.hidden = true;
  ui.appView.hidden = false;
  ui.me.hidden = ui.drop.hidden = ui.logout.hidden = false;
  ui.me.textContent = `@${state.user.username}`;
  ui.roomInput.value = state.room;
  setJoined(false);
  connect();
  loadNotifications();
  feed.load();
  ui.input.focus();
}

function endSession(message = "") {
  state.running = false;
  clearTimeout(state.reconnectTimer);
  stopTyping();
  state.ws?.close(1000, "logged out");
  for (const key of [KEYS.token, KEYS.user]) STORE.removeItem(key);
  state.token = state.user = null;
  state.online.clear();
  state.notes.clear();
  state.offline.drain(); // this user's unsent lines do not outlive the session
  rtc.hangup();
  feed.clear();
  clearWire();
  clearLog();
  clearTyping();
  ui.notifications.replaceChildren();
  ui.online.replaceChildren();
  ui.appView.hidden = true;
  ui.loginView.hidden = false;
  ui.me.hidden = ui.drop.hidden = ui.logout.hidden = true;
  ui.loginError.textContent = message;
}

ui.loginForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const action = event.submitter?.value === "signup" ? "signup" : "login";
  const form = new FormData(ui.loginForm);
  const buttons = ui.loginForm.querySelectorAll("button");
  buttons.forEach((b) => (b.disabled = true));
  ui.loginError.textContent = "";
  try {
    state.token = null;
    const credentials = { username: String(form.get("username")), password: String(form.get("password")) };
    // Class mode asks for the instructor's join code at sign-up; elsewhere the field stays empty
    // and is not sent at all.
    const code = String(form.get("code") ?? "").trim();
    if (action === "signup" && code) credentials.code = code;
    const { token, user } = await api("POST", `api/${action}`, credentials);
    state.token = token;
    state.user = user;
    STORE.setItem(KEYS.token, token);
    STORE.setItem(KEYS.user, JSON.stringify(user));
    ui.loginForm.reset();
    start();
  } catch (error) {
    ui.loginError.textContent = error.message;
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
});

ui.logout.addEventListener("click", async () => {
  state.running = false; // no reconnect when the server closes the socket (1008 logged out)
  try {
    await api("POST", "api/logout"); // revokes this user's tokens: a stolen copy is useless too
  } catch {
    // logging out locally is what matters here
  }
  endSession();
});

ui.drop.addEventListener("click", () => state.ws?.close(4000, "dropped by the Drop button"));

ui.roomForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const room = ui.roomInput.value.trim();
  if (!ui.roomInput.checkValidity() || !room) {
    notice("room names are 1-64 letters, digits, '_', '.' or '-'");
    return;
  }
  notice("");
  switchRoom(room);
});

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.input.value;
  if (!text.trim() || !state.running) return;
  if (!state.joined) {
    if (queueChat(text)) ui.input.value = "";
    return;
  }
  ui.input.value = "";
  clearTimeout(state.typingIdle);
  // The server clears our indicator when the message lands, so the next key starts
  // a new indicator at once rather than up to a second later.
  state.typingActive = false;
  state.typingSentAt = 0;
  sendChat(text);
});

ui.input.addEventListener("input", onInput);

// Back online after a network change: retry now rather than at the end of the backoff.
window.addEventListener("online", () => {
  if (state.running && !state.ws) {
    state.attempt = 0;
    connect();
  }
});

// The two features in modules of their own; they reach the lab through these few functions.
const feed = createFeed({ api, request, isOpen: () => state.socketId !== null, notice });
const rtc = createRtc({ request, notice, me: () => state.user });

if (state.token && state.user) start();
