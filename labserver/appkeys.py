"""What the REST and WebSocket handlers share: the app's state, the admin check, JSON errors.

Both halves of the hybrid (``rest.py`` and ``ws.py``) import this module and not
each other. An HTTP error body is always ``{"error": code, "message": text}``,
whether it answers a REST call or refuses a WebSocket handshake.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from aiohttp import web

from .lab import Lab

__all__ = ["LAB", "MAX_CLOSE_REASON_BYTES", "error_response", "is_admin"]

LAB: web.AppKey[Lab] = web.AppKey("lab", Lab)

MAX_CLOSE_REASON_BYTES = 123
"""RFC 6455 section 5.5: a control frame's payload is at most 125 bytes, two of them the code."""


def is_admin(request: web.Request) -> bool:
    """The instructor's token, in ``X-Admin-Token`` or (for WebSockets) ``?admin_token=``."""
    expected = request.app[LAB].settings.admin_token
    given = request.headers.get("X-Admin-Token") or request.query.get("admin_token") or ""
    return bool(expected) and hmac.compare_digest(given.encode(), (expected or "").encode())


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """An HTTP error as JSON ``{"error": code, "message": message}``."""
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)
