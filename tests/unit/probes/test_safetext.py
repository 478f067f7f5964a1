"""`target_text`: what a target's bytes may contribute to an error message."""

from __future__ import annotations

import pytest

from ispmon.probes.safetext import TARGET_TEXT_LIMIT, target_text


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("Service Unavailable", "Service Unavailable"),
        ("", ""),
        (b"OK \xff\xfe", "OK \\xff\\xfe"),  # undecodable bytes
        ("line one\r\nline two\tend", "line one\\r\\nline two\\tend"),  # no forged log lines
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),  # no terminal escapes
        ("nul\x00byte", "nul\\x00byte"),  # PostgreSQL cannot store a NUL
        ("lone \udcff surrogate", "lone \\udcff surrogate"),  # nor an unpaired surrogate
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("gr\u00fc\u00dfe \u2713", "gr\u00fc\u00dfe \u2713"),  # printable non-ASCII stays
        (bytearray(b"abc"), "abc"),
    ],
)
def test_escapes_what_is_not_printable(value: str | bytes, shown: str) -> None:
    assert target_text(value) == shown


def test_caps_at_the_limit_without_splitting_an_escape() -> None:
    assert target_text("x" * TARGET_TEXT_LIMIT) == "x" * TARGET_TEXT_LIMIT
    long = target_text("y" * 10_000)
    assert len(long) == TARGET_TEXT_LIMIT and long.endswith("…")
    escapes = target_text("\x00" * 300)
    assert len(escapes) <= TARGET_TEXT_LIMIT and escapes.endswith("\\x00…")
    assert target_text("abcdef", limit=4) == "abc…"


def test_is_idempotent_on_its_own_output() -> None:
    once = target_text(b"\x00\x1b[1m" + b"z" * 500)
    assert target_text(once) == once
