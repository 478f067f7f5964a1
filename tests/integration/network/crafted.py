"""A snmpd whose system group, ifTable and ifXTable come from a JSON file the test rewrites.

snmpd's own interfaces and system modules are switched off (``-I -interfaces,...``) and a
``pass_persist`` script answers those subtrees from the file, read afresh at every request: the
test serves wraps, reboots, renumbered ifIndex and garbage, through the real agent and protocol.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COMMUNITY = "crafted"
SUBTREES = (".1.3.6.1.2.1.1", ".1.3.6.1.2.1.2.2.1", ".1.3.6.1.2.1.31.1.1.1")

# The pass_persist protocol (snmpd.conf(5)): PING -> PONG; get/getnext + OID -> OID, type, value or NONE.
SCRIPT = r'''
import json, sys
path = sys.argv[1]
def key(o): return tuple(int(x) for x in o.strip(".").split("."))
while True:
    line = sys.stdin.readline()
    if not line:
        break
    cmd = line.strip()
    if cmd == "PING":
        print("PONG", flush=True); continue
    if cmd not in ("get", "getnext"):
        print("NONE", flush=True); continue
    oid = sys.stdin.readline().strip()
    with open(path) as f:
        data = json.load(f)
    if cmd == "get":
        hit = oid if oid in data else None
    else:
        hit = min((o for o in data if key(o) > key(oid)), key=key, default=None)
    if hit is None:
        print("NONE", flush=True)
    else:
        t, v = data[hit]
        print(hit, t, v, sep="\n", flush=True)
'''


@dataclass
class CraftedAgent:
    port: int
    data_path: Path

    def serve(self, values: dict[str, tuple[str, Any]]) -> None:
        """Replace what the agent serves: {".1.3.6...": ("counter" | "integer" | "string" | ..., value)}."""
        tmp = self.data_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({k: [t, str(v)] for k, (t, v) in values.items()}))
        os.replace(tmp, self.data_path)  # atomic: the script never reads half a file


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def crafted_agent(tmp: Path) -> Iterator[CraftedAgent]:
    port = _free_udp_port()
    agent = CraftedAgent(port, tmp / "data.json")
    agent.serve({".1.3.6.1.2.1.1.3.0": ("timeticks", 1)})
    script = tmp / "persist.py"
    script.write_text(SCRIPT)
    conf = tmp / "crafted.conf"
    conf.write_text(
        f"agentAddress udp:127.0.0.1:{port}\nrocommunity {COMMUNITY} 127.0.0.1\n"
        + "".join(f"pass_persist {s} {sys.executable} {script} {agent.data_path}\n" for s in SUBTREES)
    )
    (tmp / "persist").mkdir(exist_ok=True)
    env = {**os.environ, "MIBS": "", "SNMP_PERSISTENT_DIR": str(tmp / "persist")}
    # Logs to a file: snmpd writes a line per request, and a pipe nobody reads fills after ~900
    # requests and stalls the agent (it blocks on the write).
    logfile = tmp / "snmpd.log"
    proc = subprocess.Popen(
        ["snmpd", "-f", "-Lf", str(logfile), "-C", "-c", str(conf), "-M", "/dev/null",
         "-I", "-interfaces,ifTable,ifXTable,system_mib,sysORTable,smux"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        argv = ["snmpget", "-v2c", "-c", COMMUNITY, "-t", "0.5", "-r", "0", "-M", "/dev/null", "-On",
                f"127.0.0.1:{port}", "1.3.6.1.2.1.1.3.0"]
        deadline = time.monotonic() + 15
        while subprocess.run(argv, capture_output=True, env=env).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                log = logfile.read_text(errors="replace") if logfile.exists() else ""
                raise RuntimeError(f"crafted snmpd did not start: {log[-2000:]}")
            time.sleep(0.1)
        yield agent
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
