"""``/search/``: the Elasticsearch feed's status and its dead letters (list, retry one)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ispmon.api.errors import json_response
from ispmon.api.listing import list_page, list_params
from ispmon.api.problem import ApiError
from ispmon.api.responses_search import DEAD_LETTER, RETRY_RESULT, SEARCH_STATUS
from ispmon.api.spec import Call, PathParam, Route
from ispmon.search.bulk import Unavailable
from ispmon.search.deadletters import DEAD_LETTERS, list_dead_letters, retry_dead_letter
from ispmon.search.sync import status_disabled
from ispmon.search.wiring import SEARCH_FEED, SearchFeed

TAG = "search"
LETTER_ID = PathParam("letter_id", "integer", "Dead letter id (from GET /search/dead-letters)")


def feed_of(call: Call) -> SearchFeed | None:
    return call.request.app.get(SEARCH_FEED)


def search_status(app: web.Application) -> dict[str, Any]:
    feed = app.get(SEARCH_FEED)
    return feed.status() if feed is not None else status_disabled()


async def get_status(call: Call) -> web.Response:
    return json_response(search_status(call.request.app))


async def list_letters(call: Call) -> web.Response:
    async def fetch(**query: Any) -> list[dict[str, Any]]:
        return await list_dead_letters(call.services.db.pool, **query)

    return await list_page(call, DEAD_LETTERS, fetch)


async def retry_letter(call: Call) -> web.Response:
    feed = feed_of(call)
    letter_id = call.path["letter_id"]
    if feed is None:
        raise ApiError.on(
            409, "letter_id", "ELASTICSEARCH_URL is not set: there is no Elasticsearch to send to"
        )
    try:
        result = await retry_dead_letter(call.services.db.pool, feed.sync.deliverer, letter_id)
    except Unavailable as exc:
        raise ApiError.on(
            503, "letter_id", f"Elasticsearch is unavailable ({exc.kind}): {exc.reason}"
        ) from None
    if result is None:
        raise ApiError.on(404, "letter_id", f"no dead letter {letter_id}")
    await feed.sync._count_dead_letters()
    return json_response(result)


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/search/status",
        get_status,
        "getSearchStatus",
        "The Elasticsearch feed: per family the lag, backlog, last error and dead letters",
        TAG,
        response_schema=SEARCH_STATUS,
    ),
    Route(
        "GET",
        "/search/dead-letters",
        list_letters,
        "listSearchDeadLetters",
        "Documents Elasticsearch refused for good (mapping errors), with the reason",
        TAG,
        query=list_params(DEAD_LETTERS),
        response="page",
        response_schema=DEAD_LETTER,
    ),
    Route(
        "POST",
        "/search/dead-letters/{letter_id}/retry",
        retry_letter,
        "retrySearchDeadLetter",
        "Send one dead letter again (indexed: removed; refused: the new reason is kept)",
        TAG,
        path_params=(LETTER_ID,),
        errors=(404, 409, 503),
        response_schema=RETRY_RESULT,
    ),
)
