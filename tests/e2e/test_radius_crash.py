"""`kill -9` of the daemon under a stream of Interim-Updates: every packet that got an
Accounting-Response is in PostgreSQL, and after the NAS retransmits the unanswered ones to the
restarted daemon, every packet is stored once and each session's usage is exact (none counted twice).
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
from pathlib import Path

import asyncpg
import pytest
from pyrad.packet import AccountingRequest, AcctPacket

from ispmon.usage.radius import dictionary
from tests.e2e.test_daemon import Daemon, free_port, run_cli, wait_for_datagram

pytestmark = pytest.mark.timeout(300)
SECRET = b"crash-test-secret"
SESSIONS = 40
PORTS = 4


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Nas(asyncio.DatagramProtocol):
    """One NAS source port: sends requests, keeps the outstanding ones by Identifier."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.outstanding: dict[int, tuple[AcctPacket, bytes]] = {}
        self.answered: list[bytes] = []  # the raw requests that got a valid response
        self.next_id = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        entry = self.outstanding.get(data[1])
        if entry is None:
            return  # an answer to a request answered already (a retransmission's)
        _, raw = entry
        # RFC 2866 3: MD5(Code + Identifier + Length + Request Authenticator + Attributes + Secret).
        expected = hashlib.md5(data[:4] + raw[4:20] + data[20:] + SECRET, usedforsecurity=False).digest()
        if data[0] == 5 and data[4:20] == expected:
            del self.outstanding[data[1]]
            self.answered.append(raw)

    def free_id(self) -> int | None:
        for _ in range(256):
            ident, self.next_id = self.next_id, (self.next_id + 1) % 256
            if ident not in self.outstanding:
                return ident
        return None

    def send(self, ident: int, session: int, counter: int, target: tuple[str, int]) -> None:
        packet = AcctPacket(code=AccountingRequest, id=ident, secret=SECRET, dict=dictionary())
        packet["Acct-Status-Type"] = "Interim-Update"
        packet["Acct-Session-Id"] = f"sess-{session}"
        packet["User-Name"] = f"user-{session}"
        packet["Acct-Input-Octets"] = counter
        packet["Acct-Output-Octets"] = counter * 3
        packet["Acct-Session-Time"] = counter
        raw = packet.RequestPacket()
        self.outstanding[ident] = (packet, raw)
        assert self.transport is not None
        self.transport.sendto(raw, target)

    def retransmit(self, target: tuple[str, int]) -> None:
        assert self.transport is not None
        for _, raw in list(self.outstanding.values()):
            self.transport.sendto(raw, target)


async def test_kill_9_under_interims_loses_no_answered_record_and_counts_none_twice(
    tmp_path: Path, notify_socket: tuple[Path, socket.socket]
) -> None:
    notify_path, notify = notify_socket
    udp_port = free_udp_port()
    config = tmp_path / "ispmon.toml"
    config.write_text(
        f'[[radius_clients]]\nid = "bras-1"\naddress = "127.0.0.1"\nsecret = "{SECRET.decode()}"\n'
    )
    daemon = Daemon(
        tmp_path,
        free_port(),
        notify_path,
        {"RADIUS_ACCT_PORT": str(udp_port), "RADIUS_ACCT_ADDRESS": "127.0.0.1", "ISPMON_CONFIG": str(config)},
    )
    target = ("127.0.0.1", udp_port)
    loop = asyncio.get_running_loop()
    nases = []
    for _ in range(PORTS):
        _, protocol = await loop.create_datagram_endpoint(Nas, local_addr=("127.0.0.1", 0))
        nases.append(protocol)
    counters = [0] * SESSIONS  # the last counter value sent per session
    daemon.start()
    try:
        await wait_for_datagram(notify, "READY=1", timeout=90)
        # A stream: ~2,000 interims/s over four source ports, each session's counter rising.
        sent = 0
        for tick in range(120):
            for n in range(20):
                session = (tick * 20 + n) % SESSIONS
                nas = nases[(tick * 20 + n) % PORTS]
                ident = nas.free_id()
                if ident is None:
                    continue
                counters[session] += 1000 + session
                nas.send(ident, session, counters[session], target)
                sent += 1
            if tick == 80:
                daemon.kill9()  # mid-stream: some requests are queued, some in a transaction
            await asyncio.sleep(0.01)
        answered_before = [raw for nas in nases for raw in nas.answered]
        unanswered = sum(len(nas.outstanding) for nas in nases)
        assert answered_before, "nothing was answered before the kill"
        assert unanswered, "the kill came after everything was answered: no crash in the middle"

        daemon.start()
        await wait_for_datagram(notify, "READY=1", timeout=60)
        # The NAS retransmits the unanswered ones (same bytes) until each is answered; and some
        # answered ones once more, as a NAS whose response was lost would.
        for nas in nases[:1]:
            assert nas.transport is not None
            for raw in nas.answered[:50]:
                nas.transport.sendto(raw, target)
        for _ in range(100):
            if not any(nas.outstanding for nas in nases):
                break
            for nas in nases:
                nas.retransmit(target)
            await asyncio.sleep(0.2)
        assert not any(nas.outstanding for nas in nases), "some requests were never answered"

        url = (
            await asyncio.to_thread(run_cli, "db-url", env={"ISPMON_STATE_DIR": str(tmp_path)})
        ).stdout.strip()
        conn = await asyncpg.connect(url)
        try:
            stored = {
                (r["source_port"], r["identifier"], bytes(r["authenticator"]))
                for r in await conn.fetch("SELECT source_port, identifier, authenticator FROM acct_records")
            }
            ports = {id(nas): nas.transport.get_extra_info("sockname")[1] for nas in nases}  # type: ignore[union-attr]
            for nas in nases:
                for raw in nas.answered:
                    assert (ports[id(nas)], raw[1], raw[4:20]) in stored
            assert await conn.fetchval("SELECT count(*) FROM acct_records") == sent
            usage = {
                r["session_key"]: (int(r["i"]), int(r["o"]))
                for r in await conn.fetch(
                    "SELECT session_key, sum(delta_in) AS i, sum(delta_out) AS o FROM acct_records GROUP BY 1"
                )
            }
        finally:
            await conn.close()
        # Out-of-order arrivals add nothing and later ones add the rest: the sum is the last counter.
        assert usage == {f"sess-{s}": (counters[s], counters[s] * 3) for s in range(SESSIONS) if counters[s]}
        # The NAS secret of the config file is in no log line of either run.
        logs = "".join(
            await asyncio.to_thread(lambda: [p.read_text() for p in tmp_path.glob("daemon-*.log")])
        )
        assert "radius_listening" in logs and SECRET.decode() not in logs
    finally:
        for nas in nases:
            if nas.transport is not None:
                nas.transport.close()
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.terminate()
