"""RFC 6455 frames, sans-I/O: bytes in, frames out, and frames in, bytes out.

Read this package next to RFC 6455 section 5.2 (base framing protocol)::

      0                   1                   2                   3
      0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
     +-+-+-+-+-------+-+-------------+-------------------------------+
     |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
     |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
     |N|V|V|V|       |S|             |   (if payload len==126/127)   |
     | |1|2|3|       |K|             |                               |
     +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
     |     Extended payload length continued, if payload len == 127  |
     + - - - - - - - - - - - - - - - +-------------------------------+
     |                               |Masking-key, if MASK set to 1  |
     +-------------------------------+-------------------------------+
     | Masking-key (continued)       |          Payload Data         |
     +-------------------------------- - - - - - - - - - - - - - - - +

One module per job, every public name importable from here:

* :mod:`.codec`: one frame, its fields and its bytes (:class:`Frame`,
  :func:`parse_header`, :class:`FrameHeader`, :func:`apply_mask`, :class:`Opcode`),
  and :func:`server_text_frame`.
* :mod:`.stream`: frames in a byte stream that arrives in pieces of any size
  (:class:`FrameReader`), and the server's :class:`ClientFrameGuard`.
* :mod:`.payloads`: what payloads mean: UTF-8 text (:func:`decode_text`, section
  8.1), messages from fragments (:class:`MessageAssembler`, section 5.4), close
  frames (:func:`close_payload`, :func:`parse_close`, sections 5.5.1 and 7.4).
* :mod:`.display`: frames for people to read (:func:`describe`, :func:`payload_preview`).

The lab server uses two things from here on its hot paths:
:func:`server_text_frame` (one unmasked frame, built once and written to every
recipient of a broadcast) and :class:`ClientFrameGuard` (enforces section 5.1,
"a server MUST close the connection upon receiving a frame that is not masked",
which aiohttp does not). Lesson 03 reads frames with the rest.
"""

from __future__ import annotations

from .codec import (
    CloseCode,
    Frame,
    FrameError,
    FrameHeader,
    Opcode,
    apply_mask,
    opcode_name,
    parse_header,
    server_text_frame,
)
from .display import describe, payload_preview
from .payloads import (
    Close,
    Message,
    MessageAssembler,
    close_code_name,
    close_payload,
    decode_text,
    is_valid_close_code,
    parse_close,
)
from .stream import ClientFrameGuard, FrameReader, WireFrame

__all__ = [
    "ClientFrameGuard",
    "Close",
    "CloseCode",
    "Frame",
    "FrameError",
    "FrameHeader",
    "FrameReader",
    "Message",
    "MessageAssembler",
    "Opcode",
    "WireFrame",
    "apply_mask",
    "close_code_name",
    "close_payload",
    "decode_text",
    "describe",
    "is_valid_close_code",
    "opcode_name",
    "parse_close",
    "parse_header",
    "payload_preview",
    "server_text_frame",
]
