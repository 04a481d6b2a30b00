"""TTS-WebUI's call parameters -> a host request, and a host result -> what TTS-WebUI expects back.

Pure numpy (no torch at import, no sockets). The parameter names and shapes are TTS-WebUI's:

* MusicGen/AudioGen ``generate(text, melody, model_name, duration, topk, topp, temperature, cfg_coef,
  use_multi_band_diffusion, **kwargs)`` (``seed`` arrives in kwargs as a string, from a Textbox)
  returns ``{"audio_out": (sample_rate, float32 (T,) or (T, 2)), "tokens": tensor or None}``;
* MAGNeT ``generate(model_name, text, decoding_steps_1, decoding_steps_2, decoding_steps_3,
  decoding_steps_4, **kwargs)`` (kwargs: ``seed`` as a string, ``use_sampling``, ``top_k`` (a Number:
  a float), ``top_p``, ``temperature``, ``max_cfg_coef``, ``min_cfg_coef``, ``span_arrangement``)
  returns ``{"audio_out": (sample_rate, float32 (T,)), "tokens": (1, 4, T) tensor}``;
* RVC ``run_rvc(pitch_up_key, original_audio_path, index_path, pitch_collection_method, model_path,
  index_rate, filter_radius, resample_sr, rms_mix_rate, protect, **kwargs)`` returns
  ``{"audio_out": (sample_rate, int16 (T,))}``.

Where a WebUI control allows more than the host's range but means the same thing, the value is
mapped here (top-p above 1 keeps every token, as 1 does; RVC resampling below 16 kHz means "keep the
voice's rate"), so a WebUI setting never fails only because it went through the host.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

MUSICGEN_ARGS = ("text", "melody", "model_name", "duration", "topk", "topp", "temperature", "cfg_coef",
                 "use_multi_band_diffusion")
RVC_ARGS = ("pitch_up_key", "original_audio_path", "index_path", "pitch_collection_method", "model_path",
            "index_rate", "filter_radius", "resample_sr", "rms_mix_rate", "protect")
MAGNET_ARGS = ("model_name", "text", "decoding_steps_1", "decoding_steps_2", "decoding_steps_3", "decoding_steps_4")
ARG_ORDER = {"musicgen": MUSICGEN_ARGS, "magnet": MAGNET_ARGS, "rvc": RVC_ARGS}
MODEL_KEY = {"musicgen": "model_name", "magnet": "model_name", "rvc": "model_path"}
# The MAGNeT tab's defaults (magnet_tab.py): what a call that leaves one out means.
MAGNET_DEFAULTS = {"decoding_steps_1": 80, "decoding_steps_2": 40, "decoding_steps_3": 40, "decoding_steps_4": 20,
                   "use_sampling": True, "top_k": 0, "top_p": 0.95, "temperature": 1.0, "max_cfg_coef": 20.0,
                   "min_cfg_coef": 1.0, "span_arrangement": "nonoverlap"}
MELODY_MAX_S = 30  # MusicGen's segment: the WebUI cuts the melody to it before generate_with_chroma
RESAMPLE_MIN_HZ = 16000  # RVC resamples only to 16 kHz and above; lower values mean "keep the voice's rate"


class InputError(ValueError):
    """A parameter the WebUI passed cannot be used; the message says which and what to change."""


@dataclass(frozen=True)
class HostCall:
    """One generate request for the host: everything except the model name."""

    prompt: str | None
    params: dict[str, Any]
    audio: np.ndarray | None = None
    sample_rate: int | None = None
    notes: list[str] = field(default_factory=list)


def call_kwargs(kind: str, args: tuple, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The call's parameters by name: positional arguments take TTS-WebUI's parameter order."""
    named = dict(zip(ARG_ORDER[kind], args))
    named.update(kwargs)
    return named


def musicgen_call(kw: Mapping[str, Any], wants_melody: bool, wants_tokens: bool) -> HostCall:
    """A MusicGen/AudioGen request. ``wants_melody``: the model is a melody model (the WebUI sends the
    melody only then, and ignores it otherwise)."""
    params: dict[str, Any] = {
        "duration": _number(kw, "duration", 10.0),
        "top_k": int(_number(kw, "topk", 250)),
        "top_p": min(_number(kw, "topp", 0.0), 1.0),
        "temperature": _number(kw, "temperature", 1.0),
        "cfg_coef": _number(kw, "cfg_coef", 3.0),
        "seed": _seed(kw.get("seed")),
        "use_multi_band_diffusion": bool(kw.get("use_multi_band_diffusion") or False),
    }
    if wants_tokens:
        params["return_tokens"] = True
    else:  # AudioGen: the WebUI skips multi-band diffusion for it ("not supported for AudioGen")
        params["use_multi_band_diffusion"] = False
    text = kw.get("text")
    if text is not None and not isinstance(text, str):
        raise InputError(f"text must be a string, got {type(text).__name__}")
    melody = kw.get("melody")
    if melody is None or not wants_melody:
        return HostCall(prompt=text or "", params=params)
    rate, samples = _gradio_audio(melody, "melody")
    if samples.dtype.kind == "i":  # Gradio's numpy audio is int16 (or int32) PCM: send [-1, 1] floats
        samples = samples.astype(np.float32) / float(np.iinfo(samples.dtype).max + 1)
    samples = samples[..., : rate * MELODY_MAX_S]
    return HostCall(prompt=text or "", params=params, audio=samples, sample_rate=rate)


def magnet_call(kw: Mapping[str, Any]) -> HostCall:
    """A MAGNeT request: the tab's parameters under their own names. Decoding steps go through ``int`` as
    audiocraft's ``set_generation_params`` takes them; ``top_k`` (a Gradio Number, so a float) must be whole;
    top-p above 1 keeps every token, as 1 does."""
    params: dict[str, Any] = {}
    for i in range(1, 5):
        key = f"decoding_steps_{i}"
        params[key] = int(_number(kw, key, MAGNET_DEFAULTS[key]))
    use_sampling = kw.get("use_sampling")
    top_k = _number(kw, "top_k", MAGNET_DEFAULTS["top_k"])
    if not top_k.is_integer():
        raise InputError(f"top_k must be a whole number (0: off), got {kw.get('top_k')!r}")
    params.update({
        "use_sampling": MAGNET_DEFAULTS["use_sampling"] if use_sampling is None else bool(use_sampling),
        "top_k": int(top_k),
        "top_p": min(_number(kw, "top_p", MAGNET_DEFAULTS["top_p"]), 1.0),
        "temperature": _number(kw, "temperature", MAGNET_DEFAULTS["temperature"]),
        "max_cfg_coef": _number(kw, "max_cfg_coef", MAGNET_DEFAULTS["max_cfg_coef"]),
        "min_cfg_coef": _number(kw, "min_cfg_coef", MAGNET_DEFAULTS["min_cfg_coef"]),
        "span_arrangement": kw.get("span_arrangement") or MAGNET_DEFAULTS["span_arrangement"],
        "seed": _seed(kw.get("seed")),
        "return_tokens": True,
    })
    text = kw.get("text")
    if text is not None and not isinstance(text, str):
        raise InputError(f"text must be a string, got {type(text).__name__}")
    return HostCall(prompt=text or "", params=params)


def index_name(value: Any) -> str:
    """The WebUI's index choice as the host's ``index`` parameter: ``/`` separators, no ``.index``; "" = none."""
    if not isinstance(value, str):
        return ""
    name = value.strip().replace("\\", "/")
    return name[: -len(".index")] if name.endswith(".index") else name


def rvc_call(kw: Mapping[str, Any], index_mode: str) -> HostCall:
    """An RVC request: the input file is read here and sent as samples (the host never sees the path).

    ``index_mode`` says how the voice takes an index: ``"param"`` (a WebUI voice: the WebUI's index
    choice goes as the ``index`` parameter), ``"catalog"`` (the index in the host's catalog is used
    when the WebUI chose one) or ``"none"`` (the voice has no index: converted without one).
    """
    notes: list[str] = []
    path = kw.get("original_audio_path")
    if not path:
        raise InputError("no input audio: upload or record the audio to convert (original_audio_path is empty)")
    rate, samples = read_audio(path)
    key = kw.get("pitch_up_key", 0)
    try:
        f0_up_key = int(str(key).strip() or 0)
    except ValueError:
        raise InputError(f"pitch_up_key must be a whole number of semitones (0, 12, -5), got {key!r}") from None
    index_rate = _number(kw, "index_rate", 0.66)
    index = index_name(kw.get("index_path"))
    if not index:
        index_rate = 0.0  # no index chosen in the WebUI: none is used
    elif index_mode == "none":
        notes.append("this voice has no index in the host's catalog: converted without one")
        index_rate = 0.0
    resample_sr = int(_number(kw, "resample_sr", 0))
    params: dict[str, Any] = {
        "f0_up_key": f0_up_key,
        "f0_method": kw.get("pitch_collection_method") or "harvest",
        "index_rate": index_rate,
        "filter_radius": int(_number(kw, "filter_radius", 3)),
        "resample_sr": resample_sr if resample_sr >= RESAMPLE_MIN_HZ else 0,
        "rms_mix_rate": _number(kw, "rms_mix_rate", 1.0),
        "protect": _number(kw, "protect", 0.33),
    }
    if index_mode == "param":
        params["index"] = index
    return HostCall(prompt=None, params=params, audio=samples, sample_rate=rate, notes=notes)


def webui_layout(audio: np.ndarray, dtype: type) -> np.ndarray:
    """Channels-first (C, T) or (T,) -> (T,) for mono, (T, C) otherwise, contiguous, in ``dtype``."""
    audio = np.asarray(audio)
    if audio.ndim == 2:
        audio = audio[0] if audio.shape[0] == 1 else audio.T
    return np.ascontiguousarray(audio, dtype=dtype)


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """WebUI-layout float audio ((T,) or (T, C)) as the bytes of a 16-bit PCM WAV file: clipped to
    [-1, 1], never rescaled (Gradio scales a float array by its own peak, so chunk by chunk the
    loudness would jump)."""
    pcm = (np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0) * 32767).round().astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1 if pcm.ndim == 1 else pcm.shape[1])
        wav.setsampwidth(2)
        wav.setframerate(int(rate))
        wav.writeframes(np.ascontiguousarray(pcm).tobytes())
    return buffer.getvalue()


def tokens_tensor(tokens: np.ndarray | None) -> Any:
    """The host's (K, T) codes as the (1, K, T) int64 torch tensor audiocraft returns, where torch is
    importable (it is in any WebUI that runs MusicGen); else None, as for AudioGen."""
    if tokens is None:
        return None
    try:
        import torch
    except ImportError:
        return None
    return torch.from_numpy(np.asarray(tokens, dtype=np.int64)[None])


def read_audio(path: str | Path) -> tuple[int, np.ndarray]:
    """``(sample_rate, samples)`` of an audio file, channels-first (C, T) or (T,).

    Uses soundfile where it is installed (every TTS-WebUI has it: WAV, FLAC, OGG, MP3), else the
    standard library's WAV reader.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"input audio {path} does not exist")
    try:
        import soundfile
    except ImportError:
        soundfile = None
    if soundfile is not None:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        return int(rate), np.ascontiguousarray(data.T)
    from modelhost.client.wavfile import read_wav

    try:
        data, rate = read_wav(path)
    except Exception as exc:
        raise InputError(f"cannot read {path} as WAV ({exc}); convert it to 16-bit WAV or `pip install soundfile`") from None
    return rate, data


def _gradio_audio(value: Any, label: str) -> tuple[int, np.ndarray]:
    """A Gradio numpy audio value ``(rate, (T,) or (T, C))`` as ``(rate, (C, T))``."""
    try:
        rate, samples = value
        samples = np.asarray(samples)
    except (TypeError, ValueError):
        raise InputError(f"{label} must be (sample_rate, samples) as Gradio's Audio gives it") from None
    if samples.ndim == 2:
        samples = samples.T
    if samples.ndim not in (1, 2) or samples.size == 0:
        raise InputError(f"{label} must hold samples shaped (T,) or (T, channels), got {samples.shape}")
    return int(rate), np.ascontiguousarray(samples)


def _seed(value: Any) -> int:
    """The WebUI's seed (a Textbox string such as ``"123"``, or a number from an API caller) as an int."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return -1
    try:
        return int(str(value).strip()) if not isinstance(value, float) else int(value)
    except ValueError:
        try:
            number = float(str(value).strip())
        except ValueError:
            raise InputError(f"seed must be a whole number (-1: random), got {value!r}") from None
        if not number.is_integer():
            raise InputError(f"seed must be a whole number (-1: random), got {value!r}") from None
        return int(number)


def _number(kw: Mapping[str, Any], key: str, default: float) -> float:
    value = kw.get(key)
    if value is None or value == "":
        return float(default)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"{key} must be a number, got {value!r}") from None
