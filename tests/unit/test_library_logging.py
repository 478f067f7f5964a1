"""Imported as a library, ispmon never writes its log lines onto the host program's stdout."""

from __future__ import annotations

import subprocess
import sys

SNIPPET = """
import structlog
import ispmon.store.db  # any module with a module-level logger
log = structlog.get_logger("ispmon.store.db")
log.info("partition_created", table="status_history")
log.warning("something_wrong", detail="x")
print("program output")
"""


def test_library_use_keeps_stdout_for_the_program_and_warnings_on_stderr() -> None:
    done = subprocess.run([sys.executable, "-c", SNIPPET], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout == "program output\n"
    assert "something_wrong" in done.stderr and "partition_created" not in done.stderr
