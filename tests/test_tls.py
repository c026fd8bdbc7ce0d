"""The lab over TLS: ``--certfile``/``--keyfile`` (one-line errors, exit 2), ``https://``/``wss://``
with verification against a CA made by trustme, and the failures a lesson shows: another CA, the
system's CAs, and a plain ``ws://`` client on the TLS port."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
import websockets
from websockets.exceptions import InvalidMessage

from labserver.__main__ import parse_args
from labserver.course import LabClient, LabServer
from labserver.course.tls import LocalCertificate, RawTap, local_certificate


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> LocalCertificate:
    return local_certificate(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_lab(cert: LocalCertificate, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    lab = LabServer(tmp_path_factory.mktemp("lab"), certfile=cert.certfile, keyfile=cert.keyfile, cafile=cert.cafile)
    with lab:
        yield lab


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labserver", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=15,
        stdin=subprocess.DEVNULL,
    )


def test_the_handle_speaks_https_and_wss(tls_lab: LabServer) -> None:
    assert tls_lab.url.startswith("https://127.0.0.1:")
    assert tls_lab.ws_url == "wss://" + tls_lab.url.removeprefix("https://") + "/ws"
    assert tls_lab.observe_url.startswith("wss://")
    assert tls_lab.tls and tls_lab.ssl_context is not None
    assert tls_lab.health()["status"] == "ok"  # the handle's REST calls verify against cafile
    assert tls_lab.account("tls_ann").username == "tls_ann"


async def test_a_verifying_client_gets_its_welcome(tls_lab: LabServer, cert: LocalCertificate) -> None:
    token = tls_lab.account("tls_bob").token
    async with websockets.connect(f"{tls_lab.ws_url}?token={token}", ssl=cert.client_context()) as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
        assert ws.transport.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")


async def test_the_toolkit_client_trusts_the_labs_own_ca(tls_lab: LabServer) -> None:
    async with LabClient.connect(tls_lab, tls_lab.account("tls_cat")) as client:
        assert client.welcome["type"] == "welcome"
        assert client.ws is not None and client.ws.transport.get_extra_info("ssl_object") is not None
        await client.join("tls")
        assert (await client.chat("tls", "over wss"))["seq"] == 1


@pytest.mark.parametrize("trust", ["another CA", "system CAs"])
async def test_a_certificate_from_an_untrusted_ca_fails_the_handshake(
    tls_lab: LabServer, tmp_path: Path, trust: str
) -> None:
    context = local_certificate(tmp_path).client_context() if trust == "another CA" else ssl.create_default_context()
    token = tls_lab.account("tls_cat").token
    with pytest.raises(ssl.SSLCertVerificationError):
        async with websockets.connect(f"{tls_lab.ws_url}?token={token}", ssl=context, open_timeout=5):
            pass


async def test_plain_ws_on_the_tls_port_gets_no_http_answer(tls_lab: LabServer) -> None:
    plain = "ws://" + tls_lab.url.removeprefix("https://") + "/ws"
    with pytest.raises((InvalidMessage, ConnectionError, EOFError)):
        async with websockets.connect(plain, open_timeout=5):
            pass
    assert tls_lab.running  # and the server is none the worse


async def test_a_tap_sees_ciphertext_only(tls_lab: LabServer, cert: LocalCertificate) -> None:
    token = tls_lab.account("tls_dan").token
    async with RawTap(tls_lab.port) as tap:
        url = f"wss://127.0.0.1:{tap.port}/ws?token={token}"
        async with websockets.connect(url, ssl=cert.client_context()) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "ping", "payload": "a secret"}))
            assert json.loads(await ws.recv())["type"] == "pong"
    seen = bytes(tap.sent + tap.received)
    assert tap.sent[:1] == b"\x16"  # a TLS handshake record, not "GET"
    assert token.encode() not in seen and b"a secret" not in seen and b"welcome" not in seen


def test_parse_args_keeps_the_files(cert: LocalCertificate) -> None:
    settings, _ = parse_args(["--certfile", str(cert.certfile), "--keyfile", str(cert.keyfile)])
    assert settings.certfile == cert.certfile and settings.keyfile == cert.keyfile
    assert parse_args([])[0].certfile is None


def _mismatched_key(tmp_path: Path) -> Path:
    path = tmp_path / "other-key.pem"
    trustme.CA().issue_cert("localhost").private_key_pem.write_to_path(str(path))
    return path


@pytest.mark.parametrize(
    "case",
    ["missing cert", "missing key", "only cert", "only key", "mismatched key", "not PEM", "a directory"],
)
def test_bad_tls_flags_give_one_error_line_and_exit_2(case: str, cert: LocalCertificate, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    c, k = str(cert.certfile), str(cert.keyfile)
    flags, expected = {
        "missing cert": (["--certfile", str(tmp_path / "nope.pem"), "--keyfile", k], "cannot read"),
        "missing key": (["--certfile", c, "--keyfile", str(tmp_path / "nope.pem")], "argument --keyfile: cannot read"),
        "only cert": (["--certfile", c], "go together"),
        "only key": (["--keyfile", k], "go together"),
        "mismatched key": (["--certfile", c, "--keyfile", str(_mismatched_key(tmp_path))], "does not match"),
        "not PEM": (["--certfile", str(junk), "--keyfile", k], "must hold a PEM certificate"),
        "a directory": (["--certfile", str(tmp_path), "--keyfile", k], "cannot read"),
    }[case]
    result = run("--data-dir", str(tmp_path / "data"), *flags)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("labserver: error: ") and expected in lines[0], result.stderr
    assert not (tmp_path / "data").exists()  # nothing created before the flags are checked
