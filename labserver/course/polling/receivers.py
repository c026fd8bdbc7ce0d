"""The receivers lesson 01 runs, each a few readable lines: short polling, long polling,
WebSocket push and Server-Sent Events.

These are exactly the loops :func:`~.runner.measure` starts, one task per simulated
user; the lesson shows them with ``show_source``. They know nothing of the
measurement: each hands what it received to an :class:`Inbox` (``inbox.deliver``,
once per HTTP response for the pollers, once per pushed message for push), and the
runner's inbox stamps the time, counts useless responses and checks for gaps and
duplicates. Bytes are counted underneath, by the socket the ``http`` session connects
through (:mod:`.meter`). The runner stops a receiver by cancelling its task.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

import aiohttp

__all__ = ["Inbox", "long_poller", "open_websocket", "short_poller", "sse_receiver", "websocket_receiver"]


class Inbox(Protocol):
    """Where a receiver puts what it got; the runner's inbox measures, the receiver just receives."""

    def deliver(self, messages: list[dict[str, Any]]) -> None:
        """New chat messages, oldest first (an empty list: a poll that found nothing new)."""

    def failed(self, error: BaseException) -> None:
        """A request that failed (the receiver carries on)."""


async def short_poller(
    http: aiohttp.ClientSession, room: str, inbox: Inbox, *, interval: float = 1.0, delay: float = 0.0
) -> None:
    """Short polling: every ``interval`` seconds, ask for the messages after the last one seen."""
    loop = asyncio.get_running_loop()
    after, next_poll = 0, loop.time() + delay  # delay: real users do not all start in the same millisecond
    while True:
        await asyncio.sleep(max(0.0, next_poll - loop.time()))
        next_poll += interval  # a fixed beat: a poll that ran late is followed by the next one at once
        try:
            async with http.get(f"/api/rooms/{room}/messages", params={"after": after}) as resp:
                resp.raise_for_status()
                messages = (await resp.json())["messages"]
        except (aiohttp.ClientError, TimeoutError) as exc:
            inbox.failed(exc)  # ask again at the next beat, from the same `after`
            continue
        inbox.deliver(messages)  # most of the time [], "nothing new"
        if messages:
            after = messages[-1]["seq"]  # the next poll asks only for what is newer


async def long_poller(http: aiohttp.ClientSession, room: str, inbox: Inbox, *, timeout: int = 25) -> None:
    """Long polling: the server holds each request until there is news; ask again at once."""
    after = 0
    while True:
        try:
            async with http.get(f"/api/rooms/{room}/poll", params={"after": after, "timeout": timeout}) as resp:
                resp.raise_for_status()
                messages = (await resp.json())["messages"]
        except (aiohttp.ClientError, TimeoutError) as exc:
            inbox.failed(exc)
            await asyncio.sleep(0.1)  # a failing server is not asked again in a tight loop
            continue
        inbox.deliver(messages)  # [] only when `timeout` seconds passed without a message
        if messages:
            after = messages[-1]["seq"]


async def open_websocket(http: aiohttp.ClientSession, token: str, room: str) -> aiohttp.ClientWebSocketResponse:
    """The one request of WebSocket push: the Upgrade to ``/ws``, then join ``room`` over the socket."""
    ws = await http.ws_connect("/ws", params={"token": token})
    welcome = await ws.receive_json(timeout=10)
    if welcome.get("type") != "welcome":
        raise RuntimeError(f"expected a welcome, got {welcome!r:.200}")
    await ws.send_json({"type": "join", "room": room, "ref": "join"})
    while True:  # wait for the ack of the join (a member_joined may come first)
        reply = await ws.receive_json(timeout=10)
        if reply.get("ref") == "join":
            if reply.get("type") != "ack":
                raise RuntimeError(f"join refused: {reply!r:.200}")
            return ws


async def websocket_receiver(ws: aiohttp.ClientWebSocketResponse, room: str, inbox: Inbox) -> None:
    """WebSocket push: no requests; the server sends each message down the open socket as it is stored."""
    async for frame in ws:  # waits, at no cost, until the server sends something
        if frame.type is aiohttp.WSMsgType.TEXT:
            event = frame.json()
            if event.get("type") == "chat" and event.get("room") == room:
                inbox.deliver([event])


async def sse_receiver(stream: aiohttp.ClientResponse, room: str, inbox: Inbox) -> None:
    """Server-Sent Events: one response that never ends, read line by line as ``EventSource`` does."""
    data: list[str] = []
    async for raw in stream.content:  # one line at a time, as the bytes arrive
        line = raw.decode("utf-8").rstrip("\r\n")
        if line.startswith("data:"):
            data.append(line.removeprefix("data:").removeprefix(" "))
        elif not line and data:  # a blank line ends the event
            event = json.loads("\n".join(data))
            data = []
            if event.get("type") == "chat" and event.get("room") == room:
                inbox.deliver([event])
        # other lines: "id: 7" (what a reconnect sends back as Last-Event-ID), ": keep-alive" comments
    raise ConnectionError("the event stream ended")
