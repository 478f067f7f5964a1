"""`ApiError`: a client error the API layer finds itself (bad query parameter, bad body, no auth).

A leaf module: the route vocabulary raises it and the error middleware renders it, and neither
needs the other for that.
"""

from __future__ import annotations

from collections.abc import Mapping


def public_field(field: str) -> str:
    # The service layer says "(body)" for the body as a whole; the API names it plainly.
    return "body" if field == "(body)" else field


class ApiError(Exception):
    """A client error found by the API layer itself (bad query parameter, bad body, no auth)."""

    def __init__(
        self,
        status: int,
        errors: list[dict[str, str]],
        *,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.errors = [{"field": public_field(e["field"]), "message": e["message"]} for e in errors]
        self.message = message or "; ".join(f"{e['field']}: {e['message']}" for e in self.errors)
        self.headers = dict(headers or {})
        super().__init__(self.message)

    @classmethod
    def on(cls, status: int, field: str, message: str, headers: Mapping[str, str] | None = None) -> ApiError:
        return cls(status, [{"field": field, "message": message}], headers=headers)
