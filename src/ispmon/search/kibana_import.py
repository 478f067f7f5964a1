"""Import saved objects into Kibana through its saved-objects API (`ispmon kibana-import`).

One `POST /api/saved_objects/_import?overwrite=true` per ndjson file (`/s/<space>` before it for a
space), the file as the multipart field `file`, with the `kbn-xsrf` header Kibana requires of every
API write. Kibana answers 200 with `{success, successCount, successResults, errors}` also when some
objects failed; each error is reported by type, id and title. Anything that keeps the request from
being answered (connection, TLS, credentials, a wrong space, not Kibana) is an `ImportFailed` with
one line to print.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp

SPACE_RE = re.compile(r"^[a-z0-9_-]+$")  # Kibana's rule for space ids


class ImportFailed(Exception):
    """The import could not be done at all; str() is the one line to print."""


@dataclass(frozen=True, slots=True)
class KibanaTarget:
    url: str
    api_key: str | None = None
    user: str | None = None
    password: str | None = None
    space: str | None = None
    ca_file: Path | None = None
    timeout: float = 60.0

    def import_url(self) -> str:
        base = self.url.rstrip("/")
        space = f"/s/{self.space}" if self.space and self.space != "default" else ""
        return f"{base}{space}/api/saved_objects/_import?overwrite=true"

    def headers(self) -> dict[str, str]:
        headers = {"kbn-xsrf": "ispmon"}
        if self.api_key:
            # The "encoded" form Kibana's API key screen shows (base64 of id:key).
            headers["Authorization"] = f"ApiKey {self.api_key}"
        elif self.user:
            # Built here: aiohttp's BasicAuth is deprecated (aiohttp 4 drops it), and UTF-8 is what
            # Kibana and Elasticsearch decode (BasicAuth defaulted to latin-1).
            pair = f"{self.user}:{self.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        return headers

    def ssl_context(self) -> ssl.SSLContext | bool:
        if self.ca_file is None:
            return True
        try:
            return ssl.create_default_context(cafile=str(self.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ImportFailed(f"--ca-file {self.ca_file}: {exc}") from None


@dataclass(slots=True)
class FileOutcome:
    name: str
    imported: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def shipped_files() -> list[tuple[str, bytes]]:
    """The ndjson files packaged with ispmon (search/kibana/), data views first."""
    folder = resources.files("ispmon.search").joinpath("kibana")
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".ndjson"))
    names.sort(key=lambda n: n != "ispmon-data-views.ndjson")
    return [(name, folder.joinpath(name).read_bytes()) for name in names]


def describe_error(item: dict[str, Any]) -> str:
    """One line for one entry of Kibana's `errors`: which object, and why."""
    error = item.get("error") or {}
    kind = error.get("type", "unknown")
    title = (item.get("meta") or {}).get("title") or item.get("title")
    who = f"{item.get('type', '?')} {item.get('id', '?')}" + (f" ({title!r})" if title else "")
    if kind == "missing_references":
        refs = ", ".join(f"{r.get('type')} {r.get('id')}" for r in error.get("references", []))
        why = f"missing references: {refs}"
    elif kind in ("conflict", "ambiguous_conflict"):
        why = f"{kind} (an object with this id exists and was not overwritten)"
    elif kind == "unsupported_type":
        why = "unsupported type (this Kibana does not know it)"
    else:
        why = f"{kind}: {error.get('message') or error.get('reason') or json.dumps(error)}"
    return f"{who}: {why}"


def _kibana_message(status: int, body: Any, text: str) -> str:
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or text[:200])
    return text[:200].strip() or f"HTTP {status}"


async def import_file(
    session: aiohttp.ClientSession, target: KibanaTarget, name: str, data: bytes
) -> FileOutcome:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=name, content_type="application/ndjson")
    url = target.import_url()
    try:
        async with session.post(url, data=form, headers=target.headers(), ssl=target.ssl_context()) as resp:
            text = await resp.text(errors="replace")
            status = resp.status
    except aiohttp.ClientConnectorCertificateError as exc:
        raise ImportFailed(
            f"TLS: the certificate of {target.url} was not accepted ({exc.certificate_error})"
        ) from None
    except aiohttp.ClientSSLError as exc:
        raise ImportFailed(f"TLS error talking to {target.url}: {exc}") from None
    except TimeoutError:  # before ClientError: aiohttp's ServerTimeoutError is both
        raise ImportFailed(f"Kibana at {target.url} did not answer within {target.timeout:g} s") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise ImportFailed(f"cannot reach Kibana at {target.url}: {exc}") from None
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = None
    if status in (401, 403):
        what = "refused the credentials" if status == 401 else "does not allow these credentials to import"
        raise ImportFailed(f"Kibana {what} (HTTP {status}): {_kibana_message(status, body, text)}")
    if status == 404:
        hint = f" (is there a space {target.space!r}?)" if target.space else " (is this Kibana's URL?)"
        raise ImportFailed(f"HTTP 404 from {url}{hint}: {_kibana_message(status, body, text)}")
    if status != 200:
        raise ImportFailed(f"Kibana answered HTTP {status} for {name}: {_kibana_message(status, body, text)}")
    if not isinstance(body, dict) or "successCount" not in body:
        raise ImportFailed(f"{url} answered 200 but not with Kibana's import result (is this Kibana?)")
    outcome = FileOutcome(name, imported=int(body.get("successCount") or 0))
    outcome.errors = [describe_error(e) for e in body.get("errors") or [] if isinstance(e, dict)]
    # e.g. {"type": "action_required", "message": ..., "actionPath": ...}: said, not a failure.
    outcome.warnings = [
        str(w.get("message") or w) for w in body.get("warnings") or [] if isinstance(w, dict | str)
    ]
    if not body.get("success", False) and not outcome.errors:
        outcome.errors.append("Kibana reported the import as failed without saying why")
    return outcome


async def import_all(
    target: KibanaTarget, files: list[tuple[str, bytes]], report: Callable[[FileOutcome], None]
) -> None:
    """Import each file in turn, reporting each outcome as it comes (so what was imported before
    a failure is said); raises ImportFailed at the first file that gets no import result."""
    timeout = aiohttp.ClientTimeout(total=target.timeout)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for name, data in files:
            report(await import_file(session, target, name, data))
