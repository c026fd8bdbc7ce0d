"""``python -m labserver``: run the lab server.

The first line on stdout names the URL it listens on, so a parent process (the
notebook's ``start_lab``, the tests) can read the port chosen with ``--port 0``.
SIGINT and SIGTERM (and Ctrl+Break's SIGBREAK on Windows) close every socket with
1001 and exit 0; so does EOF on stdin with ``--exit-on-stdin-eof``, which is how a
parent that dies (even by SIGKILL) takes its lab server with it, on every OS (see
:mod:`labserver.launcher`). A parent that means to start the server again writes the
line ``restart`` on that stdin first: the sockets are then closed with 1012. Nothing
here needs ``/proc`` or a Linux-only call: the same server runs on Windows, macOS and
Linux desktops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import re
import secrets
import signal
import ssl
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from . import __version__
from .aiohttp_compat import ConnectionGuard, GuardedAppRunner, deepen_backlog
from .app import LISTEN_BACKLOG, make_app, read_or_create, tune_gc
from .appkeys import LAB
from .config import Settings, normalized_join_code
from .redis_broker import BrokerUnavailable, RedisBroker
from .resources import raise_open_files_limit


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not usage + message: easy to read in a notebook cell or a log.
        self.exit(2, f"labserver: error: {message} (see --help)\n")


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    """An argparse type: ``kind(text)`` (int or float), which must be > 0."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {getattr(kind, '__name__', 'number')}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def _seconds_or_zero(text: str) -> float:
    """An argparse type: seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid float") from None
    if not value >= 0 or value == float("inf"):  # NaN fails the first test
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _allowed_hosts(names: list[str]) -> tuple[str, ...]:
    """The ``--allowed-host`` names; any Host inside a JupyterHub or Binder single-user server.

    There jupyter-server-proxy forwards the browser's Host (the hub's name) unchanged, and
    the lab's loopback port is reachable only through that proxy, behind the hub's login:
    no page can re-point a name at it."""
    if os.environ.get("JUPYTERHUB_SERVICE_PREFIX") is not None:
        return (*names, "*")
    return tuple(names)


def _count_or_zero(text: str) -> int:
    """An argparse type: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid int") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def tls_context(certfile: Path, keyfile: Path) -> ssl.SSLContext:
    """The server's TLS context for ``--certfile``/``--keyfile`` (TLS 1.2 or newer).

    Raises ValueError with one line that says which file is wrong and why: OpenSSL's own
    messages (``[SSL] PEM lib (_ssl.c:3900)``) name neither file."""
    for flag, path in (("--certfile", certfile), ("--keyfile", keyfile)):
        try:
            path.read_bytes()
        except OSError as exc:
            raise ValueError(f"argument {flag}: cannot read {path}: {exc.strerror}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            why = f"the private key in {keyfile} does not match the certificate in {certfile}"
        else:
            why = f"{certfile} must hold a PEM certificate and {keyfile} its PEM private key"
        raise ValueError(f"argument --certfile/--keyfile: {why}") from None
    return context


def _node_name(text: str) -> str:
    """A node name: it travels in every routed message's one-line header, so no spaces."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", text):
        raise argparse.ArgumentTypeError(f"node name {text!r}: 1 to 64 letters, digits, '_', '.' or '-'")
    return text


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {port}")
    return port


# The numeric settings, each > 0: (flag, Settings field, int or float, what it is).
_TUNABLES: tuple[tuple[str, str, Callable[[str], float], str], ...] = (
    (
        "--ping-interval",
        "ping_interval",
        float,
        "seconds a socket may stay silent before the server pings it (PROTOCOL.md section 8); one that "
        "answers nothing, no pong nor any other data, within half of that is dropped; the start value of "
        "the live switch (section 11)",
    ),
    ("--auth-timeout", "auth_timeout", float, "seconds to authenticate"),
    ("--token-ttl", "token_ttl", float, "token lifetime in seconds"),
    ("--max-message-bytes", "max_message_bytes", int, "close 1009 above this"),
    ("--rate", "rate_per_second", float, "messages/s per socket"),
    ("--burst", "rate_burst", int, "burst per socket"),
    ("--typing-ttl", "typing_ttl", float, "typing expiry in seconds"),
    ("--send-buffer-limit", "send_buffer_limit", int, "bytes queued to a slow reader before it is dropped"),
    ("--resume-limit", "resume_limit", int, "most messages a resume replays"),
    (
        "--rest-rate",
        "rest_rate_per_second",
        float,
        "REST writes/s per user, sustained (over it: 429); default: 20 beyond loopback, no limit on loopback",
    ),
    ("--rest-burst", "rest_burst", int, "REST write burst per user"),
    ("--uploads-per-user", "uploads_per_user", int, "uploads one user may send at once"),
    (
        "--upload-quota-bytes",
        "upload_quota_bytes",
        int,
        "bytes of new images one user may store while the server runs",
    ),
    (
        "--header-timeout",
        "header_timeout",
        float,
        "seconds a connection may take to send a whole request head, or stay idle, before it is closed",
    ),
)


def parse_args(argv: list[str] | None = None) -> tuple[Settings, bool]:
    """The server's settings, and whether to exit at EOF on stdin (a process matter, not a setting)."""
    defaults = Settings()
    p = _Parser(
        prog="python -m labserver",
        description="The WebSocket course's lab server (REST + WebSocket on one port).",
        epilog="Environment: LABSERVER_ADMIN_TOKEN, if set, is the instructor's admin token. It turns on the "
        "admin API (closing or aborting a student's connection live) and locks /observe, the live view of "
        "the server, to clients that present it; without it the admin API answers 403 and /observe is open "
        "to anyone. An environment variable rather than a flag, so that it does not show in the process list.",
    )
    p.add_argument("--version", action="version", version=f"labserver {__version__}")
    p.add_argument("--host", default=defaults.host, help="interface to listen on (default %(default)s)")
    p.add_argument("--port", type=_port, default=defaults.port, help="port; 0 picks a free one (default %(default)s)")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=defaults.data_dir,
        help="SQLite database, uploads and key (default %(default)s)",
    )
    p.add_argument(
        "--origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="extra browser origin allowed to open WebSockets, e.g. http://localhost:8888; '*' allows any",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name (the Host header) the lab answers besides localhost and IP addresses, e.g. the "
        "name students type on a classroom LAN; repeatable; '*' answers any (PROTOCOL.md section 2)",
    )
    for flag, field, kind, text in _TUNABLES:
        default = getattr(defaults, field)
        metavar = flag.removeprefix("--").replace("-", "_").upper()
        p.add_argument(
            flag, dest=field, metavar=metavar, type=_positive(kind), default=default, help=f"{text} (default {default})"
        )
    p.add_argument(
        "--presence-grace",
        type=_seconds_or_zero,
        default=defaults.presence_grace,
        metavar="PRESENCE_GRACE",
        help="seconds before a user whose last socket closed is announced offline (and leaves their rooms); "
        "a socket of theirs opening meanwhile cancels it, so a refresh does not flap. The start value of the "
        f"live switch (PROTOCOL.md section 11; default {defaults.presence_grace})",
    )
    p.add_argument(
        "--max-unfinished-per-ip",
        type=_count_or_zero,
        default=defaults.max_unfinished_per_ip,
        metavar="N",
        help="connections one client IP may hold open outside a request (sending headers, or idle) before "
        "new ones get 503; 0: no limit (default: 256 when listening beyond loopback, no limit on loopback)",
    )
    p.add_argument(
        "--max-sockets-per-user",
        type=_count_or_zero,
        default=defaults.max_sockets_per_user,
        metavar="N",
        help="open /ws sockets one user may have; a new one over it is closed 1008; 0: no limit "
        "(default: 16 when listening beyond loopback, no limit on loopback)",
    )
    p.add_argument(
        "--max-streams-per-user",
        type=_count_or_zero,
        default=defaults.max_streams_per_user,
        metavar="N",
        help="open Server-Sent Events streams one user may have; over it 429; 0: no limit "
        "(default: 8 when listening beyond loopback, no limit on loopback)",
    )
    p.add_argument(
        "--signups-per-minute",
        dest="signups_per_minute_per_ip",
        type=_seconds_or_zero,
        default=defaults.signups_per_minute_per_ip,
        metavar="N",
        help="sign-ups one client IP may make per minute (burst 10), over it 429; 0: no limit "
        "(default: 30 when listening beyond loopback, no limit on loopback)",
    )
    p.add_argument(
        "--certfile",
        type=Path,
        metavar="PEM",
        help="serve TLS (https:// and wss://) with this PEM certificate chain; needs --keyfile",
    )
    p.add_argument("--keyfile", type=Path, metavar="PEM", help="the PEM private key of --certfile")
    p.add_argument(
        "--join-code",
        metavar="CODE",
        help="class mode: sign-ups need this code (4-32 letters or digits; case, spaces and dashes ignored); "
        "`python3 course.py class` makes one",
    )
    p.add_argument(
        "--accounts-per-code",
        type=_positive(int),
        default=defaults.accounts_per_code,
        metavar="N",
        help=f"accounts the join code may make per server run, over it 403 class_full "
        f"(default {defaults.accounts_per_code})",
    )
    p.add_argument(
        "--accounts-per-student",
        type=_positive(int),
        default=defaults.accounts_per_student,
        metavar="N",
        help=f"class mode: lesson accounts (<student>.<name>) one student may make per server run, "
        f"over it 403 too_many_accounts (default {defaults.accounts_per_student})",
    )
    p.add_argument(
        "--redis",
        metavar="URL",
        help="share rooms, chat, DMs and presence with the other lab processes on this Redis, "
        "e.g. redis://127.0.0.1:6379/0 (they must share --data-dir); default: this process alone",
    )
    p.add_argument("--node", type=_node_name, help="this process's name in /healthz and welcome (default p<pid>)")
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="exit as on SIGTERM (sockets closed with 1001) when stdin reaches EOF: a parent holding "
        "the other end of a pipe takes the server with it when it dies, even by SIGKILL",
    )
    args = p.parse_args(argv)
    if (args.certfile is None) != (args.keyfile is None):
        p.error("--certfile and --keyfile go together")
    if args.certfile is not None:
        try:
            tls_context(args.certfile, args.keyfile)  # a bad file is a one-line error now, not at the first client
        except ValueError as exc:
            p.error(str(exc))
    if args.join_code is not None and not re.fullmatch(r"[A-Z0-9]{4,32}", normalized_join_code(args.join_code)):
        p.error(f"--join-code must be 4-32 letters or digits (spaces and dashes ignored), got {args.join_code!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=args.log_level, handlers=[handler])
    return Settings(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        origins=tuple(args.origin),
        allowed_hosts=_allowed_hosts(args.allowed_host),
        presence_grace=args.presence_grace,
        max_unfinished_per_ip=args.max_unfinished_per_ip,
        max_sockets_per_user=args.max_sockets_per_user,
        max_streams_per_user=args.max_streams_per_user,
        signups_per_minute_per_ip=args.signups_per_minute_per_ip,
        certfile=args.certfile,
        keyfile=args.keyfile,
        join_code=args.join_code,
        accounts_per_code=int(args.accounts_per_code),
        accounts_per_student=int(args.accounts_per_student),
        redis_url=args.redis,
        node=args.node,
        **{field: getattr(args, field) for _, field, _, _ in _TUNABLES},
        admin_token=os.environ.get("LABSERVER_ADMIN_TOKEN") or None,
    ), args.exit_on_stdin_eof


# A JWT (its header always starts with '{"', base64 "eyJ"), a token= or admin_token= value, a
# Bearer credential, or an X-Admin-Token header value in any spelling aiohttp may log: any case,
# spaces or a tab around the colon, no space at all, or quoted as in a repr of the headers.
_SECRETS = re.compile(
    r"eyJ[\w-]*\.[\w-]*\.[\w-]*"
    r"|(?<=token=)[^&\s'\"]+"
    r"|(?i:(?<=bearer)[ \t]+)[^\s'\"]+"
    r"|(?i:x-admin-token)['\"]?[ \t]*[:=,][ \t]*['\"]?[^\s'\"]+"
)


def _redact(match: re.Match[str]) -> str:
    text = match.group(0)
    if text[:1].lower() == "x":  # keep the header's name, hide its value
        name_and_colon = re.match(r"(?i)x-admin-token['\"]?[ \t]*[:=,][ \t]*['\"]?", text)
        assert name_and_colon is not None
        return name_and_colon.group(0) + "<redacted>"
    if text[:1] in " \t":  # after "Bearer": keep the space
        return text[: len(text) - len(text.lstrip(" \t"))] + "<redacted>"
    return "<redacted>"


class RedactingFormatter(logging.Formatter):
    """Every log line, tracebacks included, with credentials replaced by ``<redacted>``.

    Not only our own messages: aiohttp logs a malformed request (a bad method, an
    overlong line) with its raw request line and headers, token and all."""

    def format(self, record: logging.LogRecord) -> str:
        return _SECRETS.sub(_redact, super().format(record))


class AccessLogger(AbstractAccessLogger):
    """Access log without query strings: tokens travel in ``?token=`` and must never be logged."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info('%s "%s %s" %s %.3fs', request.remote, request.method, request.path, response.status, time)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


RESTART_LINE = b"restart"
"""What a parent writes on the server's stdin (a line) before closing it, to stop it for a restart."""


def stop_at_stdin_eof(
    loop: asyncio.AbstractEventLoop, stop: asyncio.Event, on_restart: Callable[[], None] | None = None
) -> None:
    """Set ``stop`` when stdin reaches EOF, i.e. when the last writer of its pipe (our parent) is gone.

    A line ``restart`` before the EOF calls ``on_restart`` (in the loop) first: the parent
    will start the server again, so clients are told 1012 rather than 1001. Other input
    is ignored. A daemon thread blocked in ``os.read``, not ``loop.add_reader``: Windows'
    proactor loop cannot watch a pipe. ``os.read``, not ``sys.stdin``: it holds no lock
    that a daemon thread still reading at interpreter exit would leave taken."""

    def watch() -> None:
        pending = b""
        try:
            while chunk := os.read(sys.stdin.fileno(), 4096):
                *lines, pending = (pending + chunk).split(b"\n")
                pending = pending[-64:]  # a parent never sends long lines: keep only a bounded tail
                if on_restart is not None and any(line.strip() == RESTART_LINE for line in lines):
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(on_restart)
        except (OSError, ValueError, AttributeError):
            pass  # no usable stdin at all: as good as closed
        with contextlib.suppress(RuntimeError):  # the loop is already closed: we are stopping anyway
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch, daemon=True, name="labserver-stdin-eof").start()


# The signals that stop the server: SIGINT (Ctrl+C), SIGTERM, and Windows' SIGBREAK (Ctrl+Break).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGBREAK") if hasattr(signal, name))


@contextlib.contextmanager
def stop_on_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> Iterator[None]:
    """Set ``stop`` on SIGINT, SIGTERM or SIGBREAK while inside this block.

    ``loop.add_signal_handler`` where the loop has it (Unix). Windows' event loops
    do not (NotImplementedError): there ``signal.signal`` handlers do the same, handing
    the work to the loop with ``call_soon_threadsafe``, which also wakes it. A signal
    the OS does not let us handle is skipped. (Windows takes a SIGTERM handler but never
    runs it for another process's "terminate", which is TerminateProcess: a parent stops
    the server gracefully by closing its stdin, see :meth:`LabProcess.stop`.) The
    previous handlers are put back on the way out."""
    added: list[signal.Signals] = []
    previous: dict[signal.Signals, Any] = {}

    def handle(signum: int, frame: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop already closed: we are stopping anyway
            loop.call_soon_threadsafe(stop.set)

    try:
        for sig in STOP_SIGNALS:
            try:
                loop.add_signal_handler(sig, stop.set)
                added.append(sig)
            except NotImplementedError:
                try:
                    previous[sig] = signal.signal(sig, handle)
                except (OSError, ValueError):  # not settable on this OS
                    pass
        yield
    finally:
        for sig in added:
            loop.remove_signal_handler(sig)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


async def serve(settings: Settings, *, exit_on_stdin_eof: bool = False) -> None:
    if settings.redis_url is not None:
        try:  # a typo or a Redis that is down is one line now, not a retry loop behind a started server
            await RedisBroker.probe(settings.redis_url)
        except BrokerUnavailable as exc:
            raise SystemExit(f"labserver: error: --redis: {exc}") from None
    app = make_app(settings)
    tune_gc()  # process-wide: here, where the process is the server's
    runner = GuardedAppRunner(
        app,
        ConnectionGuard(settings.unfinished_limit),
        handle_signals=False,
        shutdown_timeout=5,
        access_log_class=AccessLogger,
        keepalive_timeout=settings.header_timeout,  # also the time to send a request head: slowloris
    )
    await runner.setup()
    # SO_REUSEADDR lets a restarted server take its port back at once on POSIX; on Windows it
    # would let a second server bind a port that is in use (no "cannot listen" error): POSIX only.
    tls = None
    if settings.certfile is not None and settings.keyfile is not None:
        tls = tls_context(settings.certfile, settings.keyfile)
    site = web.TCPSite(runner, settings.host, settings.port, reuse_address=os.name == "posix", ssl_context=tls)
    try:
        await site.start()
        deepen_backlog(site, LISTEN_BACKLOG)  # crowds connecting at once: see LISTEN_BACKLOG
    except OSError as exc:
        await runner.cleanup()
        raise SystemExit(
            f"labserver: error: cannot listen on {settings.host}:{settings.port}: {exc.strerror}"
        ) from None
    host, port = runner.addresses[0][:2]
    shown = f"[{host}]" if ":" in host else host
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with stop_on_signals(loop, stop):  # before the ready line: a parent may signal at once
        if exit_on_stdin_eof:
            stop_at_stdin_eof(loop, stop, lambda: app[LAB].stopping_for_restart())
        s = "s" if tls is not None else ""
        print(f"labserver listening on http{s}://{shown}:{port} (WebSocket ws{s}://{shown}:{port}/ws)", flush=True)
        await stop.wait()
        await runner.cleanup()  # on_shutdown closes every socket with 1001 (1012 for a restart)


ADMIN_TOKEN_FILE = "admin-token"
"""Where a lab listening beyond loopback without ``LABSERVER_ADMIN_TOKEN`` keeps the one it made."""


def class_mode_admin_token(settings: Settings) -> Settings:
    """``settings`` with an admin token whenever the server is reachable from other machines.

    On a shared network ``/observe`` and the admin API must never be open: without
    ``LABSERVER_ADMIN_TOKEN`` the lab makes one (or reuses the one it made before), keeps it
    in ``<data dir>/admin-token`` (mode 0600) and says where on stderr, not the token itself."""
    if settings.admin_token or settings.loopback_only:
        return settings
    path = settings.data_dir / ADMIN_TOKEN_FILE
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if not token:  # made once: processes sharing the data dir (--redis) share it
        path.unlink(missing_ok=True)  # an empty file left by a crash
        token = read_or_create(path, lambda: secrets.token_urlsafe(24))
    print(
        f"labserver: listening on {settings.host}, beyond loopback: /observe and the admin API need the admin "
        f"token in {path} (or set LABSERVER_ADMIN_TOKEN)",
        file=sys.stderr,
        flush=True,
    )
    return dataclasses.replace(settings, admin_token=token)


def main(argv: list[str] | None = None) -> None:
    settings, exit_on_stdin_eof = parse_args(argv)
    settings = class_mode_admin_token(settings)
    raise_open_files_limit()  # every socket is a file: 256 by default on macOS, 1024 on many Linux desktops
    asyncio.run(serve(settings, exit_on_stdin_eof=exit_on_stdin_eof))


if __name__ == "__main__":
    main()
