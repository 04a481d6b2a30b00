"""The checks every backend shares: catalog options, generation parameters and input audio.

Each raises with a message naming the key, its range and the value it got: ``ValueError`` for a
catalog option (the host refuses to start), ``BadParamsError`` for a request (one reply, the host
serves on). Pure: called from whichever thread validates (a worker, or the CLI).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from modelhost.client.protocol.errors import BadParamsError

if TYPE_CHECKING:
    from modelhost.host.backends.base import ModelSpec


def check_options(spec: "ModelSpec", known: set[str]) -> dict[str, Any]:
    """The catalog options of ``spec``, or ValueError naming the unknown ones (a bad catalog fails at start)."""
    unknown = set(spec.options) - known
    if unknown:
        raise ValueError(f"[models.{spec.name}]: unknown {spec.backend} options {sorted(unknown)}; known: {sorted(known)}")
    return dict(spec.options)


def check_known(params: dict[str, Any], known: Iterable[str], what: str) -> None:
    """BadParamsError naming the parameters ``what`` (``"a musicgen model"``, ``"an rvc voice"``) does not take."""
    unknown = set(params) - set(known)
    if unknown:
        raise BadParamsError(f"unknown parameters for {what}: {sorted(unknown)}; known: {sorted(known)}")


def number_param(params: dict[str, Any], key: str, default: float, low: float, high: float, *,
                 integer: bool = False, open_low: bool = False) -> float:
    """``params[key]`` (or ``default``) checked against its range; BadParamsError names the key and the range."""
    value = params.get(key, default)
    kinds = (int,) if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if open_low else value >= low) and value <= high
    if not ok:
        what = "an int" if integer else "a number"
        raise BadParamsError(f"{key} must be {what} in {'(' if open_low else '['}{low:g}, {high:g}], got {value!r}")
    return int(value) if integer else float(value)


def bool_param(params: dict[str, Any], key: str, default: bool) -> bool:
    value = params.get(key, default)
    if not isinstance(value, bool):
        raise BadParamsError(f"{key} must be true or false, got {value!r}")
    return value


def choice_param(params: dict[str, Any], key: str, default: str, choices: Iterable[str]) -> str:
    value = params.get(key, default)
    choices = tuple(choices)
    if value not in choices:
        raise BadParamsError(f"{key} must be one of {', '.join(choices)}, got {value!r}")
    return value


def audio_input(audio: np.ndarray | None, sample_rate: int | None, what: str = "audio") -> np.ndarray:
    """Input samples: a non-empty 1-D or (channels, samples) int/float array with its rate, no NaN or infinity."""
    if audio is None or sample_rate is None:
        raise BadParamsError(f"this model needs input {what}: send audio= (samples) and sample_rate=")
    if audio.ndim not in (1, 2) or audio.size == 0 or audio.dtype.kind not in "iuf":
        raise BadParamsError(f"{what} must be non-empty 1-D or (channels, samples) int or float samples, "
                             f"got {audio.dtype} {audio.shape}")
    if audio.dtype.kind == "f" and not np.isfinite(audio).all():
        raise BadParamsError(f"{what} holds NaN or infinite samples")
    return audio
