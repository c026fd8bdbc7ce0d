"""The RFC 6455 rules aiohttp does not keep, added through its private names.

aiohttp (3.14) accepts unmasked client frames, never notices endless empty
continuation frames, and lets the close codes 1006 and 5000-65535 through. The
lab server teaches RFC 6455 and must keep it, so :class:`LabWebSocketResponse`
puts a :class:`~labserver.frames.ClientFrameGuard` in front of aiohttp's frame
parser and checks close codes as they are read:

* an unmasked client frame: 1002 (section 5.1: the server "MUST close the
  connection upon receiving a frame that is not masked");
* more continuation frames than a message may have: 1009 (section 5.4 allows
  fragmentation, not endless empty fragments);
* a close frame with a code no endpoint may send: 1002 (section 7.4).

This is the only module that names aiohttp's private attributes: they are listed
in :data:`PRIVATE_NAMES`, pyproject.toml pins aiohttp to the minor version they
were checked against, and ``tests/test_aiohttp_compat.py`` fails, naming the
installed version, if one of them moves.
"""

from __future__ import annotations

from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.http_websocket import WebSocketError

from .frames import ClientFrameGuard, is_valid_close_code

__all__ = ["PRIVATE_NAMES", "LabWebSocketResponse"]

PRIVATE_NAMES: dict[str, tuple[str, ...]] = {
    # owner -> the private names of it used below
    "aiohttp.web.WebSocketResponse": ("_post_start", "_reader", "_max_msg_size"),
    "aiohttp.web_protocol.RequestHandler": ("_message_tail", "_payload_parser"),
}


class LabWebSocketResponse(web.WebSocketResponse):
    """aiohttp's WebSocket response, keeping the RFC 6455 rules listed in the module docstring."""

    def _post_start(self, request: web.BaseRequest, protocol: str | None, writer: Any) -> None:
        # aiohttp caps a message's fragments at max(1024, max_msg_size // 256), but counts
        # only non-empty ones; the guard counts every continuation frame.
        guard = ClientFrameGuard(max_fragments=max(1024, self._max_msg_size // 256))
        http_protocol = request.protocol
        tail = bytes(http_protocol._message_tail)  # bytes that came in with the handshake
        super()._post_start(request, protocol, writer)
        http_protocol._payload_parser = _GuardedParser(http_protocol._payload_parser, guard, self)
        self._reader = _CloseCodeCheck(self._reader)  # type: ignore[assignment]
        if tail and guard.feed(tail):
            self._refuse(guard)

    def _refuse(self, guard: ClientFrameGuard) -> None:
        """Hand aiohttp's reader the violation as a protocol error: aiohttp closes with its code."""
        assert self._reader is not None
        self._reader.set_exception(WebSocketError(guard.violation_code, guard.violation or ""))


class _CloseCodeCheck:
    """Wraps aiohttp's message queue; a client close frame with a code no endpoint may
    send reaches aiohttp as the protocol error it is (answered with 1002)."""

    __slots__ = ("_queue",)

    def __init__(self, queue: Any) -> None:
        self._queue = queue

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)

    async def read(self) -> Any:
        msg = await self._queue.read()
        if msg.type is WSMsgType.CLOSE and msg.data != 0 and not is_valid_close_code(msg.data):  # 0: no code
            error = WebSocketError(WSCloseCode.PROTOCOL_ERROR, f"Invalid close code: {msg.data}")
            self._queue.set_exception(error)  # as aiohttp's parser does: nothing more is read
            raise error
        return msg


class _GuardedParser:
    """Feeds every byte from the client to the guard before aiohttp's parser sees it."""

    __slots__ = ("_inner", "_guard", "_ws")

    def __init__(self, inner: Any, guard: ClientFrameGuard, ws: LabWebSocketResponse) -> None:
        self._inner = inner
        self._guard = guard
        self._ws = ws

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self._guard.feed(data) is not None:
            self._ws._refuse(self._guard)
            return True, b""
        result: tuple[bool, bytes] = self._inner.feed_data(data)
        return result

    def feed_eof(self) -> None:
        self._inner.feed_eof()
