"""CPU per ICMP echo with N echoes in flight: per-probe raw sockets (the old way, icmplib's
async_ping) against the shared raw socket (ispmon.probes.icmpmux), in the same run.

Run as root: `PYTHONPATH=src python3 bench/icmp_scale.py [--levels 10,100,1000]`. Hosts are
addresses inside a network namespace made here (kernel echo replies on); nothing else is pinged.
Anchor (issue 10): 3.5 ms CPU per probe at 100 in flight with raw sockets, 158 µs with datagram.

NOT done yet: the 10,000-host goal run (20 packets every 60 s), the known-delay RTT error and the
fping comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import time

import icmplib
import uvloop

from ispmon.availability.endpoints import build_endpoint
from ispmon.probes.base import ProbeContext
from ispmon.probes.icmp import probe


def run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def make_hosts(n: int) -> tuple[str, list[str]]:
    pid = os.getpid()
    name, host_if, ns_if = f"ispmon-bench-{pid}", f"bnc{pid}h", f"bnc{pid}n"
    run("ip", "netns", "add", name)
    run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", name)
    run("ip", "addr", "add", "198.19.0.1/24", "dev", host_if)
    run("ip", "link", "set", host_if, "up")
    hosts = [f"198.19.{1 + i // 250}.{1 + i % 250}" for i in range(n)]
    batch = f"addr add 198.19.0.2/24 dev {ns_if}\n" + "".join(f"addr add {h}/32 dev {ns_if}\n" for h in hosts)
    subprocess.run(["ip", "-n", name, "-batch", "-"], input=batch, text=True, check=True)
    run("ip", "-n", name, "link", "set", ns_if, "up")
    # Through one next hop: on-link, each host would need a neighbour entry (gc_thresh3 is 1,024).
    run("ip", "route", "add", "198.19.0.0/16", "via", "198.19.0.2")
    # The kernel's ICMP rate limit (1,000/s, burst 50) would drop most replies at 5,000 in flight.
    for knob in ("icmp_ratelimit=0", "icmp_msgs_per_sec=1000000", "icmp_msgs_burst=1000000"):
        run("ip", "netns", "exec", name, "sysctl", "-qw", f"net.ipv4.{knob}")
    return name, hosts


async def shared(hosts: list[str], rounds: int) -> tuple[float, int]:
    ctx = ProbeContext(icmp_privileged=True)
    eps = [build_endpoint({"name": h, "url": h, "protocol": "icmp", "check_interval": 60, "packet_count": 1})
           for h in hosts]
    await asyncio.gather(*(probe(ep, 2.0, ctx) for ep in eps))  # warm-up, opens the socket
    cpu, ok = time.process_time(), 0
    for _ in range(rounds):
        results = await asyncio.gather(*(probe(ep, 2.0, ctx) for ep in eps))
        ok += sum(r.details["packets_received"] for r in results)
    cpu = time.process_time() - cpu
    await ctx.close()
    return cpu, ok


async def per_probe(hosts: list[str], rounds: int) -> tuple[float, int]:
    cpu, ok = time.process_time(), 0
    for _ in range(rounds):
        results = await asyncio.gather(
            *(icmplib.async_ping(h, count=1, timeout=2, privileged=True) for h in hosts)
        )
        ok += sum(r.packets_received for r in results)
    return time.process_time() - cpu, ok


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", default="10,100,1000,5000")
    parser.add_argument("--old-max", type=int, default=1000, help="largest level run the old way (O(n^2))")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    name, hosts = make_hosts(max(levels))
    try:
        print(f"{'in flight':>9} {'old µs/echo':>12} {'shared µs/echo':>15} {'replies old/shared':>20}")
        for n in levels:
            rounds = max(1, 2000 // n)
            cpu_s, ok_s = uvloop.run(shared(hosts[:n], rounds))
            if n <= args.old_max:
                cpu_o, ok_o = uvloop.run(per_probe(hosts[:n], rounds))
                old = f"{cpu_o / (n * rounds) * 1e6:12.0f}"
            else:
                old, ok_o = f"{'skipped':>12}", 0
            print(f"{n:>9} {old} {cpu_s / (n * rounds) * 1e6:15.0f} {ok_o:>9}/{ok_s:<9} of {n * rounds}")
        print("anchor: 3,500 µs per probe at 100 in flight (raw, old), 158 µs (datagram)")
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", f"bnc{os.getpid()}h"], check=False, capture_output=True)


if __name__ == "__main__":
    main()
