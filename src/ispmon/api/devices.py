"""``/devices/``, ``/interfaces/`` and ``/network/summary``: SNMP devices, their interfaces and samples.

Thin handlers over `NetworkService`; definitions are validated by `DeviceSpec`, and communities
and keys are never returned (REDACTED, which a PUT may send back to keep them).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ispmon.api.errors import json_response, list_response
from ispmon.api.listing import list_page, list_params
from ispmon.api.responses import DEVICE
from ispmon.api.responses_series import INTERFACE_METRICS, INTERFACE_PERCENTILE
from ispmon.api.responses_views import DEVICE_POLL, INTERFACE, NETWORK_EVENT, NETWORK_SUMMARY
from ispmon.api.routing import check_time_range
from ispmon.api.spec import Body, Call, Param, PathParam, Route
from ispmon.network.devices import DeviceSpec
from ispmon.store.devices import DEVICE_LIST
from ispmon.store.interfaces import DEVICE_EVENT_LIST, NETWORK_EVENT_LIST

TAG = "network"
DEVICE_ID = PathParam("device_id", "slug", "Device id (a slug)")
INTERFACE_ID = PathParam("interface_id", "integer", "Interface id (from GET /devices/{device_id}/interfaces)")
DEVICE_BODY = Body("DeviceSpec", DeviceSpec, filled=frozenset({"id"}))
DEVICE_UPDATE = Body("DeviceUpdate", DeviceSpec, partial=True)


async def list_devices(call: Call) -> web.Response:
    async def devices(**query: Any) -> list[dict[str, Any]]:
        return await call.services.network.list_devices(**query)

    return await list_page(call, DEVICE_LIST, devices)


async def create_device(call: Call) -> web.Response:
    assert call.body is not None
    item = await call.services.network.create_device(call.body)
    return json_response(item, status=201, headers={"Location": f"/devices/{item['id']}"})


async def get_device(call: Call) -> web.Response:
    return json_response(await call.services.network.get_device(call.path["device_id"]))


async def update_device(call: Call) -> web.Response:
    assert call.body is not None
    return json_response(await call.services.network.update_device(call.path["device_id"], call.body))


async def delete_device(call: Call) -> web.Response:
    await call.services.network.delete_device(call.path["device_id"])
    return web.Response(status=204)


async def poll_device(call: Call) -> web.Response:
    return json_response(await call.services.network.poll_device(call.path["device_id"]))


async def device_interfaces(call: Call) -> web.Response:
    items = await call.services.network.list_interfaces(call.path["device_id"])
    return list_response(items)


async def get_interface(call: Call) -> web.Response:
    return json_response(await call.services.network.get_interface(call.path["interface_id"]))


async def interface_metrics(call: Call) -> web.Response:
    check_time_range(call.query)
    return json_response(await call.services.network.interface_metrics(call.path["interface_id"], **call.query))


async def interface_percentile(call: Call) -> web.Response:
    check_time_range(call.query)
    return json_response(await call.services.network.interface_percentile(call.path["interface_id"], **call.query))


async def network_events(call: Call) -> web.Response:
    async def fetch(**query: Any) -> list[dict[str, Any]]:
        return await call.services.network.list_events(NETWORK_EVENT_LIST, **query)

    return await list_page(call, NETWORK_EVENT_LIST, fetch)


async def device_events(call: Call) -> web.Response:
    device_id = call.path["device_id"]

    async def fetch(**query: Any) -> list[dict[str, Any]]:
        return await call.services.network.list_events(DEVICE_EVENT_LIST, device_id=device_id, **query)

    return await list_page(call, DEVICE_EVENT_LIST, fetch)


async def network_summary(call: Call) -> web.Response:
    return json_response(await call.services.network.summary(**call.query))


ROUTES: tuple[Route, ...] = (
    Route(
        "GET", "/devices/", list_devices, "listDevices", "List SNMP devices", TAG,
        query=list_params(DEVICE_LIST), response="page", response_schema=DEVICE, also_without_slash=True,
    ),
    Route(
        "POST", "/devices/", create_device, "createDevice", "Create an SNMP device", TAG,
        body=DEVICE_BODY, status=201, errors=(409,), response_schema=DEVICE, also_without_slash=True,
    ),
    Route(
        "GET", "/devices/{device_id}", get_device, "getDevice", "Get a device", TAG, path_params=(DEVICE_ID,),
        response_schema=DEVICE,
    ),
    Route(
        "PUT", "/devices/{device_id}", update_device, "updateDevice",
        "Update a device (partial: given fields replace stored ones; '[redacted]' keeps a secret)", TAG,
        path_params=(DEVICE_ID,), body=DEVICE_UPDATE, errors=(409,), response_schema=DEVICE,
    ),
    Route(
        "DELETE", "/devices/{device_id}", delete_device, "deleteDevice", "Delete a device", TAG,
        path_params=(DEVICE_ID,), status=204, errors=(409,), response="none",
    ),
    Route(
        "POST", "/devices/{device_id}/poll", poll_device, "pollDevice",
        "Poll the device now and return what was read", TAG, path_params=(DEVICE_ID,),
        response_schema=DEVICE_POLL, waits_on_target=True,
    ),
    Route(
        "GET", "/devices/{device_id}/interfaces", device_interfaces, "deviceInterfaces",
        "The device's interfaces (ifName, ifDescr, ifAlias, speed, statuses, last sample)", TAG,
        path_params=(DEVICE_ID,), response="list", response_schema=INTERFACE,
    ),
    Route(
        "GET", "/interfaces/{interface_id}", get_interface, "getInterface",
        "An interface: statuses, speed, last rates", TAG, path_params=(INTERFACE_ID,),
        response_schema=INTERFACE,
    ),
    Route(
        "GET", "/interfaces/{interface_id}/metrics", interface_metrics, "interfaceMetrics",
        "Samples of an interface in [since, until), oldest first (default: the last hour)", TAG,
        path_params=(INTERFACE_ID,),
        query=(
            Param("since", "date-time", "Start (inclusive); default: an hour before until"),
            Param("until", "date-time", "End (exclusive); default: now"),
            Param("step", "string", "raw samples, or the 5m / 1h / 1d rollup (any other value: 400)", default="raw",
                  enum=("raw", "5m", "1h", "1d")),
            Param("limit", "integer", "At most this many samples", default=10_000, minimum=1, maximum=100_000),
        ),
        response_schema=INTERFACE_METRICS,
    ),
    Route(
        "GET", "/interfaces/{interface_id}/percentile", interface_percentile, "interfacePercentile",
        "The Nth percentile of the interface's 5-minute rates in, out and max(in, out) (95th by default),"
        " from the finest data kept for each part of the range (raw, then 5m / 1h / 1d rollups)", TAG,
        path_params=(INTERFACE_ID,),
        query=(
            Param("since", "date-time", "Start (inclusive); default: 30 days before until"),
            Param("until", "date-time", "End (exclusive); default: now"),
            Param("percentile", "number", "Which percentile", default=95.0, minimum=0, exclusive_minimum=True,
                  maximum=100),
            Param("bucket", "integer", "Seconds averaged before ranking (300: 5 minutes)", default=300,
                  minimum=1, maximum=86400),
        ),
        response_schema=INTERFACE_PERCENTILE,
    ),
    Route(
        "GET", "/network/events", network_events, "networkEvents",
        "Device and interface state changes (interface_down / up, device_unreachable / reachable), newest first",
        TAG, query=list_params(NETWORK_EVENT_LIST), response="page", response_schema=NETWORK_EVENT,
    ),
    Route(
        "GET", "/devices/{device_id}/events", device_events, "deviceEvents",
        "The device's state changes and its interfaces', newest first", TAG,
        path_params=(DEVICE_ID,), query=list_params(DEVICE_EVENT_LIST), response="page",
        response_schema=NETWORK_EVENT,
    ),
    Route(
        "GET", "/network/summary", network_summary, "networkSummary",
        "Devices up and unreachable, interfaces down, the most utilised interfaces", TAG,
        query=(Param("top", "integer", "How many of the most utilised interfaces", default=10, minimum=1,
                     maximum=1000),),
        response_schema=NETWORK_SUMMARY,
    ),
)
