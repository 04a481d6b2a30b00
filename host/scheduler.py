"""Per-model job queues, cancellation, deadlines and dead-client purges: pure bookkeeping.

No zmq, no torch, no threads, no clock of its own (callers pass ``now``), so every rule here is
tested directly. Only the core loop (``host.core``, thread ``modelhost-core``) uses it; it hands
each model's jobs to that model's worker in arrival (FIFO) order, one command at a time: a single
job, or a batch (``take_batch``): the head job and the later queued jobs whose batch key equals its
key, up to ``max_rows``, run as one pass. A job whose key is None (a seeded request, a streaming
one, a melody, anything its backend does not batch) always runs alone, so a seeded request's audio
is the same whether other requests were queued with it or not.

A job is identified by ``(peer, request_id)``: the client's routing id and its request id.
Lifecycle: queued -> running -> finished, or queued -> removed (cancelled, expired, client gone).
A running job is never removed here: it is flagged ``cancelled`` and its worker stops it at the
next progress point, then calls ``finish``.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

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
    replied: bool = False  # its final reply went out (the core sends exactly one)
    oom_retried: bool = False  # it already had its one retry after an out-of-memory error
    crash_retried: bool = False  # it already ran once more after its runner process died under it
    kill_armed: bool = False  # stopped while running in a runner: a timer kills the runner if it goes on
    load_ns: int = 0  # time spent loading its model for it
    started_s: float = 0.0  # monotonic: when its run was sent to its worker
    batch_key: Hashable | None = None  # generate jobs with equal keys may share a pass; None: it runs alone
    audio_s: float | None = None  # seconds of audio it makes (sizes its activation memory); None: not counted

    @property
    def key(self) -> JobKey:
        return (self.peer, self.request_id)

    @property
    def stop_reason(self) -> str | None:
        """Why a running job must stop at its next progress point; None while it may go on (the core tells
        its worker, ``Worker.stop``; workers never see a ``Job``)."""
        return self.reason if self.cancelled else None


@dataclass
class Scheduler:
    """The queues of every model, plus the jobs now running."""

    queues: dict[str, deque[Job]] = field(default_factory=dict)
    running: dict[JobKey, Job] = field(default_factory=dict)

    def submit(self, job: Job) -> None:
        self.queues.setdefault(job.model, deque()).append(job)

    def find(self, key: JobKey) -> Job | None:
        """The queued or running job with this key, if any."""
        job = self.running.get(key)
        if job is not None:
            return job
        for queue in self.queues.values():
            for job in queue:
                if job.key == key:
                    return job
        return None

    def head(self, model: str) -> Job | None:
        """The job ``model`` runs next, still queued."""
        queue = self.queues.get(model)
        return queue[0] if queue else None

    def requeue_front(self, job: Job) -> None:
        """A running job goes back to the front of its queue (to retry after its model's room was made)."""
        self.running.pop(job.key, None)
        job.state = QUEUED
        self.queues.setdefault(job.model, deque()).appendleft(job)

    def take(self, model: str) -> Job | None:
        """The next job for ``model``, now running; None if its queue is empty."""
        queue = self.queues.get(model)
        if not queue:
            return None
        job = queue.popleft()
        job.state = RUNNING
        self.running[job.key] = job
        return job

    def batch_size(self, model: str, max_rows: int, key_fn: Callable[[Job], Hashable | None]) -> int:
        """How many rows ``take_batch`` would take now for ``model`` (0: its queue is empty)."""
        return len(self._batch(model, max_rows, key_fn))

    def take_batch(self, model: str, max_rows: int, key_fn: Callable[[Job], Hashable | None]) -> list[Job]:
        """The head job of ``model`` and, if its key is not None, the later queued generate jobs with an
        equal key (in arrival order, up to ``max_rows`` in all, not past a queued load or unload), now
        running; [] if its queue is empty. Jobs passed over keep their places."""
        batch = self._batch(model, max_rows, key_fn)
        if len(batch) > 1:
            taken = {id(job) for job in batch}
            self.queues[model] = deque(job for job in self.queues[model] if id(job) not in taken)
        elif batch:
            self.queues[model].popleft()
        for job in batch:
            job.state = RUNNING
            self.running[job.key] = job
        return batch

    def _batch(self, model: str, max_rows: int, key_fn: Callable[[Job], Hashable | None]) -> list[Job]:
        queue = self.queues.get(model)
        if not queue:
            return []
        head = queue[0]
        key = key_fn(head) if head.kind == "generate" and max_rows > 1 else None
        if key is None:
            return [head]
        batch = [head]
        for job in itertools.islice(queue, 1, None):
            if len(batch) >= max_rows or job.kind != "generate":  # a load or unload queued after it stays after it
                break
            if key_fn(job) == key:
                batch.append(job)
        return batch

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

    def expire_one(self, job: Job, now_s: float) -> bool:
        """``job``'s deadline timer fired: a queued one is removed (True: the caller replies), a running one flagged."""
        if job.state == QUEUED and job.deadline_s <= now_s:
            self.queues[job.model].remove(job)
            job.state = REMOVED
            _flag(job, "deadline")
            return True
        if job.state == RUNNING and job.deadline_s <= now_s:
            _flag(job, "deadline")
        return False

    def remove_model(self, model: str, reason: str) -> list[Job]:
        """Every queued job of ``model``, removed (its load failed for good); returns them."""
        return self._remove_queued(lambda job: job.model == model, reason)

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
