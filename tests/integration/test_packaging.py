"""`pip install .` (the README's first command) must ship what the daemon reads at run time."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_carries_the_schema_and_the_console_script(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("ispmon-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert "ispmon/schema.sql" in names
        assert zf.read("ispmon/schema.sql") == (ROOT / "src" / "ispmon" / "schema.sql").read_bytes()
        assert {"ispmon/probes/http.py", "ispmon/api/app.py", "ispmon/py.typed"} <= names
        # The RADIUS dictionaries the accounting codec loads at start, with their attribution.
        shipped = {n for n in names if n.startswith("ispmon/usage/dictionary/")}
        assert {"ispmon/usage/dictionary/README", "ispmon/usage/dictionary/dictionary.rfc2866"} <= shipped
        # The dashboard's files, served from the package (web/pages.py), uPlot with its license.
        static = ROOT / "src" / "ispmon" / "web" / "static"
        for name in ("index.html", "app.js", "style.css", "vendor/uplot/uPlot.iife.min.js", "vendor/uplot/LICENSE"):
            assert zf.read(f"ispmon/web/static/{name}") == (static / name).read_bytes(), name
        # The Kibana saved objects `ispmon kibana-import` reads from the package.
        kibana = sorted((ROOT / "src" / "ispmon" / "search" / "kibana").glob("*.ndjson"))
        assert len(kibana) == 4
        for path in kibana:
            assert zf.read(f"ispmon/search/kibana/{path.name}") == path.read_bytes()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "ispmon = ispmon.cli:main" in zf.read(entry_points).decode()
    # The top-level schema.sql the issue asks for is the packaged one, not a copy that could drift.
    assert (ROOT / "schema.sql").resolve() == (ROOT / "src" / "ispmon" / "schema.sql").resolve()
