"""The host's core: catalog slots, one worker per model, the scheduler, and the shutdown states.

No sockets here. The I/O thread (``host.server``) calls ``handle`` for each decoded request and
``tick`` on every poll; replies go out through the ``reply`` callable it was built with. States:
``starting`` (preloading) -> ``running`` -> ``draining`` (no new work) -> ``stopped``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from client import wire
from host import __version__
from client.errors import BadRequestError, UnknownModelError
from host.backends import create_backend
from host.config import HostConfig
from host.scheduler import Job, Scheduler
from host.worker import ModelSlot, ModelWorker, Reply, cancelled_error, shutdown_error

log = logging.getLogger("modelhost.engine")

INTERNAL_PEER = b""  # jobs the host gives itself (preload); their replies go nowhere
_DEFAULT_TIMEOUT_S = 3600.0


class Engine:
    """Requests in, jobs queued per model, replies out; see the module docstring."""

    def __init__(self, config: HostConfig, reply: Reply) -> None:
        self.config = config
        self._reply_out = reply
        self._cond = threading.Condition()
        self._sched = Scheduler()
        self.slots = {name: ModelSlot(spec, create_backend(spec)) for name, spec in config.models.items()}
        self._workers = [ModelWorker(slot, self._sched, self._cond, self._reply, self._job_done) for slot in self.slots.values()]
        self._preload_left = set(config.preload)
        self.state = "starting" if self._preload_left else "running"
        self._started = time.monotonic()

    # ---- lifecycle (main thread) ----

    def start(self) -> None:
        for worker in self._workers:
            worker.start()
        now = time.monotonic()
        with self._cond:
            for i, name in enumerate(self.config.preload):
                self._sched.submit(Job(INTERNAL_PEER, i, "load", name, {}, time.monotonic_ns(), now + _DEFAULT_TIMEOUT_S))
            self._cond.notify_all()

    def begin_drain(self) -> None:
        with self._cond:
            if self.state != "stopped":
                self.state = "draining"

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no job is queued or running; False if ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._sched.queued() or self._sched.running_count():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(timeout=min(left, 0.2))
        return True

    def cancel_all(self) -> None:
        """Cancel queued jobs (each gets its error reply) and flag running ones to stop."""
        with self._cond:
            removed = self._sched.cancel_all("shutdown")
        self._reply_removed(removed)

    def stop(self, timeout_s: float) -> None:
        """Stop the workers (after their queues empty) and unload every model. Safe to call twice."""
        with self._cond:
            for worker in self._workers:
                worker.stop()
            self._cond.notify_all()
        deadline = time.monotonic() + timeout_s
        for worker in self._workers:
            worker.thread.join(timeout=max(0.0, deadline - time.monotonic()))
        for slot in self.slots.values():
            if not any(w.thread.is_alive() for w in self._workers if w.slot is slot):
                slot.unload()
        self.state = "stopped"

    # ---- the I/O thread ----

    def handle(self, peer: bytes, msg: wire.Message, received_ns: int) -> dict[str, Any] | None:
        """A request: returns an immediate result body, or None if a worker will reply. Raises RequestError."""
        if msg.kind == "health":
            return self.health()
        if msg.kind == "ps":
            return {"models": self.ps()}
        if msg.kind == "cancel":
            return {"cancelled": self.cancel(peer, msg.body["target"])}
        if msg.kind in ("generate", "load", "unload"):
            self.submit(peer, msg, received_ns)
            return None
        raise BadRequestError(f"a {msg.kind!r} message is not a request")

    def submit(self, peer: bytes, msg: wire.Message, received_ns: int) -> None:
        model = msg.body["model"]
        if model not in self.slots:
            known = ", ".join(sorted(self.slots)) or "none"
            raise UnknownModelError(f"no model named {model!r} in the catalog; known models: {known}")
        timeout_s = msg.body.get("timeout_s") or _DEFAULT_TIMEOUT_S
        job = Job(peer, msg.id, msg.kind, model, msg.body, received_ns, time.monotonic() + float(timeout_s))
        with self._cond:
            if self.state in ("draining", "stopped"):
                raise shutdown_error()
            self._sched.submit(job)
            self._cond.notify_all()

    def cancel(self, peer: bytes, target: int) -> bool:
        with self._cond:
            job = self._sched.cancel((peer, target))
        if job is None:
            return False
        if job.state != "running":
            self._reply_removed([job])
        return True

    def tick(self, now_s: float, dead_peers: set[bytes]) -> None:
        """Per poll: expire deadlines and drop the jobs of clients that stopped sending heartbeats."""
        with self._cond:
            removed = self._sched.expire(now_s)
            for peer in dead_peers:
                removed += self._sched.drop_peer(peer)
        if removed:
            self._reply_removed(removed)

    def peers(self) -> set[bytes]:
        """Clients with work in the host (their liveness is watched)."""
        with self._cond:
            return self._sched.peers() - {INTERNAL_PEER}

    def health(self) -> dict[str, Any]:
        with self._cond:
            queued, running = self._sched.queued(), self._sched.running_count()
            state = self.state
        return {
            "status": state,
            "ready": state == "running",
            "version": __version__,
            "protocol": wire.PROTOCOL_VERSION,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self._started, 3),
            "models": {name: slot.state for name, slot in self.slots.items()},
            "jobs": {"queued": queued, "running": running},
        }

    def ps(self) -> list[dict[str, Any]]:
        with self._cond:
            counts = {name: (self._sched.queued(name), self._sched.running_count(name)) for name in self.slots}
        return [{**slot.status(), "queued": counts[name][0], "running": counts[name][1]} for name, slot in self.slots.items()]

    # ---- helpers ----

    def _reply(self, peer: bytes, kind: str, request_id: int, body: dict) -> None:
        if peer != INTERNAL_PEER:
            self._reply_out(peer, kind, request_id, body)

    def _reply_removed(self, jobs: list[Job]) -> None:
        for job in jobs:
            err = cancelled_error(job.reason)
            self._reply(job.peer, "error", job.request_id, {"code": err.code, "message": err.message})
        if jobs:
            with self._cond:
                self._cond.notify_all()

    def _job_done(self, job: Job) -> None:
        if job.peer == INTERNAL_PEER and job.kind == "load":
            with self._cond:
                self._preload_left.discard(job.model)
                if not self._preload_left and self.state == "starting":
                    self.state = "running"
                    log.info("preload done: %s", ", ".join(self.config.preload))
