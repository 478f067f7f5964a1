"""The DNS probe against Debian's dnsmasq on loopback, and against a hand-written UDP server that
answers badly on purpose (garbage, cut-off messages, truncation, SERVFAIL, silence, slowness).

dnsmasq is a hard requirement: CI installs it (Debian package dnsmasq-base), so a missing binary
fails these tests instead of skipping them.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import psutil
import pytest

from ispmon.availability.endpoints import EndpointSpec, build_endpoint
from ispmon.models import ErrorKind, Protocol, Status
from ispmon.probes.base import PROBES, ProbeContext, run_attempt
from ispmon.probes.dns import probe
from tests.integration.probes.dnsutil import ANSWER_ADDRESS, Responder, responder

DNSMASQ = os.environ.get("DNSMASQ", "/usr/sbin/dnsmasq")
TIMEOUT = 1.0
DNSMASQ_CONF = """\
port={port}
listen-address=127.0.0.1
bind-interfaces
no-resolv
no-hosts
pid-file=
log-facility=-
local=/test/
local-ttl=300
address=/up.test/192.0.2.10
host-record=dual.test,192.0.2.20,2001:db8::20
host-record=v4only.test,192.0.2.30
txt-record=txt.test,"v=spf1 -all"
txt-record=txt.test,"Hello World"
mx-host=mail.test,mx1.mail.test,10
mx-host=mail.test,mx2.mail.test,20
"""


def _free_port() -> int:
    """A port free for both UDP and TCP (dnsmasq listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port for both UDP and TCP")


def _query(qid: int, name: str, qtype: int = 1) -> bytes:
    qname = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", qtype, 1)


def _wait_until_answering(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.1)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"dnsmasq exited with {proc.returncode}: {log.read_text()}")
            sock.sendto(_query(1, "up.test"), ("127.0.0.1", port))
            try:
                if sock.recv(512)[:2] == b"\0\1":
                    return
            except (TimeoutError, ConnectionRefusedError):
                continue
    pytest.fail(f"dnsmasq did not answer on port {port} within 10 s: {log.read_text()}")


@pytest.fixture(scope="module")
def dnsmasq_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    if not os.access(DNSMASQ, os.X_OK):
        pytest.fail(f"{DNSMASQ} not found: install Debian's dnsmasq-base (CI does) or set DNSMASQ")
    port = _free_port()
    workdir = tmp_path_factory.mktemp("dnsmasq")
    conf = workdir / "dnsmasq.conf"
    conf.write_text(DNSMASQ_CONF.format(port=port))
    log = workdir / "dnsmasq.log"
    with log.open("wb") as log_fh:
        proc = subprocess.Popen(
            [DNSMASQ, "--no-daemon", f"--conf-file={conf}"], stdout=log_fh, stderr=subprocess.STDOUT
        )
    try:
        _wait_until_answering(port, proc, log)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class BadServer(asyncio.DatagramProtocol):
    """Answers according to the first label of the query name; counts queries per name."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.seen: Counter[str] = Counter()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (3.11's selector transport does not subclass asyncio.DatagramTransport)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        end, labels = 12, []
        while data[end]:
            labels.append(data[end + 1 : end + 1 + data[end]].decode())
            end += data[end] + 1
        name, question = ".".join(labels), data[12 : end + 5]
        self.seen[name] += 1
        qid = data[:2]
        answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 300, 4) + bytes([192, 0, 2, 77])
        ok = qid + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0) + question + answer
        mode = labels[0]
        # One TXT record of two strings with a NUL, a terminal escape and a newline in them.
        txt = bytes([200]) + b"\x00\x1b[2J" + b"t" * 195 + bytes([200]) + b"\n" + b"u" * 199
        txt_answer = b"\xc0\x0c" + struct.pack(">HHIH", 16, 1, 300, len(txt)) + txt
        replies = {
            "longtxt": qid + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0) + question + txt_answer,
            "garbage": b"\x13\x37 this is not DNS at all",
            "short": b"\x01\x02\x03",
            # ANCOUNT=1 but the answer record stops in the middle of its header
            "cut": qid + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0) + question + answer[:7],
            # TC bit set: c-ares retries over TCP, where nothing listens
            "tc": qid + struct.pack(">HHHHH", 0x8380, 1, 0, 0, 0) + question,
            "servfail": qid + struct.pack(">HHHHH", 0x8182, 1, 0, 0, 0) + question,
            "ok": ok,
        }
        assert self.transport is not None
        if mode == "silent":
            return
        if mode == "slow":
            asyncio.get_running_loop().call_later(0.06, self.transport.sendto, ok, addr)
            return
        if mode == "otherid":
            # A late answer to some earlier query first (another ID), then the answer to this one.
            other = bytes([qid[0] ^ 0xFF, qid[1]])
            self.transport.sendto(other + ok[2:], addr)
            self.transport.sendto(ok, addr)
            return
        if mode == "noedns":
            # A resolver that predates EDNS: FORMERR, without an OPT record, to a query with one.
            arcount = struct.unpack(">H", data[10:12])[0]
            formerr = qid + struct.pack(">HHHHH", 0x8181, 1, 0, 0, 0) + question
            self.transport.sendto(formerr if arcount else ok, addr)
            return
        self.transport.sendto(replies[mode], addr)


@pytest.fixture(scope="module")
async def bad_server() -> AsyncIterator[tuple[int, BadServer]]:
    server = BadServer()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=("127.0.0.1", 0))
    yield transport.get_extra_info("sockname")[1], server
    transport.close()


@pytest.fixture(scope="module")
async def ctx() -> AsyncIterator[ProbeContext]:
    context = ProbeContext()
    yield context
    await context.close()


def _endpoint(port: int, name: str, rrtype: str = "A", **extra: Any) -> EndpointSpec:
    return build_endpoint(
        {
            "name": f"dns {name} {rrtype}",
            "url": f"dns://127.0.0.1:{port}/{name}?type={rrtype}",
            "check_interval": 60,
            "timeout": TIMEOUT,
            "retries": 0,
            **extra,
        }
    )


async def test_table_points_to_this_module() -> None:
    assert PROBES[Protocol.DNS] is probe


async def test_a_record_up(dnsmasq_port: int, ctx: ProbeContext) -> None:
    result = await probe(_endpoint(dnsmasq_port, "up.test"), TIMEOUT, ctx)
    assert result.status is Status.UP, result
    assert result.error_kind is None
    assert result.details == {"rcode": "NOERROR", "answers": ["192.0.2.10"], "ttl_min": 300}
    assert result.response_time_ms is not None and 0 < result.response_time_ms < 500


async def test_expected_answers_match(dnsmasq_port: int, ctx: ProbeContext) -> None:
    ep = _endpoint(dnsmasq_port, "up.test", expected_answers=["192.0.2.10"])
    result = await probe(ep, TIMEOUT, ctx)
    assert result.status is Status.UP, result


async def test_expected_answers_mismatch(dnsmasq_port: int, ctx: ProbeContext) -> None:
    ep = _endpoint(dnsmasq_port, "up.test", expected_answers=["192.0.2.10", "192.0.2.99"])
    result = await probe(ep, TIMEOUT, ctx)
    assert result.status is Status.DOWN
    assert result.error_kind is ErrorKind.UNEXPECTED_ANSWER
    assert result.error is not None
    assert "192.0.2.99" in result.error and "got 192.0.2.10" in result.error
    assert result.details["answers"] == ["192.0.2.10"]
    assert result.response_time_ms is not None


async def test_aaaa_compared_in_canonical_form(dnsmasq_port: int, ctx: ProbeContext) -> None:
    ep = _endpoint(dnsmasq_port, "dual.test", "AAAA", expected_answers=["2001:DB8:0:0::20"])
    result = await probe(ep, TIMEOUT, ctx)
    assert result.status is Status.UP, result
    assert result.details["answers"] == ["2001:db8::20"]


async def test_nodata_is_noerror_without_answers(dnsmasq_port: int, ctx: ProbeContext) -> None:
    result = await probe(_endpoint(dnsmasq_port, "v4only.test", "AAAA"), TIMEOUT, ctx)
    assert result.status is Status.UP, result
    assert result.details == {"rcode": "NOERROR", "answers": [], "ttl_min": None}

    ep = _endpoint(dnsmasq_port, "v4only.test", "AAAA", expected_answers=["2001:db8::30"])
    result = await probe(ep, TIMEOUT, ctx)
    assert result.error_kind is ErrorKind.UNEXPECTED_ANSWER
    assert result.error is not None and "no answers" in result.error


async def test_txt(dnsmasq_port: int, ctx: ProbeContext) -> None:
    ep = _endpoint(dnsmasq_port, "txt.test", "TXT", expected_answers=['"v=spf1 -all"'])
    result = await probe(ep, TIMEOUT, ctx)
    assert result.status is Status.UP, result
    assert result.details["answers"] == ["Hello World", "v=spf1 -all"]
    # TXT content keeps its case: a token that differs only in case is another token.
    ep = _endpoint(dnsmasq_port, "txt.test", "TXT", expected_answers=["hello world"])
    assert (await probe(ep, TIMEOUT, ctx)).error_kind is ErrorKind.UNEXPECTED_ANSWER


async def test_mx_with_and_without_preference(dnsmasq_port: int, ctx: ProbeContext) -> None:
    ep = _endpoint(dnsmasq_port, "mail.test", "MX", expected_answers=["10 MX1.mail.test.", "mx2.mail.test"])
    result = await probe(ep, TIMEOUT, ctx)
    assert result.status is Status.UP, result
    assert result.details["answers"] == ["10 mx1.mail.test", "20 mx2.mail.test"]

    ep = _endpoint(dnsmasq_port, "mail.test", "MX", expected_answers=["20 mx1.mail.test"])
    result = await probe(ep, TIMEOUT, ctx)
    assert result.error_kind is ErrorKind.UNEXPECTED_ANSWER


async def test_nxdomain_is_down_rcode(dnsmasq_port: int, ctx: ProbeContext) -> None:
    result = await probe(_endpoint(dnsmasq_port, "nope.test"), TIMEOUT, ctx)
    assert result.status is Status.DOWN
    assert result.error_kind is ErrorKind.RCODE
    assert result.error == "expected NOERROR, got NXDOMAIN"
    assert result.details["rcode"] == "NXDOMAIN"
    assert result.response_time_ms is not None


async def test_expected_nxdomain_is_up(dnsmasq_port: int, ctx: ProbeContext) -> None:
    ep = _endpoint(dnsmasq_port, "nope.test", expected_rcode="NXDOMAIN")
    result = await probe(ep, TIMEOUT, ctx)
    assert result.status is Status.UP, result
    assert result.details == {"rcode": "NXDOMAIN", "answers": [], "ttl_min": None}
    # ... and an existing name is then the failure.
    ep = _endpoint(dnsmasq_port, "up.test", expected_rcode="NXDOMAIN")
    result = await probe(ep, TIMEOUT, ctx)
    assert result.error_kind is ErrorKind.RCODE and result.error == "expected NXDOMAIN, got NOERROR"


async def test_refused_rcode(dnsmasq_port: int, ctx: ProbeContext) -> None:
    # Outside its local domains and without upstream servers, dnsmasq refuses to recurse.
    result = await probe(_endpoint(dnsmasq_port, "outside.example"), TIMEOUT, ctx)
    assert (result.status, result.error_kind) == (Status.DOWN, ErrorKind.RCODE)
    assert result.details["rcode"] == "REFUSED"
    ep = _endpoint(dnsmasq_port, "outside.example", expected_rcode="REFUSED")
    assert (await probe(ep, TIMEOUT, ctx)).status is Status.UP


async def test_closed_port_fails_fast(ctx: ProbeContext) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.perf_counter()
    result = await probe(_endpoint(port, "up.test"), TIMEOUT, ctx)
    assert time.perf_counter() - start < TIMEOUT + 0.1
    assert result.status is Status.DOWN
    assert result.error_kind in (ErrorKind.REFUSED, ErrorKind.TIMEOUT), result
    assert result.error is not None and "resolver" in result.error


async def test_closed_port_is_refused_at_once(ctx: ProbeContext) -> None:
    # The query goes out on a connected UDP socket, so the kernel reports the ICMP port
    # unreachable to us instead of dropping it: REFUSED at once, not a TIMEOUT a second later.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.perf_counter()
    result = await probe(_endpoint(port, "up.test"), TIMEOUT, ctx)
    assert time.perf_counter() - start < 0.2
    assert (result.status, result.error_kind) == (Status.DOWN, ErrorKind.REFUSED), result


@pytest.mark.parametrize("mode", ["garbage", "short", "cut"])
async def test_malformed_reply_is_protocol(
    bad_server: tuple[int, BadServer], ctx: ProbeContext, mode: str
) -> None:
    port, _ = bad_server
    start = time.perf_counter()
    result = await probe(_endpoint(port, f"{mode}.bad"), TIMEOUT, ctx)
    assert time.perf_counter() - start < TIMEOUT
    assert (result.status, result.error_kind) == (Status.DOWN, ErrorKind.PROTOCOL), result
    assert result.error is not None and result.error.startswith("malformed DNS response")


async def test_truncated_reply_without_tcp_is_refused(
    bad_server: tuple[int, BadServer], ctx: ProbeContext
) -> None:
    port, _ = bad_server
    result = await probe(_endpoint(port, "tc.bad"), TIMEOUT, ctx)
    assert (result.status, result.error_kind) == (Status.DOWN, ErrorKind.REFUSED), result


async def test_truncated_reply_is_asked_again_over_tcp(ctx: ProbeContext) -> None:
    # UDP says "truncated"; TCP on the same port gives the whole answer.
    port = _free_port()
    server = BadServer()
    loop = asyncio.get_running_loop()
    udp, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=("127.0.0.1", port))
    tcp_queries: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        length = struct.unpack(">H", await reader.readexactly(2))[0]
        query = await reader.readexactly(length)
        tcp_queries.append(query)
        end = query.index(b"\0", 12) + 5
        record = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 88])
        reply = query[:2] + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0) + query[12:end] + record
        writer.write(struct.pack(">H", len(reply)) + reply)
        await writer.drain()
        writer.close()

    tcp = await asyncio.start_server(answer, "127.0.0.1", port)
    try:
        result = await probe(_endpoint(port, "tc.bad"), TIMEOUT, ctx)
        # The check's TCP socket is closed when the check returns, not a loop iteration later.
        ours = [c for c in psutil.Process().net_connections("tcp") if c.raddr and c.raddr.port == port]
    finally:
        tcp.close()
        udp.close()
    assert ours == [], ours
    assert result.status is Status.UP, result
    assert result.details == {"rcode": "NOERROR", "answers": ["192.0.2.88"], "ttl_min": 60}
    assert server.seen["tc.bad"] == 1 and len(tcp_queries) == 1


async def test_an_answer_to_another_query_is_ignored(
    bad_server: tuple[int, BadServer], ctx: ProbeContext
) -> None:
    port, _ = bad_server
    result = await probe(_endpoint(port, "otherid.bad"), TIMEOUT, ctx)
    assert result.status is Status.UP, result
    assert result.details["answers"] == ["192.0.2.77"]


async def test_a_resolver_without_edns_is_asked_again_without_it(
    bad_server: tuple[int, BadServer], ctx: ProbeContext
) -> None:
    port, server = bad_server
    result = await probe(_endpoint(port, "noedns.bad"), TIMEOUT, ctx)
    assert result.status is Status.UP, result
    assert server.seen["noedns.bad"] == 2


async def test_resolver_given_by_name(dnsmasq_port: int, ctx: ProbeContext) -> None:
    # /etc/hosts maps localhost to 127.0.0.1, where dnsmasq listens.
    ep = build_endpoint(
        {"name": "by name", "url": f"dns://localhost:{dnsmasq_port}/up.test", "timeout": TIMEOUT, "retries": 0}
    )
    result = await probe(ep, TIMEOUT, ctx)
    assert result.status is Status.UP, result
    assert result.details["answers"] == ["192.0.2.10"]


async def test_servfail(bad_server: tuple[int, BadServer], ctx: ProbeContext) -> None:
    port, _ = bad_server
    result = await probe(_endpoint(port, "servfail.bad"), TIMEOUT, ctx)
    assert (result.status, result.error_kind) == (Status.DOWN, ErrorKind.RCODE)
    assert result.error == "expected NOERROR, got SERVFAIL"
    ep = _endpoint(port, "servfail.bad", expected_rcode="SERVFAIL")
    assert (await probe(ep, TIMEOUT, ctx)).status is Status.UP


async def test_silent_resolver_times_out_within_the_limit(
    bad_server: tuple[int, BadServer], ctx: ProbeContext
) -> None:
    port, _ = bad_server
    ep = _endpoint(port, "silent.bad", timeout=0.3, check_interval=60)
    start = time.perf_counter()
    result = await run_attempt(ep, ctx, 0.3)
    elapsed = time.perf_counter() - start
    assert 0.25 <= elapsed < 0.3 + 0.1
    assert (result.status, result.error_kind) == (Status.DOWN, ErrorKind.TIMEOUT), result


async def test_slow_answer_is_degraded(bad_server: tuple[int, BadServer], ctx: ProbeContext) -> None:
    port, _ = bad_server
    result = await probe(_endpoint(port, "slow.bad", degraded_response_time_ms=20), TIMEOUT, ctx)
    assert (result.status, result.error_kind) == (Status.DEGRADED, ErrorKind.SLOW), result
    assert result.response_time_ms is not None and result.response_time_ms >= 55
    assert result.details["answers"] == ["192.0.2.77"]


async def test_answers_are_never_served_from_a_cache(
    bad_server: tuple[int, BadServer], ctx: ProbeContext
) -> None:
    # c-ares caches answers for their TTL by default; a monitor must ask the resolver every time.
    port, server = bad_server
    for _ in range(3):
        result = await probe(_endpoint(port, "ok.bad"), TIMEOUT, ctx)
        assert result.status is Status.UP and result.details["ttl_min"] == 300
    assert server.seen["ok.bad"] == 3


@pytest.fixture
async def scripted() -> AsyncIterator[Responder]:
    async with responder() as server:
        yield server


async def _threads_and_fds() -> tuple[int, int]:
    await asyncio.sleep(0)  # let transports closed by the last check release their sockets
    me = psutil.Process()
    return me.num_threads(), me.num_fds()


async def test_many_timeouts_on_one_resolver_leave_no_threads_or_descriptors(dnsmasq_port: int) -> None:
    # 200 edits of one endpoint's timeout used to leave 200 c-ares channels behind, each with its
    # own event thread and descriptors, for the life of the daemon (issue 9).
    context = ProbeContext()
    try:
        assert (await probe(_endpoint(dnsmasq_port, "up.test"), TIMEOUT, context)).status is Status.UP
        threads, fds = await _threads_and_fds()
        for i in range(200):
            timeout = 0.5 + i / 1000
            result = await run_attempt(_endpoint(dnsmasq_port, "up.test", timeout=timeout), context, timeout)
            assert result.status is Status.UP, result
        now_threads, now_fds = await _threads_and_fds()
        assert now_threads <= threads, f"{now_threads - threads} threads more after 200 timeouts"
        assert now_fds <= fds, f"{now_fds - fds} descriptors more after 200 timeouts"
    finally:
        await context.close()


async def test_a_usually_fast_resolver_may_use_the_whole_timeout(scripted: Responder, ctx: ProbeContext) -> None:
    # c-ares shortened its wait to max(250 ms, 5 x the recent average) whatever the endpoint said,
    # so one 600 ms answer after a run of 1 ms answers was reported DOWN against a 2 s timeout.
    ep = _endpoint(scripted.port, "fast.then.slow", timeout=2.0)
    for _ in range(6):
        assert (await run_attempt(ep, ctx, 2.0)).status is Status.UP
    scripted.delay = 0.6
    result = await run_attempt(ep, ctx, 2.0)
    assert result.status is Status.UP, result
    assert result.response_time_ms is not None and 590 <= result.response_time_ms < 1000
    assert result.details["answers"] == [ANSWER_ADDRESS]


async def test_silence_is_a_timeout_after_the_endpoint_timeout_not_before(
    scripted: Responder, ctx: ProbeContext
) -> None:
    ep = _endpoint(scripted.port, "fast.then.silent", timeout=1.0)
    for _ in range(6):
        assert (await run_attempt(ep, ctx, 1.0)).status is Status.UP
    scripted.silent = True
    start = time.perf_counter()
    result = await run_attempt(ep, ctx, 1.0)
    elapsed = time.perf_counter() - start
    assert (result.status, result.error_kind) == (Status.DOWN, ErrorKind.TIMEOUT), result
    assert result.error == "no answer from resolver within 1 s"
    assert 0.98 <= elapsed < 1.0 + 0.15


async def test_a_resolver_that_stops_answering_is_down_at_the_next_check(
    scripted: Responder, ctx: ProbeContext
) -> None:
    ep = _endpoint(scripted.port, "answers.then.stops", timeout=0.3)
    first = await probe(ep, 0.3, ctx)
    assert first.status is Status.UP and first.details["ttl_min"] == 300  # cacheable for 5 minutes
    scripted.silent = True
    second = await probe(ep, 0.3, ctx)
    assert (second.status, second.error_kind) == (Status.DOWN, ErrorKind.TIMEOUT), second
    assert scripted.queries == 2  # asked the resolver both times


async def test_answer_text_in_an_error_is_escaped_and_capped(
    bad_server: tuple[int, BadServer], ctx: ProbeContext
) -> None:
    port, _ = bad_server
    ep = _endpoint(port, "longtxt.bad", "TXT", expected_answers=["v=spf1 -all"])
    result = await probe(ep, TIMEOUT, ctx)
    assert (result.status, result.error_kind) == (Status.DOWN, ErrorKind.UNEXPECTED_ANSWER), result
    error = result.error or ""
    # The 400 bytes the resolver sent are cut to 200 characters, escaped: no NUL reaches PostgreSQL.
    assert error.startswith("expected v=spf1 -all among the answers; got \\x00\\x1b[2Jttt"), error
    assert error.endswith("…") and error.isprintable() and len(error) <= 250, error


@pytest.mark.parametrize("name", ["silent.test", "ok.test"])
async def test_the_socket_is_closed_when_the_check_returns(
    bad_server: tuple[int, BadServer], ctx: ProbeContext, name: str
) -> None:
    # Transports close their socket a loop iteration after close(). The probe waits for that: a
    # check's socket that outlived it was the descriptor a check running next (in the exhaustion
    # test, one made with no descriptor left) found free.
    port, _ = bad_server
    ep = _endpoint(port, name, timeout=0.2)
    await run_attempt(ep, ctx, 0.2)  # warm: the first check imports and builds what it needs
    await asyncio.sleep(0)
    fds = psutil.Process().num_fds()
    result = await run_attempt(ep, ctx, 0.2)
    after = psutil.Process().num_fds()  # no await in between: nothing else could close it
    assert result.error_kind is (ErrorKind.TIMEOUT if name == "silent.test" else None), result
    assert after == fds, f"{after - fds} descriptors still open when the check returned"
