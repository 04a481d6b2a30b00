"""The backend protocol every model family implements, and the table that names them.

A catalog names a backend from ``BACKENDS`` or, for one of your own, by import path
(``backend = "mypackage.voices:MyBackend"``). A backend is constructed from its catalog entry (``cls(spec)``; the constructor checks the
options and raises ``ValueError`` with a fix-it message, so a bad catalog fails at start), then
``load(device)``, any number of ``generate`` calls, and ``unload()``. Queuing, batching, eviction
and replies are not a backend's job. Backend modules import their heavy libraries inside ``load``
so the host starts fast and a catalog that does not use a family never imports it.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np

from modelhost.client.errors import BadParamsError, CancelledError, DeadlineExceededError

if TYPE_CHECKING:
    from modelhost.host.config import ModelSpec

# name -> "module:Class"; imported on first use, so adding a family is one line here.
BACKENDS: dict[str, str] = {
    "synth": "modelhost.host.backends.synth:SynthBackend",
    "musicgen": "modelhost.host.backends.musicgen:MusicGenBackend",
    "audiogen": "modelhost.host.backends.musicgen:AudioGenBackend",
    "rvc": "modelhost.host.backends.rvc:RvcBackend",
}


@dataclass(frozen=True)
class GenerateRequest:
    """What a generate call carries into a backend."""

    prompt: str | None
    params: dict[str, Any]
    audio: np.ndarray | None = None
    sample_rate: int | None = None


@dataclass(frozen=True)
class GenerateOutput:
    """What a backend returns: audio (channels-first, or 1-D), its sample rate, and extras."""

    audio: np.ndarray
    sample_rate: int
    info: dict[str, Any] = field(default_factory=dict)


class RunContext:
    """Handed to ``generate``: report progress, and learn (by an exception) that the job must stop.

    ``progress`` raises ``CancelledError`` or ``DeadlineExceededError`` once the job was cancelled,
    its client vanished, or its deadline passed; backends call it at each step.
    """

    def __init__(self, emit: Callable[[int, int], None], is_cancelled: Callable[[], str | None], min_interval_s: float = 0.02):
        self._emit = emit
        self._is_cancelled = is_cancelled
        self._min_interval_s = min_interval_s
        self._last_emit_s = 0.0

    @classmethod
    def detached(cls) -> "RunContext":
        """A context that reports to nobody and is never cancelled: warm-ups, benchmarks, in-process calls."""
        return cls(emit=lambda step, total: None, is_cancelled=lambda: None)

    def check(self) -> None:
        reason = self._is_cancelled()
        if reason == "deadline":
            raise DeadlineExceededError("the request's timeout_s passed while it was running")
        if reason:
            raise CancelledError(f"the request was cancelled ({reason})")

    def progress(self, step: int, total: int) -> None:
        self.check()
        now = time.monotonic()
        if step >= total or now - self._last_emit_s >= self._min_interval_s:
            self._last_emit_s = now
            self._emit(step, total)


class Backend(Protocol):
    """What every model family provides."""

    def load(self, device: str) -> None: ...

    def generate(self, request: GenerateRequest, ctx: RunContext) -> GenerateOutput: ...

    def unload(self) -> None: ...

    def memory_bytes(self) -> int: ...

    # Optional: ``source() -> dict`` names the weights the model is built from (shown in ``ps`` in every
    # state, so clients such as the WebUI adapter can find the model serving a checkpoint or voice file);
    # ``details() -> dict`` adds backend-specific facts to ``ps`` while loaded (e.g. shared weights);
    # ``offload()`` / ``restore(device)`` move the weights to the warm CPU tier and back;
    # ``estimate_bytes()`` sizes a load before it happens; ``warmup()`` runs one short generation.


def check_options(spec: "ModelSpec", known: set[str]) -> dict[str, Any]:
    """The catalog options of ``spec``, or ValueError naming the unknown ones (a bad catalog fails at start)."""
    unknown = set(spec.options) - known
    if unknown:
        raise ValueError(f"[models.{spec.name}]: unknown {spec.backend} options {sorted(unknown)}; known: {sorted(known)}")
    return dict(spec.options)


def number_param(params: dict[str, Any], key: str, default: float, low: float, high: float, *,
                 integer: bool = False, open_low: bool = False) -> float:
    """``params[key]`` (or ``default``) checked against its range; BadParamsError names the key and the range."""
    value = params.get(key, default)
    kinds = (int,) if integer else (int, float)
    in_range = (value > low if open_low else value >= low) and value <= high if isinstance(value, kinds) else False
    if isinstance(value, bool) or not in_range:
        what = "an int" if integer else "a number"
        raise BadParamsError(f"{key} must be {what} in {'(' if open_low else '['}{low:g}, {high:g}], got {value!r}")
    return value if integer else float(value)


def backend_class(name: str) -> type:
    """The backend registered as ``name``, or a custom one given as ``"package.module:Class"``."""
    module_name, _, class_name = BACKENDS.get(name, name).partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def is_backend_name(name: object) -> bool:
    """A registered name, or an import path ``module:Class`` (a custom backend; imported at start)."""
    return isinstance(name, str) and (name in BACKENDS or (":" in name and all(name.partition(":")[::2])))


def create_backend(spec: "ModelSpec") -> Backend:
    """A backend for one catalog entry, options checked, nothing loaded yet."""
    return backend_class(spec.backend)(spec)
