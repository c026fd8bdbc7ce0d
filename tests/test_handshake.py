"""Unit tests of labserver.handshake: RFC 6455 section 4 checks as pure functions."""

from __future__ import annotations

import base64

import pytest

from labserver.handshake import (
    SUBPROTOCOLS,
    Refusal,
    accept_key,
    check_upgrade,
    key_is_valid,
    origin_allowed,
    select_subprotocol,
)

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
HOST = "localhost:8765"


def headers(**overrides: str | None) -> dict[str, str]:
    base: dict[str, str | None] = {
        "Host": HOST,
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": RFC_KEY,
        "Sec-WebSocket-Version": "13",
    }
    base.update({k.replace("_", "-"): v for k, v in overrides.items()})
    return {k: v for k, v in base.items() if v is not None}


def test_accept_key_rfc_example() -> None:
    # RFC 6455 section 1.3
    assert accept_key(RFC_KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_accept_key_differs_per_key() -> None:
    other = base64.b64encode(bytes(16)).decode()
    assert accept_key(other) != accept_key(RFC_KEY)
    assert len(base64.b64decode(accept_key(other))) == 20  # a SHA-1 digest


@pytest.mark.parametrize(
    "key", [RFC_KEY, base64.b64encode(bytes(16)).decode(), base64.b64encode(b"\xff" * 16).decode()]
)
def test_valid_keys(key: str) -> None:
    assert key_is_valid(key)


@pytest.mark.parametrize(
    "key",
    [
        None,
        "",
        "not base64!!",
        base64.b64encode(bytes(15)).decode(),
        base64.b64encode(bytes(17)).decode(),
        base64.b64encode(bytes(32)).decode(),
        RFC_KEY[:-2],  # bad padding
        RFC_KEY + " ",
        "dGhlIHNhbXBsZSBub25jZQ==\u00e9",
        "dGhlIHNhbXBs ZSBub25jZQ==",
    ],
)
def test_invalid_keys(key: str | None) -> None:
    assert not key_is_valid(key)


def test_good_handshake_goes_ahead() -> None:
    assert check_upgrade(headers(), []) is None
    assert check_upgrade(headers(Upgrade="WebSocket"), []) is None


@pytest.mark.parametrize("version", ["12", "8", "14", "", None, " 13"])
def test_unsupported_version_gets_426(version: str | None) -> None:
    refusal = check_upgrade(headers(**{"Sec-WebSocket-Version": version}), [])
    assert isinstance(refusal, Refusal)
    assert refusal.status == 426
    assert refusal.code == "unsupported_version"
    assert ("Sec-WebSocket-Version", "13") in refusal.headers
    assert "13" in refusal.message


def test_version_12_message_names_it() -> None:
    refusal = check_upgrade(headers(**{"Sec-WebSocket-Version": "12"}), [])
    assert refusal is not None and "'12'" in refusal.message


@pytest.mark.parametrize("key", [None, "", "short", base64.b64encode(bytes(8)).decode(), "%%%%%%%%%%%%%%%%%%%%%%%%"])
def test_bad_or_missing_key_gets_400(key: str | None) -> None:
    refusal = check_upgrade(headers(**{"Sec-WebSocket-Key": key}), [])
    assert refusal is not None
    assert refusal.status == 400
    assert refusal.code == "bad_key"
    assert refusal.headers == ()


def test_version_is_checked_before_key() -> None:
    refusal = check_upgrade(headers(**{"Sec-WebSocket-Version": "12", "Sec-WebSocket-Key": None}), [])
    assert refusal is not None and refusal.status == 426


def test_non_websocket_request_is_not_checked_for_version_or_key() -> None:
    plain = {"Host": HOST}
    assert check_upgrade(plain, []) is None


# --- Origin (section 10.2) -------------------------------------------------------------


def refused(origin: str | None, allowlist: list[str] | tuple[str, ...] = (), host: str | None = HOST) -> bool:
    refusal = check_upgrade(headers(Origin=origin, Host=host), allowlist)
    if refusal is None:
        assert origin_allowed(origin, host, allowlist)
        return False
    assert refusal.status == 403 and refusal.code == "forbidden_origin"
    assert repr(origin) in refusal.message
    assert not origin_allowed(origin, host, allowlist)
    return True


def test_no_origin_is_allowed() -> None:
    assert not refused(None)
    assert not refused(None, host=None)


@pytest.mark.parametrize(
    "origin", [f"http://{HOST}", f"https://{HOST}", "HTTP://LOCALHOST:8765", "http://LocalHost:8765"]
)
def test_same_host_and_port_is_allowed(origin: str) -> None:
    assert not refused(origin)


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost:9999",  # different port
        "http://localhost",  # no port is a different port
        "http://127.0.0.1:8765",  # another name for the host is another origin
        "http://evil.example",
        "https://evil.example",
        "null",
        "",
        "http://localhost:8765.evil.example",
        "http://user@localhost:8765",
    ],
)
def test_other_origins_are_refused(origin: str) -> None:
    assert refused(origin)


def test_different_port_refused_even_with_allowlist() -> None:
    assert refused("http://localhost:9999", ["http://localhost:8000"])


def test_suffix_of_allowlisted_origin_is_refused() -> None:
    allow = ["http://example.com"]
    assert not refused("http://example.com", allow)
    assert refused("http://example.com.evil.com", allow)
    assert refused("http://evil.com/http://example.com", allow)
    assert refused("http://notexample.com", allow)
    assert refused("http://sub.example.com", allow)
    assert refused("https://example.com", allow)  # scheme is part of the origin
    assert refused("http://example.com:8080", allow)


def test_evil_example_is_refused() -> None:
    assert refused("http://evil.example", ["http://example.com", "https://lab.example"])


def test_star_allows_any_origin() -> None:
    assert not refused("http://evil.example", ["*"])
    assert not refused("null", ["http://example.com", "*"])


def test_exact_allowlist_match() -> None:
    allow = ["https://Lab.Example:8443/", "http://other.example"]
    assert not refused("https://lab.example:8443", allow)  # case-insensitive, trailing slash in config ignored
    assert not refused("http://other.example", allow)
    assert refused("https://lab.example", allow)
    assert refused("https://lab.example:8444", allow)


@pytest.mark.parametrize(
    "origin",
    [f"ftp://{HOST}", f"file://{HOST}", f"ws://{HOST}", f"chrome-extension://{HOST}", f"javascript://{HOST}"],
)
def test_non_http_scheme_refused(origin: str) -> None:
    assert refused(origin)


def test_no_host_header_refuses_browser_origins() -> None:
    assert refused(f"http://{HOST}", host=None)
    assert not refused("http://example.com", ["http://example.com"], host=None)


def test_origin_refused_even_with_good_handshake_fields() -> None:
    refusal = check_upgrade(headers(Origin="http://evil.example"), ["http://example.com"])
    assert refusal == Refusal(403, "forbidden_origin", "Origin 'http://evil.example' is not allowed")


def test_http_1_0_upgrade_is_refused() -> None:
    refusal = check_upgrade(headers(), [], (1, 0))
    assert refusal is not None and refusal.status == 400 and "HTTP/1.1" in refusal.message
    assert check_upgrade(headers(), [], (1, 1)) is None


def test_repeated_key_or_version_is_refused() -> None:
    from multidict import CIMultiDict

    for name in ("Sec-WebSocket-Key", "Sec-WebSocket-Version"):
        twice = CIMultiDict(headers())
        twice.add(name, headers()[name])
        refusal = check_upgrade(twice, [])
        assert refusal is not None and refusal.status == 400 and name in refusal.message
    assert check_upgrade(CIMultiDict(headers()), []) is None


# --- subprotocol (RFC 6455 sections 1.9 and 4.2.2) ----------------------------------------


def test_the_lab_speaks_one_subprotocol() -> None:
    assert SUBPROTOCOLS == ("lab.v1",)


@pytest.mark.parametrize(
    ("offered", "answered"),
    [
        ("lab.v1", "lab.v1"),
        ("chat, lab.v1", "lab.v1"),  # the first one the server knows, in the client's order
        ("lab.v1 , chat", "lab.v1"),  # whitespace around the commas is not part of a name
        ("chat", None),  # nothing in common: omit the header, never answer something else
        ("LAB.V1", None),  # names are compared exactly
        ("lab.v2, lab", None),
        ("", None),
        (None, None),
    ],
)
def test_select_subprotocol_answers_only_what_was_offered(offered: str | None, answered: str | None) -> None:
    assert select_subprotocol(offered) == answered


def test_select_subprotocol_follows_the_client_preference_among_several_supported() -> None:
    assert select_subprotocol("b, a", ("a", "b")) == "b"
