"""Audio in and out of the HTTP API through PyAV (FFmpeg's codecs and muxers): no hand-written containers.

``AudioEncoder`` turns a response's samples into the asked format, chunk by chunk as the host streams
them, or as one whole file. ``decode_audio`` reads an uploaded file (any format FFmpeg reads) into
samples. Both run in a worker thread of the HTTP process (``asyncio.to_thread``): encoding minutes of
MP3 takes seconds of CPU, which must not stall the event loop.

A streamed file cannot state its length up front. Muxers then write what FFmpeg writes to a pipe: a
WAV header whose RIFF and data sizes are 0xFFFFFFFF (with ``bitexact``, the canonical 44 bytes that
players and TTS-WebUI's own streaming reader expect), FLAC whose STREAMINFO says 0 samples (unknown).
A whole response goes to a seekable buffer, so the same muxers write the exact sizes (and MP3's Xing
header). Ogg pages are flushed every 100 ms of audio so Opus streams too.
"""

from __future__ import annotations

import io
from fractions import Fraction

import av
import av.filter
import numpy as np

from modelhost.host.http_api.formats import OutputFormat, output_rate_hz

_BLOCK_SAMPLES = 1 << 16  # samples per frame handed to FFmpeg: bounded memory for long results
_OGG_PAGE_US = "100000"


class DecodeError(ValueError):
    """An uploaded file is not audio FFmpeg can read."""


class _Sink:
    """A non-seekable byte sink: muxers write a streamable file (no seeking back to patch sizes)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


class AudioEncoder:
    """One response's encoder: ``push(audio, rate)`` for each piece of audio in order (channels-first or
    1-D; float in [-1, 1] or int16), then ``finish()``. Streaming (``whole=False``), each call returns the
    bytes ready so far; whole, everything comes from ``finish()``. ``speed`` != 1 time-stretches the
    audio (FFmpeg's atempo: the pitch is kept)."""

    def __init__(self, fmt: OutputFormat, *, whole: bool, speed: float = 1.0) -> None:
        self.fmt = fmt
        self.whole = whole
        self.speed = speed
        self.rate_hz: int | None = None  # the encoded rate, known at the first push
        self.channels: int | None = None
        self._buffer: io.BytesIO | _Sink = io.BytesIO() if whole else _Sink()
        self._out: av.container.OutputContainer | None = None
        self._stream = None
        self._resampler: av.AudioResampler | None = None
        self._converts = False  # FFmpeg's converter must handle every frame (rate, format or tempo changes)
        self._tempo: av.filter.Graph | None = None
        self._source: tuple[int, int] | None = None  # (rate, channels) of the first push
        self._pts = 0

    def push(self, audio: np.ndarray, sample_rate: int) -> bytes:
        planar = _planar(audio)
        if self._out is None:
            self._open(sample_rate, planar.shape[0])
        elif (sample_rate, planar.shape[0]) != self._source:
            raise ValueError(f"a stream changed from {self._source} to {(sample_rate, planar.shape[0])} (rate, channels)")
        for start in range(0, planar.shape[1], _BLOCK_SAMPLES):
            self._feed(np.ascontiguousarray(planar[:, start:start + _BLOCK_SAMPLES]))
        return self._ready()

    def finish(self) -> bytes:
        """Flush the codec and close the file; the last bytes (whole: all of them)."""
        if self._out is None:  # nothing pushed: an empty result is still a valid, empty file
            self._open(self.fmt.rate_hz or 24000, self.fmt.channels or 1)
        self._feed(None)
        self._out.close()
        return self._buffer.getvalue() if isinstance(self._buffer, io.BytesIO) else self._buffer.drain()

    def _open(self, source_rate_hz: int, source_channels: int) -> None:
        self._source = (source_rate_hz, source_channels)
        self.channels = self.fmt.channels or min(source_channels, 2)
        self.rate_hz = output_rate_hz(self.fmt, source_rate_hz)
        options = {"fflags": "+bitexact"}  # no encoder tags: a WAV header is the canonical 44 bytes
        if self.fmt.container == "ogg" and not self.whole:
            options["page_duration"] = _OGG_PAGE_US
        self._out = av.open(self._buffer, "w", format=self.fmt.container, options=options)
        layout = "mono" if self.channels == 1 else "stereo"
        self._stream = self._out.add_stream(self.fmt.codec, rate=self.rate_hz, layout=layout)
        context = self._stream.codec_context
        if self.fmt.bit_rate:
            context.bit_rate = self.fmt.bit_rate
        if self.fmt.codec_options:
            context.options = dict(self.fmt.codec_options)
        if "fltp" in {f.name for f in context.codec.audio_formats or ()}:
            context.format = "fltp"  # the samples' own format: no conversion (LAME's default is s32p)
        if self.speed != 1.0:
            self._tempo = _tempo_graph(source_rate_hz, source_channels, self.speed)
        # FFmpeg's converter costs ~5 ms to set up and is 2x faster than numpy per sample: it converts when the
        # rate or the format must change, or from the first long block on (so samples never overtake each
        # other); numpy converts short ones before that (a small call's audio, a stream's first chunks)
        self._converts = self._tempo is not None or self.rate_hz != source_rate_hz or context.format.name not in _DIRECT_FORMATS

    def _feed(self, planar: np.ndarray | None) -> None:
        """Samples (or None: the end) through the tempo filter, the resampler and the encoder into the muxer."""
        frame = None
        if planar is not None:
            if planar.shape[0] > 2 or (self.channels == 1 and planar.shape[0] == 2):
                planar = planar.mean(axis=0, keepdims=True, dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout="mono" if planar.shape[0] == 1 else "stereo")
            frame.sample_rate = self._source[0]
            frame.pts, frame.time_base = self._pts, Fraction(1, self._source[0])
            self._pts += planar.shape[1]
        context = self._stream.codec_context
        if not self._converts and self._resampler is None and frame is not None and planar.shape[1] < _DIRECT_MAX_SAMPLES:
            for packet in self._stream.encode(_direct_frame(planar, context.format.name, self._source[0])):
                self._out.mux(packet)
        elif self._converts or frame is not None or self._resampler is not None:
            if self._resampler is None:
                layout = "mono" if self.channels == 1 else "stereo"
                self._resampler = av.AudioResampler(format=context.format, layout=layout, rate=self.rate_hz)
            frames = _through(self._tempo, frame) if self._tempo is not None else [frame]
            for f in frames:
                for resampled in self._resampler.resample(f):
                    resampled.pts = None  # the encoder numbers its own frames
                    for packet in self._stream.encode(resampled):
                        self._out.mux(packet)
        if planar is None:
            for packet in self._stream.encode(None):
                self._out.mux(packet)

    def _ready(self) -> bytes:
        return b"" if isinstance(self._buffer, io.BytesIO) else self._buffer.drain()


_DIRECT_FORMATS = ("s16", "fltp", "flt")
_DIRECT_MAX_SAMPLES = 16384


def _direct_frame(planar: np.ndarray, sample_format: str, rate_hz: int) -> av.AudioFrame:
    """A frame in the encoder's own sample format, converted by numpy (16-bit: rounded and clipped, as FFmpeg's
    converter does)."""
    layout = "mono" if planar.shape[0] == 1 else "stereo"
    if sample_format == "fltp":
        data = planar
    elif sample_format == "flt":
        data = np.ascontiguousarray(planar.T).reshape(1, -1)
    else:
        data = np.clip(np.rint(planar * 32768.0), -32768, 32767).astype(np.int16).T.reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=sample_format, layout=layout)
    frame.sample_rate = rate_hz
    return frame


def _planar(audio: np.ndarray) -> np.ndarray:
    """Channels-first float32 in [-1, 1] (int16 scaled) from 1-D or (channels, samples) samples."""
    audio = np.asarray(audio)
    if audio.ndim == 1:
        audio = audio[None, :]
    if audio.ndim != 2:
        raise ValueError(f"audio must be 1-D or (channels, samples), got shape {audio.shape}")
    if audio.dtype == np.int16:
        return audio.astype(np.float32) / 32768.0
    if audio.dtype.kind == "i":
        return (audio / float(np.iinfo(audio.dtype).max)).astype(np.float32)
    return audio.astype(np.float32, copy=False)


def _tempo_graph(rate_hz: int, channels: int, speed: float) -> av.filter.Graph:
    """abuffer -> atempo (one stage per factor in FFmpeg's 0.5..2 range kept for quality) -> abuffersink."""
    graph = av.filter.Graph()
    node = graph.add_abuffer(sample_rate=rate_hz, format="fltp", layout="mono" if channels == 1 else "stereo",
                             time_base=Fraction(1, rate_hz))
    factors, rest = [], speed
    while rest < 0.5 or rest > 2.0:
        step = 0.5 if rest < 0.5 else 2.0
        factors.append(step)
        rest /= step
    for factor in [*factors, rest]:
        stage = graph.add("atempo", f"{factor:.6f}")
        node.link_to(stage)
        node = stage
    node.link_to(graph.add("abuffersink"))
    graph.configure()
    return graph


def _through(graph: av.filter.Graph, frame: av.AudioFrame | None) -> list[av.AudioFrame | None]:
    """Push one frame (None: the end) and pull what the graph has ready (plus None after the end)."""
    graph.push(frame)
    out: list[av.AudioFrame | None] = []
    while True:
        try:
            out.append(graph.pull())
        except (av.error.BlockingIOError, av.error.EOFError):
            break
    return out + ([None] if frame is None else [])


def decode_audio(data: bytes, *, max_seconds: float) -> tuple[np.ndarray, int]:
    """An uploaded file's first audio stream as float32 (channels, samples) at its own rate."""
    try:
        with av.open(io.BytesIO(data), "r") as container:
            streams = container.streams.audio
            if not streams:
                raise DecodeError("the file has no audio stream")
            stream = streams[0]
            rate_hz = stream.codec_context.sample_rate or stream.rate
            layout = "mono" if stream.codec_context.channels == 1 else "stereo"
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate_hz)
            parts, total = [], 0
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    parts.append(out.to_ndarray())
                    total += out.samples
                if total > max_seconds * rate_hz:
                    raise DecodeError(f"the audio is longer than {max_seconds:.0f} s")
            for out in resampler.resample(None):
                parts.append(out.to_ndarray())
    except DecodeError:
        raise
    except (av.error.FFmpegError, ValueError, EOFError) as exc:
        raise DecodeError(f"cannot decode it as audio ({exc})") from None
    if not parts or not rate_hz:
        raise DecodeError("it holds no samples")
    return np.concatenate(parts, axis=1).astype(np.float32, copy=False), int(rate_hz)


def decode_pcm_s16le(data: bytes, rate_hz: int = 16000) -> tuple[np.ndarray, int]:
    """ElevenLabs' ``file_format=pcm_s16le_16``: raw 16-bit little-endian mono samples at 16 kHz."""
    if len(data) < 2 or len(data) % 2:
        raise DecodeError("pcm_s16le_16 input must be a whole number of 16-bit samples")
    return np.frombuffer(data, dtype="<i2").astype(np.float32)[None, :] / 32768.0, rate_hz
