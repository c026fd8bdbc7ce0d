// The projector view (/live): the whole lab, read-only, fed by the /observe stream
// (PROTOCOL.md section 9). Large type for the back of a room; nothing here can change the lab.
//
// The admin token: /observe needs it in class mode. The instructor opens the link that
// `python3 course.py class` prints, /live#token=…; a #fragment never reaches the server (no
// request line, no access log, no Referer), and the page takes it out of the address bar at
// once (history.replaceState) and keeps it in sessionStorage (this tab only) so a reload works.
// A browser WebSocket cannot send headers, so the page passes it as /observe's ?admin_token=,
// which the server's access log never writes (it logs paths without their query).

import { BASE, el } from "./dom.js";

const TOKEN_KEY = "labserver.live.admin_token";
const JOIN_KEY = "labserver.live.join_url";
const FLOW_LINES = 14; // message-flow lines kept on screen
const RENDER_EVERY_MS = 200; // redraw at most 5 times a second, however fast events come

const $ = (testid) => document.querySelector(`[data-testid="${testid}"]`);

/** Read (and remove) #token=…&join=… from the address; fall back to this tab's saved copy. */
function credentialsFromFragment() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  if (params.has("token")) sessionStorage.setItem(TOKEN_KEY, params.get("token"));
  if (params.has("join")) sessionStorage.setItem(JOIN_KEY, params.get("join"));
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  return { token: sessionStorage.getItem(TOKEN_KEY) || "", join: sessionStorage.getItem(JOIN_KEY) || "" };
}

const { token, join } = credentialsFromFragment();

// --- the state, rebuilt from each snapshot and kept up to date by events ------------------

const state = {
  sockets: new Map(), // socket id -> {user, rooms: Set}
  users: new Map(), // user id -> username (everyone seen since the page opened)
  online: new Set(), // user ids
  rooms: new Map(), // room -> Set of user ids
  stats: {},
  flow: [], // recent routed events, newest first
};

function remember(user) {
  if (user && typeof user.id === "number") state.users.set(user.id, String(user.username));
}

function applySnapshot(s) {
  state.sockets.clear();
  state.rooms.clear();
  for (const sock of s.sockets) {
    remember(sock.user);
    state.sockets.set(sock.socket_id, { user: sock.user, rooms: new Set(sock.rooms) });
  }
  state.online = new Set(s.online);
  for (const [room, ids] of Object.entries(s.rooms)) state.rooms.set(room, new Set(ids));
  state.stats = { ...state.stats, ...s.stats };
}

function applyEvent(e) {
  remember(e.user);
  switch (e.ev) {
    case "socket_opened":
      state.sockets.set(e.socket_id, { user: e.user, rooms: new Set() });
      break;
    case "socket_closed":
      state.sockets.delete(e.socket_id);
      break;
    case "socket_joined":
      state.sockets.get(e.socket_id)?.rooms.add(e.room);
      break;
    case "socket_left":
      state.sockets.get(e.socket_id)?.rooms.delete(e.room);
      break;
    case "joined":
      if (!state.rooms.has(e.room)) state.rooms.set(e.room, new Set());
      state.rooms.get(e.room).add(e.user.id);
      break;
    case "left": {
      const members = state.rooms.get(e.room);
      members?.delete(e.user.id);
      if (members && members.size === 0) state.rooms.delete(e.room);
      break;
    }
    case "presence":
      if (e.online) state.online.add(e.user.id);
      else state.online.delete(e.user.id);
      if (e.online) refreshClassInfoSoon(); // a new student: the account count may have changed
      break;
    case "stats":
      state.stats = { ...state.stats, ...e };
      break;
    case "routed":
      remember(e.from);
      if (e.type !== "typing" && e.type !== "presence") {
        state.flow.unshift(e);
        state.flow.length = Math.min(state.flow.length, FLOW_LINES);
      }
      break;
    default:
      break; // switches, slow_consumer: not shown here
  }
}

// --- rendering (throttled) -----------------------------------------------------------------

let dirty = false;
const shownFlow = new WeakSet(); // flow events already on screen: only new ones animate

function schedule() {
  if (dirty) return;
  dirty = true;
  setTimeout(() => {
    dirty = false;
    render();
  }, RENDER_EVERY_MS);
}

function render() {
  const socketsByUser = new Map();
  for (const [id, sock] of state.sockets) {
    if (!socketsByUser.has(sock.user.id)) socketsByUser.set(sock.user.id, []);
    socketsByUser.get(sock.user.id).push([id, sock]);
  }
  $("connections").value = String(state.sockets.size);
  $("users-online").value = String(state.online.size);
  $("room-count").value = String(state.rooms.size);
  $("rate").value = String(Math.round(state.stats.messages_in_per_s ?? 0));
  $("lag").value = `${Math.round(state.stats.loop_lag_ms ?? 0)} ms`;

  // People: online first, then by name; a person's sockets as chips with their rooms.
  const ids = [...state.users.keys()].filter((id) => state.online.has(id) || socketsByUser.has(id));
  ids.sort((a, b) => state.users.get(a).localeCompare(state.users.get(b)));
  $("people").replaceChildren(
    ...ids.map((id) => {
      const sockets = socketsByUser.get(id) || [];
      const online = state.online.has(id);
      return el(
        "li",
        { class: "person", "data-user": state.users.get(id), "data-online": String(online) },
        el("span", { class: "dot", "aria-hidden": "true" }),
        el("span", { class: "name" }, state.users.get(id)),
        el("span", { class: "visually-hidden" }, online ? ", online" : ", offline"),
        el(
          "span",
          { class: "sockets", "data-testid": "socket-count", "aria-label": `${sockets.length} sockets` },
          ...sockets.map(([sid, sock]) =>
            el("span", { class: "chip", title: `${sid} in ${[...sock.rooms].join(", ") || "no room"}` }, sid.slice(-4)),
          ),
        ),
      );
    }),
  );

  const rooms = [...state.rooms.keys()].sort();
  $("rooms").replaceChildren(
    ...rooms.map((room) => {
      const names = [...state.rooms.get(room)].map((id) => state.users.get(id) ?? `#${id}`).sort();
      return el(
        "li",
        { class: "room", "data-room": room },
        el("span", { class: "room-name" }, room),
        el("span", { class: "count" }, String(names.length)),
        el("span", { class: "members" }, names.join(" · ")),
      );
    }),
  );

  $("flow").replaceChildren(
    ...state.flow.map((e) => {
      const fresh = !shownFlow.has(e);
      shownFlow.add(e);
      const from = e.from ? e.from.username : "server";
      const to = e.to ? (e.to.kind === "room" ? `#${e.to.name}` : e.to.kind === "users" ? "people" : e.to.name) : "?";
      return el(
        "li",
        { class: fresh ? "hop fresh" : "hop", "data-type": e.type },
        el("span", { class: "from" }, from),
        el("span", { class: "arrow", "aria-hidden": "true" }, el("span", { class: "packet" })),
        el("span", { class: "to" }, to),
        el("span", { class: "what" }, e.preview ?? e.type),
        el("span", { class: "fan dim" }, `×${e.recipients}`),
      );
    }),
  );
}

// --- class info (join code) and the /observe stream -----------------------------------------

function setStatus(text, stateName) {
  const status = $("live-status");
  status.textContent = text;
  status.dataset.state = stateName;
}

async function loadClassInfo() {
  if (!token) return;
  try {
    const response = await fetch(new URL("api/admin/class", BASE), { headers: { "X-Admin-Token": token } });
    if (!response.ok) return;
    const info = await response.json();
    if (!info.join_code) return;
    $("join-url").textContent = join || BASE.href;
    $("join-code").textContent = info.join_code;
    $("join-count").textContent = `${info.accounts} of ${info.max_accounts} accounts`;
    $("join").hidden = false;
    const paused = info.paused_rooms.length ? `Paused: ${info.paused_rooms.map((r) => "#" + r).join(", ")}` : "";
    $("notice").textContent = paused;
    $("notice").hidden = !paused;
  } catch {
    // the lab is restarting: the next round tries again
  }
}

let classInfoDue = null;

/** Reload the class info at most once a second, however many students arrive at once. */
function refreshClassInfoSoon() {
  if (classInfoDue === null) {
    classInfoDue = setTimeout(() => {
      classInfoDue = null;
      loadClassInfo();
    }, 1000);
  }
}

let backoff = 500;

function connect() {
  const url = new URL("observe", BASE);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  if (token) url.searchParams.set("admin_token", token);
  const ws = new WebSocket(url);
  let opened = false;
  ws.addEventListener("open", () => {
    opened = true;
    backoff = 500;
    setStatus("live", "open");
  });
  ws.addEventListener("message", (msg) => {
    const data = JSON.parse(msg.data);
    if (data.type === "snapshot") applySnapshot(data);
    else if (data.type === "events") data.events.forEach(applyEvent);
    schedule();
  });
  ws.addEventListener("close", () => {
    if (!opened && !token) {
      setStatus("this lab needs the admin token: open the /live#token=… link the instructor's command printed", "denied");
    } else if (!opened) {
      setStatus("refused or unreachable: check the admin token in the link; retrying…", "denied");
    } else {
      setStatus("reconnecting…", "closed");
    }
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 8000);
  });
}

loadClassInfo();
setInterval(loadClassInfo, 5000); // the account count and paused rooms change without an observe event
connect();
