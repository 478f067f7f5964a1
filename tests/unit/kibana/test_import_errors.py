"""How `ispmon kibana-import` words each kind of per-object error Kibana's import API returns."""

from __future__ import annotations

import pytest

from ispmon.search.kibana_import import KibanaTarget, describe_error

VIS = {"type": "visualization", "id": "v1", "meta": {"title": "Active Outages"}}


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (
            {"type": "missing_references", "references": [{"type": "index-pattern", "id": "dv1"}]},
            "visualization v1 ('Active Outages'): missing references: index-pattern dv1",
        ),
        (
            {"type": "conflict", "destinationId": "v1"},
            "visualization v1 ('Active Outages'): conflict (an object with this id exists and was not overwritten)",
        ),
        (
            {"type": "unsupported_type"},
            "visualization v1 ('Active Outages'): unsupported type (this Kibana does not know it)",
        ),
        (
            {"type": "unknown", "statusCode": 400, "message": "Document belongs to a more recent version"},
            "visualization v1 ('Active Outages'): unknown: Document belongs to a more recent version",
        ),
        (
            {"type": "something_new", "detail": 1},
            'visualization v1 (\'Active Outages\'): something_new: {"type": "something_new", "detail": 1}',
        ),
    ],
)
def test_each_error_kind_is_one_line_naming_the_object(error: dict[str, object], line: str) -> None:
    assert describe_error({**VIS, "error": error}) == line


def test_an_error_without_meta_or_error_still_names_what_it_can() -> None:
    assert describe_error({"id": "x"}) == "? x: unknown: {}"


def test_urls_and_headers() -> None:
    plain = KibanaTarget(url="https://k.example/base/")
    assert plain.import_url() == "https://k.example/base/api/saved_objects/_import?overwrite=true"
    assert plain.headers() == {"kbn-xsrf": "ispmon"}
    spaced = KibanaTarget(url="https://k.example", space="noc", api_key="abc")
    assert spaced.import_url() == "https://k.example/s/noc/api/saved_objects/_import?overwrite=true"
    assert spaced.headers()["Authorization"] == "ApiKey abc"
    # The default space has no /s/ prefix; a UTF-8 password is sent as UTF-8.
    assert (
        KibanaTarget(url="http://k", space="default").import_url()
        == "http://k/api/saved_objects/_import?overwrite=true"
    )
    assert KibanaTarget(url="http://k", user="ops", password="pässword").headers()["Authorization"] == (
        "Basic b3BzOnDDpHNzd29yZA=="
    )
