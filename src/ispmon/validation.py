"""Turn pydantic validation errors into `field: message` pairs that name the offending key.

Used by the API (422 bodies), the config loader (exit messages) and the CLI, so every user of
ispmon sees the same wording for the same mistake.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from pydantic import ValidationError

_PREFIXED = re.compile(r"^(?:Value error, )?(?P<field>[A-Za-z_][\w.\[\]]*): (?P<msg>.+)$", re.S)


def _loc_to_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def error_list(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    """[{"field": "endpoints[2].timeout", "message": "..."}] for every error in `exc`.

    Model-level validators raise `ValueError("field: message")`; that field is folded into the path.
    """
    out: list[dict[str, str]] = []
    for err in exc.errors(include_url=False):
        # Union members add their type names to the location (int / list[int]); drop those.
        loc = tuple(
            p
            for p in err["loc"]
            if not (isinstance(p, str) and ("[" in p or p in {"int", "str", "float", "bool"}))
        )
        path = _loc_to_path(loc)
        message = err["msg"]
        match = _PREFIXED.match(message)
        if match and err["type"] == "value_error":
            inner = match["field"]
            path = f"{path}.{inner}" if path and not path.endswith(inner) else (path or inner)
            message = match["msg"]
        elif message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        if prefix:
            path = f"{prefix}.{path}" if path and not path.startswith("[") else f"{prefix}{path}"
        out.append({"field": path or "(body)", "message": message})
    return out


def format_errors(errors: list[dict[str, str]]) -> str:
    return "; ".join(f"{e['field']}: {e['message']}" for e in errors)


def unstorable_text(data: Any, path: str = "") -> str | None:
    """The path of the first string PostgreSQL cannot store (a NUL, or an unpaired surrogate that
    is not valid UTF-8), or None. Checked at validation so such input is a 422, not a 500."""
    if isinstance(data, str):
        if "\x00" in data:
            return path or "(value)"
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            return path or "(value)"
        return None
    if isinstance(data, dict):
        for key, value in data.items():
            found = unstorable_text(key, path or "(key)") or unstorable_text(
                value, f"{path}.{key}" if path else str(key)
            )
            if found:
                return found
    elif isinstance(data, list | tuple):
        for index, value in enumerate(data):
            found = unstorable_text(value, f"{path}[{index}]")
            if found:
                return found
    return None


def is_loopback(host: str) -> bool:
    """Whether `host` (an API listen address) is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost, "" or "0.0.0.0": not loopback
