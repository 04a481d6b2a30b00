"""API keys: every request but ``/health`` carries one of the configured keys, as OpenAI sends it
(``Authorization: Bearer KEY``) or as ElevenLabs does (``xi-api-key: KEY``; with both, either may be the
valid one); otherwise 401 in OpenAI's error shape. No keys configured (a loopback-only server, see
``[http]``): every request passes.

A pure ASGI middleware (no per-request task or body wrapping), so a streamed response and the
disconnect watch see the raw ASGI channel. Runs in the HTTP process's event loop.
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Awaitable, Callable

from modelhost.host.http_api.errors import ApiError

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]
OPEN_PATHS = frozenset({"/health"})


class ApiKeys:
    """ASGI middleware that lets a request through only with one of ``keys`` (all of them when none is set)."""

    def __init__(self, app: ASGIApp, keys: tuple[str, ...]) -> None:
        self.app = app
        self._keys = tuple(k.encode() for k in keys)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self._keys or scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        given = _presented(scope["headers"])
        if not given:
            return await _reject(send, "no API key: send Authorization: Bearer KEY (or xi-api-key: KEY)")
        if not any(hmac.compare_digest(g, key) for g in given for key in self._keys):
            return await _reject(send, "the API key is not one this server accepts")
        return await self.app(scope, receive, send)


def _presented(headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    """The keys a request carries: a bearer token and/or ElevenLabs' header (either one valid lets it in)."""
    keys = []
    for name, value in headers:
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            keys.append(value[7:].strip())
        elif name == b"xi-api-key":
            keys.append(value.strip())
    return keys


async def _reject(send: Any, message: str) -> None:
    error = ApiError(401, message, code="invalid_api_key")
    body = json.dumps(error.body()).encode()
    await send({"type": "http.response.start", "status": 401, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", b"Bearer")]})
    await send({"type": "http.response.body", "body": body})
