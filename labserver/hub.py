"""Who is connected, where, and who should receive what (sans-I/O).

The hub is the server's in-memory state and its routing decisions, with no
sockets in it: the aiohttp adapter calls it and writes bytes. It keeps

* ``connections``: socket id -> :class:`Connection` (one per open WebSocket);
* ``user_sockets``: user id -> the set of that user's open sockets. A user with
  two tabs has two sockets; the user is *online* while the set is non-empty;
* ``rooms``: room -> member sockets; ``topics``: topic -> subscribed sockets;
* ``room_users``: room -> user id -> that user's entry (name, sockets in the room), kept
  incrementally so a join or leave costs O(1) whatever the room's size;
* ``typing``: (room, user id) -> when the indicator expires; never stored;
* ``last_seq``: the last chat sequence number delivered per room, which lets
  ``resume`` hand over from history to live delivery without a gap.

Every map is cleaned in :meth:`Hub.disconnect`, whatever ended the connection,
so thousands of connect/disconnect cycles leave every map as it was.

With a *presence grace* (``disconnect(conn, now=..., grace=...)``), a user's last
socket closing does not announce them offline at once: ``going_offline`` and
``leaving`` hold what is due (their ``presence`` offline, their ``member_left``s)
until :meth:`Hub.due` finds the time has come. A socket of that user that opens
meanwhile cancels the offline, and joining one of those rooms again cancels its
member_left, so a page refresh never flaps. Until then the user counts as online
and as a member of those rooms.
Big rooms (more than ``announce_limit`` members) announce no member_joined/member_left:
each would go to every member, making a room's filling quadratic. The hub notes the
room in ``member_counts_changed`` instead, and the sweep sends one ``member_count``
per room per tick. A join ack lists at most ``ack_member_cap`` members (REST pages the rest).

Methods return small event objects (:class:`PresenceChanged`,
:class:`MembershipChanged`, :class:`TypingChanged`) that the adapter turns into
messages and routes; the hub itself never sends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from itertools import chain, islice

from .messages import UserRef
from .outlet import Outlet
from .ratelimit import TokenBucket


@dataclass(eq=False, slots=True)
class Connection:
    """One open WebSocket. Hashes by identity: two tabs are two connections."""

    socket_id: str
    user_id: int
    username: str
    expires_at: float  # when the token that opened it expires
    bucket: TokenBucket
    sink: Outlet  # the only way to write to this socket
    # room -> the room's last_seq when this socket joined: later messages reached it live
    rooms: dict[str, int] = field(default_factory=dict)
    # The topics it subscribed to. Most sockets never subscribe: they share one empty frozenset
    # until their first subscribe (an empty set would cost each idle socket 216 bytes).
    topics: set[str] | frozenset[str] = field(default=frozenset())
    strikes: int = 0  # messages refused by the rate limit
    # DM room -> its last seq before this socket got its first DM live (set lazily):
    # a resume of that DM room replays only what came before.
    dm_live_from: dict[str, int] | None = None

    def live_from(self, room: str) -> int | None:
        """The seq after which messages of ``room`` reached this socket live, if any."""
        if room in self.rooms:
            return self.rooms[room]
        return self.dm_live_from.get(room) if self.dm_live_from else None

    @property
    def user(self) -> UserRef:
        return UserRef(self.user_id, self.username)


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    user_id: int
    username: str
    online: bool


@dataclass(frozen=True, slots=True)
class MembershipChanged:
    """A *user* (not a socket) entered or left a room."""

    room: str
    user_id: int
    username: str
    joined: bool


@dataclass(frozen=True, slots=True)
class TypingChanged:
    room: str
    user_id: int
    username: str
    active: bool


HubEvent = PresenceChanged | MembershipChanged | TypingChanged


@dataclass(frozen=True, slots=True)
class _Pending:
    """An announcement held back by the presence grace: whose, and when it is due."""

    username: str
    due: float


@dataclass(slots=True)
class _RoomUser:
    """One user in one room: their name and how many of their sockets joined it."""

    username: str
    sockets: int


@dataclass(slots=True)
class _TypingState:
    username: str
    expires_at: float
    broadcast_at: float


class TypingDecision(Enum):
    BROADCAST = "broadcast"  # tell the room
    REFRESHED = "refreshed"  # still typing; expiry pushed back, nothing to send
    NOT_IN_ROOM = "not_in_room"


# A join ack lists at most this many members; rooms above this many members are *big*:
# no member_joined/member_left, a coalesced member_count instead (PROTOCOL.md, join).
ACK_MEMBER_CAP = 100
ANNOUNCE_LIMIT = 100


class Hub:
    def __init__(
        self,
        *,
        typing_ttl: float = 5.0,
        typing_min_interval: float = 1.0,
        ack_member_cap: int = ACK_MEMBER_CAP,
        announce_limit: int = ANNOUNCE_LIMIT,
    ) -> None:
        self.typing_ttl = typing_ttl
        self.typing_min_interval = typing_min_interval
        self.ack_member_cap = ack_member_cap
        self.announce_limit = announce_limit
        self.connections: dict[str, Connection] = {}
        self.user_sockets: dict[int, set[Connection]] = {}
        self.rooms: dict[str, set[Connection]] = {}
        self.room_users: dict[str, dict[int, _RoomUser]] = {}  # in join order
        self.member_counts_changed: set[str] = set()  # big rooms whose member count changed
        # With a Redis broker, the lab's count of a room's members on other processes only (cheap:
        # O(1) for big rooms): member counts, and whether a room is big, are then the cluster's.
        self.members_elsewhere: Callable[[str], int] | None = None
        self.topics: dict[str, set[Connection]] = {}
        self.typing: dict[tuple[str, int], _TypingState] = {}
        self.last_seq: dict[str, int] = {}
        # Held back by the presence grace: user id -> their offline; room -> user id -> their member_left.
        self.going_offline: dict[int, _Pending] = {}
        self.leaving: dict[str, dict[int, _Pending]] = {}

    # --- connections and presence -------------------------------------------------

    def connect(self, conn: Connection) -> list[HubEvent]:
        """Register an authenticated socket; the user's first socket brings them online."""
        if conn.socket_id in self.connections:
            raise ValueError(f"socket {conn.socket_id!r} is already connected")
        self.connections[conn.socket_id] = conn
        sockets = self.user_sockets.setdefault(conn.user_id, set())
        sockets.add(conn)
        if len(sockets) > 1:
            return []
        if self.going_offline.pop(conn.user_id, None) is not None:
            return []  # back within the grace: the offline was never announced, nor is this
        return [PresenceChanged(conn.user_id, conn.username, True)]

    def disconnect(self, conn: Connection, *, now: float | None = None, grace: float = 0.0) -> list[HubEvent]:
        """Forget a socket everywhere. Safe to call twice; the second call does nothing.

        With ``grace`` > 0 (seconds, on the clock of ``now``), the user's last socket closing
        holds their offline and their member_left events back until :meth:`due`."""
        if self.connections.get(conn.socket_id) is not conn:
            return []
        sockets = self.user_sockets[conn.user_id]
        hold = grace > 0 and len(sockets) == 1
        if hold and now is None:
            raise ValueError("disconnect with a presence grace needs the time: pass now=")
        due = (now or 0.0) + grace
        events: list[HubEvent] = []
        for room in list(conn.rooms):
            events.extend(self._leave_later(conn, room, due) if hold else self.leave(conn, room))
        for topic in list(conn.topics):
            self.unsubscribe(conn, topic)
        del self.connections[conn.socket_id]
        sockets.discard(conn)
        if not sockets:
            del self.user_sockets[conn.user_id]
            if hold:
                self.going_offline[conn.user_id] = _Pending(conn.username, due)
            else:
                events.append(PresenceChanged(conn.user_id, conn.username, False))
        return events

    def _leave_later(self, conn: Connection, room: str, due: float) -> list[HubEvent]:
        """The user's last socket leaves ``room`` now; their member_left waits until ``due``."""
        self._remove_member(conn, room)  # the user's only socket: their entry goes too
        self.leaving.setdefault(room, {})[conn.user_id] = _Pending(conn.username, due)
        stopped = self.stop_typing(room, conn.user_id, conn.username)  # typing stops at once all the same
        return [stopped] if stopped else []

    def due(self, now: float) -> list[HubEvent]:
        """The held-back member_left and offline events whose grace is over, now forgotten."""
        events: list[HubEvent] = []
        for room, users in list(self.leaving.items()):
            for user_id, pending in list(users.items()):
                if pending.due <= now:
                    del users[user_id]
                    if self._is_big(room, extra=1):
                        self.member_counts_changed.add(room)
                    else:
                        events.append(MembershipChanged(room, user_id, pending.username, False))
            if not users:
                del self.leaving[room]
        for user_id, pending in list(self.going_offline.items()):
            if pending.due <= now:
                del self.going_offline[user_id]
                events.append(PresenceChanged(user_id, pending.username, False))
        return events

    def is_online(self, user_id: int) -> bool:
        """An open socket, or its offline still held back by the grace."""
        return user_id in self.user_sockets or user_id in self.going_offline

    def online_users(self) -> list[UserRef]:
        """Every online user (see :meth:`is_online`), by id."""
        users = {uid: next(iter(sockets)).username for uid, sockets in self.user_sockets.items()}
        users.update((uid, pending.username) for uid, pending in self.going_offline.items())
        return [UserRef(uid, users[uid]) for uid in sorted(users)]

    def tracked_sockets(self) -> int:
        """Socket entries in the userId -> sockets map: the open sockets, unless cleanup leaks."""
        return sum(len(sockets) for sockets in self.user_sockets.values())

    # --- rooms -----------------------------------------------------------------------

    def member_count(self, room: str) -> int:
        """Users in ``room``, those whose member_left is held back included (and, with
        :attr:`members_elsewhere`, those on other processes): O(1)."""
        here = len(self.room_users.get(room, ())) + len(self.leaving.get(room, ()))
        return here if self.members_elsewhere is None else here + self.members_elsewhere(room)

    def _is_big(self, room: str, *, extra: int = 0) -> bool:
        """Above ``announce_limit`` (counting ``extra`` users just gone): no per-user announcements."""
        return self.member_count(room) + extra > self.announce_limit

    def _remove_member(self, conn: Connection, room: str) -> bool:
        """Take ``conn`` out of ``room``'s maps; True if it was its user's last socket there."""
        del conn.rooms[room]
        members = self.rooms[room]
        members.discard(conn)
        if not members:
            del self.rooms[room]
        users = self.room_users[room]
        entry = users[conn.user_id]
        entry.sockets -= 1
        if entry.sockets:
            return False
        del users[conn.user_id]
        if not users:
            del self.room_users[room]
        return True

    def join(self, conn: Connection, room: str) -> list[HubEvent]:
        """O(1) whatever the room's size: the per-room user index says if the user is new."""
        if room in conn.rooms:
            return []
        conn.rooms[room] = self.last_seq.get(room, 0)
        self.rooms.setdefault(room, set()).add(conn)
        users = self.room_users.setdefault(room, {})
        entry = users.get(conn.user_id)
        if entry is not None:
            entry.sockets += 1
            return []  # another tab of a user already in the room
        users[conn.user_id] = _RoomUser(conn.username, 1)
        if self._cancel_leaving(room, conn.user_id):
            return []  # back within the grace: their member_left was never announced
        if self._is_big(room):
            self.member_counts_changed.add(room)
            return []
        return [MembershipChanged(room, conn.user_id, conn.username, True)]

    def _cancel_leaving(self, room: str, user_id: int) -> bool:
        users = self.leaving.get(room)
        if users is None or users.pop(user_id, None) is None:
            return False
        if not users:
            del self.leaving[room]
        return True

    def leave(self, conn: Connection, room: str) -> list[HubEvent]:
        if room not in conn.rooms:
            return []
        if not self._remove_member(conn, room):
            return []  # still in the room through another tab
        stopped = self.stop_typing(room, conn.user_id, conn.username)
        events: list[HubEvent] = [stopped] if stopped else []
        if self._is_big(room, extra=1):
            self.member_counts_changed.add(room)
        else:
            events.append(MembershipChanged(room, conn.user_id, conn.username, False))
        return events

    def _member_names(self, room: str) -> Iterable[tuple[int, str]]:
        """(user id, name) of every member, in join order, the held-back leavers last."""
        return chain(
            ((uid, entry.username) for uid, entry in self.room_users.get(room, {}).items()),
            ((uid, pending.username) for uid, pending in self.leaving.get(room, {}).items()),
        )

    def room_members(self, room: str, limit: int | None = None) -> list[UserRef]:
        """The users (not sockets) in a room, by user id; those whose member_left is held back too.

        With ``limit``, at most that many: the first to join (O(limit), for the join ack)."""
        names = islice(self._member_names(room), limit) if limit is not None else self._member_names(room)
        return [UserRef(uid, name) for uid, name in sorted(names)]

    def room_members_page(self, room: str, after: int, limit: int) -> list[UserRef]:
        """Members with a user id above ``after``, by id, at most ``limit`` (REST paging)."""
        return [UserRef(uid, name) for uid, name in sorted(self._member_names(room)) if uid > after][:limit]

    def take_member_counts(self) -> list[tuple[str, int]]:
        """The big rooms whose member count changed since the last call, with their count now."""
        changed = [(room, self.member_count(room)) for room in sorted(self.member_counts_changed)]
        self.member_counts_changed.clear()
        return changed

    def note_delivered(self, room: str, seq: int) -> None:
        if seq > self.last_seq.get(room, 0):
            self.last_seq[room] = seq

    # --- topics (presence feed, live post counters) ------------------------------

    def subscribe(self, conn: Connection, topic: str) -> bool:
        topics = conn.topics
        if topic in topics:
            return False
        if isinstance(topics, frozenset):  # its first topic: its own set from now on
            conn.topics = topics = set()
        topics.add(topic)
        self.topics.setdefault(topic, set()).add(conn)
        return True

    def unsubscribe(self, conn: Connection, topic: str) -> bool:
        topics = conn.topics
        if topic not in topics or not isinstance(topics, set):  # (a subscribed socket has its own set)
            return False
        topics.discard(topic)
        subscribers = self.topics[topic]
        subscribers.discard(conn)
        if not subscribers:
            del self.topics[topic]
        return True

    # --- routing -------------------------------------------------------------------

    _EMPTY: frozenset[Connection] = frozenset()

    def room_targets(self, room: str) -> Iterable[Connection]:
        """The live member set itself, not a copy: callers iterate it without awaiting."""
        return self.rooms.get(room, self._EMPTY)

    def topic_targets(self, topic: str) -> Iterable[Connection]:
        return self.topics.get(topic, self._EMPTY)

    def user_targets(self, *user_ids: int) -> Iterable[Connection]:
        if len(user_ids) == 1:
            return self.user_sockets.get(user_ids[0], self._EMPTY)
        out: set[Connection] = set()
        for uid in user_ids:
            out |= self.user_sockets.get(uid, self._EMPTY)
        return out

    def socket_target(self, socket_id: str) -> Iterable[Connection]:
        conn = self.connections.get(socket_id)
        return (conn,) if conn is not None else ()

    # --- typing (ephemeral) --------------------------------------------------------

    def start_typing(self, conn: Connection, room: str, now: float) -> TypingDecision:
        if room not in conn.rooms:
            return TypingDecision.NOT_IN_ROOM
        key = (room, conn.user_id)
        state = self.typing.get(key)
        if state is not None and now - state.broadcast_at < self.typing_min_interval:
            state.expires_at = now + self.typing_ttl
            return TypingDecision.REFRESHED
        self.typing[key] = _TypingState(conn.username, now + self.typing_ttl, now)
        return TypingDecision.BROADCAST

    def stop_typing(self, room: str, user_id: int, username: str) -> TypingChanged | None:
        if self.typing.pop((room, user_id), None) is None:
            return None
        return TypingChanged(room, user_id, username, False)

    def expire(self, now: float) -> tuple[list[TypingChanged], list[Connection]]:
        """Typing indicators that ran out, and connections whose token has expired."""
        stopped = []
        for (room, user_id), state in list(self.typing.items()):
            if state.expires_at <= now:
                del self.typing[(room, user_id)]
                stopped.append(TypingChanged(room, user_id, state.username, False))
        expired = [c for c in self.connections.values() if c.expires_at <= now]
        return stopped, expired

    # --- numbers for /healthz and /observe ------------------------------------------

    def counts(self) -> dict[str, int]:
        return {
            "connections": len(self.connections),
            "users_online": len(self.user_sockets) + len(self.going_offline),  # disjoint: connect pops
            "rooms": len(self.rooms),
            "topics": len(self.topics),
            "typing": len(self.typing),
        }
