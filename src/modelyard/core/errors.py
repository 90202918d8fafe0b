"""Domain errors. Each carries a stable machine code and an HTTP status, mapped in one place
(server/app.py for the native API, routers/compat/envelope.py for seed routes)."""

from __future__ import annotations

from typing import Any


class ModelyardError(Exception):
    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            err["details"] = self.details
        return err


class BadRequest(ModelyardError):
    status, code = 400, "bad_request"


class InvalidPath(BadRequest):
    code = "invalid_path"


class Unauthorized(ModelyardError):
    status, code = 401, "unauthorized"


class Forbidden(ModelyardError):
    status, code = 403, "forbidden"


class QuotaExceeded(ModelyardError):
    """A request that would take a user (or a node) past what it may hold."""

    status, code = 403, "quota_exceeded"


class NotFound(ModelyardError):
    status, code = 404, "not_found"


class Conflict(ModelyardError):
    status, code = 409, "conflict"


class InUse(Conflict):
    code = "in_use"


class PayloadTooLarge(ModelyardError):
    status, code = 413, "payload_too_large"


class RangeNotSatisfiable(ModelyardError):
    status, code = 416, "range_not_satisfiable"


class Unprocessable(ModelyardError):
    status, code = 422, "unprocessable"
