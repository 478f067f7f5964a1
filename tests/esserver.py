"""A strict Elasticsearch-compatible test server (aiohttp), for the feed's tests and bench.

No Elasticsearch can be installed here (FIELD-NOTES), so this speaks the parts of its REST API the
feed uses, as strictly as a real server where it matters:

* every answer carries ``X-Elastic-Product: Elasticsearch`` (the official client refuses a server
  without it) and the client's ``compatible-with`` media type is checked: a server of major M
  accepts M and M-1 and answers any other with 400 ``media_type_header_exception``, as 8.x does
  to a 9.x client;
* ``_bulk`` bodies are parsed as NDJSON (action line, then source line; the final newline is
  required), documents are stored by index and id with a version, and each is validated against
  the mapping composed from the index template matching its index (component templates
  included): an undeclared field under ``dynamic: strict`` or a value of the wrong type is a
  per-item 400 ``mapper_parsing_exception``;
* ``filter_path`` on ``_bulk`` answers, as a real server applies it (comma-separated dotted
  paths, ``*`` wildcards in a segment, arrays transparent, what matches nothing left out);
  ``**`` and ``-`` exclusions are refused with a 400 rather than half emulated;
* faults on demand: per-item 429 on a fraction of items, whole-request 413 above a size, 5xx,
  a hang (timeout), down (the connection is dropped), read-only (403 ``cluster_block_exception``),
  and credentials (API key or basic auth; 401 otherwise).

`EsServer.start()` listens on 127.0.0.1:0; tests read the stored documents from the object.
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import ipaddress
import json
import random
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

_COMPAT = re.compile(r"compatible-with=(\d+)")
_NUMERIC = {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float"}


class MappingError(Exception):
    pass


def _error(status: int, etype: str, reason: str) -> web.Response:
    body = {
        "error": {"root_cause": [{"type": etype, "reason": reason}], "type": etype, "reason": reason},
        "status": status,
    }
    return web.json_response(body, status=status)


_DROPPED = object()


def filter_path(value: Any, paths: list[list[str]]) -> Any:
    """Elasticsearch's response filtering: what `paths` reach, arrays transparent, the rest left
    out (an object or array with nothing kept is itself left out); `_DROPPED` when nothing is kept."""
    if any(not p for p in paths):
        return value  # a path ends here: the whole value is kept
    if isinstance(value, list):
        kept = [k for k in (filter_path(v, paths) for v in value) if k is not _DROPPED]
        return kept if kept else _DROPPED
    if isinstance(value, dict):
        out = {}
        for key, sub in value.items():
            rest = [p[1:] for p in paths if p[0] in ("*", key) or fnmatch.fnmatchcase(key, p[0])]
            if rest:
                kept = filter_path(sub, rest)
                if kept is not _DROPPED:
                    out[key] = kept
        return out if out else _DROPPED
    return _DROPPED  # a leaf where the path goes on


def _check_date(value: Any) -> None:
    if isinstance(value, bool):
        raise MappingError("failed to parse date field")
    if isinstance(value, int | float):
        return
    if not isinstance(value, str):
        raise MappingError(f"failed to parse date field [{value!r}]")
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise MappingError(
            f"failed to parse date field [{value}] with format [strict_date_optional_time||epoch_millis]"
        ) from None


def _check_leaf(ftype: str, value: Any, path: str) -> None:
    """Raise MappingError when `value` cannot be indexed as `ftype` (ES's coercion rules, roughly)."""
    if value is None:
        return
    if isinstance(value, list) and ftype not in ("geo_point",):
        for v in value:
            _check_leaf(ftype, v, path)
        return
    if ftype in ("keyword", "text", "wildcard", "constant_keyword"):
        if isinstance(value, dict | list):
            raise MappingError(f"failed to parse field [{path}] of type [{ftype}]: an object is not a string")
    elif ftype in _NUMERIC:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise MappingError(f"failed to parse field [{path}] of type [{ftype}]")
        if isinstance(value, str):
            try:
                float(value)
            except ValueError:
                raise MappingError(
                    f'failed to parse field [{path}] of type [{ftype}]: For input string: "{value}"'
                ) from None
        if ftype in ("long", "integer", "short", "byte"):
            number = float(value)
            limit = {"long": 2**63, "integer": 2**31, "short": 2**15, "byte": 2**7}[ftype]
            if not -limit <= number < limit:
                raise MappingError(f"failed to parse field [{path}] of type [{ftype}]: out of range")
    elif ftype == "boolean":
        if value not in (True, False, "true", "false", ""):
            raise MappingError(f"failed to parse field [{path}] of type [boolean]")
    elif ftype == "date":
        try:
            _check_date(value)
        except MappingError as exc:
            raise MappingError(f"failed to parse field [{path}] of type [date]: {exc}") from None
    elif ftype == "ip":
        try:
            ipaddress.ip_address(value if isinstance(value, str) else "x")
        except ValueError:
            raise MappingError(
                f"failed to parse field [{path}] of type [ip]: '{value}' is not an IP string literal"
            ) from None
    elif ftype == "geo_point":
        ok = (
            (isinstance(value, dict) and set(value) >= {"lat", "lon"})
            or (
                isinstance(value, list) and len(value) == 2 and all(isinstance(v, int | float) for v in value)
            )
            or isinstance(value, str)
        )
        if not ok:
            raise MappingError(f"failed to parse field [{path}] of type [geo_point]")
    elif ftype == "date_range":
        if not isinstance(value, dict) or not set(value) <= {"gte", "gt", "lte", "lt"}:
            raise MappingError(f"failed to parse field [{path}] of type [date_range]")
        for v in value.values():
            _check_date(v)
    elif ftype == "flattened":
        pass
    elif ftype == "object" and not isinstance(value, dict):
        raise MappingError(
            f"object mapping for [{path}] tried to parse field [{path}] as object, but found a concrete value"
        )


def validate(doc: dict[str, Any], mapping: dict[str, Any], strict: bool, prefix: str = "") -> None:
    props = mapping.get("properties", {})
    dynamic = mapping.get("dynamic")
    if dynamic is not None:
        strict = dynamic == "strict"
    for key, value in doc.items():
        path = f"{prefix}{key}"
        spec = props.get(key)
        if spec is None:
            if strict:
                raise MappingError(
                    f"[1:1] mapping set to strict, dynamic introduction of [{key}] within"
                    f" [{prefix.rstrip('.') or '_doc'}] is not allowed"
                )
            continue
        if "properties" in spec and spec.get("type", "object") == "object":
            if value is None:
                continue
            items = value if isinstance(value, list) else [value]
            for item in items:
                if not isinstance(item, dict):
                    raise MappingError(
                        f"object mapping for [{path}] tried to parse field [{key}] as object,"
                        " but found a concrete value"
                    )
                validate(item, spec, strict, path + ".")
        else:
            _check_leaf(spec.get("type", "object"), value, path)


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = json.loads(json.dumps(value))


@dataclass
class Faults:
    down: bool = False  # drop every connection
    hang: bool = False  # never answer (the client times out)
    status: int | None = None  # answer every request with this status (5xx, 429)
    read_only: bool = False  # 403 cluster_block_exception on writes
    reject_fraction: float = 0.0  # per-item 429 on this share of bulk items
    reject_status: int = 429
    max_body_bytes: int | None = None  # 413 above this
    reject_ids: set[str] = field(default_factory=set)  # per-item 429 for these ids
    bulk_delay: float = 0.0  # seconds each _bulk takes (a kill can land mid-request)


class EsServer:
    """One fake cluster. `docs[index][id]` is the stored source; `versions` counts writes."""

    def __init__(
        self, major: int = 8, api_key: str | None = None, basic: tuple[str, str] | None = None, seed: int = 1
    ) -> None:
        self.major = major
        self.version = {8: "8.19.3", 9: "9.2.0"}.get(major, f"{major}.0.0")
        self.api_key = api_key
        self.basic = basic
        self.faults = Faults()
        self.rng = random.Random(seed)
        self.docs: dict[str, dict[str, dict[str, Any]]] = {}
        self.versions: dict[tuple[str, str], int] = {}
        self.index_mappings: dict[str, dict[str, Any]] = {}
        self.index_templates: dict[str, dict[str, Any]] = {}
        self.component_templates: dict[str, dict[str, Any]] = {}
        self.ilm_policies: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.bulk_requests = 0
        self.bulk_items = 0
        self.bulk_inflight = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    # ----- lifecycle -------------------------------------------------------------------------------

    async def start(self, port: int = 0, ssl_context: Any = None) -> str:
        app = web.Application(client_max_size=1 << 30, middlewares=[self._middleware])
        r = app.router
        r.add_get("/", self._info)
        r.add_put("/_ilm/policy/{name}", self._put_policy)
        r.add_get("/_ilm/policy/{name}", self._get_policy)
        r.add_put("/_component_template/{name}", self._put_component)
        r.add_get("/_component_template/{name}", self._get_component)
        r.add_put("/_index_template/{name}", self._put_template)
        r.add_get("/_index_template/{name}", self._get_template)
        r.add_post("/_bulk", self._bulk)
        r.add_put("/_bulk", self._bulk)
        r.add_get("/{index}/_doc/{id}", self._get_doc)
        r.add_get("/{index}/_count", self._count)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, ssl_context=ssl_context)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.port = sock.getsockname()[1]
        self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{self.port}"
        return self.url

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # ----- what tests read --------------------------------------------------------------------------

    def all_docs(self, pattern: str = "*") -> dict[tuple[str, str], dict[str, Any]]:
        return {
            (i, d): src
            for i, docs in self.docs.items()
            if fnmatch.fnmatch(i, pattern)
            for d, src in docs.items()
        }

    def ids(self, pattern: str = "*") -> list[str]:
        return [d for (_, d) in self.all_docs(pattern)]

    def max_version(self, pattern: str = "*") -> int:
        return max((v for (i, _), v in self.versions.items() if fnmatch.fnmatch(i, pattern)), default=0)

    # ----- protocol ---------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        if self.faults.down:
            assert request.transport is not None
            request.transport.abort()
            raise ConnectionResetError("down")
        if self.faults.hang:
            # Never answers while hanging (the client times out); released when told or stopped.
            while self.faults.hang and self._runner is not None:  # noqa: ASYNC110 - polled on purpose
                await asyncio.sleep(0.05)
            assert request.transport is not None
            request.transport.abort()
            raise ConnectionResetError("hung")
        response = await self._checked(request, handler)
        response.headers["X-Elastic-Product"] = "Elasticsearch"
        return response

    async def _checked(self, request: web.Request, handler: Any) -> web.StreamResponse:
        for header in ("Accept", "Content-Type"):
            value = request.headers.get(header, "")
            match = _COMPAT.search(value)
            if match and int(match.group(1)) not in (self.major, self.major - 1):
                return _error(
                    400,
                    "media_type_header_exception",
                    f"Invalid media-type value on headers [{header}]: A compatible version is "
                    f"required on both Content-Type and Accept headers if either one has "
                    f"requested a compatible version and the compatible versions must match. "
                    f"Accept={request.headers.get('Accept')}, Content-Type={request.headers.get('Content-Type')}",
                )
        if not self._authorised(request):
            response = _error(
                401,
                "security_exception",
                "unable to authenticate user for REST request [" + request.path + "]",
            )
            response.headers["WWW-Authenticate"] = 'Basic realm="security", ApiKey'
            return response
        if self.faults.status is not None:
            return _error(
                self.faults.status,
                "es_rejected_execution_exception"
                if self.faults.status == 429
                else "unavailable_shards_exception",
                "injected failure",
            )
        if (
            self.faults.max_body_bytes is not None
            and request.content_length is not None
            and request.content_length > self.faults.max_body_bytes
        ):
            await request.read()
            return web.Response(status=413, text="")
        if self.faults.read_only and request.method in ("PUT", "POST") and request.path != "/":
            return _error(
                403, "cluster_block_exception", "blocked by: [FORBIDDEN/6/cluster read-only (api)];"
            )
        return await handler(request)

    def _authorised(self, request: web.Request) -> bool:
        if self.api_key is None and self.basic is None:
            return True
        auth = request.headers.get("Authorization", "")
        if self.api_key is not None and auth == f"ApiKey {self.api_key}":
            return True
        if self.basic is not None and auth.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return False
            return (user, pw) == self.basic
        return False

    def _json(self, body: Any, status: int = 200) -> web.Response:
        ctype = f"application/vnd.elasticsearch+json;compatible-with={self.major}"
        return web.Response(
            status=status, body=json.dumps(body).encode(), content_type=None, headers={"Content-Type": ctype}
        )

    async def _info(self, request: web.Request) -> web.Response:
        return self._json(
            {
                "name": "esserver",
                "cluster_name": "test",
                "cluster_uuid": "x",
                "version": {
                    "number": self.version,
                    "build_flavor": "default",
                    "minimum_wire_compatibility_version": f"{self.major - 1}.0.0",
                },
                "tagline": "You Know, for Search",
            }
        )

    async def _body(self, request: web.Request) -> dict[str, Any] | web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(400, "x_content_parse_exception", "failed to parse request body")
        if not isinstance(body, dict):
            return _error(400, "parse_exception", "request body must be an object")
        return body

    async def _put_policy(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        if "policy" not in body or "phases" not in body["policy"]:
            return _error(400, "x_content_parse_exception", "[put_lifecycle_request] policy is required")
        self.ilm_policies[request.match_info["name"]] = body["policy"]
        return self._json({"acknowledged": True})

    async def _get_policy(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.ilm_policies:
            return _error(404, "resource_not_found_exception", f"Lifecycle policy not found: {name}")
        return self._json({name: {"version": 1, "policy": self.ilm_policies[name]}})

    async def _put_component(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        if "template" not in body:
            return _error(400, "x_content_parse_exception", "[template] is required")
        self.component_templates[request.match_info["name"]] = body
        return self._json({"acknowledged": True})

    async def _get_component(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.component_templates:
            return _error(
                404, "resource_not_found_exception", f"component template matching [{name}] not found"
            )
        return self._json(
            {"component_templates": [{"name": name, "component_template": self.component_templates[name]}]}
        )

    async def _put_template(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        missing = [c for c in body.get("composed_of", []) if c not in self.component_templates]
        if missing:
            return _error(
                400,
                "invalid_index_template_exception",
                f"index_template [{request.match_info['name']}] invalid, cause [component templates {missing}"
                " that do not exist]",
            )
        if not body.get("index_patterns"):
            return _error(400, "action_request_validation_exception", "index patterns are missing")
        self.index_templates[request.match_info["name"]] = body
        return self._json({"acknowledged": True})

    async def _get_template(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.index_templates:
            return _error(404, "resource_not_found_exception", f"index template matching [{name}] not found")
        return self._json({"index_templates": [{"name": name, "index_template": self.index_templates[name]}]})

    def _mapping_for(self, index: str) -> dict[str, Any]:
        if index in self.index_mappings:
            return self.index_mappings[index]
        best: tuple[int, dict[str, Any]] | None = None
        for body in self.index_templates.values():
            matches = any(fnmatch.fnmatch(index, p) for p in body["index_patterns"])
            if matches and (best is None or body.get("priority", 0) > best[0]):
                best = (body.get("priority", 0), body)
        mapping: dict[str, Any] = {}
        if best is not None:
            for comp in best[1].get("composed_of", []):
                _merge(mapping, self.component_templates[comp].get("template", {}).get("mappings", {}))
            _merge(mapping, best[1].get("template", {}).get("mappings", {}))
        self.index_mappings[index] = mapping
        return mapping

    async def _bulk(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.bulk_requests += 1
        self.bulk_inflight += 1
        filters = request.query.get("filter_path")
        if filters is not None and ("**" in filters or any(p.startswith("-") for p in filters.split(","))):
            return _error(
                400, "illegal_argument_exception", "the test server does not emulate ** or - in filter_path"
            )
        try:
            if self.faults.bulk_delay:
                await asyncio.sleep(self.faults.bulk_delay)
            return self._bulk_body(raw, filters)
        finally:
            self.bulk_inflight -= 1

    def _bulk_body(self, raw: bytes, filters: str | None = None) -> web.Response:
        if not raw.endswith(b"\n"):
            return _error(
                400, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]"
            )
        lines = raw.split(b"\n")[:-1]
        items: list[dict[str, Any]] = []
        errors = False
        i = 0
        while i < len(lines):
            try:
                action = json.loads(lines[i])
            except ValueError:
                return _error(400, "x_content_parse_exception", f"[{i + 1}:1] malformed action/metadata line")
            if not isinstance(action, dict) or len(action) != 1:
                return _error(400, "illegal_argument_exception", f"Malformed action/metadata line [{i + 1}]")
            ((op, meta),) = action.items()
            if op not in ("index", "create", "delete", "update") or not isinstance(meta, dict):
                return _error(
                    400,
                    "illegal_argument_exception",
                    f"Malformed action/metadata line [{i + 1}], expected a simple value for field [{op}]",
                )
            index = meta.get("_index")
            if not index:
                return _error(
                    400, "action_request_validation_exception", "Validation Failed: 1: index is missing;"
                )
            doc_id = meta.get("_id")
            i += 1
            source = None
            if op != "delete":
                if i >= len(lines):
                    return _error(
                        400,
                        "illegal_argument_exception",
                        "The bulk request must be terminated by a newline [\\n]",
                    )
                try:
                    source = json.loads(lines[i])
                except ValueError:
                    return _error(400, "x_content_parse_exception", f"[{i + 1}:1] failed to parse source")
                i += 1
            self.bulk_items += 1
            item = self._apply(op, index, doc_id, source)
            errors = errors or item["status"] >= 300
            items.append({op: item})
        answer: dict[str, Any] = {"took": 1, "errors": errors, "items": items}
        if filters is not None:
            kept = filter_path(answer, [p.split(".") for p in filters.split(",") if p])
            answer = kept if isinstance(kept, dict) else {}
        return self._json(answer)

    def _apply(self, op: str, index: str, doc_id: str | None, source: Any) -> dict[str, Any]:
        base = {"_index": index, "_id": doc_id}
        f = self.faults
        if (doc_id in f.reject_ids) or (f.reject_fraction and self.rng.random() < f.reject_fraction):
            return {
                **base,
                "status": f.reject_status,
                "error": {
                    "type": "es_rejected_execution_exception",
                    "reason": "rejected execution of coordinating operation",
                },
            }
        if op == "delete":
            existed = self.docs.get(index, {}).pop(doc_id or "", None)
            return {
                **base,
                "status": 200 if existed else 404,
                "result": "deleted" if existed else "not_found",
            }
        if not isinstance(source, dict):
            return {
                **base,
                "status": 400,
                "error": {"type": "mapper_parsing_exception", "reason": "failed to parse"},
            }
        mapping = self._mapping_for(index)
        try:
            validate(source, mapping, strict=False)
        except MappingError as exc:
            return {
                **base,
                "status": 400,
                "error": {
                    "type": "mapper_parsing_exception",
                    "reason": str(exc),
                    "caused_by": {"type": "illegal_argument_exception", "reason": str(exc)},
                },
            }
        if doc_id is None:
            doc_id = f"auto-{self.bulk_items}"
            base["_id"] = doc_id
        store = self.docs.setdefault(index, {})
        if op == "create" and doc_id in store:
            return {
                **base,
                "status": 409,
                "error": {
                    "type": "version_conflict_engine_exception",
                    "reason": f"[{doc_id}]: version conflict, document already exists",
                },
            }
        created = doc_id not in store
        store[doc_id] = source
        version = self.versions.get((index, doc_id), 0) + 1
        self.versions[(index, doc_id)] = version
        return {
            **base,
            "_version": version,
            "result": "created" if created else "updated",
            "_shards": {"total": 1, "successful": 1, "failed": 0},
            "_seq_no": version - 1,
            "_primary_term": 1,
            "status": 201 if created else 200,
        }

    async def _get_doc(self, request: web.Request) -> web.Response:
        index, doc_id = request.match_info["index"], request.match_info["id"]
        source = self.docs.get(index, {}).get(doc_id)
        if source is None:
            return self._json({"_index": index, "_id": doc_id, "found": False}, 404)
        return self._json(
            {
                "_index": index,
                "_id": doc_id,
                "found": True,
                "_source": source,
                "_version": self.versions[(index, doc_id)],
            }
        )

    async def _count(self, request: web.Request) -> web.Response:
        pattern = request.match_info["index"]
        return self._json({"count": len(self.all_docs(pattern))})
