"""Lesson 06's JWT toolkit: read a token's parts, and forge the bad ones a server must refuse.

A JSON Web Token (RFC 7519, in its JWS compact form, RFC 7515) is three base64url
strings joined by dots: a JSON *header*, a JSON *payload* (the claims) and a
*signature* over the first two. It is **signed, not encrypted**: anyone holding the
token reads every claim (:func:`decode`); only someone holding the key can make a
signature that verifies. Everything here is done by hand, with the standard library,
so that a lesson can show the few lines it takes::

    from labserver.course import tokens
    jwt = tokens.decode(alice.token)          # no key needed to read it
    jwt.payload["sub"], jwt.header["alg"]      # ('1', 'HS256')
    tokens.alg_none(alice.token, sub="2")      # header "alg": "none", no signature
    tokens.resign(alice.token, b"guess" * 8, sub="2")   # a signature with the wrong key
    tokens.tamper(alice.token, sub="2")        # claims changed, the old signature kept
    tokens.sign({"sub": "1", ...}, key)        # what the server does (HS256)

None of these needs the lab: they build strings. What the lab answers to each is the
lesson's live part (401 before the upgrade, with the reason in the JSON body).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["Jwt", "alg_none", "b64url_decode", "b64url_encode", "decode", "resign", "sign", "tamper"]

HS256 = "HS256"


def b64url_encode(data: bytes) -> str:
    """Base64url without padding (RFC 7515 section 2): ``+/`` become ``-_``, no trailing ``=``."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """The inverse of :func:`b64url_encode`: puts the padding back, then decodes.

    Raises ValueError with a one-line reason for text that is not base64url."""
    if not isinstance(text, str):
        raise ValueError(f"expected a base64url string, got {type(text).__name__}")
    if len(text) % 4 == 1:  # no number of '=' makes this a whole number of bytes
        raise ValueError(f"{text[:20]!r} is not base64url: its length leaves a lone character")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{text[:20]!r} is not base64url ({exc})") from None


def _json_part(data: dict[str, Any]) -> str:
    """One part of a token: compact JSON (no spaces, as the lab's PyJWT writes it), base64url."""
    return b64url_encode(json.dumps(data, separators=(",", ":")).encode())


def _hs256(signing_input: str, key: bytes) -> str:
    return b64url_encode(hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest())


@dataclass(frozen=True)
class Jwt:
    """A token taken apart, *without* checking anything: what anyone who holds it can read."""

    header: dict[str, Any]
    payload: dict[str, Any]
    signature: bytes
    signing_input: str  # "<header>.<payload>", the exact text the signature covers

    def verifies_with(self, key: bytes) -> bool:
        """True if the signature is HS256 of :attr:`signing_input` under ``key`` (a constant-time compare)."""
        expected = hmac.new(key, self.signing_input.encode("ascii"), hashlib.sha256).digest()
        return hmac.compare_digest(expected, self.signature)

    def lines(self, now: float | None = None) -> list[str]:
        """The header and each claim on its own line; ``iat``/``exp`` also as "in 3599 s" or "12 s ago"."""
        now = time.time() if now is None else now
        out = [f"header    {json.dumps(self.header)}"]
        for name, value in self.payload.items():
            note = ""
            if name in ("iat", "exp", "nbf") and isinstance(value, int | float) and not isinstance(value, bool):
                delta = value - now
                note = f"   (in {delta:.0f} s)" if delta >= 0.5 else f"   ({-delta:.0f} s ago)"
            out.append(f"payload   {name:<4} = {json.dumps(value)}{note}")
        shown = f"{len(self.signature)} bytes: {self.signature.hex()[:16]}..." if self.signature else "(empty)"
        out.append(f"signature {shown}")
        return out


def decode(token: str) -> Jwt:
    """Split ``token`` and decode its header and payload. No key, no verification.

    Raises ValueError (one line, saying what is wrong) for a string that is not a
    three-part JWT with JSON objects in its first two parts."""
    if not isinstance(token, str):
        raise ValueError(f"a JWT is a string, got {type(token).__name__}")
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError(f"a JWT has three parts separated by '.', this has {len(parts)}")
    header_b64, payload_b64, signature_b64 = parts
    decoded = []
    for what, part in (("header", header_b64), ("payload", payload_b64)):
        try:
            value = json.loads(b64url_decode(part))
        except ValueError as exc:
            raise ValueError(f"the {what} is not base64url JSON: {exc}") from None
        if not isinstance(value, dict):
            raise ValueError(f"the {what} must be a JSON object, got {type(value).__name__}")
        decoded.append(value)
    signature = b64url_decode(signature_b64) if signature_b64 else b""
    return Jwt(decoded[0], decoded[1], signature, f"{header_b64}.{payload_b64}")


def sign(payload: dict[str, Any], key: bytes, header: dict[str, Any] | None = None) -> str:
    """An HS256 token: ``header.payload`` and HMAC-SHA256 of that text under ``key``.

    This is all the lab's server does to issue a token (with PyJWT); whoever holds
    ``key`` can mint a token for anyone, which is why the key never leaves the server."""
    if not isinstance(key, bytes) or not key:
        raise ValueError("key must be non-empty bytes")
    head = {"alg": HS256, "typ": "JWT", **(header or {})}
    signing_input = f"{_json_part(head)}.{_json_part(payload)}"
    return f"{signing_input}.{_hs256(signing_input, key)}"


def _claims(token: str, changes: dict[str, Any]) -> dict[str, Any]:
    return {**decode(token).payload, **changes}


def tamper(token: str, **changes: Any) -> str:
    """``token`` with some claims changed (``sub="2"``) and its original signature kept.

    The signature covered the old payload, so it no longer matches: a server that
    verifies refuses it ("signature is invalid")."""
    signature = token.rsplit(".", 1)[1] if token.count(".") == 2 else ""
    jwt = decode(token)
    return f"{_json_part(jwt.header)}.{_json_part({**jwt.payload, **changes})}.{signature}"


def alg_none(token: str, **changes: Any) -> str:
    """The ``alg: none`` attack: header says "none", claims as you like, an empty signature.

    RFC 7518 section 3.6 defines "none" for tokens whose integrity is ensured some
    other way; a server that lets the *token* choose its algorithm would accept this
    one. A server that pins the algorithm (the lab pins HS256) refuses it."""
    return f"{_json_part({'alg': 'none', 'typ': 'JWT'})}.{_json_part(_claims(token, changes))}."


def resign(token: str, key: bytes, **changes: Any) -> str:
    """``token``'s claims (with ``changes``) signed with ``key``: a forgery with a guessed key."""
    return sign(_claims(token, changes), key)
