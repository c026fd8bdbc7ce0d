"""Every message the server sends, built in one place (sans-I/O).

:mod:`labserver.envelope` reads what clients send; this module writes what the
server sends back: over ``/ws`` (section 6 of PROTOCOL.md), as Server-Sent
Events, in REST bodies that carry the same records, and over ``/observe``.
Each message is a frozen dataclass named after its wire ``type``;
:meth:`ServerMessage.encode` turns it into the JSON text of one WebSocket text
message (RFC 6455 section 5.6: the payload of a text frame is UTF-8; the JSON
inside it is ours). The send path encodes a broadcast once and writes the same
frame to every recipient, so nothing here runs per recipient.

Serialization is one rule for every class: fields in declaration order, a
nested record (:class:`UserRef`, :class:`Limits`...) as its own JSON object,
``ref`` left out when the client gave none, and a field named ``sender``
written as ``from`` (a Python keyword). Records from the store
(:class:`~labserver.store.StoredMessage`, :class:`~labserver.store.Post`...) do
not know their JSON: the ``*_of`` constructors here translate them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .envelope import ErrorCode, Ref, dm_parties, encode

if TYPE_CHECKING:
    from .config import Settings
    from .hub import Hub
    from .lab import Upload
    from .store import Comment, Notification, Post, StoredMessage, User

__all__ = [
    "AckMessage",
    "AnnouncementMessage",
    "ChatMessage",
    "DmMessage",
    "ErrorMessage",
    "EventsMessage",
    "Limits",
    "MemberCountMessage",
    "MemberJoinedMessage",
    "MemberLeftMessage",
    "NotificationMessage",
    "ObserveEvent",
    "PongMessage",
    "PostUpdatedMessage",
    "PresenceMessage",
    "ResumedMessage",
    "ResyncMessage",
    "ServerMessage",
    "SignalMessage",
    "SnapshotMessage",
    "SocketView",
    "TypingMessage",
    "UploadedMessage",
    "UserRef",
    "WelcomeMessage",
    "comment_json",
    "message_of",
    "post_json",
]

JSON = dict[str, Any]

_RENAMED = {"sender": "from"}  # Python name -> JSON key


def _plain(value: Any) -> Any:
    """A field value as JSON-ready data: records become objects, sequences lists."""
    if isinstance(value, _Record):
        return value.to_json()
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


class _Record:
    """A frozen dataclass that serializes itself by the module's one rule."""

    __slots__ = ()
    omit_none: ClassVar[bool] = False
    """Leave out every field that is None (``ref`` is always left out when None)."""
    # Per class: (attribute, JSON key, left out when None), in field order; made on first use
    # (the dataclass decorator has not run yet when __init_subclass__ would).
    _plan: ClassVar[tuple[tuple[str, str, bool], ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._plan = ()

    @classmethod
    def _fields_plan(cls) -> tuple[tuple[str, str, bool], ...]:
        if not cls._plan:
            cls._plan = tuple(
                (f.name, _RENAMED.get(f.name, f.name), cls.omit_none or f.name == "ref")
                for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            )
        return cls._plan

    def to_json(self) -> JSON:
        out: JSON = {}
        for name, key, omit_none in self._fields_plan():
            value = getattr(self, name)
            if value is None and omit_none:
                continue
            out[key] = _plain(value)
        return out


class ServerMessage(_Record):
    """Base of the messages a WebSocket client receives: ``{"type": ..., ...}``."""

    __slots__ = ()
    type: ClassVar[str] = ""

    def to_json(self) -> JSON:
        return {"type": self.type, **super().to_json()}

    def encode(self) -> str:
        """The message as compact JSON text, ready to be framed once for every recipient."""
        return encode(self.to_json())


# --- records carried inside messages -------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserRef(_Record):
    """A user as others see them: never the password hash."""

    id: int
    username: str

    @classmethod
    def of(cls, user: User) -> UserRef:
        return cls(user.id, user.username)


@dataclass(frozen=True, slots=True)
class Limits(_Record):
    """The limits a client must respect, sent in its ``welcome``."""

    max_message_bytes: int
    rate_per_second: float
    rate_burst: int
    ping_interval: float
    typing_ttl: float
    resume_limit: int

    @classmethod
    def of(cls, settings: Settings, ping_interval: float | None = None) -> Limits:
        """``ping_interval``: this socket's heartbeat (the live switch when it opened), if not the flag's."""
        s = settings
        ping = s.ping_interval if ping_interval is None else ping_interval
        return cls(s.max_message_bytes, s.rate_per_second, s.rate_burst, ping, s.typing_ttl, s.resume_limit)


@dataclass(frozen=True, slots=True)
class SocketView(_Record):
    """One open socket in an ``/observe`` snapshot."""

    socket_id: str
    user: UserRef
    rooms: tuple[str, ...]


# --- answers to one socket -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WelcomeMessage(ServerMessage):
    """First message of an authenticated socket (PROTOCOL.md section 4)."""

    type: ClassVar[str] = "welcome"
    omit_none: ClassVar[bool] = True
    socket_id: str
    user: UserRef
    limits: Limits
    # The lab process this socket is on, when several may share a Redis broker (--redis or
    # --node); a lone process leaves it out, so a lesson's welcome reads the same every run.
    node: str | None = None


@dataclass(frozen=True, slots=True)
class AckMessage(ServerMessage):
    """The answer to a client message that carried a ``ref``; its fields depend on the request
    (the table in PROTOCOL.md section 6). Fields left None are not sent."""

    type: ClassVar[str] = "ack"
    omit_none: ClassVar[bool] = True
    ref: Ref
    room: str | None = None
    seq: int | None = None
    last_seq: int | None = None
    members: tuple[UserRef, ...] | None = None
    member_count: int | None = None  # join: all the room's members; ``members`` lists at most a cap of them
    to: int | None = None
    topic: str | None = None
    online: tuple[UserRef, ...] | None = None


@dataclass(frozen=True, slots=True)
class ErrorMessage(ServerMessage):
    """A refused message; ``ref`` is echoed whenever the server could read it."""

    type: ClassVar[str] = "error"
    code: ErrorCode
    message: str
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class PongMessage(ServerMessage):
    """The answer to an application-level ``ping`` (not an RFC 6455 pong frame, section 5.5.3)."""

    type: ClassVar[str] = "pong"
    payload: Any
    server_time: float
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class ResumedMessage(ServerMessage):
    """A ``resume`` replayed ``count`` messages; everything after ``last_seq`` comes live."""

    type: ClassVar[str] = "resumed"
    room: str
    count: int
    last_seq: int
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class ResyncMessage(ServerMessage):
    """A ``resume`` the server will not replay: ``too_far_behind`` or ``ahead_of_server``."""

    type: ClassVar[str] = "resync"
    room: str
    reason: str
    last_seq: int
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class UploadedMessage(ServerMessage):
    """A stored image: the answer to a binary message on ``/ws`` (and, as a record without
    ``type``, to ``POST /api/uploads``)."""

    type: ClassVar[str] = "uploaded"
    url: str
    name: str
    size: int
    content_type: str

    @classmethod
    def of(cls, upload: Upload) -> UploadedMessage:
        return cls(upload.url, upload.name, upload.size, upload.content_type)

    def record(self) -> JSON:
        """The REST body of ``POST /api/uploads``: the same fields, without ``type``."""
        return _Record.to_json(self)


# --- routed to many sockets ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChatMessage(ServerMessage):
    """A room message, live or replayed; ``seq`` numbers the room's messages without gaps."""

    type: ClassVar[str] = "chat"
    room: str
    seq: int
    sender: UserRef
    text: str
    ts: float


@dataclass(frozen=True, slots=True)
class DmMessage(ServerMessage):
    """A direct message; ``room`` is the pair's DM room and ``to`` the recipient."""

    type: ClassVar[str] = "dm"
    room: str
    seq: int
    sender: UserRef
    text: str
    ts: float
    to: int


def message_of(stored: StoredMessage) -> ChatMessage | DmMessage:
    """A stored message as clients receive it: a ``dm`` in a DM room, else a ``chat``."""
    sender = UserRef(stored.sender_id, stored.sender_name)
    parties = dm_parties(stored.room)
    if parties is None:
        return ChatMessage(stored.room, stored.seq, sender, stored.text, stored.ts)
    low, high = parties
    to = high if stored.sender_id == low else low
    return DmMessage(stored.room, stored.seq, sender, stored.text, stored.ts, to)


@dataclass(frozen=True, slots=True)
class MemberJoinedMessage(ServerMessage):
    """A *user* entered a room: their first socket joined it."""

    type: ClassVar[str] = "member_joined"
    room: str
    user: UserRef


@dataclass(frozen=True, slots=True)
class MemberLeftMessage(ServerMessage):
    """A *user* left a room: their last socket in it left or closed."""

    type: ClassVar[str] = "member_left"
    room: str
    user: UserRef


@dataclass(frozen=True, slots=True)
class MemberCountMessage(ServerMessage):
    """A big room's member count changed: sent instead of member_joined/member_left, at most
    once per sweep tick per room (PROTOCOL.md, ``join``)."""

    type: ClassVar[str] = "member_count"
    room: str
    count: int


@dataclass(frozen=True, slots=True)
class TypingMessage(ServerMessage):
    type: ClassVar[str] = "typing"
    room: str
    user: UserRef
    active: bool


@dataclass(frozen=True, slots=True)
class PresenceMessage(ServerMessage):
    """A user came online (first socket) or went offline (last socket closed)."""

    type: ClassVar[str] = "presence"
    user: UserRef
    online: bool


@dataclass(frozen=True, slots=True)
class NotificationMessage(ServerMessage):
    """Something happened to the user (``like``, ``comment``, ``mention``); stored first."""

    type: ClassVar[str] = "notification"
    id: int
    kind: str
    sender: UserRef
    post_id: int | None
    text: str
    ts: float

    @classmethod
    def of(cls, n: Notification) -> NotificationMessage:
        return cls(n.id, n.kind, UserRef(n.actor_id, n.actor_name), n.post_id, n.text, n.created_at)


@dataclass(frozen=True, slots=True)
class PostUpdatedMessage(ServerMessage):
    """A post's live counters, to the subscribers of ``post:<id>``."""

    type: ClassVar[str] = "post_updated"
    post_id: int
    likes: int
    comments: int

    @classmethod
    def of(cls, post: Post) -> PostUpdatedMessage:
        return cls(post.id, post.likes, post.comments)


@dataclass(frozen=True, slots=True)
class SignalMessage(ServerMessage):
    """A relayed WebRTC signal (offer, answer, ICE candidate, hangup): media never passes here."""

    type: ClassVar[str] = "signal"
    sender: UserRef
    from_socket: str
    kind: str
    data: Any


@dataclass(frozen=True, slots=True)
class AnnouncementMessage(ServerMessage):
    """The instructor's words to every connected socket (class mode): ``POST /api/admin/announce``."""

    type: ClassVar[str] = "announcement"
    text: str
    ts: float


# --- /observe --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnapshotMessage(ServerMessage):
    """The whole state, for an observer that just connected or fell behind."""

    type: ClassVar[str] = "snapshot"
    sockets: tuple[SocketView, ...]
    online: tuple[int, ...]
    rooms: Mapping[str, Sequence[int]]  # room -> ids of the users in it
    stats: Mapping[str, float]  # the counters of /healthz (Lab.stats)
    switches: Mapping[str, Any]  # the live switches (config.Switches)
    node: str = ""  # the process observed (--node): with Redis, each process is observed on its own

    @classmethod
    def of(cls, hub: Hub, stats: Mapping[str, float], switches: Mapping[str, Any]) -> SnapshotMessage:
        sockets = tuple(SocketView(c.socket_id, c.user, tuple(sorted(c.rooms))) for c in hub.connections.values())
        # Rooms with a socket in them, and those whose last member's member_left is held back.
        rooms = {room: [u.id for u in hub.room_members(room)] for room in sorted({*hub.rooms, *hub.leaving})}
        return cls(sockets, tuple(u.id for u in hub.online_users()), rooms, stats, switches)

    def without_rooms(self, hidden: Callable[[str], bool]) -> SnapshotMessage:
        """This snapshot without the rooms ``hidden`` names (for observers without the admin token)."""
        sockets = tuple(
            SocketView(s.socket_id, s.user, tuple(r for r in s.rooms if not hidden(r))) for s in self.sockets
        )
        rooms = {room: users for room, users in self.rooms.items() if not hidden(room)}
        return SnapshotMessage(sockets, self.online, rooms, self.stats, self.switches, self.node)


@dataclass(frozen=True, slots=True)
class ObserveEvent(_Record):
    """One thing the server did, as ``/observe`` reports it (PROTOCOL.md section 9).

    ``ev`` names the kind; ``fields`` are its fields in order. The observatory adds
    the time ``t`` when it records the event."""

    ev: str
    fields: Mapping[str, Any]

    def to_json(self) -> JSON:
        return {**_plain(self.fields), "ev": self.ev}

    @classmethod
    def socket_opened(cls, socket_id: str, user: UserRef, node: str = "") -> ObserveEvent:
        return cls("socket_opened", {"socket_id": socket_id, "user": user, "node": node})

    @classmethod
    def socket_closed(cls, socket_id: str, user: UserRef, code: int | None, reason: str) -> ObserveEvent:
        return cls("socket_closed", {"socket_id": socket_id, "user": user, "code": code, "reason": reason})

    @classmethod
    def socket_joined(cls, socket_id: str, user: UserRef, room: str) -> ObserveEvent:
        return cls("socket_joined", {"socket_id": socket_id, "user": user, "room": room})

    @classmethod
    def socket_left(cls, socket_id: str, user: UserRef, room: str) -> ObserveEvent:
        return cls("socket_left", {"socket_id": socket_id, "user": user, "room": room})

    @classmethod
    def membership(cls, user: UserRef, room: str, *, joined: bool) -> ObserveEvent:
        return cls("joined" if joined else "left", {"user": user, "room": room})

    @classmethod
    def presence(cls, user: UserRef, online: bool) -> ObserveEvent:
        return cls("presence", {"user": user, "online": online})

    @classmethod
    def slow_consumer(cls, socket_id: str, user: UserRef) -> ObserveEvent:
        return cls("slow_consumer", {"socket_id": socket_id, "user": user})

    @classmethod
    def routed(
        cls,
        *,
        message_type: str | None,
        sender: Any,
        to: Mapping[str, str],
        size: int,
        recipients: int,
        seq: int | None,
        preview: str | None,
    ) -> ObserveEvent:
        fields = {
            "type": message_type,
            "to": to,
            "size": size,
            "recipients": recipients,
            "seq": seq,
            "preview": preview,
        }
        return cls("routed", {**fields, "from": sender})

    @classmethod
    def stats(cls, counters: Mapping[str, Any]) -> ObserveEvent:
        return cls("stats", counters)

    @classmethod
    def switches(cls, switches: Mapping[str, Any]) -> ObserveEvent:
        return cls("switches", {"switches": switches})


@dataclass(frozen=True, slots=True)
class EventsMessage(ServerMessage):
    """One flush of the observatory: the events since the last one, each with its time ``t``."""

    type: ClassVar[str] = "events"
    events: tuple[JSON, ...]
    dropped: int


# --- records in REST bodies --------------------------------------------------------------


def post_json(post: Post) -> JSON:
    return {
        "id": post.id,
        "author": UserRef(post.author_id, post.author_name).to_json(),
        "text": post.text,
        "image": post.image,
        "created_at": post.created_at,
        "likes": post.likes,
        "comments": post.comments,
    }


def comment_json(comment: Comment) -> JSON:
    return {
        "id": comment.id,
        "post_id": comment.post_id,
        "author": UserRef(comment.author_id, comment.author_name).to_json(),
        "text": comment.text,
        "created_at": comment.created_at,
    }
