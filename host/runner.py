"""A runner process: where model code runs, outside the host's process (``python -m modelhost.host.runner``).

The host (``host.runners``) starts one per runner group, under the group's Python, and gives it its
settings in the environment (``MODELHOST_RUNNER_*``). Threads here:

* the main thread, ``modelhost-runner-io``, owns the one DEALER socket to the host: it takes commands
  and stop signals, sends what the workers queued, beats every heartbeat, and ends the process when
  told (``exit``) or when the host process is gone (PR_SET_PDEATHSIG, and its parent pid checked every
  beat);
* one ``host.worker.Worker`` thread per model, ``modelhost-model-NAME``, exactly as in the host. It
  encodes what it sends itself: a result row or a chunk for a client on this machine is written
  straight into a segment of the host's shared-memory pool (``_AllocSender``: the host lends one, this
  process maps it and copies the array in once), so the host forwards it to the client without a copy.

A crash here (a segfault in native code, the OOM killer, ``os._exit``) ends this process only; the
host sees it, and decides what to retry. Needs only the client's light dependencies (pyzmq, msgpack,
numpy) and what its backends import; runs on Python 3.10 and later.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from typing import Any

import numpy as np
import zmq

from modelhost.client.protocol import shm, wire
from modelhost.client.protocol.errors import BackendError, RequestError
from modelhost.host import devices
from modelhost.host.backends import Backend, BackendImportError, create_backend
from modelhost.host.commands import (
    Command,
    Report,
    command_from_wire,
    report_to_wire,
)
from modelhost.host.waker import Waker
from modelhost.host.worker import Worker

log = logging.getLogger("modelhost.runner")

ENV_PREFIX = "MODELHOST_RUNNER_"
_ALLOC_WAIT_S = 10.0  # how long a worker waits for the host to lend a segment before sending a frame instead
_LIMITS = wire.Limits(max_message_bytes=2**40, max_frames=4096)  # host and runner trust each other's sizes


class _AllocSender:
    """``wire.ShmSender`` for one client's arrays: each goes into a segment the host lends for that client."""

    def __init__(self, runner: "RunnerProcess", peer: bytes) -> None:
        self._runner, self._peer = runner, peer
        self.min_bytes = runner.shm_min_bytes

    def place(self, arr: np.ndarray) -> tuple[int, int, int] | None:
        return self._runner.place(self._peer, arr)

    def unplace(self, seg_ids: list[int]) -> None:
        for seg_id in seg_ids:
            self._runner.queue_message("alloc", 0, {"seg": seg_id})  # never sent: the host frees it


class RunnerProcess:
    """The runner's socket loop and its models' workers (see the module docstring)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.name = env["NAME"]
        self.token = env["TOKEN"]
        self.host_pid = int(env["HOST_PID"])
        self.heartbeat_s = float(env.get("HEARTBEAT_S", "0.5"))
        shm_key = env.get("SHM_KEY", "")
        self.shm_min_bytes = int(env.get("SHM_MIN_BYTES", shm.DEFAULT_MIN_BYTES))
        self._mappings = shm.Mappings(self.host_pid, shm_key, on_release=lambda seg_id: None) if shm_key else None
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.IDENTITY, self.token.encode())
        self._sock.setsockopt(zmq.LINGER, 2000)
        self._sock.setsockopt(zmq.SNDHWM, 0)
        self._sock.setsockopt(zmq.RCVHWM, 0)
        self._sock.connect(env["ADDRESS"])
        self._outbox: deque[list[Any]] = deque()
        self._waker = Waker()
        self._workers: dict[str, Worker] = {}
        self._allocs: dict[int, list[Any]] = {}  # alloc id -> [event, reply body]
        self._alloc_ids = iter(range(1, 2**62))
        self._alloc_lock = threading.Lock()
        self._stopping = False

    # ---- any thread ----

    def queue_message(self, kind: str, request_id: int, body: dict[str, Any], peer: bytes | None = None) -> None:
        """Encode here (the caller's thread), send from the socket's thread. Arrays for ``peer`` go into the
        host's shared memory where it lends a segment for that client."""
        sender = _AllocSender(self, peer) if peer is not None and self._mappings is not None else None
        frames = wire.encode(kind, request_id, body, limits=_LIMITS, shm=sender)
        self._outbox.append(frames)
        self._waker.wake()

    def place(self, peer: bytes, arr: np.ndarray) -> tuple[int, int, int] | None:
        """Write ``arr`` into a segment the host lends for ``peer``: (segment id, fd, size), or None (a frame)."""
        with self._alloc_lock:
            alloc_id = next(self._alloc_ids)
            slot: list[Any] = [threading.Event(), None]
            self._allocs[alloc_id] = slot
        self.queue_message("alloc", alloc_id, {"peer": peer, "nbytes": int(arr.nbytes)})
        slot[0].wait(_ALLOC_WAIT_S)
        with self._alloc_lock:
            self._allocs.pop(alloc_id, None)
        reply = slot[1]
        if not reply or "seg" not in reply or self._mappings is None:
            return None
        seg_id, fd, size = reply["seg"], reply["fd"], reply["size"]
        try:
            view = self._mappings.array(seg_id, fd, size, np.dtype(np.uint8), (size,), size)
        except shm.ShmError:
            self.queue_message("alloc", 0, {"seg": seg_id})
            return None
        np.copyto(view[: arr.nbytes].view(arr.dtype).reshape(arr.shape), arr, casting="no")
        return seg_id, fd, size

    # ---- the workers' callbacks (their threads) ----

    def _post(self, report: Report) -> None:
        for row in report.rows:
            if row.ok:
                try:
                    self.queue_message("row", 0, {"peer": row.key[0], "target": row.key[1], "body": row.body},
                                       peer=row.key[0])
                except RequestError as exc:  # a body that cannot travel: that row fails, saying why
                    row.ok, row.error = False, BackendError(f"model {report.model!r}: its result cannot be sent: {exc.message}")
                row.body = {}
        if report.command.op in ("load", "restore") and report.ok:  # not after runs: a walk of the page tables (ms)
            report.process_bytes = devices.process_bytes(report.command.device or "cpu")
        self.queue_message("report", 0, report_to_wire(report))

    def _event(self, peer: bytes, kind: str, request_id: int, body: dict) -> None:
        try:
            self.queue_message("event", 0, {"peer": peer, "target": request_id, "kind": kind, "body": body}, peer=peer)
        except RequestError:
            log.warning("a %s event for request %d could not be encoded", kind, request_id, exc_info=True)

    # ---- the socket's thread ----

    def run(self) -> int:
        threading.current_thread().name = "modelhost-runner-io"
        self.queue_message("hello", 0, {"runner": self.name, "pid": os.getpid(), "token": self.token,
                                         "python": sys.executable, "torch": "torch" in sys.modules})
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._waker.fileno(), zmq.POLLIN)
        next_beat = 0.0
        while not self._stopping:
            ready = dict(poller.poll(timeout=self.heartbeat_s * 1000 / 2))
            if self._waker.fileno() in ready:
                self._waker.clear()
            if self._sock in ready:
                self._receive()
            self._flush()
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + self.heartbeat_s
                if os.getppid() != self.host_pid:
                    log.warning("runner %s: the host (pid %d) is gone; exiting", self.name, self.host_pid)
                    return 0
                self.queue_message("beat", 0, {})
                self._flush()
        for worker in self._workers.values():
            worker.send(Command("stop", worker.name))
        for worker in self._workers.values():
            worker.join(10.0)
        self._flush()
        self._sock.close(linger=2000)
        self._ctx.term()
        return 0

    def _flush(self) -> None:
        while self._outbox:
            self._sock.send_multipart(self._outbox.popleft(), copy=False)

    def _receive(self) -> None:
        while True:
            try:
                frames = self._sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                msg = wire.decode(frames, limits=_LIMITS)
                self._handle(msg)
            except Exception:  # a bad command must not end the runner: log it; the host's own checks catch a silence
                log.error("runner %s: a message from the host could not be handled", self.name, exc_info=True)

    def _handle(self, msg: wire.Message) -> None:
        body = msg.body
        if msg.kind == "command":
            command, spec = command_from_wire(body)
            worker = self._workers.get(command.model)
            if worker is None:
                worker = self._worker(command, spec)
                if worker is None:
                    return
            worker.send(command)
        elif msg.kind == "stop":
            worker = self._workers.get(body["model"])
            if worker is not None:
                worker.stop((body["peer"], body["target"]), body["reason"])
        elif msg.kind == "alloc":
            with self._alloc_lock:
                slot = self._allocs.get(msg.id)
            if slot is not None:
                slot[1] = body
                slot[0].set()
        elif msg.kind == "shm":
            if self._mappings is not None and body.get("forget"):
                self._mappings.forget(body["forget"])
        elif msg.kind == "exit":
            self._stopping = True

    def _worker(self, command: Command, spec: Any) -> Worker | None:
        """The worker of a model this runner has not seen: its backend is built from the spec in the command."""
        backend: Backend | None = None
        error: RequestError | None = None
        if spec is None:
            error = BackendError(f"model {command.model!r}: the runner got {command.op!r} before the model's spec")
        else:
            try:
                backend = create_backend(spec)
            except (ValueError, BackendImportError, ImportError) as exc:
                error = BackendError(f"model {command.model!r} cannot be built in runner {self.name!r} "
                                     f"(python {sys.executable}): {exc}")
        if backend is None:
            assert error is not None
            self._post(Report(command.model, command, False, error=error))
            return None
        worker = Worker(command.model, backend, self._post, self._event)
        self._workers[command.model] = worker
        worker.start()
        return worker


def _die_with_parent() -> None:
    """SIGKILL this process when the thread that started it (in the host) ends: a host killed with -9 leaves no runner."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def probe(backends: list[str]) -> dict[str, Any]:
    """What ``modelhost doctor`` asks a runner's Python: its version, and for each backend whether its class and
    the modules its load imports (``Backend.requires``) import here (None) or why not."""
    import importlib

    from modelhost.host.backends import backend_class

    found: dict[str, str | None] = {}
    for name in backends:
        try:
            modules = backend_class(name).requires
            missing = []
            for module in modules:
                try:
                    importlib.import_module(module)
                except Exception as exc:  # any import failure is a finding
                    missing.append(f"{module}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            found[name] = "; ".join(missing) or None
        except BackendImportError as exc:
            found[name] = str(exc)
    return {"python": sys.executable, "version": "%d.%d.%d" % sys.version_info[:3], "backends": found}


def main(env: dict[str, str] | None = None) -> int:
    if "--probe" in sys.argv:
        import json

        logging.disable(logging.WARNING)
        print("MODELHOST-PROBE " + json.dumps(probe(sys.argv[sys.argv.index("--probe") + 1:])), flush=True)
        return 0
    env = env if env is not None else os.environ
    settings = {k[len(ENV_PREFIX):]: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    _die_with_parent()
    if os.getppid() != int(settings["HOST_PID"]):
        return 0  # the host died while this process started
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s runner {settings['NAME']}: %(message)s",
                        stream=sys.stderr)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the host's terminal is the host's to handle
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    return RunnerProcess(settings).run()


if __name__ == "__main__":
    sys.exit(main())
