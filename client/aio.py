"""``AsyncClient``: the asyncio client, with the same method names and results as ``Client``.

Events from the shared I/O thread are handed to the event loop with ``call_soon_threadsafe``.
Cancelling the awaiting task (``task.cancel()``, ``asyncio.wait_for``) cancels the request on
the host too.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Mapping

import numpy as np

from modelhost.client import calls
from modelhost.client.protocol import wire
from modelhost.client.protocol.address import default_address, default_token
from modelhost.client.calls import Chunk, GenerateResult, ProgressFn
from modelhost.client.connection import Connection
from modelhost.client.protocol.errors import InternalError


class AsyncClient:
    """asyncio client of a modelhost host; see ``Client`` for the arguments."""

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

    async def generate(
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
        """Generate audio with ``model``; ``progress(step, total)`` runs in the event loop."""
        timeout_s = timeout_s or calls.GENERATE_TIMEOUT_S
        body = calls.generate_body(model, prompt, audio, sample_rate, params, timeout_s, keep_alive_s)
        return calls.generate_result(model, await self._call("generate", body, timeout_s, progress))

    async def load(self, model: str, *, timeout_s: float | None = None, keep_alive_s: float | None = None) -> dict[str, Any]:
        timeout_s = timeout_s or calls.LOAD_TIMEOUT_S
        return await self._call("load", calls.model_body(model, timeout_s, keep_alive_s), timeout_s)

    async def unload(self, model: str, *, timeout_s: float | None = None) -> dict[str, Any]:
        timeout_s = timeout_s or calls.LOAD_TIMEOUT_S
        return await self._call("unload", calls.model_body(model, timeout_s), timeout_s)

    async def ps(self, *, timeout_s: float | None = None) -> list[dict[str, Any]]:
        return (await self._call("ps", {}, timeout_s))["models"]

    async def devices(self, *, timeout_s: float | None = None) -> list[dict[str, Any]]:
        return (await self._call("ps", {}, timeout_s))["devices"]

    async def pin(self, model: str, *, timeout_s: float | None = None) -> dict[str, Any]:
        return await self._call("pin", {"model": model, "pinned": True}, timeout_s)

    async def unpin(self, model: str, *, timeout_s: float | None = None) -> dict[str, Any]:
        return await self._call("pin", {"model": model, "pinned": False}, timeout_s)

    async def health(self, *, timeout_s: float | None = None) -> dict[str, Any]:
        return await self._call("health", {}, timeout_s)

    async def cancel(self, request_id: int, *, timeout_s: float | None = None) -> bool:
        return bool((await self._call("cancel", {"target": request_id}, timeout_s))["cancelled"])

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
    ) -> "AsyncStream":
        """Generate with the audio delivered as it is made: ``async for chunk in client.stream(...)``;
        afterwards ``.result`` is the whole ``GenerateResult``. Leaving the loop early cancels the request."""
        timeout_s = timeout_s or calls.GENERATE_TIMEOUT_S
        body = calls.generate_body(model, prompt, audio, sample_rate, params, timeout_s, keep_alive_s, True, interval_s)
        return AsyncStream(self, model, body, timeout_s, progress)

    async def _call(
        self, kind: str, body: dict[str, Any], timeout_s: float | None, progress: ProgressFn | None = None
    ) -> dict[str, Any]:
        async for event in self._events(kind, body, timeout_s, progress):
            if event[0] == "result":
                return event[1]
        raise InternalError("a request ended without a final reply; this is a modelhost client bug")

    async def _events(
        self, kind: str, body: dict[str, Any], timeout_s: float | None, progress: ProgressFn | None
    ) -> AsyncIterator[tuple]:
        """A request's ``("chunk", Chunk)`` events, then ``("result", body)``; raises its error; cancels it
        on the host when the consumer stops early (task cancelled, loop left)."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def sink(event: tuple) -> None:
            try:
                loop.call_soon_threadsafe(events.put_nowait, event)
            except RuntimeError:
                pass  # the loop closed while the request was in flight: nobody is waiting

        timeout_s = timeout_s or self.timeout_s
        request_id = self._conn.submit(kind, body, sink, timeout_s)
        final = False
        try:
            while True:
                try:
                    event = await asyncio.wait_for(events.get(), timeout_s + calls.FINAL_REPLY_GRACE_S)
                except asyncio.TimeoutError:
                    raise InternalError(f"request {request_id} got no final reply; this is a modelhost client bug") from None
                if event[0] == "progress":
                    if progress is not None:
                        progress(event[1], event[2])
                elif event[0] == "chunk":
                    yield ("chunk", calls.chunk_of(event[1]))
                elif event[0] == "error":
                    final = True
                    raise event[1]
                else:
                    final = True
                    yield event
                    return
        finally:
            if not final:
                self._conn.cancel(request_id)

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        await asyncio.get_running_loop().run_in_executor(None, self._conn.close)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncStream:
    """A streaming generate request: ``async for chunk in stream`` gives ``Chunk``s as the audio is made;
    then ``result`` is the whole ``GenerateResult``. Errors (CancelledError, DeadlineExceededError, ...)
    raise from the loop."""

    def __init__(self, client: AsyncClient, model: str, body: dict[str, Any], timeout_s: float,
                 progress: ProgressFn | None) -> None:
        self.model = model
        self.result: GenerateResult | None = None
        self._events = client._events("generate", body, timeout_s, progress)

    async def __aiter__(self) -> AsyncIterator[Chunk]:
        try:
            async for event in self._events:
                if event[0] == "chunk":
                    yield event[1]
                else:
                    self.result = calls.generate_result(self.model, event[1])
        finally:
            await self._events.aclose()
