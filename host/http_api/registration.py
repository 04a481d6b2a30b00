"""Keeps the host's text models registered with a TTS-WebUI API extension's proxy registry (``--register-with``).

The extension (rsxdalv/tts_webui_extension.openai_tts_api, 1.x) forwards ``POST /v1/audio/speech`` for a
registered model to ``{url}/v1/audio/speech`` (``stream`` true or false, ``response_format`` wav, the
model's parameters in ``params``, a bearer key if one was registered, a 120 s timeout) and fetches
``{url}/v1/audio/voices/{model}``. Its registry lives in memory only, so every ``INTERVAL_S`` this
lists it (``GET /tts_webui/proxy/register``) and registers again each text model it lacks (after a
WebUI restart, or a model the host added), with this server's URL and first API key; at shutdown it
removes its entries. An unreachable WebUI is logged once, and again when it answers. Runs as one
task in the HTTP process's event loop.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from urllib.parse import quote

import httpx

from modelhost.client.protocol.errors import ModelhostError
from modelhost.host.http_api.directory import ModelDirectory
from modelhost.host.http_api.settings import HttpSettings

log = logging.getLogger("modelhost.http.register")

INTERVAL_S = 5.0
_TIMEOUT_S = 10.0
_UNREGISTER_TIMEOUT_S = 3.0


class Registrar:
    """The registration loop for ``settings.register_with``; ``start()`` in the running loop, ``await stop()``."""

    def __init__(self, settings: HttpSettings, directory: ModelDirectory, interval_s: float = INTERVAL_S) -> None:
        assert settings.register_with and settings.register_url
        self._base = settings.register_with
        self._url = settings.register_url
        self._our_key = settings.api_keys[0] if settings.api_keys else None
        self._headers = {"Authorization": f"Bearer {settings.register_key}"} if settings.register_key else {}
        self._directory = directory
        self._interval_s = interval_s
        self._registered: set[str] = set()
        self._problem: str | None = None  # the last failure logged (logged again only when it changes)
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="modelhost-http-register")

    async def stop(self) -> None:
        """End the loop and remove this server's entries from the WebUI (best effort, a few seconds at most)."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        if not self._registered:
            return
        async with httpx.AsyncClient(timeout=_UNREGISTER_TIMEOUT_S, headers=self._headers) as http:
            with suppress(httpx.HTTPError, asyncio.TimeoutError):
                async with asyncio.timeout(_UNREGISTER_TIMEOUT_S):
                    for name in sorted(self._registered):
                        await http.delete(f"{self._base}/tts_webui/proxy/register/{quote(name, safe='')}")

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=_TIMEOUT_S, headers=self._headers) as http:
            while True:
                try:
                    await self.sync(http)
                    if self._problem is not None:
                        log.info("registered with the TTS-WebUI at %s again", self._base)
                    self._problem = None
                except (httpx.HTTPError, ModelhostError, ValueError, KeyError, TypeError) as exc:
                    self._report(_explain(exc, self._base))
                await asyncio.sleep(self._interval_s)

    async def sync(self, http: httpx.AsyncClient) -> None:
        """Register every text model the WebUI's registry lacks (or has with another URL)."""
        listed = await http.get(f"{self._base}/tts_webui/proxy/register")
        listed.raise_for_status()
        ours = {r["model"] for r in listed.json()["registrations"] if str(r.get("url", "")).rstrip("/") == self._url}
        self._registered &= ours
        for model in await self._directory.all():
            if not model.family.takes_text or model.name in ours:
                continue
            reply = await http.post(f"{self._base}/tts_webui/proxy/register",
                                    json={"model": model.name, "url": self._url, "api_key": self._our_key})
            reply.raise_for_status()
            self._registered.add(model.name)
            log.info("registered %s with the TTS-WebUI at %s", model.name, self._base)

    def _report(self, problem: str) -> None:
        if problem != self._problem:
            log.warning("%s; trying again every %.0f s", problem, self._interval_s)
        self._problem = problem


def _explain(exc: Exception, base: str) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        if status == 401:
            return f"the TTS-WebUI at {base} refused the key (401): set MODELHOST_REGISTER_KEY or [http] register_key_file"
        if status == 404:
            return (f"the TTS-WebUI at {base} has no proxy registry (404 on /tts_webui/proxy/register): its OpenAI API "
                    "extension needs version 1.x")
        return f"the TTS-WebUI at {base} answered {status}: {exc.response.text[:200]}"
    if isinstance(exc, httpx.HTTPError):
        return f"cannot reach the TTS-WebUI at {base} ({type(exc).__name__}: {exc})"
    if isinstance(exc, ModelhostError):
        return f"cannot list the host's models to register them ({exc})"
    return f"the TTS-WebUI at {base} answered something unexpected ({type(exc).__name__}: {exc})"
