"""labserver: the live WebSocket lab server of the course.

Design in one paragraph: a sans-I/O core (``envelope`` parses and validates
messages, ``hub`` holds who is connected where and decides who receives what,
``frames`` and ``handshake`` implement the RFC 6455 pieces the course teaches,
``ratelimit`` meters each socket) sits under a thin aiohttp adapter (``ws``,
``rest``, ``app``). ``lab.Lab`` wires the core to the SQLite ``store`` and to a
``broker`` that carries every routed message between server processes. A
message is encoded to one frame once and written to every recipient in a plain
loop: no JSON, no task and no await per recipient.
"""

__version__ = "0.1.0"
