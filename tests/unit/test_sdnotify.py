"""sd_notify against a real AF_UNIX datagram socket standing in for systemd's notify socket."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ispmon import sdnotify


def _receive_all(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sdnotify, "_warned", False)


@pytest.fixture
def notify_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: None
) -> Iterator[socket.socket]:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


def test_ready_status_stopping_arrive(notify_socket: socket.socket) -> None:
    assert sdnotify.ready("monitoring 12 endpoints")
    assert sdnotify.status("3 down\nsecond line")
    assert sdnotify.stopping()
    assert sdnotify.notify("WATCHDOG=1")

    assert _receive_all(notify_socket) == [
        "READY=1\nSTATUS=monitoring 12 endpoints",
        # A newline would start a new assignment in the protocol.
        "STATUS=3 down second line",
        "STOPPING=1",
        "WATCHDOG=1",
    ]


def test_ready_without_status(notify_socket: socket.socket) -> None:
    assert sdnotify.ready()
    assert _receive_all(notify_socket) == ["READY=1"]


def test_abstract_namespace_socket(monkeypatch: pytest.MonkeyPatch, clean_env: None) -> None:
    name = f"ispmon-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)

        assert sdnotify.ready()

        assert _receive_all(sock) == ["READY=1"]


def test_unset_socket_is_a_noop(clean_env: None) -> None:
    assert sdnotify.notify("READY=1") is False
    assert sdnotify.ready("x") is False
    assert sdnotify.stopping() is False


def test_socket_errors_are_swallowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: None
) -> None:
    # Nobody listens on this path: sendto fails with ENOENT, twice, and neither call raises.
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "missing"))
    assert sdnotify.notify("READY=1") is False
    assert sdnotify.notify("WATCHDOG=1") is False
    assert sdnotify._warned is True

    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert sdnotify.notify("READY=1") is False


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        (None, None, None),
        ("30000000", None, 15.0),
        ("30000000", "self", 15.0),
        ("30000000", "other", None),
        ("0", None, None),
        ("nonsense", None, None),
    ],
)
def test_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch,
    clean_env: None,
    usec: str | None,
    pid: str | None,
    expected: float | None,
) -> None:
    if usec is not None:
        monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid is not None:
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() if pid == "self" else os.getpid() + 1))
    assert sdnotify.watchdog_interval() == expected


async def test_watchdog_loop_pings_at_half_the_interval(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # 0.2 s -> a ping every 0.1 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    stop = asyncio.Event()
    task = asyncio.create_task(sdnotify.watchdog_loop(stop))
    try:
        pings: list[float] = []
        start = time.monotonic()
        while len(pings) < 3 and time.monotonic() - start < 0.5:
            await asyncio.sleep(0.02)
            pings += [time.monotonic() for m in _receive_all(notify_socket) if m == "WATCHDOG=1"]
        assert len(pings) >= 3, f"{len(pings)} pings in 0.5 s"
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=1)
    # Roughly every 0.1 s: three pings (the first is immediate) take at least 0.15 s.
    assert pings[-1] - start >= 0.15
    assert task.done() and task.exception() is None


async def test_watchdog_loop_does_nothing_for_another_pid(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    # Returns at once instead of looping until stopped.
    await asyncio.wait_for(sdnotify.watchdog_loop(asyncio.Event()), timeout=0.5)
    assert _receive_all(notify_socket) == []


async def test_watchdog_loop_returns_when_disabled(clean_env: None) -> None:
    await asyncio.wait_for(sdnotify.watchdog_loop(), timeout=0.5)


async def test_watchdog_loop_can_be_cancelled(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    task = asyncio.create_task(sdnotify.watchdog_loop())  # no stop event: runs until cancelled
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "WATCHDOG=1" in _receive_all(notify_socket)
