"""Errors as each wire dialect expects them.

One :class:`ApiError` is raised wherever a request goes wrong; the route decides its
shape.  OpenAI routes answer ``{"error": {"message", "type", "param", "code"}}`` (what
the ``openai`` client parses into its exception classes); TEI routes answer
``{"error": ..., "error_type": ...}`` with TEI's status codes (413 validation, 422
tokenizer, 424 backend, 429 overloaded, 503 unhealthy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OPENAI = "openai"
TEI = "tei"

#: OpenAI's ``type`` field by status.
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "server_error",
}
#: TEI's ``error_type`` by status (TEI has no type for 400 other than ``empty``).
_TEI_TYPES = {
    400: "validation",
    401: "unauthorized",
    404: "validation",
    413: "validation",
    422: "tokenizer",
    424: "backend",
    429: "overloaded",
    503: "unhealthy",
}


@dataclass
class ApiError(Exception):
    """A request that cannot be served: status, a message naming the problem, the field.

    ``tei_status`` overrides the status on TEI routes (a model failure is TEI's 424,
    OpenAI's 500); ``retry_after`` (seconds) becomes a ``Retry-After`` header.
    """

    status: int
    message: str
    param: str | None = None
    code: str | None = None
    tei_status: int | None = None
    retry_after: int | None = None

    def __str__(self) -> str:
        return self.message

    def status_for(self, dialect: str) -> int:
        return (self.tei_status or self.status) if dialect == TEI else self.status

    def body(self, dialect: str) -> dict[str, Any]:
        status = self.status_for(dialect)
        if dialect == TEI:
            kind = "empty" if self.code == "empty_input" else _TEI_TYPES.get(status, "backend")
            return {"error": self.message, "error_type": kind}
        return {
            "error": {
                "message": self.message,
                "type": _OPENAI_TYPES.get(status, "server_error"),
                "param": self.param,
                "code": self.code,
            }
        }

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param, code)


def backend_error(message: str) -> ApiError:
    """The model failed (or produced NaN/Inf): 500 on OpenAI routes, TEI's 424."""
    return ApiError(500, message, code="model_error", tei_status=424)
