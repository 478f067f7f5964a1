"""Ids derived from names: readable in any script, distinct for distinct names, stable."""

from __future__ import annotations

import hashlib

import pytest

from ispmon.availability.endpoints import SLUG_RE, build_endpoint, numbered_slug, slugify
from ispmon.availability.maintenance import validate_config_windows


def digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:8]


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Core router #1", "core-router-1"),
        ("  API gateway  ", "api-gateway"),
        ("Café Zürich", "cafe-zurich"),  # accents: NFKD and the marks dropped
        ("Straße Łódź", "strasse-lodz"),
        ("Москва-1", "moskva-1"),
        ("Москва-2", "moskva-2"),
        ("Щёлково объект", "shchelkovo-obekt"),
        ("Київ", "kiiv"),
        ("Беларусь Ўзел", "belarus-uzel"),
        ("Αθήνα", "athina"),
        # Nothing to transliterate with: a hash of the name keeps such names apart.
        ("東京", f"endpoint-{digest('東京')}"),
        ("大阪", f"endpoint-{digest('大阪')}"),
        ("東京 core", f"core-{digest('東京 core')}"),
        ("大阪 core", f"core-{digest('大阪 core')}"),
        ("!!!", f"endpoint-{digest('!!!')}"),
    ],
)
def test_slugify(name: str, slug: str) -> None:
    assert slugify(name) == slug
    assert SLUG_RE.match(slug)


def test_long_names_stay_within_64_characters() -> None:
    assert slugify("x" * 100) == "x" * 64
    long_mixed = "東" + "x" * 100
    assert slugify(long_mixed) == "x" * 55 + "-" + digest(long_mixed)
    assert numbered_slug("y" * 64, 12) == "y" * 61 + "-12"
    for slug in (slugify(long_mixed), numbered_slug("y" * 64, 12)):
        assert len(slug) == 64 and SLUG_RE.match(slug)


def test_endpoints_and_windows_derive_their_ids_from_the_name() -> None:
    assert build_endpoint({"name": "Москва-1", "url": "http://127.0.0.1/"}).id == "moskva-1"
    item = {"starts_at": "2030-01-01T00:00Z", "ends_at": "2030-01-02", "all_endpoints": True}
    windows = validate_config_windows([{**item, "name": "東京"}, {**item, "name": "Окно Москва"}], "", set())
    # "mw-<hash>" for a name with nothing readable is the id earlier versions gave it.
    assert [w.id for w in windows] == [f"mw-{digest('東京')}", "okno-moskva"]
