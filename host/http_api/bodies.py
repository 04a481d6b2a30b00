"""What each endpoint's request asks for, checked, as one ``Job`` for the host.

OpenAI's ``/v1/audio/speech`` JSON, ElevenLabs' ``/v1/sound-generation`` JSON and its speech-to-speech
multipart form become a ``Job``: the model, its prompt or input audio, the model's own parameters (a
JSON body's other fields, TTS-WebUI's ``params`` object, form fields), the output format and speed,
and whether to stream. Every mistake raises ``ApiError`` 400 naming the field; the host checks the
model's parameters and its messages name them too (``fields`` maps them back). Runs in the HTTP
process's event loop (audio decoding in a worker thread).
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from modelhost.host.http_api import formats
from modelhost.host.http_api.codec import DecodeError, decode_audio, decode_pcm_s16le
from modelhost.host.http_api.directory import ModelDirectory, guidance_for
from modelhost.host.http_api.errors import ApiError, bad_param
from modelhost.host.http_api.formats import FormatError, OutputFormat

MAX_INPUT_CHARS = 4096  # OpenAI's own limit on `input`
MAX_UPLOAD_BYTES = 64 << 20
MAX_INPUT_AUDIO_S = 600.0

# OpenAI's fields and TTS-WebUI's additions; any other body field is a model parameter
_SPEECH_FIELDS = {"model", "input", "voice", "response_format", "speed", "stream_format", "stream", "instructions", "params",
                  "stream_interval_s"}
_SOUND_FIELDS = {"text", "duration_seconds", "prompt_influence", "loop", "model_id", "model", "output_format",
                 "stream_interval_s"}
# ElevenLabs' speech-to-speech form fields that mean nothing to a local voice
_STS_IGNORED = {"model_id", "enable_logging", "optimize_streaming_latency", "remove_background_noise", "output_format"}
_VOICE_SETTINGS = {"stability", "similarity_boost", "style", "use_speaker_boost"}


@dataclass
class Job:
    """One generation an HTTP request asks for, and how its audio goes back."""

    model: str
    fmt: OutputFormat
    prompt: str | None = None
    audio: np.ndarray | None = None
    sample_rate: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)  # host parameter -> the request field that set it
    speed: float = 1.0
    stream: bool = True  # send audio as the host makes it (a model that streams); False: one whole file
    interval_s: float | None = None  # seconds of audio per streamed chunk; None: the model's stream_interval_s
    sse: bool = False  # OpenAI's stream_format "sse": base64 audio in server-sent events


async def speech_job(body: Any, directory: ModelDirectory) -> Job:
    """``POST /v1/audio/speech`` (OpenAI; TTS-WebUI's API extension adds ``stream`` and ``params``)."""
    body = _object(body)
    name = _text(body, "model")
    prompt = _text(body, "input")
    if len(prompt) > MAX_INPUT_CHARS:
        raise bad_param("input", f"input is {len(prompt)} characters; at most {MAX_INPUT_CHARS}")
    voice = body.get("voice")
    if voice is not None and not isinstance(voice, str):
        raise bad_param("voice", f"voice must be a string, got {voice!r}")
    if body.get("instructions") is not None and not isinstance(body["instructions"], str):
        raise bad_param("instructions", "instructions must be a string")
    model = await directory.find(name)  # None: not listed, yet the host may serve it on demand (a WebUI's new voice)
    if model is not None and not model.family.takes_text:
        raise bad_param("model", f"{name} converts audio, it does not read text: send the audio to "
                                 f"POST /v1/speech-to-speech/{name} (multipart, field audio)")
    try:
        fmt = formats.openai_format(body.get("response_format", "mp3"))
    except FormatError as exc:
        raise bad_param("response_format", str(exc)) from None
    stream_format = body.get("stream_format", "audio")
    if stream_format not in ("audio", "sse"):
        raise bad_param("stream_format", f"stream_format must be audio or sse, got {stream_format!r}")
    stream = body.get("stream", True)
    if not isinstance(stream, bool):
        raise bad_param("stream", f"stream must be true or false, got {stream!r}")
    params, fields = _params(body, _SPEECH_FIELDS)
    return Job(model=name, fmt=fmt, prompt=prompt, params=params, fields=fields, speed=_speed(body.get("speed", 1.0), "speed"),
               stream=stream or stream_format == "sse", sse=stream_format == "sse", interval_s=_interval(body))


async def sound_job(body: Any, query: Mapping[str, str], directory: ModelDirectory, default_model: str | None) -> Job:
    """``POST /v1/sound-generation`` (ElevenLabs' sound effects; LocalAI's MusicGen shape): the model is the
    body's ``model_id`` or ``model``, else the query's ``model``, else ``[http] sound_model`` or a default."""
    body = _object(body)
    prompt = _text(body, "text")
    if len(prompt) > MAX_INPUT_CHARS:
        raise bad_param("text", f"text is {len(prompt)} characters; at most {MAX_INPUT_CHARS}")
    name = body.get("model_id") or body.get("model") or query.get("model") or await directory.sound_model(default_model)
    if not isinstance(name, str) or not name:
        raise bad_param("model_id", "no model serves sound generation here: name one in model_id")
    model = await directory.find(name)
    if model is not None and not model.family.takes_text:
        raise bad_param("model_id", f"{name} converts audio; sound generation needs a model that reads text")
    family = model.family if model is not None else None
    params, fields = _params(body, _SOUND_FIELDS)
    duration = body.get("duration_seconds")
    if duration is not None:
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration) or duration <= 0:
            raise bad_param("duration_seconds", f"duration_seconds must be a positive number of seconds, got {duration!r}")
        key = family.duration_param if family is not None and family.duration_param else "duration"
        params[key], fields[key] = float(duration), "duration_seconds"
    influence = body.get("prompt_influence")
    if influence is not None:
        if isinstance(influence, bool) or not isinstance(influence, (int, float)) or not 0 <= influence <= 1:
            raise bad_param("prompt_influence", f"prompt_influence must be a number from 0 to 1, got {influence!r}")
        if family is not None and family.guidance_param:  # other models have no guidance to set: ignored
            params[family.guidance_param], fields[family.guidance_param] = guidance_for(float(influence)), "prompt_influence"
    if body.get("loop"):
        raise bad_param("loop", "loop: these models cannot make a seamless loop; leave it false")
    fields["model"] = "model_id"
    return Job(model=name, fmt=_elevenlabs_format(query, body), prompt=prompt, params=params, fields=fields,
               interval_s=_interval(body))


async def voice_change_job(voice_id: str, form: Mapping[str, Any], query: Mapping[str, str],
                           directory: ModelDirectory) -> Job:
    """``POST /v1/speech-to-speech/{voice_id}`` (ElevenLabs' docs) and ``/v1/voice-changer/{voice_id}`` (its
    SDK): multipart ``audio``; other form fields (and ``voice_settings`` keys ElevenLabs does not define) are
    the voice's parameters, e.g. ``f0_up_key=12``."""
    model = await directory.find(voice_id)
    if model is not None and not model.family.takes_audio:
        raise unknown_voice(voice_id)
    upload = form.get("audio")
    if upload is None or isinstance(upload, str):
        raise bad_param("audio", "send the input audio as the multipart file field audio")
    data = await upload.read()
    if not data:
        raise bad_param("audio", "the audio file is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ApiError(413, f"the audio file is over {MAX_UPLOAD_BYTES >> 20} MiB", param="audio", code="too_large")
    file_format = form.get("file_format", "other")
    if file_format not in ("other", "pcm_s16le_16"):
        raise bad_param("file_format", f"file_format must be other or pcm_s16le_16, got {file_format!r}")
    try:
        if file_format == "pcm_s16le_16":
            audio, rate_hz = decode_pcm_s16le(data)
        else:
            audio, rate_hz = await asyncio.to_thread(decode_audio, data, max_seconds=MAX_INPUT_AUDIO_S)
    except DecodeError as exc:
        raise bad_param("audio", f"audio: {exc}") from None
    params: dict[str, Any] = {}
    fields: dict[str, str] = {}
    speed = 1.0
    for key, value in form.items():
        if key in ("audio", "file_format", "voice_settings") or key in _STS_IGNORED:
            continue
        if key == "seed" and model is not None and model.backend == "rvc":
            continue  # ElevenLabs' sampling seed; a voice conversion has none
        params[key], fields[key] = _form_value(value), key
    settings = form.get("voice_settings")
    if settings:
        try:
            decoded = json.loads(settings) if isinstance(settings, str) else None
        except json.JSONDecodeError:
            decoded = None
        if not isinstance(decoded, dict):
            raise bad_param("voice_settings", "voice_settings must be a JSON object (a string in the form)")
        for key, value in decoded.items():
            if key == "speed" and value is not None:
                speed = _speed(value, "voice_settings.speed")
            elif key not in _VOICE_SETTINGS:
                params[key], fields[key] = value, f"voice_settings.{key}"
    fields["model"] = "voice_id"
    return Job(model=voice_id, fmt=_elevenlabs_format(query, form), audio=audio, sample_rate=rate_hz, params=params,
               fields=fields, speed=speed)


def unknown_voice(voice_id: str) -> ApiError:
    return ApiError(404, f"{voice_id!r} is not a voice served here (a voice converts input audio, e.g. an RVC "
                         "model); GET /v1/audio/voices lists them", param="voice_id", code="voice_not_found")


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
    return body


def _text(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        raise bad_param(key, f"{key} is required (a string)")
    if not isinstance(value, str) or not value.strip():
        raise bad_param(key, f"{key} must be a non-empty string, got {value!r}")
    return value


def _speed(value: Any, field_name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.25 <= value <= 4.0:
        raise bad_param(field_name, f"{field_name} must be a number from 0.25 to 4.0, got {value!r}")
    return float(value)


def _interval(body: Mapping[str, Any]) -> float | None:
    value = body.get("stream_interval_s")
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.05 <= value <= 3600):
        raise bad_param("stream_interval_s", f"stream_interval_s must be seconds of audio per chunk, 0.05 to 3600, got {value!r}")
    return None if value is None else float(value)


def _params(body: Mapping[str, Any], known: set[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The model's parameters: TTS-WebUI's ``params`` object, then every field the API itself does not define."""
    nested = body.get("params") or {}
    if not isinstance(nested, dict):
        raise bad_param("params", f"params must be an object of the model's parameters, got {nested!r}")
    params: dict[str, Any] = {}
    fields: dict[str, str] = {}
    for key, value in nested.items():
        params[key], fields[key] = value, f"params.{key}"
    for key, value in body.items():
        if key not in known:
            params[key], fields[key] = value, key
    return params, fields


def _form_value(value: Any) -> Any:
    """A form field's text as JSON when it parses (numbers, true, null), else as text, as `--param` reads it."""
    if not isinstance(value, str):
        raise bad_param("audio", "send exactly one file, in the field audio")
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _elevenlabs_format(query: Mapping[str, str], body: Mapping[str, Any]) -> OutputFormat:
    name = query.get("output_format") or body.get("output_format") or formats.ELEVENLABS_DEFAULT
    try:
        return formats.elevenlabs_format(name)
    except FormatError as exc:
        raise bad_param("output_format", str(exc)) from None
