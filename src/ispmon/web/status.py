"""The public status page, ``/status`` and ``/status/{group}``: server-rendered HTML (works
without JavaScript), open without a token (`api.auth.PUBLIC_PATHS`), cacheable.

A page is rendered at most once per `TTL` seconds per group and served from memory in between,
so a flood of visitors costs no database work; it carries a strong ETag (a hash of the body) and
``Cache-Control: public, max-age=TTL``, and a matching ``If-None-Match`` is a 304.
"""

from __future__ import annotations

import hashlib
import html
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from aiohttp import web

from ispmon.api.keys import SERVICES
from ispmon.availability.slugs import SLUG_RE
from ispmon.models import Status
from ispmon.web.status_data import PublicEndpoint, StatusData, load

TTL = 10.0
_LABEL = {
    Status.UP: "Operational",
    Status.DEGRADED: "Degraded performance",
    Status.DOWN: "Outage",
    Status.MAINTENANCE: "Under maintenance",
    Status.UNKNOWN: "No data",
}
_CSS = """
body{font:15px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d232b}
main{max-width:900px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 16px}h2{font-size:17px;margin:28px 0 8px;text-transform:capitalize}
.banner{padding:14px 18px;border-radius:6px;color:#fff;font-weight:600}
.b-up{background:#2f9e44}.b-degraded{background:#e8a317}.b-down{background:#d9480f}.b-maintenance{background:#4263eb}
.svc{background:#fff;border:1px solid #e1e4e8;border-radius:6px;padding:10px 14px;margin:6px 0}
.row{display:flex;justify-content:space-between}.st{font-weight:600}
.s-up{color:#2f9e44}.s-degraded{color:#c77c02}.s-down{color:#d9480f}.s-maintenance{color:#4263eb}.s-unknown{color:#868e96}
.bars{display:flex;gap:1px;height:26px;margin-top:6px}.bars i{flex:1;border-radius:1px}
.d-ok{background:#40c057}.d-minor{background:#fab005}.d-major{background:#fa5252}.d-none{background:#dee2e6}
.axis{display:flex;justify-content:space-between;color:#868e96;font-size:12px}
.inc{background:#fff4e6;border:1px solid #ffd8a8;border-radius:6px;padding:10px 14px;margin:6px 0}
footer{color:#868e96;font-size:12px;margin-top:24px}
"""


@dataclass
class _Cached:
    expires: float
    body: bytes
    etag: str
    status: int


CACHE: web.AppKey[dict[str, _Cached]] = web.AppKey("ispmon_status_cache")


def _day_class(uptime: float | None) -> str:
    if uptime is None:
        return "d-none"
    if uptime >= 99.9:
        return "d-ok"
    return "d-minor" if uptime >= 99.0 else "d-major"


def _overall(endpoints: list[PublicEndpoint]) -> tuple[str, str]:
    statuses = {e.status for e in endpoints}
    if Status.DOWN in statuses:
        return "down", "Some systems are down"
    if Status.DEGRADED in statuses:
        return "degraded", "Some systems have degraded performance"
    if Status.MAINTENANCE in statuses:
        return "maintenance", "Maintenance in progress"
    return "up", "All systems operational"


def _endpoint_html(e: PublicEndpoint, first_day: datetime) -> str:
    bars = []
    for i, day in enumerate(e.days):
        date = (first_day + timedelta(days=i)).date().isoformat()
        text = "no data" if day is None else f"{day:.2f} %"
        bars.append(f'<i class="{_day_class(day)}" title="{date}: {text}"></i>')
    uptime = "–" if e.uptime is None else f"{e.uptime:.2f} % uptime"
    return (
        f'<div class="svc"><div class="row"><span class="name">{html.escape(e.name)}</span>'
        f'<span class="st s-{e.status.value}">{_LABEL[e.status]}</span></div>'
        f'<div class="bars">{"".join(bars)}</div>'
        f'<div class="axis"><span>90 days ago</span><span>{uptime}</span><span>today</span></div></div>'
    )


def render(data: StatusData, group: str | None, title: str = "Service status") -> str:
    """The page's HTML for every group (`group` None) or one."""
    shown = [e for e in data.endpoints if group is None or e.group == group]
    kind, text = _overall(shown)
    parts = [
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<style>{_CSS}</style></head><body><main>",
        f"<h1>{html.escape(title)}{' – ' + html.escape(group) if group else ''}</h1>",
        f'<div class="banner b-{kind}" id="overall">{text}</div>',
    ]
    names = {e.name for e in shown}
    incidents = [i for i in data.incidents if i.name in names]
    if incidents:
        parts.append('<h2>Current incidents</h2><div id="incidents">')
        for inc in incidents:
            what = "Outage" if inc.status == "down" else "Degraded performance"
            parts.append(
                f'<div class="inc"><b>{html.escape(inc.name)}</b>: {what} '
                f"(severity {html.escape(inc.severity)}) since "
                f'<time datetime="{inc.started_at.isoformat()}">{inc.started_at:%Y-%m-%d %H:%M} UTC</time></div>'
            )
        parts.append("</div>")
    current = None
    for e in shown:
        if e.group != current:
            if current is not None:
                parts.append("</section>")
            current = e.group
            parts.append(f'<section class="group" data-group="{html.escape(e.group)}">')
            parts.append(f"<h2>{html.escape(e.group.replace('-', ' ').replace('_', ' '))}</h2>")
        parts.append(_endpoint_html(e, data.first_day))
    if current is not None:
        parts.append("</section>")
    if not shown:
        parts.append("<p>No services are listed here.</p>")
    parts.append(f"<footer>Updated {data.generated_at:%Y-%m-%d %H:%M:%S} UTC</footer></main></body></html>")
    return "".join(parts)


async def _page(request: web.Request, group: str | None) -> web.Response:
    cache = request.app[CACHE]
    key = group or ""
    entry = cache.get(key)
    now = time.monotonic()
    if entry is None or entry.expires <= now:
        services = request.app[SERVICES]
        data = await load(services.db.pool, services.monitor)
        status = 200
        if group is not None and not any(e.group == group for e in data.endpoints):
            status = 404
        body = render(data, group).encode("utf-8")
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        entry = cache[key] = _Cached(now + TTL, body, etag, status)
        # Bounded: a visitor walking made-up group names leaves at most the 404s of one TTL.
        for stale in [k for k, v in cache.items() if v.expires <= now]:
            del cache[stale]
    headers = {"ETag": entry.etag, "Cache-Control": f"public, max-age={int(TTL)}"}
    if entry.status == 200 and entry.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(
        body=entry.body, status=entry.status, content_type="text/html", charset="utf-8", headers=headers
    )


async def status_all(request: web.Request) -> web.Response:
    return await _page(request, None)


async def status_group(request: web.Request) -> web.Response:
    group = request.match_info["group"]
    if not SLUG_RE.fullmatch(group):
        raise web.HTTPNotFound(text="no such group", content_type="text/plain")
    return await _page(request, group)


def register(app: web.Application) -> None:
    app[CACHE] = {}
    app.router.add_get("/status", status_all, allow_head=True)
    app.router.add_get("/status/{group}", status_group, allow_head=True)
