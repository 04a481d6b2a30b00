"""The two seams of the host's I/O layer, declared once: ``Front`` (what the I/O thread, the metrics and the
daemon need from whatever decides: ``host.core.Core``, or ``host.ray_front.RayFront``) and ``Outbox`` (how
replies leave: ``host.server.Server``, or ``PlainOutbox`` around a callable).

Types only, plus ``PlainOutbox``; no thread of its own.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Protocol

from modelhost.client.protocol import wire

# reply(peer, kind, request_id, body): sends one message to a client; thread-safe.
Reply = Callable[[bytes, str, int, dict], None]
DEFAULT_TIMEOUT_S = 3600.0  # a request's deadline when it names none


def wait_idle(front: "Front", timeout_s: float) -> bool:
    """Wait until ``front`` has no job queued or running (it publishes ``jobs``); False if ``timeout_s`` passed first."""
    deadline = time.monotonic() + timeout_s
    while front.jobs != (0, 0):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


class Outbox(Protocol):
    """Where replies go. ``send`` encodes in the caller's thread; ``encode`` prepares a reply (a result: its arrays
    placed for the client, off the core's thread) that ``send_encoded`` later sends as is, or ``drop`` discards."""

    def send(self, peer: bytes, kind: str, request_id: int, body: dict[str, Any]) -> None: ...

    def encode(self, peer: bytes, kind: str, request_id: int, body: dict[str, Any]) -> Any: ...

    def send_encoded(self, peer: bytes, encoded: Any) -> None: ...

    def drop(self, encoded: Any) -> None: ...

    def reads_shm(self, peer: bytes) -> bool:
        """Whether ``peer`` maps the host's shared-memory segments (``pool``)."""


class PlainOutbox:
    """An ``Outbox`` over a plain ``reply`` callable (a Ray replica's queue, a test): nothing is encoded early."""

    def __init__(self, reply: Reply) -> None:
        self.send = reply

    def encode(self, peer: bytes, kind: str, request_id: int, body: dict[str, Any]) -> Any:
        return (kind, request_id, body)

    def send_encoded(self, peer: bytes, encoded: Any) -> None:
        self.send(peer, *encoded)

    def drop(self, encoded: Any) -> None:
        pass

    def reads_shm(self, peer: bytes) -> bool:
        return False


def outbox_of(reply: Outbox | Reply) -> Outbox:
    return reply if hasattr(reply, "send_encoded") else PlainOutbox(reply)  # type: ignore[arg-type]


class Front(Protocol):
    """What decides: it takes requests and dead peers, publishes ``rows``/``busy_peers``/``jobs`` for other threads,
    answers ``health``/``ps``/``devices`` from those, and runs the daemon's shutdown steps. Every method is safe
    from any thread."""

    rows: dict[str, dict[str, Any]]  # model -> its ps row (replaced, never mutated)
    busy_peers: frozenset[bytes]  # clients with work in the host (the I/O thread checks their liveness)
    jobs: tuple[int, int]  # (queued, running)

    def start(self) -> None: ...

    def post(self, peer: bytes, msg: wire.Message, received_ns: int) -> None: ...

    def peer_gone(self, peer: bytes) -> None: ...

    def control(self, op: str, timeout_s: float = 30.0) -> bool: ...

    def wait_idle(self, timeout_s: float) -> bool: ...

    def join(self, timeout_s: float) -> None:
        """After ``control("stop")``: wait until the model threads and processes are gone (at most ``timeout_s``)."""

    def health(self) -> dict[str, Any]: ...

    def ps(self) -> list[dict[str, Any]]: ...

    def devices(self) -> list[dict[str, Any]]: ...
