"""Text that came from a target, made safe for the history, the logs and alert messages.

A target decides what it sends: a reason phrase, a redirect URL, a parser's quote of a status
line, a TXT record. Put into an error message as is, that text can be megabytes long, carry
terminal escape sequences or newlines that forge log lines, or hold a NUL that PostgreSQL refuses
to store (which would fail the whole history batch). `target_text` is the one place that turns
such bytes into a short, printable string; every probe builds its error text with it.
"""

from __future__ import annotations

# What one piece of target-derived text may contribute to an error message.
TARGET_TEXT_LIMIT = 200
# The whole error text of one result (our words plus target text), checked once in run_attempt.
ERROR_TEXT_LIMIT = 500
_ELLIPSIS = "…"
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def target_text(value: str | bytes | bytearray | memoryview, limit: int = TARGET_TEXT_LIMIT) -> str:
    """`value` with every non-printable character escaped (``\\n``, ``\\x1b``, ``\\udcff``), cut to
    at most `limit` characters (an escape is never split; a cut ends with "…").

    Bytes are decoded as UTF-8, undecodable bytes shown as ``\\xNN``. Printable text passes
    unchanged, so applying this twice changes nothing the first pass did not.
    """
    if not isinstance(value, str):
        value = bytes(value).decode("utf-8", "backslashreplace")
    if len(value) <= limit and value.isprintable():
        return value  # the common case: nothing to escape, nothing to cut
    out: list[str] = []
    used = 0
    for char in value:
        piece = char if char.isprintable() else _escape(char)
        if used + len(piece) > limit:
            # Cut: drop whole pieces until the ellipsis fits too.
            while out and used + len(_ELLIPSIS) > limit:
                used -= len(out.pop())
            out.append(_ELLIPSIS)
            break
        out.append(piece)
        used += len(piece)
    return "".join(out)
