"""Every failure of the HTTP API as OpenAI's JSON error, with the status that says whose fault it was.

``ApiError`` is raised anywhere in a request's handling and becomes
``{"error": {"message", "type", "param", "code"}}`` with its status (the ElevenLabs SDK reads the same
body as its ``ApiError.body``). ``from_client_error`` maps the host's error codes (``modelhost.client``'s
exception tree) to statuses: 400 bad parameter, 404 unknown model, 503 busy or shutting down or no
host, 504 past its deadline, 500 a failure on the host's side. Runs in the HTTP process's event loop.
"""

from __future__ import annotations

from typing import Any

from modelhost.client.protocol.errors import HostUnavailableError, ModelhostError, RequestError

# host error code -> (HTTP status, OpenAI error type)
_BY_CODE: dict[str, tuple[int, str]] = {
    "bad_params": (400, "invalid_request_error"),
    "bad_request": (400, "invalid_request_error"),
    "too_large": (413, "invalid_request_error"),
    "unknown_model": (404, "invalid_request_error"),
    "unauthorized": (401, "invalid_request_error"),
    "out_of_memory": (503, "server_error"),
    "shutting_down": (503, "server_error"),
    "replica_lost": (503, "server_error"),
    "deadline_exceeded": (504, "server_error"),
    "cancelled": (499, "invalid_request_error"),  # the client went away: nobody reads it
    "load_failed": (500, "server_error"),
    "backend_error": (500, "server_error"),
}


class ApiError(Exception):
    """One request failed; ``body()`` is OpenAI's error object. ``param`` names the field at fault."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 kind: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.kind = kind or ("invalid_request_error" if status < 500 else "server_error")
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def bad_param(param: str, message: str) -> ApiError:
    """400 naming the field: ``message`` says what was wrong and what is allowed."""
    return ApiError(400, message, param=param, code="invalid_value")


def busy(message: str) -> ApiError:
    return ApiError(503, message, code="host_busy", headers={"Retry-After": "1"})


def from_client_error(exc: ModelhostError, fields: dict[str, str] | None = None) -> ApiError:
    """The HTTP error for what the host (or the client library) raised; ``fields`` maps the host's parameter
    names to the request's field names, so a 400 names the field the caller sent (the host's messages
    start with the parameter's name); its ``"model"`` names the field that chose the model."""
    if isinstance(exc, HostUnavailableError):
        return ApiError(503, f"the model host does not answer: {exc}", code="host_unavailable",
                        headers={"Retry-After": "5"})
    if isinstance(exc, RequestError):
        status, kind = _BY_CODE.get(exc.code, (500, "server_error"))
        param = (fields or {}).get("model", "model") if exc.code == "unknown_model" else None
        if exc.code == "bad_params" and fields:
            first = exc.message.split(" ", 1)[0].rstrip(":,")
            param = fields.get(first)
        headers = {"Retry-After": "1"} if status == 503 else None
        return ApiError(status, exc.message, param=param, code=exc.code, kind=kind, headers=headers)
    return ApiError(500, f"{type(exc).__name__}: {exc}", code="internal")
