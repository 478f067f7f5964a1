"""The feed against real PostgreSQL and the strict test server: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio

import asyncpg

from ispmon.search.sync import SearchSync
from tests.esserver import EsServer
from tests.integration.search.conftest import add_endpoint, insert_history


async def test_rows_reach_daily_indices_with_ecs_and_seed_fields(
    pool: asyncpg.Pool, es: EsServer, make_sync
) -> None:
    await add_endpoint(pool)
    ids = await insert_history(pool, "web-1", 5)
    sync: SearchSync = await make_sync()
    assert await sync.sync_once() >= 5
    docs = es.all_docs("isp-service-status-*")
    assert sorted(int(d) for (_, d) in docs) == sorted(ids)
    (index, _), doc = next(iter(docs.items()))
    assert index.startswith("isp-service-status-20")
    assert doc["monitor"]["id"] == "web-1" and doc["monitor"]["status"] == "up"
    assert doc["monitor"]["duration"]["us"] == 12500 and doc["summary"] == {"up": 1, "down": 0}
    assert doc["service_name"] == "Web web-1" and doc["url"]["full"].startswith("http://127.0.0.1")
    assert doc["observer"]["geo"]["name"] == "Paris" and doc["tags"] == ["edge"]
    # Nothing new: the next round sends nothing again.
    assert await sync.sync_once() == 0
    assert es.max_version("isp-service-status-*") == 1


async def test_down_for_the_whole_run_then_up_indexes_every_row_once(
    pool: asyncpg.Pool, es: EsServer, make_sync
) -> None:
    await add_endpoint(pool)
    sync: SearchSync = await make_sync(batch_size=50)
    es.faults.down = True
    ids: list[int] = []
    for _ in range(5):
        ids += await insert_history(pool, "web-1", 40)
        await sync.sync_once()
        assert sync.failing == "connection"
    status = sync.status()
    assert status["state"] == "failing"
    assert "connect" in status["families"]["service_status"]["last_error"]
    assert status["families"]["service_status"]["backlog"] == 0  # not measured while failing
    assert es.ids("isp-service-status-*") == []
    es.faults.down = False
    await sync.sync_once()
    await sync.sync_once()
    assert sorted(int(i) for i in es.ids("isp-service-status-*")) == sorted(ids)
    assert es.max_version("isp-service-status-*") == 1
    assert sync.failing is None and sync.status()["families"]["service_status"]["last_error"] is None


async def test_429_on_half_the_items_all_indexed_none_twice(
    pool: asyncpg.Pool, es: EsServer, make_sync
) -> None:
    await add_endpoint(pool)
    ids = await insert_history(pool, "web-1", 500)
    sync: SearchSync = await make_sync(batch_size=200)
    es.faults.reject_fraction = 0.5
    await sync.sync_once()
    assert sorted(int(i) for i in es.ids("isp-service-status-*")) == sorted(ids)
    assert es.max_version("isp-service-status-*") == 1
    assert es.bulk_items > 600  # the rejected half was retried, item by item


async def test_a_mapping_error_is_dead_lettered_and_does_not_block_the_rest(
    pool: asyncpg.Pool, es: EsServer, make_sync
) -> None:
    await add_endpoint(pool)
    before = await insert_history(pool, "web-1", 10)
    # A status_history row whose details make a document the strict mapping refuses: an http
    # status code that is not a number is impossible from our probes, so break the template.
    sync: SearchSync = await make_sync()
    for comp in es.component_templates.values():
        props = comp["template"].get("mappings", {}).get("properties", {})
        if "response_time" in props:
            props["response_time"] = {"type": "ip"}  # every document with a response time fails
    bad = await pool.fetch(
        "INSERT INTO status_history (endpoint_id, checked_at, status) VALUES ('web-1', now(), 'down') RETURNING id"
    )
    await sync.sync_once()
    indexed = {int(i) for i in es.ids("isp-service-status-*")}
    assert indexed == {bad[0]["id"]}
    rows = await pool.fetch(
        "SELECT doc_id, status, error_type, reason FROM search_dead_letters ORDER BY doc_id"
    )
    assert sorted(int(r["doc_id"]) for r in rows) == sorted(before)
    assert {r["error_type"] for r in rows} == {"mapper_parsing_exception"}
    assert "response_time" in rows[0]["reason"]
    assert sync.status()["families"]["service_status"]["dead_letters"] == 10
    # The cursor moved on: later rows flow.
    later = await insert_history(pool, "web-1", 1, status="down")
    await pool.execute("UPDATE status_history SET response_time_ms = NULL WHERE id = $1", later[0])
    await sync.sync_once()
    assert later[0] in {int(i) for i in es.ids("isp-service-status-*")}


async def test_a_row_committed_late_with_a_lower_id_is_not_skipped(
    pool: asyncpg.Pool, db_dsn: str, es: EsServer, make_sync
) -> None:
    await add_endpoint(pool)
    sync: SearchSync = await make_sync()
    slow = await asyncpg.connect(db_dsn)
    try:
        tx = slow.transaction()
        await tx.start()
        low = await slow.fetchval(
            "INSERT INTO status_history (endpoint_id, checked_at, status) VALUES ('web-1', now(), 'up') RETURNING id"
        )
        high = await insert_history(pool, "web-1", 3)  # committed, with higher ids
        assert min(high) > low
        await sync.sync_once()
        # Not yet: the slow transaction holds the window (its rows could still commit).
        assert {int(i) for i in es.ids("isp-service-status-*")} == set()
        await tx.commit()
    finally:
        await slow.close()
    await sync.sync_once()
    assert {int(i) for i in es.ids("isp-service-status-*")} == {low, *high}
    assert es.max_version("isp-service-status-*") == 1


async def test_an_outage_is_resent_as_the_same_document_when_it_changes(
    pool: asyncpg.Pool, es: EsServer, make_sync
) -> None:
    await add_endpoint(pool)
    outage = await pool.fetchval(
        """INSERT INTO outages (endpoint_id, started_at, declared_at, status, severity)
           VALUES ('web-1', now() - interval '5 minutes', now(), 'open', 'medium') RETURNING id"""
    )
    sync: SearchSync = await make_sync()
    await sync.sync_once()
    docs = es.all_docs("isp-service-outage-*")
    assert [d["severity"] for d in docs.values()] == ["medium"] and next(iter(docs.values()))[
        "active"
    ] is True
    await pool.execute("UPDATE outages SET severity = 'critical' WHERE id = $1", outage)
    await sync.sync_once()
    await pool.execute(
        "UPDATE outages SET resolved_at = now(), status = 'resolved', duration_seconds = 300 WHERE id = $1",
        outage,
    )
    await sync.sync_once()
    docs = es.all_docs("isp-service-outage-*")
    assert len(docs) == 1
    (_, doc_id), doc = next(iter(docs.items()))
    assert doc_id == str(outage) and doc["severity"] == "critical" and doc["active"] is False
    assert doc["event"]["duration"] == 300 * 10**9
    assert es.max_version("isp-service-outage-*") == 3


async def test_the_cursor_survives_a_restart(pool: asyncpg.Pool, es: EsServer, make_sync) -> None:
    await add_endpoint(pool)
    first = await insert_history(pool, "web-1", 30)
    sync: SearchSync = await make_sync(batch_size=10)
    await sync.sync_once()
    again: SearchSync = await make_sync(setup=False, batch_size=10)
    second = await insert_history(pool, "web-1", 5)
    await again.sync_once()
    assert sorted(int(i) for i in es.ids("isp-service-status-*")) == sorted(first + second)
    assert es.max_version("isp-service-status-*") == 1


async def test_other_families_reach_their_indices(pool: asyncpg.Pool, es: EsServer, make_sync) -> None:
    await pool.execute(
        "INSERT INTO network_metrics (recorded_at, host, interface, bandwidth_usage, packet_loss, latency)"
        " VALUES (now(), 'r1', 'eth0', 42.5, 0.1, 3.2)"
    )
    await pool.execute(
        "INSERT INTO customers (id, name, spec) VALUES ('c1', 'Customer One', '{\"quota_bytes\": 1000000}')"
    )
    await pool.execute(
        "INSERT INTO usage_rollups (customer_id, step, start, bytes_in, bytes_out)"
        " VALUES ('c1', 'hour', date_trunc('hour', now()), 1000, 2000), ('c1', 'day', date_trunc('day', now()), 1, 1)"
    )
    await pool.execute(
        "INSERT INTO system_logs (at, level, logger, event, data)"
        " VALUES (now(), 'info', 'ispmon', 'User login successful', '{\"user\": \"alice\"}')"
    )
    await pool.execute(
        "INSERT INTO maintenance_windows (id, name, spec) VALUES ('mw1', 'Core upgrade', $1)",
        {
            "id": "mw1",
            "name": "Core upgrade",
            "starts_at": "2030-01-01T02:00:00+00:00",
            "ends_at": "2030-01-01T04:00:00+00:00",
            "all_endpoints": True,
        },
    )
    sync: SearchSync = await make_sync()
    await sync.sync_once()
    assert sync.failing is None, sync.status()
    net = list(es.all_docs("isp-network-metrics-*").values())
    assert net[0]["bandwidth_usage"] == 42.5 and net[0]["source"] == "reported"
    usage = list(es.all_docs("isp-customer-usage-*").values())
    assert len(usage) == 1 and usage[0]["bytes_total"] == 3000 and usage[0]["quota"]["bytes"] == 1000000
    logs = list(es.all_docs("isp-system-logs-*").values())
    assert logs[0]["message"] == "User login successful" and logs[0]["context"] == {"user": "alice"}
    assert logs[0]["log"]["level"] == "info"
    windows = es.all_docs("isp-maintenance-windows")
    assert windows[("isp-maintenance-windows", "mw1")]["next_start"].startswith("2030-01-01T02:00")
    # An hour's rollup grows: re-sent as the same document.
    await pool.execute("UPDATE usage_rollups SET bytes_in = bytes_in + 500 WHERE step = 'hour'")
    await sync.sync_once()
    usage = list(es.all_docs("isp-customer-usage-*").values())
    assert len(usage) == 1 and usage[0]["bytes_total"] == 3500


async def test_read_only_cluster_then_writable(pool: asyncpg.Pool, es: EsServer, make_sync) -> None:
    await add_endpoint(pool)
    ids = await insert_history(pool, "web-1", 20)
    sync: SearchSync = await make_sync()
    es.faults.read_only = True
    await sync.sync_once()
    assert sync.failing == "read_only"
    assert "read-only" in sync.status()["families"]["service_status"]["last_error"]
    es.faults.read_only = False
    await sync.sync_once()
    assert sorted(int(i) for i in es.ids("isp-service-status-*")) == sorted(ids)


async def test_wrong_credentials_and_wrong_major_are_clear(pool: asyncpg.Pool, make_sync) -> None:
    secured = EsServer(major=8, api_key="right-key")
    old = EsServer(major=7)  # what an 8.x client meets on a server one major below (as 9.x on 8.x)
    await secured.start()
    await old.start()
    try:
        from ispmon.search.bulk import Deliverer
        from ispmon.search.client import ClientConfig, bulk_sender, classify, make_client
        from ispmon.search.documents import Observer

        await add_endpoint(pool)
        await insert_history(pool, "web-1", 3)
        for server, key, kind in ((secured, "wrong-key", "credentials"), (old, None, "version")):
            client = make_client(ClientConfig(url=server.url, api_key=key))
            try:
                sync = SearchSync(
                    pool, Deliverer(bulk_sender(client), classify=classify), "isp", Observer("h")
                )
                await sync.load()
                await sync.sync_once()
                assert sync.failing == kind
                assert await pool.fetchval("SELECT count(*) FROM search_cursors WHERE sent > 0") == 0
            finally:
                await client.close()
    finally:
        await secured.stop()
        await old.stop()


async def test_timeout_is_retried_and_nothing_lost(pool: asyncpg.Pool, es: EsServer, make_sync) -> None:
    await add_endpoint(pool)
    ids = await insert_history(pool, "web-1", 5)
    sync: SearchSync = await make_sync(timeout=0.3)
    es.faults.hang = True
    await sync.sync_once()
    assert sync.failing == "timeout"
    es.faults.hang = False
    await asyncio.sleep(0)
    await sync.sync_once()
    assert sorted(int(i) for i in es.ids("isp-service-status-*")) == sorted(ids)


async def test_413_splits_the_batch_through_the_real_client(
    pool: asyncpg.Pool, es: EsServer, make_sync
) -> None:
    await add_endpoint(pool)
    ids = await insert_history(pool, "web-1", 60)
    sync: SearchSync = await make_sync(batch_size=60)
    es.faults.max_body_bytes = 12_000  # about 12 documents per request
    await sync.sync_once()
    assert sync.failing is None
    assert sorted(int(i) for i in es.ids("isp-service-status-*")) == sorted(ids)
    assert es.bulk_requests >= 6 and es.max_version("isp-service-status-*") == 1


async def test_tls_with_a_ca_file(pool: asyncpg.Pool, tmp_path) -> None:
    import ssl

    import trustme

    from ispmon.search.bulk import Deliverer
    from ispmon.search.client import ClientConfig, bulk_sender, classify, make_client
    from ispmon.search.documents import Observer
    from ispmon.search.setup import es_setup

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    secure = EsServer(major=8)
    await secure.start(ssl_context=server_ctx)
    try:
        await add_endpoint(pool)
        ids = await insert_history(pool, "web-1", 3)
        for ca_path, kind in ((None, "tls"), (ca_file, None)):
            client = make_client(ClientConfig(url=secure.url, ca_file=ca_path))
            try:
                if ca_path is not None:
                    await es_setup(client, "isp")
                sync = SearchSync(
                    pool, Deliverer(bulk_sender(client), classify=classify), "isp", Observer("h")
                )
                await sync.load()
                await sync.sync_once()
                assert sync.failing == kind, sync.status()
            finally:
                await client.close()
        assert sorted(int(i) for i in secure.ids("isp-service-status-*")) == sorted(ids)
    finally:
        await secure.stop()


async def test_a_time_floor_survives_a_restart(pool: asyncpg.Pool, es: EsServer, make_sync) -> None:
    # The usage source's scan floor is a time: stored as '-infinity' until one is safe, and read
    # back after a restart (as asyncpg's naive datetime.min) it must still compare with the clock.
    from ispmon.search import cursor

    await pool.execute("INSERT INTO customers (id, name, spec) VALUES ('c1', 'One', '{}')")
    await pool.execute(
        "INSERT INTO usage_rollups (customer_id, step, start, bytes_in, bytes_out)"
        " VALUES ('c1', 'hour', date_trunc('hour', now()), 1, 1)"
    )
    first: SearchSync = await make_sync()
    await first.sync_once()
    again: SearchSync = await make_sync(setup=False)
    state = again.states["customer_usage"]
    assert state.cursor.floor_at is None
    real_delay = cursor.FLOOR_DELAY
    cursor.FLOOR_DELAY = 0.0  # make the next marks witness each other at once
    try:
        for _ in range(3):
            await pool.execute("UPDATE usage_rollups SET bytes_in = bytes_in + 1")
            await again.sync_once()
    finally:
        cursor.FLOOR_DELAY = real_delay
    assert again.failing is None and state.cursor.floor_at is not None
    assert next(iter(es.all_docs("isp-customer-usage-*").values()))["bytes_in"] == 4
