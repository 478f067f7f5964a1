"""pyproject.toml declares exactly what the package imports: nothing missing (a direct import that
only arrives through another package's dependencies), nothing installed ahead of the code using it."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import ispmon

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(ispmon.__file__).resolve().parent


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_distributions() -> set[str]:
    modules: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    third_party = modules - set(sys.stdlib_module_names) - {"ispmon", "__future__"}
    owners = packages_distributions()
    missing = sorted(m for m in third_party if m not in owners)
    assert not missing, f"imported but not installed: {missing}"
    return {normalise(owners[m][0]) for m in third_party}


def declared_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {normalise(re.split(r"[\s\[<>=!~;]", dep, maxsplit=1)[0]) for dep in project["dependencies"]}


# Declared without an import of ours, each for a reason pyproject.toml states beside it.
USED_THROUGH_ANOTHER_LIBRARY = {
    "aiodns",  # aiohttp's AsyncResolver: HTTP targets' names resolved without a thread per lookup
}


def test_dependencies_are_what_the_code_imports() -> None:
    assert imported_distributions() | USED_THROUGH_ANOTHER_LIBRARY == declared_distributions()
