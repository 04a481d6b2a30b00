"""One HTTP request's generation on the host, and its audio back as the response: the API's only path to the host.

``Generations.respond(job, receive)`` sends the job through the public ``AsyncClient`` (shared memory
on ipc://) and answers one of three ways, decided by the host's first event, so a failure before any
audio still gets its JSON error and status:

* the whole result first (a model that does not stream, or ``stream: false``): one file, with its
  ``Content-Length`` and exact length headers;
* a chunk first (MusicGen/AudioGen streaming): ``StreamedAudio``, a chunked body that carries each
  chunk's encoded bytes as soon as it arrives (a WAV's header says 'length unknown', see ``codec``);
* OpenAI's ``stream_format: "sse"``: ``speech.audio.delta`` events (base64), then ``speech.audio.done``.

A client that goes away is noticed while its request waits (the ASGI ``http.disconnect``) and its
generation is cancelled on the host at once: the awaiting task is cancelled, which the client
library turns into a cancel. Runs in the HTTP process's event loop; encoding runs in worker threads.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from contextlib import suppress
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

import numpy as np
from starlette.responses import Response

from modelhost.client.aio import AsyncClient
from modelhost.client.calls import Chunk, GenerateResult
from modelhost.client.protocol.errors import ModelhostError
from modelhost.host.http_api.bodies import Job
from modelhost.host.http_api.codec import AudioEncoder
from modelhost.host.http_api.errors import ApiError, busy, from_client_error

log = logging.getLogger("modelhost.http")

T = TypeVar("T")
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class ClientGone(Exception):
    """The HTTP client disconnected before its answer was ready; its generation was cancelled."""


class Generations:
    """Runs jobs on the host through one shared ``AsyncClient``; at most ``max_inflight`` at once (more get 503)."""

    def __init__(self, client: AsyncClient, max_inflight: int) -> None:
        self._client = client
        self._max_inflight = max_inflight
        self.inflight = 0

    async def respond(self, job: Job, receive: Receive) -> Response | "StreamedAudio":
        if self.inflight >= self._max_inflight:
            raise busy(f"{self.inflight} generations are running through the HTTP API (its max_inflight); try again shortly")
        self.inflight += 1
        events = self._events(job)
        handed_over = False
        try:
            first = await until_disconnected(receive, anext(events))
            if first[0] == "result":
                result = first[1]
                body = _whole_file(job, result) if _cheap(job, result) else await asyncio.to_thread(_whole_file, job, result)
                return Response(body, media_type=job.fmt.media_type, headers=_audio_headers(job))
            encoder = AudioEncoder(job.fmt, whole=False, speed=job.speed)
            handed_over = True
            pieces = _encoded(first[1], events, encoder)
            if job.sse:
                return StreamedAudio(_sse(pieces), "text/event-stream", {"Cache-Control": "no-cache"}, self._done)
            return StreamedAudio(pieces, job.fmt.media_type, _audio_headers(job), self._done)
        except ModelhostError as exc:
            raise from_client_error(exc, job.fields) from None
        finally:
            if not handed_over:
                await events.aclose()
                self._done()

    def _done(self) -> None:
        self.inflight -= 1

    async def _events(self, job: Job) -> AsyncIterator[tuple[str, Any]]:
        """``("chunk", Chunk)``s as the host streams them, then ``("result", GenerateResult)``; closing it early
        cancels the request on the host."""
        args = dict(audio=job.audio, sample_rate=job.sample_rate, params=job.params)
        if not job.stream:
            yield "result", await self._client.generate(job.model, job.prompt, **args)
            return
        stream = self._client.stream(job.model, job.prompt, interval_s=job.interval_s, **args)
        iterator = stream.__aiter__()
        try:
            async for chunk in iterator:
                yield "chunk", chunk
            yield "result", stream.result
        finally:
            await iterator.aclose()


async def _encoded(first: Chunk, events: AsyncIterator[tuple[str, Any]], encoder: AudioEncoder) -> AsyncIterator[bytes]:
    """The streamed file's bytes: each chunk encoded as it arrives, then what the final result holds past the
    chunks (the host sends the tail with the result) and the encoder's last bytes."""
    sent = first.offset + first.audio.shape[-1]
    yield await asyncio.to_thread(encoder.push, first.audio, first.sample_rate)
    rate = first.sample_rate
    async for kind, item in events:
        if kind == "chunk":
            sent = item.offset + item.audio.shape[-1]
            data = await asyncio.to_thread(encoder.push, item.audio, item.sample_rate)
        else:
            tail: np.ndarray = item.audio[..., sent:]
            data = await asyncio.to_thread(_push_and_finish, encoder, tail, rate)
        if data:
            yield data


def _push_and_finish(encoder: AudioEncoder, tail: np.ndarray, rate: int) -> bytes:
    return (encoder.push(tail, rate) if tail.shape[-1] else b"") + encoder.finish()


_INLINE_MAX_SAMPLES = 16384


def _cheap(job: Job, result: GenerateResult) -> bool:
    """A short result in 16-bit PCM at its own rate: encoding it costs less than a hop to a worker thread."""
    return (job.fmt.codec == "pcm_s16le" and job.fmt.rate_hz in (None, result.sample_rate) and job.speed == 1.0
            and result.audio.size <= _INLINE_MAX_SAMPLES)


def _whole_file(job: Job, result: GenerateResult) -> bytes:
    encoder = AudioEncoder(job.fmt, whole=True, speed=job.speed)
    encoder.push(result.audio, result.sample_rate)
    return encoder.finish()


def _audio_headers(job: Job) -> dict[str, str]:
    ext = {"adts": "aac", "ogg": "opus", "s16le": "pcm", "mulaw": "ulaw", "alaw": "alaw"}.get(job.fmt.container, job.fmt.container)
    return {"Content-Disposition": f'attachment; filename="audio.{ext}"'}


async def _sse(pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """OpenAI's speech events: each piece of the encoded file as base64, then done (an ``error`` event if it fails)."""
    try:
        async for data in pieces:
            if data:
                yield _event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})
    except ModelhostError as exc:
        yield _event({"type": "error", **from_client_error(exc).body()})
        return
    yield _event({"type": "speech.audio.done", "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}})


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


async def until_disconnected(receive: Receive, awaitable: Awaitable[T]) -> T:
    """``awaitable``'s value, unless the HTTP client disconnects first: then it is cancelled (the host cancels
    the request) and ClientGone raises. The request body must have been read already."""
    task = asyncio.ensure_future(awaitable)
    watch = asyncio.ensure_future(_disconnect(receive))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with suppress(asyncio.CancelledError, ModelhostError):
        await task
    raise ClientGone()


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class StreamedAudio:
    """A 200 whose chunked body is ``pieces``, sent as they come. A client that disconnects stops it at once
    (the body task is cancelled and ``pieces`` closed, which cancels the generation on the host); a failure
    after the status went out ends the body early, the only signal HTTP has left (SSE sends an error event)."""

    def __init__(self, pieces: AsyncIterator[bytes], media_type: str, headers: dict[str, str],
                 on_close: Callable[[], None]) -> None:
        self._pieces = pieces
        self._headers = [(b"content-type", media_type.encode())] + [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        self._on_close = on_close

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        body = asyncio.ensure_future(self._send_body(send))
        watch = asyncio.ensure_future(_disconnect(receive))
        try:
            await asyncio.wait({body, watch}, return_when=asyncio.FIRST_COMPLETED)
            if not body.done():
                log.info("an HTTP client left mid-stream; its generation is cancelled")
                body.cancel()
            with suppress(asyncio.CancelledError, OSError):
                await body
        finally:
            watch.cancel()
            await self._pieces.aclose()
            self._on_close()

    async def _send_body(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self._headers})
        try:
            async for data in self._pieces:
                if data:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
        except (ModelhostError, ApiError) as exc:  # the status is sent: end the body short, no final chunk
            log.warning("a streamed response ended early: %s", exc)
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})
