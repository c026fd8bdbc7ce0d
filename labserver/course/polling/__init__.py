"""Polling vs push, measured: one live room served four ways, every byte counted.

A producer posts chat messages to a room at a fixed rate (HTTP POST, one
account). Groups of simulated receivers, all in this process and all logged in
as one account (1,000 sign-ups would cost 1,000 scrypt hashes; the bytes on the
wire are the same), follow the room:

* ``"short"``: short polling, ``GET /api/rooms/{room}/messages?after=SEQ`` every
  ``interval`` seconds, the receivers evenly staggered over the interval (one
  aiohttp connector with keep-alive per group);
* ``"long"``: long polling, ``GET /api/rooms/{room}/poll?after=SEQ&timeout=S``,
  asked again as soon as it answers;
* ``"websocket"``: WebSocket push, one ``/ws`` connection per receiver, joined
  to the room;
* ``"sse"``: Server-Sent Events, one streaming ``GET /api/rooms/{room}/events``
  per receiver (``text/event-stream``), parsed event by event as it arrives.

For every group :func:`measure` counts, over a fixed window, the HTTP requests
per second, the bytes on the wire per delivered message (both directions:
request lines, headers, bodies, WebSocket frames, pings, SSE events and their
chunk framing), the share of useless requests (answered with no new message),
and the delivery latency of every message. ::

    run = await measure(lab, Scenario((Group("short", 100, interval=1.0), Group("websocket", 100)),
                                      message_rate=0.5, window=6.0))
    print(run.summary())
    run.rows()                  # one tidy dict per group, ready to plot

One module per job, all re-exported here:

* :mod:`.scenario`: what to run (:class:`Group`, :class:`Scenario`) and what theory
  expects of it (``expected_*``); pure data.
* :mod:`.results`: what a run measured (:class:`GroupResult`, :class:`RunResult`,
  :class:`PollAnatomy`) and tables of it; pure data.
* :mod:`.meter`: bytes counted at the socket (:class:`CountingSocket`,
  :class:`ByteMeter`), HTTP and WebSocket apart (:class:`labserver.wire.Traffic`).
* :mod:`.receivers`: the receivers themselves, a few lines each, exactly what runs
  (:func:`short_poller`, :func:`long_poller`, :func:`websocket_receiver`, :func:`sse_receiver`).
* :mod:`.runner`: :func:`measure`, the asyncio code that drives the live lab.
* :mod:`.experiments`: the lesson's experiments, :func:`anatomy_of_a_poll`,
  :func:`quiet_room`, :func:`short_polling`, :func:`compare` and :func:`interval_sweep`.
* :mod:`.capacity`: how many receivers fit in the open files this process has
  left (:func:`fit_sizes`, :func:`scaling_note`); pure.
"""

from __future__ import annotations

from .capacity import fit_sizes, scaling_note
from .experiments import anatomy_of_a_poll, compare, interval_sweep, quiet_room, short_polling
from .meter import ByteMeter, CountingSocket, counting_session
from .receivers import Inbox, long_poller, open_websocket, short_poller, sse_receiver, websocket_receiver
from .results import GroupResult, PollAnatomy, RunResult, expectation, prediction, rows, select, table
from .runner import measure
from .scenario import (
    APPROACHES,
    COLORS,
    LABELS,
    Approach,
    Group,
    Scenario,
    expected_latency,
    expected_requests_per_s,
    expected_useless_fraction,
)

__all__ = [
    "APPROACHES",
    "COLORS",
    "LABELS",
    "Approach",
    "ByteMeter",
    "CountingSocket",
    "Group",
    "GroupResult",
    "Inbox",
    "PollAnatomy",
    "RunResult",
    "Scenario",
    "anatomy_of_a_poll",
    "compare",
    "counting_session",
    "expected_latency",
    "expected_requests_per_s",
    "expected_useless_fraction",
    "expectation",
    "fit_sizes",
    "interval_sweep",
    "long_poller",
    "measure",
    "open_websocket",
    "prediction",
    "quiet_room",
    "rows",
    "scaling_note",
    "select",
    "short_poller",
    "short_polling",
    "sse_receiver",
    "table",
    "websocket_receiver",
]
