"""A strict local stand-in for Kibana's saved-objects import API (no Kibana is installable here).

It checks what Kibana 8.14 checks on `POST [/s/<space>]/api/saved_objects/_import` and answers as
Kibana does:

- the `kbn-xsrf` header (400 "Request must contain a kbn-xsrf header."), credentials (401), the
  space (404), a multipart body whose field is `file` with a `.ndjson` name (400 / 415);
- every line is JSON (400), objects are unique by type and id (400 "Non-unique import objects
  detected"), the overwrite/createNewCopies query;
- per object: a known type (`unsupported_type`), a `typeMigrationVersion` / `coreMigrationVersion`
  this Kibana knows (newer ones fail as Kibana's migrator fails them), references that resolve in
  the file or among the space's stored objects (`missing_references`), an existing id without
  overwrite (`conflict`);
- the 200 answer `{success, successCount, successResults, errors?, warnings}`.

Objects that pass are stored per space, so a test can look at what was imported.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

# The model versions of a Kibana 8.14 (FIELD-NOTES: what its export writes).
KIBANA_VERSION = (8, 14, 0)
TYPE_VERSIONS = {
    "dashboard": "10.2.0",
    "visualization": "8.5.0",
    "index-pattern": "8.0.0",
    "search": "10.3.0",
}
KNOWN_TYPES = set(TYPE_VERSIONS) | {"lens", "map", "tag", "config"}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def _error(status: int, message: str) -> web.Response:
    names = {
        400: "Bad Request",
        401: "Unauthorized",
        404: "Not Found",
        415: "Unsupported Media Type",
        500: "Internal Server Error",
    }
    return web.json_response(
        {"statusCode": status, "error": names[status], "message": message}, status=status
    )


@dataclass
class KibanaStandIn:
    api_key: str | None = None
    user: str | None = None
    password: str | None = None
    spaces: set[str] = field(default_factory=lambda: {"default"})
    stored: dict[str, dict[tuple[str, str], dict[str, Any]]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    # Answer 500 (as Kibana does when Elasticsearch behind it fails) from this many imports on.
    fail_from: int | None = None
    # What Kibana adds to `warnings` (e.g. an action_required after importing some types).
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/api/saved_objects/_import", self.handle)
        app.router.add_route("*", "/s/{space}/api/saved_objects/_import", self.handle)
        return app

    def _authorised(self, request: web.Request) -> bool:
        if self.api_key is None and self.user is None:
            return True
        header = request.headers.get("Authorization", "")
        if self.api_key is not None and header == f"ApiKey {self.api_key}":
            return True
        if self.user is not None and header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return False
            return (user, password) == (self.user, self.password)
        return False

    async def handle(self, request: web.Request) -> web.Response:
        space = request.match_info.get("space", "default")
        self.requests.append({"space": space, "query": dict(request.query), "headers": dict(request.headers)})
        if request.method != "POST":
            return _error(404, "Not Found")
        if "kbn-xsrf" not in request.headers:
            return _error(400, "Request must contain a kbn-xsrf header.")
        if not self._authorised(request):
            return _error(401, "[security_exception]: unable to authenticate user")
        if self.fail_from is not None and len(self.requests) > self.fail_from:
            return _error(500, "An internal server error occurred.")
        if space not in self.spaces:
            return _error(404, f"Saved object [space/{space}] not found")
        overwrite = request.query.get("overwrite") == "true"
        if overwrite and request.query.get("createNewCopies") == "true":
            return _error(400, "[request query]: cannot use [overwrite] with [createNewCopies]")
        if not request.content_type.startswith("multipart/form-data"):
            return _error(415, "Unsupported Media Type")
        reader = await request.multipart()
        data: bytes | None = None
        filename = ""
        async for part in reader:
            if getattr(part, "name", None) == "file":
                filename = getattr(part, "filename", None) or ""
                data = await part.read()  # type: ignore[union-attr]
        if data is None:
            return _error(400, "[request body.file]: expected value of type [Stream] but got [undefined]")
        if not filename.endswith(".ndjson"):
            return _error(400, f"Invalid file extension {filename[filename.rfind('.') :] or filename!r}")
        objects: list[dict[str, Any]] = []
        for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                return _error(400, f"Unexpected token in JSON at line {number}: {exc}")
            if isinstance(obj, dict) and "exportedCount" in obj and "type" not in obj:
                continue  # an export's trailing summary line
            objects.append(obj)
        keys = [(o.get("type"), o.get("id")) for o in objects]
        duplicates = sorted({f"{t}:{i}" for t, i in keys if keys.count((t, i)) > 1})
        if duplicates:
            return _error(400, f"Non-unique import objects detected: [{','.join(duplicates)}]")
        return web.json_response(self._import(space, objects, overwrite))

    def _import(self, space: str, objects: list[dict[str, Any]], overwrite: bool) -> dict[str, Any]:
        store = self.stored.setdefault(space, {})
        in_file = {(o.get("type"), o.get("id")) for o in objects}
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for obj in objects:
            kind, oid = obj.get("type"), obj.get("id")
            title = (obj.get("attributes") or {}).get("title")
            base = {"id": oid, "type": kind, "meta": {"title": title}}
            error = self._object_error(obj, kind, in_file, store, overwrite)
            if error is not None:
                errors.append({**base, "title": title, "error": error})
                continue
            existed = (kind, oid) in store
            store[(kind, oid)] = obj
            results.append({**base, **({"overwrite": True} if existed else {})})
        answer: dict[str, Any] = {
            "success": not errors,
            "successCount": len(results),
            "successResults": results,
            "warnings": list(self.warnings),
        }
        if errors:
            answer["errors"] = errors
        return answer

    def _object_error(
        self,
        obj: dict[str, Any],
        kind: Any,
        in_file: set[tuple[Any, Any]],
        store: dict[tuple[str, str], dict[str, Any]],
        overwrite: bool,
    ) -> dict[str, Any] | None:
        if kind not in KNOWN_TYPES:
            return {"type": "unsupported_type"}
        oid = obj.get("id")
        if not isinstance(oid, str) or not oid or not isinstance(obj.get("attributes"), dict):
            return {"type": "unknown", "statusCode": 400, "message": "object without an id or attributes"}
        type_version = obj.get("typeMigrationVersion")
        known = TYPE_VERSIONS.get(kind)
        if type_version and known and _version(type_version) > _version(known):
            return {
                "type": "unknown",
                "statusCode": 400,
                "message": f'Document "{oid}" belongs to a more recent version of Kibana [{type_version}] '
                f"when the last known version is [{known}].",
            }
        core = obj.get("coreMigrationVersion")
        if core and _version(core) > KIBANA_VERSION:
            return {
                "type": "unknown",
                "statusCode": 400,
                "message": f'Document "{oid}" has a coreMigrationVersion [{core}] newer than this Kibana.',
            }
        missing = [
            {"type": r.get("type"), "id": r.get("id")}
            for r in obj.get("references") or []
            if (r.get("type"), r.get("id")) not in in_file and (r.get("type"), r.get("id")) not in store
        ]
        if missing:
            return {"type": "missing_references", "references": missing}
        if (kind, oid) in store and not overwrite:
            return {"type": "conflict", "destinationId": oid}
        return None
