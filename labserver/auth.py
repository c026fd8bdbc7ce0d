"""Passwords and JSON Web Tokens (sans-I/O: the caller passes the clock and the key).

Login happens over HTTP (``POST /api/login``); the token it returns is what a
WebSocket presents, in the ``token`` query parameter or in a first ``auth``
message. A WebSocket handshake cannot carry an ``Authorization`` header from a
browser, which is why the token travels this way. The login also sets the same
token as an HttpOnly cookie (:data:`SESSION_COOKIE`), which the browser sends with
the ``/ws`` handshake on its own; only ``/ws`` accepts it, and only after the
Origin check (a cookie rides along with any page's request: cross-site WebSocket
hijacking).

Tokens are HS256 JWTs (RFC 7519) with ``sub`` (user id), ``name``, ``iat``,
``exp``, ``aud``, ``iss`` and ``gen``, the generation of the database that issued it (a
database reset with the key kept must not make an old token name the new user of its id).
Verification pins the algorithm, so a token whose
header says ``alg: none`` is refused, as is one signed with another key,
expired, or meant for another audience. Time is always passed in (``now``), so
tests check expiry without waiting; the signing key is passed in too (the
server keeps it in its data directory: :func:`labserver.app.load_or_create_secret`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Any

import jwt

SESSION_COOKIE = "lab_session"
"""The cookie ``/api/login`` and ``/api/signup`` set (HttpOnly, SameSite=Lax, Path=/), accepted by ``/ws``."""

AUDIENCE = "labserver"
ISSUER = "labserver"
ALGORITHM = "HS256"

# scrypt with n=2**12 costs ~11 ms here: slow enough to make guessing expensive,
# fast enough that a lesson can sign up a crowd of 1,000 simulated users.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**12, 8, 1


class AuthError(Exception):
    """A token or password that does not authenticate anyone; ``str()`` says why."""


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token says about its bearer."""

    user_id: int
    username: str
    issued_at: float
    expires_at: float
    generation: str | None = None  # the "gen" claim: the database that issued it (Store.generation)


DECODED_CACHE_SIZE = 10_000  # tokens whose signature was checked already (one entry ~1 KiB)


class TokenIssuer:
    """Issues and verifies the lab's JWTs."""

    def __init__(self, secret: bytes, ttl: float = 3600.0) -> None:
        if len(secret) < 32:
            raise ValueError("JWT secret must be at least 32 bytes")
        self._secret = secret
        self.ttl = ttl
        # token -> its decoded claims. The signature check is a pure function of the token and the
        # key, and PyJWT's costs more than the rest of a connection's set-up: a client reconnecting
        # with the same token pays it once. Expiry, revocation and the user are checked on every use.
        self._decoded: dict[str, dict[str, Any]] = {}

    def issue(
        self, user_id: int, username: str, *, now: float, ttl: float | None = None, generation: str | None = None
    ) -> str:
        """A token for ``user_id`` issued at ``now`` (Unix time), valid for ``ttl`` seconds;
        ``generation`` (the database's, see :meth:`labserver.store.Store.generation`) becomes the ``gen`` claim."""
        claims: dict[str, Any] = {
            "sub": str(user_id),
            "name": username,
            "iat": now,  # sub-second (RFC 7519 allows it): a login right after a logout must not predate it
            "exp": int(now + (self.ttl if ttl is None else ttl)),
            "aud": AUDIENCE,
            "iss": ISSUER,
        }
        if generation is not None:
            claims["gen"] = generation
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str, *, now: float) -> Claims:
        """Return the claims of a token valid at ``now`` (Unix time), or raise :class:`AuthError` saying why not."""
        if not isinstance(token, str) or not token:
            raise AuthError("missing token")
        claims = self._decoded.get(token)
        if claims is None:
            claims = self._decode(token)
            if len(self._decoded) >= DECODED_CACHE_SIZE:
                self._decoded.clear()  # bounded; refilled by the tokens in use
            self._decoded[token] = claims
        try:
            generation = claims.get("gen")
            result = Claims(
                int(claims["sub"]),
                str(claims.get("name", "")),
                float(claims["iat"]),
                float(claims["exp"]),
                generation if isinstance(generation, str) else None,
            )
        except (TypeError, ValueError) as exc:
            raise AuthError(f"malformed token ({type(exc).__name__})") from None
        # RFC 7519 sections 4.1.4 and 4.1.6, checked against the caller's clock, not PyJWT's.
        if result.expires_at <= now:
            raise AuthError("token expired")
        if int(result.issued_at) > now:
            raise AuthError("token is not valid yet (issued in the future)")
        return result

    def _decode(self, token: str) -> dict[str, Any]:
        """Signature, algorithm, audience, issuer and required claims; time is checked by :meth:`verify`."""
        options = {"require": ["sub", "exp", "iat", "aud", "iss"], "verify_exp": False, "verify_iat": False}
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],  # pinned: "alg": "none" or RS256 confusion is refused
                audience=AUDIENCE,
                issuer=ISSUER,
                options=options,  # type: ignore[arg-type]
            )
            return claims
        except jwt.InvalidAudienceError:
            raise AuthError("token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise AuthError("token is from another issuer") from None
        except jwt.InvalidAlgorithmError:
            raise AuthError(f"token algorithm is not {ALGORITHM}") from None
        except jwt.InvalidSignatureError:
            raise AuthError("token signature is invalid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"token lacks the {exc.claim!r} claim") from None
        except (jwt.InvalidTokenError, ValueError) as exc:
            raise AuthError(f"malformed token ({type(exc).__name__})") from None
