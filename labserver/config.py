"""Settings of one lab server process: :class:`Settings`, fixed at start-up, and
:class:`Switches`, the few knobs an instructor (or a lesson) turns while the lab runs."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8765  # 0 picks a free port
    data_dir: Path = Path("lab-data")
    # Origins allowed to open /ws besides the server's own host; "*" allows any.
    origins: tuple[str, ...] = ()
    # Host header names answered besides localhost and IP addresses (DNS rebinding); "*": any.
    allowed_hosts: tuple[str, ...] = ()
    # RFC 6455 section 5.5.2: the server pings this often and drops a peer whose
    # pong has not come back within half the interval.
    ping_interval: float = 20.0
    # Seconds a user's "offline" (and their member_left) waits after their last socket
    # closes: a refresh or a quick reconnect does not flap presence. 0: at once.
    presence_grace: float = 0.0
    auth_timeout: float = 5.0  # seconds to send {"type": "auth"} when no ?token=
    token_ttl: float = 3600.0
    max_message_bytes: int = 64 * 1024  # larger messages are closed with 1009
    rate_per_second: float = 20.0  # per socket, sustained
    rate_burst: int = 40
    rate_strikes_before_close: int = 40  # rejected messages before closing 1008
    # Per user: REST writes (POST, PATCH, DELETE under /api, with a bearer token) per second
    # and their burst; over it, 429 with Retry-After. WebSocket messages have their own limit.
    # None: 20/s beyond loopback, no limit on loopback (a lesson's checks post fast from one user).
    rest_rate_per_second: float | None = None
    rest_burst: int = 40
    # Open /ws sockets per user; over it a new one is closed 1008. None: 16 when listening
    # beyond loopback (class mode), no limit on loopback (a lesson's crowd shares accounts).
    max_sockets_per_user: int | None = None
    # Open Server-Sent Events streams per user; over it 429. None: 8 beyond loopback, no limit on
    # loopback (lesson 01 opens a thousand streams with one account).
    max_streams_per_user: int | None = None
    # Sign-ups per client IP per minute (burst 10). None: 30 beyond loopback, no limit on loopback.
    signups_per_minute_per_ip: float | None = None
    typing_ttl: float = 5.0  # a typing indicator expires by itself after this
    typing_min_interval: float = 1.0  # typing is re-broadcast at most this often
    send_buffer_limit: int = 1024 * 1024  # bytes queued to one slow reader before it is dropped
    resume_limit: int = 1000  # resume replays at most this many messages, else "resync"
    upload_max_bytes: int = 5 * 1024 * 1024
    uploads_per_user: int = 2  # uploads one user may send at once; more: 429 too_many_uploads
    # Bytes of new images one user may store (per server run: the count starts at 0 at start-up).
    upload_quota_bytes: int = 50 * 1024 * 1024
    long_poll_max_seconds: float = 30.0
    stats_interval: float = 1.0
    # Slow HTTP clients (slowloris): a connection that has not sent a whole request head this
    # long after it opened (or after its previous response) is closed; so is an idle one.
    header_timeout: float = 20.0
    # Connections per client IP open but not inside a request (sending headers, or idle); a
    # new one over it gets 503 at once. None: 256 when listening beyond loopback, else no limit.
    max_unfinished_per_ip: int | None = None
    # Enables POST /api/admin/sockets/{id}/close (an instructor drops a connection
    # live). Passed in the LABSERVER_ADMIN_TOKEN environment variable, never a flag,
    # so it does not show in the process list.
    admin_token: str | None = None
    # TLS (wss:// and https://): a PEM certificate chain and its private key, both or neither.
    certfile: Path | None = None
    keyfile: Path | None = None
    # Scaling out (PROTOCOL.md section 10): a Redis URL makes processes sharing this data dir
    # share rooms, DMs, notifications and presence; None: this process alone (in-memory broker).
    redis_url: str | None = None
    node: str | None = None  # this process's name in /healthz, welcome and /observe; None: p<pid>
    # Class mode (PROTOCOL.md section 2): with a join code, POST /api/signup needs {"code": ...}
    # and at most accounts_per_code accounts are made with it per server run.
    join_code: str | None = None
    accounts_per_code: int = 100
    # Class mode: lesson accounts a student makes for themself (POST /api/class/accounts, named
    # "<student>.<name>") per server run; they do not use up the join code's accounts.
    accounts_per_student: int = 200

    @property
    def loopback_only(self) -> bool:
        """True when only this machine can connect (``127.0.0.1``, ``::1``, ``localhost``): the
        class-mode rules (admin token, connection caps) apply to every other address."""
        if self.host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:  # a host name other than localhost: whatever it resolves to, treat as exposed
            return False

    def host_allowed(self, host: str | None) -> bool:
        """Whether a request's ``Host`` header names this server, not a DNS-rebinding attacker's name.

        A page of ``http://evil.example:PORT`` whose name the attacker re-points at 127.0.0.1 is
        same-origin with the lab for the browser; only the Host it sends betrays it. Allowed:
        ``localhost``, a loopback IP (any IP when listening beyond loopback: an IP literal is not
        a name anyone can re-point), the names of ``allowed_hosts``, and a request without Host
        (HTTP/1.0, a program: a browser always sends one)."""
        if host is None or "*" in self.allowed_hosts:
            return True
        try:
            name = urlsplit("//" + host).hostname
        except ValueError:  # an unclosed "[" and the like
            return False
        if not name:
            return False
        name = name.rstrip(".")
        if name == "localhost" or name in (h.lower() for h in self.allowed_hosts):
            return True
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return False
        return address.is_loopback or not self.loopback_only

    @property
    def unfinished_limit(self) -> int:
        """The per-IP cap on connections not inside a request in force (0: none)."""
        if self.max_unfinished_per_ip is not None:
            return self.max_unfinished_per_ip
        return 0 if self.loopback_only else 256

    @property
    def sockets_per_user_limit(self) -> int:
        """The cap on one user's open sockets in force (0: none)."""
        if self.max_sockets_per_user is not None:
            return self.max_sockets_per_user
        return 0 if self.loopback_only else 16

    @property
    def rest_rate_limit(self) -> float:
        """REST writes per second per user in force (0: none)."""
        if self.rest_rate_per_second is not None:
            return self.rest_rate_per_second
        return 0.0 if self.loopback_only else 20.0

    @property
    def streams_per_user_limit(self) -> int:
        """The cap on one user's open SSE streams in force (0: none)."""
        if self.max_streams_per_user is not None:
            return self.max_streams_per_user
        return 0 if self.loopback_only else 8

    @property
    def signup_rate_limit(self) -> float:
        """Sign-ups per minute per IP in force (0: none)."""
        if self.signups_per_minute_per_ip is not None:
            return self.signups_per_minute_per_ip
        return 0.0 if self.loopback_only else 30.0

    @property
    def database_path(self) -> Path:
        return self.data_dir / "lab.sqlite3"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def secret_path(self) -> Path:
        return self.data_dir / "jwt-secret"


def normalized_join_code(code: str) -> str:
    """A join code as compared: upper case, without the spaces and dashes people type between groups."""
    return "".join(ch for ch in code.upper() if ch not in " -")


MAX_CHAOS_MS = 10_000  # a chaos switch stalls a chat 10 s at most: enough to show, short of the heartbeat
MIN_MESSAGE_BYTES = 1024  # below it, ordinary chats (a few hundred bytes) would be refused
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class SwitchError(ValueError):
    """A change of switches that is refused; the message names the switch (one line)."""


@dataclass(slots=True)
class Switches:
    """Live knobs of one server process, read where they act and changed with
    ``PATCH /api/admin/switches`` (PROTOCOL.md section 11). Several turn on a
    deliberate bug or an unsafe order, for lessons to show what goes wrong."""

    ping_interval: float = 20.0
    """Heartbeat interval (section 8) of the sockets opened from now on; open ones keep theirs."""
    presence_grace: float = 0.0
    """Seconds before a user whose last socket closed is announced offline (and left their rooms)."""
    leaky_cleanup: bool = False
    """The bug: a closed socket is never removed from the hub's maps (its user stays online for ever)."""
    persist_after_broadcast: bool = False
    """The unsafe order: broadcast and ack a chat first, write it to disk up to a second later."""
    max_connections: int = 0
    """Upgraded /ws sockets allowed at once; over it a new one is closed with 1013. 0: no limit."""
    bug_on_text: str | None = None
    """A chat with exactly this text raises inside its handler (a simulated bug): close 1011."""
    block_ms: int = 0
    """Chaos: each chat handler makes a blocking call (``time.sleep``) this long, on the event loop."""
    cpu_ms: int = 0
    """Chaos: each chat handler does CPU-heavy work (hashing) this long, on the event loop."""
    offload: bool = False
    """The fix of both: the blocking call goes to a thread, the CPU work to a process pool (labserver.chaos)."""
    max_message_bytes: int = 64 * 1024
    """Largest incoming message of the sockets opened from now on (close 1009 above it)."""

    @classmethod
    def of(cls, settings: Settings) -> Switches:
        """The start values: from the flags where there is one, else the defaults."""
        return cls(
            ping_interval=settings.ping_interval,
            presence_grace=settings.presence_grace,
            max_message_bytes=settings.max_message_bytes,
        )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def apply(self, changes: Mapping[str, Any]) -> None:
        """Change the named switches, all or none: every value is checked before any is set.

        Raises :class:`SwitchError` for an unknown name, a wrong type or a value out of range."""
        checked = {name: _checked(name, value) for name, value in changes.items()}
        for name, value in checked.items():
            setattr(self, name, value)


def _checked(name: str, value: Any) -> Any:
    """``value`` if it fits switch ``name`` (ints are accepted for floats), else SwitchError."""
    if name in ("ping_interval", "presence_grace"):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise SwitchError(f"switch {name!r} must be a number of seconds, got {value!r}")
        if name == "ping_interval" and value <= 0:
            raise SwitchError(f"switch 'ping_interval' must be > 0, got {value!r}")
        if value < 0:
            raise SwitchError(f"switch 'presence_grace' must be >= 0, got {value!r}")
        return float(value)
    if name in ("leaky_cleanup", "persist_after_broadcast"):
        if not isinstance(value, bool):
            raise SwitchError(f"switch {name!r} must be true or false, got {value!r}")
        return value
    if name == "max_connections":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SwitchError(f"switch 'max_connections' must be an integer >= 0 (0: no limit), got {value!r}")
        return value
    if name == "bug_on_text":
        if value is not None and (not isinstance(value, str) or not value):
            raise SwitchError(f"switch 'bug_on_text' must be a non-empty string or null, got {value!r}")
        return value
    if name in ("block_ms", "cpu_ms"):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CHAOS_MS:
            raise SwitchError(f"switch {name!r} must be an integer of milliseconds, 0 to {MAX_CHAOS_MS}, got {value!r}")
        return value
    if name == "offload":
        if not isinstance(value, bool):
            raise SwitchError(f"switch 'offload' must be true or false, got {value!r}")
        return value
    if name == "max_message_bytes":
        if isinstance(value, bool) or not isinstance(value, int) or not MIN_MESSAGE_BYTES <= value <= MAX_MESSAGE_BYTES:
            raise SwitchError(
                f"switch 'max_message_bytes' must be an integer of bytes, "
                f"{MIN_MESSAGE_BYTES} to {MAX_MESSAGE_BYTES}, got {value!r}"
            )
        return value
    known = ", ".join(f.name for f in dataclasses.fields(Switches))
    raise SwitchError(f"unknown switch {name!r} (the switches: {known})")
