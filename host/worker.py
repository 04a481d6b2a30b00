"""The thread that runs one model's backend calls: ``modelhost-model-NAME``.

A worker owns its model's backend object and nothing else. The core loop sends it one command at a
time on the worker's own queue (so a command for one model never wakes another model's thread):
load, run a job, unload, offload to the warm tier, restore, stop. The worker does the call and
posts one ``Report`` back to the core, which decides what happens next and sends every final reply.
Only progress and a streaming request's chunk events go straight out (they are not final and carry
no decision).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from modelhost.client.errors import BackendError, LoadFailedError, OutOfMemoryError, RequestError
from modelhost.host import devices
from modelhost.host.backends import Backend, GenerateRequest, MemoryReport, RunContext
from modelhost.host.metrics import Metrics
from modelhost.host.scheduler import Job

log = logging.getLogger("modelhost.worker")

# reply(peer, kind, request_id, body): sends one message to a client; thread-safe.
Reply = Callable[[bytes, str, int, dict], None]


@dataclass
class Command:
    """What the core asks a worker to do: ``load`` (device, warmup), ``run`` (job), ``unload`` (reason),
    ``offload``, ``restore`` (device), ``stop``."""

    op: str
    job: Job | None = None
    device: str = ""
    reason: str = ""
    warmup: bool = False


@dataclass
class Report:
    """A worker's answer to one command: ``ok`` with a body, or the error it ended in."""

    model: str
    command: Command
    ok: bool
    body: dict[str, Any] = field(default_factory=dict)
    error: RequestError | None = None
    oom: bool = False  # the device ran out of memory: the core frees room and retries once
    report: MemoryReport | None = None  # the measured size after a load or restore
    seconds: float = 0.0  # how long the load / restore took
    delta_bytes: int = 0  # allocator (CUDA) or RSS (CPU) growth during a load
    details: dict[str, Any] = field(default_factory=dict)  # the backend's facts for ps, after a load or a run


class Worker:
    """One model's thread and command queue."""

    def __init__(self, name: str, backend: Backend, post: Callable[[Report], None], reply: Reply,
                 metrics: Metrics | None = None) -> None:
        self.name = name
        self._metrics = metrics
        self.backend = backend
        self._post = post
        self._reply = reply
        self._queue: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._ops: dict[str, Callable[[Command], Report]] = {
            "load": self._load, "run": self._run_command, "unload": self._unload,
            "offload": self._offload, "restore": self._restore}
        self.thread = threading.Thread(target=self._loop, name=f"modelhost-model-{name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def send(self, command: Command) -> None:
        self._queue.put(command)

    def _loop(self) -> None:
        while True:
            command = self._queue.get()
            if command.op == "stop":
                self._quietly(self.backend.unload)
                return
            try:
                report = self._ops[command.op](command)
            except Exception as exc:  # a worker bug: the core still hears back, so the job gets its reply
                log.error("model %s: %s failed inside the host", self.name, command.op, exc_info=True)
                report = Report(self.name, command, False, error=BackendError(f"model {self.name!r}: host error: {exc}"))
            self._post(report)

    # ---- the commands ----

    def _load(self, command: Command) -> Report:
        start = time.perf_counter()
        try:
            before = devices.allocated_bytes(command.device)
            self.backend.load(command.device)
            delta = max(0, devices.allocated_bytes(command.device) - before)
            report = self.backend.memory_report()
            seconds = time.perf_counter() - start
            log.info("loaded %s on %s in %.2f s (%d bytes)", self.name, command.device, seconds, report.total_bytes)
            if command.warmup:  # kernel selection and allocator growth now, not on a user's request
                warm_start = time.perf_counter()
                self.backend.warmup()
                log.info("warmed up %s in %.2f s", self.name, time.perf_counter() - warm_start)
        except Exception as exc:
            self._quietly(self.backend.unload)
            devices.release_cached_memory(command.device)
            if isinstance(exc, RequestError):
                return Report(self.name, command, False, error=exc)
            oom = devices.is_out_of_memory(exc)
            err = (OutOfMemoryError if oom else LoadFailedError)(
                f"model {self.name!r} failed to load: {type(exc).__name__}: {exc}")
            if not oom:
                log.warning("model %s failed to load", self.name, exc_info=True)
            return Report(self.name, command, False, error=err, oom=oom)
        return Report(self.name, command, True, report=report, seconds=seconds, delta_bytes=delta,
                      details=self._details())

    def _run_job(self, job: Job) -> dict[str, Any]:
        body = job.body
        started_ns = time.monotonic_ns()
        first = [True]

        def emit(step: int, total: int) -> None:
            if first[0] and self._metrics is not None:
                first[0] = False
                self._metrics.first_progress.labels(self.name).observe((time.monotonic_ns() - job.received_ns) / 1e9)
            job.last_progress_s = time.monotonic()
            self._reply(job.peer, "progress", job.request_id, {"step": step, "total": total})

        seq = [0]

        def chunk(audio: Any, sample_rate: int, offset: int) -> None:  # a streaming request's audio so far
            self._reply(job.peer, "chunk", job.request_id,
                        {"audio": audio, "sample_rate": int(sample_rate), "offset": int(offset), "seq": seq[0]})
            seq[0] += 1

        ctx = RunContext(emit=emit, is_cancelled=lambda: job.stop_reason,
                         chunk=chunk if body.get("stream") else None, stream_interval_s=body.get("stream_interval_s"))
        ctx.check()
        request = GenerateRequest(prompt=body.get("prompt"), params=body.get("params") or {},
                                  audio=body.get("audio"), sample_rate=body.get("sample_rate"))
        out = self.backend.generate(request, ctx)
        done_ns = time.monotonic_ns()
        return {
            "audio": out.audio,
            "sample_rate": int(out.sample_rate),
            "timings_ns": {
                "queue_ns": started_ns - job.received_ns,
                "load_ns": job.load_ns,
                "run_ns": done_ns - started_ns,
                "host_ns": done_ns - job.received_ns,
            },
            "info": out.info,
        }

    def _run_command(self, command: Command) -> Report:
        job = command.job
        assert job is not None
        try:
            body = self._run_job(job)
        except RequestError as exc:
            return Report(self.name, command, False, error=_bare(exc))
        except Exception as exc:
            if devices.is_out_of_memory(exc):
                return Report(self.name, command, False, oom=True, error=_bare(OutOfMemoryError(
                    f"model {self.name!r} ran out of device memory: {exc}; try a shorter duration")))
            log.warning("model %s: request %d failed", self.name, job.request_id, exc_info=True)
            return Report(self.name, command, False,
                          error=_bare(BackendError(f"model {self.name!r} failed: {type(exc).__name__}: {exc}")))
        # a run may have grown what the model holds (RVC loads FCPE or RMVPE on first use)
        return Report(self.name, command, True, body=body, report=self.backend.memory_report(), details=self._details())

    def _unload(self, command: Command) -> Report:
        self._quietly(self.backend.unload)
        if command.device:
            devices.release_cached_memory(command.device)
        log.info("unloaded %s (%s)", self.name, command.reason or "requested")
        return Report(self.name, command, True)

    def _offload(self, command: Command) -> Report:
        self.backend.offload()
        devices.release_cached_memory(command.device)
        log.info("moved %s to the warm CPU tier", self.name)
        return Report(self.name, command, True)

    def _restore(self, command: Command) -> Report:
        start = time.perf_counter()
        try:
            self.backend.restore(command.device)
        except Exception as exc:
            self._quietly(self.backend.unload)
            devices.release_cached_memory(command.device)
            oom = devices.is_out_of_memory(exc)
            return Report(self.name, command, False, oom=oom, error=(OutOfMemoryError if oom else LoadFailedError)(
                f"model {self.name!r} failed to come back from the warm tier: {type(exc).__name__}: {exc}"))
        seconds = time.perf_counter() - start
        log.info("swapped %s into %s in %.3f s", self.name, command.device, seconds)
        return Report(self.name, command, True, seconds=seconds)

    # ---- helpers ----

    def _details(self) -> dict[str, Any]:
        try:
            return dict(self.backend.details())
        except Exception:
            return {}

    def _quietly(self, call: Callable[[], Any]) -> None:
        try:
            call()
        except Exception:
            log.warning("model %s: %s failed", self.name, getattr(call, "__name__", "call"), exc_info=True)


def _bare(exc: BaseException) -> BaseException:
    """``exc`` without its traceback or context: their frames would keep the request's arrays (a client's
    shared-memory segments, a GPU tensor) alive for as long as the error is kept."""
    exc.__traceback__ = None
    exc.__context__ = None
    exc.__cause__ = None
    return exc
