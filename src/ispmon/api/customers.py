"""``/customers/``: subscribers, their bulk upsert, their sessions and their usage.

Thin handlers over `CustomerService` and `UsageService`. ``POST /customers/bulk`` takes
``{"customers": [...]}`` with tens of thousands of items (its own body limit, `BULK_MAX_BYTES`)
and writes them in one transaction, or none when any item is invalid.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from ispmon.api.errors import json_response
from ispmon.api.listing import list_page, list_params
from ispmon.api.responses import BULK_CUSTOMERS, CUSTOMER
from ispmon.api.responses_series import CUSTOMER_USAGE, USAGE_SUMMARY
from ispmon.api.responses_views import ENFORCEMENT, SESSION
from ispmon.api.spec import Body, Call, Param, PathParam, Route
from ispmon.services.errors import InvalidInput
from ispmon.store.usage_customers import CUSTOMER_LIST
from ispmon.store.usage_enforcements import CUSTOMER_ENFORCEMENTS
from ispmon.store.usage_sessions import CUSTOMER_SESSIONS, STEPS
from ispmon.usage.customers import CustomerSpec

TAG = "customers"
CUSTOMER_ID = PathParam("customer_id", "slug", "Customer id (a slug)")
# A customer is a few hundred bytes: 64 MiB holds about 100,000 of them with identities.
BULK_MAX_BYTES = 64 * 1024 * 1024


class BulkCustomers(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customers: list[CustomerSpec]


async def list_customers(call: Call) -> web.Response:
    return await list_page(call, CUSTOMER_LIST, call.services.customers.list_customers)


async def create_customer(call: Call) -> web.Response:
    assert call.body is not None
    item = await call.services.customers.create_customer(call.body)
    return json_response(item, status=201, headers={"Location": f"/customers/{item['id']}"})


async def bulk_customers(call: Call) -> web.Response:
    assert call.body is not None
    unknown = sorted(set(call.body) - {"customers"})
    if unknown:
        raise InvalidInput([{"field": unknown[0][:100], "message": "unknown field"}])
    if "customers" not in call.body:
        raise InvalidInput([{"field": "customers", "message": "is required"}])
    return json_response(await call.services.customers.bulk_upsert(call.body["customers"]))


async def get_customer(call: Call) -> web.Response:
    return json_response(await call.services.customers.get_customer(call.path["customer_id"]))


async def update_customer(call: Call) -> web.Response:
    assert call.body is not None
    return json_response(await call.services.customers.update_customer(call.path["customer_id"], call.body))


async def delete_customer(call: Call) -> web.Response:
    await call.services.customers.delete_customer(call.path["customer_id"])
    return web.Response(status=204)


async def customer_sessions(call: Call) -> web.Response:
    customer_id = call.path["customer_id"]

    async def fetch(**query: object) -> list[dict[str, object]]:
        return await call.services.usage.customer_sessions(customer_id, **query)  # type: ignore[arg-type]

    return await list_page(call, CUSTOMER_SESSIONS, fetch)


async def customer_enforcements(call: Call) -> web.Response:
    customer_id = call.path["customer_id"]

    async def fetch(**query: object) -> list[dict[str, object]]:
        return await call.services.usage.customer_enforcements(customer_id, **query)  # type: ignore[arg-type]

    return await list_page(call, CUSTOMER_ENFORCEMENTS, fetch)


async def customer_usage(call: Call) -> web.Response:
    return json_response(await call.services.usage.customer_usage(call.path["customer_id"], **call.query))


async def customer_usage_summary(call: Call) -> web.Response:
    return json_response(await call.services.usage.usage_summary(call.path["customer_id"]))


USAGE_QUERY = (
    Param("since", "date-time", "Start of the window (default: 24 h before until)"),
    Param("until", "date-time", "End of the window, exclusive (default: now)"),
    Param("step", "string", "Bucket size, in the customer's time zone", default="hour", enum=tuple(STEPS)),
)

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/customers/",
        list_customers,
        "listCustomers",
        "List customers",
        TAG,
        query=list_params(CUSTOMER_LIST),
        response="page",
        also_without_slash=True,
        response_schema=CUSTOMER,
    ),
    Route(
        "POST",
        "/customers/",
        create_customer,
        "createCustomer",
        "Create a customer",
        TAG,
        body=Body("CustomerSpec", CustomerSpec, filled=frozenset({"id"})),
        status=201,
        errors=(409,),
        also_without_slash=True,
        response_schema=CUSTOMER,
    ),
    Route(
        "POST",
        "/customers/bulk",
        bulk_customers,
        "bulkUpsertCustomers",
        "Create or replace many customers in one transaction (all or none)",
        TAG,
        body=Body("BulkCustomers", BulkCustomers, max_bytes=BULK_MAX_BYTES),
        errors=(409,),
        response_schema=BULK_CUSTOMERS,
    ),
    Route(
        "GET",
        "/customers/{customer_id}",
        get_customer,
        "getCustomer",
        "Get a customer",
        TAG,
        path_params=(CUSTOMER_ID,),
        response_schema=CUSTOMER,
    ),
    Route(
        "PUT",
        "/customers/{customer_id}",
        update_customer,
        "updateCustomer",
        "Update a customer (partial: given fields replace stored ones)",
        TAG,
        path_params=(CUSTOMER_ID,),
        body=Body("CustomerUpdate", CustomerSpec, partial=True),
        errors=(409,),
        response_schema=CUSTOMER,
    ),
    Route(
        "DELETE",
        "/customers/{customer_id}",
        delete_customer,
        "deleteCustomer",
        "Delete a customer",
        TAG,
        path_params=(CUSTOMER_ID,),
        status=204,
        errors=(409,),
        response="none",
    ),
    Route(
        "GET",
        "/customers/{customer_id}/sessions",
        customer_sessions,
        "customerSessions",
        "A customer's accounting sessions, newest first",
        TAG,
        path_params=(CUSTOMER_ID,),
        query=list_params(CUSTOMER_SESSIONS),
        response="page",
        response_schema=SESSION,
    ),
    Route(
        "GET",
        "/customers/{customer_id}/usage",
        customer_usage,
        "customerUsage",
        "Octets in, out and total per step",
        TAG,
        path_params=(CUSTOMER_ID,),
        query=USAGE_QUERY,
        response_schema=CUSTOMER_USAGE,
    ),
    Route(
        "GET",
        "/customers/{customer_id}/usage/summary",
        customer_usage_summary,
        "customerUsageSummary",
        "This period so far against the quota, the previous period, and the projection at the current pace",
        TAG,
        path_params=(CUSTOMER_ID,),
        response_schema=USAGE_SUMMARY,
    ),
    Route(
        "GET",
        "/customers/{customer_id}/enforcements",
        customer_enforcements,
        "customerEnforcements",
        "A customer's quota enforcement audit trail, newest first",
        TAG,
        path_params=(CUSTOMER_ID,),
        query=list_params(CUSTOMER_ENFORCEMENTS),
        response="page",
        response_schema=ENFORCEMENT,
    ),
)
