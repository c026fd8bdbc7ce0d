"""Exercises of lesson 02, the Upgrade handshake (RFC 6455 section 4).

    from labserver.course.exercises import lesson02 as ex
    ex.q1.check(accept_key)        # compute Sec-WebSocket-Accept (section 4.2.2, step 5.4)
    ex.q2.check(("a", "b", ...))   # what is wrong with each of five requests (section 4.1)
    ex.q3.check({...: 101, ...})   # which status code answers which handshake
    await ex.q4.check_async(broken_handshake)   # write broken handshakes, predict, send them to the lab

The requests of q2 are in :data:`REQUESTS`, with the status the lab server
answers each one in :data:`REQUEST_STATUS` (the course's tests send them to the
real server, so the exercise and the server cannot drift apart).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ...auth import SESSION_COOKIE
from ...handshake import key_is_valid, origin_allowed
from ...rawws import RawWebSocket
from .core import (
    Case,
    FunctionProblem,
    Incorrect,
    Lesson,
    LiveProblem,
    Problem,
    ValueProblem,
    show,
)

lesson = Lesson("lesson02", "The Upgrade handshake")

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


# --- q1: compute an accept key ----------------------------------------------------------


def _accept_key_reference(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def _b64_sha1(data: bytes) -> str:
    return base64.b64encode(hashlib.sha1(data).digest()).decode()


# Wrong recipes students really write, each with what to fix. Checked in order
# against a wrong answer; the first that reproduces it names the mistake.
_MISTAKES: tuple[tuple[str, Callable[[str], Any]], ...] = (
    (
        "you returned bytes: `base64.b64encode` gives bytes, and a header value is text. Add `.decode()` at the end.",
        lambda k: base64.b64encode(hashlib.sha1((k + GUID).encode()).digest()),
    ),
    (
        "the GUID is missing: hash the key *followed by* `258EAFA5-E914-47DA-95CA-C5AB0DC85B11` "
        "(RFC 6455 section 1.3).",
        lambda k: _b64_sha1(k.encode()),
    ),
    (
        "the GUID goes *after* the key, not before: SHA-1 of `key + GUID`.",
        lambda k: _b64_sha1((GUID + k).encode()),
    ),
    (
        "the GUID is written in capitals: `258EAFA5-E914-47DA-95CA-C5AB0DC85B11`, exactly as in the RFC.",
        lambda k: _b64_sha1((k + GUID.lower()).encode()),
    ),
    (
        "do not base64-decode the key: the server hashes the key *as it appears in the header*, "
        "the 24 characters, followed by the GUID.",
        lambda k: _b64_sha1(base64.b64decode(k) + GUID.encode()),
    ),
    (
        "that is the SHA-1 in hex (`hexdigest()`); the RFC base64-encodes the 20 raw bytes (`digest()`).",
        lambda k: hashlib.sha1((k + GUID).encode()).hexdigest(),
    ),
    (
        "that is base64 of the hex text; base64-encode the 20 raw bytes of `digest()` instead of `hexdigest()`.",
        lambda k: base64.b64encode(hashlib.sha1((k + GUID).encode()).hexdigest().encode()).decode(),
    ),
    (
        "that is SHA-256; RFC 6455 uses SHA-1 (`hashlib.sha1`).",
        lambda k: base64.b64encode(hashlib.sha256((k + GUID).encode()).digest()).decode(),
    ),
    (
        "that is the SHA-1 digest itself: base64-encode it.",
        lambda k: hashlib.sha1((k + GUID).encode()).digest(),
    ),
    (
        "that is URL-safe base64 (`-` and `_`); use plain `base64.b64encode` (`+` and `/`).",
        lambda k: base64.urlsafe_b64encode(hashlib.sha1((k + GUID).encode()).digest()).decode(),
    ),
)


def diagnose_accept_key(key: str, got: Any) -> str | None:
    """Name the mistake that turns ``key`` into ``got``, if it is a known one."""
    for why, recipe in _MISTAKES:
        try:
            if got == recipe(key):
                return why
        except Exception:  # a recipe that does not apply to this key
            continue
    return None


class AcceptKeyProblem(FunctionProblem):
    """A :class:`FunctionProblem` whose failures say *which* common mistake was made."""

    def _judge(self, fn: Any, case: Case, got: Any) -> None:
        try:
            super()._judge(fn, case, got)
        except Incorrect as wrong:
            why = diagnose_accept_key(case.args[0], got)
            raise Incorrect(f"{wrong}. Probably {why}" if why else str(wrong)) from None


q1 = lesson.add(
    "q1",
    AcceptKeyProblem(
        [
            ((RFC_KEY,), RFC_ACCEPT, "the worked example of RFC 6455 section 1.3"),
            (("x3JJHMbDL1EzLkh9GBhXDw==",), "HSmrc0sMlYUkAGmm5OPpG2HaGWk="),
            (("AAAAAAAAAAAAAAAAAAAAAA==",), "ICX+Yqv66kxgM0FcWaLWlFLwTAI=", "sixteen zero bytes"),
            (("AAECAwQFBgcICQoLDA0ODw==",), "Bz3qJYTGdOe8gUSpLosEdiLKDrk="),
            (("E4WSEcseoWr4csPLS2QJHA==",), "7eQChgCtQMnVILefJAO6dK5JwPc="),
        ],
        reference=_accept_key_reference,
        name="accept_key",
        title="Compute Sec-WebSocket-Accept",
        question=(
            "Write `accept_key(key: str) -> str`: given a client's `Sec-WebSocket-Key`, return the "
            "`Sec-WebSocket-Accept` value the server must answer (RFC 6455 section 4.2.2). Then check it "
            "with `ex.q1.check(accept_key)`; it is tried on five keys, the RFC's example among them."
        ),
        hint=[
            "Three steps: glue the GUID `258EAFA5-E914-47DA-95CA-C5AB0DC85B11` to the end of the key "
            "(as text), take the SHA-1 of those bytes, base64-encode the 20-byte digest.",
            "`hashlib.sha1(data).digest()` gives the raw 20 bytes; `base64.b64encode(...)` gives bytes "
            "too, so finish with `.decode()`. The key is used as it is: do not base64-decode it first.",
        ],
        solution=(
            "```python\n"
            "import base64\n"
            "import hashlib\n"
            "\n"
            'GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3\n'
            "\n"
            "def accept_key(key: str) -> str:\n"
            "    digest = hashlib.sha1((key + GUID).encode()).digest()  # 20 bytes\n"
            "    return base64.b64encode(digest).decode()              # 28 characters\n"
            "```\n\n"
            "The GUID is the same for every WebSocket server in the world. Only a server that knows "
            "it, that is, one that really speaks WebSocket, can compute this value: an ordinary HTTP "
            "server or a cache replaying an old response cannot. It proves nothing about *who* the "
            "server is: that is TLS's job (`wss://`)."
        ),
    ),
)


# --- q2: what is wrong with this request? -------------------------------------------------

DEFECTS: dict[str, str] = {
    "a": "the method is not GET",
    "b": "the Connection header does not contain the Upgrade token",
    "c": "the Upgrade header does not say websocket",
    "d": "Sec-WebSocket-Version is not 13",
    "e": "Sec-WebSocket-Key is not 16 bytes in base64",
    "f": "the Host header is missing",
    "g": "nothing: this request is a valid opening handshake",
}

_GOOD_KEY = "E4WSEcseoWr4csPLS2QJHA=="
_SHORT_KEY = "bm90IDE2IGJ5dGVz"  # base64 of the 12 bytes b"not 16 bytes"

#: Five opening handshakes, as a client would type them (lines end in CRLF on the wire).
REQUESTS: tuple[str, ...] = (
    "GET /ws HTTP/1.1\n"
    "Host: lab.example:8765\n"
    "Upgrade: websocket\n"
    "Connection: keep-alive\n"
    f"Sec-WebSocket-Key: {_GOOD_KEY}\n"
    "Sec-WebSocket-Version: 13\n",
    "GET /ws HTTP/1.1\n"
    "Host: lab.example:8765\n"
    "Upgrade: websocket\n"
    "Connection: Upgrade\n"
    f"Sec-WebSocket-Key: {_GOOD_KEY}\n"
    "Sec-WebSocket-Version: 8\n",
    "GET /ws HTTP/1.1\n"
    "Host: lab.example:8765\n"
    "Upgrade: WebSocket\n"
    "Connection: keep-alive, Upgrade\n"
    f"Sec-WebSocket-Key: {_GOOD_KEY}\n"
    "Sec-WebSocket-Version: 13\n",
    "GET /ws HTTP/1.1\n"
    "Host: lab.example:8765\n"
    "Upgrade: websocket\n"
    "Connection: Upgrade\n"
    f"Sec-WebSocket-Key: {_SHORT_KEY}\n"
    "Sec-WebSocket-Version: 13\n",
    "POST /ws HTTP/1.1\n"
    "Host: lab.example:8765\n"
    "Upgrade: websocket\n"
    "Connection: Upgrade\n"
    f"Sec-WebSocket-Key: {_GOOD_KEY}\n"
    "Sec-WebSocket-Version: 13\n",
)

#: The defect of each request (a letter of :data:`DEFECTS`).
REQUEST_DEFECTS: tuple[str, ...] = ("b", "d", "g", "e", "a")

#: What the lab server answers each request with (checked against the real server by the tests).
REQUEST_STATUS: tuple[int, ...] = (400, 426, 101, 400, 405)

# Why each request has the defect it has (the solution lists them).
_WHY_RIGHT: tuple[str, ...] = (
    "`Connection: keep-alive` lacks the `Upgrade` token, so this is an ordinary keep-alive request "
    "that happens to carry an Upgrade header, which RFC 6455 section 4.1 does not accept",
    "it asks for version 8, an old draft; RFC 6455 is version 13, and the server answers "
    "426 with `Sec-WebSocket-Version: 13`",
    "header names and the `websocket` token are case-insensitive, and `Connection` is a "
    "comma-separated list that does contain `Upgrade`: the server answers 101",
    "`bm90IDE2IGJ5dGVz` is valid base64, but of 12 bytes (`b'not 16 bytes'`); the key must be "
    "16 random bytes, 24 characters of base64",
    "the opening handshake is a GET (section 4.1); the server answers 405 Method Not Allowed",
)


def _header(request: str, name: str) -> str | None:
    for line in request.splitlines()[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def _refute(request: str, letter: str) -> str:
    """What in ``request`` shows that ``letter`` is not its defect."""
    if letter == "a":
        return f"its request line is `{request.splitlines()[0]}`"
    if letter == "f":
        return f"it has `Host: {_header(request, 'Host')}`"
    if letter == "g":
        return "one of its lines breaks RFC 6455 section 4.1: compare them one by one with a good handshake"
    name = {"b": "Connection", "c": "Upgrade", "d": "Sec-WebSocket-Version", "e": "Sec-WebSocket-Key"}[letter]
    shown = f"it has `{name}: {_header(request, name)}`"
    if letter == "b" and (_header(request, name) or "").lower() != "upgrade":
        return shown + ": a comma-separated list, and Upgrade is in it (case does not matter)"
    if letter == "c":
        return shown + " (the token is case-insensitive)"
    if letter == "e":
        return shown + ", which is base64 of 16 bytes"
    return shown


def _letter(item: Any) -> str | None:
    if not isinstance(item, str):
        return None
    text = item.strip().strip("()").strip(".").strip().lower()
    return text if text in DEFECTS else None


class SpotTheDefect(Problem):
    """One defect letter per request; wrong items are refuted from the request text itself."""

    def __init__(self, requests: Sequence[str], defects: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if len(requests) != len(defects) or any(d not in DEFECTS for d in defects):
            raise ValueError("one defect letter of DEFECTS per request")
        self.requests = tuple(requests)
        self.defects = tuple(defects)

    def _question_markdown(self) -> str:
        parts = [self.question, "", *(f"- **{k})** {v}" for k, v in DEFECTS.items())]
        for i, request in enumerate(self.requests, 1):
            parts += ["", f"Request {i}:", "", "```http", request.rstrip("\n"), "```"]
        return "\n".join(parts)

    def _check(self, answer: Any) -> str | None:
        n = len(self.requests)
        if isinstance(answer, str) and len(answer.replace(" ", "").replace(",", "")) == n:
            answer = tuple(answer.replace(" ", "").replace(",", ""))
        if not isinstance(answer, tuple | list) or len(answer) != n:
            raise Incorrect(f"pass {self.answer_format}; got {show(answer)}.")
        letters: list[str] = []
        for i, item in enumerate(answer, 1):
            letter = _letter(item)
            if letter is None:
                raise Incorrect(f"item {i}, {show(item)}, is not one of the letters {', '.join(DEFECTS)}.")
            letters.append(letter)
        wrong = [
            f"Request {i}: not ({got}), {_refute(request, got)}"
            for i, (request, got, right) in enumerate(zip(self.requests, letters, self.defects, strict=True), 1)
            if got != right
        ]
        if wrong:
            right_count = n - len(wrong)
            raise Incorrect(f"{right_count} of {n} right. " + "; ".join(wrong) + ".")
        return self.correct_message or None


q2 = lesson.add(
    "q2",
    SpotTheDefect(
        REQUESTS,
        REQUEST_DEFECTS,
        title="Spot what is wrong",
        question=(
            "Each request below is meant to open a WebSocket, and at most one thing is wrong with each. "
            "For every request, pick the letter that names its problem (RFC 6455 section 4.1), and answer "
            "with a tuple of five letters in request order, e.g. `('a', 'b', 'c', 'd', 'e')`. "
            "Show the requests with `ex.q2`."
        ),
        answer_format="a tuple of five letters, one per request, e.g. `('a', 'b', 'c', 'd', 'e')`",
        correct_message=(
            "request 3 was the trap: header names and the `websocket` token are case-insensitive, and "
            "`Connection` is a comma-separated list that does contain `Upgrade`. `ex.q2.solution()` "
            "explains all five."
        ),
        hint=[
            "Walk each request against the checklist of RFC 6455 section 4.1: a GET, HTTP/1.1, a Host, "
            "`Upgrade: websocket`, `Connection` containing `Upgrade`, a key of 16 bytes in base64, "
            "version 13. Header names and these tokens are case-insensitive.",
            "`base64.b64decode(key)` shows how many bytes a key holds. `Connection` can list several "
            "options separated by commas. Exactly one of the five requests is fine.",
        ],
        solution=(
            "`('b', 'd', 'g', 'e', 'a')`.\n\n"
            + "\n".join(
                f"{i}. **({d})** {why}." for i, (d, why) in enumerate(zip(REQUEST_DEFECTS, _WHY_RIGHT, strict=True), 1)
            )
            + "\n\nThe lab server answers them 400, 426, 101, 400 and 405."
        ),
    ),
)


# --- q3: which status code for which refusal ------------------------------------------------

SITUATIONS: dict[str, int] = {
    "a good handshake": 101,
    "no Sec-WebSocket-Key": 400,
    "Sec-WebSocket-Version: 8": 426,
    "Origin: http://evil.example": 403,
    "?token= with a forged token": 401,
    "POST /ws": 405,
}

# (situation, wrong status) -> what is wrong with it
_STATUS_MIXUPS: dict[tuple[str, int], str] = {
    ("a good handshake", 200): "200 would be an ordinary HTTP answer, after which the connection speaks "
    "HTTP again; switching to WebSocket is `101 Switching Protocols`",
    ("Sec-WebSocket-Version: 8", 400): "many servers do answer a bare 400 here, but RFC 6455 section 4.4 asks "
    "for `426 Upgrade Required` with `Sec-WebSocket-Version: 13`, so the client learns what to retry with; "
    "the lab server follows the RFC",
    ("Origin: http://evil.example", 401): "401 means the credentials are missing or bad; here the server "
    "knows exactly where the page comes from, and refuses it: 403 Forbidden",
    ("Origin: http://evil.example", 400): "the request is well-formed; the server refuses it on purpose "
    "because of where the page comes from: 403 Forbidden",
    ("?token= with a forged token", 403): "a forged token proves nothing about who you are, so you are not "
    "authenticated: 401 Unauthorized (403 is for a known client that may not do this)",
    ("?token= with a forged token", 400): "the handshake itself is fine; the credentials are not: 401",
    ("POST /ws", 404): "the path exists, with another method: 405 Method Not Allowed (with an `Allow` header)",
    ("POST /ws", 400): "the path exists, with another method: 405 Method Not Allowed (with an `Allow` header)",
    ("no Sec-WebSocket-Key", 426): "426 is for a version the server does not speak; a missing or malformed "
    "key makes the request itself bad: 400",
    ("no Sec-WebSocket-Key", 401): "the key is not a credential (it is public, in every request): a missing "
    "key is a malformed handshake, 400",
}


class StatusMapProblem(ValueProblem):
    """A dict situation -> status code; a template whose values are all ``...`` is not attempted."""

    def _is_placeholder(self, answer: Any) -> bool:
        if isinstance(answer, Mapping) and answer and all(v is Ellipsis for v in answer.values()):
            return True
        return super()._is_placeholder(answer)

    def _check(self, answer: Any) -> str | None:
        if not isinstance(answer, Mapping):
            raise Incorrect(f"pass {self.answer_format}; got {show(answer)}.")
        expected: dict[str, int] = self.expected
        missing = [k for k in expected if k not in answer]
        extra = [k for k in answer if k not in expected]
        if missing or extra:
            parts = []
            if missing:
                parts.append("missing " + ", ".join(repr(k) for k in missing))
            if extra:
                parts.append("unknown " + ", ".join(repr(k) for k in extra))
            raise Incorrect("keep the keys of the template: " + "; ".join(parts) + ".")
        todo = [k for k in expected if answer[k] is Ellipsis]
        if todo:
            raise Incorrect("still `...` for " + ", ".join(repr(k) for k in todo) + ".")
        problems = []
        for situation, status in expected.items():
            got = answer[situation]
            if isinstance(got, bool) or not isinstance(got, int):
                problems.append(f"{situation!r}: give the status as a number, e.g. 404, not {show(got)}")
            elif got != status:
                why = _STATUS_MIXUPS.get((situation, got), f"not {got}")
                problems.append(f"{situation!r}: {why}")
        if problems:
            right = len(expected) - len(problems)
            raise Incorrect(f"{right} of {len(expected)} right. " + "; ".join(problems) + ".")
        return None


q3 = lesson.add(
    "q3",
    StatusMapProblem(
        dict(SITUATIONS),
        title="Which status code?",
        question=(
            "For each handshake sent to the lab server's `/ws`, which HTTP status code comes back? "
            "Fill in the template dict `situation -> status code` (ints) and check it with "
            "`ex.q3.check(answer)`."
        ),
        answer_format="the template dict with a status code (an int) for every situation",
        correct_message=(
            "101 switches protocols; 400 is a malformed handshake; 426 names the version to use "
            "(RFC 6455 section 4.4); 403 refuses a known origin; 401 asks for valid credentials; "
            "405 says the path wants another method."
        ),
        hint=[
            'Every one of these is a row of the table in part 5 of the lesson, "When the server says no".',
            "401 is about *who you are* (credentials), 403 about *what you may do* although the server "
            'knows where you come from; 426 means "upgrade to something else".',
        ],
        solution=(
            "```python\n"
            "answer = {\n" + "".join(f"    {k!r}: {v},\n" for k, v in SITUATIONS.items()) + "}\n"
            "```\n\n"
            "Only 101 opens the WebSocket; every other answer is an ordinary HTTP response, and the "
            "connection never speaks frames. A browser shows none of these codes to the page: "
            "`new WebSocket(...)` just fires `error` and then `close` with code 1006."
        ),
    ),
)


# --- q4: write broken handshakes, predict the answers, send them to the lab -------------------

FLAWS: dict[str, str] = {
    "none": "nothing: a good handshake, with the token in `?token=`",
    "version": "a `Sec-WebSocket-Version` other than 13",
    "key": "a `Sec-WebSocket-Key` that is missing or not 16 bytes in base64",
    "token": "a `?token=` that does not verify",
    "cross-site": f"no `?token=`: the `{SESSION_COOKIE}` cookie instead, and an `Origin` from another site",
}

#: What the lab answers each flaw with (the tests check it against the real server).
FLAW_STATUS: dict[str, int] = {"none": 101, "version": 426, "key": 400, "token": 401, "cross-site": 403}

# Why the lab answers what it answers: shown when a prediction is wrong.
_FLAW_WHY: dict[str, str] = {
    "none": "a good handshake switches protocols",
    "version": "a version the server does not speak gets `426 Upgrade Required` with "
    "`Sec-WebSocket-Version: 13` (RFC 6455 section 4.4)",
    "key": "a missing or malformed key makes the request a bad handshake (section 4.2.1)",
    "token": "credentials that do not verify: 401, before the upgrade",
    "cross-site": "the Origin check runs before the cookie is even read: a page from another site gets 403 "
    "(section 10.2), whatever it carries",
}


class _Request:
    """The parts of a hand-written handshake that the lab's checks look at."""

    def __init__(self, raw: bytes) -> None:
        head = raw.decode("latin-1").removesuffix("\r\n\r\n")
        self.request_line, *lines = head.split("\r\n")
        self.headers: dict[str, str] = {}
        for line in lines:
            name, colon, value = line.partition(":")
            if colon:
                self.headers[name.strip().lower()] = value.strip()
        parts = self.request_line.split(" ")
        self.method, self.target, self.version = (parts + ["", "", ""])[:3] if len(parts) <= 3 else ("", "", "")
        self.query = parse_qs(urlsplit(self.target).query, keep_blank_values=True)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def query_token(self) -> str | None:
        values = self.query.get("token")
        return values[0] if values else None

    @property
    def cookie_token(self) -> str | None:
        for pair in (self.header("Cookie") or "").split(";"):
            name, _, value = pair.strip().partition("=")
            if name == SESSION_COOKIE:
                return value
        return None

    def shape_problems(self) -> list[str]:
        """What makes this something other than a well-formed handshake to /ws, besides key and version."""
        problems = []
        if self.method != "GET":
            problems.append(f"the request line is `{self.request_line}`: it must be `GET /ws... HTTP/1.1`")
        elif urlsplit(self.target).path != "/ws":
            problems.append(f"the path is `{urlsplit(self.target).path}`, not `/ws`")
        elif self.version != "HTTP/1.1":
            problems.append(f"the request line ends in `{self.version}`, not `HTTP/1.1`")
        if not self.header("Host"):
            problems.append("there is no `Host` header")
        if (self.header("Upgrade") or "").lower() != "websocket":
            problems.append("`Upgrade: websocket` is missing")
        if "upgrade" not in {t.strip().lower() for t in (self.header("Connection") or "").split(",")}:
            problems.append("`Connection: Upgrade` is missing")
        return problems


def _flaw_problems(request: _Request, flaw: str, token: str) -> list[str]:
    """Why ``request`` is not a handshake with exactly ``flaw`` (empty: it is)."""
    problems = request.shape_problems()
    key_ok = key_is_valid(request.header("Sec-WebSocket-Key"))
    version = request.header("Sec-WebSocket-Version")
    origin = request.header("Origin")
    foreign = not origin_allowed(origin, request.header("Host"), ())
    if flaw == "key" and key_ok:
        problems.append("its `Sec-WebSocket-Key` is fine: leave it out, or give one that is not 16 bytes in base64")
    if flaw != "key" and not key_ok:
        problems.append("its `Sec-WebSocket-Key` is missing or not 16 bytes in base64 (keep that for flaw 'key')")
    if flaw == "version" and version == "13":
        problems.append("it says `Sec-WebSocket-Version: 13`, the right version: ask for another one, e.g. 8")
    if flaw != "version" and version != "13":
        problems.append(f"its `Sec-WebSocket-Version` is {show(version)}, not 13 (keep that for flaw 'version')")
    if flaw == "cross-site":
        if request.query_token is not None:
            problems.append("it still has `?token=`: here the browser sends only the cookie")
        if request.cookie_token != token:
            problems.append(f"it needs the header `Cookie: {SESSION_COOKIE}=<the token>` (the token you were given)")
        if not foreign:
            problems.append(
                f"its Origin is {show(origin)}: "
                + ("no Origin is a program, not a page" if origin is None else "that is the lab's own page")
                + "; use another site's, e.g. `http://evil.example`"
            )
        return problems
    if foreign:
        problems.append(f"its `Origin: {origin}` is another site's (keep that for flaw 'cross-site')")
    if flaw == "token":
        if request.query_token is None:
            problems.append("it has no `?token=`: send one that does not verify, e.g. `?token=not-a-token`")
        elif request.query_token == token:
            problems.append("its `?token=` is the real token, which verifies: change it")
    elif request.query_token != token:
        problems.append("it needs `?token=<the token>` in the path, with the token you were given, unchanged")
    return problems


def _as_request(flaw: str, returned: Any) -> tuple[bytes, Any]:
    if not isinstance(returned, tuple) or len(returned) != 2:
        raise Incorrect(
            f"`broken_handshake({flaw!r}, ...)` returned {show(returned)}: return a tuple "
            "`(request_bytes, predicted_status)`."
        )
    raw, predicted = returned
    if isinstance(raw, str):
        raise Incorrect(f"for {flaw!r} the request is a str: the socket sends bytes, so finish with `.encode()`.")
    if not isinstance(raw, bytes | bytearray):
        raise Incorrect(f"for {flaw!r} the request is {show(raw)}: it must be bytes.")
    raw = bytes(raw)
    if b"\r\n" not in raw and b"\n" in raw:
        raise Incorrect(f"for {flaw!r} the lines end in `\\n`: HTTP ends every line with `\\r\\n`.")
    if not raw.endswith(b"\r\n\r\n"):
        raise Incorrect(
            f"for {flaw!r} the request does not end with an empty line (`\\r\\n\\r\\n`): the server would wait "
            "for more headers. End the last header with `\\r\\n`, then add one more `\\r\\n`."
        )
    if raw.count(b"\r\n\r\n") != 1:
        raise Incorrect(f"for {flaw!r} there is an empty line in the middle: the head ends at the first one.")
    return raw, predicted


class BrokenHandshakeProblem(LiveProblem):
    """The student's ``broken_handshake(flaw, host, port, token) -> (bytes, predicted status)``,
    checked for each flaw of :data:`FLAWS`: the request must have exactly that flaw, and the
    prediction must be what the lab answers when the request is sent on a raw socket."""

    username = "q4_handshaker"
    call_with = "broken_handshake"
    answer_kind = "sync"
    why_sync = "it builds request bytes; the check sends them"

    async def _check_async(self, answer: Any, lab: Any) -> str | None:
        parts = urlsplit(lab.url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        account = await asyncio.to_thread(lab.account, self.username)
        requests: dict[str, tuple[bytes, Any]] = {}
        for flaw in FLAWS:
            try:
                returned = answer(flaw, host, port, account.token)
            except Exception as exc:
                raise Incorrect(
                    f"`broken_handshake({flaw!r}, host, port, token)` raised {type(exc).__name__}: {exc}"
                ) from None
            raw, predicted = _as_request(flaw, returned)
            problems = _flaw_problems(_Request(raw), flaw, account.token)
            if problems:
                raise Incorrect(f"the request for {flaw!r} ({FLAWS[flaw]}) is not right: " + "; ".join(problems) + ".")
            requests[flaw] = raw, predicted
        answered: dict[str, int] = {}
        for flaw, (raw, _) in requests.items():
            answered[flaw] = await asyncio.to_thread(_send, host, port, raw)
        wrong = []
        for flaw, (_, predicted) in requests.items():
            if predicted is Ellipsis:
                wrong.append(f"{flaw!r}: no prediction yet (the lab answered {answered[flaw]})")
            elif isinstance(predicted, bool) or not isinstance(predicted, int):
                wrong.append(f"{flaw!r}: predict a status code as an int, not {show(predicted)}")
            elif predicted != answered[flaw]:
                wrong.append(
                    f"{flaw!r}: you predicted {predicted}, the lab answered {answered[flaw]}: {_FLAW_WHY[flaw]}"
                )
        if wrong:
            right = len(FLAWS) - len(wrong)
            raise Incorrect(
                f"your five requests are broken as asked; {right} of 5 predictions right. " + "; ".join(wrong) + "."
            )
        return (
            "every request broken as asked, every prediction right: "
            + ", ".join(f"{flaw} {answered[flaw]}" for flaw in FLAWS)
            + "."
        )


def _send(host: str, port: int, raw: bytes) -> int:
    """Send one handshake on a fresh TCP connection; the status the lab answers."""
    try:
        ws = RawWebSocket.connect(host, port, raw)
    except (OSError, ValueError) as exc:
        raise Incorrect(f"the lab gave no HTTP answer to your request ({type(exc).__name__}: {exc}).") from None
    ws.close()
    return ws.response.status


_Q4_SOLUTION = """\
```python
def broken_handshake(flaw: str, host: str, port: int, token: str) -> tuple[bytes, int]:
    path = f"/ws?token={token}"
    headers = {
        "Host": f"{host}:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    if flaw == "version":
        headers["Sec-WebSocket-Version"] = "8"
    elif flaw == "key":
        del headers["Sec-WebSocket-Key"]
    elif flaw == "token":
        path = "/ws?token=not-a-token"
    elif flaw == "cross-site":
        path = "/ws"
        headers["Cookie"] = f"lab_session={token}"
        headers["Origin"] = "http://evil.example"
    lines = [f"GET {path} HTTP/1.1", *(f"{name}: {value}" for name, value in headers.items())]
    request = ("\\r\\n".join(lines) + "\\r\\n\\r\\n").encode()
    predicted = {"none": 101, "version": 426, "key": 400, "token": 401, "cross-site": 403}[flaw]
    return request, predicted
```

One good handshake, and one change per flaw. The lab checks in a fixed order: the version
(426), the key (400), the `Origin` (403), then the credentials (401); only a request that
passes them all gets 101. That order is why the cross-site request gets 403 although its
cookie is valid: the server refuses the *page* before it looks at *who* the page claims to
be, and a browser would have attached that cookie on its own."""

q4 = lesson.add(
    "q4",
    BrokenHandshakeProblem(
        title="Break a handshake on purpose",
        question=(
            "Write `broken_handshake(flaw, host, port, token) -> (request_bytes, predicted_status)`. For each "
            "`flaw` of `ex.FLAWS` it returns an opening handshake to the lab's `/ws` with exactly that flaw and "
            "nothing else wrong, and the status code you predict the lab answers. "
            "`await ex.q4.check_async(broken_handshake)` calls it for every flaw, checks each request, sends "
            "it to the lab on a raw socket, and compares your predictions with the lab's answers."
        ),
        answer_format="your function `broken_handshake`",
        hint=[
            "Start from the good handshake of part 2: a request line `GET /ws?token=... HTTP/1.1`, then `Host`, "
            "`Upgrade`, `Connection`, `Sec-WebSocket-Key` and `Sec-WebSocket-Version`, each line ending in "
            "`\\r\\n`, and one empty line at the end. Keep the headers in a dict, change one thing per flaw, "
            "then join the lines and `.encode()`.",
            "Predictions: a version the server does not speak asks the client to *upgrade to something else* "
            "(section 4.4); a malformed handshake is a bad request; bad credentials mean *who are you?*; a known "
            "page the server refuses is *forbidden*. The tables of parts 5 and 7 show them all.",
            f"For 'cross-site', play the browser on a page of `http://evil.example`: no `?token=` (the page does "
            f"not know it), `Cookie: {SESSION_COOKIE}=<token>` (the browser adds it on its own) and "
            "`Origin: http://evil.example`. Which check runs first, Origin or credentials?",
        ],
        solution=_Q4_SOLUTION,
    ),
)


__all__ = [
    "DEFECTS",
    "FLAWS",
    "FLAW_STATUS",
    "GUID",
    "REQUESTS",
    "REQUEST_DEFECTS",
    "REQUEST_STATUS",
    "RFC_ACCEPT",
    "RFC_KEY",
    "SITUATIONS",
    "diagnose_accept_key",
    "lesson",
    "q1",
    "q2",
    "q3",
    "q4",
]
