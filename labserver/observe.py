"""The observation stream behind ``/observe`` (sans-I/O).

Dashboards watch the server through a read-only WebSocket. To stay cheap under
load, events are not sent one by one: :meth:`Observatory.emit` appends to a
bounded batch, and the server flushes the batch every ``flush_interval`` seconds
as one message ``{"type": "events", "events": [...], "dropped": N}``. When the
batch is full, further events are counted in ``dropped`` instead of queued, so
a flood of messages can never grow the server's memory through observation.
With no observer connected, :attr:`Observatory.active` is false and callers skip
building events at all.

Event shapes (``ev`` names the kind; ``t`` is server time in seconds):

* ``socket_opened``: ``socket_id``, ``user``; ``socket_closed``: the same plus
  ``code`` and ``reason`` (a closed socket has left all its rooms);
* ``socket_joined`` / ``socket_left``: ``socket_id``, ``user``, ``room`` (one socket);
* ``joined`` / ``left``: ``user``, ``room`` (the user's first socket in, last socket out);
* ``presence``: ``user``, ``online``;
* ``routed``: ``type``, ``from`` (user or null), ``to`` (``{"kind", "name"}``: room,
  dm, users, topic or socket), ``size`` (bytes), ``recipients`` (sockets written to
  here), ``seq`` (or null), ``preview`` (start of the text; null for DMs and signals);
* ``slow_consumer``: ``socket_id``, ``user`` (dropped: its send buffer was full);
* ``stats`` (every ``stats_interval``): the counters of ``/healthz`` (``connections``,
  ``users_online``, ``rooms``, ``topics``, ``typing``, ``peers``, ``long_polls``,
  ``messages_in``, ``deliveries``, ``dropped_slow``, ``rss_bytes``, ``cpu_s``) and
  ``messages_in_per_s``, ``deliveries_per_s``, ``loop_lag_ms``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .messages import EventsMessage, ObserveEvent

HIDDEN = "(hidden)"
"""What an observer without the admin token sees in place of a private room's name or a DM
pair (no room name has parentheses, so it names no real room)."""


class Observatory:
    """Collects events between flushes. Two bounds, because two kinds of event:

    * ``routed`` events (the message flow) are at most ``max_batch`` per flush; the
      rest are only counted in ``dropped``: a flow view may skip lines.
    * state events (sockets, rooms, presence, stats) must never be lost silently: past
      ``max_state`` per flush the batch is marked *stale*, and the server follows it
      with a fresh snapshot (see :meth:`labserver.lab.Lab.flush_observers`).

    ``clock`` gives the server time written into each event as ``t`` (``time.time`` in
    the server; tests pass their own).
    """

    def __init__(
        self, *, clock: Callable[[], float], max_batch: int = 1000, max_state: int = 10_000, preview_chars: int = 40
    ) -> None:
        self.clock = clock
        self.max_batch = max_batch
        self.max_state = max_state
        self.preview_chars = preview_chars
        self.observers: set[Any] = set()  # adapter handles of /observe sockets
        self.behind: set[Any] = set()  # observers that missed a batch: they get a snapshot next
        self._batch: list[dict[str, Any]] = []  # events as JSON objects, each with its ``t``
        self._routed = 0
        self._state = 0
        self.stale = False
        self.dropped = 0
        # Set when observers are not the instructor (a server with no admin token): which rooms
        # they may not see (private rooms, DM rooms). Then events about those are left out,
        # routed events lose their previews, and DM, private-room and signal targets are hidden.
        self.hidden_room: Callable[[str], bool] | None = None

    @property
    def active(self) -> bool:
        return bool(self.observers)

    def emit(self, event: ObserveEvent) -> None:
        """Record one event for the next batch (nothing at all while no one observes)."""
        if not self.observers:
            return
        if event.ev == "routed":
            if self._routed >= self.max_batch:
                self.dropped += 1
                return
            self._routed += 1
        else:
            if self._state >= self.max_state:
                self.stale = True
                return
            self._state += 1
        fields = event.to_json()
        if self.hidden_room is not None and not self._redact(fields, self.hidden_room):
            return
        fields["t"] = round(self.clock(), 4)
        self._batch.append(fields)

    @staticmethod
    def _redact(fields: dict[str, Any], hidden: Callable[[str], bool]) -> bool:
        """Redact one event in place for an observer without the admin token; False: leave it out."""
        room = fields.get("room")
        if isinstance(room, str) and hidden(room):  # joins and leaves of a private room
            return False
        if fields.get("ev") == "routed":
            fields["preview"] = None  # neither chat nor notification texts
            to = fields.get("to")
            if isinstance(to, dict):
                kind, name = to.get("kind"), to.get("name")
                if kind in ("dm", "socket") or fields.get("type") == "signal" or (kind == "room" and hidden(str(name))):
                    fields["to"] = {"kind": kind, "name": HIDDEN}  # no DM pair, private room or signal target
        return True

    def preview(self, text: str) -> str:
        return text if len(text) <= self.preview_chars else text[: self.preview_chars - 1] + "\u2026"

    def flush(self) -> tuple[EventsMessage | None, bool]:
        """The pending batch as one message (or None), and whether a snapshot must follow it."""
        stale = self.stale
        batch = None
        if self._batch or self.dropped:
            batch = EventsMessage(tuple(self._batch), self.dropped)
        self._batch = []
        self._routed = self._state = self.dropped = 0
        self.stale = False
        return batch, stale
