"""The commands README.md shows, run as written (port substituted) against a live daemon."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_daemon import Daemon, free_port, wait_for_datagram

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(180)


def readme_block(after_heading: str, index: int = 0) -> list[str]:
    """The lines of the `index`-th ```sh block after a heading."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(after_heading) :]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [line for line in blocks[index].splitlines() if line.strip()]


async def test_readme_add_endpoint_commands_work(tmp_path: Path, notify_socket) -> None:  # type: ignore[no-untyped-def]
    notify_path, notify = notify_socket
    port = free_port()
    daemon = Daemon(tmp_path, port, notify_path, {})
    daemon.start()
    try:
        await wait_for_datagram(notify, "READY=1", timeout=90)
        curls = readme_block("## Add an endpoint")
        assert len(curls) >= 5 and all(c.startswith("curl ") for c in curls)
        outputs = []
        for command in curls:
            command = command.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
            done = await asyncio.to_thread(
                subprocess.run, ["bash", "-c", command], capture_output=True, text=True, timeout=30, cwd=ROOT
            )
            assert done.returncode == 0, (command, done.stdout, done.stderr)
            outputs.append(json.loads(done.stdout))
        created, checked, status, history, summary, active = outputs
        assert created["id"] == "ispmon-self" and created["check_interval"] == 10
        assert checked["status"] == "up", checked
        assert status["status"] == "up" and status["last_check"]["status"] == "up"
        assert history["count"] >= 1 and history["items"][0]["status"] == "up"
        assert summary["total"] == 1 and summary["by_status"] == {"up": 1}
        assert active["items"] == []

        (check_command,) = readme_block("One probe from the command line")
        check_command = check_command.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        done = await asyncio.to_thread(
            subprocess.run,
            ["bash", "-c", check_command],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
        )
        assert done.returncode == 0 and done.stdout.startswith("UP"), (done.stdout, done.stderr)
        assert daemon.terminate() == 0
    finally:
        daemon.cleanup()
