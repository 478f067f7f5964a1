"""Every service the README names can be imported from `ispmon.services`, as the seed's examples do."""

from __future__ import annotations

import re
from pathlib import Path

import ispmon.services

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_every_service_the_readme_names_is_exported() -> None:
    named = set(re.findall(r"\b([A-Z][A-Za-z]+Service)\b", README))
    assert {"AvailabilityService", "AlertService", "LoggingService"} <= named
    missing = {name for name in named if not isinstance(getattr(ispmon.services, name, None), type)}
    assert not missing
    assert named <= set(ispmon.services.__all__)
