"""Settings of one lab server process, fixed at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
