"""Errors the services raise; the API maps them to 404 / 409 / 422 with the field named."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ispmon.validation import error_list, format_errors


class ServiceError(Exception):
    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def errors(self) -> list[dict[str, str]]:
        return [{"field": self.field or "(request)", "message": self.message}]


class NotFoundError(ServiceError):
    status = 404

    def __init__(self, kind: str, ident: object) -> None:
        super().__init__(f"{kind} {ident!r} not found", field=None)


class ConflictError(ServiceError):
    status = 409


class InvalidInput(ServiceError):
    status = 422

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(format_errors(errors), field=errors[0]["field"] if errors else None)
        self._errors = errors

    @classmethod
    def from_validation(cls, exc: ValidationError) -> InvalidInput:
        return cls(error_list(exc))

    def errors(self) -> list[dict[str, str]]:
        return self._errors


def editable(row: Any, kind: str, ident: str, verb: str) -> Any:
    """The row to change through the API or a service: 404 when it does not exist, 409 when the
    config file owns it (the file is re-applied at every start, so a change here would not last)."""
    if row is None:
        raise NotFoundError(kind, ident)
    if row["source"] == "config":
        raise ConflictError(f"{kind} {ident!r} is defined in the config file; {verb} it there", field="id")
    return row
