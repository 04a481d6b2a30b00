"""The thread that runs one model's backend calls: ``modelhost-model-NAME``.

A worker owns its model's backend object and nothing else. The core loop sends it one command at a
time on the worker's own queue (so a command for one model never wakes another model's thread):
load, run jobs (one, or a batch the core grouped: one ``generate_batch`` pass, each row its own
progress, output and error; a pass that runs out of memory is retried here one row at a time),
unload, offload to the warm tier, restore, stop. The worker does the call and
posts one ``Report`` back to the core, which decides what happens next and sends every final reply.
Only progress and a streaming request's chunk events go straight out (they are not final and carry
no decision).

After a run the worker reads the model's size and details again (a run may grow what a model holds:
RVC loads FCPE or RMVPE on first use), but not on every short run: only after one that took
``REFRESH_AFTER_RUN_S`` or more (loading anything takes longer) or once ``REFRESH_EVERY_S`` passed
since the last reading; walking a model's parameters would otherwise cost a small call more than
its own work.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from contextlib import nullcontext
from typing import Any, Callable

from modelhost.client.protocol.errors import BackendError, LoadFailedError, OutOfMemoryError, RequestError
from modelhost.host import devices
from modelhost.host.backends.base import Backend, GenerateOutput, MemoryReport, RunContext
from modelhost.host.commands import Command, Report, Row, Task, TaskKey

log = logging.getLogger("modelhost.worker")
REFRESH_AFTER_RUN_S = 0.02
REFRESH_EVERY_S = 1.0

# events(peer, kind, request_id, body): sends a progress or chunk event to a client; thread-safe.
Events = Callable[[bytes, str, int, dict], None]


class Worker:
    """One model's thread and command queue."""

    def __init__(self, name: str, backend: Backend, post: Callable[[Report], None], events: Events,
                 on_first_progress: Callable[[Task], None] | None = None) -> None:
        self.name = name
        self.backend = backend
        self._post = post
        self._events = events
        self._on_first_progress = on_first_progress
        self._queue: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._ops: dict[str, Callable[[Command], Report]] = {
            "load": self._load, "run": self._run_command, "unload": self._unload,
            "offload": self._offload, "restore": self._restore}
        self._next_refresh_s = 0.0  # a run after this reads the model's size and details again
        self._run_device = "cpu"  # the device of the run in progress
        self._sent: set[TaskKey] = set()  # tasks of runs sent and not yet ended
        self._stops: dict[TaskKey, str] = {}  # tasks told to stop -> why (written by the sending thread, read by this one)
        self.progress_at: dict[TaskKey, float] = {}  # running tasks -> monotonic time of their last progress
        self.thread = threading.Thread(target=self._loop, name=f"modelhost-model-{name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def send(self, command: Command) -> None:
        if command.op == "run":
            self._sent.update(task.key for task in command.tasks)
        self._queue.put(command)

    def stop(self, key: TaskKey, reason: str) -> None:
        """The task ``key``, sent in a run, must stop (``reason``: cancelled, deadline, client_gone, shutdown): at its
        next progress point, or before it starts. Called from the thread that sends the commands."""
        if key in self._sent:
            self._stops[key] = reason

    def join(self, timeout_s: float) -> None:
        self.thread.join(timeout_s)

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
            del command, report  # a run's input arrays (a client's shared memory) go with it, not with the next command

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
        self._next_refresh_s = 0.0
        return Report(self.name, command, True, report=report, seconds=seconds, delta_bytes=delta,
                      details=self._details())

    def _context(self, task: Task) -> RunContext:
        """The ``RunContext`` of one task: its progress and chunks go straight to its client."""
        first = [True]
        key = task.key
        self.progress_at[key] = time.monotonic()

        def emit(step: int, total: int) -> None:
            if first[0] and self._on_first_progress is not None:
                first[0] = False
                self._on_first_progress(task)
            self.progress_at[key] = time.monotonic()
            self._events(task.peer, "progress", task.request_id, {"step": step, "total": total})

        seq = [0]

        def chunk(audio: Any, sample_rate: int, offset: int, item: Any = None) -> None:  # a streaming request's audio so far
            body = {"audio": audio, "sample_rate": int(sample_rate), "offset": int(offset), "seq": seq[0]}
            if item is not None:  # a generator's item (RunContext.item)
                body["item"] = item
            self._events(task.peer, "chunk", task.request_id, body)
            seq[0] += 1

        body = task.body
        return RunContext(emit=emit, is_cancelled=lambda: self._stops.get(key),
                          chunk=chunk if body.get("stream") else None, stream_interval_s=body.get("stream_interval_s"))

    def _run_command(self, command: Command) -> Report:
        tasks = list(command.tasks)
        self._run_device = command.device or "cpu"
        started_ns = time.monotonic_ns()
        try:
            with (devices.PeakMeter(command.device or "cpu") if command.measure else nullcontext()) as meter:
                if len(tasks) == 1:
                    rows = [self._run_alone(tasks[0], started_ns, 1)]
                else:
                    rows = self._run_batch(tasks, started_ns, command.device or "cpu")
        finally:
            for task in tasks:
                self._sent.discard(task.key)
                self._stops.pop(task.key, None)
                self.progress_at.pop(task.key, None)
        report, details = None, None
        now = time.monotonic()
        if now >= self._next_refresh_s or (time.monotonic_ns() - started_ns) / 1e9 >= REFRESH_AFTER_RUN_S:
            report, details = self._quiet_report(), self._details()  # what the run may have grown
            self._next_refresh_s = now + REFRESH_EVERY_S
        return Report(self.name, command, any(r.ok for r in rows), report=report,
                      details=details, rows=rows, peak_rise_bytes=meter.rise_bytes if meter else 0)

    def _run_alone(self, task: Task, started_ns: int, batch_rows: int) -> Row:
        try:
            ctx = self._context(task)
            ctx.check()
            out = self.backend.generate(task.request, ctx)
        except Exception as exc:
            return self._failed(task, exc)
        return Row(task.key, True, body=_body(task, out, started_ns, batch_rows))

    def _run_batch(self, tasks: list[Task], started_ns: int, device: str) -> list[Row]:
        try:
            outs = self.backend.generate_batch([t.request for t in tasks], [self._context(t) for t in tasks])
            if len(outs) != len(tasks):
                raise RuntimeError(f"generate_batch returned {len(outs)} outputs for {len(tasks)} rows")
        except Exception as exc:
            if not devices.is_out_of_memory(exc):
                return [self._failed(task, exc) for task in tasks]
            log.warning("model %s: a batch of %d ran out of memory; running its rows one at a time", self.name, len(tasks))
            devices.release_cached_memory(device)
            return [self._run_alone(task, time.monotonic_ns(), 1) for task in tasks]
        return [Row(task.key, False, error=out) if isinstance(out, RequestError)
                else Row(task.key, True, body=_body(task, out, started_ns, len(tasks))) for task, out in zip(tasks, outs)]

    def _failed(self, task: Task, exc: Exception) -> Row:
        if isinstance(exc, RequestError):
            return Row(task.key, False, error=_bare(exc))
        if devices.is_out_of_memory(exc):
            devices.release_cached_memory(self._run_device)  # the core retries it once room is made
            return Row(task.key, False, oom=True, error=_bare(OutOfMemoryError(
                f"model {self.name!r} ran out of device memory: {exc}; try a shorter duration")))
        log.warning("model %s: request %d failed", self.name, task.request_id, exc_info=True)
        return Row(task.key, False, error=_bare(BackendError(f"model {self.name!r} failed: {type(exc).__name__}: {exc}")))

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
        self._next_refresh_s = 0.0
        log.info("swapped %s into %s in %.3f s", self.name, command.device, seconds)
        return Report(self.name, command, True, seconds=seconds)

    # ---- helpers ----

    def _quiet_report(self) -> MemoryReport | None:
        try:
            return self.backend.memory_report()
        except Exception:
            return None

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


def _body(task: Task, out: GenerateOutput, started_ns: int, batch_rows: int) -> dict[str, Any]:
    """A task's result body: audio, rate, its timings and the backend's info (plus the rows of its pass)."""
    done_ns = time.monotonic_ns()
    return {
        "audio": out.audio,
        "sample_rate": int(out.sample_rate),
        "timings_ns": {
            "queue_ns": started_ns - task.received_ns,
            "load_ns": task.load_ns,
            "run_ns": done_ns - started_ns,
            "host_ns": done_ns - task.received_ns,
        },
        "info": {**out.info, "batch_rows": batch_rows},
    }
