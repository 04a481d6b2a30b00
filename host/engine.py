"""The host's core: catalog slots, one worker per model, the scheduler, and the shutdown states.

No sockets here. The I/O thread (``host.server``) calls ``handle`` for each decoded request and
``tick`` on every poll (deadlines, dead clients, keep-alive expiry); replies go out through the ``reply`` callable it was built with. States:
``starting`` (preloading) -> ``running`` -> ``draining`` (no new work) -> ``stopped``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from modelhost.client import wire
from modelhost.host import __version__, devices, residency
from modelhost.client.errors import BadRequestError, OutOfMemoryError, UnknownModelError
from modelhost.host.backends import create_backend
from modelhost.host.config import HostConfig
from modelhost.host.scheduler import Job, Scheduler
from modelhost.host.worker import LOADING, READY, WARM, ModelSlot, ModelWorker, Reply, cancelled_error, shutdown_error

log = logging.getLogger("modelhost.engine")

INTERNAL_PEER = b""  # jobs the host gives itself (preload); their replies go nowhere
_DEFAULT_TIMEOUT_S = 3600.0


class MemoryManager:
    """Makes room on a device before a load, by the policy in host.residency; runs in worker threads.

    Victims are unloaded under their own ``busy_lock``, taken without waiting: a model that became
    busy since the plan is skipped rather than pulled out from under its worker.
    """

    def __init__(self, engine: "Engine") -> None:
        self._engine = engine

    def admit(self, slot: ModelSlot, device: str, need_bytes: int) -> None:
        """Evict what the policy says so ``need_bytes`` fit on ``device``; OutOfMemoryError if they cannot."""
        engine = self._engine
        with engine._cond:
            residents = engine._residents(device, exclude=slot)
            budget = devices.budget_bytes(device, engine.config.budgets)
            try:
                victims = residency.plan(slot.name, need_bytes, budget, residents, time.monotonic())
            except residency.NoRoom as exc:
                raise OutOfMemoryError(str(exc)) from None
        for victim in victims:
            self._evict(engine.slots[victim.name])

    def free_device(self, device: str, keep: ModelSlot) -> int:
        """After an out-of-memory error: evict every evictable model on ``device`` but ``keep``."""
        with self._engine._cond:
            victims = residency.eviction_order(self._engine._residents(device, exclude=keep), time.monotonic())
        return sum(self._evict(self._engine.slots[v.name]) for v in victims)

    def _evict(self, slot: ModelSlot) -> bool:
        """Demote ``slot`` to the warm tier if it can go there, else unload it; False if it became busy."""
        if not slot.busy_lock.acquire(blocking=False):
            return False
        try:
            warm_victims = self._warm_room(slot)
            if warm_victims is None:
                slot.unload(reason="evicted")
                return True
            for victim in warm_victims:
                self._unload_warm(self._engine.slots[victim.name])
            slot.offload()
            return True
        finally:
            slot.busy_lock.release()

    def _warm_room(self, slot: ModelSlot) -> list[residency.Resident] | None:
        engine = self._engine
        if not slot.can_offload:
            return None
        with engine._cond:
            warm = [s.resident(busy=False) for s in engine.slots.values() if s.state == WARM and s is not slot]
            budget = devices.budget_bytes("warm", engine.config.budgets)
            return residency.demote(slot.resident(busy=False), True, budget, warm, time.monotonic())

    def _unload_warm(self, slot: ModelSlot) -> None:
        if slot.busy_lock.acquire(blocking=False):
            try:
                if slot.state == WARM:
                    slot.unload(reason="evicted")
            finally:
                slot.busy_lock.release()


class Engine:
    """Requests in, jobs queued per model, replies out; see the module docstring."""

    def __init__(self, config: HostConfig, reply: Reply) -> None:
        self.config = config
        self._reply_out = reply
        self._cond = threading.Condition()
        self._sched = Scheduler()
        self.slots = {name: ModelSlot(spec, create_backend(spec)) for name, spec in config.models.items()}
        self.memory = MemoryManager(self)
        self._workers = [ModelWorker(slot, self._sched, self._cond, self._reply, self._job_done, self.memory)
                         for slot in self.slots.values()]
        self._preload_left = list(config.preload)  # loaded one at a time, in catalog order
        self._internal_ids = 0
        self.state = "starting" if self._preload_left else "running"
        self._started = time.monotonic()

    # ---- lifecycle (main thread) ----

    def start(self) -> None:
        for worker in self._workers:
            worker.start()
        with self._cond:
            self._submit_next_preload()

    def _submit_next_preload(self) -> None:
        """Queue the next preload (load + warm-up); the next one follows when it is done. Holds the lock."""
        if self._preload_left:
            name = self._preload_left[0]
            self._internal_job("load", name, {"warmup": True})

    def _internal_job(self, kind: str, model: str, body: dict) -> None:
        self._internal_ids += 1
        self._sched.submit(Job(INTERNAL_PEER, self._internal_ids, kind, model, body, time.monotonic_ns(),
                               time.monotonic() + _DEFAULT_TIMEOUT_S))
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
            return {"models": self.ps(), "devices": self.devices()}
        if msg.kind == "cancel":
            return {"cancelled": self.cancel(peer, msg.body["target"])}
        if msg.kind == "pin":
            return self.pin(msg.body["model"], msg.body["pinned"])
        if msg.kind in ("generate", "load", "unload"):
            self.submit(peer, msg, received_ns)
            return None
        raise BadRequestError(f"a {msg.kind!r} message is not a request")

    def _slot(self, model: str) -> ModelSlot:
        if model not in self.slots:
            known = ", ".join(sorted(self.slots)) or "none"
            raise UnknownModelError(f"no model named {model!r} in the catalog; known models: {known}")
        return self.slots[model]

    def submit(self, peer: bytes, msg: wire.Message, received_ns: int) -> None:
        model = msg.body["model"]
        self._slot(model)
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

    def pin(self, model: str, pinned: bool) -> dict[str, Any]:
        """Pin (never evicted) or unpin a model; returns its status."""
        slot = self._slot(model)
        with self._cond:
            slot.pinned = pinned
        return slot.status()

    def tick(self, now_s: float, dead_peers: set[bytes]) -> None:
        """Per poll: expire deadlines, drop the jobs of silent clients, unload models idle past their keep-alive."""
        with self._cond:
            removed = self._sched.expire(now_s)
            for peer in dead_peers:
                removed += self._sched.drop_peer(peer)
            if self.state == "running":
                warm = [s.resident(busy=False, measure=False) for s in self.slots.values() if s.state == WARM]
                for resident in residency.idle_expired(self._residents(None, measure=False) + warm, now_s):
                    self.slots[resident.name].keep_until_s = float("inf")  # one unload job, not one per tick
                    self._internal_job("unload", resident.name, {"reason": "keep_alive"})
        if removed:
            self._reply_removed(removed)

    def _residents(self, device: str | None, exclude: ModelSlot | None = None, measure: bool = True) -> list[residency.Resident]:
        """Loaded (or loading) models on ``device`` (all devices for None), as the policy sees them. Holds the lock."""
        out = []
        for name, slot in self.slots.items():
            if slot is exclude or slot.state not in (READY, LOADING) or (device is not None and slot.device != device):
                continue
            busy = slot.state == LOADING or self._sched.queued(name) > 0 or self._sched.running_count(name) > 0
            out.append(slot.resident(busy, measure))
        return out

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
            "preload_pending": list(self._preload_left),
            "jobs": {"queued": queued, "running": running},
        }

    def ps(self) -> list[dict[str, Any]]:
        with self._cond:
            counts = {name: (self._sched.queued(name), self._sched.running_count(name)) for name in self.slots}
        return [{**slot.status(), "queued": counts[name][0], "running": counts[name][1]} for name, slot in self.slots.items()]

    def devices(self) -> list[dict[str, Any]]:
        """Per device in use (and the CPU): total, budget, used by models, used by others, free."""
        names = {"cpu"} | {slot.device for slot in self.slots.values() if slot.device}
        out = []
        for device in sorted(names):
            info = devices.memory_info(device)
            by_models = sum(s.current_bytes() for s in self.slots.values() if s.device == device and s.state == READY)
            used = info["total_bytes"] - info["free_bytes"]
            out.append({"device": device, "total_bytes": info["total_bytes"], "free_bytes": info["free_bytes"],
                        "budget_bytes": devices.budget_bytes(device, self.config.budgets),
                        "used_by_models_bytes": by_models, "used_by_others_bytes": max(0, used - by_models)})
        if any(name.startswith("cuda") for name in names):  # the warm tier: RAM holding models offloaded from GPUs
            cpu = out[[d["device"] for d in out].index("cpu")]
            warm = sum(s.current_bytes() for s in self.slots.values() if s.state == WARM)
            out.append({**cpu, "device": "warm", "budget_bytes": devices.budget_bytes("warm", self.config.budgets),
                        "used_by_models_bytes": warm, "used_by_others_bytes": 0})
        return out

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
                if job.model in self._preload_left:
                    self._preload_left.remove(job.model)
                self._submit_next_preload()
                if not self._preload_left and self.state == "starting":
                    self.state = "running"
                    log.info("preload done: %s", ", ".join(self.config.preload))
