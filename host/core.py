"""The host's core loop: the one owner of the scheduler, every model's state and every admission decision.

Runs in the thread ``modelhost-core``. Other threads only post events to its inbox: the I/O thread
posts decoded requests and dead peers; workers (threads here for ``inline`` models, else runner
processes through the ``modelhost-runners`` thread, ``host.runners``) post ``Report``s, and that thread
posts a ``RunnerExit`` when a runner process ends; the main thread posts controls (start, drain,
cancel_all, stop). The loop takes an event, changes its state, hands commands to model workers (frozen
``Task``s, never its ``Job``s; a stop signal apart), and sends every final reply itself through ``_done``
(idempotent: a job's reply goes out once, by construction). A result arrives already encoded for its
client, so the core copies no audio. Timed work (deadlines, keep-alive expiry, kill timers for runs that
ignore their stop, catalog rescans) sits on a heap
and costs nothing until it is due; the deadlines of jobs that already ended are swept out of it once
they are most of it (a small call's deadline is minutes away, so they would pile up for minutes).

One turn of the loop handles what is waiting, then publishes (the ``ps`` rows of the models it
touched, built once per turn, and the counts), then lets go of the replies and worker commands it
queued during the turn. Sent last, they find the other threads free to run at once: the I/O thread
or worker they wake does not wait for the rest of this turn's bookkeeping (one interpreter lock),
and a reply never reaches a client before the state it reports is readable.

Memory (the decisions are ``host.admission``'s): before a load starts, its estimated bytes (the model's last
measured size, else the catalog hint, else the backend's estimate from its files, plus its reserve) are
reserved on its device, and evictions the policy (``host.residency``) picks must finish before the load is sent.
A model's bytes count against its device from the moment its load is admitted until its unload is
reported, so concurrent loads cannot overcommit a device. A model blocked by busy ones waits; one
that could never fit fails with ``out_of_memory``. A run reserves its activations too: the model's
measured bytes per second of audio per batch row x the request's duration x the rows; a run that
does not fit beside what the device holds waits for other runs there to finish (and a batch takes
only the rows that fit); one that could not fit even with the device's other runs finished starts
anyway, alone.

Batching: a ready model's next run takes its head job and the queued jobs with an equal batch key
(``Scheduler.take_batch``, up to the model's ``max_batch_size`` rows): one worker command, one pass.
A head job that would run alone waits up to ``batch_window_ms`` from its arrival for company. Each
row keeps its own progress, deadline, cancel and reply: a row that must stop while others go on gets
its error at once and its output is thrown away.

Runner processes: a runner's end lost its models' weights; the runs it had in flight are retried once if
they had sent no audio, else end with ``runner_lost``; a runner none of whose models holds anything is
told to exit (``_retire_idle_runners``), so an unload frees its memory.

What other threads read (``ps`` rows, ``health``, the peers with work) is published as immutable
values whose reference the core replaces; nobody else touches a ``Model`` or a backend.
States: ``starting`` (preloading) -> ``running`` -> ``draining`` (no new work) -> ``stopped``.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from modelhost.client.protocol import wire
from modelhost.client.protocol.errors import (
    BackendError,
    RunnerLostError,
    BadParamsError,
    BadRequestError,
    DuplicateIdError,
    OutOfMemoryError,
    RequestError,
    ShuttingDownError,
    UnknownModelError,
)
from modelhost.host import __version__, admission, devices, residency
from modelhost.host.backends import Backend, BackendImportError, create_backend, stop_error
from modelhost.host.catalog import Catalog
from modelhost.host.backends import INLINE, GenerateRequest, ModelSpec
from modelhost.host.commands import Command, Report, Row, Task
from modelhost.host.config import HostConfig
from modelhost.host.front import DEFAULT_TIMEOUT_S, Outbox, Reply, outbox_of, wait_idle
from modelhost.host.metrics import Metrics
from modelhost.host.model import FAILED, LOADING, OFFLOADING, READY, RESTORING, UNLOADED, UNLOADING, WARM, Model
from modelhost.host.runners import CRASH_WINDOW_S, RunnerExit, Runners
from modelhost.host.scheduler import RUNNING, Job, Scheduler

log = logging.getLogger("modelhost.core")

INTERNAL_PEER = b""  # jobs the host gives itself (preload, keep-alive unloads); their replies go nowhere
RESCAN_S = 5.0  # how often a catalog that can change (a WebUI's folders) is read again


@dataclass(frozen=True)
class _Request:
    peer: bytes
    msg: wire.Message
    received_ns: int


@dataclass(frozen=True)
class _PeerGone:
    peer: bytes


@dataclass(frozen=True)
class _Control:
    op: str  # "drain", "cancel_all", "stop"
    done: threading.Event


class Core:
    """See the module docstring. Public methods are safe from any thread; the rest runs in ``modelhost-core``."""

    def __init__(self, config: HostConfig, reply: Outbox | Reply, catalog: Catalog | None = None,
                 metrics: Metrics | None = None, *, runners: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        """``runners`` builds and keeps the models' workers (``host.runners.Runners``; a test may pass its own, with
        the same ``add``/``retire``/``kill``/``status``), and ``clock`` is the monotonic clock every decision reads."""
        self.config = config
        self._clock = clock
        self.metrics = metrics or Metrics()
        self._out = outbox_of(reply)
        self._outgoing: list[tuple] = []  # this turn's replies, commands and control acks, in order (_let_go)
        self._dirty_models: dict[str, None] = {}  # models whose ps row this turn changed, in order (_publish_rows)
        self.catalog = catalog or Catalog(config.models)
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._sched = Scheduler()
        self._models: dict[str, Model] = {}
        self._workers: dict[str, Any] = {}  # model -> its worker (host.worker.Worker, or runners.RunnerWorker)
        self._runners = runners if runners is not None else Runners(
            self._out, self.report, heartbeat_s=config.heartbeat_s, pool=getattr(self._out, "pool", None),
            crash_limit=config.runner_crash_limit, on_first_progress=self._first_progress)
        self._overheads: dict[str, int] = {}
        self._idle_runners: dict[str, None] = {}  # runners this turn's reports may have emptied  # runner -> its process's measured bytes beyond its models' (max seen)
        self._timers: list[tuple[float, int, str, Any]] = []
        self._ended_deadlines = 0  # deadline entries in _timers whose job already replied
        self._seq = itertools.count()
        self._internal_ids = itertools.count(1)
        self._peer_jobs: dict[bytes, int] = {}
        self._preload_left = list(config.preload)
        self._preload_failed: dict[str, str] = {}
        self._state = "starting" if self._preload_left else "running"
        self._started_s = time.monotonic()
        self._stopping = False
        self._submitted = 0
        self._batch_waits: set[str] = set()  # models whose head job waits for company (a timer is armed)
        # published for other threads: a value is replaced whole, never changed in place
        self.rows: dict[str, dict[str, Any]] = {}
        self.busy_peers: frozenset[bytes] = frozenset()
        self.running_jobs: dict[str, tuple[Job, ...]] = {}  # model -> its running jobs (the health check reads their progress times)
        self.jobs = (0, 0)  # (queued, running)
        self.thread = threading.Thread(target=self._loop, name="modelhost-core", daemon=True)
        for spec in self.catalog.scan().values():
            self._add_model(spec)  # every backend's options are checked here, before the host serves
        self._publish_rows()

    # ---- any thread ----

    def start(self) -> None:
        for worker in self._workers.values():
            worker.start()
        self._runners.start()
        self.thread.start()
        self._inbox.put(_Control("start", threading.Event()))

    def post(self, peer: bytes, msg: wire.Message, received_ns: int) -> None:
        """A decoded request for the core (generate, load, unload, cancel, pin)."""
        self._inbox.put(_Request(peer, msg, received_ns))

    def peer_gone(self, peer: bytes) -> None:
        self._inbox.put(_PeerGone(peer))

    def report(self, event: Report | RunnerExit) -> None:
        """A worker's ``Report``, or a runner process's end (the workers' side calls it, from any thread)."""
        self._inbox.put(event)

    def control(self, op: str, timeout_s: float = 30.0) -> bool:
        """``drain``, ``cancel_all`` or ``stop``, done in the core thread; False if it took longer than ``timeout_s``."""
        done = threading.Event()
        self._inbox.put(_Control(op, done))
        return done.wait(timeout_s)

    def join(self, timeout_s: float) -> None:
        """After ``control("stop")``: wait (at most ``timeout_s`` in all) for every worker to unload and end, and
        for every runner process to exit (what is left then is killed)."""
        deadline = time.monotonic() + timeout_s
        for worker in list(self._workers.values()):
            worker.join(max(0.0, deadline - time.monotonic()))
        self._runners.shutdown(max(0.0, deadline - time.monotonic()))

    def forget_segments(self, holder: Any, seg_ids: list[int]) -> None:
        """The host's pool retired segments a runner process may still map (any thread)."""
        self._runners.forget(holder, seg_ids)

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no job is queued or running; False if ``timeout_s`` passed first."""
        return wait_idle(self, timeout_s)

    def health(self) -> dict[str, Any]:
        queued, running = self.jobs
        rows = self.rows
        state = self._state
        stalled = self.stalled()
        failed = {name: row["error"] for name, row in rows.items() if row["state"] == FAILED}
        return {
            "status": state,
            "ready": state == "running" and not self._preload_failed,
            "ok": state == "running" and not self._preload_failed and not stalled and not failed,
            "stalled": stalled,
            "failed": failed,
            "last_ok": {name: row["last_ok"] for name, row in rows.items() if row["last_ok"] is not None},
            "version": __version__,
            "protocol": wire.PROTOCOL_VERSION,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self._started_s, 3),
            "models": {name: row["state"] for name, row in rows.items()},
            "preload_pending": list(self._preload_left),
            "preload_failed": dict(self._preload_failed),
            "jobs": {"queued": queued, "running": running},
        }

    def stalled(self) -> dict[str, str]:
        """Models running a job with no progress for far longer than their generations take
        (``stall_after_s``, or 5 x the typical run if longer): name -> what is seen."""
        now = self._clock()
        out = {}
        status = self._runners.status
        for name, jobs in self.running_jobs.items():
            worker = self._workers.get(name)
            progress_at = worker.progress_at if worker is not None else {}
            quiet, job = min(((now - max(j.started_s, progress_at.get(j.key, 0.0)), j) for j in jobs), key=lambda x: x[0])
            row = self.rows.get(name, {})
            runner = status.get(row.get("runner", INLINE)) or {}
            limit = max(self.config.stall_after_s, 5 * row.get("typical_run_s", 0.0))
            if runner.get("silent_s", 0.0) > max(2.0, 4 * self.config.heartbeat_s):
                out[name] = (f"its runner {runner['runner']!r} (pid {runner['pid']}) has not answered for "
                             f"{runner['silent_s']:.0f} s while running request {job.request_id} (native code holding "
                             "the interpreter lock?); the host and other runners are unaffected")
            elif quiet > limit:
                out[name] = (f"request {job.request_id} has made no progress for {quiet:.0f} s "
                             f"(a generation here typically takes {row.get('typical_run_s', 0.0):.1f} s)")
        return out

    def ps(self) -> list[dict[str, Any]]:
        """The models' rows, each with its runner process as it is now (``runner``, ``pid``, ``restarts``, ...)."""
        status = self._runners.status
        return [{**row, **_runner_fields(row["runner"], status.get(row["runner"]))} for row in self.rows.values()]

    def devices(self) -> list[dict[str, Any]]:
        """Per device in use (and the CPU): total, budget, used by models, used by others, free."""
        rows = self.ps()
        names = {"cpu"} | {r["device"] for r in rows if r["state"] == READY} | {
            s.device for s in self.config.models.values() if s.device}
        out = []
        for device in sorted(names):
            info = devices.memory_info(device)
            by_models = sum(r["memory_bytes"] for r in rows if r["device"] == device and r["state"] == READY)
            used = info["total_bytes"] - info["free_bytes"]
            out.append({"device": device, "total_bytes": info["total_bytes"], "free_bytes": info["free_bytes"],
                        "budget_bytes": devices.budget_bytes(device, self.config.budgets),
                        "used_by_models_bytes": by_models, "used_by_others_bytes": max(0, used - by_models)})
        if any(name.startswith("cuda") for name in names):  # the warm tier: RAM holding models offloaded from GPUs
            cpu = out[[d["device"] for d in out].index("cpu")]
            warm = sum(r["memory_bytes"] for r in rows if r["state"] == WARM)
            out.append({**cpu, "device": "warm", "budget_bytes": devices.budget_bytes("warm", self.config.budgets),
                        "used_by_models_bytes": warm, "used_by_others_bytes": 0})
        return out

    # ---- worker threads ----

    def _first_progress(self, task: Task) -> None:
        self.metrics.first_progress.labels(task.body.get("model", "")).observe((time.monotonic_ns() - task.received_ns) / 1e9)

    # ---- the loop ----

    def _loop(self) -> None:
        while not self._stopping:
            self.turn(None)

    def turn(self, wait_s: float | None = 0.0) -> None:
        """One turn of the loop: wait at most ``wait_s`` for an event (None: until the next timer is due), handle it
        and whatever else is waiting, fire the due timers, dispatch, publish, let go of what the turn queued. The
        core thread runs it over and over; a unit test runs it in its own thread, with a fake clock and workers."""
        if wait_s is None and self._timers:
            wait_s = max(0.0, self._timers[0][0] - self._clock())
        try:
            event = self._inbox.get(timeout=wait_s) if wait_s != 0.0 else self._inbox.get_nowait()
        except queue.Empty:
            event = None
        try:
            if event is not None:
                self._handle(event)
                while True:  # take what else is waiting before publishing once
                    try:
                        self._handle(self._inbox.get_nowait())
                    except queue.Empty:
                        break
            self._fire_timers(self._clock())
            self._pump()
            self._retire_idle_runners()
            self._publish_rows()
            self._publish_counts()
        except Exception:  # a core bug must not end the host; the event's job, if any, still gets its reply
            log.critical("the core loop failed on %r", event, exc_info=True)
        event = None  # a report's tasks hold their input arrays: not until the next event
        self._let_go()

    def _send(self, peer: bytes, kind: str, request_id: int, body: dict[str, Any]) -> None:
        """Queue a reply; it leaves at the end of this turn (``_let_go``)."""
        self._outgoing.append(("reply", peer, kind, request_id, body))

    def _let_go(self) -> None:
        """Send this turn's replies, hand out its worker commands and acknowledge its controls, in order."""
        outgoing, self._outgoing = self._outgoing, []
        for item in outgoing:
            what = item[0]
            try:
                if what == "reply":
                    self._out.send(*item[1:])
                elif what == "encoded":
                    self._out.send_encoded(item[1], item[2])
                elif what == "command":
                    item[1].send(item[2])
                elif what == "stop":
                    item[1].stop(item[2], item[3])
                else:
                    item[1].set()
            except Exception:  # one failed hand-off must not keep back the others
                log.critical("the core could not hand off %r", item[:2], exc_info=True)

    def _handle(self, event: Any) -> None:
        if isinstance(event, Report):
            self._on_report(event)
        elif isinstance(event, RunnerExit):
            self._on_runner_exit(event)
        elif isinstance(event, _Request):
            self._on_request(event)
        elif isinstance(event, _PeerGone):
            self._on_peer_gone(event.peer)
        elif isinstance(event, _Control):
            self._on_control(event)

    # ---- requests ----

    def _on_request(self, event: _Request) -> None:
        peer, msg = event.peer, event.msg
        try:
            if msg.kind == "cancel":
                self._send(peer, "result", msg.id, {"cancelled": self._cancel(peer, msg.body["target"])})
            elif msg.kind == "pin":
                model = self._model(msg.body["model"])
                model.pinned = bool(msg.body["pinned"])
                if not model.pinned:
                    self._arm_keep_alive(model)
                self._send(peer, "result", msg.id, self._row(model))
            elif msg.kind in ("generate", "load", "unload"):
                self._submit(event)
            else:
                raise BadRequestError(f"a {msg.kind!r} message is not a request")
        except RequestError as exc:
            if peer != INTERNAL_PEER:
                self._send(peer, "error", msg.id, wire.error_body(exc))

    def _submit(self, event: _Request) -> None:
        peer, msg = event.peer, event.msg
        if self._state in ("draining", "stopped"):
            raise ShuttingDownError("the host is shutting down and takes no new work; retry once it is back")
        if peer != INTERNAL_PEER and self._sched.find((peer, msg.id)) is not None:
            raise DuplicateIdError(f"request id {msg.id} is already in use by a running request of this client; "
                                   "use a new id for each request")
        model = self._model(msg.body["model"])
        if msg.kind == "generate" and msg.body.get("audio") is not None:
            rate = msg.body.get("sample_rate")
            if type(rate) is not int or not 0 < rate <= 768_000:
                raise BadParamsError(f"audio needs its sample_rate, an int in 1..768000 Hz; got {rate!r}")
        timeout_s = msg.body.get("timeout_s") or DEFAULT_TIMEOUT_S
        job = Job(peer, msg.id, msg.kind, model.name, msg.body, event.received_ns, self._clock() + float(timeout_s))
        if msg.kind == "generate":
            self._size(model, job)
        self._sched.submit(job)
        self._submitted += 1
        self._peer_jobs[peer] = self._peer_jobs.get(peer, 0) + 1
        if math.isfinite(job.deadline_s):
            self._timer(job.deadline_s, "deadline", job)
        self._dirty(model)

    def _size(self, model: Model, job: Job) -> None:
        """A generate job's batch key and seconds of audio, asked of its backend once (pure hooks on the request)."""
        request = _request(job)
        try:
            job.batch_key = None if job.body.get("stream") else model.backend.batch_key(request)
            hash(job.batch_key)
        except Exception:
            job.batch_key = None  # a request its backend cannot key runs alone; its own call names what is wrong
        try:
            seconds = model.backend.audio_seconds(request)
            job.audio_s = float(seconds) if seconds is not None and math.isfinite(seconds) and seconds > 0 else None
        except Exception:
            job.audio_s = None

    def _model(self, name: str) -> Model:
        model = self._models.get(name)
        if model is not None:
            return model
        spec = self.catalog.resolve(name)  # UnknownModelError naming what is served
        model = self._models.get(spec.name)
        return model if model is not None else self._add_model(spec)

    def _add_model(self, spec: ModelSpec) -> Model:
        """A model and its worker: at start (a bad entry stops the start), or found later in the catalog
        (a bad one is refused to its request; its worker starts at once)."""
        serving = self.thread.is_alive()
        try:
            backend = create_backend(spec)
        except (ValueError, ImportError) as exc:
            if spec.python is not None and isinstance(exc, (BackendImportError, ImportError)):
                backend = Backend(spec)  # it imports under its own Python only: the base class's pure hooks stand in
            elif serving:
                raise UnknownModelError(f"model {spec.name!r} cannot be served: {exc}") from None
            else:
                raise
        model = Model(spec, backend)
        self._models[spec.name] = model
        self._workers[spec.name] = self._runners.add(spec, backend)
        if serving:
            self._workers[spec.name].start()
        self._dirty(model)
        return model

    def _cancel(self, peer: bytes, target: int) -> bool:
        job = self._sched.cancel((peer, target))
        if job is None:
            return False
        if job.state != "running":
            self._done_error(job, stop_error("cancelled"))
        else:
            self._stop_row(job)
        return True

    def _on_peer_gone(self, peer: bytes) -> None:
        for job in self._sched.drop_peer(peer):
            self._done_error(job, stop_error("client_gone"))
        for job in [j for j in self._sched.running.values() if j.peer == peer]:
            self._stop_row(job)

    def _stop_row(self, job: Job) -> None:
        """A running job was flagged to stop: its worker hears it (it stops at the next progress point); a row of
        a batch whose other rows go on gets its error now (its output is dropped when the pass ends); a job
        alone, or the last live row, ends when its worker reports."""
        model = self._models.get(job.model)
        if model is None or job not in model.running or job.replied:
            return
        self._outgoing.append(("stop", self._workers[model.name], job.key, job.reason))
        if model.runner != INLINE and not job.kill_armed:  # a run that ignores its stop: its runner is killed
            job.kill_armed = True
            self._timer(self._clock() + model.spec.kill_after_s, "kill", job)
        if any(not j.replied and not j.cancelled for j in model.running):
            self._done_error(job, stop_error(job.reason))

    # ---- dispatch: which model does what next ----

    def _pump(self) -> None:
        """Give every idle model its next piece of work, oldest waiting request first (again while that
        submitted more work, as a finished preload does)."""
        submitted = -1
        while submitted != self._submitted:
            submitted = self._submitted
            waiting = [(job.received_ns, name) for name in list(self._sched.queues)
                       if (job := self._sched.head(name)) is not None]
            for _, name in sorted(waiting):
                model = self._models[name]
                while model.idle and (job := self._sched.head(name)) is not None:
                    if not self._dispatch(model, job):
                        break

    def _dispatch(self, model: Model, job: Job) -> bool:
        """Start ``job`` (or the load / restore it needs); False while it must wait."""
        if job.kind == "unload":
            self._sched.take(model.name)
            if model.state in (READY, WARM):
                if model.state == READY:
                    self.metrics.evictions.labels(model.name, "requested").inc()
                model.state = UNLOADING
                model.unload_job = job
                self._command(model, Command("unload", model.name, device=model.device or "", reason=job.body.get("reason", "requested")))
            else:
                self._done(job, "result", self._row(model))
            return True
        if model.state in (UNLOADED, FAILED):
            return self._admit(model, job, restore=False)
        if model.state == WARM:
            return self._admit(model, job, restore=True)
        if model.state != READY:
            return False
        if job.oom_retried and admission.evicting_on(model.device, self._models.values()):
            return False  # its retry after an out-of-memory error waits for the evictions to free the room
        if job.kind == "load":
            self._sched.take(model.name)
            model.record_use(self._clock(), job.body.get("keep_alive_s"), generated=False)
            self._done(job, "result", self._row(model))
            self._arm_keep_alive(model)
            return True
        return self._run(model, job)

    def _run(self, model: Model, head: Job) -> bool:
        """Start ``head`` and the queued jobs that share its pass (as many rows as fit); False while it waits:
        for company (``batch_window_ms``) or for other runs' activations to leave its device."""
        rows = self._rows_that_fit(model, head)
        if rows == 0:
            return False
        if self._batch_wait(model, head, rows):
            return False
        jobs = self._sched.take_batch(model.name, rows, _key)
        now = self._clock()
        for job in jobs:
            model.record_use(now, job.body.get("keep_alive_s"), generated=True)
            job.started_s = now
            self.metrics.queue.labels(model.name).observe((time.monotonic_ns() - job.received_ns) / 1e9)
        model.running = jobs
        model.activation_reserved_bytes = model.activation_bytes(head.audio_s, len(jobs))
        self.running_jobs = {**self.running_jobs, model.name: tuple(jobs)}
        self._command(model, Command("run", model.name, tasks=tuple(_task(j) for j in jobs), device=model.device or "",
                                     measure=head.audio_s is not None))
        return True

    def _rows_that_fit(self, model: Model, head: Job) -> int:
        """How many rows of ``head``'s kind may run now beside what ``model``'s device holds; 0: wait."""
        rows = model.max_rows if head.batch_key is not None else 1
        if model.activation_bytes(head.audio_s) <= 0:
            return rows  # nothing to count: no budget to read
        return admission.rows_that_fit(model, rows, head.audio_s, self._budget(model.device or "cpu"),
                                       self._models.values())

    def _batch_wait(self, model: Model, head: Job, rows: int) -> bool:
        """True while ``head`` waits for compatible requests: it would start a batch short of ``rows`` rows,
        and ``batch_window_ms`` since its arrival has not passed (a timer wakes the loop when it has)."""
        window_ns = int(model.spec.batch_window_ms * 1e6)
        if head.batch_key is None or rows <= 1 or window_ns <= 0:
            return False
        due_ns = head.received_ns + window_ns
        if self._clock() * 1e9 >= due_ns or self._sched.batch_size(model.name, rows, _key) >= rows:
            return False
        if model.name not in self._batch_waits:
            self._batch_waits.add(model.name)
            self._timer(due_ns / 1e9, "batch", model.name)
        return True

    def _admit(self, model: Model, job: Job, restore: bool) -> bool:
        """Reserve room for ``model`` on its device and send the load; False while evictions or busy models hold it."""
        try:
            device = model.device if restore and model.device else devices.resolve_device(model.spec.device)
        except Exception as exc:
            self._fail_model_jobs(model, BadRequestError(f"model {model.name!r}: {exc}"))
            return False
        need = model.held() if restore else model.estimate(device)
        decision = admission.admit(model, need, device, self._budget(device), self._models.values(), self._clock())
        if decision.verdict == "never":
            self._fail_model_jobs(model, OutOfMemoryError(decision.why))
            return False
        if decision.verdict == "wait":
            return False  # the busy models' reports wake the pump
        if decision.verdict == "evict":
            for victim in decision.victims:
                self._evict(self._models[victim])
            return False  # admitted once the evictions are reported
        model.device = device
        model.reserved = need
        model.state = RESTORING if restore else LOADING
        model.error = None
        job.load_ns = -time.monotonic_ns()
        if restore:
            self._command(model, Command("restore", model.name, device=device))
        else:
            warmup = job.peer == INTERNAL_PEER and bool(job.body.get("warmup"))
            self._command(model, Command("load", model.name, device=device, warmup=warmup))
        return False  # the job itself runs once the model is ready

    def _evict(self, model: Model, reason: str = "evicted") -> None:
        """Demote ``model`` to the warm tier if it can go there, else unload it (it must be idle)."""
        if model.state == READY:
            model.evictions += 1  # counted once, when it leaves its device
            self.metrics.evictions.labels(model.name, reason).inc()
        target = admission.warm_room(model, self._budget("warm"), self._models.values(), self._clock())
        if target is None:
            model.state = UNLOADING
            self._command(model, Command("unload", model.name, device=model.device or "", reason=reason))
            return
        for warm in target:
            self._evict(self._models[warm])
        model.state = OFFLOADING
        self._command(model, Command("offload", model.name, device=model.device or ""))

    def _budget(self, device: str) -> int:
        return devices.budget_bytes(device, self.config.budgets)

    def _command(self, model: Model, command: Command) -> None:
        model.command = command.op
        self._outgoing.append(("command", self._workers[model.name], command))
        self._dirty(model)

    # ---- reports from the workers ----

    def _on_report(self, report: Report) -> None:
        model = self._models[report.model]
        op = report.command.op
        model.command = None
        if report.process_bytes and model.runner != INLINE:
            self._measured_overhead(model.runner, report.process_bytes)
        if op in ("load", "restore"):
            self._on_loaded(model, report)
        elif op == "run":
            self._on_run(model, report)
        elif op == "unload":
            model.state, model.device = UNLOADED, None
            self._dirty_sharers(model)
            job, model.unload_job = model.unload_job, None
            if job is not None:
                self._done(job, "result", self._row(model))
        elif op == "offload":
            if report.ok:
                model.state = WARM
            else:
                model.state, model.device = UNLOADED, None
                log.warning("model %s: offload failed (%s); unloaded instead", model.name, report.error)
        self._dirty(model)
        if model.runner != INLINE:
            self._idle_runners[model.runner] = None  # looked at once the turn has dispatched (_retire_idle_runners)

    # ---- runner processes ----

    def _on_runner_exit(self, event: RunnerExit) -> None:
        """A runner process ended. Its models lost their weights; the command each had in flight is over: a run's
        requests that had sent no audio are run once more (a new process starts for them), the others end with
        ``runner_lost``; the models that were resident there and had nothing in flight are loaded again on the new
        process (a crash in one model's code must not leave its runner-mates unloaded); a runner that crashed too
        often leaves its models failed, with the reason."""
        message = event.describe()
        if not event.intended:
            log.error("%s", message)
        used: set[Any] = set()
        reload: list[str] = []
        for model in [m for m in self._models.values() if m.runner == event.runner]:
            command = event.commands.get(model.name)
            if command is None and model.state not in (READY, WARM):
                continue  # nothing of it was in that process (a load still waiting for the next one stays)
            if command is None and event.reload:
                reload.append(model.name)
            if model.state in (READY, WARM, LOADING, RESTORING, UNLOADING, OFFLOADING):
                if model.state == READY:
                    model.evictions += 1
                model.state, model.device, model.reserved = UNLOADED, None, None
            model.command = None
            model.restarts = event.crashes
            if command is not None and command.op == "run":
                self._runner_lost_run(model, event, used)
            job, model.unload_job = model.unload_job, None
            if job is not None:  # an unload that was in flight: the model is unloaded now
                self._done(job, "result", self._row(model))
            if event.failed:
                model.state = FAILED
                model.error = f"{message}; {event.crashes} crashes within {CRASH_WINDOW_S / 60:.0f} minutes"
                self._fail_model_jobs(model, BackendError(f"model {model.name!r} is failed: {model.error}"))
            self._dirty_sharers(model)
            self._dirty(model)
        for key, result in event.results.items():
            if key not in used:
                self._out.drop(result)
        if not event.failed and self._state == "running":
            for name in reload:
                if self._sched.head(name) is None:  # a queued request brings it back anyway
                    msg = wire.Message(kind="load", id=next(self._internal_ids), body={"model": name})
                    try:
                        self._submit(_Request(INTERNAL_PEER, msg, time.monotonic_ns()))
                    except RequestError:  # no reload then; its next request loads it
                        log.warning("model %s: not loaded again after its runner's end", name, exc_info=True)

    def _runner_lost_run(self, model: Model, event: RunnerExit, used: set[Any]) -> None:
        jobs, model.running = model.running, []
        model.activation_reserved_bytes = 0
        self.running_jobs = {k: v for k, v in self.running_jobs.items() if k != model.name}
        retry = []
        for job in jobs:
            if job.replied:
                continue
            result = event.results.get(job.key)
            if result is not None:  # it finished before the process ended: its result stands
                used.add(job.key)
                self._done_row(job, Row(job.key, True, reply=result))
            elif job.cancelled:
                self._done_error(job, stop_error(job.reason))
            elif job.key in event.streamed or job.crash_retried or event.failed:
                self._done_error(job, RunnerLostError(
                    f"model {model.name!r}: {event.describe()}" + (
                        "; part of its audio was already sent, so it is not run again" if job.key in event.streamed
                        else "; it was already run once more after an earlier crash" if job.crash_retried else "")))
            else:
                job.crash_retried = True
                retry.append(job)
        for job in reversed(retry):  # back to the front, in their order: they run first on the new process
            self._sched.requeue_front(job)

    def _measured_overhead(self, runner: str, process_bytes: int) -> None:
        """A runner's process measured ``process_bytes`` on its device: what its models do not account for is the
        process's own (interpreter, libraries, a CUDA context), counted once per runner like a shared weight."""
        models = [m for m in self._models.values() if m.runner == runner and m.state in (READY, WARM) and m.report]
        own = sum(m.report.own_bytes for m in models)
        shared: dict[Any, int] = {}
        for m in models:
            shared.update(m.report.shared)
        overhead = max(0, process_bytes - own - sum(shared.values()))
        if overhead > self._overheads.get(runner, 0):
            self._overheads[runner] = overhead
            for m in self._models.values():
                if m.runner == runner:
                    m.runner_overhead_bytes = overhead
                    self._dirty(m)

    def _retire_idle_runners(self) -> None:
        """Runners a report of this turn may have left empty: one none of whose models holds anything, has a command
        in flight or work queued (a load about to need the same process) exits, so an unload frees its memory."""
        names, self._idle_runners = self._idle_runners, {}
        for runner in names:
            models = [m for m in self._models.values() if m.runner == runner]
            if all(m.state in (UNLOADED, FAILED) and m.idle and not self._sched.queued(m.name) for m in models):
                self._runners.retire(runner)
    def _on_loaded(self, model: Model, report: Report) -> None:
        model.reserved = None
        job = self._sched.head(model.name)
        if report.ok:
            now = self._clock()
            if report.command.op == "load":
                model.report = report.report
                model.measured_delta_bytes = report.delta_bytes
                model.load_s = report.seconds
                model.loads += 1
                model.details = report.details
                self.metrics.load.labels(model.name).observe(report.seconds)
            else:
                model.swap_in_s = report.seconds
                self.metrics.swap_in.labels(model.name).observe(report.seconds)
                self.metrics.swap_ins.labels(model.name).inc()
            model.state = READY
            model.last_used_s = now
            model.keep_until_s = residency.keep_until(now, model.spec.keep_alive_s)
            self._dirty_sharers(model)
            if job is not None and job.load_ns < 0:
                job.load_ns += time.monotonic_ns()
            self._arm_keep_alive(model)
            return
        model.state, model.device = (UNLOADED if report.oom else FAILED), None
        model.error = None if report.oom else str(report.error)
        if report.oom and job is not None and not job.oom_retried:
            job.oom_retried = True
            freed = self._free_device_for(report.command.device, model)
            log.warning("model %s: out of memory loading on %s; freed %d model(s), retrying once",
                        model.name, report.command.device, freed)
            return
        self._fail_model_jobs(model, report.error or BackendError(f"model {model.name!r} failed to load"))

    def _free_device_for(self, device: str, keep: Model) -> int:
        """After an out-of-memory error: evict every idle, unpinned model on ``device`` but ``keep``."""
        victims = admission.out_of_memory_victims(device, keep, self._models.values())
        for victim in victims:
            self._evict(victim, reason="out_of_memory")
        return len(victims)

    def _on_run(self, model: Model, report: Report) -> None:
        jobs = model.running
        model.running = []
        model.activation_reserved_bytes = 0
        self.running_jobs = {k: v for k, v in self.running_jobs.items() if k != model.name}
        model.measured_run(report.peak_rise_bytes, jobs[0].audio_s if jobs else None, len(jobs))
        if report.ok:
            seconds = self._clock() - jobs[0].started_s
            model.run_s = seconds if model.run_s == 0 else 0.8 * model.run_s + 0.2 * seconds
            model.last_ok = time.time()
            if report.report is not None and report.report != model.report:
                model.report = report.report
                self._dirty_sharers(model)
            if report.details is not None:
                model.details = report.details
        retry = []
        by_key = {job.key: job for job in jobs}
        rows = report.rows or [Row(job.key, False, error=report.error) for job in jobs]  # a worker bug: every row hears
        for row in rows:
            job = by_key.pop(row.key, None)
            if job is None or job.replied:
                self._out.drop(row.reply)  # its job ended otherwise (a row of a batch cancelled on the way)
                continue
            if row.ok:
                self._done_row(job, row)
            elif row.oom and not job.oom_retried and job.stop_reason is None:
                job.oom_retried = True
                retry.append(job)
            else:
                self._done_error(job, row.error or BackendError(f"model {model.name!r} failed"))
        if retry:
            for job in reversed(retry):  # back to the front, in their order
                self._sched.requeue_front(job)
            freed = self._free_device_for(model.device or "", model)
            log.warning("model %s: out of memory on %s; freed %d model(s), retrying %d request(s) once",
                        model.name, model.device, freed, len(retry))
        self._arm_keep_alive(model)

    def _fail_model_jobs(self, model: Model, error: RequestError) -> None:
        """``model`` cannot be made ready: every job queued for it ends with ``error``."""
        for job in self._sched.remove_model(model.name, "failed"):
            self._done_error(job, error)

    # ---- replies: the one place a job's final reply is sent ----

    def _done(self, job: Job, kind: str, body: dict[str, Any]) -> None:
        if job.replied:
            return
        job.replied = True
        job.body = {}  # its arrays go now, not when its deadline timer (up to timeout_s later) lets go of the job
        if math.isfinite(job.deadline_s):
            self._ended_deadline()
        if job.state == RUNNING:
            self._sched.finish(job)
        self._job_gone(job)
        if job.peer == INTERNAL_PEER:
            self._internal_done(job, kind, body or {})
        else:
            if body is not None:
                self._send(job.peer, kind, job.request_id, body)
            outcome = "result" if kind == "result" else str(body.get("code", "error"))
            self.metrics.record_done(job.model, job.kind, outcome, (time.monotonic_ns() - job.received_ns) / 1e9)

    def _done_error(self, job: Job, error: BaseException) -> None:
        self._done(job, "error", wire.error_body(error))

    def _done_row(self, job: Job, row: Row) -> None:
        """A generation's result: sent as its worker's owner encoded it (the core copies no audio), else encoded now."""
        if row.reply is None:
            self._done(job, "result", row.body)
        elif job.peer == INTERNAL_PEER:
            self._out.drop(row.reply)
            self._done(job, "result", {})
        else:
            self._outgoing.append(("encoded", job.peer, row.reply))
            self._done(job, "result", None)

    def _job_gone(self, job: Job) -> None:
        left = self._peer_jobs.get(job.peer, 1) - 1
        if left:
            self._peer_jobs[job.peer] = left
        else:
            self._peer_jobs.pop(job.peer, None)
        if job.model in self._models:
            self._dirty(self._models[job.model])

    # ---- timers ----

    def _timer(self, when: float, kind: str, item: Any) -> None:
        heapq.heappush(self._timers, (when, next(self._seq), kind, item))

    def _ended_deadline(self) -> None:
        """A job with a deadline timer ended; once such entries are most of the heap, drop them (O(n), amortized O(1))."""
        self._ended_deadlines += 1
        if self._ended_deadlines > 256 and 2 * self._ended_deadlines > len(self._timers):
            self._timers = [t for t in self._timers if not (t[2] == "deadline" and t[3].replied)]
            heapq.heapify(self._timers)
            self._ended_deadlines = 0

    def _fire_timers(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            _, _, kind, item = heapq.heappop(self._timers)
            if kind == "deadline":
                if not item.replied and self._sched.expire_one(item, now):
                    self._done_error(item, stop_error("deadline"))
                elif not item.replied and item.state == RUNNING and item.cancelled:
                    self._stop_row(item)
            elif kind == "keep_alive":
                self._keep_alive_due(self._models.get(item), now)
            elif kind == "rescan":
                self._rescan()
            elif kind == "batch":
                self._batch_waits.discard(item)  # the pump that follows starts its batch
            elif kind == "kill":  # a stopped run still going (every row of its pass stopped): its runner goes
                model = self._models.get(item.model)
                if model is not None and model.command == "run" and item in model.running and all(
                        j.cancelled for j in model.running):
                    self._runners.kill(model.runner, f"request {item.request_id} of model {model.name!r} did not stop "
                                                     f"within kill_after_s = {model.spec.kill_after_s:g} s of its {item.reason}")

    def _arm_keep_alive(self, model: Model) -> None:
        if math.isfinite(model.keep_until_s) and not model.pinned:
            self._timer(model.keep_until_s, "keep_alive", model.name)

    def _keep_alive_due(self, model: Model | None, now: float) -> None:
        if model is None or model.pinned or not model.idle or model.keep_until_s > now:
            return
        if model.state not in (READY, WARM) or self._sched.head(model.name) is not None or self._state != "running":
            return
        if model.state == READY:
            self.metrics.evictions.labels(model.name, "keep_alive").inc()
        model.state = UNLOADING
        self._command(model, Command("unload", model.name, device=model.device or "", reason="keep_alive"))

    def _rescan(self) -> None:
        try:
            for spec in self.catalog.scan().values():
                if spec.name not in self._models:
                    self._add_model(spec)
        except Exception:
            log.warning("catalog rescan failed", exc_info=True)
        self._timer(self._clock() + RESCAN_S, "rescan", None)

    # ---- preload and controls ----

    def _on_control(self, control: _Control) -> None:
        if control.op == "start":
            self._next_preload()
            if self.catalog.dynamic:
                self._timer(self._clock() + RESCAN_S, "rescan", None)
        elif control.op == "drain":
            if self._state != "stopped":
                self._state = "draining"
        elif control.op == "cancel_all":
            for job in self._sched.cancel_all("shutdown"):
                self._done_error(job, stop_error("shutdown"))
            for job in list(self._sched.running.values()):
                self._stop_row(job)
        elif control.op == "stop":
            for job in self._sched.cancel_all("shutdown") + list(self._sched.running.values()):
                self._done_error(job, stop_error("shutdown"))  # running ones had their grace; they end now
            for worker in self._workers.values():
                self._outgoing.append(("command", worker, Command("stop", worker.name)))
            self._state = "stopped"
            self._stopping = True
        self._outgoing.append(("ack", control.done))  # set once this turn's replies are queued at the I/O thread

    def _next_preload(self) -> None:
        while self._preload_left:
            name = self._preload_left[0]
            msg = wire.Message(kind="load", id=next(self._internal_ids), body={"model": name, "warmup": True})
            try:
                self._submit(_Request(INTERNAL_PEER, msg, time.monotonic_ns()))
                return
            except RequestError as exc:
                self._preload_failed[name] = exc.message
                self._preload_left.pop(0)
        if self._state == "starting":
            self._state = "running"

    def _internal_done(self, job: Job, kind: str, body: dict[str, Any]) -> None:
        if job.kind == "load" and job.model in self._preload_left[:1]:
            self._preload_left.pop(0)
            if kind == "error":
                self._preload_failed[job.model] = body.get("message", "failed")
                log.error("preload of %s failed: %s", job.model, body.get("message"))
            self._next_preload()
            if not self._preload_left:
                log.info("preload done: %s", ", ".join(self.config.preload))

    # ---- what other threads read ----

    def _row(self, model: Model) -> dict[str, Any]:
        holders: dict[Any, int] = {}
        if model.report is not None and model.report.shared:
            for other in self._models.values():
                if other.state == READY and other.device == model.device and other.report is not None:
                    for key in other.report.shared:
                        holders[key] = holders.get(key, 0) + 1
        return model.build_row(self._sched.queued(model.name), self._sched.running_count(model.name), holders)

    def _dirty_sharers(self, model: Model) -> None:
        """``model``'s shared weights changed hands: every holder's ps row shows the new count."""
        keys = set(model.report.shared) if model.report is not None else set()
        for other in self._models.values():
            if other.report is not None and keys & set(other.report.shared):
                self._dirty(other)

    def _dirty(self, model: Model) -> None:
        self._dirty_models[model.name] = None

    def _publish_rows(self) -> None:
        """The ps rows of the models this turn touched, each built once; a new model's row goes last (catalog order)."""
        if not self._dirty_models:
            return
        names, self._dirty_models = self._dirty_models, {}
        for name in names:
            row = self._row(self._models[name])
            if name in self.rows:
                self.rows[name] = row  # an existing key: readers iterating a copy are safe
            else:
                self.rows = {**self.rows, name: row}

    def _publish_counts(self) -> None:
        self.jobs = (self._sched.queued(), len(self._sched.running))
        peers = frozenset(self._peer_jobs) - {INTERNAL_PEER}
        if peers != self.busy_peers:
            self.busy_peers = peers


def _runner_fields(runner: str, status: dict[str, Any] | None) -> dict[str, Any]:
    """What a ps row shows of its model's runner process."""
    if status is None:  # inline: the host's own process
        return {"pid": os.getpid(), "runner_state": "inline", "runner_restarts": 0, "runner_bytes": 0, "python": None}
    return {"pid": status["pid"], "runner_state": status["state"], "runner_restarts": status["restarts"],
            "runner_bytes": status["process_bytes"], "python": status["python"]}


def _key(job: Job):
    """The batch key ``Scheduler.take_batch`` compares: computed once, at submit (``Core._size``)."""
    return job.batch_key


def _task(job: Job) -> Task:
    """What a worker gets of a job: frozen values, never the job itself."""
    return Task(job.peer, job.request_id, job.body, job.received_ns, max(0, job.load_ns))


def _request(job: Job) -> GenerateRequest:
    return _task(job).request
