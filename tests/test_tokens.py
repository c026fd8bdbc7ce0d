"""labserver.course.tokens, lesson 06's JWT toolkit: it reads what PyJWT writes, signs what PyJWT
verifies, and each forgery is refused by the lab's own verifier with the reason the lesson shows."""

from __future__ import annotations

import jwt
import pytest

from labserver.auth import AuthError, TokenIssuer
from labserver.course import tokens

KEY = b"k" * 32
NOW = 1_800_000_000.0


@pytest.fixture
def issuer() -> TokenIssuer:
    return TokenIssuer(KEY, ttl=3600)


@pytest.fixture
def token(issuer: TokenIssuer) -> str:
    return issuer.issue(1, "ann", now=NOW)


def test_decode_reads_what_the_server_wrote_without_a_key(token: str) -> None:
    parts = tokens.decode(token)
    assert parts.header == {"alg": "HS256", "typ": "JWT"}
    assert parts.payload["sub"] == "1" and parts.payload["name"] == "ann" and parts.payload["exp"] == NOW + 3600
    assert parts.verifies_with(KEY) and not parts.verifies_with(b"x" * 32)
    assert len(parts.signature) == 32


def test_lines_show_times_relative_to_now(token: str) -> None:
    lines = tokens.decode(token).lines(now=NOW + 10)
    assert lines[0] == 'header    {"alg": "HS256", "typ": "JWT"}'
    assert any(line.endswith("(10 s ago)") and "iat" in line for line in lines)
    assert any(line.endswith("(in 3590 s)") and "exp" in line for line in lines)
    assert lines[-1].startswith("signature 32 bytes: ")


def test_sign_is_what_pyjwt_verifies(issuer: TokenIssuer) -> None:
    claims = {"sub": "2", "name": "bob", "iat": NOW, "exp": int(NOW + 60), "aud": "labserver", "iss": "labserver"}
    made = tokens.sign(claims, KEY)
    assert (
        jwt.decode(
            made, KEY, algorithms=["HS256"], audience="labserver", options={"verify_exp": False, "verify_iat": False}
        )
        == claims
    )
    assert issuer.verify(made, now=NOW).user_id == 2  # with the key, anyone can mint a token: keep it secret


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        (lambda t: tokens.tamper(t, sub="2"), "token signature is invalid"),
        (lambda t: tokens.alg_none(t, sub="2"), "token algorithm is not HS256"),
        (lambda t: tokens.resign(t, b"guess" * 8, sub="2"), "token signature is invalid"),
    ],
)
def test_every_forgery_is_refused_by_the_lab(issuer: TokenIssuer, token: str, forge: object, reason: str) -> None:
    forged = forge(token)  # type: ignore[operator]
    assert tokens.decode(forged).payload["sub"] == "2"
    with pytest.raises(AuthError, match=reason):
        issuer.verify(forged, now=NOW)


def test_alg_none_has_an_empty_signature(token: str) -> None:
    forged = tokens.alg_none(token)
    assert forged.endswith(".") and tokens.decode(forged).signature == b""
    assert tokens.decode(forged).lines(now=NOW)[-1] == "signature (empty)"


def test_base64url_round_trip_and_padding() -> None:
    for n in range(8):
        data = bytes(range(250, 250 - n, -1))
        encoded = tokens.b64url_encode(data)
        assert "=" not in encoded and "+" not in encoded and "/" not in encoded
        assert tokens.b64url_decode(encoded) == data


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("abc", "a JWT has three parts separated by '.', this has 1"),
        ("a.b.c.d", "this has 4"),
        ("eyJ.eyJ.x", "the header is not base64url JSON"),
        (tokens.b64url_encode(b"[1]") + ".e30.", "the header must be a JSON object, got list"),
        ("e30." + tokens.b64url_encode(b'"s"') + ".", "the payload must be a JSON object, got str"),
        ("e30.e30.a", "is not base64url: its length leaves a lone character"),
    ],
)
def test_bad_tokens_get_one_clear_line(bad: str, message: str) -> None:
    with pytest.raises(ValueError, match="^.*" + message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        tokens.decode(bad)


def test_sign_needs_a_key() -> None:
    with pytest.raises(ValueError, match="key must be non-empty bytes"):
        tokens.sign({}, b"")
    with pytest.raises(ValueError, match="a JWT is a string"):
        tokens.decode(42)  # type: ignore[arg-type]
