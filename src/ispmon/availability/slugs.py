"""Ids: the slug every id must be, and readable slugs derived from names in any script.

Endpoints, maintenance windows, rules, channels, devices and customers all take their ids from
here, so that an id means the same thing wherever a user types one.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$")
# How the OpenAPI document describes a field the validators check against SLUG_RE (their messages
# are ours, so the pattern is documentation only, not a pydantic constraint).
SLUG_SCHEMA = {"pattern": SLUG_RE.pattern}

# Letters with no ASCII decomposition, to Latin: Cyrillic (Russian, Ukrainian, Belarusian; ICAO
# 9303, the passport scheme, with the hard sign dropped like the soft one), Greek (ELOT 743) and
# the Latin letters NFKD leaves alone. ISP staff name things in their own language, and an id
# should still read like the name ("Москва-1" -> "moskva-1"). Scripts without a short table (CJK,
# Arabic, ...) get a hash suffix instead.
_TRANSLITERATION = str.maketrans(
    {
        **dict(zip("абвгдезиклмнопрстуфыэіґ", "abvgdeziklmnoprstufyeig", strict=True)),
        **{"ж": "zh", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ь": ""},
        **{"ю": "iu", "я": "ia", "є": "ie"},
        **dict(zip("αβγδεζηικλμνξοπρσςτυφω", "avgdeziiklmnxoprsstyfo", strict=True)),
        **{"θ": "th", "χ": "ch", "ψ": "ps"},
        **{"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "đ": "d", "ð": "d", "ł": "l", "þ": "th", "ı": "i"},
    }
)
_SLUG_HASH_LENGTH = 8


def slugify(name: str, fallback: str = "endpoint") -> str:
    """A readable id derived from a name: "Core router #1" -> "core-router-1", "Café" -> "cafe",
    "Москва-1" -> "moskva-1". When letters had to be dropped ("東京", "東京 core") a short hash
    of the name is appended ("endpoint-1a2b3c4d", "core-5e6f7a8b"), so that names which differ
    only in those letters still get different ids. The same name always gives the same id."""
    name = unicodedata.normalize("NFC", name.strip())
    # NFKD splits accented letters into a base letter and combining marks, which are dropped.
    decomposed = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    text = decomposed.lower().translate(_TRANSLITERATION)
    dropped = any(c.isalnum() and not c.isascii() for c in text)
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    if not dropped and slug:
        return slug[:64].strip("-")
    digest = hashlib.sha256(name.encode()).hexdigest()[:_SLUG_HASH_LENGTH]
    base = slug[: 64 - _SLUG_HASH_LENGTH - 1].strip("-") or fallback
    return f"{base}-{digest}"


def numbered_slug(slug: str, number: int) -> str:
    """`slug` with "-<number>" appended, still within the 64 characters of an id."""
    suffix = f"-{number}"
    return slug[: 64 - len(suffix)].strip("-_") + suffix
