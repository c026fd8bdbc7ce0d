"""The verified-token cache of labserver.auth.TokenIssuer: a token's signature is checked once,
its expiry on every use; the cache stays bounded."""

from __future__ import annotations

import pytest

from labserver import auth
from labserver.auth import AuthError, TokenIssuer

NOW = 1_800_000_000.0


def test_a_cached_token_still_expires_and_a_tampered_one_is_refused() -> None:
    issuer = TokenIssuer(b"k" * 32, ttl=60)
    token = issuer.issue(7, "ann", now=NOW)
    assert issuer.verify(token, now=NOW).user_id == 7
    assert issuer.verify(token, now=NOW + 1).user_id == 7  # from the cache
    with pytest.raises(AuthError, match="expired"):
        issuer.verify(token, now=NOW + 61)
    with pytest.raises(AuthError, match="signature"):
        issuer.verify(token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), now=NOW)
    other = TokenIssuer(b"x" * 32)  # another key: its own cache, its own verdict
    with pytest.raises(AuthError, match="signature"):
        other.verify(token, now=NOW)


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "DECODED_CACHE_SIZE", 3)
    issuer = TokenIssuer(b"k" * 32)
    for n in range(10):
        issuer.verify(issuer.issue(n + 1, "u", now=NOW + n), now=NOW + n)
        assert len(issuer._decoded) <= 3
