"""What the dashboard knows about the lab server, rebuilt from ``/observe`` (pure model).

:class:`ObservedState` is fed the messages of the ``/observe`` WebSocket, in order:
one ``{"type": "snapshot", ...}`` when the dashboard connects (and again after every
reconnect), then ``{"type": "events", "events": [...], "dropped": N}`` batches, at most
ten a second. It does no I/O and knows nothing about widgets, so it is tested with
crafted messages and rendered by whatever wants to (``labserver.course.dashboard``).

Applying a batch costs O(number of events): every event touches a few dict/set
entries, and everything that grows with time (the message flow, the
connection-count history, recently offline users) is a bounded deque.

``version`` goes up on every change; a renderer compares it with the version it
last drew to know whether it has anything to do.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

FLOW_LENGTH = 50  # routed messages kept (the dashboard shows the newest ~15)
HISTORY_LENGTH = 120  # connection-count samples, one per stats event (~2 minutes)
RECENT_CLOSES = 20
RECENTLY_OFFLINE = 50

# Kinds the server emits that carry nothing the model keeps (the per-user ``joined``
# and ``left`` repeat what ``socket_joined`` / ``socket_left`` already say per socket).
INFORMATIONAL = frozenset({"joined", "left"})


def _user_id(user: Any) -> int | None:
    """The id of a ``{"id", "username"}`` dict (or a bare id), None if there is none."""
    if isinstance(user, dict):
        user = user.get("id")
    if isinstance(user, bool) or not isinstance(user, int | str):
        return None
    try:
        return int(user)
    except ValueError:
        return None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class ObservedState:
    """The lab server as seen through ``/observe``: sockets, users, rooms, flow, stats.

    * ``sockets``: socket id -> ``{"user": user id, "rooms": set of rooms}``
    * ``user_sockets``: user id -> set of socket ids (the userId -> sockets map; two
      tabs of one user are two sockets under one user id)
    * ``usernames``: user id -> username, for every user seen
    * ``online``: user ids online (at least one open socket)
    * ``rooms``: room -> set of member socket ids (a room with no socket is gone)
    * ``flow``: the last ``FLOW_LENGTH`` routed messages, oldest first
    * ``history``: connection counts, one per ``stats`` event, oldest first
    * ``stats``: the latest numbers (the snapshot's, then each ``stats`` event's)
    * ``switches``: the lab's live switches (``PATCH /api/admin/switches``), as last announced
    * ``cpu_percent``: the server's CPU use between the last two ``stats`` events, from
      their ``cpu_s`` and ``t`` (100 = one core busy the whole time, as ``top`` counts);
      None until two have come since the last snapshot
    * ``totals``: counters since creation (``dropped`` = events the server left out)
    """

    def __init__(self, *, flow_length: int = FLOW_LENGTH, history_length: int = HISTORY_LENGTH) -> None:
        self.sockets: dict[str, dict[str, Any]] = {}
        self.user_sockets: dict[int, set[str]] = {}
        self.usernames: dict[int, str] = {}
        self.online: set[int] = set()
        self.rooms: dict[str, set[str]] = {}
        self.flow: deque[dict[str, Any]] = deque(maxlen=flow_length)
        self.history: deque[int] = deque(maxlen=history_length)
        self.stats: dict[str, Any] = {}
        self.switches: dict[str, Any] = {}
        self.cpu_percent: float | None = None
        self._cpu_sample: tuple[float, float] | None = None  # (cpu_s, t) of the last stats event
        self.recent_closes: deque[dict[str, Any]] = deque(maxlen=RECENT_CLOSES)
        self.recently_offline: OrderedDict[int, float | None] = OrderedDict()  # user id -> when, newest last
        self.totals: dict[str, int] = {
            "snapshots": 0,
            "batches": 0,
            "events": 0,
            "routed": 0,
            "dropped": 0,  # events the server did not send (its batch was full)
            "ignored": 0,  # unknown kinds, and malformed events
            "slow_consumers": 0,
        }
        self.version = 0  # +1 on every change
        self.sockets_version = 0  # +1 when the set of open sockets changes
        self.last_event_time: float | None = None  # server time ``t`` of the newest event
        self._mismatches = 0  # consecutive stats events that disagree with the maps
        self._handlers: dict[str, Callable[[dict[str, Any]], bool]] = {
            "socket_opened": self._socket_opened,
            "socket_closed": self._socket_closed,
            "socket_joined": self._socket_joined,
            "socket_left": self._socket_left,
            "presence": self._presence,
            "routed": self._routed,
            "slow_consumer": self._slow_consumer,
            "stats": self._stats,
            "switches": self._switches,
        }

    # --- feeding --------------------------------------------------------------------

    def apply(self, message: dict[str, Any]) -> bool:
        """Apply one ``/observe`` message; True if anything changed. Never raises on bad input."""
        if not isinstance(message, dict):
            return False
        kind = message.get("type")
        if kind == "snapshot":
            self._snapshot(message)
            return True
        if kind != "events":
            return False
        before = self.version
        self.totals["batches"] += 1
        dropped = message.get("dropped") or 0
        if isinstance(dropped, int) and dropped > 0:
            self.totals["dropped"] += dropped
            self.version += 1
        events = message.get("events")
        for event in events if isinstance(events, list) else ():
            self.apply_event(event)
        return self.version != before

    def apply_event(self, event: Any) -> bool:
        """Apply one event (``{"ev": kind, ...}``); True if it changed the state."""
        if not isinstance(event, dict):
            self.totals["ignored"] += 1
            return False
        self.totals["events"] += 1
        t = event.get("t")
        if isinstance(t, int | float):
            self.last_event_time = t
        handler = self._handlers.get(event.get("ev"))  # type: ignore[arg-type]
        if handler is None:
            if event.get("ev") not in INFORMATIONAL:
                self.totals["ignored"] += 1
            return False
        try:
            changed = handler(event)
        except (KeyError, TypeError, ValueError, AttributeError):
            self.totals["ignored"] += 1
            return False
        if changed:
            self.version += 1
        return changed

    def _snapshot(self, message: dict[str, Any]) -> None:
        self.sockets.clear()
        self.user_sockets.clear()
        self.online.clear()
        self.rooms.clear()
        for entry in message.get("sockets") or ():
            try:
                sid = str(entry["socket_id"])
                self._add_socket(sid, entry["user"])
            except (KeyError, TypeError, ValueError):
                self.totals["ignored"] += 1
                continue
            for room in entry.get("rooms") or ():
                self._join(sid, str(room))
        for uid in message.get("online") or ():
            uid = _user_id(uid)
            if uid is not None:
                self.online.add(uid)
                self.recently_offline.pop(uid, None)
        stats = message.get("stats")
        if isinstance(stats, dict):
            self.stats.update(stats)
        switches = message.get("switches")
        if isinstance(switches, dict):
            self.switches = dict(switches)
        self._cpu_sample = None  # a snapshot may come from a restarted server, whose CPU time starts again
        self._mismatches = 0
        self.totals["snapshots"] += 1
        self.version += 1
        self.sockets_version += 1

    # --- the maps -------------------------------------------------------------------

    def _add_socket(self, sid: str, user: Any) -> int:
        uid = _user_id(user)
        if uid is None:
            raise ValueError("event without a user id")
        if isinstance(user, dict) and isinstance(user.get("username"), str):
            self.usernames[uid] = user["username"]
        old = self.sockets.get(sid)
        if old is not None and old["user"] != uid:  # cannot happen with random ids; stay consistent anyway
            self._remove_socket(sid)
            old = None
        if old is None:
            self.sockets[sid] = {"user": uid, "rooms": set()}
            self.sockets_version += 1
        self.user_sockets.setdefault(uid, set()).add(sid)
        self.online.add(uid)  # a user with an open socket is online
        self.recently_offline.pop(uid, None)
        return uid

    def _remove_socket(self, sid: str, when: float | None = None) -> bool:
        entry = self.sockets.pop(sid, None)
        if entry is None:
            return False
        self.sockets_version += 1
        for room in entry["rooms"]:
            members = self.rooms.get(room)
            if members is not None:
                members.discard(sid)
                if not members:
                    del self.rooms[room]
        uid = entry["user"]
        mine = self.user_sockets.get(uid)
        if mine is not None:
            mine.discard(sid)
            if not mine:
                del self.user_sockets[uid]
                self._went_offline(uid, when)
        return True

    def _went_offline(self, uid: int, when: float | None) -> None:
        self.online.discard(uid)
        self.recently_offline.pop(uid, None)
        self.recently_offline[uid] = when
        while len(self.recently_offline) > RECENTLY_OFFLINE:
            self.recently_offline.popitem(last=False)

    def _join(self, sid: str, room: str) -> bool:
        entry = self.sockets.get(sid)
        if entry is None or room in entry["rooms"]:
            return False
        entry["rooms"].add(room)
        self.rooms.setdefault(room, set()).add(sid)
        return True

    def _leave(self, sid: str, room: str) -> bool:
        entry = self.sockets.get(sid)
        if entry is None or room not in entry["rooms"]:
            return False
        entry["rooms"].discard(room)
        members = self.rooms.get(room)
        if members is not None:
            members.discard(sid)
            if not members:
                del self.rooms[room]
        return True

    # --- event handlers: each returns whether the state changed --------------------------

    def _socket_opened(self, ev: dict[str, Any]) -> bool:
        self._add_socket(str(ev["socket_id"]), ev["user"])
        return True

    def _socket_closed(self, ev: dict[str, Any]) -> bool:
        sid = str(ev["socket_id"])
        uid = _user_id(ev.get("user"))
        self.recent_closes.append(
            {"socket_id": sid, "user": uid, "code": ev.get("code"), "reason": ev.get("reason"), "t": ev.get("t")}
        )
        self._remove_socket(sid, ev.get("t"))
        return True

    def _socket_joined(self, ev: dict[str, Any]) -> bool:
        sid = str(ev["socket_id"])
        if sid not in self.sockets and ev.get("user") is not None:
            self._add_socket(sid, ev["user"])  # its socket_opened was lost: the join proves it is open
        return self._join(sid, str(ev["room"]))

    def _socket_left(self, ev: dict[str, Any]) -> bool:
        return self._leave(str(ev["socket_id"]), str(ev["room"]))

    def _presence(self, ev: dict[str, Any]) -> bool:
        user = ev["user"]
        uid = _user_id(user)
        if uid is None:
            raise ValueError("presence without a user id")
        if isinstance(user, dict) and isinstance(user.get("username"), str):
            self.usernames[uid] = user["username"]
        if ev.get("online"):
            if uid in self.online:
                return False
            self.online.add(uid)
            self.recently_offline.pop(uid, None)
            return True
        if uid not in self.online:
            return False
        self._went_offline(uid, ev.get("t"))
        return True

    def _routed(self, ev: dict[str, Any]) -> bool:
        sender = ev.get("from")
        if isinstance(sender, dict):
            uid = _user_id(sender)
            if uid is not None and isinstance(sender.get("username"), str):
                self.usernames.setdefault(uid, sender["username"])
            sender = sender.get("username") or (f"user {uid}" if uid is not None else None)
        to: dict[str, Any] = ev["to"] if isinstance(ev.get("to"), dict) else {}
        self.flow.append(
            {
                "t": ev.get("t"),
                "type": ev.get("type"),
                "from": sender if isinstance(sender, str) else None,
                "to_kind": to.get("kind"),
                "to_name": to.get("name"),
                "size": ev.get("size") or 0,
                "recipients": ev.get("recipients") or 0,
                "seq": ev.get("seq"),
                "preview": ev.get("preview"),
            }
        )
        self.totals["routed"] += 1
        return True

    def _slow_consumer(self, ev: dict[str, Any]) -> bool:
        self.totals["slow_consumers"] += 1
        return True

    def _switches(self, ev: dict[str, Any]) -> bool:
        switches = ev["switches"]
        if not isinstance(switches, dict):
            raise TypeError("switches must be an object")
        changed = switches != self.switches
        self.switches = dict(switches)
        return changed

    def _stats(self, ev: dict[str, Any]) -> bool:
        self.stats.update({k: v for k, v in ev.items() if k not in ("ev", "t")})
        self._sample_cpu(ev.get("cpu_s"), ev.get("t"))
        connections = ev.get("connections")
        if isinstance(connections, int):
            self.history.append(connections)
            # The stream is ordered, so the maps must agree with the server's own count
            # unless events were lost (batch full, or a batch skipped for a slow observer).
            if connections != len(self.sockets):
                self._mismatches += 1
            else:
                self._mismatches = 0
        return True

    def _sample_cpu(self, cpu_s: Any, t: Any) -> None:
        """CPU use as a rate: the CPU seconds the server spent between two stats, per second of time."""
        if not (isinstance(cpu_s, int | float) and isinstance(t, int | float)):
            return
        previous, self._cpu_sample = self._cpu_sample, (float(cpu_s), float(t))
        if previous is not None and t > previous[1] and cpu_s >= previous[0]:
            self.cpu_percent = round(100 * (cpu_s - previous[0]) / (t - previous[1]), 1)

    # --- reading --------------------------------------------------------------------

    @property
    def needs_resync(self) -> bool:
        """True when two stats events in a row disagree with the maps: a fresh snapshot is due."""
        return self._mismatches >= 2

    def username(self, uid: int) -> str:
        return self.usernames.get(uid, f"user {uid}")

    def user_rows(self) -> list[dict[str, Any]]:
        """Online users by name (each with its sorted socket ids), then recently offline ones."""
        rows = [
            {
                "id": uid,
                "username": self.username(uid),
                "online": True,
                "sockets": sorted(self.user_sockets.get(uid, ())),
            }
            for uid in self.online
        ]
        rows.sort(key=lambda r: (str(r["username"]).lower(), r["id"]))
        for uid in reversed(self.recently_offline):
            if uid not in self.online:
                rows.append({"id": uid, "username": self.username(uid), "online": False, "sockets": []})
        return rows

    def room_rows(self) -> list[dict[str, Any]]:
        """Rooms by name: member sockets, and member users with their socket counts."""
        rows = []
        for room in sorted(self.rooms):
            per_user: dict[int, int] = {}
            for sid in self.rooms[room]:
                uid = self.sockets[sid]["user"] if sid in self.sockets else -1
                per_user[uid] = per_user.get(uid, 0) + 1
            members = sorted(((self.username(u), n) for u, n in per_user.items()), key=lambda m: m[0].lower())
            rows.append({"room": room, "sockets": len(self.rooms[room]), "members": members})
        return rows

    def describe(self, max_rooms: int = 5) -> str:
        """A short, stable text summary, e.g. ``3 connections, 2 users online, rooms: general(3)``."""
        rooms = [f"{room}({len(self.rooms[room])})" for room in sorted(self.rooms)]
        if len(rooms) > max_rooms:
            rooms = rooms[:max_rooms] + [f"+{len(rooms) - max_rooms} more"]
        return (
            f"{_plural(len(self.sockets), 'connection')}, {_plural(len(self.online), 'user')} online, "
            f"rooms: {', '.join(rooms) if rooms else 'none'}"
        )

    def __repr__(self) -> str:
        return f"<ObservedState {self.describe()}>"
