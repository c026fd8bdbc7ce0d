"""Faults: acknowledged means persisted, resume replays exactly once, dead networks are reaped.

* SIGKILL of the server at random moments under a stream of acknowledged chat messages
  (after 60-200 acks, with more in flight; at least 10 trials and 1,000 acknowledged
  messages): after each restart every acked message is in history, seqs run 1..N with no
  gap or duplicate, and a fresh socket resuming from 0 gets all N exactly once, in order.
* A resume whose replay would not fit in send_buffer_limit (a full retention window of
  4,000-character messages is about 12 MB) is an explicit resync, not a reader dropped as
  "slow" halfway through its own replay; a replay that fits arrives whole, live follows.
* A client whose network vanishes (no FIN, no RST) is reaped by the heartbeat and goes
  offline: promised within ping_interval x 1.5 + 1 s. The test prints how long it took and
  fails past 10 s: without the heartbeat the peer would stay online for minutes, until TCP
  gave up, while 10 s is beyond what a loaded machine adds to 2.5 s.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
from pathlib import Path
from typing import Any

import websockets

from labserver.course import LabServer

from .adversarial import BlackholeProxy, fresh_account, hostport, local_port, still_serves, wait_health
from .conftest import Client, until

FAST: dict[str, Any] = {"rate": 5000, "burst": 5000}


async def _write_until_killed(
    lab: LabServer, room: str, writers: int, kill_after_acks: int, trial: int
) -> dict[int, str]:
    """Chat from ``writers`` sockets; SIGKILL the server once ``kill_after_acks`` are acknowledged
    (so no trial is empty, however slow the machine), while more are in flight."""
    acked: dict[int, str] = {}
    clients = [await Client.connect(lab, lab.account(f"writer{i}")) for i in range(writers)]
    for c in clients:
        await c.request("join", room=room)

    async def write(c: Client, w: int) -> None:
        n = 0
        try:
            while True:
                text = f"t{trial}-w{w}-{n}"
                ack = await c.request("chat", room=room, text=text)
                assert ack["type"] == "ack", ack
                acked[ack["seq"]] = text
                n += 1
        except (websockets.ConnectionClosed, TimeoutError, OSError):
            return

    tasks = [asyncio.create_task(write(c, w)) for w, c in enumerate(clients)]
    await until(lambda: len(acked) >= kill_after_acks, timeout=30, what=f"{kill_after_acks} acknowledged messages")
    await asyncio.to_thread(lab.kill)
    await asyncio.gather(*tasks)
    return acked


def _history(lab: LabServer, room: str, token: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while True:
        after = messages[-1]["seq"] if messages else 0
        status, body = lab.request("GET", f"/api/rooms/{room}/messages?after={after}&limit=1000", token=token)
        assert status == 200, body
        if not body["messages"]:
            return messages
        messages += body["messages"]


async def test_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(1009)
    # A replay of the whole history must fit the limits: resume_limit messages and send_buffer_limit bytes.
    with LabServer(tmp_path, resume_limit=1_000_000, send_buffer_limit=256 * 2**20, **FAST) as lab:
        all_acked: dict[int, str] = {}
        trials = 0
        while trials < 10 or len(all_acked) < 1000:
            assert trials < 25, f"only {len(all_acked)} acknowledged messages in {trials} trials"
            acked = await _write_until_killed(
                lab, "durable", writers=4, kill_after_acks=rng.randint(60, 200), trial=trials
            )
            trials += 1
            assert not set(acked) & set(all_acked), "a seq was acknowledged twice"
            all_acked.update(acked)
            lab.start()
            auditor = lab.account("auditor")
            history = _history(lab, "durable", auditor.token)
            stored = {m["seq"]: m["text"] for m in history}
            lost = {seq: text for seq, text in all_acked.items() if stored.get(seq) != text}
            assert not lost, f"trial {trials}: acknowledged but lost after SIGKILL: {sorted(lost)[:10]}"
            seqs = [m["seq"] for m in history]
            assert seqs == list(range(1, len(seqs) + 1)), "history has a gap, a duplicate or a reordering"
            texts = [m["text"] for m in history]
            assert len(set(texts)) == len(texts), "a message was stored twice"
            # A fresh socket resuming from 0 gets every message exactly once, in order.
            reader = await Client.connect(lab, auditor, max_size=None)
            await reader.send("resume", room="durable", after=0, ref="all")
            replayed = [json.loads(await asyncio.wait_for(reader.ws.recv(), 10)) for _ in range(len(history))]
            assert all(m["type"] == "chat" for m in replayed), [m for m in replayed if m["type"] != "chat"][:1]
            done = await reader.expect("resumed")
            assert [m["seq"] for m in replayed] == seqs and [m["text"] for m in replayed] == texts
            assert done["count"] == len(history) and done["last_seq"] == len(history)
            await reader.close()
        print(f"\n{trials} SIGKILL trials, {len(all_acked)} acknowledged messages, all kept")
        await still_serves(lab)


async def test_a_big_backlog_resumes_without_dropping_a_reader_with_a_small_tcp_window(tmp_path: Path) -> None:
    """A full retention window of 4,000-character messages is about 12 MB: more than the
    send buffer limit (1 MiB). Written in one go it used to get the reader dropped as a slow
    reader halfway (1006), over and over on every reconnect. Now a replay must fit the limit:
    if it doesn't, the answer is an explicit resync, the client pages history over HTTP and
    resumes from there; a replay that fits arrives whole, and live messages follow it."""
    with LabServer(tmp_path, resume_limit=1000, **FAST) as lab:
        writer = lab.account("bulk")
        w = await Client.connect(lab, writer)
        await w.request("join", room="backlog")
        for i in range(1000):
            await w.send("chat", room="backlog", text=f"{i:04d}" + "\u20ac" * 3996)  # 12 KB each
            if i % 100 == 99:
                await w.request("ping")
        host, port = hostport(lab)
        small = socket.socket()
        small.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        small.connect((host, port))
        phone = lab.account("phone")
        reader = await Client.connect(lab, phone, sock=small, max_size=None)

        too_big = await reader.request("resume", room="backlog", after=0)
        assert too_big == {
            "type": "resync",
            "room": "backlog",
            "reason": "too_far_behind",
            "last_seq": 1000,
            "ref": too_big["ref"],
        }
        seen: list[int] = []
        while len(seen) < 950:  # the client pages history over HTTP instead (flow-controlled)
            status, page = lab.request(
                "GET", f"/api/rooms/backlog/messages?after={len(seen)}&limit=50", token=phone.token
            )
            assert status == 200
            seen += [int(m["text"][:4]) + 1 for m in page["messages"]]
        assert seen == list(range(1, 951))
        await reader.send("resume", room="backlog", after=950)  # 50 x 12 KB: fits
        got = [int((await reader.expect("chat", timeout=15))["text"][:4]) + 1 for _ in range(50)]
        assert got == list(range(951, 1001))
        assert (await reader.expect("resumed"))["count"] == 50
        live = await w.request("chat", room="backlog", text="live after the replay")
        assert (await reader.expect("chat"))["seq"] == live["seq"] == 1001
        assert lab.health()["dropped_slow"] == 0
        await reader.close()
        await w.close()
        await still_serves(lab)


async def test_a_vanished_network_is_reaped_by_the_heartbeat(lab: LabServer) -> None:
    """ping_interval is 1 s on the test server: offline within 1 x 1.5 + 1 s of the last byte
    (printed). Without the heartbeat it would stay online for minutes, until TCP gave up."""
    proxy = await BlackholeProxy(lab).start()
    try:
        watcher_acct, talker_acct, victim = fresh_account(lab), fresh_account(lab), fresh_account(lab)
        watcher = await Client.connect(lab, watcher_acct)
        await watcher.request("subscribe", topic="presence")
        await watcher.request("join", room="vanish")
        talker = await Client.connect(lab, talker_acct)
        await talker.request("join", room="vanish")
        ws = await websockets.connect(f"{proxy.ws_url}?token={victim.token}", ping_interval=None)
        v = Client(ws, json.loads(await ws.recv()))
        await v.request("join", room="vanish")
        await watcher.expect(lambda m: m.get("type") == "presence" and m["user"]["id"] == victim.id and m["online"])
        proxy.blackhole(local_port(ws))
        vanished = time.monotonic()
        for i in range(10):  # the room keeps talking: sending to it is not hearing from it
            await talker.request("chat", room="vanish", text=f"anyone there? {i}")
            await asyncio.sleep(0.05)  # spread over half a second, while the heartbeat runs
        offline = await watcher.expect(
            lambda m: m.get("type") == "presence" and m["user"]["id"] == victim.id and not m["online"], timeout=10
        )
        took = time.monotonic() - vanished
        assert offline["online"] is False
        left = await watcher.expect(lambda m: m.get("type") == "member_left" and m["user"]["id"] == victim.id)
        assert left["room"] == "vanish"
        body = await wait_health(lab, lambda h: h["connections"] == 2)
        assert body["connections"] == 2  # the watcher and the talker
        print(f"\nvanished network reaped after {took:.2f} s")
        await watcher.close()
        await talker.close()
        ws.transport.abort()
    finally:
        await proxy.close()
    await still_serves(lab)
