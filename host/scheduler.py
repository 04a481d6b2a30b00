"""Per-model job queues, cancellation, deadlines and dead-client purges: pure bookkeeping.

No zmq, no torch, no threads, no clock of its own (callers pass ``now``), so every rule here is
tested directly. The engine guards one ``Scheduler`` with a lock and runs one worker per model;
each worker takes its model's jobs in arrival (FIFO) order.

A job is identified by ``(peer, request_id)``: the client's routing id and its request id.
Lifecycle: queued -> running -> finished, or queued -> removed (cancelled, expired, client gone).
A running job is never removed here: it is flagged ``cancelled`` and its worker stops it at the
next progress point, then calls ``finish``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

JobKey = tuple[bytes, int]

QUEUED = "queued"
RUNNING = "running"
FINISHED = "finished"
REMOVED = "removed"


@dataclass(eq=False)
class Job:
    """One request the host works on: a generate, load or unload for one model."""

    peer: bytes
    request_id: int
    kind: str
    model: str
    body: dict[str, Any]
    received_ns: int
    deadline_s: float  # on the caller's monotonic clock
    state: str = QUEUED
    cancelled: bool = False
    reason: str = ""  # why it was cancelled: "cancelled", "deadline", "client_gone", "shutdown"

    @property
    def key(self) -> JobKey:
        return (self.peer, self.request_id)


@dataclass
class Scheduler:
    """The queues of every model, plus the jobs now running."""

    queues: dict[str, deque[Job]] = field(default_factory=dict)
    running: dict[JobKey, Job] = field(default_factory=dict)

    def submit(self, job: Job) -> None:
        self.queues.setdefault(job.model, deque()).append(job)

    def take(self, model: str) -> Job | None:
        """The next job for ``model``, now running; None if its queue is empty."""
        queue = self.queues.get(model)
        if not queue:
            return None
        job = queue.popleft()
        job.state = RUNNING
        self.running[job.key] = job
        return job

    def finish(self, job: Job) -> None:
        job.state = FINISHED
        self.running.pop(job.key, None)

    def cancel(self, key: JobKey, reason: str = "cancelled") -> Job | None:
        """Cancel one job: a queued one is removed (the caller replies), a running one is flagged."""
        job = self.running.get(key)
        if job is not None:
            _flag(job, reason)
            return job
        for queue in self.queues.values():
            for job in queue:
                if job.key == key:
                    queue.remove(job)
                    job.state = REMOVED
                    _flag(job, reason)
                    return job
        return None

    def expire(self, now_s: float) -> list[Job]:
        """Remove queued jobs past their deadline and flag running ones; returns the removed ones."""
        removed = self._remove_queued(lambda job: job.deadline_s <= now_s, "deadline")
        for job in self.running.values():
            if job.deadline_s <= now_s:
                _flag(job, "deadline")
        return removed

    def drop_peer(self, peer: bytes) -> list[Job]:
        """A client vanished: remove its queued jobs, flag its running ones; returns the removed ones."""
        removed = self._remove_queued(lambda job: job.peer == peer, "client_gone")
        for job in self.running.values():
            if job.peer == peer:
                _flag(job, "client_gone")
        return removed

    def cancel_all(self, reason: str) -> list[Job]:
        """Remove every queued job and flag every running one (shutdown); returns the removed ones."""
        removed = self._remove_queued(lambda job: True, reason)
        for job in self.running.values():
            _flag(job, reason)
        return removed

    def peers(self) -> set[bytes]:
        """Clients with work queued or running."""
        peers = {job.peer for job in self.running.values()}
        for queue in self.queues.values():
            peers.update(job.peer for job in queue)
        return peers

    def queued(self, model: str | None = None) -> int:
        if model is not None:
            return len(self.queues.get(model, ()))
        return sum(len(q) for q in self.queues.values())

    def running_count(self, model: str | None = None) -> int:
        return sum(1 for job in self.running.values() if model is None or job.model == model)

    def _remove_queued(self, match, reason: str) -> list[Job]:
        removed: list[Job] = []
        for model, queue in self.queues.items():
            keep: deque[Job] = deque()
            for job in queue:
                if match(job):
                    job.state = REMOVED
                    _flag(job, reason)
                    removed.append(job)
                else:
                    keep.append(job)
            self.queues[model] = keep
        return removed


def _flag(job: Job, reason: str) -> None:
    if not job.cancelled:
        job.cancelled = True
        job.reason = reason
