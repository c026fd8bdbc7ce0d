"""Settings of one lab server process: :class:`Settings`, fixed at start-up, and
:class:`Switches`, the few knobs an instructor (or a lesson) turns while the lab runs."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8765  # 0 picks a free port
    data_dir: Path = Path("lab-data")
    # Origins allowed to open /ws besides the server's own host; "*" allows any.
    origins: tuple[str, ...] = ()
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
    typing_ttl: float = 5.0  # a typing indicator expires by itself after this
    typing_min_interval: float = 1.0  # typing is re-broadcast at most this often
    send_buffer_limit: int = 1024 * 1024  # bytes queued to one slow reader before it is dropped
    resume_limit: int = 1000  # resume replays at most this many messages, else "resync"
    upload_max_bytes: int = 5 * 1024 * 1024
    long_poll_max_seconds: float = 30.0
    stats_interval: float = 1.0
    # Enables POST /api/admin/sockets/{id}/close (an instructor drops a connection
    # live). Passed in the LABSERVER_ADMIN_TOKEN environment variable, never a flag,
    # so it does not show in the process list.
    admin_token: str | None = None

    @property
    def database_path(self) -> Path:
        return self.data_dir / "lab.sqlite3"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def secret_path(self) -> Path:
        return self.data_dir / "jwt-secret"


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

    @classmethod
    def of(cls, settings: Settings) -> Switches:
        """The start values: from the flags where there is one, else the defaults."""
        return cls(ping_interval=settings.ping_interval, presence_grace=settings.presence_grace)

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
    known = ", ".join(f.name for f in dataclasses.fields(Switches))
    raise SwitchError(f"unknown switch {name!r} (the switches: {known})")
