"""The host's models as the HTTP API sees them: names and families from ``ps``, refreshed every few seconds.

A family says what a model takes (text, input audio) and what ElevenLabs' fields mean for it (the
parameter a ``duration_seconds`` sets, the one ``prompt_influence`` sets). Models the host adds later
(a TTS-WebUI's new voices) appear at the next refresh, or at once when a request names them. Runs in
the HTTP process's event loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from modelhost.client.aio import AsyncClient


@dataclass(frozen=True)
class Family:
    """What a backend's models take, and its names for the parameters the HTTP shapes set."""

    takes_text: bool = True
    takes_audio: bool = False
    duration_param: str | None = None  # set by ElevenLabs' duration_seconds
    guidance_param: str | None = None  # set by ElevenLabs' prompt_influence


FAMILIES: dict[str, Family] = {
    "musicgen": Family(duration_param="duration", guidance_param="cfg_coef"),
    "audiogen": Family(duration_param="duration", guidance_param="cfg_coef"),
    "rvc": Family(takes_text=False, takes_audio=True),
    "synth": Family(takes_audio=True, duration_param="duration_s"),
}
UNKNOWN_FAMILY = Family()  # a custom backend: text in, its parameters passed as given


def guidance_for(prompt_influence: float) -> float:
    """ElevenLabs' prompt_influence (0..1, default 0.3) as classifier-free guidance: 0.3 is MusicGen's own
    default of 3, 0 is 1 (no guidance beyond the conditioning), 1 is about 7.7."""
    return 1.0 + prompt_influence * 20.0 / 3.0


@dataclass(frozen=True)
class ServedModel:
    name: str
    backend: str
    state: str

    @property
    def family(self) -> Family:
        return FAMILIES.get(self.backend, UNKNOWN_FAMILY)


class ModelDirectory:
    """``find(name)`` and ``all()`` from the host's ``ps``, at most ``ttl_s`` old; a miss refreshes once
    (at most every ``miss_refresh_s``, so a stream of bad names does not flood the host)."""

    def __init__(self, client: AsyncClient, *, ttl_s: float = 5.0, miss_refresh_s: float = 0.5) -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._miss_refresh_s = miss_refresh_s
        self._models: dict[str, ServedModel] = {}
        self._read_at_s = -1e9

    async def all(self) -> list[ServedModel]:
        if time.monotonic() - self._read_at_s > self._ttl_s:
            await self.refresh()
        return list(self._models.values())

    async def find(self, name: str) -> ServedModel | None:
        await self.all()
        if name not in self._models and time.monotonic() - self._read_at_s > self._miss_refresh_s:
            await self.refresh()
        return self._models.get(name)

    async def refresh(self) -> None:
        rows: list[dict[str, Any]] = await self._client.ps(timeout_s=10)
        self._models = {r["name"]: ServedModel(r["name"], str(r.get("backend", "")), str(r.get("state", ""))) for r in rows}
        self._read_at_s = time.monotonic()

    async def sound_model(self, configured: str | None) -> str | None:
        """The model that serves /v1/sound-generation when a request names none: ``[http] sound_model``,
        else the first AudioGen model, else the first MusicGen, else the first model that takes text."""
        if configured:
            return configured
        models = await self.all()
        for backend in ("audiogen", "musicgen"):
            for m in models:
                if m.backend == backend:
                    return m.name
        return next((m.name for m in models if m.family.takes_text), None)
