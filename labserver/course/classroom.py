"""Class mode: one lab for the whole room (PROTOCOL.md section 2, "Class mode").

The instructor runs one lab with a join code (``python3 course.py class``, or
``start_lab(class_mode=True, host="0.0.0.0")`` in a notebook) and shows its URL and
code; each student joins it once per kernel::

    from labserver.course.classroom import join_lab
    lab = join_lab("http://192.168.1.20:8765/", "K7P-Q2M", name="ana")

``name`` is the student's account on the class's lab (signed up with the code the first time,
logged in to afterwards: its password is kept in :func:`credentials_path`, mode 0600). From then
on ``start_lab()`` in every lesson returns this :class:`SharedLab`, so the lesson's clients and
crowds talk to the class's lab, unchanged: ``lab.account("alice")`` is the student's own
``ana.alice`` (``POST /api/class/accounts``, PROTOCOL.md section 2), never another student's.
A ``Dashboard`` watches the class's public traffic (``/observe`` with the student's token: no
private room, DM pair or text). What only the instructor may do (switches, dropping sockets,
restarting) raises :class:`InstructorOnly`, shown in a notebook as one line, not a traceback.
``leave_class()`` goes back to private labs.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import os
import re
import secrets
import socket
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any, NoReturn

from .rest_client import DEFAULT_PASSWORD, Account, RestClient

__all__ = [
    "ClassControls",
    "InstructorOnly",
    "JoinError",
    "SharedLab",
    "credentials_path",
    "joined_lab",
    "join_lab",
    "lan_address",
    "leave_class",
    "make_join_code",
    "private_lab",
]

# No 0/O, 1/I/L: a code read off a projector from the back of a room is typed right the first time.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
STUDENT_NAME = re.compile(r"[A-Za-z0-9_]{3,32}")  # a username (rest.py USERNAME)
SEPARATOR = "."  # between a student and their lesson account: "ana.alice" (rest.py STUDENT_SEPARATOR)
BUSY_RETRIES = 8  # a crowd's sign-ups over the student's REST write rate wait and retry (429)


def make_join_code(groups: int = 2, size: int = 3) -> str:
    """A fresh join code such as ``K7P-Q2M`` (31**6, about 900 million of them; the server
    also caps sign-ups per address, so guessing one is out of reach in a class hour)."""
    return "-".join("".join(secrets.choice(CODE_ALPHABET) for _ in range(size)) for _ in range(groups))


def lan_address() -> str:
    """This machine's address on the network students share (the one its default route uses),
    or ``127.0.0.1`` when there is none. A UDP ``connect`` sends no packet: it only picks a route."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1 (RFC 5737): never a real host
        address = str(probe.getsockname()[0])
        if not address.startswith("0."):
            return address
    return "127.0.0.1"


class JoinError(RuntimeError):
    """Joining a class failed: an unreachable lab, or a wrong code. One line in a notebook."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a traceback
        return [f"{type(self).__name__}: {self}"]


class InstructorOnly(RuntimeError):
    """A lesson asked a shared lab for what only the instructor may do. One line in a notebook."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class SharedLab:
    """A student's handle to the class's lab: what a lesson needs of :class:`LabServer` (``url``,
    ``ws_url``, ``account()``, ``health()``...) without the instructor's powers.

    :meth:`account` makes or opens the student's own lesson account (``ana.alice`` for
    ``account("alice")``). The admin calls (``switches``, ``set_switches``, ``drop``, ``restart``,
    ``stop``...) raise :class:`InstructorOnly` with a sentence saying why and what to do;
    :attr:`observe_url` is the class's public view (the student's token, not the admin's)."""

    admin_token: str | None = None
    tls = False
    ssl_context = None

    def __init__(self, url: str, code: str) -> None:
        parts = urllib.parse.urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise JoinError(f"the class URL must look like http://192.168.1.20:8765/, got {url!r}")
        self.url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self.join_code = code
        self.host = parts.hostname  # the instructor's machine, as a lesson's raw sockets reach it
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self._accounts: list[Account] = []
        self.me: Account | None = None  # the student's own account (join_lab signs it up or logs it in)
        self._password = ""

    @property
    def student(self) -> str | None:
        """The student's name on the class's lab (None before :func:`join_lab` logged them in)."""
        return None if self.me is None else self.me.username

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "/ws"

    @property
    def browser_url(self) -> str:
        return self.url + "/"

    @property
    def running(self) -> bool:
        """True while the class's lab answers ``/healthz``."""
        status, _ = self.rest.request("GET", "/healthz")
        return status == 200

    @property
    def rest(self) -> RestClient:
        return RestClient(self.url, None, timeout=10.0, join_code=self.join_code)

    def request(
        self, method: str, path: str, body: Any = None, token: str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """See :meth:`RestClient.request`."""
        return self.rest.request(method, path, body, token, headers)

    def log_in(self, name: str, password: str) -> bool:
        """Log the student in (True), or False when the lab knows no such name and password."""
        status, body = self.request("POST", "/api/login", {"username": name, "password": password})
        if status == 200:
            self.me, self._password = Account(body["token"], body["user"]), password
            return True
        if status == 401:
            return False
        raise JoinError(f"could not log {name!r} in to the class's lab: {status} {_message(body)}")

    def account(self, username: str, password: str = DEFAULT_PASSWORD) -> Account:
        """The student's own lesson account ``<student>.<username>``: made the first time, opened
        (a fresh token) afterwards. ``password`` is not used: the student's token is its only key,
        so no other student can open it. ``account("ana.alice")`` is ``account("alice")``."""
        if self.me is None:
            raise JoinError("join the class first: join_lab(url, code, name=...)")
        prefix = self.me.username + SEPARATOR
        name = username[len(prefix) :] if username.lower().startswith(prefix.lower()) else username
        for attempt in range(BUSY_RETRIES + 1):
            status, body = self.request("POST", "/api/class/accounts", {"name": name}, token=self.me.token)
            if status in (200, 201):
                account = Account(body["token"], body["user"])
                self._accounts.append(account)
                return account
            if status == 401 and attempt == 0 and self.log_in(self.me.username, self._password):
                continue  # the student's token expired (a class outlasts --token-ttl): logged in again
            if status == 429 and attempt < BUSY_RETRIES:
                time.sleep(1.0)  # over the student's REST write rate: Retry-After is whole seconds, at least 1
                continue
            break
        raise JoinError(f"could not make or open {name!r} on the class's lab: {status} {_message(body)}")

    def _qualified(self, username: str) -> str:
        """``alice`` as the lab names the student's lesson account: ``ana.alice``."""
        if self.me is None or SEPARATOR in username:
            return username
        return self.me.username + SEPARATOR + username

    def health(self) -> dict[str, Any]:
        return self.rest.health()

    def users(self) -> list[dict[str, Any]]:
        """Everyone with ``online`` and ``sockets`` (the whole class's, asked with the student's token)."""
        token = self.me.token if self.me is not None else self._accounts[-1].token if self._accounts else None
        if token is None:
            self._instructor_only("users() before join_lab()")
        status, body = self.request("GET", "/api/users", token=token)
        if status != 200:
            raise JoinError(f"/api/users answered {status}: {_message(body)}")
        return list(body["users"])

    def user(self, username: str) -> dict[str, Any]:
        """One entry of :meth:`users`: the student's own lesson account ``username`` (``alice`` is
        ``ana.alice``), else the user of that exact name."""
        everyone = {str(user["username"]).lower(): user for user in self.users()}
        for name in (self._qualified(username), username):
            if name.lower() in everyone:
                return dict(everyone[name.lower()])
        raise KeyError(username)

    # --- what only the instructor may do ----------------------------------------------------

    def _instructor_only(self, what: str) -> NoReturn:
        raise InstructorOnly(
            f"{what} needs the instructor's admin token, and this is the class's shared lab at {self.url}: "
            "watch the instructor's screen for this step, or run leave_class() to use a private lab again"
        )

    @property
    def observe_url(self) -> str:
        """The class's ``/observe`` with the student's token: the view without private rooms, DM
        pairs or texts (PROTOCOL.md section 9), for a :class:`~labserver.course.Dashboard`."""
        if self.me is None:
            raise JoinError("join the class first: join_lab(url, code, name=...)")
        if _expires_at(self.me.token) - time.time() < 60 and self._password:
            self.log_in(self.me.username, self._password)  # a class outlasts --token-ttl; a Dashboard reconnects
        return "ws" + self.url.removeprefix("http") + "/observe?" + urllib.parse.urlencode({"token": self.me.token})

    @property
    def data_dir(self) -> NoReturn:
        """The lab's files (its database, its signing key) are on the instructor's machine."""
        self._instructor_only("the lab's data directory (lab.data_dir)")

    @property
    def pid(self) -> NoReturn:
        """The server process runs on the instructor's machine: its memory and threads are theirs to show."""
        self._instructor_only("the lab's process (lab.pid)")

    @property
    def logs(self) -> NoReturn:
        self._instructor_only("the lab's log (lab.logs)")

    def switches(self) -> dict[str, Any]:
        self._instructor_only("lab.switches()")

    def set_switches(self, **changes: Any) -> dict[str, Any]:
        self._instructor_only("lab.set_switches()")

    def drop(self, socket_id: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self._instructor_only("lab.drop()")

    def restart(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._instructor_only("lab.restart()")

    def stop(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._instructor_only("lab.stop()")

    def kill(self) -> NoReturn:
        self._instructor_only("lab.kill()")

    def close(self) -> None:
        """Nothing to close: the lab is the instructor's (``leave_class()`` forgets it)."""

    def __repr__(self) -> str:
        return f"<SharedLab of the class at {self.url}, as {self.student}>"

    def _repr_html_(self) -> str:
        who = "" if self.student is None else f", as <b>{html.escape(self.student)}</b>"
        return f"<b>Class lab</b> at <code>{html.escape(self.url)}</code> (shared: the instructor runs it){who}"


def _expires_at(token: str) -> float:
    """A token's ``exp`` (a JWT's payload, RFC 7519 section 4.1.4), read without checking it
    (the server does); infinity when it cannot be read."""
    try:
        payload = token.split(".")[1]
        return float(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return float("inf")


def _message(body: Any) -> str:
    """An error answer's message (``{"error", "message"}``), or the body as it came."""
    return str(body.get("message", body)) if isinstance(body, dict) else str(body)


class ClassControls:
    """The instructor's side of class mode, mixed into :class:`~labserver.course.LabServer`:
    the join code, the URLs to show, and the controls behind the admin token."""

    admin_token: str | None
    options: dict[str, Any]
    url: str
    host: str  # the address the lab is bound to

    def request(
        self, method: str, path: str, body: Any = None, token: str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        raise NotImplementedError

    @property
    def join_code(self) -> str | None:
        """The code students sign up with (None: not a class)."""
        code = self.options.get("join_code")
        return None if code is None else str(code)

    @property
    def student_url(self) -> str:
        """What students type: this machine's LAN address when the lab listens on every interface."""
        parts = urllib.parse.urlsplit(self.url)
        host = lan_address() if self.host in ("0.0.0.0", "::", "") else parts.hostname or "127.0.0.1"
        shown = f"[{host}]" if ":" in host else host
        return f"{parts.scheme}://{shown}:{parts.port}/"

    @property
    def live_url(self) -> str:
        """The projector view with the admin token in its #fragment (never sent to the server)."""
        fragment = urllib.parse.urlencode({"token": self.admin_token or "", "join": self.student_url})
        return f"{self.url}/live#{fragment}"

    def _class_call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        if not self.admin_token:
            raise InstructorOnly("this lab has no admin token: start it with start_lab()")
        status, answer = self.request(method, path, body, headers={"X-Admin-Token": self.admin_token})
        if status == 400 and isinstance(answer, dict):
            raise ValueError(answer.get("message", answer))
        if status != 200 or not isinstance(answer, dict):
            raise RuntimeError(f"{method} {path} failed: {status} {answer}")
        return answer

    def class_info(self) -> dict[str, Any]:
        """``join_code``, ``accounts`` made with it, ``max_accounts``, ``paused_rooms``."""
        return self._class_call("GET", "/api/admin/class")

    def announce(self, text: str) -> int:
        """Send ``text`` to every connected socket (an ``announcement``); returns how many users."""
        return int(self._class_call("POST", "/api/admin/announce", {"text": text})["users"])

    def pause_room(self, room: str) -> list[str]:
        """Refuse chats in ``room`` (``room_paused``) until :meth:`resume_room`; returns the paused rooms."""
        return list(self._class_call("POST", f"/api/admin/rooms/{urllib.parse.quote(room)}/pause")["paused_rooms"])

    def resume_room(self, room: str) -> list[str]:
        return list(self._class_call("POST", f"/api/admin/rooms/{urllib.parse.quote(room)}/resume")["paused_rooms"])


_joined: dict[str, SharedLab | None] = {"lab": None}


def credentials_path() -> Path:
    """Where :func:`join_lab` keeps each class's student name and password, so that a new kernel
    logs back in: ``$LABSERVER_CLASS_CREDENTIALS``, else ``~/.labserver/class-credentials.json``
    (the file mode 0600, its directory 0700: the password is random, yet it is the student's)."""
    override = os.environ.get("LABSERVER_CLASS_CREDENTIALS")
    return Path(override) if override else Path.home() / ".labserver" / "class-credentials.json"


def _load_credentials() -> dict[str, dict[str, str]]:
    """``{lab URL: {name in lower case: password}}``; an unreadable or foreign file is empty."""
    try:
        data = json.loads(credentials_path().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {url: dict(names) for url, names in data.items() if isinstance(names, dict)}


def _save_credentials(url: str, name: str, password: str) -> None:
    path = credentials_path()
    data = _load_credentials()
    data.setdefault(url, {})[name.lower()] = password
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    # Created 0600 (not chmod-ed after): no moment when others may read it; replaced atomically.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=1)
    os.replace(temporary, path)


def join_lab(url: str, code: str, name: str | None = None) -> SharedLab:
    """Join the class's lab at ``url`` with the instructor's join ``code``, as ``name`` (3-32
    letters, digits or ``_``: what the class and the instructor's projector see); from now on
    ``start_lab()`` returns it.

    The first time, ``name`` is signed up with the code and a random password, kept in
    :func:`credentials_path`; afterwards (a new kernel, the same cell again) it logs back in.
    A wrong code, a name someone else took, or a lab that is not reachable is a one-line
    :class:`JoinError`."""
    lab = SharedLab(url, code)
    remembered = _load_credentials().get(lab.url, {})
    if name is None or not isinstance(name, str) or not STUDENT_NAME.fullmatch(name.strip()):
        before = f" (you joined this lab before as {sorted(remembered)[0]!r})" if remembered else ""
        given = "" if name is None else f", not {name!r}"
        raise JoinError(
            f'join_lab needs your name, 3-32 letters, digits or _{given}: join_lab("{url}", "{code}", name="ana")'
            f"{before}"
        )
    name = name.strip()
    # An empty username with the code: the server checks the code first, so 400 bad_field means
    # "right code" and 403 bad_join_code / class_full say what is wrong, with no account made.
    try:
        status, body = lab.request("POST", "/api/signup", {"username": "", "password": "", "code": code})
    except OSError as exc:
        raise JoinError(f"cannot reach the class's lab at {lab.url}: {getattr(exc, 'reason', exc)}") from None
    error = body.get("error") if isinstance(body, dict) else None
    if error == "bad_join_code":
        raise JoinError(str(body.get("message")))
    if status == 404 or error is None:
        raise JoinError(f"{lab.url} does not look like a lab server (POST /api/signup answered {status})")
    if status == 429:
        raise JoinError(f"the lab is busy with sign-ups: {body.get('message')}")
    password = remembered.get(name.lower())
    if password is None or not lab.log_in(name, password):
        password = password or secrets.token_urlsafe(18)  # the same one again after a lab's data was reset
        status, body = lab.request("POST", "/api/signup", {"username": name, "password": password, "code": code})
        if status == 409:
            raise JoinError(
                f'the name {name!r} is taken in this class: pick another, e.g. join_lab(..., name="{name}2")'
                " (or, if it is yours from another computer, copy that computer's "
                f"{credentials_path().name})"
            )
        if status != 201:
            raise JoinError(f"could not sign {name!r} up: {_message(body)}")
        lab.me, lab._password = Account(body["token"], body["user"]), password
        _save_credentials(lab.url, name, password)
    _joined["lab"] = lab
    return lab


def private_lab(why: str = "this part of the lesson", **options: Any) -> Any:
    """``start_lab(**options)`` as if the kernel had not joined a class: a lab of its own, for what
    cannot share the class's (thousands of sockets or pollers per student, kills and restarts,
    switches). In a class it says so in one line (``why`` names the part), once; the class stays
    joined, so the next ``start_lab()`` is the class's lab again. Returns a
    :class:`~labserver.course.LabServer`."""
    from .lab import start_lab  # here: lab.py imports this module

    shared = _joined["lab"]
    if shared is None:
        return start_lab(**options)
    _joined["lab"] = None
    try:
        lab = start_lab(**options)
    finally:
        _joined["lab"] = shared
    say_once(f"In class: {why} runs on a private lab of this kernel at {lab.url}, not on the class's lab.")
    return lab


def joined_lab() -> SharedLab | None:
    """The class's lab this kernel joined, if any (what ``start_lab()`` then returns)."""
    return _joined["lab"]


def leave_class() -> None:
    """Forget the class's lab: ``start_lab()`` starts private labs again."""
    _joined["lab"] = None


_said: set[str] = set()


def say_once(line: str) -> None:
    """One line on stderr, once per kernel: a lesson's cells may call start_lab() many times."""
    if line not in _said:
        _said.add(line)
        print(line, file=sys.stderr, flush=True)


# --- the instructor's command: python3 course.py class -----------------------------------------


def class_banner(lab: ClassControls) -> str:
    """What ``course.py class`` prints once the lab listens: the students' URL and code, the two
    ways to join, and the projector link (which carries the admin token: for the instructor's eyes)."""
    url, code = lab.student_url, lab.join_code
    return "\n".join(
        [
            f"Class lab running. Students join at  {url}  with the code  {code}",
            f"  from a notebook:  from labserver.course.classroom import join_lab; "
            f'lab = join_lab("{url}", "{code}", name="your_name")',
            f"  from a browser:   open {url} and sign up with the code",
            f"Projector view (instructor only: the link holds the admin token): {lab.live_url}",
            "Ctrl+C stops the lab.",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    """``python3 course.py class [-- FLAGS]``: run the class's lab until Ctrl+C."""
    import argparse
    import os
    import time
    from pathlib import Path

    from ..launcher import LabStartError
    from .lab import LabServer

    parser = argparse.ArgumentParser(
        prog="course.py class", description="Run one lab for the whole class, with a join code."
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; 0.0.0.0 for the classroom's LAN (default: loopback, this machine only)",
    )
    parser.add_argument("--port", type=int, default=8765, help="port (default %(default)s; 0 picks a free one)")
    parser.add_argument("--code", help="the join code (default: a fresh one such as K7P-Q2M)")
    parser.add_argument("--accounts-per-code", type=int, default=100, help="accounts the code may make (default 100)")
    parser.add_argument("--data-dir", type=Path, default=Path("lab-data") / "class", help="default lab-data/class")
    args = parser.parse_args(argv)
    token = os.environ.get("LABSERVER_ADMIN_TOKEN") or secrets.token_urlsafe(24)
    lab = LabServer(
        args.data_dir,
        admin_token=token,
        host=args.host,
        port=args.port,
        join_code=args.code or make_join_code(),
        accounts_per_code=args.accounts_per_code,
    )
    try:
        lab.start()
    except LabStartError as exc:
        raise SystemExit(f"course.py class: {str(exc).splitlines()[-1]}") from None
    lab.url = lab.url.replace("//0.0.0.0:", "//127.0.0.1:").replace("//[::]:", "//[::1]:")
    if lab.host not in ("127.0.0.1", "::1", "localhost"):
        print(
            f"Warning: listening on {lab.host}: every machine on this network can reach the lab (students need "
            "the code; /observe and the admin API the token). No TLS: don't use real passwords.",
            file=sys.stderr,
        )
    print(class_banner(lab), flush=True)
    try:
        while lab.running:
            time.sleep(0.5)
        print("course.py class: the lab stopped:", *list(lab.logs)[-5:], sep="\n", file=sys.stderr)
        raise SystemExit(1)
    except KeyboardInterrupt:
        print("\nStopping the class's lab.", flush=True)
    finally:
        lab.close()
