"""labserver: the live WebSocket lab server of the course.

Design in one paragraph: a sans-I/O core reads and writes the protocol without
touching a socket -- ``envelope`` parses what clients send, ``messages`` builds
what the server sends, ``session`` decides what one socket's messages do,
``hub`` holds who is connected where and who receives what, ``frames`` and
``handshake`` implement the RFC 6455 pieces the course teaches, ``auth`` and
``ratelimit`` take their clock from the caller. ``lab.Lab`` wires that core to
the SQLite ``store`` and to a ``broker`` that carries every routed message
between server processes. A thin aiohttp adapter (``ws``, ``rest``, ``app``,
and ``aiohttp_compat`` for the RFC rules aiohttp does not keep) moves the
bytes: a message is encoded to one frame once and written to every recipient
in a plain loop, each write through the socket's one writer.
"""

__version__ = "0.1.0"
