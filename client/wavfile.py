"""Reading and writing WAV files with the standard library: PCM in, float32 out, and back.

Used by the CLI (``--input``, ``-o``) and the WebUI adapter; torch-free like the rest of the client.
Arrays are channels-first ``(channels, samples)`` or 1-D ``(samples,)``.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

_PCM_DTYPES = {1: np.uint8, 2: np.dtype("<i2"), 4: np.dtype("<i4")}


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """``(audio, sample_rate)``: float32 in [-1, 1], shape (channels, samples)."""
    with wave.open(str(path), "rb") as wav:
        channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
        raw = wav.readframes(wav.getnframes())
    if width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        ints = (b[:, 0].astype(np.int32) | (b[:, 1].astype(np.int32) << 8) | (b[:, 2].astype(np.int32) << 16))
        data = ((ints << 8) >> 8).astype(np.float32) / 2**23
    elif width in _PCM_DTYPES:
        ints = np.frombuffer(raw, dtype=_PCM_DTYPES[width])
        data = (ints.astype(np.float32) - 128) / 128 if width == 1 else ints.astype(np.float32) / float(2 ** (8 * width - 1))
    else:
        raise ValueError(f"{path}: {8 * width}-bit WAV samples are not supported; use 8, 16, 24 or 32-bit PCM")
    return data.reshape(-1, channels).T.copy(), rate


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> Path:
    """Write 16-bit PCM. Float audio is clipped to [-1, 1]; int16 audio is written as is."""
    with WavWriter(path, sample_rate) as out:
        out.write(audio)
    return Path(path)


class WavWriter:
    """A 16-bit PCM WAV written piece by piece (a stream's chunks): the file is a valid WAV after every
    ``write`` (the standard library rewrites the header's sizes each time), so a player can open it while
    it grows. The channel count is fixed by the first piece."""

    def __init__(self, path: str | Path, sample_rate: int) -> None:
        self.path = Path(path)
        self.sample_rate = int(sample_rate)
        self.frames = 0
        self._wav: wave.Wave_write | None = None

    def write(self, audio: np.ndarray) -> None:
        pcm = _pcm16(audio)
        if self._wav is None:
            self._wav = wave.open(str(self.path), "wb")
            self._wav.setnchannels(pcm.shape[0])
            self._wav.setsampwidth(2)
            self._wav.setframerate(self.sample_rate)
        elif pcm.shape[0] != self._wav.getnchannels():
            raise ValueError(f"a piece has {pcm.shape[0]} channel(s); this file has {self._wav.getnchannels()}")
        self._wav.writeframes(np.ascontiguousarray(pcm.T).tobytes())
        self.frames += pcm.shape[1]

    def close(self) -> None:
        if self._wav is None:  # nothing arrived: still leave a valid (empty, mono) WAV
            self.write(np.zeros((1, 0), dtype=np.int16))
        assert self._wav is not None
        self._wav.close()

    def __enter__(self) -> "WavWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pcm16(audio: np.ndarray) -> np.ndarray:
    """``(channels, samples)`` little-endian int16: float clipped to [-1, 1] and scaled, int16 as is."""
    audio = np.asarray(audio)
    if audio.ndim == 1:
        audio = audio[None, :]
    if audio.ndim != 2:
        raise ValueError(f"audio must be (samples,) or (channels, samples), got shape {audio.shape}")
    if audio.dtype == np.int16:
        return audio.astype("<i2", copy=False)
    return (np.clip(audio.astype(np.float32), -1.0, 1.0) * 32767).round().astype("<i2")
