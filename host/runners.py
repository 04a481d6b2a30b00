"""The models' workers, from the host's side: runner processes started, fed commands, relayed, watched and
started again (thread ``modelhost-runners``), and the in-process worker threads of ``inline`` models.

Models run in runner processes (``host.runner``), grouped by ``host.backends.runner_of`` (one per family
and device unless the catalog names a ``runner``), each group under its own Python if the catalog says
``python = ...``. The core holds a ``RunnerWorker`` per model: the same ``send``/``stop`` as an in-process
``host.worker.Worker``; this module turns those into messages on one ROUTER socket (a private ipc://
path, 0700 folder; each runner proves itself with the random token it was started with).

This thread owns that socket, every runner's ``Popen``, its pidfd and its output pipe. It never
decides about models: it relays. Results and reports go to the core's inbox (``post``), each result
already encoded for its client (``Outbox.encode``: an array the runner wrote into the host's shared
memory is handed to the client as it is, with no copy); progress and chunks go straight to the client.
A runner's end, expected or not, goes to the core as one ``RunnerExit``, which says what it was doing;
the core decides what to retry. Restarts after a crash back off (0.5 s, doubling, at most 30 s); a
runner told to exit (its last model went) or killed by the host (a run that ignored its stop) starts
again at once when it is needed. What it prints (stdout and stderr) goes to the host's stderr, and its
last lines are kept for ``health``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import zmq

from modelhost.client.protocol import shm, wire
from modelhost.host.backends import INLINE, Backend, ModelSpec, runner_of
from modelhost.host.commands import Command, Report, Task, TaskKey, command_to_wire, report_from_wire
from modelhost.host.front import Outbox
from modelhost.host.waker import Waker
from modelhost.host.worker import Worker

log = logging.getLogger("modelhost.runners")

CRASH_WINDOW_S = 600.0  # crashes counted over this window; ``crash_limit`` of them and the runner's models are failed
_BACKOFF_FIRST_S, _BACKOFF_MAX_S = 0.5, 30.0
_EXIT_GRACE_S = 10.0  # a runner told to exit that is still there after this is killed
_TAIL_LINES = 20
_LIMITS = wire.Limits(max_message_bytes=2**40, max_frames=4096)
# How a runner starts under any Python: the folder that makes ``modelhost`` importable there comes first.
_BOOTSTRAP = ("import sys\nif sys.argv[1]: sys.path.insert(0, sys.argv[1])\n"
              "from modelhost.host.runner import main\nsys.exit(main())")


def package_dir(folder: str) -> str:
    """``folder``, made to hold ``modelhost/{client,host}`` and ``webui_adapter`` links to this host's code: what makes
    the runner module importable under another Python (one without modelhost installed, or with an older one; the
    WebUI's names in ``webui_adapter.webui_facts`` are the host's too)."""
    import modelhost.client
    import modelhost.host
    import webui_adapter

    os.makedirs(os.path.join(folder, "modelhost"), mode=0o700, exist_ok=True)
    for name, module in (("modelhost/client", modelhost.client), ("modelhost/host", modelhost.host),
                         ("webui_adapter", webui_adapter)):
        link = os.path.join(folder, name)
        if not os.path.lexists(link):
            os.symlink(os.path.dirname(os.path.abspath(module.__file__)), link)
    return folder


def runner_argv(python: str, pkg_dir: str, *args: str) -> list[str]:
    """The command line of a runner (or of its ``--probe``) under ``python``; ``pkg_dir`` from ``package_dir``, or ""
    where modelhost imports anyway (the host's own Python)."""
    return [python, "-c", _BOOTSTRAP, pkg_dir, *args]


@dataclass(frozen=True)
class RunnerExit:
    """A runner process ended (the core decides what its models and requests do now)."""

    runner: str
    pid: int
    why: str  # "killed by signal SIGSEGV", "exit code 3", "cannot start: ..."
    intended: bool  # the host ended it: its last model went, a run ignored its stop, or shutdown
    crashes: int  # unintended ends within CRASH_WINDOW_S, this one included
    failed: bool  # crashed too often (the host's runner_crash_limit): its models are failed until a request asks again
    reload: bool  # its resident models should be loaded again (a crash, or a kill of a stuck run; not an exit or shutdown)
    stderr_tail: tuple[str, ...]
    commands: dict[str, Command]  # model -> the command it had in flight, lost with the process
    streamed: frozenset[TaskKey]  # running tasks that had sent audio to their clients
    results: dict[TaskKey, Any]  # results that arrived before the end, encoded for their clients

    def describe(self) -> str:
        tail = " | ".join(self.stderr_tail[-5:])
        return f"runner {self.runner!r} (pid {self.pid}) {self.why}" + (f"; its last output: {tail}" if tail else "")


class RunnerWorker:
    """What the core holds for a model that runs in a runner process: ``host.worker.Worker``'s interface."""

    def __init__(self, runners: "Runners", runner: str, name: str) -> None:
        self.name = name
        self.runner = runner
        self._runners = runners
        self.progress_at: dict[TaskKey, float] = {}  # written by the runners thread

    def start(self) -> None:
        pass

    def send(self, command: Command) -> None:
        if command.op != "stop":  # the host's shutdown ends runners as a whole (Runners.shutdown)
            self._runners.post(("command", self.runner, command))

    def stop(self, key: TaskKey, reason: str) -> None:
        self._runners.post(("stop", self.runner, self.name, key, reason))

    def join(self, timeout_s: float) -> None:
        pass


@dataclass
class _Runner:
    """One runner group and its current process (runners thread only)."""

    name: str
    python: str | None
    specs: dict[str, ModelSpec] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    pid: int = 0
    pidfd: int = -1
    out_fd: int = -1  # the read end of its stdout+stderr pipe
    out_buf: bytes = b""
    token: str = ""
    ready: bool = False  # its hello arrived
    queue: deque = field(default_factory=deque)  # commands waiting for the process to be ready
    inflight: dict[str, Command] = field(default_factory=dict)
    results: dict[TaskKey, Any] = field(default_factory=dict)  # rows arrived, waiting for their report
    streamed: set[TaskKey] = field(default_factory=set)
    crashes: deque = field(default_factory=deque)
    restarts: int = 0
    backoff_until: float = 0.0
    tail: deque = field(default_factory=lambda: deque(maxlen=_TAIL_LINES))
    last_heard_s: float = 0.0
    intent: str | None = None  # why the host is ending it ("exit", "kill: ...", "shutdown")
    exit_deadline_s: float = 0.0
    process_bytes: int = 0

    @property
    def holder(self) -> tuple[str, str]:
        """Who segments allocated for this runner are lent to, in the host's pool."""
        return ("runner", self.name)


class _HeldSegments:
    """``wire.ShmReceiver`` for one runner's messages: its arrays are in the host's own segments (``Pool.held``)."""

    def __init__(self, pool: shm.Pool, holder: tuple[str, str]) -> None:
        self._pool, self._holder = pool, holder

    def array(self, seg_id: int, fd: int, size: int, dtype: np.dtype, shape: tuple[int, ...], nbytes: int) -> np.ndarray:
        return self._pool.held(seg_id, self._holder, dtype, shape, nbytes)

    def unread(self, seg_id: int) -> None:
        self._pool.release([seg_id], self._holder)


class Runners:
    """The workers of every model of one host: a thread in the host for an ``inline`` model, else a ``RunnerWorker``
    for its runner process (see the module docstring). ``post`` is the core's inbox."""

    def __init__(self, outbox: Outbox, post: Callable[[Any], None], *, heartbeat_s: float = 0.5,
                 pool: shm.Pool | None = None, crash_limit: int = 3,
                 on_first_progress: Callable[[Task], None] | None = None) -> None:
        self._crash_limit = crash_limit
        self._on_first_progress = on_first_progress
        self._out = outbox
        self._post_core = post
        self._heartbeat_s = heartbeat_s
        self._pool = pool
        self._runners: dict[str, _Runner] = {}
        self._workers: dict[str, RunnerWorker] = {}
        self._by_token: dict[bytes, _Runner] = {}
        self._inbox: deque[tuple] = deque()
        self._waker = Waker()
        self._dir = self._url = ""  # the socket's private folder and address (made by ``start``)
        self._pkg_dir = ""  # made on first use: what makes modelhost importable under another Python
        self._ctx: zmq.Context | None = None
        self._sock: zmq.Socket | None = None
        self._receivers: dict[str, _HeldSegments] = {}
        self._stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="modelhost-runners", daemon=True)
        self.status: dict[str, dict[str, Any]] = {}  # runner -> what ps and health show (replaced, never mutated)

    # ---- any thread ----

    def add(self, spec: ModelSpec, backend: Backend) -> Worker | RunnerWorker:
        """The worker of a model: an in-process thread for an ``inline`` model (``backend`` is the one it runs), else
        its runner's (the group is made on first use). Core thread, or before start; once the thread runs, the group's
        table is changed there (``_add``), before any command for the model."""
        name = runner_of(spec)
        if name == INLINE:
            return Worker(spec.name, backend, self._post_inline, self._out.send, self._on_first_progress)
        worker = self._workers[spec.name] = RunnerWorker(self, name, spec.name)
        if self.thread.is_alive():
            self.post(("add", name, spec))
        else:
            self._add(name, spec)
        return worker

    def _add(self, name: str, spec: ModelSpec) -> None:
        runner = self._runners.get(name)
        if runner is None:
            runner = self._runners[name] = _Runner(name, spec.python)
        runner.specs[spec.name] = spec
        self.status = {**self.status, name: self._status(runner)}

    def start(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="mh-runners-")  # 0700: ours alone
        self._url = f"ipc://{self._dir}/r.sock"
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SNDHWM, 0)
        self._sock.setsockopt(zmq.RCVHWM, 0)
        self._sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        old = os.umask(0o177)
        try:
            self._sock.bind(self._url)
        finally:
            os.umask(old)
        self.thread.start()

    def post(self, item: tuple) -> None:
        self._inbox.append(item)
        self._waker.wake()

    def _post_inline(self, report: Report) -> None:
        """An inline worker's report, from its thread: each result is encoded for its client here, off the core."""
        for row in report.rows:
            if row.ok and row.reply is None and row.key[0]:  # b"": the host's own request (a warm-up)
                row.reply = self._out.encode(row.key[0], "result", row.key[1], row.body)
                row.body = {}
        self._post_core(report)

    def kill(self, runner: str, why: str) -> None:
        """End ``runner``'s process now (SIGKILL): a run there did not stop when told."""
        self.post(("kill", runner, why))

    def retire(self, runner: str) -> None:
        """``runner`` holds no model any more: its process exits, and its memory goes back to the system."""
        self.post(("retire", runner))

    def forget(self, holder: Any, seg_ids: list[int]) -> None:
        """The pool retired segments a runner may have mapped (any thread)."""
        if isinstance(holder, tuple) and len(holder) == 2 and holder[0] == "runner":
            self.post(("forget", holder[1], seg_ids))

    def shutdown(self, timeout_s: float) -> None:
        """Tell every runner to exit, wait (at most ``timeout_s``), kill what is left, stop the thread."""
        if not self.thread.is_alive():
            self._cleanup()
            return
        self.post(("shutdown",))
        self._stopped.wait(timeout_s + 1.0)
        self.thread.join(2.0)

    # ---- the thread ----

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._waker.fileno(), zmq.POLLIN)
        fds: dict[int, tuple[str, _Runner]] = {}
        shutting_down: float | None = None
        try:
            while True:
                self._sync_poller(poller, fds)
                ready = dict(poller.poll(timeout=self._heartbeat_s * 1000 / 2))
                if self._waker.fileno() in ready:
                    self._waker.clear()
                while self._inbox:
                    item = self._inbox.popleft()
                    if item[0] == "shutdown":
                        shutting_down = time.monotonic() + _EXIT_GRACE_S
                        self._begin_shutdown()
                    else:
                        self._on_core(item)
                if self._sock in ready:
                    self._receive()
                for fd, (what, runner) in list(fds.items()):
                    if fd in ready:
                        if what == "out":
                            self._read_output(runner)
                        else:
                            self._reap(runner)
                self._tick()
                if shutting_down is not None and (not self._alive() or time.monotonic() > shutting_down):
                    break
        except Exception:
            log.critical("the runners thread failed; runner processes are no longer watched", exc_info=True)
        finally:
            for runner in self._runners.values():
                if runner.proc is not None and runner.proc.poll() is None:
                    runner.proc.kill()
                    runner.proc.wait()
                    self._close_fds(runner)
            self._cleanup()
            self._stopped.set()

    def _sync_poller(self, poller: zmq.Poller, fds: dict[int, tuple[str, _Runner]]) -> None:
        want: dict[int, tuple[str, _Runner]] = {}
        for runner in list(self._runners.values()):
            if runner.out_fd >= 0:
                want[runner.out_fd] = ("out", runner)
            if runner.pidfd >= 0:
                want[runner.pidfd] = ("pid", runner)
        for fd in set(fds) - set(want):
            poller.unregister(fd)
        for fd in set(want) - set(fds):
            poller.register(fd, zmq.POLLIN)
        fds.clear()
        fds.update(want)

    def _alive(self) -> bool:
        return any(r.proc is not None for r in self._runners.values())

    def _cleanup(self) -> None:
        if self._sock is None:
            return
        try:
            self._sock.close(linger=0)
            self._ctx.term()
        except zmq.ZMQError:
            pass
        for path in (os.path.join(self._dir, "r.sock"),):
            try:
                os.unlink(path)
            except OSError:
                pass
        if self._pkg_dir:
            for name in ("modelhost/client", "modelhost/host", "webui_adapter"):
                try:
                    os.unlink(os.path.join(self._pkg_dir, name))
                except OSError:
                    pass
            for path in (os.path.join(self._pkg_dir, "modelhost"), self._pkg_dir):
                try:
                    os.rmdir(path)
                except OSError:
                    pass
        try:
            os.rmdir(self._dir)
        except OSError:
            pass

    # ---- what the core asks ----

    def _on_core(self, item: tuple) -> None:
        what, name = item[0], item[1]
        if what == "add":
            self._add(name, item[2])
            return
        runner = self._runners.get(name)
        if runner is None:
            return
        if what == "command":
            command: Command = item[2]
            runner.queue.append(command)
            self._feed(runner)
        elif what == "stop":
            _, _, model, key, reason = item
            stop = {"model": model, "peer": key[0], "target": key[1], "reason": reason}
            if model in runner.inflight:
                self._send(runner, "stop", stop)
            elif any(isinstance(c, Command) and c.model == model for c in runner.queue):
                runner.queue.append(stop)  # its run waits for the process: the stop follows it there
        elif what == "kill":
            if runner.proc is not None and runner.proc.poll() is None:
                runner.intent = f"killed by the host: {item[2]}"
                log.warning("runner %s (pid %d): killing it: %s", runner.name, runner.pid, item[2])
                runner.proc.kill()
        elif what == "retire":
            if runner.proc is not None and not runner.inflight and not runner.queue and runner.intent is None:
                runner.intent = "exit"
                runner.exit_deadline_s = time.monotonic() + _EXIT_GRACE_S
                if runner.ready:
                    self._send(runner, "exit", {})
                else:
                    runner.proc.kill()
        elif what == "forget":
            if runner.ready:
                self._send(runner, "shm", {"forget": item[2]})

    def _begin_shutdown(self) -> None:
        for runner in self._runners.values():
            runner.queue.clear()
            if runner.proc is None:
                continue
            runner.intent = "shutdown"
            if runner.ready:
                self._send(runner, "exit", {})
            else:
                runner.proc.kill()

    def _feed(self, runner: _Runner) -> None:
        """Send what waits, starting the process first if it is not there (after its back-off)."""
        if not runner.queue:
            return
        if runner.proc is None:
            if time.monotonic() >= runner.backoff_until:
                self._spawn(runner)
            return
        if not runner.ready or runner.intent is not None:
            return  # sent once it says hello; a runner on its way out gets them when its successor does
        while runner.queue:
            command = runner.queue.popleft()
            if isinstance(command, dict):
                self._send(runner, "stop", command)
                continue
            if command.model in runner.inflight:
                log.error("runner %s: a second command for %s while one is in flight; refused", runner.name, command.model)
                continue
            runner.inflight[command.model] = command
            spec = runner.specs.get(command.model) if command.op == "load" else None
            self._send(runner, "command", command_to_wire(command, spec))

    def _send(self, runner: _Runner, kind: str, body: dict[str, Any], request_id: int = 0) -> None:
        try:
            self._sock.send_multipart([runner.token.encode(), *wire.encode(kind, request_id, body, limits=_LIMITS)],
                                      copy=False)
        except zmq.ZMQError as exc:  # its socket is gone: it is dying, and its pidfd will say so
            log.warning("runner %s: could not send %s: %s", runner.name, kind, exc)

    def _spawn(self, runner: _Runner) -> None:
        runner.token = os.urandom(16).hex()
        runner.ready, runner.intent = False, None
        env = {**os.environ, "MODELHOST_RUNNER_ADDRESS": self._url, "MODELHOST_RUNNER_NAME": runner.name,
               "MODELHOST_RUNNER_TOKEN": runner.token, "MODELHOST_RUNNER_HOST_PID": str(os.getpid()),
               "MODELHOST_RUNNER_HEARTBEAT_S": str(self._heartbeat_s)}
        if self._pool is not None:
            env["MODELHOST_RUNNER_SHM_KEY"] = self._pool.key
            env["MODELHOST_RUNNER_SHM_MIN_BYTES"] = str(self._pool.min_bytes)
        python = runner.python or sys.executable
        read_fd, write_fd = os.pipe()
        try:
            proc = subprocess.Popen(runner_argv(python, self._package_dir() if runner.python else ""),
                                    stdin=subprocess.DEVNULL, stdout=write_fd, stderr=write_fd, env=env,
                                    close_fds=True)
        except OSError as exc:
            os.close(read_fd)
            os.close(write_fd)
            self._ended(runner, 0, f"cannot start: {python}: {exc.strerror or exc}", crashed=True)
            return
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        runner.proc, runner.pid, runner.out_fd = proc, proc.pid, read_fd
        try:
            runner.pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            runner.pidfd = -1  # the tick polls it instead
        runner.last_heard_s = time.monotonic()
        self._by_token[runner.token.encode()] = runner
        log.info("runner %s: started pid %d (%s)", runner.name, proc.pid, python)
        self._publish(runner)

    def _package_dir(self) -> str:
        if not self._pkg_dir:
            self._pkg_dir = package_dir(os.path.join(self._dir, "pkg"))
        return self._pkg_dir

    # ---- what runners send ----

    def _receive(self) -> None:
        for _ in range(1000):
            try:
                frames = self._sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            runner = self._by_token.get(frames[0].bytes)
            if runner is None or runner.proc is None:
                continue  # a stranger, or the last words of a process already reaped
            runner.last_heard_s = time.monotonic()
            receiver = self._receiver(runner)
            try:
                msg = wire.decode(frames[1:], limits=_LIMITS, shm=receiver)
                self._handle(runner, msg)
            except Exception:
                log.error("runner %s: a message could not be handled", runner.name, exc_info=True)

    def _receiver(self, runner: _Runner) -> _HeldSegments | None:
        if self._pool is None:
            return None
        receiver = self._receivers.get(runner.name)
        if receiver is None:
            receiver = self._receivers[runner.name] = _HeldSegments(self._pool, runner.holder)
        return receiver

    def _handle(self, runner: _Runner, msg: wire.Message) -> None:
        body, kind = msg.body, msg.kind
        if kind == "event":
            key = (body["peer"], body["target"])
            if body["kind"] == "chunk":
                runner.streamed.add(key)
            else:
                self._progressed(runner, key)
            self._out.send(body["peer"], body["kind"], body["target"], body["body"])
        elif kind == "row":
            key = (body["peer"], body["target"])
            runner.results[key] = self._out.encode(body["peer"], "result", body["target"], body["body"])
        elif kind == "report":
            self._on_report(runner, body)
        elif kind == "alloc":
            self._on_alloc(runner, msg)
        elif kind == "beat":
            pass
        elif kind == "hello":
            if body["token"] != runner.token:
                log.error("runner %s: a hello with a wrong token; ignored", runner.name)
                return
            runner.ready = True
            log.info("runner %s: ready (pid %d, python %s)", runner.name, body["pid"], body["python"])
            self._publish(runner)
            self._feed(runner)

    def _on_report(self, runner: _Runner, body: dict[str, Any]) -> None:
        model = body["model"]
        command = runner.inflight.pop(model, None)
        if command is None:
            log.error("runner %s: a report for %s, which had no command in flight; ignored", runner.name, model)
            return
        keys = [(peer, rid) for peer, rid, *_ in body["rows"]]
        results = {key: runner.results.pop(key) for key in keys if key in runner.results}
        worker = self._workers.get(model)
        for key in keys:
            runner.streamed.discard(key)
            if worker is not None:
                worker.progress_at.pop(key, None)
        report = report_from_wire(body, command, results)
        if report.process_bytes:  # measured after a load or restore only: ps shows it before the load's reply leaves
            runner.process_bytes = report.process_bytes
            self._publish(runner)
        self._post_core(report)
        self._feed(runner)

    def _on_alloc(self, runner: _Runner, msg: wire.Message) -> None:
        body = msg.body
        if "nbytes" not in body:  # a segment it was lent and will not use
            if self._pool is not None and "seg" in body:
                self._pool.release([body["seg"]], runner.holder)
            return
        ref = None
        if self._pool is not None and self._out.reads_shm(body.get("peer", b"")):
            ref = self._pool.alloc(body["nbytes"], runner.holder)
        reply = {} if ref is None else {"seg": ref[0], "fd": ref[1], "size": ref[2]}
        self._send(runner, "alloc", reply, request_id=msg.id)

    def _progressed(self, runner: _Runner, key: TaskKey) -> None:
        """A task's progress went by: its time, for the stall check (and its first, for the metrics)."""
        for model, command in runner.inflight.items():
            for task in command.tasks:
                if task.key == key:
                    worker = self._workers[model]
                    if key not in worker.progress_at and self._on_first_progress is not None:
                        self._on_first_progress(task)
                    worker.progress_at[key] = time.monotonic()
                    return

    # ---- output, death, liveness ----

    def _read_output(self, runner: _Runner) -> None:
        try:
            data = os.read(runner.out_fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the pipe closed: the process is ending; its pidfd (or the tick) reaps it
            os.close(runner.out_fd)
            runner.out_fd = -1
            self._flush_line(runner, final=True)
            return
        runner.out_buf += data
        self._flush_line(runner)

    def _flush_line(self, runner: _Runner, final: bool = False) -> None:
        *lines, runner.out_buf = runner.out_buf.split(b"\n")
        if final and runner.out_buf:
            lines.append(runner.out_buf)
            runner.out_buf = b""
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                runner.tail.append(line)
                print(f"[runner {runner.name}] {line}", file=sys.stderr, flush=True)

    def _tick(self) -> None:
        now = time.monotonic()
        for runner in self._runners.values():
            if runner.proc is not None:
                if runner.pidfd < 0 and runner.proc.poll() is not None:
                    self._reap(runner)
                elif runner.intent == "exit" and now > runner.exit_deadline_s and runner.proc.poll() is None:
                    runner.proc.kill()
            elif runner.queue and now >= runner.backoff_until:
                self._spawn(runner)
            status = self._status(runner)
            if status != self.status.get(runner.name):
                self.status = {**self.status, runner.name: status}

    def _reap(self, runner: _Runner) -> None:
        proc = runner.proc
        if proc is None:
            return
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return
        if runner.out_fd >= 0:
            while True:  # what it printed last
                try:
                    data = os.read(runner.out_fd, 65536)
                except OSError:
                    break
                if not data:
                    break
                runner.out_buf += data
            self._flush_line(runner, final=True)
        self._close_fds(runner)
        why = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        self._ended(runner, proc.pid, why, crashed=runner.intent is None)

    def _ended(self, runner: _Runner, pid: int, why: str, crashed: bool) -> None:
        now = time.monotonic()
        intended = not crashed
        commands = dict(runner.inflight)
        if crashed:
            runner.crashes.append(now)
            while runner.crashes and runner.crashes[0] < now - CRASH_WINDOW_S:
                runner.crashes.popleft()
            runner.backoff_until = now + min(_BACKOFF_MAX_S, _BACKOFF_FIRST_S * 2 ** (len(runner.crashes) - 1))
            runner.restarts += 1
            log.warning("runner %s (pid %d) %s", runner.name, pid, why)
        event = RunnerExit(runner.name, pid, why if not intended else f"{why} ({runner.intent or 'ended'})", intended,
                           len(runner.crashes), crashed and len(runner.crashes) >= self._crash_limit,
                           runner.intent not in ("exit", "shutdown"), tuple(runner.tail), commands,
                           frozenset(runner.streamed), dict(runner.results))
        if event.failed or runner.intent == "shutdown":  # what waited for a new process will not get one
            for command in runner.queue:
                if isinstance(command, Command):
                    commands.setdefault(command.model, command)
            runner.queue.clear()
        runner.proc, runner.ready, runner.intent = None, False, None
        self._by_token.pop(runner.token.encode(), None)
        runner.inflight.clear()
        runner.results.clear()
        runner.streamed.clear()
        runner.process_bytes = 0
        for worker in list(self._workers.values()):
            if worker.runner == runner.name:
                worker.progress_at.clear()
        if self._pool is not None:
            self._pool.peer_gone(runner.holder)  # what it was lent and never filled
        self._receivers.pop(runner.name, None)
        self._publish(runner)
        self._post_core(event)
        self._feed(runner)  # what waits gets a new process (after the back-off)

    def _close_fds(self, runner: _Runner) -> None:
        for attr in ("pidfd", "out_fd"):
            fd = getattr(runner, attr)
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(runner, attr, -1)

    # ---- what other threads read ----

    def _status(self, runner: _Runner) -> dict[str, Any]:
        now = time.monotonic()
        alive = runner.proc is not None
        silent_s = now - runner.last_heard_s if alive and runner.ready else 0.0
        return {
            "runner": runner.name,
            "pid": runner.pid if alive else None,
            "state": ("stopped" if not alive else "starting" if not runner.ready else
                      "exiting" if runner.intent else "ready"),
            "python": runner.python or sys.executable,
            "restarts": runner.restarts,
            "crashes": len(runner.crashes),
            "busy": bool(runner.inflight),
            "silent_s": round(silent_s, 1) if silent_s > 2 * self._heartbeat_s else 0.0,
            "process_bytes": runner.process_bytes,
            "last_output": list(runner.tail)[-5:],
        }

    def _publish(self, runner: _Runner) -> None:
        self.status = {**self.status, runner.name: self._status(runner)}
