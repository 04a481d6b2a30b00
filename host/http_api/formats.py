"""The audio formats a response can be asked for, by OpenAI's names and by ElevenLabs' ``output_format`` values.

Pure data and parsing (no PyAV): ``openai_format("mp3")`` and ``elevenlabs_format("mp3_44100_128")``
give an ``OutputFormat`` that ``codec.AudioEncoder`` encodes; a bad name raises ``FormatError`` whose
message lists what exists. Runs in the HTTP process's event loop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# What each codec takes (FFmpeg's encoders as PyAV reports them); a rate outside the list is resampled
# to the nearest one at or above it.
# LAME at quality 5 instead of its default 3: 1.5x faster (10 s of 32 kHz stereo: 0.46 s -> 0.32 s here), the
# same bit rate; at 5 minutes the encoding, not the model, is what an MP3 answer waits for.
LAME = (("compression_level", "5"),)
MP3_RATES_HZ = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
AAC_RATES_HZ = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
OPUS_RATES_HZ = (8000, 12000, 16000, 24000, 48000)


class FormatError(ValueError):
    """An unknown or impossible output format; the message says which ones exist."""


@dataclass(frozen=True)
class OutputFormat:
    """How a response's audio is encoded: FFmpeg's muxer and encoder, the rate and channels (None: the
    model's own, or the nearest the codec takes), the bit rate of a lossy codec, and the media type."""

    name: str
    container: str
    codec: str
    media_type: str
    rate_hz: int | None = None
    channels: int | None = None
    bit_rate: int | None = None
    rates_hz: tuple[int, ...] = ()  # the codec's rates; empty: any
    codec_options: tuple[tuple[str, str], ...] = ()


OPENAI: dict[str, OutputFormat] = {
    "wav": OutputFormat("wav", "wav", "pcm_s16le", "audio/wav"),
    "mp3": OutputFormat("mp3", "mp3", "libmp3lame", "audio/mpeg", bit_rate=128_000, rates_hz=MP3_RATES_HZ, codec_options=LAME),
    "flac": OutputFormat("flac", "flac", "flac", "audio/flac"),
    "opus": OutputFormat("opus", "ogg", "libopus", "audio/ogg", rate_hz=48000, bit_rate=96_000, rates_hz=OPUS_RATES_HZ),
    "aac": OutputFormat("aac", "adts", "aac", "audio/aac", bit_rate=128_000, rates_hz=AAC_RATES_HZ),
    # OpenAI's pcm: raw 16-bit little-endian samples, 24 kHz mono, no header
    "pcm": OutputFormat("pcm", "s16le", "pcm_s16le", "audio/pcm", rate_hz=24000, channels=1),
}

ELEVENLABS_DEFAULT = "mp3_44100_128"
_ELEVENLABS = re.compile(r"(mp3|opus|pcm|wav|ulaw|alaw)_(\d{4,6})(?:_(\d{1,3}))?")
_ELEVENLABS_EXAMPLES = "mp3_44100_128, mp3_22050_32, opus_48000_64, pcm_16000, pcm_44100, wav_44100, ulaw_8000, alaw_8000"


def openai_format(name: object) -> OutputFormat:
    """``response_format``: wav, mp3, flac, opus, aac or pcm."""
    fmt = OPENAI.get(name) if isinstance(name, str) else None
    if fmt is None:
        raise FormatError(f"response_format must be one of {', '.join(OPENAI)}, got {name!r}")
    return fmt


def elevenlabs_format(name: object) -> OutputFormat:
    """``output_format`` as ElevenLabs spells it, ``codec_rate[_kbps]``; always mono, as ElevenLabs sends."""
    m = _ELEVENLABS.fullmatch(name) if isinstance(name, str) else None
    if m is None:
        raise FormatError(f"output_format must be codec_rate[_kbps] as ElevenLabs names them ({_ELEVENLABS_EXAMPLES}), "
                          f"got {name!r}")
    codec, rate_hz, kbps = m.group(1), int(m.group(2)), m.group(3)
    lossy = codec in ("mp3", "opus")
    if lossy != (kbps is not None):
        raise FormatError(f"output_format {name!r}: " + ("mp3 and opus need a bit rate, e.g. mp3_44100_128" if lossy
                                                       else f"{codec} takes no bit rate, e.g. {codec}_{rate_hz}"))
    rates = {"mp3": MP3_RATES_HZ, "opus": OPUS_RATES_HZ, "ulaw": (8000,), "alaw": (8000,)}.get(codec, ())
    if (rates and rate_hz not in rates) or not 8000 <= rate_hz <= 192000:
        raise FormatError(f"output_format {name!r}: {codec} at {rate_hz} Hz is not possible"
                          + (f"; rates: {', '.join(map(str, rates))}" if rates else ""))
    bit_rate = int(kbps) * 1000 if kbps else None
    if bit_rate is not None and not 8_000 <= bit_rate <= 320_000:
        raise FormatError(f"output_format {name!r}: the bit rate must be 8 to 320 kbps")
    container, encoder, media_type = {
        "mp3": ("mp3", "libmp3lame", "audio/mpeg"), "opus": ("ogg", "libopus", "audio/ogg"),
        "pcm": ("s16le", "pcm_s16le", "audio/pcm"), "wav": ("wav", "pcm_s16le", "audio/wav"),
        "ulaw": ("mulaw", "pcm_mulaw", "audio/basic"), "alaw": ("alaw", "pcm_alaw", "audio/x-alaw-basic"),
    }[codec]
    return OutputFormat(name, container, encoder, media_type, rate_hz=rate_hz, channels=1, bit_rate=bit_rate,
                        codec_options=LAME if codec == "mp3" else ())


def output_rate_hz(fmt: OutputFormat, source_rate_hz: int) -> int:
    """The rate the response is encoded at: the format's own, else the source's if the codec takes it,
    else the codec's nearest rate at or above it (its highest when none is)."""
    if fmt.rate_hz is not None:
        return fmt.rate_hz
    if not fmt.rates_hz or source_rate_hz in fmt.rates_hz:
        return source_rate_hz
    return next((r for r in fmt.rates_hz if r >= source_rate_hz), fmt.rates_hz[-1])
