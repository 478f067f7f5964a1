"""The route table's vocabulary: a `Route` with its path parameters, query parameters and body.

Each resource module lists its routes in ``ROUTES``. `app.create_app` registers exactly those and
`openapi.build_document` describes exactly those, so the document cannot drift from the server.
Declarations only: parsing a request against them is `routing`'s job. Date-times are ISO 8601; a
value without an offset is read as UTC.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web
from pydantic import BaseModel

from ispmon.api.problem import ApiError
from ispmon.availability.endpoints import SLUG_RE

if TYPE_CHECKING:
    from ispmon.services.context import AppServices

ParamType = Literal["string", "integer", "number", "boolean", "date-time", "cursor"]
PathType = Literal["slug", "integer"]
BIGINT_MAX = 2**63 - 1
_INT_RE = re.compile(r"[+-]?\d{1,19}")
# An unencoded '+' in a query string arrives as a space: "...T10:00:00 02:00" means "+02:00".
_SPACE_OFFSET = re.compile(r"^(.*T[\d:.]+) (\d\d(?::?\d\d)?)$")


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored in PostgreSQL text/jsonb (NUL, lone surrogates), or None."""
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode (no unpaired surrogates)"
    return None


def parse_datetime(text: str) -> datetime:
    """ISO 8601 -> aware UTC datetime; naive values are UTC. Raises ValueError in our words."""
    text = _SPACE_OFFSET.sub(r"\1+\2", text.strip())
    if not text or len(text) > 64:
        raise ValueError("must be an ISO 8601 date-time, e.g. 2024-05-01T12:00:00Z")
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 date-time, e.g. 2024-05-01T12:00:00Z") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        # Normalised here because the database driver would overflow on year 1 / 9999 edges later.
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None


@dataclass(frozen=True)
class Param:
    """A query parameter: its type drives both the parser and the OpenAPI schema."""

    name: str
    type: ParamType
    description: str
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    enum: tuple[str, ...] | None = None
    target: str | None = None  # the service's keyword, when it differs from the parameter name
    # For a "string" whose format only its owner knows (a list's opaque `after` cursor): raw -> value,
    # raising ValueError in our words.
    parser: Callable[[str], Any] | None = None

    def _range_text(self) -> str:
        low = f"greater than {self.minimum:g}" if self.exclusive_minimum else f"at least {self.minimum:g}"
        if self.maximum is None:
            return low
        return f"{low} and at most {self.maximum:g}"

    def _check_range(self, value: float) -> None:
        too_low = self.minimum is not None and (
            value <= self.minimum if self.exclusive_minimum else value < self.minimum
        )
        too_high = self.maximum is not None and value > self.maximum
        if too_low or too_high:
            raise ValueError(f"must be {self._range_text()}")

    def convert(self, raw: str) -> Any:
        """Parse one raw value; raises ValueError with a message that does not repeat the name."""
        if self.type == "integer":
            if not _INT_RE.fullmatch(raw.strip()):
                raise ValueError(f"must be an integer, got {raw[:40]!r}")
            number = int(raw)
            self._check_range(number)
            return number
        if self.type == "number":
            try:
                real = float(raw)
            except ValueError:
                raise ValueError(f"must be a number, got {raw[:40]!r}") from None
            if not math.isfinite(real):
                raise ValueError("must be a finite number")
            self._check_range(real)
            return real
        if self.type == "boolean":
            lowered = raw.strip().lower()
            if lowered in ("true", "1"):
                return True
            if lowered in ("false", "0"):
                return False
            raise ValueError(f"must be true or false, got {raw[:40]!r}")
        if self.type == "date-time":
            return parse_datetime(raw)
        if self.type == "cursor":
            return parse_cursor(raw)
        problem = text_problem(raw)
        if problem:
            raise ValueError(problem)
        if self.parser is not None:
            return self.parser(raw)
        if len(raw) > 1000:
            raise ValueError("must be at most 1000 characters")
        if self.enum is not None and raw not in self.enum:
            # Enum values are stored lower case; names are accepted in any case ("HTTPS", "Critical").
            if raw.lower() in self.enum:
                return raw.lower()
            raise ValueError(f"must be one of {', '.join(self.enum)}")
        return raw


def parse_cursor(raw: str) -> tuple[datetime, int]:
    """The ``next_cursor`` of a previous page: ``<checked_at ISO 8601>~<row id>``."""
    stamp, sep, ident = raw.rpartition("~")
    if not sep or not ident.isdigit() or len(ident) > 19 or not 0 < int(ident) <= BIGINT_MAX:
        raise ValueError("must be the next_cursor value of a previous page (<iso>~<id>)")
    try:
        return parse_datetime(stamp), int(ident)
    except ValueError:
        raise ValueError("must be the next_cursor value of a previous page (<iso>~<id>)") from None


@dataclass(frozen=True)
class PathParam:
    name: str
    type: PathType
    description: str
    # The document's pattern for a slug, when the resource refuses some slugs (a reserved id).
    pattern: str | None = None

    def convert(self, raw: str) -> Any:
        if self.type == "integer":
            if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or not 0 < int(raw) <= BIGINT_MAX:
                raise ApiError.on(400, self.name, f"must be a positive integer, got {raw[:70]!r}")
            return int(raw)
        # Ids are slugs; anything else (a '/', unicode, NUL, 65+ chars) cannot exist, so it is a
        # 404 that says why, answered before it reaches the database.
        if not SLUG_RE.fullmatch(raw):
            raise ApiError.on(
                404, self.name, f"no such id: {raw[:70]!r} is not a slug (1-64 of a-z, 0-9, '-', '_')"
            )
        return raw


@dataclass(frozen=True)
class Body:
    """A JSON object body validated by `model` (in the service, or by the handler)."""

    name: str  # the OpenAPI component name
    model: type[BaseModel]
    required: bool = True
    partial: bool = False  # PUT: every field optional, the given ones replace the stored ones
    # Fields the model's before-validator fills when absent, so the document must not require them.
    filled: frozenset[str] = frozenset()
    # This route's body limit when it is not the API's MAX_BODY_BYTES (a bulk upsert of many rows).
    max_bytes: int | None = None


@dataclass
class Call:
    """What a handler gets: the request, the services and the already-checked inputs."""

    request: web.Request
    services: AppServices
    path: dict[str, Any]
    query: dict[str, Any]
    body: dict[str, Any] | None = None


CallHandler = Callable[[Call], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: CallHandler
    operation_id: str
    summary: str
    tag: str
    path_params: tuple[PathParam, ...] = ()
    query: tuple[Param, ...] = ()
    body: Body | None = None
    status: int = 200
    errors: tuple[int, ...] = ()  # route-specific error codes (409 ...), beyond those derived
    # "object"; "list" (an {"items", "count"} envelope); "page" (a list with limit, offset and
    # next_after: see `api.listing`); or "none".
    response: str = "object"
    # The JSON schema of the success body ("object"), or of one item ("list", "page"): see
    # `api.responses`. None only where no schema is declared yet; the document says "object".
    response_schema: dict[str, Any] | None = None
    description: str = ""
    also_without_slash: bool = False
    # The handler mostly waits for a target (a check, a poll, a test send): it holds no place of
    # API_MAX_CONCURRENT_REQUESTS, which bounds the API's CPU on the event loop (api/admission.py).
    waits_on_target: bool = False
    # Other media types the success answer may have (a report's CSV or PDF), with their schemas.
    media_types: tuple[tuple[str, dict[str, Any]], ...] = ()
    # False: the success body is not JSON (the Prometheus exposition formats), only `media_types`.
    json_body: bool = True

    def __post_init__(self) -> None:
        names = re.findall(r"\{(\w+)\}", self.path)
        if names != [p.name for p in self.path_params]:
            raise ValueError(f"{self.method} {self.path}: path parameters {names} are not declared")

    @property
    def paths(self) -> tuple[str, ...]:
        if self.also_without_slash:
            return (self.path, self.path.rstrip("/"))
        return (self.path,)
