"""`_bulk` through the official client with the feed's ``filter_path``: each item's answer is cut
to its status (and error), every item still answered in order, whole-request errors unfiltered
(as a real server: its error builder does not filter)."""

from __future__ import annotations

import pytest
from elasticsearch import ApiError

from ispmon.search.bulk import Item
from ispmon.search.client import ClientConfig, bulk_sender, make_client
from ispmon.search.setup import es_setup
from tests.esserver import EsServer


async def test_items_cut_to_status_and_error_in_order(es: EsServer) -> None:
    client = make_client(ClientConfig(url=es.url, timeout=5))
    try:
        await es_setup(client, "isp")
        send = bulk_sender(client)
        es.faults.reject_ids = {"2"}
        good = {"@timestamp": "2026-12-02T10:00:00+00:00", "status": "up"}
        docs = [good, good, good, {**good, "response_time": "not a number"}]
        body = b"".join(
            Item.make("isp-service-status-2026.12.02", str(i), d).line for i, d in enumerate(docs)
        )
        answer = await send(body)
        assert answer["errors"] is True
        assert [next(iter(e)) for e in answer["items"]] == ["index"] * 4
        results = [e["index"] for e in answer["items"]]
        assert results[0] == {"status": 201} and results[1] == {"status": 201}
        assert (
            results[2]["status"] == 429 and results[2]["error"]["type"] == "es_rejected_execution_exception"
        )
        assert results[3]["status"] == 400 and results[3]["error"]["type"] == "mapper_parsing_exception"
        assert "response_time" in results[3]["error"]["reason"]
        assert set(es.ids("isp-service-status-*")) == {"0", "1"}
        # The same request unfiltered carries what the filter leaves out.
        full = (await client.bulk(operations=body)).body
        assert {"_index", "_id", "_version", "result", "_shards"} <= set(full["items"][0]["index"])
        # A whole-request error keeps its body (classify reads its type).
        es.faults.read_only = True
        with pytest.raises(ApiError) as refused:
            await send(body)
        assert refused.value.body["error"]["type"] == "cluster_block_exception"
    finally:
        await client.close()
