"""The opening handshake (RFC 6455 section 4), as pure functions.

aiohttp performs the upgrade; these checks run before it so that the lab server
answers exactly as the RFC asks where aiohttp does not:

* a ``Sec-WebSocket-Version`` other than 13 gets ``426 Upgrade Required`` with
  ``Sec-WebSocket-Version: 13`` (section 4.4), not a bare 400;
* a browser ``Origin`` that is neither the server's own host nor allowlisted gets
  ``403`` (section 10.2: the Origin header protects against cross-site use).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # section 1.3
SUPPORTED_VERSION = "13"

SUBPROTOCOLS: tuple[str, ...] = ("lab.v1",)
"""Subprotocols ``/ws`` speaks (section 1.9): ``lab.v1`` is the JSON protocol of PROTOCOL.md.
The server answers one only when the client offered it, and omits the header otherwise
(section 4.2.2, step 5.4 /subprotocol/)."""


def select_subprotocol(offered: str | None, supported: Iterable[str] = SUBPROTOCOLS) -> str | None:
    """The subprotocol to answer for a ``Sec-WebSocket-Protocol`` request header, or None.

    The client lists its choices in order of preference, comma-separated; the server
    picks the first it supports. Names are compared exactly (they are case-sensitive
    tokens), and a server must never answer a name the client did not offer.
    """
    if not offered:
        return None
    known = set(supported)
    return next((name for name in (part.strip() for part in offered.split(",")) if name in known), None)


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key`` (section 4.2.2, step 5.4)."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


@dataclass(frozen=True, slots=True)
class Refusal:
    """An HTTP answer instead of ``101 Switching Protocols``."""

    status: int
    code: str
    message: str
    headers: tuple[tuple[str, str], ...] = ()


def key_is_valid(key: str | None) -> bool:
    """Section 4.1: the key is 16 random bytes, base64-encoded (24 characters)."""
    if not key:
        return False
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        return False


def origin_allowed(origin: str | None, host: str | None, allowlist: Iterable[str]) -> bool:
    """Whether a handshake's Origin may open a socket.

    No Origin header means a non-browser client (Python, curl), which the Origin
    check cannot protect against anyway: allowed. A browser page from the server's
    own host:port is allowed, as is any origin in ``allowlist`` (exact
    ``scheme://host[:port]`` match, or ``*``). Matching is exact, never by prefix
    or suffix, so ``http://example.com.evil.com`` does not pass for ``example.com``.
    """
    if origin is None:
        return True
    allowed = {o.rstrip("/").lower() for o in allowlist}
    if "*" in allowed or origin.lower() in allowed:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc or not host:
        return False
    return parts.netloc.lower() == host.lower()


def _count(headers: Mapping[str, str], name: str) -> int:
    """How many times a header appears (a multidict such as aiohttp's knows; a dict: once)."""
    getall = getattr(headers, "getall", None)
    return len(getall(name, [])) if getall is not None else int(name in headers)


def check_upgrade(
    headers: Mapping[str, str], allowlist: Iterable[str], http_version: tuple[int, int] = (1, 1)
) -> Refusal | None:
    """Refuse a WebSocket handshake before the upgrade, or return None to go ahead."""
    upgrading = headers.get("Upgrade", "").lower() == "websocket"
    if upgrading and tuple(http_version) < (1, 1):
        return Refusal(400, "bad_http_version", "a WebSocket handshake needs HTTP/1.1 or later (RFC 6455 section 4.1)")
    for name in ("Sec-WebSocket-Key", "Sec-WebSocket-Version"):
        if upgrading and _count(headers, name) > 1:
            return Refusal(400, "repeated_header", f"{name} must appear once (RFC 6455 section 11.3)")
    version = headers.get("Sec-WebSocket-Version")
    if upgrading and version != SUPPORTED_VERSION:
        return Refusal(
            426,
            "unsupported_version",
            f"Sec-WebSocket-Version {version!r} is not supported; this server speaks {SUPPORTED_VERSION}"
            if version is not None
            else f"Sec-WebSocket-Version is missing; this server speaks {SUPPORTED_VERSION}",
            (("Sec-WebSocket-Version", SUPPORTED_VERSION),),
        )
    if upgrading and not key_is_valid(headers.get("Sec-WebSocket-Key")):
        return Refusal(400, "bad_key", "Sec-WebSocket-Key must be 16 random bytes in base64 (RFC 6455 section 4.1)")
    if not origin_allowed(headers.get("Origin"), headers.get("Host"), allowlist):
        return Refusal(403, "forbidden_origin", f"Origin {headers.get('Origin')!r} is not allowed")
    return None
