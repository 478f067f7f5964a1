"""`ispmon kibana-import` as an operator runs it, against the strict Kibana stand-in on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web

from ispmon.cli import main
from ispmon.search.kibana_objects import build
from tests.integration.kibana.standin import KibanaStandIn

API_KEY = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="


class Running:
    def __init__(self, standin: KibanaStandIn, url: str) -> None:
        self.standin = standin
        self.url = url


async def _serve(
    standin: KibanaStandIn, ssl_context: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(standin.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    scheme = "https" if ssl_context else "http"
    return runner, f"{scheme}://127.0.0.1:{port}"


@pytest.fixture
async def kibana() -> AsyncIterator[Running]:
    standin = KibanaStandIn(api_key=API_KEY, user="elastic", password="s3cret", spaces={"default", "noc"})
    runner, url = await _serve(standin)
    try:
        yield Running(standin, url)
    finally:
        await runner.cleanup()


async def subprocess_ispmon(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """The real command in a subprocess, as an operator runs it; this test's loop keeps serving
    the stand-in meanwhile."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KIBANA_")}
    full_env.update(env or {})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ispmon",
        "kibana-import",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=full_env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


Cli = Callable[..., Awaitable[tuple[int, str, str]]]


@pytest.fixture
def ispmon(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The command's `main` in a thread (its own event loop, as from the console): the same code
    path without an interpreter start per call, which costs a second of CPU on this machine."""

    async def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        for name in ("KIBANA_API_KEY", "KIBANA_PASSWORD", "ELASTICSEARCH_INDEX_PREFIX"):
            monkeypatch.delenv(name, raising=False)
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        code = await asyncio.wait_for(asyncio.to_thread(main, ["kibana-import", *args]), timeout=60)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _shipped() -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["type"], o["id"]): o for objects in build().values() for o in objects}


async def test_imports_every_shipped_object_into_a_space_with_an_api_key(
    kibana: Running, ispmon: Cli
) -> None:
    code, out, err = await subprocess_ispmon(
        "--url", kibana.url + "/", "--space", "noc", env={"KIBANA_API_KEY": API_KEY}
    )
    assert code == 0, out + err
    stored = kibana.standin.stored["noc"]
    assert stored == _shipped()  # every object, as shipped, in the space asked for
    assert "default" not in kibana.standin.stored
    assert "ispmon-service-availability.ndjson: 13 imported, 0 failed" in out
    assert {r["query"]["overwrite"] for r in kibana.standin.requests} == {"true"}
    # A second import overwrites the same ids: nothing duplicated, still success.
    code, out, err = await ispmon("--url", kibana.url, "--space", "noc", "--api-key", API_KEY)
    assert code == 0, out + err
    assert kibana.standin.stored["noc"] == _shipped()


async def test_basic_auth_and_wrong_credentials(kibana: Running, ispmon: Cli) -> None:
    code, out, err = await ispmon("--url", kibana.url, "--user", "elastic", env={"KIBANA_PASSWORD": "s3cret"})
    assert code == 0, out + err
    assert kibana.standin.stored["default"] == _shipped()
    code, out, err = await ispmon("--url", kibana.url, "--user", "elastic", "--password", "wrong")
    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "refused the credentials (HTTP 401)" in err and "wrong" not in err


async def test_a_partial_failure_names_each_object_and_exits_non_zero(
    kibana: Running, tmp_path: Path, ispmon: Cli
) -> None:
    objects = build()["ispmon-service-availability.ndjson"]
    dashboard = next(o for o in objects if o["type"] == "dashboard")
    pie = next(o for o in objects if o["id"] == "ispmon-isp-service-status-overview")
    data_view = next(o for o in objects if o["id"] == pie["references"][0]["id"])
    future = {**data_view, "id": "from-the-future", "typeMigrationVersion": "99.0.0"}
    unknown = {"type": "canvas-workpad", "id": "w1", "attributes": {"title": "W"}, "references": []}
    path = tmp_path / "mixed.ndjson"
    # The pie without its data view (and not in Kibana yet): missing_references; the data view of
    # a newer Kibana; a type this Kibana lacks; the dashboard misses its other seven panels.
    path.write_text("\n".join(json.dumps(o) for o in (pie, future, unknown, dashboard)) + "\n")
    code, out, err = await ispmon("--url", kibana.url, "--api-key", API_KEY, "--file", str(path))
    assert code == 1, out + err
    assert "mixed.ndjson: 0 imported, 4 failed" in out
    assert (
        f"FAILED visualization ispmon-isp-service-status-overview ('Service Status Overview'): missing references: "
        f"index-pattern {data_view['id']}" in out
    )
    assert "FAILED index-pattern from-the-future" in out and "more recent version of Kibana [99.0.0]" in out
    assert "FAILED canvas-workpad w1 ('W'): unsupported type" in out
    # Once the data view exists, the same pie imports: what failed was the reference, nothing else.
    (tmp_path / "dv.ndjson").write_text(json.dumps(data_view) + "\n")
    code, out, err = await ispmon(
        "--url", kibana.url, "--api-key", API_KEY, "--file", str(tmp_path / "dv.ndjson"), "--file", str(path)
    )
    assert code == 1
    assert "dv.ndjson: 1 imported, 0 failed" in out and "mixed.ndjson: 1 imported, 3 failed" in out
    assert ("visualization", pie["id"]) in kibana.standin.stored["default"]


async def test_unreachable_wrong_space_and_not_kibana(kibana: Running, ispmon: Cli) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # bound, never listening: connection refused
        code, _, err = await ispmon("--url", f"http://127.0.0.1:{closed}", "--api-key", API_KEY)
    assert code == 1 and err.count("\n") == 1 and "cannot reach Kibana at" in err and "Traceback" not in err
    code, _, err = await ispmon("--url", kibana.url, "--api-key", API_KEY, "--space", "sales")
    assert code == 1 and err.count("\n") == 1 and "is there a space 'sales'?" in err
    code, _, err = await ispmon("--url", kibana.url + "/elsewhere", "--api-key", API_KEY)
    assert code == 1 and "HTTP 404" in err and "is this Kibana's URL?" in err


async def test_tls_with_a_ca_file(tmp_path: Path, ispmon: Cli) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    standin = KibanaStandIn(api_key=API_KEY)
    runner, url = await _serve(standin, server_ctx)
    try:
        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        code, out, err = await ispmon("--url", url, "--api-key", API_KEY, "--ca-file", str(ca_file))
        assert code == 0, out + err
        assert standin.stored["default"] == _shipped()
        code, out, err = await ispmon("--url", url, "--api-key", API_KEY)  # the system CAs do not know it
        assert code == 1 and err.count("\n") == 1 and "TLS" in err and "Traceback" not in err
    finally:
        await runner.cleanup()


async def test_another_prefix_gets_its_own_ids_and_patterns(kibana: Running, ispmon: Cli) -> None:
    code, out, err = await ispmon("--url", kibana.url, "--api-key", API_KEY, "--prefix", "acme")
    assert code == 0, out + err
    stored = dict(kibana.standin.stored["default"])
    assert stored == {(o["type"], o["id"]): o for f in build("acme").values() for o in f}
    titles = {o["attributes"]["title"] for o in stored.values() if o["type"] == "index-pattern"}
    assert "acme-service-status-*" in titles and not any(t.startswith("isp-") for t in titles)
    code, out, err = await ispmon("--url", kibana.url, "--api-key", API_KEY, "--prefix", "isp")
    assert code == 0 and len(kibana.standin.stored["default"]) == 2 * len(stored)  # side by side
    # The feed's own setting is the default, so the data views match the indices it writes.
    code, out, err = await ispmon(
        "--url", kibana.url, "--api-key", API_KEY, env={"ELASTICSEARCH_INDEX_PREFIX": "eu.1"}
    )
    assert code == 0, out + err
    assert ("index-pattern", "ispmon-eu.1-service-status-data-view") in kibana.standin.stored["default"]


async def test_the_stand_in_refuses_what_kibana_refuses(kibana: Running) -> None:
    """The import tests mean something only if the stand-in is as strict as Kibana."""
    url = kibana.url + "/api/saved_objects/_import?overwrite=true"
    line = json.dumps(next(iter(_shipped().values()))).encode()
    headers = {"Authorization": f"ApiKey {API_KEY}"}

    def form(name: str = "file", filename: str = "x.ndjson", body: bytes = line) -> aiohttp.FormData:
        data = aiohttp.FormData()
        data.add_field(name, body, filename=filename, content_type="application/ndjson")
        return data

    async with aiohttp.ClientSession() as session:
        cases: list[tuple[dict[str, str], aiohttp.FormData | bytes, int, str]] = [
            (headers, form(), 400, "kbn-xsrf"),
            ({**headers, "kbn-xsrf": "1"}, form(name="upload"), 400, "body.file"),
            ({**headers, "kbn-xsrf": "1"}, form(filename="x.json"), 400, "Invalid file extension"),
            ({**headers, "kbn-xsrf": "1"}, form(body=b"{not json\n"), 400, "JSON"),
            ({**headers, "kbn-xsrf": "1"}, form(body=line + b"\n" + line), 400, "Non-unique"),
            ({**headers, "kbn-xsrf": "1"}, line, 415, "Unsupported"),
            ({"kbn-xsrf": "1"}, form(), 401, "authenticate"),
        ]
        for case_headers, body, status, message in cases:
            async with session.post(url, headers=case_headers, data=body) as resp:
                assert resp.status == status, (status, message)
                assert message in (await resp.json())["message"]
        async with session.get(url, headers={**headers, "kbn-xsrf": "1"}) as resp:
            assert resp.status == 404  # the import route is POST only
        async with session.post(
            url.replace("_import", "_export"), headers={**headers, "kbn-xsrf": "1"}
        ) as resp:
            assert resp.status == 404  # not a route of this stand-in: a wrong path is not taken for an import
        async with session.post(url, headers={**headers, "kbn-xsrf": "1"}, data=form()) as resp:
            answer = await resp.json()
        assert answer["success"] is True and answer["successCount"] == 1


def test_usage_errors_say_which_option_and_send_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In-process: these return before any request (and before an event loop) is made."""
    url = "http://127.0.0.1:9"  # discard port: a request would fail with a different message
    usage_errors = [
        (("--url", "kibana:5601"), "--url"),
        (("--url", url, "--api-key", API_KEY, "--user", "elastic"), "not both"),
        (("--url", url, "--user", "elastic"), "KIBANA_PASSWORD"),
        (("--url", url, "--space", "Bad Space"), "--space"),
        (("--url", url, "--file", str(tmp_path / "absent.ndjson")), "absent.ndjson"),
        (("--url", url, "--prefix", "a b"), "--prefix"),
        (("--url", url, "--prefix", "a-b"), "--prefix"),
        (("--url", url, "--ca-file", str(tmp_path / "no-ca.pem")), "--ca-file"),
        (("--url", url, "--timeout", "0"), "--timeout"),
        (("--url", url, "--prefix", "acme", "--file", str(tmp_path / "x.ndjson")), "--prefix"),
    ]
    for args, message in usage_errors:
        assert main(["kibana-import", *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "cannot reach" not in err, (args, err)


async def test_a_failure_midway_says_what_was_imported_before_it(kibana: Running, ispmon: Cli) -> None:
    kibana.standin.fail_from = 2  # the first two files go in, the third gets a 500
    code, out, err = await ispmon("--url", kibana.url, "--api-key", API_KEY)
    assert code == 1
    assert out.splitlines() == [
        "ispmon-data-views.ndjson: 8 imported, 0 failed",
        "ispmon-customer-usage.ndjson: 6 imported, 0 failed",
    ]
    assert err == (
        "ispmon kibana-import: Kibana answered HTTP 500 for ispmon-network-performance.ndjson: "
        "An internal server error occurred.\n"
    )


async def test_kibanas_warnings_are_printed_and_do_not_fail_the_import(kibana: Running, ispmon: Cli) -> None:
    kibana.standin.warnings = [
        {"type": "action_required", "message": "Reload the page", "actionPath": "/app/x"}
    ]
    code, out, err = await ispmon("--url", kibana.url, "--api-key", API_KEY)
    assert code == 0, out + err
    assert out.count("  WARNING Reload the page\n") == 4  # one per file
