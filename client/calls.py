"""What each client call sends and how its reply becomes a Python value.

Shared by the blocking ``Client`` and the asyncio ``AsyncClient`` so both have the same method
names, defaults and result types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from modelhost.client.protocol.errors import BadParamsError, ProtocolError

ProgressFn = Callable[[int, int], None]

# Default timeouts: control calls are quick; a cold load of a large model reads gigabytes; a long
# generation on a slow device can take many minutes. Liveness (heartbeats) catches a dead host far
# sooner than any of these.
CONTROL_TIMEOUT_S = 30.0
LOAD_TIMEOUT_S = 900.0
GENERATE_TIMEOUT_S = 3600.0
# How much longer than a request's own timeout a caller waits for its final event before declaring a
# client bug: the I/O thread itself ends every request at its deadline.
FINAL_REPLY_GRACE_S = 10.0


@dataclass(frozen=True)
class GenerateResult:
    """The audio a model made, with its sample rate, the host's timings (integer ns) and extras."""

    audio: np.ndarray
    sample_rate: int
    model: str
    timings_ns: dict[str, int] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        samples = self.audio.shape[-1] if self.audio.ndim else 0
        return samples / self.sample_rate if self.sample_rate else 0.0


@dataclass(frozen=True)
class Chunk:
    """A streaming generation's samples ``[offset, offset + n)`` of the final audio, in order (``seq`` 0, 1, ...).

    Concatenated, a stream's chunks are its final audio: exactly where the host could decode the prefix
    past the decoder's edge, to float rounding (under 1e-6) elsewhere; the final ``GenerateResult`` is exact."""

    audio: np.ndarray
    sample_rate: int
    offset: int
    seq: int
    item: Any = None  # a WebUI generator's item (``client.webui_call``'s encoding); ``audio`` is then empty

    @property
    def end_s(self) -> float:
        return (self.offset + self.audio.shape[-1]) / self.sample_rate


def chunk_of(body: Mapping[str, Any]) -> Chunk:
    return Chunk(audio=body["audio"], sample_rate=body["sample_rate"], offset=body["offset"], seq=body["seq"],
                 item=body.get("item"))


def generate_body(
    model: str,
    prompt: str | None,
    audio: np.ndarray | None,
    sample_rate: int | None,
    params: Mapping[str, Any] | None,
    timeout_s: float,
    keep_alive_s: float | None = None,
    stream: bool = False,
    stream_interval_s: float | None = None,
) -> dict[str, Any]:
    """The body of a generate request; input mistakes a caller can fix raise BadParamsError here."""
    if not isinstance(model, str) or not model:
        raise BadParamsError(f"model must be a non-empty string, got {model!r}")
    if prompt is not None and not isinstance(prompt, str):
        raise BadParamsError(f"prompt must be a string or None, got {type(prompt).__name__}")
    body: dict[str, Any] = {"model": model, "params": dict(params or {}), "timeout_s": float(timeout_s)}
    if keep_alive_s is not None:
        body["keep_alive_s"] = float(keep_alive_s)
    if stream:
        body["stream"] = True
        if stream_interval_s is not None:
            body["stream_interval_s"] = float(stream_interval_s)
    if prompt is not None:
        body["prompt"] = prompt
    if audio is not None:
        audio = np.asarray(audio)
        if sample_rate is None:
            raise BadParamsError("audio was given without sample_rate: pass sample_rate=... (Hz)")
        body["audio"] = audio
    if sample_rate is not None:
        if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
            raise BadParamsError(f"sample_rate must be a positive int (Hz), got {sample_rate!r}")
        body["sample_rate"] = int(sample_rate)
    return body


def model_body(model: str, timeout_s: float | None = None, keep_alive_s: float | None = None) -> dict[str, Any]:
    if not isinstance(model, str) or not model:
        raise BadParamsError(f"model must be a non-empty string, got {model!r}")
    body: dict[str, Any] = {"model": model}
    if timeout_s is not None:
        body["timeout_s"] = float(timeout_s)
    if keep_alive_s is not None:
        body["keep_alive_s"] = float(keep_alive_s)
    return body


def generate_result(model: str, body: Mapping[str, Any]) -> GenerateResult:
    """The ``GenerateResult`` in a generate reply's body."""
    audio = body.get("audio")
    sample_rate = body.get("sample_rate")
    if not isinstance(audio, np.ndarray) or not isinstance(sample_rate, int):
        raise ProtocolError("a generate result must hold an 'audio' array and an int 'sample_rate'")
    return GenerateResult(
        audio=audio,
        sample_rate=sample_rate,
        model=model,
        timings_ns=dict(body.get("timings_ns") or {}),
        info=dict(body.get("info") or {}),
    )
