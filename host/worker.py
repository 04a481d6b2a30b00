"""One model's slot (its state and measurements) and the thread that runs its jobs.

Each catalog model has a ``ModelSlot`` and a ``ModelWorker`` thread named ``modelhost-model-NAME``.
The worker takes its model's jobs from the shared scheduler in FIFO order, loads the model on
first use, runs the backend, and sends exactly one final reply per job (a result or an error).
A slow or failing model never blocks another model's worker, nor the I/O thread.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from client.errors import (
    BackendError,
    CancelledError,
    DeadlineExceededError,
    LoadFailedError,
    OutOfMemoryError,
    RequestError,
    ShuttingDownError,
)
from host import devices
from host.backends import Backend, GenerateRequest, RunContext
from host.config import ModelSpec
from host.scheduler import Job, Scheduler

log = logging.getLogger("modelhost.worker")

# reply(peer, kind, request_id, body): sends one message to a client; thread-safe.
Reply = Callable[[bytes, str, int, dict], None]

UNLOADED, LOADING, READY, UNLOADING, FAILED = "unloaded", "loading", "ready", "unloading", "failed"


class ModelSlot:
    """A catalog model's backend, state and measurements; ``status()`` is safe from any thread."""

    def __init__(self, spec: ModelSpec, backend: Backend) -> None:
        self.spec = spec
        self.backend = backend
        self.state = UNLOADED
        self.device: str | None = None
        self.memory_bytes = 0
        self.load_s: float | None = None
        self.hits = 0
        self.last_used: float | None = None  # wall clock, for people
        self.error: str | None = None
        self._lock = threading.Lock()

    def ensure_loaded(self) -> int:
        """Load if needed; returns the ns spent loading (0 if it was resident)."""
        if self.state == READY:
            return 0
        self._set(state=LOADING, error=None)
        start = time.perf_counter_ns()
        device: str | None = None
        try:
            device = devices.resolve_device(self.spec.device)
            self.backend.load(device)
        except Exception as exc:
            self._discard(device)
            self._set(state=FAILED, error=str(exc))
            if isinstance(exc, RequestError):
                raise
            if devices.is_out_of_memory(exc):
                raise OutOfMemoryError(f"model {self.spec.name!r} does not fit on its device: {exc}") from None
            raise LoadFailedError(f"model {self.spec.name!r} failed to load: {type(exc).__name__}: {exc}") from None
        load_ns = time.perf_counter_ns() - start
        self._set(state=READY, device=device, memory_bytes=self.backend.memory_bytes(), load_s=load_ns / 1e9)
        log.info("loaded %s on %s in %.2f s (%d bytes)", self.spec.name, device, load_ns / 1e9, self.memory_bytes)
        return load_ns

    def unload(self) -> None:
        if self.state in (UNLOADED, FAILED):
            self._set(state=UNLOADED)
            return
        self._set(state=UNLOADING)
        self._discard(self.device)
        self._set(state=UNLOADED, memory_bytes=0)
        log.info("unloaded %s", self.spec.name)

    def _discard(self, device: str | None) -> None:
        try:
            self.backend.unload()
        finally:
            if device is not None:
                devices.release_cached_memory(device)

    def record_hit(self) -> None:
        with self._lock:
            self.hits += 1
            self.last_used = time.time()

    def _set(self, **fields: Any) -> None:
        with self._lock:
            for key, value in fields.items():
                setattr(self, key, value)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "name": self.spec.name,
                "backend": self.spec.backend,
                "state": self.state,
                "device": self.device if self.state == READY else (self.spec.device or "auto"),
                "memory_bytes": self.memory_bytes,
                "load_s": self.load_s,
                "hits": self.hits,
                "last_used": self.last_used,
                "error": self.error,
                "details": self._details(),
            }

    def _details(self) -> dict[str, Any]:
        details = getattr(self.backend, "details", None)
        return details() if details is not None and self.state == READY else {}


class ModelWorker:
    """The thread that runs one model's jobs."""

    def __init__(self, slot: ModelSlot, scheduler: Scheduler, cond: threading.Condition, reply: Reply,
                 on_done: Callable[[Job], None]) -> None:
        self.slot = slot
        self._sched = scheduler
        self._cond = cond
        self._reply = reply
        self._on_done = on_done
        self._stopping = False
        self.thread = threading.Thread(target=self._run, name=f"modelhost-model-{slot.spec.name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Ask the thread to exit once its queue is empty (the caller notifies the condition)."""
        self._stopping = True

    def _run(self) -> None:
        name = self.slot.spec.name
        while True:
            with self._cond:
                job = self._sched.take(name)
                while job is None:
                    if self._stopping:
                        return
                    self._cond.wait(timeout=0.5)
                    job = self._sched.take(name)
            try:
                self._run_job(job)
            finally:
                with self._cond:
                    self._sched.finish(job)
                    self._cond.notify_all()
                self._on_done(job)

    def _run_job(self, job: Job) -> None:
        try:
            body = self._execute(job)
        except RequestError as exc:
            self._reply(job.peer, "error", job.request_id, {"code": exc.code, "message": exc.message})
        except Exception as exc:
            log.warning("model %s: %s request %d failed", self.slot.spec.name, job.kind, job.request_id, exc_info=True)
            err = self._classify(exc)
            self._reply(job.peer, "error", job.request_id, {"code": err.code, "message": err.message})
        else:
            self._reply(job.peer, "result", job.request_id, body)

    def _classify(self, exc: Exception) -> RequestError:
        if devices.is_out_of_memory(exc):
            if self.slot.device is not None:
                devices.release_cached_memory(self.slot.device)
            return OutOfMemoryError(f"model {self.slot.spec.name!r} ran out of device memory: {exc}; try a shorter duration")
        return BackendError(f"model {self.slot.spec.name!r} failed: {type(exc).__name__}: {exc}")

    def _execute(self, job: Job) -> dict[str, Any]:
        started_ns = time.monotonic_ns()
        ctx = RunContext(
            emit=lambda step, total: self._reply(job.peer, "progress", job.request_id, {"step": step, "total": total}),
            is_cancelled=lambda: job.reason if job.cancelled else None,
        )
        ctx.check()
        if job.kind == "unload":
            self.slot.unload()
            return self.slot.status()
        load_ns = self.slot.ensure_loaded()
        if job.kind == "load":
            return self.slot.status()
        body = job.body
        request = GenerateRequest(
            prompt=body.get("prompt"), params=body.get("params") or {}, audio=body.get("audio"), sample_rate=body.get("sample_rate")
        )
        self.slot.record_hit()
        run_start_ns = time.monotonic_ns()
        out = self.slot.backend.generate(request, ctx)
        done_ns = time.monotonic_ns()
        return {
            "audio": out.audio,
            "sample_rate": int(out.sample_rate),
            "timings_ns": {
                "queue_ns": started_ns - job.received_ns,
                "load_ns": load_ns,
                "run_ns": done_ns - run_start_ns,
                "host_ns": done_ns - job.received_ns,
            },
            "info": out.info,
        }


def shutdown_error() -> ShuttingDownError:
    return ShuttingDownError("the host is shutting down and takes no new work; retry once it is back")


def cancelled_error(reason: str) -> RequestError:
    if reason == "shutdown":
        return CancelledError("the host shut down before this request ran; retry once it is back")
    if reason == "deadline":
        return DeadlineExceededError("the request's timeout_s passed while it waited in the queue")
    return CancelledError(f"the request was cancelled ({reason})")
