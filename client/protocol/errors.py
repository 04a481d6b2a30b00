"""Error codes and the exception tree shared by the host and every client.

Two families, as a caller needs to tell them apart:

* ``RequestError`` and its subclasses: one request failed and said why (a code and a message that
  says what to fix). The host is fine; the next request may succeed.
* ``HostUnavailableError`` and its subclasses: no host answers (``HostUnreachableError``: none was
  ever reached at this address) or the host stopped answering mid-request (``HostDeadError``).

The host raises the same ``RequestError`` subclasses internally; the worker turns them into error
replies, and the client turns error replies back into the same classes via ``error_from_reply``.
"""

from __future__ import annotations


class ModelhostError(Exception):
    """Base class of every error this package raises."""


class RequestError(ModelhostError):
    """One request failed; the host keeps serving. ``code`` is a stable machine-readable string."""

    code = "internal"

    def __init__(self, message: str, *, code: str | None = None, request_id: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.request_id = request_id

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class BadRequestError(RequestError):
    """The message could not be decoded or has a wrong field (a client bug, or garbage)."""

    code = "bad_request"


class TooLargeError(RequestError):
    """The message is over the size or frame-count limit."""

    code = "too_large"


class VersionMismatchError(RequestError):
    """The peer speaks another protocol version: upgrade the older side."""

    code = "version_mismatch"


class UnknownKindError(RequestError):
    """The message kind is not one this protocol version knows."""

    code = "unknown_kind"


class DuplicateIdError(RequestError):
    """The request reused the id of one of the same client's requests that has not finished."""

    code = "duplicate_id"


class UnauthorizedError(RequestError):
    """A TCP host requires a token and the request carried none or a wrong one."""

    code = "unauthorized"


class UnknownModelError(RequestError):
    """The model name is not in the host's catalog."""

    code = "unknown_model"


class BadParamsError(RequestError):
    """A generation parameter is unknown, of the wrong type, or out of range."""

    code = "bad_params"


class LoadFailedError(RequestError):
    """The model could not be loaded (missing file, bad checkpoint, ...)."""

    code = "load_failed"


class BackendError(RequestError):
    """The backend raised while generating."""

    code = "backend_error"


class OutOfMemoryError(RequestError):
    """The device ran out of memory for this request."""

    code = "out_of_memory"


class CancelledError(RequestError):
    """The request was cancelled (by the caller, or because its client stopped answering)."""

    code = "cancelled"


class DeadlineExceededError(RequestError):
    """The request's deadline passed before it finished (client-side timeout or host deadline)."""

    code = "deadline_exceeded"


class ShuttingDownError(RequestError):
    """The host is shutting down: it takes no new work, and work it could not finish ends with this."""

    code = "shutting_down"


class ReplicaLostError(RequestError):
    """The Ray Serve replica running the request died before it finished (a host on Ray, ``serve --ray``).

    Ray starts a new replica; the request may be sent again. The host itself retries once a request that
    had sent no audio yet, so this reaches the caller only when that retry failed too or audio was streamed."""

    code = "replica_lost"


class RunnerLostError(RequestError):
    """The runner process running the request died before it finished (a crash in the model's code, the OOM killer,
    or the host killing a run that ignored its cancel). The host starts a new runner and retries once a request that
    had sent no audio yet, so this reaches the caller only when audio was already streamed or the retry died too."""

    code = "runner_lost"


class InternalError(RequestError):
    """A bug in the host; the message carries the exception text."""

    code = "internal"


class HostUnavailableError(ModelhostError):
    """No host answered; the request may or may not have run."""


class HostUnreachableError(HostUnavailableError):
    """No host was ever reached at this address."""


class HostDeadError(HostUnavailableError):
    """The host answered before, then stopped answering heartbeats (crashed or killed)."""


class ProtocolError(ModelhostError):
    """The host sent something this client cannot read (a bug or a version skew)."""


_BY_CODE: dict[str, type[RequestError]] = {
    cls.code: cls
    for cls in (
        BadRequestError, TooLargeError, VersionMismatchError, UnknownKindError, DuplicateIdError, UnauthorizedError,
        UnknownModelError, BadParamsError, LoadFailedError, BackendError, OutOfMemoryError,
        CancelledError, DeadlineExceededError, ShuttingDownError, ReplicaLostError, RunnerLostError, InternalError,
    )
}

ERROR_CODES: frozenset[str] = frozenset(_BY_CODE)


def error_from_reply(code: str, message: str, request_id: int | None = None) -> RequestError:
    """The exception for an error reply; an unknown code (a newer host) still raises a RequestError."""
    cls = _BY_CODE.get(code, RequestError)
    return cls(message, code=code, request_id=request_id)
