"""Frames for people to read: one line per frame, and a short view of a payload.

The codec turns bytes into frames; this module turns frames into text for lesson
03, the frame tap and its inspector. It decides nothing about the protocol: a
close payload is read with :func:`~labserver.frames.parse_close` (RFC 6455 section
5.5.1) and named with :func:`~labserver.frames.close_code_name` (section 7.4), and
whatever cannot be read is shown as bytes rather than refused.
"""

from __future__ import annotations

from .codec import Frame, FrameError, Opcode
from .payloads import close_code_name, parse_close

__all__ = ["describe", "payload_preview"]


def _shorten_text(text: str, limit: int) -> str:
    """``repr(text)``, cut so that its characters between the quotes are at most ``limit``."""
    shown = repr(text)
    if len(shown) <= limit + 2:
        return shown
    cut = text[:limit]
    while cut and len(repr(cut)) > limit + 2:  # escapes (\x00, \u2028...) take several characters
        cut = cut[:-1]
    return repr(cut) + "\u2026"


def _shorten_hex(data: bytes, limit: int) -> str:
    """The first bytes in hex, as many as fit in about ``limit`` characters."""
    shown = data[: max(limit // 3, 1)]
    return shown.hex(" ") + (" \u2026" if len(shown) < len(data) else "")


def payload_preview(frame: Frame, limit: int = 40) -> str:
    """A short view of the payload: text quoted, binary in hex, a close frame's code and reason."""
    payload = frame.payload
    if frame.opcode is Opcode.CLOSE:
        try:
            close = parse_close(payload)
        except FrameError:
            return "invalid close payload: " + _shorten_hex(payload, limit)
        text = f"{close.code} {close_code_name(close.code)}"
        return f"{text} {_shorten_text(close.reason, limit)}" if close.reason else text
    if not payload:
        return ""
    if frame.opcode is Opcode.BINARY:
        return _shorten_hex(payload, limit)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        # not UTF-8: binary data, or a text fragment cut inside a character, or bad text
        return _shorten_hex(payload, limit)
    return _shorten_text(text, limit)


def describe(frame: Frame, limit: int = 40) -> str:
    """One line for a frame: ``TEXT · FIN · masked (key 37fa213d) · 5 bytes · 'Hello'``."""
    parts = [frame.opcode.name, "FIN" if frame.fin else "no FIN (more fragments follow)"]
    rsv = [name for name, bit in (("RSV1", frame.rsv1), ("RSV2", frame.rsv2), ("RSV3", frame.rsv3)) if bit]
    parts += rsv
    parts.append("unmasked" if frame.masking_key is None else f"masked (key {frame.masking_key.hex()})")
    n = len(frame.payload)
    parts.append(f"{n} byte" if n == 1 else f"{n} bytes")
    preview = payload_preview(frame, limit)
    if preview:
        parts.append(preview)
    return " \u00b7 ".join(parts)
