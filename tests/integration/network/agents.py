"""Debian's snmpd in a network namespace of its own, reached over a veth pair.

The namespace's own loopback carries only what a test sends through it, so its counters are the
truth to compare the poller's figures with; the SNMP traffic itself goes over the veth. Extra veth
pairs inside the namespace give as many real interfaces as a test needs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

COMMUNITY = "ispmon-test-comm"
V3_USER, V3_AUTH, V3_PRIV = "ispmon", "authpass-0123", "privpass-0123"
PORT = 16161


@dataclass(frozen=True)
class Agent:
    namespace: str
    address: str  # snmpd's address, inside the namespace
    port: int

    def run_inside(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.namespace, *argv], capture_output=True, text=True,
                              timeout=timeout, check=True)

    def loopback_bytes(self) -> tuple[int, int]:
        """The kernel's own (received, sent) byte counters of the namespace's loopback."""
        done = subprocess.run(["ip", "-n", self.namespace, "-s", "-j", "link", "show", "lo"], capture_output=True,
                              text=True, timeout=10, check=True)
        (link,) = json.loads(done.stdout)
        return link["stats64"]["rx"]["bytes"], link["stats64"]["tx"]["bytes"]

    def send_over_loopback(self, nbytes: int) -> None:
        """Send exactly `nbytes` of TCP payload over the namespace's loopback (one connection)."""
        self.run_inside(sys.executable, "-c", SENDER, str(nbytes))


# A TCP server and client on the namespace's 127.0.0.1: the client sends N bytes, the server
# reads them all before both close.
SENDER = """
import socket, sys, threading
n = int(sys.argv[1])
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
got = []
def serve():
    c, _ = srv.accept(); total = 0
    while total < n:
        data = c.recv(1 << 20)
        if not data: break
        total += len(data)
    got.append(total); c.close()
t = threading.Thread(target=serve); t.start()
cli = socket.create_connection(srv.getsockname()); chunk = b"x" * (1 << 20); left = n
while left:
    left -= cli.send(chunk[: min(left, len(chunk))])
cli.close(); t.join()
assert got == [n], got
"""


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def _free_prefix() -> str:
    used = _run("ip", "-4", "-o", "addr") + _run("ip", "-4", "route")
    for i in range(254):
        prefix = f"198.19.{(os.getpid() + i) % 254 + 1}."
        if prefix not in used:
            return prefix
    raise RuntimeError("no free 198.19.x.0/24 for the test namespace")


def _wait_for_agent(address: str, port: int, proc: subprocess.Popen[str], deadline: float, log: Path) -> None:
    """snmpd answers Debian's snmpget for sysUpTime, or the deadline passes."""
    argv = ["snmpget", "-v2c", "-c", COMMUNITY, "-t", "0.3", "-r", "0", "-M", "/dev/null", "-On",
            f"{address}:{port}", "1.3.6.1.2.1.1.3.0"]
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"snmpd exited: {log.read_text(errors='replace')[-2000:] if log.exists() else ''}")
        if subprocess.run(argv, capture_output=True, env={**os.environ, "MIBS": ""}).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError("snmpd did not answer in time")


@contextmanager
def snmpd_namespace(tmp: Path, veths: int = 0, extra_conf: str = "", tag: str = "") -> Iterator[Agent]:
    """A namespace with snmpd (v2c community and a v3 authPriv SHA+AES user) and `veths` veth pairs.

    `tag` tells apart several namespaces of one process (a benchmark's agents)."""
    if os.geteuid() != 0:
        raise RuntimeError("the SNMP agent tests need root (network namespaces); run them as root as CI does")
    for tool in ("ip", "snmpd", "snmpget"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            raise RuntimeError(f"the SNMP agent tests need {tool} (apt-get install iproute2 snmpd snmp)")
    pid = f"{os.getpid() % 100_000}{tag}"
    name, host_if, ns_if = f"ispmon-snmp-{pid}", f"isn{pid}h", f"isn{pid}n"
    prefix = _free_prefix()
    address = f"{prefix}2"
    conf = tmp / "snmpd.conf"
    conf.write_text(
        f"agentAddress udp:{address}:{PORT}\n"
        f"rocommunity {COMMUNITY}\n"
        f'createUser {V3_USER} SHA "{V3_AUTH}" AES "{V3_PRIV}"\n'
        f"rouser {V3_USER} authpriv\n{extra_conf}"
    )
    (tmp / "persist").mkdir(exist_ok=True)
    proc: subprocess.Popen[str] | None = None
    _run("ip", "netns", "add", name)
    try:
        _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", name)
        _run("ip", "addr", "add", f"{prefix}1/24", "dev", host_if)
        _run("ip", "link", "set", host_if, "up")
        _run("ip", "-n", name, "addr", "add", f"{address}/24", "dev", ns_if)
        _run("ip", "-n", name, "link", "set", ns_if, "up")
        _run("ip", "-n", name, "link", "set", "lo", "up")
        if veths:
            # One `ip -batch` for all of them: thousands of interfaces in seconds, not minutes.
            batch = "".join(
                f"link add va{i} type veth peer name vb{i}\nlink set va{i} up\nlink set vb{i} up\n"
                for i in range(veths)
            )
            subprocess.run(["ip", "-n", name, "-batch", "-"], input=batch, text=True, check=True,
                           capture_output=True)
        env = {**os.environ, "MIBS": "", "SNMP_PERSISTENT_DIR": str(tmp / "persist")}
        # Logs to a file: snmpd writes a line per request ("Connection from UDP"), and a pipe nobody
        # reads fills after ~900 requests and stalls the agent for good (it blocks on the write).
        log = tmp / "snmpd.log"
        proc = subprocess.Popen(
            ["ip", "netns", "exec", name, "snmpd", "-f", "-Lf", str(log), "-C", "-c", str(conf), "-M", "/dev/null"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        _wait_for_agent(address, PORT, proc, time.monotonic() + 15 + veths / 20, log)  # many: a slow start
        yield Agent(namespace=name, address=address, port=PORT)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", host_if], check=False, capture_output=True)
