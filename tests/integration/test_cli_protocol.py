"""`ispmon check --protocol` takes the protocol name in any case, as the API and the config file do."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import ispmon

# The subprocess imports the same ispmon as this test (a worktree's, not an installed copy).
SRC = str(Path(ispmon.__file__).resolve().parents[1])


async def test_check_protocol_in_upper_case() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "ISPMON_CONFIG")}
    env["PYTHONPATH"] = SRC
    # A listening socket completes the TCP handshake in the kernel: a real target, no accept() needed.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "ispmon", "check", "--protocol", "TCP", f"127.0.0.1:{port}", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["protocol"] == "tcp"
    assert result["status"] == "up"
