"""The contract between the host and a model family: the ``Backend`` base class and what flows through it.

A backend is built from its catalog entry (``cls(spec)``: the constructor checks the options and
raises ``ValueError`` with a fix-it message, so a bad catalog fails at start), then ``load(device)``,
any number of ``generate`` calls, and ``unload()``. Every method runs in the model's own worker
thread (``modelhost-model-NAME``), one call at a time; queuing, batching, eviction, deadlines and
replies are the host's job, never a backend's. Heavy libraries are imported inside ``load`` so the
host starts fast and a catalog that does not use a family never imports it.

Required: ``load``, ``generate``, ``unload``, ``memory_bytes``. Optional hooks, each with a default
that is right for a backend that does not need it:

* ``memory_report()`` -> ``MemoryReport``: own bytes, plus weights shared with other models (RVC's
  HuBERT) by key, so the host counts a shared copy once per device;
* ``estimate()`` -> ``MemoryReport``: the size of a load before it happens (from files; must not
  touch loaded state: the host may call it from its core thread while another call runs);
* ``source()``: the weights the model is built from (``ps`` shows it in every state; same rule);
* ``details()``: backend facts for ``ps`` while loaded;
* ``warmup()``: one short generation after a boot preload;
* ``can_offload`` + ``offload()`` / ``restore(device)``: the warm CPU tier (GPU -> pinned RAM -> GPU);
* batching: ``batch_rows`` (the default most rows per pass; 1, the base's value, means it never
  batches), ``batch_key(request)`` (which requests may share a pass: equal keys; None runs alone) and
  ``generate_batch(requests, ctxs)`` (one pass over rows with equal keys; the default loops over
  ``generate``). Which requests are grouped, when and how many, stays the host's decision;
* ``audio_seconds(request)``: the seconds of audio a request makes, which sizes its activation
  memory (bytes per second of audio per row, measured by the host); None: not counted.

``batch_key`` and ``audio_seconds`` run in the host's core thread: they read the request only, never
the loaded model.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

import numpy as np

from modelhost.client.protocol.errors import CancelledError, DeadlineExceededError, RequestError, ShuttingDownError

INLINE = "inline"  # ModelSpec.runner: the backend runs in a thread of the host's own process


@dataclass(frozen=True)
class ModelSpec:
    """One catalog entry: the model's name, its backend, an optional device, residency keys, where its code
    runs, and backend options (``host.config`` parses and checks the catalog into these)."""

    name: str
    backend: str
    device: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    pin: bool = False  # never evicted
    keep_alive_s: float = math.inf  # unloaded after this long idle; inf: stays until evicted
    reserve_bytes: int = 0  # room kept for activations on top of the weights
    memory_bytes: int | None = None  # expected footprint before the first load (else estimated from files)
    max_batch_size: int | None = None  # rows per batched pass; None: the backend's default (1 where it cannot batch)
    batch_window_ms: float = 5.0  # a request that would start alone waits this long for compatible ones (0: never)
    activation_bytes_per_s: int = 0  # a floor under the measured activation bytes per second of audio per row
    runner: str | None = None  # the runner process it shares (None: its family's on its device); "inline": the host's
    python: str | None = None  # the interpreter its runner runs under (None: the host's own)
    kill_after_s: float = 10.0  # a cancelled or expired run still going this long after: its runner is killed


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


@dataclass(frozen=True)
class MemoryReport:
    """A model's memory: bytes of its own, and shared weights as ``key -> bytes`` (counted once per device)."""

    own_bytes: int
    shared: dict[Hashable, int] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return self.own_bytes + sum(self.shared.values())


class RunContext:
    """Handed to ``generate``: report progress (and, for a streaming request, audio chunks), and learn
    (by an exception) that the job must stop.

    ``progress`` raises ``CancelledError``, ``DeadlineExceededError`` or ``ShuttingDownError`` once
    the job was cancelled, its client vanished, its deadline passed or the host is shutting down;
    backends call it at each step.
    """

    def __init__(self, emit: Callable[[int, int], None], is_cancelled: Callable[[], str | None], min_interval_s: float = 0.02,
                 chunk: Callable[..., None] | None = None, stream_interval_s: float | None = None):
        self._emit = emit
        self._is_cancelled = is_cancelled
        self._min_interval_s = min_interval_s
        self._started_s = time.monotonic()
        self._last_emit_s = 0.0
        self._emitted = False
        self._chunk = chunk
        self.stream_interval_s = stream_interval_s  # the client's wish (s of audio between chunks); None: the backend's default

    @property
    def streaming(self) -> bool:
        """True when the client asked for audio as it is made: the backend then calls ``chunk`` on the way."""
        return self._chunk is not None

    def chunk(self, audio: np.ndarray, sample_rate: int, offset: int) -> None:
        """Send the samples ``[offset, offset + audio.shape[-1])`` of the result now (a stream's chunk).

        Chunks go out in order and never overlap; the final result still carries the whole audio.
        Raises like ``check`` once the job must stop; a no-op for a request that does not stream."""
        self.check()
        if self._chunk is not None and audio.shape[-1] > 0:
            self._chunk(audio, sample_rate, offset)

    def item(self, value: Any) -> None:
        """Send one item of a generator call now (a stream's chunk holding ``value``, a tree the wire carries, and no
        audio). Raises like ``check`` once the job must stop; a no-op for a request that does not stream."""
        self.check()
        if self._chunk is not None:
            self._chunk(np.zeros(0, np.float32), 0, 0, item=value)

    @classmethod
    def detached(cls) -> "RunContext":
        """A context that reports to nobody and is never cancelled: warm-ups, benchmarks, in-process calls."""
        return cls(emit=lambda step, total: None, is_cancelled=lambda: None)

    def check(self) -> None:
        reason = self._is_cancelled()
        if reason:
            raise stop_error(reason)

    def progress(self, step: int, total: int) -> None:
        """Report ``step`` of ``total``: sent at most every ``min_interval_s``, and the last step always once an
        earlier one was sent. A job whose first report is its last (one step) and that ran shorter than
        ``min_interval_s`` sends none: its result follows at once and says it is done."""
        self.check()
        now = time.monotonic()
        if step >= total:
            due = self._emitted or now - self._started_s >= self._min_interval_s
        else:
            due = now - self._last_emit_s >= self._min_interval_s
        if due:
            self._last_emit_s = now
            self._emitted = True
            self._emit(step, total)


class BatchProgress:
    """The one progress callback of a batched pass, fanned out to each row's ``RunContext``.

    A row whose request must stop (cancelled, deadline, client gone) drops out: it gets no more
    progress and its output is thrown away; the pass goes on for the others. Once every row has
    dropped out, ``progress`` raises the last one's stop error and the pass ends."""

    def __init__(self, ctxs: Sequence[RunContext]) -> None:
        self.ctxs = list(ctxs)
        self.stopped: dict[int, RequestError] = {}  # row -> why it dropped out

    def progress(self, step: int, total: int) -> None:
        last: RequestError | None = None
        for row, ctx in enumerate(self.ctxs):
            if row in self.stopped:
                continue
            try:
                ctx.progress(step, total)
            except RequestError as exc:
                self.stopped[row] = last = exc
        if len(self.stopped) == len(self.ctxs) and last is not None:
            raise last


def stop_error(reason: str) -> Exception:
    """The error a job stopped for ``reason`` ends with (the same whether it was queued or running)."""
    if reason == "deadline":
        return DeadlineExceededError("the request's timeout_s passed before it finished")
    if reason == "shutdown":
        return ShuttingDownError("the host shut down before this request finished; retry once it is back")
    if reason == "client_gone":
        return CancelledError("the request's client stopped answering heartbeats")
    return CancelledError(f"the request was cancelled ({reason})")


class Backend:
    """Base class of every model family; see the module docstring for the contract."""

    can_offload = False  # True where offload()/restore() move the weights to pinned RAM and back
    batch_rows = 1  # the most rows one generate_batch pass takes unless the catalog says (1: never batches)
    requires: tuple[str, ...] = ()  # the modules its load imports (``modelhost doctor`` checks each runner's Python)

    def __init__(self, spec: ModelSpec) -> None:
        self.name = spec.name

    @classmethod
    def expand(cls, name: str, options: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """The models one catalog table serves, as ``(name, options)``: itself, unless a backend serves a folder
        of models from one table (RVC voices). Runs when the catalog is read; ValueError says what to fix."""
        return [(name, options)]

    # ---- required ----

    def load(self, device: str) -> None:
        raise NotImplementedError

    def generate(self, request: GenerateRequest, ctx: RunContext) -> GenerateOutput:
        raise NotImplementedError

    def unload(self) -> None:
        raise NotImplementedError

    def memory_bytes(self) -> int:
        """Bytes the loaded model holds (0 when unloaded)."""
        raise NotImplementedError

    # ---- optional hooks ----

    def memory_report(self) -> MemoryReport:
        return MemoryReport(self.memory_bytes())

    def estimate_bytes(self) -> int:
        """What a load will take, from files alone; 0 when unknown."""
        return 0

    def estimate(self) -> MemoryReport:
        return MemoryReport(self.estimate_bytes())

    def source(self) -> dict[str, Any]:
        return {}

    def details(self) -> dict[str, Any]:
        return {}

    def batch_key(self, request: GenerateRequest) -> Hashable | None:
        """Requests with equal keys can run as one ``generate_batch`` pass; None: this one runs alone."""
        return None

    def generate_batch(self, requests: Sequence[GenerateRequest],
                       ctxs: Sequence[RunContext]) -> list[GenerateOutput | RequestError]:
        """Rows with equal ``batch_key`` in one pass: one output, or the error that row ended in, per row.
        An exception raised here (out of memory) ends every row; the host then runs them one at a time."""
        out: list[GenerateOutput | RequestError] = []
        for request, ctx in zip(requests, ctxs):
            try:
                out.append(self.generate(request, ctx))
            except RequestError as exc:
                out.append(exc)
        return out

    def audio_seconds(self, request: GenerateRequest) -> float | None:
        """Seconds of audio ``request`` makes (sizes its activation memory); None: not counted."""
        return None

    def warmup(self) -> None:
        """One short generation after a boot preload (kernel selection, allocator growth)."""

    def offload(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no warm tier")

    def restore(self, device: str) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no warm tier")
