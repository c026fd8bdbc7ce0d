"""Publish/subscribe between lab server processes.

Every routed message goes through a broker, even in a single process, so that
scaling out is a change of broker, not of code: each process publishes what its
clients send and delivers what it receives to *its own* sockets. With
:class:`InMemoryBroker` the only subscriber is this process; a Redis broker
(same interface) fans the same bytes out to every process.

A routed message is encoded once as :class:`Routed` (a one-line target header
and the JSON payload), so no process decodes the JSON again to deliver it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class TargetKind(StrEnum):
    ROOM = "room"  # members of a room; ``seq`` is the room's sequence number
    DM = "dm"  # every socket of two users; name is the DM room ``dm:<a>:<b>``
    USERS = "users"  # every socket of the users named "1,2,3"
    TOPIC = "topic"  # subscribers of a topic (presence, post:<id>)
    SOCKET = "socket"  # one socket, by socket id


@dataclass(frozen=True, slots=True)
class Routed:
    """A message and where it goes. ``payload`` is the JSON text sent to each recipient."""

    kind: TargetKind
    name: str
    payload: str
    seq: int = 0
    origin: str = ""  # id of the publishing process, for observation

    def serialize(self) -> bytes:
        return f"{self.kind} {self.name} {self.seq} {self.origin}\n{self.payload}".encode()

    @classmethod
    def parse(cls, data: bytes) -> Routed:
        header, _, payload = data.decode().partition("\n")
        kind, name, seq, origin = header.split(" ")
        return cls(TargetKind(kind), name, payload, int(seq), origin)


class Broker(Protocol):
    """What the server needs from a message bus between its processes."""

    async def start(self, deliver: Callable[[Routed], None]) -> None:
        """Begin delivering every published message (from any process) to ``deliver``."""

    async def publish(self, message: Routed) -> None:
        """Send ``message`` to every process, this one included."""

    async def close(self) -> None: ...


class InMemoryBroker:
    """One process: publishing delivers at once, in publication order."""

    def __init__(self) -> None:
        self._deliver: Callable[[Routed], None] | None = None
        self.published = 0

    async def start(self, deliver: Callable[[Routed], None]) -> None:
        self._deliver = deliver

    async def publish(self, message: Routed) -> None:
        if self._deliver is None:
            raise RuntimeError("broker is not started: call start() before publish()")
        self.published += 1
        self._deliver(message)

    async def close(self) -> None:
        self._deliver = None
