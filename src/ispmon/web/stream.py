"""``GET /events``: the dashboard's Server-Sent Events stream (see `web.hub`).

Authenticated like any API read (the page sends its token in the Authorization header through
fetch, since EventSource cannot). The stream holds no admission place (`api.admission`): it waits
for the hub, not for the CPU, and would otherwise keep one of the API's few places for hours.
"""

from __future__ import annotations

from aiohttp import web

from ispmon.api.problem import ApiError
from ispmon.web.hub import EventHub

HUB: web.AppKey[EventHub] = web.AppKey("ispmon_dashboard_hub")
PATH = "/events"


async def events(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    client = hub.connect()
    if client is None:
        raise ApiError.on(
            503, "(request)", f"{hub.max_clients} dashboard streams are open already", headers={"Retry-After": "5"}
        )
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx in front: do not buffer the stream
        }
    )
    try:
        await response.prepare(request)
        # The client reloads the grid on (re)connect; "retry" is how long the browser waits first.
        await response.write(b"retry: 2000\nevent: hello\ndata: {}\n\n")
        while not (client.dropped or client.closed):
            await client.wake.wait()
            client.wake.clear()
            while client.queue and not client.closed:
                await response.write(client.queue.popleft())
        return response
    except ConnectionError:  # the page went away
        return response
    finally:
        hub.disconnect(client)


async def _start(app: web.Application) -> None:
    app[HUB].start()


async def _stop(app: web.Application) -> None:
    await app[HUB].close()


def register(app: web.Application, hub: EventHub) -> None:
    app[HUB] = hub
    app.on_startup.append(_start)
    app.on_shutdown.append(_stop)
    app.router.add_get(PATH, events)
