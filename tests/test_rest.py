"""The HTTP half of the hybrid, against a real lab server process.

Accounts and tokens, posts with live counters and notifications pushed over
WebSocket, image uploads, room history with short and long polling, and logout.
Every HTTP call made while a test's WebSocket is open goes through a thread
(``api``): the blocking helper would otherwise freeze the loop that answers the
server's close handshakes and pings.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import struct
import time
import urllib.error
import urllib.request
import uuid
import zlib
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets

from labserver.auth import TokenIssuer
from labserver.course import Account, LabServer

from .conftest import until

UPLOAD_MAX = 5 * 1024 * 1024


# --- helpers ---------------------------------------------------------------------------


async def api(lab: LabServer, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    return await asyncio.to_thread(lab.request, method, path, body, token)


def raw_request(
    lab: LabServer, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request with the path sent exactly as given (no client-side normalisation)."""
    host, port = lab.url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def png(seed: int = 0) -> bytes:
    """A tiny valid 1x1 RGB PNG; ``seed`` picks the pixel so the bytes differ."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixel = bytes([0, seed & 0xFF, (seed >> 8) & 0xFF, (seed >> 16) & 0xFF])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(pixel)) + chunk(b"IEND", b"")


_seeds = iter(range(1, 10**6))


def fresh_png() -> bytes:
    return png(next(_seeds) + (uuid.uuid4().int & 0xFFFF) * 256)


async def upload(
    lab: LabServer,
    token: str | None,
    data: bytes,
    filename: str = "cat.png",
    content_type: str = "image/png",
    field: str = "file",
) -> tuple[int, Any]:
    form = aiohttp.FormData()
    form.add_field(field, data, filename=filename, content_type=content_type)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session:
        async with session.post(lab.url + "/api/uploads", data=form, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)


def error_of(status_body: tuple[int, Any], status: int) -> dict[str, Any]:
    got, body = status_body
    assert got == status, (got, body)
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body.get("message"), body
    return body


async def polls_parked(lab: LabServer, at_least: int) -> bool:
    """The server holds at least ``at_least`` long polls (or SSE streams) parked, waiting
    for a message (``long_polls`` of /healthz, over every room)."""
    return int((await asyncio.to_thread(lab.health))["long_polls"]) >= at_least


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


# --- service and accounts -----------------------------------------------------------------


def test_healthz(lab: LabServer) -> None:
    status, headers, body = raw_request(lab, "GET", "/healthz")
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    data = json.loads(body)
    assert data["status"] == "ok"
    assert isinstance(data["uptime_s"], int | float) and data["uptime_s"] >= 0


def test_signup_returns_token_and_user_then_duplicate_is_409_case_insensitive(lab: LabServer) -> None:
    name = unique("Ann")
    status, body = lab.request("POST", "/api/signup", {"username": name, "password": "secret-1"})
    assert status == 201, body
    assert set(body) == {"token", "user"}
    assert body["user"]["username"] == name and isinstance(body["user"]["id"], int)
    assert "password_hash" not in body["user"]
    assert lab.request("GET", "/api/me", token=body["token"])[1]["user"] == body["user"]

    for taken in (name, name.upper(), name.lower()):
        err = error_of(lab.request("POST", "/api/signup", {"username": taken, "password": "secret-2"}), 409)
        assert err["error"] == "username_taken"

    # Login is case-insensitive on the name too, and gives the same user.
    status, body2 = lab.request("POST", "/api/login", {"username": name.lower(), "password": "secret-1"})
    assert status == 200, body2
    assert body2["user"]["id"] == body["user"]["id"]


@pytest.mark.parametrize(
    "body",
    [
        {"username": "ab", "password": "secret-1"},  # too short
        {"username": "x" * 33, "password": "secret-1"},  # too long
        {"username": "bad name", "password": "secret-1"},
        {"username": "../etc", "password": "secret-1"},
        {"username": "émile", "password": "secret-1"},
        {"username": "", "password": "secret-1"},
        {"username": 123, "password": "secret-1"},
        {"username": "short_pw", "password": "12345"},
        {"username": "no_password"},
        {"password": "secret-1"},
        {},
    ],
    ids=[
        "short",
        "long",
        "space",
        "path",
        "non-ascii",
        "empty",
        "number",
        "short-password",
        "no-password",
        "no-username",
        "empty-object",
    ],
)
def test_signup_rejects_bad_fields_with_400(lab: LabServer, body: dict[str, Any]) -> None:
    err = error_of(lab.request("POST", "/api/signup", body), 400)
    assert err["error"] == "bad_field"


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[1, 2]", b'"a string"', b"null", b"", b"\xff\xfe"],
    ids=["malformed", "array", "string", "null", "empty", "not-utf8"],
)
def test_signup_and_login_reject_bodies_that_are_not_a_json_object(lab: LabServer, raw: bytes) -> None:
    for path in ("/api/signup", "/api/login"):
        status, headers, body = raw_request(lab, "POST", path, raw, {"Content-Type": "application/json"})
        assert status == 400, (path, status, body)
        data = json.loads(body)
        assert data["error"] == "bad_json" and data["message"]


def test_login_wrong_password_and_unknown_user_are_401(lab: LabServer, account: Any) -> None:
    user = account()
    ok = lab.request("POST", "/api/login", {"username": user.username, "password": "lab-password"})
    assert ok[0] == 200
    err = error_of(lab.request("POST", "/api/login", {"username": user.username, "password": "wrong-password"}), 401)
    err2 = error_of(lab.request("POST", "/api/login", {"username": unique("ghost"), "password": "lab-password"}), 401)
    # The same answer for both: no hint whether the name exists.
    assert err == err2


def expired_token(lab: LabServer, user: Account) -> str:
    secret = bytes.fromhex((Path(lab.data_dir) / "jwt-secret").read_text().strip())
    return TokenIssuer(secret).issue(user.id, user.username, now=time.time() - 7200, ttl=60)


@pytest.mark.parametrize("path", ["/api/me", "/api/users", "/api/notifications", "/api/posts"])
def test_endpoints_need_a_valid_bearer_token(lab: LabServer, account: Any, path: str) -> None:
    user = account()
    assert lab.request("GET", path, token=user.token)[0] == 200
    forged = TokenIssuer(b"k" * 32).issue(user.id, user.username, now=time.time())
    for token in (None, "garbage", "a.b.c", expired_token(lab, user), forged):
        err = error_of(lab.request("GET", path, token=token), 401)
        assert err["error"] == "unauthorized"
    # The token in the wrong scheme does not count either.
    status, _, _ = raw_request(lab, "GET", path, headers={"Authorization": f"Basic {user.token}"})
    assert status == 401
    status, _, body = raw_request(lab, "GET", path, headers={"Authorization": "Bearer "})
    assert status == 401, body


def test_expired_token_message_says_expired(lab: LabServer, account: Any) -> None:
    err = error_of(lab.request("GET", "/api/me", token=expired_token(lab, account())), 401)
    assert "expired" in err["message"]


async def test_users_shows_online_while_a_socket_is_open(lab: LabServer, account: Any, connect: Any) -> None:
    ann, viewer = account(), account()

    async def entry() -> dict[str, Any]:
        status, body = await api(lab, "GET", "/api/users", token=viewer.token)
        assert status == 200
        (found,) = [u for u in body["users"] if u["id"] == ann.id]
        return found

    assert (await entry())["online"] is False
    tab1 = await connect(ann)
    tab2 = await connect(ann)
    now = await entry()
    assert now == {"id": ann.id, "username": ann.username, "online": True, "sockets": 2}
    status, me = await api(lab, "GET", "/api/me", token=ann.token)
    assert me["online"] is True
    assert sorted(me["sockets"]) == sorted([tab1.welcome["socket_id"], tab2.welcome["socket_id"]])

    await tab1.close()

    async def one_left() -> bool:
        e = await entry()
        return e["sockets"] == 1 and e["online"] is True

    await until(one_left)
    await tab2.close()

    async def offline() -> bool:
        e = await entry()
        return e["online"] is False and e["sockets"] == 0

    await until(offline)


# --- posts ------------------------------------------------------------------------------


def make_post(lab: LabServer, user: Account, text: str, **extra: Any) -> dict[str, Any]:
    status, body = lab.request("POST", "/api/posts", {"text": text, **extra}, user.token)
    assert status == 201, body
    return body["post"]


def test_create_post_requires_text(lab: LabServer, account: Any) -> None:
    user = account()
    post = make_post(lab, user, "hello world")
    assert post["text"] == "hello world" and post["image"] is None
    assert post["author"] == user.user and post["likes"] == 0 and post["comments"] == 0
    for body in ({}, {"text": ""}, {"text": "   "}, {"text": 5}, {"text": None}, {"text": "x" * 4001}):
        error_of(lab.request("POST", "/api/posts", body, user.token), 400)
    assert error_of(lab.request("POST", "/api/posts", {"text": "x" * 100_000}, user.token), 413)["error"] == "too_large"
    error_of(lab.request("POST", "/api/posts", {"text": "hi"}), 401)


async def test_post_image_must_be_an_uploaded_url(lab: LabServer, account: Any) -> None:
    user = account()
    status, up = await upload(lab, user.token, fresh_png())
    assert status == 201, up
    post = make_post(lab, user, "with a picture", image=up["url"])
    assert post["image"] == up["url"]
    bad = [
        "http://evil.example/x.png",
        "/uploads/../../etc/passwd",
        up["url"] + "?x=1",
        "/static/index.html",
        "/uploads/" + "0" * 32 + ".exe",
        "uploads/" + up["name"],
        123,
        {"url": up["url"]},
    ]
    for image in bad:
        err = error_of(lab.request("POST", "/api/posts", {"text": "pic", "image": image}, user.token), 400)
        assert "image" in err["message"]


def test_list_posts_newest_first_with_limit_and_before(lab: LabServer, account: Any) -> None:
    user = account()
    made = [make_post(lab, user, f"post {i}") for i in range(4)]
    ids = [p["id"] for p in made]
    assert ids == sorted(ids)

    status, body = lab.request("GET", "/api/posts?limit=3", token=user.token)
    assert status == 200
    assert [p["id"] for p in body["posts"]] == ids[::-1][:3]

    status, body = lab.request("GET", f"/api/posts?limit=2&before={ids[2]}", token=user.token)
    assert [p["id"] for p in body["posts"]] == [ids[1], ids[0]]
    assert body["posts"][0]["text"] == "post 1"

    status, body = lab.request("GET", f"/api/posts?before={ids[0]}", token=user.token)
    assert all(p["id"] < ids[0] for p in body["posts"])

    for query in ("limit=0", "limit=201", "limit=x", "before=0", "before=abc"):
        error_of(lab.request("GET", f"/api/posts?{query}", token=user.token), 400)


def test_like_is_idempotent_and_unlike_removes_it(lab: LabServer, account: Any) -> None:
    author, fan = account(), account()
    post = make_post(lab, author, "like me")
    path = f"/api/posts/{post['id']}/like"
    for _ in range(2):
        status, body = lab.request("POST", path, token=fan.token)
        assert status == 200, body
        assert body["liked"] is True and body["post"]["likes"] == 1
    status, body = lab.request("DELETE", path, token=fan.token)
    assert status == 200 and body["liked"] is False and body["post"]["likes"] == 0
    status, body = lab.request("DELETE", path, token=fan.token)  # nothing to remove: still 0
    assert status == 200 and body["post"]["likes"] == 0
    lab.request("POST", path, token=fan.token)
    lab.request("POST", path, token=author.token)
    listed = lab.request("GET", f"/api/posts?before={post['id'] + 1}&limit=1", token=fan.token)[1]["posts"]
    assert listed[0]["id"] == post["id"] and listed[0]["likes"] == 2


def test_comments_increment_the_counter_and_are_listed(lab: LabServer, account: Any) -> None:
    author, other = account(), account()
    post = make_post(lab, author, "discuss")
    path = f"/api/posts/{post['id']}/comments"
    status, body = lab.request("POST", path, {"text": "first"}, other.token)
    assert status == 201, body
    assert body["comment"]["text"] == "first" and body["comment"]["author"] == other.user
    assert body["post"]["comments"] == 1
    status, body = lab.request("POST", path, {"text": "second"}, author.token)
    assert body["post"]["comments"] == 2
    status, body = lab.request("GET", path, token=other.token)
    assert status == 200
    assert [c["text"] for c in body["comments"]] == ["first", "second"]
    error_of(lab.request("POST", path, {"text": ""}, other.token), 400)
    error_of(lab.request("POST", path, {}, other.token), 400)


def test_missing_post_is_404(lab: LabServer, account: Any) -> None:
    user = account()
    missing = 10**12
    for method, suffix, body in [
        ("POST", "like", None),
        ("DELETE", "like", None),
        ("POST", "comments", {"text": "anyone?"}),
        ("GET", "comments", None),
    ]:
        err = error_of(lab.request(method, f"/api/posts/{missing}/{suffix}", body, user.token), 404)
        assert err["error"] == "not_found"
    # A path that is no route at all is a JSON 404 under /api as well.
    err = error_of(lab.request("POST", "/api/posts/abc/like", None, user.token), 404)


async def test_live_counters_and_notifications_over_websocket(lab: LabServer, account: Any, connect: Any) -> None:
    author, fan, watcher = account(), account(), account()
    author_ws = await connect(author)
    watcher_ws = await connect(watcher)
    status, body = await api(lab, "POST", "/api/posts", {"text": "live!"}, author.token)
    assert status == 201
    post_id = body["post"]["id"]
    topic = f"post:{post_id}"
    ack = await watcher_ws.request("subscribe", topic=topic)
    assert ack["type"] == "ack" and ack["topic"] == topic

    # like -> counters to the topic, a notification to the author
    status, _ = await api(lab, "POST", f"/api/posts/{post_id}/like", token=fan.token)
    assert status == 200
    update = await watcher_ws.expect("post_updated")
    assert update == {"type": "post_updated", "post_id": post_id, "likes": 1, "comments": 0}
    note = await author_ws.expect("notification")
    assert note["kind"] == "like" and note["post_id"] == post_id and note["from"] == fan.user

    # a second like changes nothing: no update, no notification
    await api(lab, "POST", f"/api/posts/{post_id}/like", token=fan.token)
    await watcher_ws.nothing_more("post_updated")
    await author_ws.nothing_more("notification", wait=0.05)

    # comment -> counters again, and a comment notification
    status, _ = await api(lab, "POST", f"/api/posts/{post_id}/comments", {"text": "nice"}, fan.token)
    assert status == 201
    update = await watcher_ws.expect("post_updated")
    assert update == {"type": "post_updated", "post_id": post_id, "likes": 1, "comments": 1}
    note = await author_ws.expect("notification")
    assert note["kind"] == "comment" and note["from"] == fan.user

    # unlike -> counters go down, with no notification
    await api(lab, "DELETE", f"/api/posts/{post_id}/like", token=fan.token)
    update = await watcher_ws.expect("post_updated")
    assert update["likes"] == 0 and update["comments"] == 1
    await author_ws.nothing_more("notification")

    # after unsubscribing, the watcher hears nothing
    assert (await watcher_ws.request("unsubscribe", topic=topic))["type"] == "ack"
    await api(lab, "POST", f"/api/posts/{post_id}/like", token=fan.token)
    await author_ws.expect("notification")
    await watcher_ws.nothing_more("post_updated")

    # the notifications endpoint lists them newest first
    status, body = await api(lab, "GET", "/api/notifications", token=author.token)
    assert status == 200
    kinds = [n["kind"] for n in body["notifications"]]
    assert kinds == ["like", "comment", "like"]
    ids = [n["id"] for n in body["notifications"]]
    assert ids == sorted(ids, reverse=True)
    assert all(n["type"] == "notification" and n["post_id"] == post_id for n in body["notifications"])
    status, body = await api(lab, "GET", "/api/notifications?limit=1", token=author.token)
    assert [n["kind"] for n in body["notifications"]] == ["like"]
    # nobody notified the fan
    status, body = await api(lab, "GET", "/api/notifications", token=fan.token)
    assert body["notifications"] == []


async def test_mentions_in_posts_and_comments_notify_the_mentioned_user(
    lab: LabServer, account: Any, connect: Any
) -> None:
    author, commenter, mentioned = account(), account(), account()
    mentioned_ws = await connect(mentioned)
    author_ws = await connect(author)

    status, body = await api(lab, "POST", "/api/posts", {"text": f"hello @{mentioned.username}!"}, author.token)
    post_id = body["post"]["id"]
    note = await mentioned_ws.expect("notification")
    assert note["kind"] == "mention" and note["post_id"] == post_id and note["from"] == author.user
    await author_ws.nothing_more("notification", wait=0.1)  # mentioning no one else, not yourself

    text = f"@{mentioned.username} look at this, also @{mentioned.username.upper()} and @nobody_{uuid.uuid4().hex[:6]}"
    status, _ = await api(lab, "POST", f"/api/posts/{post_id}/comments", {"text": text}, commenter.token)
    assert status == 201
    note = await mentioned_ws.expect("notification")
    assert note["kind"] == "mention" and note["from"] == commenter.user and "comment" in note["text"]
    await mentioned_ws.nothing_more("notification")  # one mention per user per text
    assert (await author_ws.expect("notification"))["kind"] == "comment"

    # an e-mail address is no mention
    await api(lab, "POST", "/api/posts", {"text": f"mail me at x@{mentioned.username}"}, author.token)
    await mentioned_ws.nothing_more("notification")

    status, body = await api(lab, "GET", "/api/notifications", token=mentioned.token)
    assert [(n["kind"], n["from"]["id"]) for n in body["notifications"]] == [
        ("mention", commenter.id),
        ("mention", author.id),
    ]


async def test_liking_your_own_post_sends_no_notification(lab: LabServer, account: Any, connect: Any) -> None:
    author, watcher = account(), account()
    author_ws = await connect(author)
    watcher_ws = await connect(watcher)
    status, body = await api(lab, "POST", "/api/posts", {"text": "self love"}, author.token)
    post_id = body["post"]["id"]
    await watcher_ws.request("subscribe", topic=f"post:{post_id}")
    status, body = await api(lab, "POST", f"/api/posts/{post_id}/like", token=author.token)
    assert status == 200 and body["post"]["likes"] == 1
    assert (await watcher_ws.expect("post_updated"))["likes"] == 1  # the counter still goes live
    await author_ws.nothing_more("notification")
    await api(lab, "POST", f"/api/posts/{post_id}/comments", {"text": "me again"}, author.token)
    assert (await watcher_ws.expect("post_updated"))["comments"] == 1
    await author_ws.nothing_more("notification")
    status, body = await api(lab, "GET", "/api/notifications", token=author.token)
    assert body["notifications"] == []


# --- uploads ---------------------------------------------------------------------------


async def test_upload_png_is_served_back_with_nosniff(lab: LabServer, account: Any) -> None:
    user = account()
    data = fresh_png()
    status, body = await upload(lab, user.token, data, content_type="application/octet-stream")
    assert status == 201, body
    name = hashlib.sha256(data).hexdigest()[:32] + ".png"
    assert body == {"url": f"/uploads/{name}", "name": name, "size": len(data), "content_type": "image/png"}
    assert (Path(lab.data_dir) / "uploads" / name).read_bytes() == data

    status, headers, served = raw_request(lab, "GET", body["url"])
    assert status == 200
    assert headers["content-type"] == "image/png"
    assert headers["x-content-type-options"] == "nosniff"
    assert served == data

    again_status, again = await upload(lab, user.token, data, filename="other-name.gif")
    assert again_status == 201 and again["url"] == body["url"] and again["name"] == name


@pytest.mark.parametrize(
    ("data", "filename", "content_type"),
    [
        (b"just some text\n", "notes.txt", "text/plain"),
        (b"not an image at all, honest" * 3, "photo.png", "image/png"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", "x.svg", "image/svg+xml"),
        (b"", "empty.png", "image/png"),
    ],
    ids=["text", "png-name-text-bytes", "svg", "empty"],
)
async def test_upload_of_a_non_image_is_415(
    lab: LabServer, account: Any, data: bytes, filename: str, content_type: str
) -> None:
    uploads = Path(lab.data_dir) / "uploads"
    before = set(uploads.iterdir())
    status, body = await upload(lab, account().token, data, filename=filename, content_type=content_type)
    assert status == 415, body
    assert body["error"] == "unsupported_type"
    assert set(uploads.iterdir()) == before


async def test_upload_just_over_the_limit_is_413(lab: LabServer, account: Any) -> None:
    uploads = Path(lab.data_dir) / "uploads"
    before = set(uploads.iterdir())
    data = png(7) + b"\0" * (UPLOAD_MAX + 1 - len(png(7)))
    assert len(data) == UPLOAD_MAX + 1
    status, body = await upload(lab, account().token, data)
    assert status == 413, body
    assert body["error"] == "too_large"
    assert set(uploads.iterdir()) == before


async def test_upload_at_the_limit_is_accepted(lab: LabServer, account: Any) -> None:
    data = fresh_png()
    data += b"\0" * (UPLOAD_MAX - len(data))
    status, body = await upload(lab, account().token, data)
    assert status == 201, body
    assert body["size"] == UPLOAD_MAX


def test_upload_declaring_a_huge_body_is_413_before_it_is_sent(lab: LabServer, account: Any) -> None:
    user = account()
    host, port = lab.url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest("POST", "/api/uploads")
        conn.putheader("Authorization", f"Bearer {user.token}")
        conn.putheader("Content-Type", "multipart/form-data; boundary=xyz")
        conn.putheader("Content-Length", str(50 * 1024 * 1024))
        conn.endheaders()  # and no body: the server must answer from the headers alone
        resp = conn.getresponse()
        assert resp.status == 413
        assert json.loads(resp.read())["error"] == "too_large"
    finally:
        conn.close()


async def test_upload_filename_with_path_tricks_is_stored_by_hash_only(
    lab: LabServer, account: Any, tmp_path: Path
) -> None:
    root = Path(lab.data_dir).parent  # "../../etc/passwd.png" from uploads/ lands here
    uploads = Path(lab.data_dir) / "uploads"

    def tree() -> set[Path]:
        return {p for p in root.rglob("*") if p.is_file()}

    before = tree()
    data = fresh_png()
    name = hashlib.sha256(data).hexdigest()[:32] + ".png"
    for filename in ("../../etc/passwd.png", "/etc/passwd.png", "..\\..\\evil.png", "../" + name):
        status, body = await upload(lab, account().token, data, filename=filename)
        assert status == 201, body
        assert body["name"] == name and body["url"] == f"/uploads/{name}"
    new = tree() - before
    # Only the hash-named file is new (plus, perhaps, SQLite's journal files in the data dir).
    assert uploads / name in new
    strays = {p for p in new - {uploads / name} if not p.name.startswith("lab.sqlite3")}
    assert strays == set()
    assert not (root / "etc").exists() and not (Path(lab.data_dir) / "etc").exists()
    assert not list(root.rglob("passwd*")) and not list(root.rglob("evil*"))
    assert {p.name for p in uploads.iterdir()} >= {name}
    assert all(p.suffix != ".part" for p in uploads.iterdir())


@pytest.mark.parametrize(
    "path",
    [
        "/uploads/../x",
        "/uploads/../lab.sqlite3",
        "/uploads/..%2flab.sqlite3",
        "/uploads/%2e%2e/jwt-secret",
        "/uploads/..%2Fjwt-secret",
        "/uploads/cat.png",
        "/uploads/" + "0" * 32 + ".png",  # well-formed but never uploaded
        "/uploads/" + "A" * 32 + ".png",
        "/uploads/" + "0" * 32 + ".png.part",
        "/uploads/" + "0" * 31 + ".png",
    ],
)
def test_upload_paths_that_do_not_name_an_upload_are_404(lab: LabServer, path: str) -> None:
    status, headers, body = raw_request(lab, "GET", path)
    assert status == 404, (path, status)
    assert b"jwt" not in body.lower() and not body.startswith(b"SQLite")


async def test_upload_without_a_file_field_is_400(lab: LabServer, account: Any) -> None:
    user = account()
    status, body = await upload(lab, user.token, fresh_png(), field="image")
    assert status == 400, body
    assert body["error"] == "bad_upload" and "file" in body["message"]
    # Not multipart at all
    status, headers, raw = raw_request(
        lab,
        "POST",
        "/api/uploads",
        b'{"file": "x"}',
        {"Authorization": f"Bearer {user.token}", "Content-Type": "application/json"},
    )
    assert status == 400, raw
    assert json.loads(raw)["error"] == "bad_upload"


async def test_upload_without_a_token_is_401(lab: LabServer) -> None:
    uploads = Path(lab.data_dir) / "uploads"
    before = set(uploads.iterdir())
    status, body = await upload(lab, None, fresh_png())
    assert status == 401 and body["error"] == "unauthorized"
    status, body = await upload(lab, "garbage", fresh_png())
    assert status == 401
    assert set(uploads.iterdir()) == before


# --- rooms: history, short polling, long polling ------------------------------------------


async def test_message_posted_over_http_reaches_websocket_members(lab: LabServer, account: Any, connect: Any) -> None:
    sender, listener = account(), account()
    ws = await connect(listener)
    ack = await ws.request("join", room="general")
    assert ack["type"] == "ack"
    status, body = await api(lab, "POST", "/api/rooms/general/messages", {"text": "hello over HTTP"}, sender.token)
    assert status == 201, body
    assert body["room"] == "general" and body["seq"] > ack["last_seq"]
    chat = await ws.expect("chat")
    assert chat["seq"] == body["seq"] and chat["text"] == "hello over HTTP"
    assert chat["room"] == "general" and chat["from"] == sender.user
    # and it is in the history
    status, hist = await api(lab, "GET", f"/api/rooms/general/messages?after={body['seq'] - 1}", token=listener.token)
    assert [m["text"] for m in hist["messages"]] == ["hello over HTTP"]


def test_short_polling_returns_exactly_the_later_messages_in_order(lab: LabServer, account: Any) -> None:
    user = account()
    room = unique("poll")
    base = f"/api/rooms/{room}/messages"
    status, body = lab.request("GET", base, token=user.token)
    assert status == 200 and body["messages"] == [] and body["last_seq"] == 0
    seqs = []
    for i in range(5):
        status, body = lab.request("POST", base, {"text": f"m{i}"}, user.token)
        assert status == 201
        seqs.append(body["seq"])
    assert seqs == sorted(seqs) and len(set(seqs)) == 5

    status, body = lab.request("GET", f"{base}?after={seqs[1]}", token=user.token)
    assert status == 200
    assert [m["text"] for m in body["messages"]] == ["m2", "m3", "m4"]
    assert [m["seq"] for m in body["messages"]] == seqs[2:]
    assert body["last_seq"] == seqs[-1]
    status, body = lab.request("GET", f"{base}?after={seqs[-1]}", token=user.token)
    assert body["messages"] == [] and body["last_seq"] == seqs[-1]
    status, body = lab.request("GET", f"{base}?after=0&limit=2", token=user.token)
    assert [m["text"] for m in body["messages"]] == ["m0", "m1"]

    for query in ("after=x", "after=-1", "after=1.5", "limit=0", "limit=abc"):
        err = error_of(lab.request("GET", f"{base}?{query}", token=user.token), 400)
        assert err["error"] == "bad_query"
    error_of(lab.request("GET", base), 401)


@pytest.mark.parametrize("room", ["bad%20room", "a" * 65, "room%21", "dm:0:1", "dm:1", "%F0%9F%98%80"])
def test_invalid_room_name_is_400(lab: LabServer, account: Any, room: str) -> None:
    user = account()
    for method, suffix, body in [("GET", "messages", None), ("POST", "messages", {"text": "x"}), ("GET", "poll", None)]:
        err = error_of(lab.request(method, f"/api/rooms/{room}/{suffix}?timeout=0", body, user.token), 400)
        assert err["error"] == "bad_room"


async def test_dm_room_history_is_for_its_two_parties_only(lab: LabServer, account: Any, connect: Any) -> None:
    ann, bob, eve = account(), account(), account()
    ann_ws = await connect(ann)
    ack = await ann_ws.request("dm", to=bob.id, text="psst")
    assert ack["type"] == "ack", ack
    room = f"dm:{min(ann.id, bob.id)}:{max(ann.id, bob.id)}"
    assert ack["room"] == room
    for party in (ann, bob):
        status, body = await api(lab, "GET", f"/api/rooms/{room}/messages", token=party.token)
        assert status == 200, body
        assert [m["text"] for m in body["messages"]] == ["psst"]
    err = error_of(await api(lab, "GET", f"/api/rooms/{room}/messages", token=eve.token), 403)
    assert err["error"] == "forbidden"
    error_of(await api(lab, "GET", f"/api/rooms/{room}/poll?timeout=0", token=eve.token), 403)
    error_of(await api(lab, "POST", f"/api/rooms/{room}/messages", {"text": "hi"}, eve.token), 403)
    # even a party cannot post a DM over HTTP
    error_of(await api(lab, "POST", f"/api/rooms/{room}/messages", {"text": "hi"}, ann.token), 400)
    # the canonical dm:1:2 rule holds for any pair that excludes the reader
    others = sorted({1, 2, 3} - {eve.id})[:2]
    error_of(await api(lab, "GET", f"/api/rooms/dm:{others[0]}:{others[1]}/messages", token=eve.token), 403)


async def test_long_poll_returns_as_soon_as_a_message_is_posted(lab: LabServer, account: Any) -> None:
    user = account()
    room = unique("longpoll")
    status, body = await api(lab, "POST", f"/api/rooms/{room}/messages", {"text": "before"}, user.token)
    last = body["seq"]

    # timeout=30 (the most the server allows) and wait_for(..., 10) below: a poll that the
    # post did not wake would answer only at its timeout, with the message too, so only a
    # timeout far beyond the wait tells "woken by the post" from "timed out".
    poll = asyncio.create_task(api(lab, "GET", f"/api/rooms/{room}/poll?after={last}&timeout=30", token=user.token))
    await until(lambda: polls_parked(lab, 1), what="the long poll parked")
    assert not poll.done(), "the long poll answered before any message came"
    status, body = await api(lab, "POST", f"/api/rooms/{room}/messages", {"text": "wake up"}, user.token)
    status, result = await asyncio.wait_for(poll, 10)
    assert status == 200, result
    assert [m["text"] for m in result["messages"]] == ["wake up"]
    assert result["messages"][0]["seq"] == body["seq"] == result["last_seq"]

    # A poll whose 'after' is already behind returns at once, not at its timeout.
    poll_behind = api(lab, "GET", f"/api/rooms/{room}/poll?after={last}&timeout=30", token=user.token)
    status, result = await asyncio.wait_for(poll_behind, 10)
    assert [m["text"] for m in result["messages"]] == ["wake up"]


async def test_long_polls_on_one_room_all_wake(lab: LabServer, account: Any) -> None:
    user = account()
    room = unique("fanout")
    polls = [
        asyncio.create_task(api(lab, "GET", f"/api/rooms/{room}/poll?after=0&timeout=30", token=user.token))
        for _ in range(3)
    ]
    await until(lambda: polls_parked(lab, 3), what="the three long polls parked")
    assert not any(poll.done() for poll in polls)
    await api(lab, "POST", f"/api/rooms/{room}/messages", {"text": "all of you"}, user.token)
    results = await asyncio.wait_for(asyncio.gather(*polls), 10)  # woken, not timed out (30 s)
    for status, body in results:
        assert status == 200 and [m["text"] for m in body["messages"]] == ["all of you"]


async def test_long_poll_times_out_with_no_messages(lab: LabServer, account: Any) -> None:
    user = account()
    room = unique("quiet")
    started = time.monotonic()
    status, body = await asyncio.wait_for(
        api(lab, "GET", f"/api/rooms/{room}/poll?after=0&timeout=1", token=user.token), 10
    )
    elapsed = time.monotonic() - started
    assert status == 200, body
    assert body["messages"] == [] and body["room"] == room and body["last_seq"] == 0
    assert 0.9 <= elapsed, elapsed  # it waited its timeout (a busy machine only makes that longer)
    for query in ("timeout=-1", "timeout=x", "timeout=3600", "after=x"):
        err = error_of(await api(lab, "GET", f"/api/rooms/{room}/poll?{query}", token=user.token), 400)
        assert err["error"] == "bad_query"


# --- logout ------------------------------------------------------------------------------


async def test_logout_closes_sockets_with_1008_and_revokes_the_token(
    lab: LabServer, account: Any, connect: Any
) -> None:
    user, bystander = account(), account()
    tabs = [await connect(user), await connect(user)]
    other = await connect(bystander)

    status, body = await api(lab, "POST", "/api/logout", token=user.token)
    assert status == 200, body
    assert body == {"closed_sockets": 2}
    for tab in tabs:
        await asyncio.wait_for(tab.ws.wait_closed(), 5)
        assert tab.ws.close_code == 1008
    # Another user's socket stays open.
    pong = await other.request("ping", payload="still here")
    assert pong["type"] == "pong"

    err = error_of(await api(lab, "GET", "/api/me", token=user.token), 401)
    assert "revoked" in err["message"]
    error_of(await api(lab, "POST", "/api/posts", {"text": "x"}, user.token), 401)
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(f"{lab.ws_url}?token={user.token}")
    assert refused.value.response.status_code == 401

    # Logging in again, at once (within the same second), gives a token that works.
    status, again = await api(lab, "POST", "/api/login", {"username": user.username, "password": "lab-password"})
    assert status == 200, again
    status, me = await api(lab, "GET", "/api/me", token=again["token"])
    assert status == 200, me
    assert me["user"]["id"] == user.id
    fresh = await connect(Account(again["token"], again["user"]))
    assert fresh.welcome["user"]["id"] == user.id
    # Logging out with no sockets open closes none.
    await fresh.close()
    status, body = await api(lab, "POST", "/api/logout", token=again["token"])
    assert status == 200
    error_of(await api(lab, "POST", "/api/logout", token=again["token"]), 401)


async def test_server_sent_events_stream_the_room_and_resume_from_last_event_id(lab: LabServer) -> None:
    import aiohttp

    token = lab.account("sse_reader").token
    writer = lab.account("sse_writer").token
    seqs = [
        lab.request("POST", "/api/rooms/sse/messages", {"text": f"old {i}"}, token=writer)[1]["seq"] for i in range(3)
    ]

    async def read_events(
        session: aiohttp.ClientSession, headers: dict[str, str], params: dict[str, str], count: int
    ) -> list[dict[str, Any]]:
        events = []
        async with session.get(f"{lab.url}/api/rooms/sse/events", headers=headers, params=params) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
            event: dict = {}
            async for raw in resp.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("id: "):
                    event["id"] = int(line[4:])
                elif line.startswith("data: "):
                    event["data"] = json.loads(line[6:])
                elif line == "" and event:
                    events.append(event)
                    event = {}
                    if len(events) == count:
                        return events
        return events

    async with aiohttp.ClientSession() as session:
        # EventSource cannot set headers: the token rides in the query, as for /ws.
        reading = asyncio.create_task(read_events(session, {}, {"token": token, "after": str(seqs[0])}, 3))
        # The stream parks (as a long poll does) once it has sent the old messages: the post
        # below must then reach it live. Unwoken, it would wait 15 s, beyond the 10 s below.
        await until(lambda: polls_parked(lab, 1), what="the event stream parked")
        live = lab.request("POST", "/api/rooms/sse/messages", {"text": "live"}, token=writer)[1]["seq"]
        events = await asyncio.wait_for(reading, 10)
        assert [e["id"] for e in events] == [seqs[1], seqs[2], live]
        assert events[-1]["data"]["text"] == "live" and events[-1]["data"]["type"] == "chat"
        # A reconnecting EventSource sends Last-Event-ID: it gets only what came after.
        again = await asyncio.wait_for(
            read_events(session, {"Authorization": f"Bearer {token}", "Last-Event-ID": str(seqs[2])}, {}, 1), 10
        )
        assert [e["id"] for e in again] == [live]
        async with session.get(f"{lab.url}/api/rooms/sse/events") as refused:
            assert refused.status == 401


# --- the session cookie ---------------------------------------------------------------------


def _cookie_attributes(set_cookie: str) -> tuple[str, str, dict[str, str]]:
    """(name, value, {attribute in lower case: value}) of one Set-Cookie header."""
    first, *attributes = (part.strip() for part in set_cookie.split(";"))
    name, _, value = first.partition("=")
    return name, value, {a.partition("=")[0].lower(): a.partition("=")[2] for a in attributes}


@pytest.mark.parametrize("action", ["signup", "login"])
def test_signup_and_login_set_an_httponly_lax_session_cookie(lab: LabServer, action: str) -> None:
    username = f"cookie_{action}_{uuid.uuid4().hex[:8]}"
    credentials = json.dumps({"username": username, "password": "lab-password"}).encode()
    if action == "login":
        raw_request(lab, "POST", "/api/signup", credentials, {"Content-Type": "application/json"})
    status, headers, body = raw_request(
        lab, "POST", f"/api/{action}", credentials, {"Content-Type": "application/json"}
    )
    assert status in (200, 201), body
    name, value, attributes = _cookie_attributes(headers["set-cookie"])
    assert name == "lab_session"
    assert value == json.loads(body)["token"]  # the same token as in the body
    assert "httponly" in attributes
    assert attributes["samesite"] == "Lax"
    assert attributes["path"] == "/"
    assert int(attributes["max-age"]) > 0
    assert "secure" not in attributes  # plain http here; set over TLS


def test_the_rest_api_does_not_accept_the_cookie(lab: LabServer) -> None:
    """Only /ws takes the cookie (after its Origin check); REST wants a Bearer header, so no CSRF."""
    token = lab.account("cookie_rest").token
    status, _, body = raw_request(lab, "GET", "/api/me", headers={"Cookie": f"lab_session={token}"})
    assert status == 401, body


def test_logout_removes_the_cookie(lab: LabServer) -> None:
    token = lab.account("cookie_bye").token
    status, headers, body = raw_request(lab, "POST", "/api/logout", headers={"Authorization": f"Bearer {token}"})
    assert status == 200, body
    name, value, attributes = _cookie_attributes(headers["set-cookie"])
    assert name == "lab_session" and value in ("", '""')  # aiohttp writes an empty quoted value
    assert attributes["max-age"] == "0" and attributes["path"] == "/"


# --- HTTP caching: ETag and 304 Not Modified ---------------------------------------------------


def _get(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one request, without urllib treating 304 as an error."""
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


async def test_an_upload_has_its_content_hash_as_a_strong_etag_and_revalidates_to_304(
    lab: LabServer, account: Any
) -> None:
    data = fresh_png()
    status, up = await upload(lab, account().token, data)
    assert status == 201
    url = lab.url + up["url"]
    status, headers, body = _get(url)
    etag = headers["ETag"]
    assert status == 200 and body == data and headers["Content-Type"] == "image/png"
    assert etag == '"' + up["name"].split(".")[0] + '"' == '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert headers["X-Content-Type-Options"] == "nosniff"
    for sent in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        status, headers, body = _get(url, {"If-None-Match": sent})
        assert (status, body, headers["ETag"]) == (304, b"", etag), sent
        assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    status, _, body = _get(url, {"If-None-Match": '"something-else"'})
    assert status == 200 and body == data
    status, headers, body = _get(url, method="HEAD")
    assert status == 200 and body == b"" and headers["ETag"] == etag
    missing = lab.url + "/uploads/" + "0" * 32 + ".png"
    assert _get(missing)[0] == 404 and _get(missing, {"If-None-Match": "*"})[0] == 404


def test_a_post_has_an_etag_of_its_json_that_changes_when_it_does(lab: LabServer, account: Any) -> None:
    author, fan = account(), account()
    post = make_post(lab, author, "cache me")
    url = f"{lab.url}/api/posts/{post['id']}"
    auth = {"Authorization": f"Bearer {fan.token}"}
    status, headers, body = _get(url, auth)
    etag = headers["ETag"]
    assert status == 200 and json.loads(body) == {"post": post}
    assert etag == '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    assert headers["Cache-Control"] == "private, no-cache"
    status, headers, body = _get(url, {**auth, "If-None-Match": etag})
    assert (status, body, headers["ETag"]) == (304, b"", etag)
    assert lab.request("POST", f"/api/posts/{post['id']}/like", token=fan.token)[0] == 200
    status, headers, body = _get(url, {**auth, "If-None-Match": etag})  # the like changed it
    assert status == 200 and json.loads(body)["post"]["likes"] == 1 and headers["ETag"] != etag
    assert _get(url, {"If-None-Match": etag})[0] == 401  # the token is checked before the cache
    status, _, body = _get(f"{lab.url}/api/posts/999999", auth)
    assert status == 404 and json.loads(body)["error"] == "not_found"
