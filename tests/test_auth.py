"""Unit tests of labserver.auth: password hashing and JWT issue/verify."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from labserver.app import load_or_create_secret
from labserver.auth import (
    ALGORITHM,
    AUDIENCE,
    ISSUER,
    AuthError,
    Claims,
    TokenIssuer,
    hash_password,
    verify_password,
)

NO_KEY: Any = None  # alg none takes no key (PyJWT's types, with cryptography installed, say a key is required)

SECRET = b"s" * 32
OTHER = b"o" * 32


# --- passwords -------------------------------------------------------------------------


def test_hash_and_verify() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$")
    assert "correct horse" not in stored
    assert verify_password("correct horse", stored)
    assert not verify_password("correct horsf", stored)
    assert not verify_password("", stored)
    assert not verify_password("Correct horse", stored)


def test_hashes_are_salted() -> None:
    a, b = hash_password("pw"), hash_password("pw")
    assert a != b
    assert verify_password("pw", a) and verify_password("pw", b)


def test_unicode_password() -> None:
    stored = hash_password("p\u00e4ssw\u00f6rd \u2603")
    assert verify_password("p\u00e4ssw\u00f6rd \u2603", stored)
    assert not verify_password("passwrd", stored)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "garbage",
        "$$$$$",
        "bcrypt$4096$8$1$AAAA$AAAA",
        "scrypt$4096$8$1$AAAA",  # too few parts
        "scrypt$4096$8$1$AAAA$AAAA$extra",
        "scrypt$x$8$1$AAAA$AAAA",
        "scrypt$4096$8$1$not base64!$AAAA",
        "scrypt$4096$8$1$AAAA$not base64!",
        "scrypt$4096$8$1$AAAA$",  # empty digest
        "scrypt$3$8$1$AAAA$AAAA",  # n not a power of two
        "scrypt$-1$8$1$AAAA$AAAA",
        "scrypt$99999999999999999999999$8$1$AAAA$AAAA",
        "scrypt$1048576$8$1$AAAA$AAAA",  # beyond scrypt's memory limit
    ],
)
def test_garbage_stored_hash_is_false_not_an_exception(stored: str) -> None:
    assert verify_password("pw", stored) is False


def test_other_scheme_label_fails_even_with_a_valid_digest() -> None:
    stored = hash_password("pw")
    assert not verify_password("pw", "bcrypt" + stored.removeprefix("scrypt"))


def test_tampered_hash_fails() -> None:
    stored = hash_password("pw")
    scheme, n, r, p, salt, digest = stored.split("$")
    other_salt = hash_password("pw").split("$")[4]
    assert not verify_password("pw", "$".join([scheme, n, r, p, other_salt, digest]))


# --- tokens ----------------------------------------------------------------------------


def test_secret_must_be_long_enough() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        TokenIssuer(b"short")


def test_round_trip() -> None:
    issuer = TokenIssuer(SECRET, ttl=600)
    now = time.time()
    token = issuer.issue(42, "ann", now=now)
    claims = issuer.verify(token, now=time.time())
    assert isinstance(claims, Claims)
    assert (claims.user_id, claims.username) == (42, "ann")
    assert isinstance(claims.user_id, int)
    assert now - 1 < claims.issued_at <= now  # whole or sub-second seconds, never later than issued
    assert claims.expires_at == float(int(now + 600))


def test_token_claims_on_the_wire() -> None:
    token = TokenIssuer(SECRET).issue(7, "bob", now=1_000_000, ttl=60)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == ALGORITHM == "HS256"
    body = jwt.decode(token, options={"verify_signature": False})
    assert body == {"sub": "7", "name": "bob", "iat": 1_000_000, "exp": 1_000_060, "aud": AUDIENCE, "iss": ISSUER}


def test_ttl_override() -> None:
    issuer = TokenIssuer(SECRET, ttl=3600)
    now = time.time()
    assert issuer.verify(issuer.issue(1, "a", now=now, ttl=30), now=now).expires_at == int(now + 30)


def test_expiry_follows_the_clock_passed_in() -> None:
    issuer = TokenIssuer(SECRET, ttl=60)
    token = issuer.issue(1, "ann", now=1_000_000)  # expires at 1_000_060
    assert issuer.verify(token, now=1_000_059.9).user_id == 1
    with pytest.raises(AuthError, match="token expired"):
        issuer.verify(token, now=1_000_060)


def test_a_token_issued_in_the_future_is_refused() -> None:
    issuer = TokenIssuer(SECRET, ttl=60)
    token = issuer.issue(1, "ann", now=1_000_000.5)
    assert issuer.verify(token, now=1_000_000).user_id == 1  # sub-second iat: not "in the future"
    with pytest.raises(AuthError, match="not valid yet"):
        issuer.verify(token, now=999_999)


def reason(issuer: TokenIssuer, token: object) -> str:
    with pytest.raises(AuthError) as info:
        issuer.verify(token, now=time.time())  # type: ignore[arg-type]
    message = str(info.value)
    assert message
    return message


def claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {"sub": "1", "name": "ann", "iat": now, "exp": now + 600, "aud": AUDIENCE, "iss": ISSUER}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def test_expired() -> None:
    issuer = TokenIssuer(SECRET, ttl=60)
    token = issuer.issue(1, "ann", now=time.time() - 3600)
    assert reason(issuer, token) == "token expired"


def test_alg_none_is_refused() -> None:
    issuer = TokenIssuer(SECRET)
    token = jwt.encode(claims(), NO_KEY, algorithm="none")
    assert jwt.get_unverified_header(token)["alg"] == "none"
    assert reason(issuer, token) == "token algorithm is not HS256"


def test_other_algorithm_with_same_key_is_refused() -> None:
    token = jwt.encode(claims(), SECRET + b"x" * 32, algorithm="HS512")
    assert reason(TokenIssuer(SECRET), token) == "token algorithm is not HS256"


def test_other_key() -> None:
    token = TokenIssuer(OTHER).issue(1, "ann", now=time.time())
    assert reason(TokenIssuer(SECRET), token) == "token signature is invalid"


def test_tampered_payload() -> None:
    issuer = TokenIssuer(SECRET)
    header, _, signature = issuer.issue(1, "ann", now=time.time()).split(".")
    forged_body = jwt.encode(claims(sub="2"), OTHER, algorithm="HS256").split(".")[1]
    assert reason(issuer, f"{header}.{forged_body}.{signature}") == "token signature is invalid"


def test_wrong_audience() -> None:
    token = jwt.encode(claims(aud="another-app"), SECRET, algorithm="HS256")
    assert reason(TokenIssuer(SECRET), token) == "token is for another audience"


def test_wrong_issuer() -> None:
    token = jwt.encode(claims(iss="someone-else"), SECRET, algorithm="HS256")
    assert reason(TokenIssuer(SECRET), token) == "token is from another issuer"


@pytest.mark.parametrize("missing", ["sub", "exp", "iat", "aud", "iss"])
def test_missing_claims(missing: str) -> None:
    body = claims()
    del body[missing]
    token = jwt.encode(body, SECRET, algorithm="HS256")
    message = reason(TokenIssuer(SECRET), token)
    if missing == "aud":
        # PyJWT reports a missing audience as an audience error, still clearly named
        assert "aud" in message or "audience" in message
    else:
        assert message == f"token lacks the {missing!r} claim"


def test_missing_name_is_empty_username() -> None:
    token = jwt.encode(claims(name=None), SECRET, algorithm="HS256")
    assert TokenIssuer(SECRET).verify(token, now=time.time()).username == ""


@pytest.mark.parametrize("sub", ["abc", "1.5", ""])
def test_non_numeric_subject_is_malformed(sub: str) -> None:
    token = jwt.encode(claims(sub=sub), SECRET, algorithm="HS256")
    assert reason(TokenIssuer(SECRET), token).startswith("malformed token")


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "a.b", "....", "\u00e9\u00e9\u00e9"])
def test_garbage_token(token: str) -> None:
    assert reason(TokenIssuer(SECRET), token).startswith("malformed token")


@pytest.mark.parametrize("token", ["", None, 123, b"bytes"])
def test_empty_or_non_string_token(token: object) -> None:
    assert reason(TokenIssuer(SECRET), token) == "missing token"


def test_auth_error_is_not_a_value_error() -> None:
    # callers catch AuthError specifically; it must not be swallowed as a generic ValueError
    assert not issubclass(AuthError, ValueError)


# --- the signing secret on disk ------------------------------------------------------


def test_secret_file_created_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "jwt.secret"
    key = load_or_create_secret(path)
    assert len(key) == 32
    assert path.exists()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text().strip() == key.hex()
    assert load_or_create_secret(path) == key
    # tokens survive a "restart": a new issuer with the reloaded key verifies old tokens
    token = TokenIssuer(key).issue(5, "eve", now=time.time())
    assert TokenIssuer(load_or_create_secret(path)).verify(token, now=time.time()).user_id == 5


def test_secret_file_is_0600_despite_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "secret"
        load_or_create_secret(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_existing_secret_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(("ab" * 32) + "\n")
    assert load_or_create_secret(path) == bytes.fromhex("ab" * 32)


def test_two_secrets_differ(tmp_path: Path) -> None:
    assert load_or_create_secret(tmp_path / "a") != load_or_create_secret(tmp_path / "b")
