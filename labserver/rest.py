"""The HTTP half of the hybrid: accounts, posts, uploads, history and polling.

CRUD, uploads and anything cacheable go over HTTP; every change that others
should *see* is then pushed over WebSocket by :class:`~labserver.lab.Lab`
(notifications, live counters). Errors are JSON ``{"error": code, "message": ...}``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .appkeys import LAB, MAX_CLOSE_REASON_BYTES, error_response, is_admin
from .auth import SESSION_COOKIE, AuthError, Claims, hash_password, verify_password
from .broker import TargetKind
from .config import SwitchError, normalized_join_code
from .envelope import MAX_TEXT_CHARS, ROOM_NAME, is_dm_room
from .frames import CloseCode
from .lab import UPLOAD_NAME, Lab, UploadRefused
from .messages import (
    AnnouncementMessage,
    NotificationMessage,
    UploadedMessage,
    UserRef,
    comment_json,
    message_of,
    post_json,
)
from .ratelimit import retry_after
from .store import NotFound, RoomTaken, User, UsernameTaken

log = logging.getLogger("labserver")

USERNAME = re.compile(r"[A-Za-z0-9_]{3,32}")
# A student's lesson account is "<student>.<name>" (POST /api/class/accounts): "." is not in
# USERNAME, so no one can sign up, or log in to, a name that looks like another student's.
STUDENT_SEPARATOR = "."
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_JSON_BODY = 64 * 1024

routes = web.RouteTableDef()


class ApiError(web.HTTPError):
    """An HTTP error answered as JSON ``{"error": code, "message": ...}`` (see :func:`error_response`)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        self.status_code = status  # instance attribute: one class serves every status
        body = error_response(status, code, message)
        super().__init__(body=body.body, content_type="application/json", headers=headers)


def api_error(status: int, code: str, message: str) -> ApiError:
    return ApiError(status, code, message)


def as_json_error(request: web.BaseRequest, exc: Exception) -> Exception:
    """What a handler's exception becomes: aiohttp's own plain-text errors (404, 405, 413...)
    become JSON under /api, like ours, and so does the store's :class:`~labserver.store.NotFound`
    (one place turns it into a 404). Anything else is returned as it is, to be raised again."""
    if isinstance(exc, NotFound):
        return api_error(404, "not_found", str(exc))
    if isinstance(exc, ApiError) or not isinstance(exc, web.HTTPException):
        return exc
    if not request.path.startswith("/api/") or exc.status < 400:
        return exc
    keep = {k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")}
    return ApiError(exc.status, (exc.reason or "error").lower().replace(" ", "_"), exc.reason, keep)


async def read_json(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        # Not a mere formality: text/plain and form bodies are what any website can make a
        # visitor's browser send cross-site without asking (no CORS preflight); JSON is not.
        raise api_error(
            415,
            "unsupported_media_type",
            f"send the body as Content-Type: application/json, not {request.headers.get('Content-Type', 'none')!r}",
        )
    if request.content_length is not None and request.content_length > MAX_JSON_BODY:
        raise api_error(413, "too_large", f"JSON body over {MAX_JSON_BODY} bytes")
    raw = await request.content.read(MAX_JSON_BODY + 1)
    if len(raw) > MAX_JSON_BODY:
        raise api_error(413, "too_large", f"JSON body over {MAX_JSON_BODY} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, ints over 4300 digits, deep nesting
        raise api_error(400, "bad_json", f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise api_error(400, "bad_json", "body must be a JSON object")
    return body


def str_field(body: dict[str, Any], name: str, *, max_chars: int = MAX_TEXT_CHARS, required: bool = True) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise api_error(400, "bad_field", f"field {name!r} must be a non-empty string")
    if len(value) > max_chars:
        raise api_error(400, "bad_field", f"field {name!r} is longer than {max_chars} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a JSON escape like "\ud800": no database or frame can carry it
        raise api_error(400, "bad_field", f"field {name!r} contains an unpaired surrogate (invalid Unicode)") from None
    return value


def int_query(request: web.Request, name: str, default: int, *, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise api_error(400, "bad_query", f"query {name!r} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise api_error(400, "bad_query", f"query {name!r} must be between {low} and {high}")
    return value


async def current_user(request: web.Request, *, query_token: bool = False) -> User:
    """The user of ``Authorization: Bearer``; with ``query_token``, also of ``?token=``
    (for clients that cannot set headers: a browser's EventSource, like its WebSocket)."""
    user, _ = await current_claims(request, query_token=query_token)
    return user


async def current_claims(request: web.Request, *, query_token: bool = False) -> tuple[User, Claims]:
    """:func:`current_user` and what its token says (its expiry: a long read ends with it)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        token = request.query.get("token", "") if query_token else ""
    if not token:
        raise api_error(401, "unauthorized", "send Authorization: Bearer <token>")
    lab = request.app[LAB]
    try:
        user, claims = await lab.authenticate(token.strip())
    except AuthError as exc:
        raise api_error(401, "unauthorized", str(exc)) from None
    if request.method in WRITES and request.path != "/api/logout":  # a logout is never refused
        wait = lab.rest_write_wait(user.id, time.monotonic())
        if wait:
            rate = lab.settings.rest_rate_limit
            raise ApiError(
                429,
                "too_many_requests",
                f"over {rate:g} REST writes per second (burst {lab.settings.rest_burst}); retry in {wait:.2f} s",
                {"Retry-After": retry_after(wait)},
            )
    return user, claims


def session_response(request: web.Request, user: User, status: int = 200) -> web.Response:
    """The new token in the body, and the same token as the session cookie that ``/ws`` accepts.

    HttpOnly: page scripts cannot read it (an XSS cannot steal it). SameSite=Lax: a
    cross-site page's requests do not carry it (a same-site one, another port or a
    sibling subdomain, still does: /ws checks Origin for that). Path=/: the cookie
    goes to /ws too. Secure when the request came over TLS. Only /ws accepts the
    cookie: the REST API wants ``Authorization: Bearer``, so no cross-site form can act
    as the user (CSRF)."""
    lab = request.app[LAB]
    token = lab.issue_token(user)
    response = web.json_response({"token": token, "user": UserRef.of(user).to_json()}, status=status)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(lab.issuer.ttl),
        path="/",
        httponly=True,
        samesite="Lax",
        secure=request.secure,
    )
    return response


# --- service -----------------------------------------------------------------------


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    lab = request.app[LAB]
    return web.json_response(
        {"status": "ok", "uptime_s": round(time.time() - lab.started_at, 3), **lab.broker_status(), **lab.stats()}
    )


# --- accounts ------------------------------------------------------------------------


async def _credentials(request: web.Request, body: dict[str, Any] | None = None) -> tuple[str, str]:
    body = await read_json(request) if body is None else body
    username = str_field(body, "username", max_chars=32)
    password = str_field(body, "password", max_chars=128)
    return username, password


def _check_join_code(lab: Lab, body: dict[str, Any]) -> None:
    """Class mode: a sign-up must carry the join code (403 ``bad_join_code``), and at most
    ``accounts_per_code`` accounts are made with it (403 ``class_full``)."""
    expected = lab.settings.join_code
    if expected is None:
        return
    given = body.get("code")
    if not isinstance(given, str) or not given.strip():
        raise api_error(403, "bad_join_code", "this lab is a class: sign up with the join code the instructor shows")
    if not hmac.compare_digest(normalized_join_code(given).encode(), normalized_join_code(expected).encode()):
        raise api_error(403, "bad_join_code", "wrong join code: check the code the instructor shows")
    cap = lab.settings.accounts_per_code
    if lab.signups_with_code >= cap:
        raise api_error(403, "class_full", f"this class's join code has made its {cap} accounts; ask the instructor")


@routes.post("/api/signup")
async def signup(request: web.Request) -> web.Response:
    lab = request.app[LAB]
    wait = lab.signup_wait(request.remote or "?", time.monotonic())
    if wait:
        per_minute = lab.settings.signup_rate_limit
        raise ApiError(
            429,
            "too_many_attempts",
            f"over {per_minute:g} sign-ups a minute from this address; retry in {retry_after(wait)} s",
            {"Retry-After": retry_after(wait)},
        )
    body = await read_json(request)
    _check_join_code(lab, body)
    username, password = await _credentials(request, body)
    if not USERNAME.fullmatch(username):
        raise api_error(400, "bad_field", "username must be 3-32 letters, digits or '_'")
    if len(password) < 6:
        raise api_error(400, "bad_field", "password must be at least 6 characters")
    with_code = lab.settings.join_code is not None
    lab.signups_with_code += with_code  # reserved before the slow hash: concurrent sign-ups can't pass the cap
    try:
        hashed = await asyncio.to_thread(hash_password, password)  # scrypt: keep it off the event loop
        user = await lab.db.create_user(username, hashed, time.time())
    except UsernameTaken:
        lab.signups_with_code -= with_code
        raise api_error(409, "username_taken", f"username {username!r} is taken") from None
    except BaseException:
        lab.signups_with_code -= with_code
        raise
    return session_response(request, user, 201)


@routes.post("/api/login")
async def login(request: web.Request) -> web.Response:
    lab = request.app[LAB]
    username, password = await _credentials(request)
    # Back-off after failures, by username (one account guessed) and by address (many guessed):
    # checked before the password, so a shut-out guesser learns nothing from the answer.
    # By address only beyond loopback: on one machine every lesson's client shares 127.0.0.1.
    name_key, ip_key = username.lower(), request.remote or "?"
    by_ip = not lab.settings.loopback_only
    now = time.monotonic()
    wait = max(lab.login_failures.wait(name_key, now), lab.login_failures_by_ip.wait(ip_key, now) if by_ip else 0)
    if wait:
        raise ApiError(
            429,
            "too_many_attempts",
            f"too many failed logins; retry in {retry_after(wait)} s",
            {"Retry-After": retry_after(wait)},
        )
    user = await lab.db.user_by_name(username)
    if user is not None and STUDENT_SEPARATOR in user.username:
        user = None  # a student's lesson account has no password: only its student's token opens it
    stored = user.password_hash if user else "scrypt$4096$8$1$AAAA$AAAA"  # same work either way
    if not await asyncio.to_thread(verify_password, password, stored) or user is None:
        lab.login_failures.failed(name_key, time.monotonic())
        if by_ip:
            lab.login_failures_by_ip.failed(ip_key, time.monotonic())
        raise api_error(401, "bad_credentials", "wrong username or password")
    lab.login_failures.succeeded(name_key)
    return session_response(request, user)


@routes.post("/api/class/accounts")
async def student_account(request: web.Request) -> web.Response:
    """Class mode: a lesson account of the student whose token this is, ``<student>.<name>``, made
    (201) or opened again (200), with a token for it. The student's token is its only key (it has
    no password), so one student can neither make nor open another's. Not counted against the
    join code (a crowd of 40 simulated users is one student's); at most ``accounts_per_student``
    new ones per student per server run (403 ``too_many_accounts``), and as fast as the student's
    REST writes may go (``--rest-rate``, 429)."""
    lab = request.app[LAB]
    if lab.settings.join_code is None:
        raise api_error(404, "not_a_class", "this lab has no join code: make accounts with POST /api/signup")
    student = await current_user(request)  # also takes one of the student's REST writes (429 when over)
    if STUDENT_SEPARATOR in student.username:
        raise api_error(403, "forbidden", "a lesson account cannot make accounts: ask with your own (student) token")
    name = str_field(await read_json(request), "name", max_chars=32)
    if not USERNAME.fullmatch(name):
        raise api_error(400, "bad_field", "name must be 3-32 letters, digits or '_'")
    username = f"{student.username}{STUDENT_SEPARATOR}{name}"
    user = await lab.db.user_by_name(username)
    if user is not None:
        return web.json_response({"token": lab.issue_token(user), "user": UserRef.of(user).to_json()})
    made, cap = lab.student_accounts.get(student.id, 0), lab.settings.accounts_per_student
    if made >= cap:
        raise api_error(
            403,
            "too_many_accounts",
            f"{student.username} has made {cap} lesson accounts, the most per student: "
            "reuse their names, or ask the instructor",
        )
    lab.student_accounts[student.id] = made + 1  # reserved before the write: concurrent calls can't pass the cap
    try:
        # No password (no "scrypt$" hash can match it): /api/login refuses the name, this endpoint opens it.
        user = await lab.db.create_user(username, f"student-account${student.id}", time.time())
    except UsernameTaken:  # made a moment ago by a concurrent call of the same student
        lab.student_accounts[student.id] -= 1
        user = await lab.db.user_by_name(username)
        if user is None:
            raise
        return web.json_response({"token": lab.issue_token(user), "user": UserRef.of(user).to_json()})
    except BaseException:
        lab.student_accounts[student.id] -= 1
        raise
    return web.json_response({"token": lab.issue_token(user), "user": UserRef.of(user).to_json()}, status=201)


@routes.post("/api/logout")
async def logout(request: web.Request) -> web.Response:
    """Revoke every token issued so far to this user, close their sockets (1008), and end
    their SSE streams and long polls (a stolen token must not keep reading)."""
    lab = request.app[LAB]
    user = await current_user(request)
    await lab.db.set_tokens_valid_after(user.id, time.time())
    sockets = list(lab.hub.user_sockets.get(user.id, ()))
    streams = lab.end_long_reads(user.id, "logged out")
    await asyncio.gather(*(c.sink.close(CloseCode.POLICY_VIOLATION, "logged out") for c in sockets))
    # closed_streams only when there were any: the answer lesson 06 shows keeps its shape.
    answer = {"closed_sockets": len(sockets), **({"closed_streams": streams} if streams else {})}
    response = web.json_response(answer)
    # The revocation above already makes the cookie's token useless; this also removes it from the browser.
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


@routes.get("/api/me")
async def me(request: web.Request) -> web.Response:
    lab = request.app[LAB]
    user = await current_user(request)
    sockets = [c.socket_id for c in lab.hub.user_sockets.get(user.id, ())]
    online = lab.is_online(user.id)  # with no socket, still during the presence grace; or on another process
    return web.json_response({"user": UserRef.of(user).to_json(), "online": online, "sockets": sorted(sockets)})


@routes.get("/api/users")
async def users(request: web.Request) -> web.Response:
    """Everyone, with who is online. Users, or the instructor's admin token, may ask."""
    lab = request.app[LAB]
    if not is_admin(request):
        await current_user(request)
    everyone = await lab.db.users()
    return web.json_response(
        {
            "users": [
                {
                    **UserRef.of(u).to_json(),
                    "online": lab.is_online(u.id),  # with Redis: on any live process
                    "sockets": len(lab.hub.user_sockets.get(u.id, ())),
                }
                for u in everyone
            ]
        }
    )


@routes.get("/api/notifications")
async def notifications(request: web.Request) -> web.Response:
    lab = request.app[LAB]
    user = await current_user(request)
    items = await lab.db.notifications(user.id, int_query(request, "limit", 50, low=1, high=500))
    return web.json_response({"notifications": [NotificationMessage.of(n).to_json() for n in items]})


# --- posts: CRUD over HTTP, live counters and notifications over WebSocket -------------


@routes.post("/api/posts")
async def create_post(request: web.Request) -> web.Response:
    lab = request.app[LAB]
    user = await current_user(request)
    body = await read_json(request)
    text = str_field(body, "text")
    image = body.get("image")
    if image is not None and (
        not isinstance(image, str) or not re.fullmatch(r"/uploads/" + UPLOAD_NAME.pattern, image)
    ):
        raise api_error(400, "bad_field", "field 'image' must be a URL returned by POST /api/uploads")
    post = await lab.db.create_post(user.id, text, image, time.time())
    await lab.notify_mentions(user, text, post.id, f"{user.username} mentioned you in a post")
    return web.json_response({"post": post_json(post)}, status=201)


@routes.get("/api/posts")
async def list_posts(request: web.Request) -> web.Response:
    lab = request.app[LAB]
    await current_user(request)
    limit = int_query(request, "limit", 50, low=1, high=200)
    before = request.query.get("before")
    before_id = int_query(request, "before", 0, low=1, high=2**53) if before is not None else None
    posts = await lab.db.posts(limit, before_id)
    return web.json_response({"posts": [post_json(p) for p in posts]})


def _post_id(request: web.Request) -> int:
    try:
        return int(request.match_info["post_id"])
    except ValueError:
        raise api_error(404, "not_found", "no such post") from None


@routes.get(r"/api/posts/{post_id:\d+}")
async def get_post(request: web.Request) -> web.Response:
    """One post. Its ``ETag`` is a hash of the JSON body: it changes with every like or comment,
    so a client that revalidates (``If-None-Match``) gets ``304`` until something changed."""
    lab = request.app[LAB]
    await current_user(request)
    post_id = _post_id(request)
    post = await lab.db.post(post_id)
    if post is None:
        raise api_error(404, "not_found", f"post {post_id} not found")
    body = json.dumps({"post": post_json(post)}).encode()
    # private: only the user's own cache may keep it; no-cache: revalidate every time (counters move).
    headers = {"Cache-Control": "private, no-cache", "Content-Type": "application/json; charset=utf-8"}
    return cached_response(request, body, strong_etag(body), headers)


@routes.post(r"/api/posts/{post_id:\d+}/like")
async def like(request: web.Request) -> web.Response:
    lab = request.app[LAB]
    user = await current_user(request)
    post, created = await lab.db.like(_post_id(request), user.id, time.time())
    if created:
        await lab.post_updated(post)
        if post.author_id != user.id:
            await lab.notify(post.author_id, "like", user, post.id, f"{user.username} liked your post")
    return web.json_response({"post": post_json(post), "liked": True})


@routes.delete(r"/api/posts/{post_id:\d+}/like")
async def unlike(request: web.Request) -> web.Response:
    lab = request.app[LAB]
    user = await current_user(request)
    post, removed = await lab.db.unlike(_post_id(request), user.id)
    if removed:
        await lab.post_updated(post)
    return web.json_response({"post": post_json(post), "liked": False})


@routes.post(r"/api/posts/{post_id:\d+}/comments")
async def comment(request: web.Request) -> web.Response:
    lab = request.app[LAB]
    user = await current_user(request)
    text = str_field(await read_json(request), "text")
    made, post = await lab.db.add_comment(_post_id(request), user.id, text, time.time())
    await lab.post_updated(post)
    if post.author_id != user.id:
        await lab.notify(post.author_id, "comment", user, post.id, f"{user.username} commented on your post")
    await lab.notify_mentions(user, text, post.id, f"{user.username} mentioned you in a comment")
    return web.json_response({"comment": comment_json(made), "post": post_json(post)}, status=201)


@routes.get(r"/api/posts/{post_id:\d+}/comments")
async def list_comments(request: web.Request) -> web.Response:
    lab = request.app[LAB]
    await current_user(request)
    post_id = _post_id(request)
    if await lab.db.post(post_id) is None:
        raise api_error(404, "not_found", f"no post {post_id}")
    return web.json_response({"comments": [comment_json(c) for c in await lab.db.comments(post_id)]})


# --- uploads -------------------------------------------------------------------------


@routes.post("/api/uploads")
async def upload(request: web.Request) -> web.Response:
    """Multipart upload of one image (field ``file``). The stored name is its content hash:
    the client's filename is never used, so no path trick can reach the disk."""
    lab = request.app[LAB]
    user = await current_user(request)
    limit = lab.settings.upload_max_bytes
    if request.content_length is not None and request.content_length > limit + 64 * 1024:
        raise api_error(413, "too_large", f"upload over {limit} bytes")
    try:
        reader = await request.multipart()
        part = await reader.next()
        while part is not None and getattr(part, "name", None) != "file":
            # Other fields are skipped but counted: a chunked body (no Content-Length) can't
            # stream junk fields for ever before its file.
            while hasattr(part, "read_chunk") and await part.read_chunk(64 * 1024):
                if request.content.total_bytes > limit + 64 * 1024:
                    raise api_error(413, "too_large", f"upload over {limit} bytes")
            part = await reader.next()
    except (AssertionError, ValueError, KeyError, HttpProcessingError) as exc:  # the last: malformed part headers
        raise api_error(400, "bad_upload", f"expected multipart/form-data with a 'file' field ({exc})") from None
    if part is None or not hasattr(part, "read_chunk"):
        raise api_error(400, "bad_upload", "expected multipart/form-data with a 'file' field")
    file_part = part

    async def chunks() -> AsyncIterator[bytes]:
        while chunk := await file_part.read_chunk(64 * 1024):
            yield chunk

    try:
        saved = await lab.save_upload_stream(chunks(), user.id)
    except UploadRefused as exc:
        status = {"too_large": 413, "quota_exceeded": 413, "too_many_uploads": 429}.get(exc.code, 415)
        headers = {"Retry-After": "1"} if status == 429 else None
        raise ApiError(status, exc.code, exc.message, headers) from None
    except (ConnectionError, asyncio.IncompleteReadError, HttpProcessingError) as exc:
        # The client went away (or broke the body) midway: its partial file is already deleted.
        # One line, not aiohttp's traceback of the failed read; the answer reaches no one.
        log.info("upload by %s aborted after %d bytes: %s", user.username, request.content.total_bytes, exc)
        raise api_error(400, "bad_upload", "the upload ended before its last byte") from None
    return web.json_response(UploadedMessage.of(saved).record(), status=201)


# --- HTTP caching: validators (RFC 9110 section 8.8.3) and conditional GETs (section 13.1.2) ----------

UPLOAD_CACHE = "public, max-age=31536000, immutable"  # a name is its content's hash: it never changes
CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}


def strong_etag(data: bytes) -> str:
    """A strong validator: the quoted start of the SHA-256 of the exact bytes sent."""
    return f'"{hashlib.sha256(data).hexdigest()[:32]}"'


def not_modified(request: web.Request, etag: str) -> bool:
    """``If-None-Match`` names ``etag`` (or is ``*``): the client's copy is current. The weak
    comparison, as RFC 9110 section 13.1.2 says for this header: ``W/"x"`` matches ``"x"``."""
    tags = request.if_none_match
    return tags is not None and any(tag.value in (etag.strip('"'), "*") for tag in tags)


def cached_response(request: web.Request, body: bytes, etag: str, headers: dict[str, str]) -> web.Response:
    """``200`` with the body, or ``304 Not Modified`` with no body when the client's copy is
    current; both carry the ``ETag`` and the caching headers."""
    headers = {**headers, "ETag": etag}
    if not_modified(request, etag):
        headers.pop("Content-Type", None)
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers=headers)


@routes.get("/uploads/{name}")
async def uploaded(request: web.Request) -> web.StreamResponse:
    """An uploaded image. Its ``ETag`` is its content hash, which is also its name: the same
    on every server, and a revalidation (``If-None-Match``) is answered 304 without a body."""
    name = request.match_info["name"]
    if not UPLOAD_NAME.fullmatch(name):
        raise web.HTTPNotFound()
    path = request.app[LAB].settings.uploads_dir / name
    etag = '"' + name.split(".")[0] + '"'
    headers = {"Cache-Control": UPLOAD_CACHE, "X-Content-Type-Options": "nosniff"}
    if not_modified(request, etag):  # no need to read the file
        if not path.is_file():
            raise web.HTTPNotFound()
        return web.Response(status=304, headers={**headers, "ETag": etag})
    try:
        data = await asyncio.to_thread(path.read_bytes)  # at most upload_max_bytes
    except (FileNotFoundError, IsADirectoryError):
        raise web.HTTPNotFound() from None
    content_type = CONTENT_TYPES[name.rsplit(".", 1)[1]]
    return cached_response(request, data, etag, {**headers, "Content-Type": content_type})


# --- instructor controls --------------------------------------------------------------


def _require_admin(request: web.Request) -> None:
    if not is_admin(request):
        raise api_error(403, "forbidden", "admin API needs the X-Admin-Token the server was started with")


@routes.get("/api/admin/switches")
async def get_switches(request: web.Request) -> web.Response:
    """The live switches (PROTOCOL.md section 11). Needs ``X-Admin-Token``."""
    _require_admin(request)
    return web.json_response({"switches": request.app[LAB].switches.to_json()})


@routes.patch("/api/admin/switches")
async def patch_switches(request: web.Request) -> web.Response:
    """Change some switches, all or none; answers the whole new set. Needs ``X-Admin-Token``."""
    _require_admin(request)
    lab = request.app[LAB]
    try:
        switches = lab.set_switches(await read_json(request))
    except SwitchError as exc:
        raise api_error(400, "bad_field", str(exc)) from None
    return web.json_response({"switches": switches.to_json()})


@routes.post("/api/admin/sockets/{socket_id}/close")
async def admin_close_socket(request: web.Request) -> web.Response:
    """Drop one connection, as a network failure would (``mode=abort``, the default) or
    with a close frame (``mode=close``: ``code`` 1000 by default, or an application code
    4000-4999, RFC 6455 section 7.4.2; ``reason`` at most 123 bytes). Needs ``X-Admin-Token``."""
    lab = request.app[LAB]
    _require_admin(request)
    conn = lab.hub.connections.get(request.match_info["socket_id"])
    if conn is None:
        raise api_error(404, "not_found", f"no open socket {request.match_info['socket_id']!r}")
    mode = request.query.get("mode", "abort")
    if mode not in ("abort", "close"):
        raise api_error(400, "bad_query", "mode must be 'abort' or 'close'")
    code, reason = _close_code_and_reason(request, mode)
    if mode == "abort":
        conn.sink.abort()
    else:
        await conn.sink.close(code, reason)
    answer: dict[str, Any] = {"socket_id": conn.socket_id, "user": conn.user.to_json(), "mode": mode}
    if mode == "close":
        answer.update(code=code, reason=reason)
    return web.json_response(answer)


@routes.get("/api/admin/class")
async def class_info(request: web.Request) -> web.Response:
    """Class mode at a glance, for the projector page and the instructor: the join code, the
    accounts made with it and the cap, and the paused rooms. Needs ``X-Admin-Token``."""
    _require_admin(request)
    lab = request.app[LAB]
    return web.json_response(
        {
            "join_code": lab.settings.join_code,
            "accounts": lab.signups_with_code,
            "max_accounts": lab.settings.accounts_per_code if lab.settings.join_code else None,
            "paused_rooms": sorted(lab.paused_rooms),
        }
    )


@routes.post("/api/admin/announce")
async def announce(request: web.Request) -> web.Response:
    """Send ``{"text"}`` to every connected socket as an ``announcement``. Needs ``X-Admin-Token``."""
    _require_admin(request)
    lab = request.app[LAB]
    text = str_field(await read_json(request), "text", max_chars=500)
    online = ",".join(str(u.id) for u in lab.online_users())
    if online:  # USERS routing: every socket of every online user, on every process
        await lab.publish(TargetKind.USERS, online, AnnouncementMessage(text, time.time()))
    return web.json_response({"text": text, "users": online.count(",") + 1 if online else 0})


@routes.post("/api/admin/rooms/{room}/pause")
@routes.post("/api/admin/rooms/{room}/resume")
async def pause_room(request: web.Request) -> web.Response:
    """Pause a room (its chats are refused with ``room_paused``; history, joins and reads go on)
    or resume it. Needs ``X-Admin-Token``."""
    _require_admin(request)
    lab = request.app[LAB]
    room = request.match_info["room"]
    if not ROOM_NAME.fullmatch(room):
        raise api_error(400, "bad_room", f"invalid room name {room!r}")
    if request.path.endswith("/pause"):
        lab.paused_rooms.add(room)
    else:
        lab.paused_rooms.discard(room)
    return web.json_response(
        {"room": room, "paused": room in lab.paused_rooms, "paused_rooms": sorted(lab.paused_rooms)}
    )


def _close_code_and_reason(request: web.Request, mode: str) -> tuple[int, str]:
    """The admin close's ``code`` and ``reason`` query parameters, checked (bad ones: 400 bad_query)."""
    raw_code, reason = request.query.get("code"), request.query.get("reason")
    if mode == "abort" and (raw_code is not None or reason is not None):
        raise api_error(400, "bad_query", "code and reason need mode=close (an abort sends no close frame)")
    code = int_query(request, "code", CloseCode.NORMAL, low=1000, high=4999)
    if code != CloseCode.NORMAL and not 4000 <= code <= 4999:
        raise api_error(400, "bad_query", f"query 'code' must be 1000 or 4000-4999 (an application's own), got {code}")
    if reason is None:
        return code, "closed by the instructor"
    if len(reason.encode()) > MAX_CLOSE_REASON_BYTES:
        raise api_error(400, "bad_query", f"query 'reason' is over {MAX_CLOSE_REASON_BYTES} bytes of UTF-8")
    return code, reason


# --- room history, short polling and long polling -------------------------------------


def _readable_room(request: web.Request, user: User) -> str:
    room = request.match_info["room"]
    if not (ROOM_NAME.fullmatch(room) or is_dm_room(room)):
        raise api_error(400, "bad_room", f"invalid room name {room!r} (direct messages live in dm:<low id>:<high id>)")
    if (refusal := request.app[LAB].read_refusal(user.id, room)) is not None:
        raise api_error(403, "forbidden", refusal)
    return room


@routes.post("/api/rooms")
async def create_private_room(request: web.Request) -> web.Response:
    """A private room: only the creator and ``members`` (user ids) may join, read or post in it."""
    lab = request.app[LAB]
    user = await current_user(request)
    body = await read_json(request)
    name = str_field(body, "name", max_chars=64)
    if not ROOM_NAME.fullmatch(name):
        raise api_error(400, "bad_field", "field 'name' must be 1-64 letters, digits, '_', '.' or '-'")
    members = body.get("members", [])
    if (
        not isinstance(members, list)
        or len(members) > 1000
        or not all(type(m) is int and 0 < m <= 2**53 for m in members)
    ):
        raise api_error(400, "bad_field", "field 'members' must be a list of at most 1000 user ids")
    try:
        member_ids = await lab.create_private_room(user, name, members)
    except RoomTaken as exc:
        raise api_error(409, "room_taken", f"{exc}; choose another name") from None
    except NotFound as exc:
        raise api_error(400, "bad_field", f"field 'members': {exc}") from None
    return web.json_response({"room": name, "members": member_ids}, status=201)


async def _messages_after(lab: Lab, room: str, after: int, limit: int) -> dict[str, Any]:
    rows = await lab.db.messages_after(room, after, limit)
    last = rows[-1].seq if rows else after
    messages = [message_of(r).to_json() for r in rows]
    return {"room": room, "messages": messages, "last_seq": max(last, lab.hub.last_seq.get(room, 0))}


@routes.get("/api/rooms/{room}/messages")
async def room_messages(request: web.Request) -> web.Response:
    """History, and short polling: ask again every T seconds with ``after`` = last seq seen."""
    lab = request.app[LAB]
    user = await current_user(request)
    room = _readable_room(request, user)
    after = int_query(request, "after", 0, low=0, high=2**53)
    limit = int_query(request, "limit", 100, low=1, high=1000)
    return web.json_response(await _messages_after(lab, room, after, limit))


@routes.get("/api/rooms/{room}/members")
async def room_members(request: web.Request) -> web.Response:
    """The room's members (users, not sockets) by id, a page at a time: the join ack lists at most
    ``ack_member_cap`` of a big room's; ``after`` = the last id of the previous page."""
    lab = request.app[LAB]
    user = await current_user(request)
    room = _readable_room(request, user)
    after = int_query(request, "after", 0, low=0, high=2**53)
    limit = int_query(request, "limit", 100, low=1, high=1000)
    page = lab.room_members_page(room, after, limit)  # every process's members, with Redis
    body = {"room": room, "member_count": lab.hub.member_count(room), "members": [u.to_json() for u in page]}
    return web.json_response(body)


@routes.post("/api/rooms/{room}/messages")
async def post_room_message(request: web.Request) -> web.Response:
    """Send a chat message over HTTP: persisted, then pushed to the room's sockets like any other."""
    lab = request.app[LAB]
    user = await current_user(request)
    room = _readable_room(request, user)
    if is_dm_room(room):
        raise api_error(400, "bad_room", "send direct messages over the WebSocket with type 'dm'")
    if room in lab.paused_rooms:
        raise api_error(409, "room_paused", f"room {room!r} is paused by the instructor")
    stored = await lab.post_chat(UserRef.of(user), room, str_field(await read_json(request), "text"))
    return web.json_response({"room": room, "seq": stored.seq}, status=201)


@routes.get("/api/rooms/{room}/poll")
async def long_poll(request: web.Request) -> web.Response:
    """Long polling: the request is held until a message after ``after`` exists, or ``timeout`` s."""
    lab = request.app[LAB]
    user, claims = await current_claims(request)
    room = _readable_room(request, user)
    after = int_query(request, "after", 0, low=0, high=2**53)
    limit = int_query(request, "limit", 100, low=1, high=1000)
    max_wait = lab.settings.long_poll_max_seconds
    timeout = float(int_query(request, "timeout", int(min(25, max_wait)), low=0, high=int(max_wait)))
    deadline = time.monotonic() + timeout
    read = lab.open_long_read(user.id, claims)
    try:
        while True:
            if read.ended.done():  # a logout or the token's expiry while it waited: nothing more to read
                raise api_error(401, "unauthorized", f"the long poll ended: {read.ended.result()}")
            _readable_room(request, user)  # again: the room may have become private meanwhile
            if lab.hub.last_seq.get(room, 0) > after or time.monotonic() >= deadline or lab.closing:
                return web.json_response(await _messages_after(lab, room, after, limit))
            await lab.wait_for_room(room, deadline - time.monotonic(), read)
    finally:
        lab.close_long_read(read)


@routes.get("/api/rooms/{room}/events")
async def room_events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: push over plain HTTP, one way. Each message of the room after
    ``after`` (or the ``Last-Event-ID`` a reconnecting EventSource sends) is an event
    ``id: <seq>`` / ``data: <json>``; a comment line every 15 s keeps proxies from closing."""
    lab = request.app[LAB]
    user, claims = await current_claims(request, query_token=True)
    room = _readable_room(request, user)
    last_id = request.headers.get("Last-Event-ID", "")
    after = int(last_id) if last_id.isdigit() else int_query(request, "after", 0, low=0, high=2**53)
    per_user = lab.settings.streams_per_user_limit
    if per_user and lab.user_streams(user.id) >= per_user:
        raise api_error(429, "too_many_streams", f"at most {per_user} open event streams per user; close one")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    transport = request.transport
    # Subscribed before the history is read: what is delivered meanwhile is queued, and the
    # seqs already sent are skipped, so nothing falls between the two.
    stream = lab.open_event_stream(room, user.id, lambda: transport.abort() if transport is not None else None)
    read = lab.open_long_read(user.id, claims)
    loop = asyncio.get_running_loop()
    try:
        while not read.ended.done():  # the history, from the database, a page at a time
            rows = await lab.db.messages_after(room, after, 100)
            for row in rows:
                if read.ended.done():  # checked before every event: nothing is sent after a logout
                    break
                await response.write(f"id: {row.seq}\ndata: {message_of(row).encode()}\n\n".encode())
                after = row.seq
            if len(rows) < 100:
                break
        while not lab.closing and not read.ended.done() and lab.read_refusal(user.id, room) is None:
            while stream.events and not read.ended.done():  # live: encoded once by Lab.deliver_everywhere
                if lab.read_refusal(user.id, room) is not None:  # the room turned private meanwhile
                    break
                seq, event = stream.pop()
                if seq > after:
                    await response.write(event)
                    after = seq
            if stream.overflowed or lab.closing or read.ended.done():
                break
            stream.waiter = loop.create_future()
            await asyncio.wait((stream.waiter, read.ended), timeout=15.0, return_when=asyncio.FIRST_COMPLETED)
            if not stream.waiter.done() and not read.ended.done():
                await response.write(b": keep-alive\n\n")  # 15 s of silence: keeps proxies from closing it
            stream.waiter = None
        if read.ended.done():
            # A last event that says why, like a socket's 1008 reason; its reconnect then gets 401.
            reason = read.ended.result()
            await response.write(f"event: end\ndata: {json.dumps({'type': 'end', 'reason': reason})}\n\n".encode())
    except ConnectionError:
        pass  # the client went away (or was cut as too slow): nothing to answer
    finally:
        stream.waiter = None
        lab.close_event_stream(stream)
        lab.close_long_read(read)
    return response
