"""The dashboard's files: ``/`` (index.html) and ``/static/...`` (its JS, CSS and the vendored
uPlot), read from this package once and served from memory with an ETag.

They hold no data and no secret, so they are open without a token (`api.auth.PUBLIC_PATHS`): the
page itself asks for the token the API needs, and keeps it in the browser's session storage.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

STATIC_PREFIX = "/static/"
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".txt": "text/plain"}
# Not fingerprinted names: a browser keeps them a few minutes and revalidates with the ETag.
_CACHE_CONTROL = "public, max-age=300"


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    gzipped: bytes
    content_type: str
    etag: str


def load_files() -> dict[str, StaticFile]:
    """Every file under web/static, by its URL path under /static/ (e.g. ``app.js``)."""
    out: dict[str, StaticFile] = {}
    root = resources.files("ispmon.web") / "static"

    def walk(node: resources.abc.Traversable, prefix: str) -> None:
        for item in node.iterdir():
            name = prefix + item.name
            if item.is_dir():
                walk(item, name + "/")
                continue
            suffix = name[name.rfind(".") :] if "." in item.name else ""
            kind = _TYPES.get(suffix, "text/plain" if item.name == "LICENSE" else "application/octet-stream")
            body = item.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:24] + '"'
            out[name] = StaticFile(body, gzip.compress(body, 9, mtime=0), kind, etag)

    walk(root, "")
    return out


FILES: web.AppKey[dict[str, StaticFile]] = web.AppKey("ispmon_web_files")


def _serve(request: web.Request, file: StaticFile) -> web.Response:
    headers = {"ETag": file.etag, "Cache-Control": _CACHE_CONTROL, "Vary": "Accept-Encoding"}
    if file.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    body = file.body
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        body = file.gzipped
        headers["Content-Encoding"] = "gzip"
    charset = "utf-8" if file.content_type.startswith("text/") else None
    return web.Response(body=body, headers=headers, content_type=file.content_type, charset=charset)


async def index(request: web.Request) -> web.Response:
    return _serve(request, request.app[FILES]["index.html"])


async def static(request: web.Request) -> web.Response:
    file = request.app[FILES].get(request.match_info["path"])
    if file is None:
        raise web.HTTPNotFound()
    return _serve(request, file)


def register(app: web.Application) -> None:
    app[FILES] = load_files()
    app.router.add_get("/", index, allow_head=True)
    app.router.add_get(STATIC_PREFIX + "{path:.+}", static, allow_head=True)
