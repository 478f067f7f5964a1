"""tests/parallel.py: names that several test processes can make at once without clashing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.parallel import unique_name


def test_names_differ_within_a_process_and_fit_an_interface_name() -> None:
    names = [unique_name("ispmon-veth-host") for _ in range(1000)]
    assert len(set(names)) == 1000
    assert all(len(n) <= 15 and str(os.getpid()) in n for n in names)
    assert unique_name("ns-", limit=40).startswith("ns-")


def test_names_differ_between_processes() -> None:
    code = "from tests.parallel import unique_name; print(unique_name('ispmon-ns-'))"
    out = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
           for _ in range(3)}
    assert len(out) == 3


def test_a_limit_too_small_for_the_pid_is_an_error_not_a_clash() -> None:
    with pytest.raises(ValueError, match="cannot hold a unique name"):
        unique_name("x", limit=3)
