"""The HTTP API's routes (Starlette): OpenAI's audio shapes, ElevenLabs' sound effects and speech-to-speech,
and TTS-WebUI's voice lists, each a thin handler: request -> ``bodies`` -> ``generation`` -> response.

=============================================  =========================================================
``GET  /v1/models``                            OpenAI's model list: every model the host serves
``GET  /v1/audio/models``                      the same, as TTS-WebUI's API extension lists them
``GET  /v1/audio/voices``                      the voices (models that convert input audio, e.g. RVC)
``GET  /v1/audio/voices/{model}``              one model's voices, ``[{"value", "label"}]`` (TTS-WebUI)
``POST /v1/audio/speech``                      OpenAI: text (a prompt) to audio, streamed as it is made
``POST /v1/sound-generation``                  ElevenLabs: sound effects from text
``POST /v1/speech-to-speech/{voice_id}``       ElevenLabs (its docs): multipart ``audio`` through a voice
``POST /v1/voice-changer/{voice_id}``          the same, as ElevenLabs' Python SDK calls it (and ``/stream``)
``GET  /health``                               the host's readiness (no key needed)
=============================================  =========================================================

Voice ids hold slashes (``voices/alice``): the path takes them as they are. Runs in the HTTP process's
event loop (``host.http_api.__main__`` serves it with uvicorn).
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from modelhost.client.aio import AsyncClient
from modelhost.client.protocol.errors import ModelhostError
from modelhost.host.http_api import bodies
from modelhost.host.http_api.auth import ApiKeys
from modelhost.host.http_api.directory import ModelDirectory
from modelhost.host.http_api.errors import ApiError, from_client_error
from modelhost.host.http_api.generation import ClientGone, Generations
from modelhost.host.http_api.settings import HttpSettings

MAX_JSON_BYTES = 1 << 20


class Api:
    """The routes' shared state: one client of the host, the model directory, the running generations."""

    def __init__(self, settings: HttpSettings, client: AsyncClient) -> None:
        self.settings = settings
        self.client = client
        self.directory = ModelDirectory(client)
        self.generations = Generations(client, settings.max_inflight)

    async def models(self, request: Request) -> Response:
        models = await self.directory.all()
        return JSONResponse({"object": "list", "data": [
            {"id": m.name, "object": "model", "created": 0, "owned_by": "modelhost", "backend": m.backend} for m in models]})

    async def audio_models(self, request: Request) -> Response:
        return JSONResponse({"models": [{"id": m.name} for m in await self.directory.all()]})

    async def voices(self, request: Request) -> Response:
        voices = [m.name for m in await self.directory.all() if m.family.takes_audio and not m.family.takes_text]
        return JSONResponse({"voices": [{"voice_id": v, "id": v, "name": v} for v in voices]})

    async def model_voices(self, request: Request) -> Response:
        name = request.path_params["model"]
        model = await self.directory.find(name)
        if model is None:
            raise ApiError(404, f"the model {name!r} is not served here", param="model", code="model_not_found")
        voice = name if not model.family.takes_text else "default"
        return JSONResponse({"voices": [{"value": voice, "label": voice}]})

    async def speech(self, request: Request) -> Any:
        job = await bodies.speech_job(await _json(request), self.directory)
        return await self.generations.respond(job, request.receive)

    async def sound(self, request: Request) -> Any:
        job = await bodies.sound_job(await _json(request), request.query_params, self.directory, self.settings.sound_model)
        return await self.generations.respond(job, request.receive)

    async def voice_change(self, request: Request) -> Any:
        voice_id = request.path_params["voice_id"]
        if voice_id.endswith("/stream") and await self.directory.find(voice_id) is None:
            voice_id = voice_id[: -len("/stream")]  # ElevenLabs' streaming variant: the same answer, streamed when it can be
        _check_length(request, bodies.MAX_UPLOAD_BYTES)
        async with request.form(max_files=1, max_fields=64) as form:
            job = await bodies.voice_change_job(voice_id, form, request.query_params, self.directory)
        return await self.generations.respond(job, request.receive)

    async def health(self, request: Request) -> Response:
        health = await self.client.health(timeout_s=5)
        status = 200 if health.get("ready") else 503
        return JSONResponse({"ready": bool(health.get("ready")), "jobs": health.get("jobs"),
                             "http_inflight": self.generations.inflight}, status_code=status)


async def _json(request: Request) -> Any:
    _check_length(request, MAX_JSON_BYTES)
    raw = await request.body()
    if len(raw) > MAX_JSON_BYTES:
        raise ApiError(413, f"the request body is over {MAX_JSON_BYTES} bytes", code="too_large")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not JSON: {exc}", code="invalid_json") from None


def _check_length(request: Request, limit: int) -> None:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ApiError(413, f"the request body ({length} bytes) is over the limit of {limit} bytes", code="too_large")


def create_app(settings: HttpSettings) -> Any:
    """The ASGI app: routes, OpenAI-shaped errors, the API keys in front; the host client opens at start-up
    and closes at shutdown (with the TTS-WebUI registration, when asked for)."""
    state: dict[str, Api] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = AsyncClient(settings.host_address, token=settings.host_token, server_key=settings.host_server_key)
        api = state["api"] = Api(settings, client)
        registrar = None
        if settings.register_with:
            from modelhost.host.http_api.registration import Registrar

            registrar = Registrar(settings, api.directory)
            registrar.start()
        try:
            yield
        finally:
            if registrar is not None:
                await registrar.stop()
            await client.close()

    def route(name: str):
        async def handler(request: Request) -> Any:
            try:
                return await getattr(state["api"], name)(request)
            except ModelhostError as exc:
                raise from_client_error(exc) from None
            except ClientGone:
                return Response(status_code=499)
        return handler

    routes = [
        Route("/v1/models", route("models"), methods=["GET"]),
        Route("/v1/audio/models", route("audio_models"), methods=["GET"]),
        Route("/v1/audio/voices", route("voices"), methods=["GET"]),
        Route("/v1/audio/voices/{model:path}", route("model_voices"), methods=["GET"]),
        Route("/v1/audio/speech", route("speech"), methods=["POST"]),
        Route("/v1/sound-generation", route("sound"), methods=["POST"]),
        Route("/v1/speech-to-speech/{voice_id:path}", route("voice_change"), methods=["POST"]),
        Route("/v1/voice-changer/{voice_id:path}", route("voice_change"), methods=["POST"]),
        Route("/health", route("health"), methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        ApiError: _api_error, HTTPException: _http_error, Exception: _internal_error})
    return ApiKeys(app, settings.api_keys)


async def _api_error(request: Request, exc: ApiError) -> Response:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    message = {404: f"no such endpoint: {request.method} {request.url.path}",
               405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
    return await _api_error(request, ApiError(exc.status_code, message, code="not_found" if exc.status_code == 404 else None))


async def _internal_error(request: Request, exc: Exception) -> Response:
    """A bug: the client gets a 500 in the same shape; Starlette then re-raises it, and uvicorn logs its traceback."""
    return await _api_error(request, ApiError(500, f"internal error: {type(exc).__name__}: {exc}", code="internal"))
