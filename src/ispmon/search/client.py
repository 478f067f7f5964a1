"""The official async client, built from the settings, and its exceptions sorted for the feed.

The transport's own retries are off (``max_retries=0``): `search.bulk` retries per item and per
request with backoff and jitter, and knows which items were accepted. Every failure is mapped to
a short, stable kind (connection, timeout, credentials, version, read_only, ...) and a sentence
that never quotes a credential.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import elastic_transport
from elasticsearch import (
    ApiError,
    AsyncElasticsearch,
    AuthenticationException,
    AuthorizationException,
    UnsupportedProductError,
)
from elasticsearch.serializer import OrjsonSerializer

from ispmon.logging import redact_text
from ispmon.search.bulk import TooLarge, Unavailable


@dataclass(frozen=True)
class ClientConfig:
    url: str
    api_key: str | None = None
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    timeout: float = 30.0


def make_client(cfg: ClientConfig) -> AsyncElasticsearch:
    kwargs: dict[str, Any] = {
        "request_timeout": cfg.timeout,
        "max_retries": 0,
        "retry_on_timeout": False,
        "retry_on_status": (),
    }
    if cfg.api_key:
        kwargs["api_key"] = cfg.api_key
    elif cfg.username:
        kwargs["basic_auth"] = (cfg.username, cfg.password or "")
    if cfg.ca_file is not None:
        kwargs["ssl_context"] = ssl.create_default_context(cafile=str(cfg.ca_file))
    # orjson for requests and responses (the compatible-with media types too): the client's stdlib
    # json spent ~17 ms decoding each 1,000-item bulk answer, a fifth of the feed's CPU per document.
    kwargs["serializer"] = OrjsonSerializer()
    return AsyncElasticsearch(cfg.url, **kwargs)


class Transient(Exception):
    """Worth retrying at once (with backoff): a dropped connection, a timeout, 429, 5xx."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


def _api_reason(exc: ApiError) -> tuple[str | None, str]:
    body = exc.body if isinstance(exc.body, dict) else {}
    err = body.get("error") if isinstance(body.get("error"), dict) else {}
    return err.get("type") if err else None, str((err or {}).get("reason") or exc.message)[:300]


def classify(exc: BaseException) -> Exception:
    """TooLarge, Unavailable (give up this round) or Transient (retry now)."""
    if isinstance(exc, TooLarge | Unavailable | Transient):
        return exc
    if isinstance(exc, UnsupportedProductError):
        return Unavailable(
            "not_elasticsearch", "the server did not identify as Elasticsearch (no X-Elastic-Product header)"
        )
    if isinstance(exc, AuthenticationException):
        return Unavailable(
            "credentials",
            "Elasticsearch refused the credentials (401): check ELASTICSEARCH_API_KEY or"
            " ELASTICSEARCH_USERNAME/PASSWORD",
        )
    if isinstance(exc, AuthorizationException):
        etype, reason = _api_reason(exc)
        if etype == "cluster_block_exception":
            return Unavailable("read_only", f"the cluster is read-only: {reason}")
        return Unavailable("forbidden", f"the credentials may not write these indices (403): {reason}")
    if isinstance(exc, ApiError):
        status = exc.meta.status
        etype, reason = _api_reason(exc)
        if status == 413:
            return TooLarge(reason)
        if etype == "media_type_header_exception":
            return Unavailable(
                "version",
                "the server refused this client's major version (install the elasticsearch client of the"
                f" server's major): {reason}",
            )
        if etype == "cluster_block_exception":
            return Unavailable("read_only", f"the cluster is read-only: {reason}")
        if status == 429 or status >= 500:
            return Transient("server", f"Elasticsearch answered {status} {etype or ''}: {reason}")
        return Unavailable("refused", f"Elasticsearch answered {status} {etype or ''}: {reason}")
    if isinstance(exc, elastic_transport.ConnectionTimeout):
        return Transient("timeout", "Elasticsearch did not answer within ELASTICSEARCH_TIMEOUT")
    if isinstance(exc, elastic_transport.TlsError):
        return Unavailable("tls", f"TLS with Elasticsearch failed: {redact_text(str(exc))[:300]}")
    if isinstance(exc, elastic_transport.ConnectionError):
        return Transient("connection", f"cannot connect to Elasticsearch: {redact_text(str(exc))[:300]}")
    return Transient("error", f"{type(exc).__name__}: {redact_text(str(exc))[:300]}")


# Of each item's result only what `bulk.Deliverer` reads: a real server's item also carries its
# index, id, version, shard counts and sequence numbers (~190 bytes, three objects), which the
# client parsed for nothing. Every item keeps its status, so the answer's items stay in order.
BULK_FILTER = "errors,items.*.status,items.*.error"


def bulk_sender(client: AsyncElasticsearch) -> Any:
    async def send(body: bytes) -> dict[str, Any]:
        # The body is the NDJSON bytes already: the client's serializer passes them through.
        response = await client.bulk(operations=body, filter_path=BULK_FILTER)
        return dict(response.body)

    return send
