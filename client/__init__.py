"""modelhost's client SDK: call models resident in a modelhost host from any process.

Light by design (pyzmq, msgpack, numpy; never torch), so every WebUI process can import it::

    from modelhost.client import Client
    with Client() as c:
        result = c.generate("synth", "a calm sine", params={"duration_s": 2.0})
        result.audio, result.sample_rate
"""

from typing import TYPE_CHECKING, Any

from modelhost.client.calls import GenerateResult
from modelhost.client.protocol import errors  # every error class: ``from modelhost.client import errors``
from modelhost.client.protocol.errors import (
    BadParamsError,
    CancelledError,
    DeadlineExceededError,
    HostDeadError,
    HostUnavailableError,
    HostUnreachableError,
    ModelhostError,
    RequestError,
    UnknownModelError,
)
from modelhost.client.sync import Client, GenerateJob

__all__ = [
    "AsyncClient", "BadParamsError", "CancelledError", "Client", "DeadlineExceededError", "GenerateJob",
    "GenerateResult", "HostDeadError", "HostUnavailableError", "HostUnreachableError", "ModelhostError",
    "RequestError", "UnknownModelError", "errors",
]

if TYPE_CHECKING:
    from modelhost.client.aio import AsyncClient


def __getattr__(name: str) -> Any:
    """``AsyncClient`` on first use: importing it pulls in asyncio (~35 ms of a cold start), which a
    synchronous caller never needs."""
    if name == "AsyncClient":
        from modelhost.client.aio import AsyncClient

        return AsyncClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
