"""The one door between the protocol logic and a socket (sans-I/O interface).

The hub, the session and the lab decide *what* each socket receives; an
:class:`Outlet` is *how* it gets there. The aiohttp adapter implements it
(:class:`labserver.ws.SocketWriter`); unit tests implement it with a list.

Every frame the server sends to a socket after the handshake -- replies,
broadcasts, replays, observation batches -- goes through :meth:`Outlet.write`,
and only there are the send rules kept:

* once the server has started closing (its Close frame is sent or about to be),
  no data frame follows it (RFC 6455 section 5.5.1: after sending a Close frame
  the endpoint "MUST NOT send any more data frames");
* a reader whose unsent bytes pass the send buffer limit is dropped (its TCP
  connection aborted), so one slow reader never holds up the others or grows
  the server's memory.
"""

from __future__ import annotations

from typing import Protocol


class Outlet(Protocol):
    """Where the frames for one WebSocket go."""

    @property
    def buffered(self) -> int:
        """Bytes written but not yet handed to the network."""

    @property
    def closing(self) -> bool:
        """True once nothing more may be written: closing, closed or lost."""

    def write(self, frame: bytes) -> bool:
        """Queue one complete frame; False if it was not written (closing, or dropped as too slow)."""

    async def close(self, code: int, reason: str) -> None:
        """Send a Close frame with ``code`` and ``reason`` (section 5.5.1) and end the connection."""

    def abort(self) -> None:
        """End the TCP connection at once, without a Close frame, as a network failure would."""
