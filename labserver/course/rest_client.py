"""``RestClient``: blocking calls to a lab server's REST API, standard library only.

For a notebook cell or a test that wants one answer now, with no event loop::

    rest = RestClient("http://127.0.0.1:8765", admin_token="...")
    alice = rest.account("alice")                  # sign up, or log in if she exists
    rest.request("GET", "/api/me", token=alice.token)   # (200, {"user": {...}})
    rest.health()["messages_in"]

The handle :func:`~labserver.course.start_lab` returns has one inside (its
``account()``, ``health()``... are this class's). Asyncio code (``Crowd``, the
polling experiments) uses aiohttp instead, so a thousand requests do not need a
thousand threads. Every endpoint is in labserver/PROTOCOL.md.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["DEFAULT_PASSWORD", "Account", "RestClient"]

DEFAULT_PASSWORD = "lab-password"
"""The password :meth:`RestClient.account` signs users up with unless told otherwise."""


@dataclass(frozen=True, slots=True)
class Account:
    """A signed-up user of the lab: their token and public profile."""

    token: str
    user: dict[str, Any]

    @property
    def id(self) -> int:
        return int(self.user["id"])

    @property
    def username(self) -> str:
        return str(self.user["username"])


@dataclass(frozen=True, slots=True)
class RestClient:
    """Blocking JSON requests to the lab server at ``base_url`` (``http://host:port``).

    ``admin_token`` (the server's ``LABSERVER_ADMIN_TOKEN``) is needed by the admin
    calls only: :meth:`users`, :meth:`user` and :meth:`drop`.
    """

    base_url: str
    admin_token: str | None = None
    timeout: float = 30.0
    ssl_context: ssl.SSLContext | None = None  # for https://: whom to trust (a lesson's own CA); None: the system's
    join_code: str | None = None  # class mode: what account() signs up with (PROTOCOL.md, POST /api/signup)

    def request(
        self, method: str, path: str, body: Any = None, token: str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """One request, with ``body`` sent as JSON and ``token`` as a Bearer credential.

        Returns ``(status, decoded JSON body)``, for error statuses too (a body that is
        not JSON comes back as text): a test checks a 401 as easily as a 200."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers or {})
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.ssl_context) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                return err.code, json.loads(raw)
            except ValueError:
                return err.code, raw.decode(errors="replace")

    def account(self, username: str, password: str = DEFAULT_PASSWORD) -> Account:
        """Sign up ``username``, or log in if it exists already."""
        credentials = {"username": username, "password": password}
        code = {"code": self.join_code} if self.join_code else {}
        status, body = self.request("POST", "/api/signup", {**credentials, **code})
        if status == 409:
            status, body = self.request("POST", "/api/login", credentials)
        if status not in (200, 201):
            raise RuntimeError(f"could not sign up or log in {username!r}: {status} {body}")
        return Account(body["token"], body["user"])

    def health(self) -> dict[str, Any]:
        """GET /healthz: ``status``, ``uptime_s`` and the server's counters (sockets, messages...)."""
        status, body = self.request("GET", "/healthz")
        if status != 200:
            raise RuntimeError(f"/healthz answered {status}: {body}")
        return dict(body)

    def users(self) -> list[dict[str, Any]]:
        """Every user with ``online`` and the number of open ``sockets`` (GET /api/users)."""
        status, body = self.request("GET", "/api/users", headers=self._admin_headers())
        if status != 200:
            raise RuntimeError(f"/api/users answered {status}: {body}")
        return list(body["users"])

    def user(self, username: str) -> dict[str, Any]:
        """One entry of :meth:`users`, by username (case-insensitive, as the server compares them)."""
        for user in self.users():
            if str(user["username"]).lower() == username.lower():
                return dict(user)
        raise KeyError(username)

    def drop(self, socket_id: str, mode: Literal["abort", "close"] = "abort") -> dict[str, Any]:
        """Drop one connection server-side: ``abort`` it as a network failure would, or
        ``close`` it with a close frame. Needs ``admin_token``."""
        if not self.admin_token:
            raise RuntimeError("start the lab with an admin_token to drop connections")
        status, body = self.request(
            "POST", f"/api/admin/sockets/{socket_id}/close?mode={mode}", headers=self._admin_headers()
        )
        if status != 200:
            raise RuntimeError(f"could not drop {socket_id}: {status} {body}")
        return dict(body)

    def _admin_headers(self) -> dict[str, str]:
        return {"X-Admin-Token": self.admin_token or ""}
