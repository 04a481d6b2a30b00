"""``Client``: the blocking client. Thread-safe: many threads may share one instance.

Each call waits in the caller's thread for its events (progress callbacks run there too, never on
the I/O thread). A blocking call (``generate``, ``load``, ``ps``, ...) made while no other request
is in flight on this client sends and receives on the caller's thread (``Connection.call``); one
started with ``submit`` or ``stream``, or beside others, goes through the connection's I/O thread.
Every call has a timeout; a dead host raises ``HostDeadError`` within the liveness window instead of
hanging.
"""

from __future__ import annotations

import queue
from typing import Any, Iterator, Mapping

import numpy as np

from modelhost.client import calls
from modelhost.client.protocol import wire
from modelhost.client.protocol.address import default_address, default_token
from modelhost.client.calls import Chunk, GenerateResult, ProgressFn
from modelhost.client.connection import Connection
from modelhost.client.protocol.errors import InternalError, RequestError



class Job:
    """A submitted request: wait for its body with ``wait()`` (``GenerateJob.result()``), stop it with ``cancel()``."""

    def __init__(self, conn: Connection, kind: str, body: dict[str, Any], timeout_s: float, *, blocking: bool = False) -> None:
        """``blocking``: the caller waits for it next (``generate``, control calls): it may run on the caller's thread."""
        self._conn = conn
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._timeout_s = timeout_s
        self._final: tuple | None = None
        self.id = (conn.call if blocking else conn.submit)(kind, body, self._events.put, timeout_s)

    def cancel(self) -> None:
        """Ask the host to stop this request; ``result()`` then raises CancelledError (unless it won the race)."""
        self._conn.cancel(self.id)

    def wait(self, progress: ProgressFn | None = None) -> dict[str, Any]:
        """The result body; raises the request's error. Progress events go to ``progress``."""
        for _ in self._chunks(progress):
            pass
        return self._final_body()

    def _chunks(self, progress: ProgressFn | None) -> Iterator[Chunk]:
        """A streaming request's chunks as they arrive, until its final event (kept in ``_final``)."""
        while self._final is None:
            try:
                event = self._events.get(timeout=self._timeout_s + calls.FINAL_REPLY_GRACE_S)
            except queue.Empty:
                raise InternalError(f"request {self.id} got no final reply; this is a modelhost client bug") from None
            if event[0] == "progress":
                if progress is not None:
                    progress(event[1], event[2])
            elif event[0] == "chunk":
                yield calls.chunk_of(event[1])
            else:
                self._final = event

    def _final_body(self) -> dict[str, Any]:
        assert self._final is not None
        if self._final[0] == "error":
            raise self._final[1]
        return self._final[1]


class GenerateJob(Job):
    """A submitted generate request; ``result()`` gives a ``GenerateResult``."""

    def __init__(self, conn: Connection, model: str, body: dict[str, Any], timeout_s: float, progress: ProgressFn | None,
                 *, blocking: bool = False) -> None:
        self.model = model
        self._progress = progress
        super().__init__(conn, "generate", body, timeout_s, blocking=blocking)

    def result(self) -> GenerateResult:
        return calls.generate_result(self.model, self.wait(self._progress))


class StreamJob(GenerateJob):
    """A streaming generate request: iterate it for ``Chunk``s as the audio is made; ``result()`` (after
    the last chunk, or at once: it skips what is left) is the whole ``GenerateResult``. Raises the
    request's error (CancelledError, DeadlineExceededError, ...) from the iteration. Leaving the loop
    early (break, an exception, ``close()``) cancels the request on the host."""

    def __iter__(self) -> Iterator[Chunk]:
        finished = False
        try:
            yield from self._chunks(self._progress)
            finished = True
        finally:
            if not finished and self._final is None:
                self.cancel()
        self._final_body()  # raises the request's error

    def close(self) -> None:
        """Stop the stream: the host stops generating; a later ``result()`` raises CancelledError."""
        if self._final is None:
            self.cancel()


class Client:
    """Blocking client of a modelhost host.

    ``address`` defaults to $MODELHOST_ADDRESS, else the per-user ipc:// socket the host uses by
    default. ``token`` (or $MODELHOST_TOKEN) is needed only for a host on tcp://. ``server_key`` (or
    $MODELHOST_SERVER_KEY: the host's public key file, or the key's 40 characters) turns on CURVE
    encryption to a TCP host and pins that host; a host off loopback is reached only this way. The
    client's own key is $MODELHOST_CLIENT_KEY (a ``.key_secret`` file), else a fresh one.

    On an ipc:// host (this machine, this user) large arrays travel through shared memory
    (``client.protocol.shm``): a result's audio is then a writable view into the host's memory, held for
    this client until the array (and every view of it) is dropped; take ``.copy()`` to keep audio
    long after. ``shm=False`` (or $MODELHOST_SHM=0) sends frames instead.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        token: str | None = None,
        server_key: str | bytes | None = None,
        timeout_s: float = calls.CONTROL_TIMEOUT_S,
        heartbeat_s: float = 0.5,
        liveness_s: float = 3.0,
        limits: wire.Limits = wire.DEFAULT_LIMITS,
        shm: bool | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self._conn = Connection(
            address or default_address(),
            token=token if token is not None else default_token(),
            heartbeat_s=heartbeat_s,
            liveness_s=liveness_s,
            limits=limits,
            server_key=server_key,
            shm_enabled=shm,
        )

    @property
    def address(self) -> str:
        return self._conn.address.url

    @property
    def shared_memory(self) -> bool:
        """Whether large arrays travel through shared memory with the host now (an ipc:// host that accepted)."""
        return self._conn.shared_memory

    def submit(
        self,
        model: str,
        prompt: str | None = None,
        *,
        audio: np.ndarray | None = None,
        sample_rate: int | None = None,
        params: Mapping[str, Any] | None = None,
        progress: ProgressFn | None = None,
        timeout_s: float | None = None,
        keep_alive_s: float | None = None,
        stream: bool = False,
        stream_interval_s: float | None = None,
    ) -> GenerateJob:
        """Start a generation and return at once; call ``.result()`` to wait, ``.cancel()`` to stop.

        ``progress`` runs in the thread that waits in ``.result()``, as events arrive. With ``stream``
        the job is a ``StreamJob``: iterate it for the audio as it is made, every ``stream_interval_s``
        seconds of audio (default: the model's ``stream_interval_s``, 2 s).
        """
        timeout_s = timeout_s or calls.GENERATE_TIMEOUT_S
        body = calls.generate_body(model, prompt, audio, sample_rate, params, timeout_s, keep_alive_s,
                                   stream, stream_interval_s)
        return (StreamJob if stream else GenerateJob)(self._conn, model, body, timeout_s, progress)

    def stream(
        self,
        model: str,
        prompt: str | None = None,
        *,
        audio: np.ndarray | None = None,
        sample_rate: int | None = None,
        params: Mapping[str, Any] | None = None,
        progress: ProgressFn | None = None,
        timeout_s: float | None = None,
        keep_alive_s: float | None = None,
        interval_s: float | None = None,
    ) -> StreamJob:
        """Generate with the audio delivered as it is made: ``for chunk in client.stream(...)``; see ``StreamJob``."""
        job = self.submit(model, prompt, audio=audio, sample_rate=sample_rate, params=params, progress=progress,
                          timeout_s=timeout_s, keep_alive_s=keep_alive_s, stream=True, stream_interval_s=interval_s)
        assert isinstance(job, StreamJob)
        return job

    def generate(
        self,
        model: str,
        prompt: str | None = None,
        *,
        audio: np.ndarray | None = None,
        sample_rate: int | None = None,
        params: Mapping[str, Any] | None = None,
        progress: ProgressFn | None = None,
        timeout_s: float | None = None,
        keep_alive_s: float | None = None,
    ) -> GenerateResult:
        """Generate audio with ``model``; ``progress(step, total)`` is called as the host reports progress."""
        timeout_s = timeout_s or calls.GENERATE_TIMEOUT_S
        body = calls.generate_body(model, prompt, audio, sample_rate, params, timeout_s, keep_alive_s, False, None)
        return GenerateJob(self._conn, model, body, timeout_s, progress, blocking=True).result()

    def load(self, model: str, *, timeout_s: float | None = None, keep_alive_s: float | None = None) -> dict[str, Any]:
        """Load ``model`` now (instead of on first use); ``keep_alive_s`` may extend (never shorten) its keep-alive."""
        timeout_s = timeout_s or calls.LOAD_TIMEOUT_S
        return self._call("load", calls.model_body(model, timeout_s, keep_alive_s), timeout_s)

    def unload(self, model: str, *, timeout_s: float | None = None) -> dict[str, Any]:
        """Unload ``model``, after the requests already queued for it; returns its status."""
        timeout_s = timeout_s or calls.LOAD_TIMEOUT_S
        return self._call("unload", calls.model_body(model, timeout_s), timeout_s)

    def ps(self, *, timeout_s: float | None = None) -> list[dict[str, Any]]:
        """One status dict per catalog model: state, device, memory, last use, ..."""
        return self._call("ps", {}, timeout_s)["models"]

    def devices(self, *, timeout_s: float | None = None) -> list[dict[str, Any]]:
        """Per device: total, budget, used by models, used by others, free (bytes)."""
        return self._call("ps", {}, timeout_s)["devices"]

    def pin(self, model: str, *, timeout_s: float | None = None) -> dict[str, Any]:
        """Pin ``model``: it is never evicted to make room for another. Returns its status."""
        return self._call("pin", {"model": model, "pinned": True}, timeout_s)

    def unpin(self, model: str, *, timeout_s: float | None = None) -> dict[str, Any]:
        """Unpin ``model``: it may be evicted again. Returns its status."""
        return self._call("pin", {"model": model, "pinned": False}, timeout_s)

    def health(self, *, timeout_s: float | None = None) -> dict[str, Any]:
        """The host's status: ready or not, per-model readiness, queued and running jobs, version."""
        return self._call("health", {}, timeout_s)

    def cancel(self, request_id: int, *, timeout_s: float | None = None) -> bool:
        """Cancel a request by id (see ``GenerateJob.id``); True if the host found it in flight."""
        return bool(self._call("cancel", {"target": request_id}, timeout_s)["cancelled"])

    def _call(self, kind: str, body: dict[str, Any], timeout_s: float | None) -> dict[str, Any]:
        return Job(self._conn, kind, body, timeout_s or self.timeout_s, blocking=True).wait()

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        self._conn.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Client", "GenerateJob", "RequestError", "StreamJob"]
