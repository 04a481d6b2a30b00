"""One model's slot (its state and measurements) and the thread that runs its jobs.

Each catalog model has a ``ModelSlot`` and a ``ModelWorker`` thread named ``modelhost-model-NAME``.
The worker takes its model's jobs from the shared scheduler in FIFO order, loads the model on
first use, runs the backend, and sends exactly one final reply per job (a result or an error).
A slow or failing model never blocks another model's worker, nor the I/O thread.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from modelhost.client.errors import (
    BackendError,
    CancelledError,
    DeadlineExceededError,
    LoadFailedError,
    OutOfMemoryError,
    RequestError,
    ShuttingDownError,
)
from modelhost.host import devices, residency
from modelhost.host.backends import Backend, GenerateRequest, RunContext
from modelhost.host.config import ModelSpec
from modelhost.host.scheduler import Job, Scheduler

if TYPE_CHECKING:
    from modelhost.host.engine import MemoryManager

log = logging.getLogger("modelhost.worker")

# reply(peer, kind, request_id, body): sends one message to a client; thread-safe.
Reply = Callable[[bytes, str, int, dict], None]

UNLOADED, LOADING, READY, UNLOADING, FAILED = "unloaded", "loading", "ready", "unloading", "failed"
WARM = "warm"  # offloaded from its GPU to pinned CPU RAM; swapped back in on the next request


class ModelSlot:
    """A catalog model's backend, state and measurements; ``status()`` is safe from any thread."""

    def __init__(self, spec: ModelSpec, backend: Backend) -> None:
        self.spec = spec
        self.backend = backend
        self.state = UNLOADED
        self.device: str | None = None
        self.memory_bytes = 0
        self.measured_delta_bytes = 0  # allocator (CUDA) or RSS (CPU) growth during the load
        self.load_s: float | None = None
        self.hits = 0
        self.last_used: float | None = None  # wall clock, for people
        self.last_used_s = 0.0  # monotonic, for the policy
        self.usage = residency.Usage()
        self.pinned = spec.pin
        self.keep_until_s = math.inf
        self.evictions = 0
        self.loads = 0
        self.swap_in_s: float | None = None
        self.error: str | None = None
        self._lock = threading.Lock()
        self.busy_lock = threading.RLock()  # held while a job runs on this model, and while it is evicted

    @property
    def name(self) -> str:
        return self.spec.name

    def estimate_bytes(self) -> int:
        """What a load will take: the measured size if it was loaded before, else the catalog hint or the backend's estimate."""
        if self.memory_bytes:
            return self.memory_bytes
        if self.spec.memory_bytes is not None:
            return self.spec.memory_bytes
        estimate = getattr(self.backend, "estimate_bytes", None)
        return int(estimate()) if estimate is not None else 0

    def ensure_loaded(self, admit: Callable[["ModelSlot", str, int], None]) -> int:
        """Load if needed, after ``admit(slot, device, bytes)`` made room; returns the ns spent loading."""
        if self.state == READY:
            return 0
        if self.state == WARM:
            return self._swap_in(admit)
        self._set(state=LOADING, error=None)
        start = time.perf_counter_ns()
        device: str | None = None
        try:
            device = devices.resolve_device(self.spec.device)
            admit(self, device, self.estimate_bytes() + self.spec.reserve_bytes)
            before = devices.allocated_bytes(device)
            self.backend.load(device)
            delta = max(0, devices.allocated_bytes(device) - before)
        except Exception as exc:
            self._discard(device)
            if devices.is_out_of_memory(exc):
                self._set(state=UNLOADED)
                raise  # the worker frees room and retries once
            self._set(state=FAILED, error=str(exc))
            if isinstance(exc, RequestError):
                raise
            raise LoadFailedError(f"model {self.spec.name!r} failed to load: {type(exc).__name__}: {exc}") from None
        load_ns = time.perf_counter_ns() - start
        self._set(state=READY, device=device, memory_bytes=self.backend.memory_bytes(), measured_delta_bytes=delta,
                  loads=self.loads + 1,
                  load_s=load_ns / 1e9, last_used_s=time.monotonic(),
                  keep_until_s=residency.keep_until(time.monotonic(), self.spec.keep_alive_s))
        log.info("loaded %s on %s in %.2f s (%d bytes)", self.spec.name, device, load_ns / 1e9, self.memory_bytes)
        return load_ns

    def _swap_in(self, admit: Callable[["ModelSlot", str, int], None]) -> int:
        """From the warm tier back to the model's GPU; returns the ns it took."""
        device = self.device or devices.resolve_device(self.spec.device)
        admit(self, device, self.memory_bytes + self.spec.reserve_bytes)
        start = time.perf_counter_ns()
        self.backend.restore(device)
        swap_ns = time.perf_counter_ns() - start
        self._set(state=READY, swap_in_s=swap_ns / 1e9, last_used_s=time.monotonic())
        log.info("swapped %s into %s in %.3f s", self.spec.name, device, swap_ns / 1e9)
        return swap_ns

    def offload(self) -> None:
        """To the warm tier: weights in pinned CPU RAM, ready to swap back."""
        self.backend.offload()
        devices.release_cached_memory(self.device or "cpu")
        self._set(state=WARM, evictions=self.evictions + 1)
        log.info("moved %s to the warm CPU tier", self.spec.name)

    @property
    def can_offload(self) -> bool:
        return hasattr(self.backend, "offload") and (self.device or "").startswith("cuda")

    def unload(self, reason: str = "requested") -> None:
        if self.state in (UNLOADED, FAILED):
            self._set(state=UNLOADED)
            return
        evicted_before = self.state == WARM  # counted once, when it left its GPU
        self._set(state=UNLOADING)
        self._discard(self.device)
        self._set(state=UNLOADED, memory_bytes=0, evictions=self.evictions + (reason == "evicted" and not evicted_before))
        log.info("unloaded %s (%s)", self.spec.name, reason)

    def _discard(self, device: str | None) -> None:
        try:
            self.backend.unload()
        finally:
            if device is not None:
                devices.release_cached_memory(device)

    def record_hit(self, keep_alive_s: float | None = None, *, generated: bool = True) -> None:
        """A request used this model: a generation counts as use; any request may extend the keep-alive."""
        now = time.monotonic()
        with self._lock:
            if generated:
                self.hits += 1
                self.last_used = time.time()
                self.last_used_s = now
                self.usage.hit(now)
            self.keep_until_s = max(self.keep_until_s if self.keep_until_s > now else 0.0,
                                    residency.keep_until(now, self.spec.keep_alive_s, keep_alive_s))

    def current_bytes(self) -> int:
        """The backend's size now (a voice's share of a shared HuBERT changes as other voices come and go)."""
        if self.state in (READY, WARM):
            self.memory_bytes = self.backend.memory_bytes()
        return self.memory_bytes

    def resident(self, busy: bool, measure: bool = True) -> residency.Resident:
        """What the eviction policy needs to know of this (loaded) model; ``measure=False`` keeps the last size
        (the keep-alive check, several times a second, needs no size)."""
        size = self.current_bytes() if measure else self.memory_bytes
        with self._lock:
            return residency.Resident(
                name=self.spec.name, device=self.device or "", bytes=size + self.spec.reserve_bytes,
                reload_s=self.load_s or 0.0, last_used_s=self.last_used_s, usage=self.usage, pinned=self.pinned,
                busy=busy, keep_until_s=self.keep_until_s,
            )

    def _set(self, **fields: Any) -> None:
        with self._lock:
            for key, value in fields.items():
                setattr(self, key, value)

    def status(self) -> dict[str, Any]:
        self.current_bytes()
        with self._lock:
            return {
                "name": self.spec.name,
                "backend": self.spec.backend,
                "source": self._source(),
                "state": self.state,
                "device": self.device if self.state == READY else (self.spec.device or "auto"),
                "tier": _tier(self.state, self.device),
                "swap_in_s": self.swap_in_s,
                "memory_bytes": self.memory_bytes,
                "measured_delta_bytes": self.measured_delta_bytes,
                "reserve_bytes": self.spec.reserve_bytes,
                "pinned": self.pinned,
                "keep_until": _wall(self.keep_until_s) if self.state == READY else None,
                "evictions": self.evictions,
                "loads": self.loads,
                "load_s": self.load_s,
                "hits": self.hits,
                "last_used": self.last_used,
                "error": self.error,
                "details": self._details(),
            }

    def _source(self) -> dict[str, Any]:
        source = getattr(self.backend, "source", None)
        return source() if source is not None else {}

    def _details(self) -> dict[str, Any]:
        details = getattr(self.backend, "details", None)
        return details() if details is not None and self.state == READY else {}


class ModelWorker:
    """The thread that runs one model's jobs."""

    def __init__(self, slot: ModelSlot, scheduler: Scheduler, cond: threading.Condition, reply: Reply,
                 on_done: Callable[[Job], None], memory: "MemoryManager") -> None:
        self.slot = slot
        self._memory = memory
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
                with self.slot.busy_lock:
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

    def _with_oom_retry(self, work: Callable[[], Any]) -> Any:
        """Run ``work``; on a device out-of-memory error, evict what can be evicted there and retry once."""
        try:
            return work()
        except Exception as exc:
            if not devices.is_out_of_memory(exc):
                raise
            device = self.slot.device or devices.resolve_device(self.slot.spec.device)
            freed = self._memory.free_device(device, keep=self.slot)
            devices.release_cached_memory(device)
            log.warning("model %s: out of memory on %s; freed %d model(s), retrying once", self.slot.name, device, freed)
            return work()

    def _warm_up(self) -> None:
        """One short generation after a preload: kernel selection and allocator growth happen now, not on a user's request."""
        warmup = getattr(self.slot.backend, "warmup", None)
        if warmup is not None:
            start = time.perf_counter()
            warmup()
            log.info("warmed up %s in %.2f s", self.slot.name, time.perf_counter() - start)

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
            self.slot.unload(job.body.get("reason", "requested"))
            return self.slot.status()
        load_ns = self._with_oom_retry(lambda: self.slot.ensure_loaded(self._memory.admit))
        if job.kind == "load":
            if job.body.get("warmup"):
                self._warm_up()
            self.slot.record_hit(job.body.get("keep_alive_s"), generated=False)
            return self.slot.status()
        body = job.body
        request = GenerateRequest(
            prompt=body.get("prompt"), params=body.get("params") or {}, audio=body.get("audio"), sample_rate=body.get("sample_rate")
        )
        self.slot.record_hit(body.get("keep_alive_s"))
        run_start_ns = time.monotonic_ns()
        out = self._with_oom_retry(lambda: self.slot.backend.generate(request, ctx))
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


def _wall(monotonic_s: float) -> float | None:
    """A monotonic instant as wall-clock epoch seconds, for people; None for never."""
    return None if math.isinf(monotonic_s) else time.time() + (monotonic_s - time.monotonic())


def _tier(state: str, device: str | None) -> str:
    if state == WARM:
        return "warm"
    if state != READY:
        return "unloaded"
    return "gpu" if (device or "").startswith("cuda") else "cpu"
