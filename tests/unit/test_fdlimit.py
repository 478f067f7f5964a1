"""The open-file limit is raised at start, and API connections leave a reserve for probing."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest

from ispmon.config import load_settings
from ispmon.errors import ConfigError
from ispmon.fdlimit import MIN_API_CONNECTIONS, api_connection_cap

SHOW = (
    "import json, resource; from ispmon.fdlimit import raise_nofile_limit; n = raise_nofile_limit();"
    "print(json.dumps([n.before, n.soft, n.hard, n.raised, resource.getrlimit(resource.RLIMIT_NOFILE)]))"
)


def run_with_limit(soft: int, hard: int) -> list[object]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    out = subprocess.run(
        [sys.executable, "-c", SHOW], preexec_fn=limit, capture_output=True, text=True, check=True, timeout=60
    )
    return list(json.loads(out.stdout))


def test_the_soft_limit_is_raised_to_the_hard_limit() -> None:
    assert run_with_limit(512, 2048) == [512, 2048, 2048, True, [2048, 2048]]


def test_a_soft_limit_already_at_the_hard_limit_is_left_alone() -> None:
    assert run_with_limit(1024, 1024) == [1024, 1024, 1024, False, [1024, 1024]]


@pytest.mark.parametrize(
    ("configured", "soft", "in_use", "reserve", "cap"),
    [
        (4096, 1_048_576, 40, 600, 4096),  # plenty: the configured cap
        (4096, 1024, 40, 600, 384),  # a plain shell's limit: what the reserve leaves
        (4096, 512, 40, 600, MIN_API_CONNECTIONS),  # never none at all
        (100, 1024, 40, 600, 100),
    ],
)
def test_api_connections_leave_the_reserve_free(
    configured: int, soft: int, in_use: int, reserve: int, cap: int
) -> None:
    assert api_connection_cap(configured, soft, in_use, reserve) == cap


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("api_max_connections", 0),
        ("api_header_timeout", 0),
        ("api_keepalive_timeout", -1),
        ("ispmon_fd_reserve", -1),
    ],
)
def test_bounds_settings_are_checked_naming_the_key(key: str, value: int) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({key: value}, "f.toml: ")
    assert info.value.errors[0].startswith(f"f.toml: settings.{key}:"), info.value.errors
