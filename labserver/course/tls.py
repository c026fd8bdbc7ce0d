"""Lesson 09's TLS tools: a certificate for localhost made on the spot, and a tap that keeps raw bytes.

``local_certificate(directory)`` makes a throwaway certificate authority with trustme (in
memory: nothing downloaded, nothing installed system-wide), has it sign a certificate for
``localhost`` and ``127.0.0.1``, and writes the PEM files the lab needs
(``start_lab(certfile=..., keyfile=..., cafile=...)``)::

    cert = local_certificate(tmp)
    lab = start_lab(certfile=cert.certfile, keyfile=cert.keyfile, cafile=cert.cafile)
    websockets.connect(lab.ws_url + "?token=...", ssl=cert.client_context())

:class:`RawTap` relays TCP both ways like :class:`labserver.tap.FrameTap`, but reads nothing:
it keeps the first bytes of each direction, as a network observer would see them. Over
``ws://`` they show the JSON; over ``wss://``, TLS records.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import trustme

__all__ = ["LocalCertificate", "RawTap", "local_certificate", "printable"]


@dataclass(frozen=True, slots=True)
class LocalCertificate:
    """The PEM files of a certificate for localhost and the CA that signed it."""

    certfile: Path  # the server's certificate (and the chain up to, not including, the CA)
    keyfile: Path  # its private key: the server's secret
    cafile: Path  # the CA's certificate: what a client must trust

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this CA only, with verification on (names and dates)."""
        return ssl.create_default_context(cafile=str(self.cafile))


def local_certificate(
    directory: str | Path, *, names: tuple[str, ...] = ("localhost", "127.0.0.1")
) -> LocalCertificate:
    """A fresh CA and a certificate it signs for ``names``, written as PEM files into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="WebSocket course, lesson 09 (throwaway)")
    issued = ca.issue_cert(*names)
    files = LocalCertificate(directory / "cert.pem", directory / "key.pem", directory / "ca.pem")
    for blob in issued.cert_chain_pems:
        with files.certfile.open("ab") as out:
            out.write(blob.bytes())
    issued.private_key_pem.write_to_path(str(files.keyfile))
    ca.cert_pem.write_to_path(str(files.cafile))
    return files


def printable(data: bytes, limit: int = 120) -> str:
    """``data`` as a person would read it: printable ASCII as is, every other byte as ``.``."""
    return "".join(chr(b) if 32 <= b < 127 else "." for b in data[:limit])


class RawTap:
    """A TCP relay on ``127.0.0.1`` (a free port) in front of ``upstream_port``, keeping raw bytes.

    ``sent`` and ``received`` hold, from the client's side, the first ``keep`` bytes each way of
    every connection, concatenated in arrival order. Nothing is parsed: TLS or not, it is
    what someone on the path would see."""

    def __init__(self, upstream_port: int, *, upstream_host: str = "127.0.0.1", keep: int = 64 * 1024) -> None:
        self.upstream = (upstream_host, int(upstream_port))
        self.keep = keep
        self.sent = bytearray()
        self.received = bytearray()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.close()
            return
        pumps = [
            asyncio.create_task(self._pump(client_reader, up_writer, self.sent)),
            asyncio.create_task(self._pump(up_reader, client_writer, self.received)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
                self._tasks.discard(task)
            for writer in (client_writer, up_writer):
                writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, kept: bytearray) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while chunk := await reader.read(64 * 1024):
                writer.write(chunk)  # relayed first, looked at after
                if len(kept) < self.keep:
                    kept.extend(chunk[: self.keep - len(kept)])
                await writer.drain()
