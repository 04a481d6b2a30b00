"""One catalog model as the core loop sees it: its state, measurements and what ``ps`` shows.

Owned by the core thread (``modelhost-core``): only it reads or changes a ``Model``. What other
threads need (``ps``) is the immutable ``row`` dict the core rebuilds after each change and
publishes by replacing the reference. The backend object is touched only by the model's worker.

States: ``unloaded`` -> ``loading`` -> ``ready`` -> ``unloading`` -> ``unloaded``; from ``ready``
a GPU model can go ``offloading`` -> ``warm`` -> ``restoring`` -> ``ready``; a failed load ends in
``failed`` (its error kept), which a new request retries.
"""

from __future__ import annotations

import math
import time
from typing import Any

from modelhost.host import residency
from modelhost.host.backends import INLINE, Backend, MemoryReport, ModelSpec, runner_of

UNLOADED, LOADING, READY, UNLOADING, FAILED = "unloaded", "loading", "ready", "unloading", "failed"
WARM, OFFLOADING, RESTORING = "warm", "offloading", "restoring"
ON_DEVICE = frozenset({LOADING, READY, UNLOADING, OFFLOADING, RESTORING})  # count against the device's budget
MOVING = frozenset({LOADING, UNLOADING, OFFLOADING, RESTORING})  # a worker command is changing where it lives


class Model:
    """A catalog model's state, measurements and residency facts (core thread only)."""

    def __init__(self, spec: ModelSpec, backend: Backend) -> None:
        self.spec = spec
        self.backend = backend
        self.state = UNLOADED
        self.device: str | None = None
        self.report: MemoryReport | None = None  # last measured size: survives an unload and sizes the next load
        self.reserved: MemoryReport | None = None  # what a load in progress holds on its device
        self.measured_delta_bytes = 0
        self.load_s: float | None = None
        self.swap_in_s: float | None = None
        self.hits = 0
        self.loads = 0
        self.evictions = 0
        self.last_used: float | None = None  # wall clock, for people
        self.last_used_s = 0.0  # monotonic, for the policy
        self.usage = residency.Usage()
        self.pinned = spec.pin
        self.keep_until_s = math.inf
        self.error: str | None = None
        self.last_ok: float | None = None  # wall clock of its last successful generation
        self.run_s = 0.0  # a typical generation's seconds (moving average): what "far past expected" means
        self.running: list[Any] = []  # the Jobs of the run in flight (one, or a batch's rows)
        self.activation_bytes_per_s = 0  # measured: memory a run needs per second of audio per batch row (max seen)
        self.activation_reserved_bytes = 0  # what the run in flight holds for its activations
        self.max_rows = spec.max_batch_size if spec.max_batch_size is not None else max(1, int(backend.batch_rows))
        self.command: str | None = None  # the worker command in flight ("load", "run", ...), if any
        self.unload_job: Any = None  # the unload request waiting for the unload in flight, if any
        self.runner = runner_of(spec)  # the runner process it runs in, or INLINE (a thread of the host)
        self.runner_overhead_bytes = 0  # its runner process's own bytes (measured), shared by the runner's models
        self.restarts = 0  # its runner's crashes within the crash window
        self.source = _safe(backend.source)
        self._file_estimate: MemoryReport | None = None  # the backend's estimate from its files, read once
        self.details: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def idle(self) -> bool:
        return self.command is None

    def estimate(self, device: str | None = None) -> MemoryReport:
        """What a load (on ``device``, else where it is or is meant to go) will take: the last measured size, else the
        catalog's memory hint, else the backend's estimate from its files; the catalog's reserve for activations
        comes on top, and on a GPU its runner's own memory (``_with_runner``)."""
        if self.report is not None:
            base = self.report
        elif self.spec.memory_bytes is not None:
            base = MemoryReport(self.spec.memory_bytes)
        else:
            if self._file_estimate is None:  # ps rows are rebuilt on every request: read the files once
                found = _safe(self.backend.estimate, MemoryReport(0))
                if not found.total_bytes:  # nothing there yet (a download to come): look again next time
                    return MemoryReport(self.spec.reserve_bytes)
                self._file_estimate = found
            base = self._file_estimate
        return MemoryReport(base.own_bytes + self.spec.reserve_bytes, self._with_runner(base.shared, device))

    def held(self) -> MemoryReport:
        """What it holds on its device now (a load in progress: its reservation)."""
        if self.state in (LOADING, RESTORING):
            return self.reserved or self.estimate()
        report = self.report or MemoryReport(0)
        return MemoryReport(report.own_bytes + self.spec.reserve_bytes, self._with_runner(report.shared, self.device))

    def _with_runner(self, shared: dict[Any, int], device: str | None) -> dict[Any, int]:
        """Its shared weights, plus, on a GPU, its runner process's own device memory (its CUDA context and the
        allocator's cache, measured through NVML): counted once for all the runner's models on that device, like
        a shared weight, and freed with the last of them (the runner then exits). On the CPU a runner's own
        memory (its interpreter and libraries) is shown in ``ps`` but is not the models' budget's to count."""
        device = device or self.device or self.spec.device or ""
        if self.runner == INLINE or not self.runner_overhead_bytes or not device.startswith("cuda"):
            return dict(shared)
        return {**shared, ("runner", self.runner, device): self.runner_overhead_bytes}

    def resident(self, busy: bool) -> residency.Resident:
        held = self.held()
        return residency.Resident(
            name=self.name, device=self.device or "", bytes=held.own_bytes + self.activation_reserved_bytes,
            reload_s=self.load_s or 0.0,
            last_used_s=self.last_used_s, usage=self.usage, pinned=self.pinned, busy=busy,
            keep_until_s=self.keep_until_s, shared=dict(held.shared))

    def activation_bytes(self, audio_s: float | None, rows: int = 1) -> int:
        """What a run of ``rows`` rows of ``audio_s`` seconds each needs for its activations (0: unknown): the
        measured figure, or the catalog's ``activation`` where that is larger."""
        per_s = max(self.activation_bytes_per_s, self.spec.activation_bytes_per_s)
        return int(per_s * (audio_s or 0.0) * rows)

    def measured_run(self, rise_bytes: int, audio_s: float | None, rows: int) -> None:
        """A run's memory rise over its start: the per-second, per-row figure keeps the largest seen."""
        if audio_s and rows and rise_bytes > 0:
            self.activation_bytes_per_s = max(self.activation_bytes_per_s, int(rise_bytes / (audio_s * rows)))

    def record_use(self, now_s: float, keep_alive_s: float | None, generated: bool) -> None:
        """A request used this model: a generation counts as use; any request may extend the keep-alive."""
        if generated:
            self.hits += 1
            self.last_used = time.time()
            self.last_used_s = now_s
            self.usage.hit(now_s)
        current = self.keep_until_s if self.keep_until_s > now_s else 0.0
        self.keep_until_s = max(current, residency.keep_until(now_s, self.spec.keep_alive_s, keep_alive_s))

    def build_row(self, queued: int, running: int, holders: dict[Any, int]) -> dict[str, Any]:
        """The ``ps`` row (a new dict each time: other threads hold the old one); ``holders``: how many
        ready models on this device hold each shared weight."""
        ready = self.state == READY
        own = self.report.own_bytes if self.report else 0
        shared = dict(self.report.shared) if self.report else {}
        return {
            "name": self.name,
            "backend": self.spec.backend,
            "runner": self.runner,
            "runner_overhead_bytes": self.runner_overhead_bytes,  # its runner process's own memory, counted once per runner
            "source": self.source,
            "state": self.state,
            "device": self.device if ready else (self.spec.device or "auto"),
            "tier": _tier(self.state, self.device),
            "swap_in_s": self.swap_in_s,
            "memory_bytes": own + _share(shared, holders) if self.state in (READY, WARM) else 0,
            "measured_bytes": own + sum(shared.values()) if self.report else None,
            "held_bytes": _held_share(self.held(), holders) if self.state in ON_DEVICE else 0,
            "reserved_bytes": self.reserved.total_bytes if self.reserved and self.state in (LOADING, RESTORING) else 0,
            "estimate_bytes": self.estimate().total_bytes,
            "measured_delta_bytes": self.measured_delta_bytes,
            "reserve_bytes": self.spec.reserve_bytes,
            "activation_bytes_per_s": self.activation_bytes_per_s,
            "activation_reserved_bytes": self.activation_reserved_bytes,
            "max_batch_size": self.max_rows,
            "batch_rows": len(self.running),
            "pinned": self.pinned,
            "keep_until": _wall(self.keep_until_s) if ready else None,
            "evictions": self.evictions,
            "loads": self.loads,
            "load_s": self.load_s,
            "hits": self.hits,
            "last_used": self.last_used,
            "last_ok": self.last_ok,
            "typical_run_s": round(self.run_s, 3),
            "error": self.error,
            "details": self._details(shared, holders) if ready else {},
            "queued": queued,
            "running": running,
        }


    def _details(self, shared: dict[Any, int], holders: dict[Any, int]) -> dict[str, Any]:
        """The backend's details, with each shared weight's bytes and holder count from the host's own accounting."""
        if not shared:
            return dict(self.details)
        by_kind = {_kind(key): {"bytes": nbytes, "holders": holders.get(key, 1)} for key, nbytes in shared.items()}
        return {**self.details, "shared": by_kind}


def _share(shared: dict[Any, int], holders: dict[Any, int]) -> int:
    """This model's part of weights it shares: each one's bytes split among the ready models holding it."""
    return sum(nbytes // max(1, holders.get(key, 1)) for key, nbytes in shared.items())


def _held_share(held: MemoryReport, holders: dict[Any, int]) -> int:
    return held.own_bytes + _share(held.shared, holders)


def _kind(key: Any) -> str:
    """A shared weight's key (``("hubert", path)``) as ps names it: ``hubert``."""
    return str(key[0]) if isinstance(key, tuple) and key else str(key)


def _safe(call: Any, default: Any = None) -> Any:
    """A backend's file-only hook (source, estimate): a failure there must not stop the host."""
    try:
        return call()
    except Exception:
        return {} if default is None else default


def _wall(monotonic_s: float) -> float | None:
    """A monotonic instant as wall-clock epoch seconds, for people; None for never."""
    return None if math.isinf(monotonic_s) else time.time() + (monotonic_s - time.monotonic())


def _tier(state: str, device: str | None) -> str:
    if state == WARM:
        return "warm"
    if state != READY:
        return "unloaded"
    return "gpu" if (device or "").startswith("cuda") else "cpu"
