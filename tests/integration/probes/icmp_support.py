"""What the ICMP tests share: a network namespace behind a veth pair, and a userspace echo responder.

netem is not available on these machines, so delay, loss, duplicates and odd replies come from a
small raw-socket script run inside the namespace with `ip netns exec`, while the namespace's
kernel ignores echo requests (net.ipv4.icmp_echo_ignore_all=1). Every responder script starts with
`RESPONDER_PRELUDE` (argument rules, checksums, the raw sockets, building a reply) and adds only
its own way of answering. Names of namespaces and links carry the process id, and the addresses
are a 198.18.x.0/24 (RFC 2544 benchmarking) or fd18:x::/64 no address or route uses yet, so
several test processes can run at once. Needs root: without it the tests fail, never skip.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence

import pytest

# The start of every responder script. argv[first:] are "<address>,<field>,..." rules, read into
# `rules` by the script (each its own fields). `checksum` and `with_checksum` are RFC 1071's;
# `ip_packet(src, dst, body)` is an IPv4 packet from `src` to `dst` (written whole, since `sender`
# is IPPROTO_RAW: a reply comes from the address that was pinged, not the interface's primary
# one); `echo_reply(rest)` is an ICMP echo reply carrying a request's bytes after its checksum.
RESPONDER_PRELUDE = r"""
import socket, struct, sys

def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF

def with_checksum(header, offset):
    return header[:offset] + struct.pack("!H", checksum(header)) + header[offset + 2:]

def ip_packet(src, dst, body):
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0, 64, 1, 0, src, dst)
    return with_checksum(ip, 10) + body

def echo_reply(rest):
    return with_checksum(struct.pack("!BBH", 0, 0, 0) + rest, 2)

receiver = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
sender = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)  # we write the IP header
"""


def run(*args: str) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the ICMP tests need root (network namespaces, raw sockets); run them as root as CI does")


def free_prefix() -> str:
    """A 198.18.x. /24 that no address or route on this machine uses yet."""
    used = run("ip", "-4", "-o", "addr") + run("ip", "-4", "route")
    for i in range(254):
        prefix = f"198.18.{(os.getpid() + i) % 254 + 1}."
        if prefix not in used:
            return prefix
    raise RuntimeError("no free 198.18.x.0/24 for the test namespace")


def free_prefix6() -> str:
    """An fd18:... /64 (unique local) that no address or route on this machine uses yet."""
    used = run("ip", "-6", "-o", "addr") + run("ip", "-6", "route")
    for i in range(1000):
        prefix = f"fd18:{(os.getpid() + i) % 0xFFFF:x}::"
        if prefix not in used:
            return prefix
    raise RuntimeError("no free fd18:x::/64 for the test namespace")


def wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    line = proc.stdout.readline() if ready else ""
    if line.strip() != "ready":
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"ICMP responder did not start: {line!r} {err}")


@contextlib.contextmanager
def namespace(
    tag: str,
    host_address: str,
    addresses: Iterable[str],
    *,
    ipv6: bool = False,
    kernel_echo: bool = False,
    loopback_up: bool = False,
) -> Iterator[tuple[str, ...]]:
    """A namespace ``ispmon-<tag>-<pid>`` joined to this host by a veth pair: `host_address` on
    the host's end, `addresses` on the namespace's; yields the ``ip netns exec`` prefix. IPv4: the
    namespace's kernel ignores echo requests unless `kernel_echo`. Removed on exit."""
    require_root()
    if shutil.which("ip") is None:
        pytest.fail("the ICMP tests need iproute2's `ip` command")
    pid = os.getpid()
    name, host_if, ns_if = f"ispmon-{tag}-{pid}", f"{tag[:3]}{pid}h", f"{tag[:3]}{pid}n"
    family = ("-6",) if ipv6 else ()
    # nodad: an IPv6 address usable at once, not after duplicate address detection's second or so.
    nodad = ("nodad",) if ipv6 else ()
    length = "/64" if ipv6 else "/24"
    run("ip", "netns", "add", name)
    try:
        run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", name)
        run("ip", *family, "addr", "add", f"{host_address}{length}", "dev", host_if, *nodad)
        run("ip", "link", "set", host_if, "up")
        inside = ("ip", "netns", "exec", name)
        if not ipv6 and not kernel_echo:
            run(*inside, "sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1")
        for address in addresses:
            run(*inside, "ip", *family, "addr", "add", f"{address}{length}", "dev", ns_if, *nodad)
        run(*inside, "ip", "link", "set", ns_if, "up")
        if loopback_up:
            run(*inside, "ip", "link", "set", "lo", "up")
        yield inside
    finally:
        # Deleting the namespace deletes its veth end, and with it the host end.
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", host_if], check=False, capture_output=True)


@contextlib.contextmanager
def responder(command: Sequence[str], script: str, args: Iterable[str]) -> Iterator[subprocess.Popen[str]]:
    """`RESPONDER_PRELUDE` + `script` run by `command` (``ip netns exec <ns>`` and whatever goes
    before the interpreter) with `args`; returns once it printed "ready", stopped on exit."""
    proc = subprocess.Popen(
        [*command, sys.executable, "-c", RESPONDER_PRELUDE + script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_ready(proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
